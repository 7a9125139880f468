//! What the reconcile and replay tests share: a legacy Firehose output of
//! known events, and the binary run with a PII key.
#![allow(dead_code)]

pub mod kinesis;
pub mod lake;
pub mod proxy;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;
pub type Error = Box<dyn std::error::Error>;

pub const KEY: &str = "test-key";
/// 2026-11-01T10:00:00Z
pub const T0: i64 = 1_793_527_200;

pub fn id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

pub fn event(n: u64, ts: i64, service: &str) -> serde_json::Value {
    let t = chrono::DateTime::from_timestamp(ts, 0).map(|t| t.to_rfc3339());
    serde_json::json!({
        "event_id": id(n), "ts": t, "service": service, "env": "prod", "level": "INFO",
        "method": "GET", "path": "/v1/cars", "status": 200, "latency_ms": 3.5,
        "client_ip": "203.0.113.9", "phone": format!("+49151{n:07}"), "attrs": {"n": n},
    })
}

/// Event `n` of the legacy output and its arrival time: events span 3 hours
/// from T0 and arrive 0–25 minutes late; every 40th breaks the contract
/// (status 700).
pub fn legacy_event(n: u64) -> (serde_json::Value, i64) {
    let ts = T0 + (n as i64 * 36) % (3 * 3600);
    let mut e = event(n, ts, "rentals");
    if n.is_multiple_of(40) {
        e["status"] = 700.into();
    }
    (e, ts + (n as i64 * 7) % 1500)
}

/// Legacy files by arrival hour: 3 event hours from T0, each event arriving
/// 0–25 minutes after its time (so some sit in the next hour's folder); every
/// 40th event breaks the contract. `edit` may change, drop or add lines.
pub fn write_legacy(
    root: &Path,
    edit: &dyn Fn(u64, &mut Vec<String>),
) -> Result<Vec<String>, Error> {
    let mut by_arrival: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
    let mut good = Vec::new();
    for n in 1..=300u64 {
        let (e, arrival) = legacy_event(n);
        if !n.is_multiple_of(40) {
            good.push(id(n));
        }
        let mut lines = vec![e.to_string()];
        edit(n, &mut lines);
        by_arrival.entry(arrival / 3600).or_default().extend(lines);
    }
    for (hour, lines) in by_arrival {
        let t = chrono::DateTime::from_timestamp(hour * 3600, 0).ok_or("time")?;
        let dir = root.join(t.format("%Y/%m/%d/%H").to_string());
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("legacy-1-{}.gz", t.format("%Y-%m-%d-%H-00-00")));
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path)?,
            flate2::Compression::fast(),
        );
        gz.write_all((lines.join("\n") + "\n").as_bytes())?;
        gz.finish()?;
    }
    Ok(good)
}

pub fn pitwall(args: &[&str]) -> Result<Output, Error> {
    Ok(Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(args)
        .env("PITWALL_PII_KEY", KEY)
        .output()?)
}

/// `pitwall ARGS`, which must exit 0: the error names the command and carries its stderr.
pub fn pitwall_ok(args: &[&str]) -> Result<Output, Error> {
    let out = pitwall(args)?;
    if out.status.code() != Some(0) {
        return Err(format!(
            "pitwall {} exited {:?}: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(out)
}

/// `pitwall reconcile --json` over the legacy output's three event hours:
/// the exit code and the report.
pub fn reconcile(
    legacy: &str,
    lake: &str,
    extra: &[&str],
) -> Result<(i32, serde_json::Value), Error> {
    let mut args = vec![
        "reconcile",
        "--legacy",
        legacy,
        "--lake",
        lake,
        "--from",
        "2026-11-01T10:00:00Z",
        "--to",
        "2026-11-01T13:00:00Z",
        "--json",
    ];
    args.extend(extra);
    let out = pitwall(&args)?;
    let code = out.status.code().ok_or("killed")?;
    let report = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok((code, report))
}

/// The test bucket on moto, or None when the services are not running (a
/// plain `cargo test`); under scripts/test.sh their absence is a failure.
pub fn s3_bucket() -> Option<String> {
    match std::env::var("PITWALL_TEST_S3_BUCKET") {
        Ok(b) => Some(b),
        Err(_) if std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() => {
            panic!("PITWALL_TEST_S3_BUCKET is not set: start the services with scripts/services.sh")
        }
        Err(_) => None,
    }
}

/// Copies a local directory tree to `s3://bucket/prefix/` with boto3.
pub fn upload(root: &Path, bucket: &str, prefix: &str) -> Result<(), Error> {
    let out = Command::new("python3")
        .args(["-c", UPLOAD, &root.display().to_string(), bucket, prefix])
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into());
    }
    Ok(())
}

const UPLOAD: &str = r#"
import os, sys, boto3
root, bucket, prefix = sys.argv[1:4]
s3 = boto3.client("s3", region_name=os.environ.get("AWS_REGION", "us-east-1"))
for d, _, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        s3.upload_file(p, bucket, prefix + "/" + os.path.relpath(p, root))
"#;

/// A local HTTP server that answers 202 to everything and hands on each
/// request's line and body: the Slack and Opsgenie endpoints of the alert tests.
pub fn recorder() -> Result<(String, std::sync::mpsc::Receiver<(String, String)>), Error> {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut r = BufReader::new(match conn.try_clone() {
                Ok(c) => c,
                Err(_) => continue,
            });
            let (mut line, mut len) = (String::new(), 0usize);
            let _ = r.read_line(&mut line);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let _ = conn.write_all(
                b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            );
            let _ = tx.send((
                line.trim().to_string(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
    });
    Ok((format!("http://{addr}"), rx))
}

/// Creates a two-partition topic on `brokers` (tansu).
pub fn create_topic(brokers: &str, topic: &str) -> TestResult {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for r in rt.block_on(admin.create_topics(
        &[rdkafka::admin::NewTopic::new(
            topic,
            2,
            rdkafka::admin::TopicReplication::Fixed(1),
        )],
        &rdkafka::admin::AdminOptions::new(),
    ))? {
        r.map_err(|(t, e)| format!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// Whether headless Chromium is here; under `PITWALL_REQUIRE_SERVICES` its
/// absence fails the test instead of skipping it.
pub fn have_chromium() -> bool {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !found && std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() {
        panic!("no Chromium: scripts/test.sh installs Debian's chromium");
    }
    found
}

/// Runs a fault soak of `bench/` (`SCRIPT --json ARGS --pitwall BIN`) and
/// returns its verdict and its log. An environment failure (an emulator
/// stopped answering) panics as one: it is never read as a result.
pub fn soak_verdict(script: &str, args: &[&str]) -> Result<(serde_json::Value, String), Error> {
    let path = format!("{}/../../bench/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(path)
        .arg("--json")
        .args(args)
        .args(["--pitwall", env!("CARGO_BIN_EXE_pitwall")])
        .output()?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8(out.stdout)?;
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("soak printed no verdict ({e}): {stdout}\n{log}"))?;
    assert!(
        v["environment_failure"].is_null(),
        "ENVIRONMENT FAILURE, not a result: {}",
        v["environment_failure"]
    );
    Ok((v, log))
}

/// `pitwall score watch` of the state at `state` (a directory or s3://),
/// its fleet, runs and SQLite lease file `leases` in `dir`, a cycle every
/// second: not yet started, stderr piped.
pub fn score_watch_command(
    state: &str,
    dir: &std::path::Path,
    leases: &str,
    rentals: &std::path::Path,
    name: &str,
    port: u16,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pitwall"));
    cmd.args(["score", "watch", "--state", state])
        .arg("--rentals")
        .arg(rentals)
        .arg("--telemetry")
        .arg(dir.join("fleet/telemetry"))
        .args(["--every", "1s", "--failover", "3s", "--worker-id", name])
        .arg("--leases")
        .arg(format!("sqlite:{}", dir.join(leases).display()))
        .arg("--out")
        .arg(dir.join(format!("runs-{name}")))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("PITWALL_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}
