//! Kinesis (kinesalite) helpers of the ingestion tests: streams made and
//! fed by the Python scripts beside the tests, `pitwall ingest run` started
//! with test timings, and its HTTP endpoints read.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Error, TestResult};

pub fn have_kinesis() -> bool {
    if std::env::var_os("PITWALL_TEST_KINESIS").is_some() {
        return true;
    }
    if std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() {
        panic!("PITWALL_TEST_KINESIS is not set: start the services with scripts/services.sh");
    }
    eprintln!("skipped: no Kinesis emulator (run scripts/test.sh)");
    false
}

pub fn script(name: &str) -> String {
    format!("{}/tests/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn python(args: &[&str]) -> Result<String, Error> {
    python_at(None, args)
}

/// [`python`] with the scripts' Kinesis calls sent to `kinesis` (another
/// emulator than the default one) when given.
pub fn python_at(kinesis: Option<&str>, args: &[&str]) -> Result<String, Error> {
    let mut cmd = Command::new("python3");
    if let Some(url) = kinesis {
        cmd.env("AWS_ENDPOINT_URL_KINESIS", url);
    }
    let out = cmd.args(args).output()?;
    if !out.status.success() {
        return Err(format!("python3 {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

pub fn admin(args: &[&str]) -> Result<String, Error> {
    admin_at(None, args)
}

pub fn admin_at(kinesis: Option<&str>, args: &[&str]) -> Result<String, Error> {
    let mut all = vec![script("kinesis_admin.py")];
    all.extend(args.iter().map(|s| s.to_string()));
    python_at(kinesis, &all.iter().map(String::as_str).collect::<Vec<_>>())
}

/// What was put: the valid event ids, and how many things must reach the DLQ.
#[derive(Debug, Default)]
pub struct Put {
    pub good: Vec<String>,
    pub dlq: u64,
    pub control: u64,
}

pub fn put(stream: &str, first: u64, count: u64, bad: bool) -> Result<Put, Error> {
    put_at(None, stream, first, count, bad)
}

pub fn put_at(
    kinesis: Option<&str>,
    stream: &str,
    first: u64,
    count: u64,
    bad: bool,
) -> Result<Put, Error> {
    let (f, c) = (first.to_string(), count.to_string());
    let mut args = vec![script("kinesis_put.py"), stream.into(), f, c];
    if bad {
        args.push("--bad".into());
    }
    let out = python_at(
        kinesis,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(Put {
        good: v["good"]
            .as_array()
            .ok_or("no good ids")?
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        dlq: v["bad_events"].as_u64().unwrap_or(0) + v["bad_records"].as_u64().unwrap_or(0),
        control: v["control"].as_u64().unwrap_or(0),
    })
}

impl Put {
    pub fn add(&mut self, o: Put) {
        self.good.extend(o.good);
        self.dlq += o.dlq;
        self.control += o.control;
    }
}

/// A temp dir, a new stream of `shards` shards, and a lake path in the dir;
/// None (the test is skipped) without a Kinesis emulator.
pub fn fixture(
    prefix: &str,
    shards: u32,
) -> Result<Option<(tempfile::TempDir, String, String)>, Error> {
    if !have_kinesis() {
        return Ok(None);
    }
    fixture_at(None, prefix, shards).map(Some)
}

/// [`fixture`]'s stream made on `kinesis` (another emulator) when given.
pub fn fixture_at(
    kinesis: Option<&str>,
    prefix: &str,
    shards: u32,
) -> Result<(tempfile::TempDir, String, String), Error> {
    let dir = tempfile::tempdir()?;
    let stream = unique(prefix);
    admin_at(kinesis, &["create", &stream, &shards.to_string()])?;
    let lake = dir.path().join("lake").display().to_string();
    Ok((dir, stream, lake))
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(19_470, |a| a.port())
}

/// `pitwall ingest run` with test timings and SQLite leases; extra flags after the common ones.
pub fn ingest(stream: &str, lake: &str, leases: &Path, extra: &[&str]) -> Result<Child, Error> {
    let spec = format!("sqlite:{}", leases.display());
    ingest_with(stream, lake, &spec, free_port(), extra)
}

pub fn ingest_with(
    stream: &str,
    lake: &str,
    leases: &str,
    port: u16,
    extra: &[&str],
) -> Result<Child, Error> {
    Ok(ingest_command(stream, lake, leases, port, extra).spawn()?)
}

/// Copies the child's stderr to the test's own as it is written: a
/// worker that logs more than a pipe holds, read only at its exit, would
/// block on its log and make no progress. The test runner shows the log
/// when the test fails.
pub fn drain(child: &mut Child) {
    if let Some(mut pipe) = child.stderr.take() {
        std::thread::spawn(move || std::io::copy(&mut pipe, &mut std::io::stderr()));
    }
}

/// The `pitwall ingest run` command of [`ingest_with`], not yet started.
pub fn ingest_command(
    stream: &str,
    lake: &str,
    leases: &str,
    port: u16,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pitwall"));
    cmd.args(["ingest", "run", "--stream", stream, "--lake", lake]);
    // Test timings, unless the test sets its own (a flag may be given once).
    for (flag, value) in [
        ("--failover", "3s"),
        ("--idle-poll", "200ms"),
        ("--discover-every", "1s"),
    ] {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(["--leases", leases])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("PITWALL_PII_KEY", "test-key")
        // PITWALL_TEST_LOG raises it for a run being debugged.
        .env(
            "PITWALL_LOG",
            std::env::var("PITWALL_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// The telemetry contract, as the tests hand it to `ingest run --contract`.
pub const TELEMETRY_CONTRACT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../contracts/telemetry.kinematics.odcs.yaml"
);

/// Lands everything on `stream` in `lake` against the telemetry contract,
/// committing every second, and returns once the worker stopped (idle 3 s).
pub fn ingest_telemetry(stream: &str, lake: &str, leases: &Path) -> TestResult {
    let args = [
        "--contract",
        TELEMETRY_CONTRACT,
        "--stop-when-idle",
        "3s",
        "--roll-age",
        "1s",
    ];
    wait_ok(
        ingest(stream, lake, leases, &args)?,
        Duration::from_secs(90),
    )
}

pub fn wait_ok(child: Child, within: Duration) -> TestResult {
    let deadline = Instant::now() + within;
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait()? {
            let out = child.wait_with_output()?;
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(
                status.success(),
                "pitwall ingest run failed ({status}):\n{log}"
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            return Err(format!(
                "pitwall ingest run did not stop within {within:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET a worker's endpoint (plain HTTP/1.0, no client crate): status and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut res = String::new();
    c.read_to_string(&mut res).ok()?;
    let status = res.split(' ').nth(1)?.parse().ok()?;
    let body = res.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A metric's value from a worker's /metrics.
/// Polls `done` for up to 30 s; fails the test with `what` if it never holds.
pub fn wait_for(what: &str, done: impl FnMut() -> bool) {
    wait_for_within(what, Duration::from_secs(30), done);
}

/// [`wait_for`] for up to `limit`.
pub fn wait_for_within(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// shard → checkpoint, read with Python's sqlite3 (no SQLite in this crate's tests).
pub fn leases_table(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let out = python(&[
        "-c",
        "import json,sqlite3,sys; print(json.dumps(dict(sqlite3.connect(sys.argv[1]).execute('select shard_id, checkpoint from leases').fetchall())))",
        &path.display().to_string(),
    ])?;
    Ok(serde_json::from_str(&out)?)
}
