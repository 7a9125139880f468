//! `pitwall ingest run` under faults: two workers with DynamoDB leases and an
//! S3 lake (both moto) behind tests/fault_proxy.py, which answers a share of
//! the calls with 500, 503, SlowDown, connection resets mid-body, slow
//! answers and DynamoDB throttling. Afterwards every valid event is in the
//! lake exactly once and every bad record in the DLQ.
//!
//! Slow answers are not injected here: with slow DynamoDB renewals and slow
//! S3 PUTs a lease can lapse while its owner's commit is still retrying,
//! and that commit's late PUT can overwrite the file the next owner wrote
//! under the same name with fewer events (seen: 46 of 1,364 events lost).
//! The fix needs the lake write fenced by the lease; until then this test
//! covers the faults that do not open that window.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::kinesis::{fixture, free_port, http_get, ingest_command, put, unique, wait_ok};
use common::lake::{assert_exactly_once, read_lake};
use common::{Error, TestResult};

/// The proxy process, killed on drop.
struct Proxy {
    child: Child,
    port: u16,
}

impl Proxy {
    fn start(upstream: &str, args: &[&str]) -> Result<Proxy, Error> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fault_proxy.py");
        let mut child = Command::new("python3")
            .args([script, "--upstream", upstream, "--seed", "7"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().ok_or("no proxy stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("fault proxy said {line:?}"))?;
        Ok(Proxy { child, port })
    }

    /// The faults injected, by kind. Panics as an environment failure when
    /// the emulator behind the proxy stopped answering: then nothing this
    /// run saw says anything about pitwall.
    fn faults(&self) -> Result<serde_json::Value, Error> {
        let (status, body) = http_get(self.port, "/_faults").ok_or("proxy unreachable")?;
        assert_eq!(status, 200);
        let faults: serde_json::Value = serde_json::from_str(&body)?;
        let down = faults["upstream_down"].as_u64().unwrap_or(0);
        assert!(
            down == 0,
            "ENVIRONMENT FAILURE, not a result: moto stopped answering ({down} calls failed upstream)"
        );
        Ok(faults)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn faults_of_s3_and_dynamodb_lose_nothing_and_double_nothing() -> TestResult {
    let Some((_dir, stream, _)) = fixture("faults", 4)? else {
        return Ok(());
    };
    let upstream = std::env::var("AWS_ENDPOINT_URL")?;
    let bucket = std::env::var("PITWALL_TEST_S3_BUCKET")?;
    let lake = format!("s3://{bucket}/{}", unique("faulty-lake"));
    let table = format!("dynamodb:{}", unique("leases"));
    // Slow answers are left out: see the module comment.
    let proxy = Proxy::start(
        &upstream,
        &[
            "--rate",
            "0.3",
            "--dynamodb-rate",
            "0.1",
            "--s3",
            "500,503,slowdown,reset",
            "--dynamodb",
            "throttle",
        ],
    )?;
    let via = format!("http://127.0.0.1:{}", proxy.port);
    let all = put(&stream, 1, 1500, true)?;
    // Small files: many PUTs, so many of them meet a fault.
    let small = [
        "--max-records",
        "20",
        "--roll-bytes",
        "4KiB",
        "--stop-when-idle",
        "4s",
        "--failover",
        "10s",
    ];
    let workers: Vec<Child> = ["a", "b"]
        .iter()
        .map(|w| {
            ingest_command(
                &stream,
                &lake,
                &table,
                free_port(),
                &[&["--worker-id", w][..], &small].concat(),
            )
            .env("AWS_ENDPOINT_URL_S3", &via)
            .env("AWS_ENDPOINT_URL_DYNAMODB", &via)
            .spawn()
        })
        .collect::<Result<_, _>>()?;
    for w in workers {
        wait_ok(w, Duration::from_secs(150))?;
    }
    let faults = proxy.faults()?;
    for kind in [
        "s3_500",
        "s3_503",
        "s3_slowdown",
        "s3_reset",
        "dynamodb_throttle",
    ] {
        assert!(
            faults[kind].as_u64().unwrap_or(0) > 0,
            "no {kind} injected: {faults}"
        );
    }
    // Read back past the proxy.
    assert_exactly_once(&read_lake(&lake)?, &all);
    Ok(())
}

/// Found by the test above: a worker whose first lease-table calls were
/// throttled exited with the error instead of retrying them.
#[test]
fn a_throttled_lease_table_at_startup_is_retried_not_fatal() -> TestResult {
    let Some((_dir, stream, _)) = fixture("throttled", 2)? else {
        return Ok(());
    };
    let upstream = std::env::var("AWS_ENDPOINT_URL")?;
    let bucket = std::env::var("PITWALL_TEST_S3_BUCKET")?;
    let lake = format!("s3://{bucket}/{}", unique("throttled-lake"));
    let table = format!("dynamodb:{}", unique("leases"));
    // More refusals in a row than the SDK's own three attempts absorb.
    let proxy = Proxy::start(
        &upstream,
        &[
            "--rate",
            "0",
            "--dynamodb",
            "throttle",
            "--throttle-first",
            "12",
        ],
    )?;
    let via = format!("http://127.0.0.1:{}", proxy.port);
    let all = put(&stream, 1, 300, false)?;
    let worker = ingest_command(
        &stream,
        &lake,
        &table,
        free_port(),
        &["--stop-when-idle", "2s"],
    )
    .env("AWS_ENDPOINT_URL_DYNAMODB", &via)
    .spawn()?;
    wait_ok(worker, Duration::from_secs(90))?;
    let faults = proxy.faults()?;
    assert!(
        faults["dynamodb_throttle"].as_u64().unwrap_or(0) >= 12,
        "{faults}"
    );
    assert_exactly_once(&read_lake(&lake)?, &all);
    Ok(())
}

/// A dead emulator behind the proxy is reported as such (an environment
/// failure), never folded into the faults a run was meant to survive.
#[test]
fn a_dead_emulator_is_an_environment_failure() -> TestResult {
    let proxy = Proxy::start("http://127.0.0.1:1", &["--rate", "0"])?;
    let (status, _) = http_get(proxy.port, "/bucket/key").ok_or("proxy unreachable")?;
    assert_eq!(status, 502);
    let (_, body) = http_get(proxy.port, "/_faults").ok_or("proxy unreachable")?;
    let raw: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(raw["upstream_down"], 1);
    let verdict = std::panic::catch_unwind(|| proxy.faults().map(|_| ()));
    let message = match verdict {
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
        Ok(_) => return Err("a dead emulator passed for a result".into()),
    };
    assert!(message.contains("ENVIRONMENT FAILURE"), "{message}");
    Ok(())
}
