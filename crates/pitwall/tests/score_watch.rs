//! `pitwall score watch` as a process: one watcher acts on a state while a
//! second waits on the lease (SQLite), SIGTERM finishes the cycle under way
//! and hands the lease over, and a cycle whose rentals cannot be read fails
//! alone, leaving the state as it was, with the next cycle going on.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::kinesis::{free_port, http_get, metric, wait_for};
use common::{TestResult, pitwall};

fn fleet(dir: &Path) -> TestResult {
    let out = pitwall(&[
        "gen",
        "fleet",
        "--out",
        &dir.display().to_string(),
        "--rentals",
        "300",
        "--seed",
        "3",
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn watcher(dir: &Path, rentals: &Path, name: &str, port: u16) -> Result<Child, common::Error> {
    Ok(Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(["score", "watch", "--state"])
        .arg(dir.join("state"))
        .arg("--rentals")
        .arg(rentals)
        .arg("--telemetry")
        .arg(dir.join("fleet/telemetry"))
        .args(["--every", "1s", "--failover", "3s", "--worker-id", name])
        .arg("--leases")
        .arg(format!("sqlite:{}", dir.join("leases.db").display()))
        .arg("--out")
        .arg(dir.join(format!("runs-{name}")))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("PITWALL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?)
}

fn log_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("state/log")).map_or(0, |d| d.count())
}

fn sigterm(child: &Child) -> TestResult {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    Ok(())
}

fn exits_ok(mut child: Child, within: Duration) -> TestResult {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let out = child.wait_with_output()?;
            assert!(
                status.success(),
                "{status}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Err("the watcher did not stop after SIGTERM".into())
}

#[test]
fn one_watcher_acts_a_second_waits_and_takes_over_on_sigterm() -> TestResult {
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    let rentals = dir.path().join("fleet/rentals.parquet");
    let (pa, pb) = (free_port(), free_port());
    let a = watcher(dir.path(), &rentals, "a", pa)?;
    wait_for("a's first commit", || log_entries(dir.path()) >= 1);
    let b = watcher(dir.path(), &rentals, "b", pb)?;
    wait_for("b's HTTP side", || http_get(pb, "/healthz").is_some());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(metric(pa, "pitwall_watch_lease_held"), Some(1.0));
    assert_eq!(
        metric(pb, "pitwall_watch_lease_held"),
        Some(0.0),
        "b must wait"
    );
    assert_eq!(http_get(pb, "/readyz").map(|r| r.0), Some(503));
    assert_eq!(http_get(pa, "/readyz").map(|r| r.0), Some(200));
    let b_cycles = |s: &str| metric(pb, s).unwrap_or(0.0);
    assert_eq!(b_cycles("pitwall_watch_cycle_duration_seconds_count"), 0.0);

    sigterm(&a)?;
    exits_ok(a, Duration::from_secs(30))?;
    let committed_by_a = log_entries(dir.path());
    // a released the lease: b takes it without waiting out the failover.
    wait_for("b to take the lease and commit", || {
        metric(pb, "pitwall_watch_lease_held") == Some(1.0)
            && log_entries(dir.path()) > committed_by_a
    });
    let (_, status) = http_get(pb, "/status.json").ok_or("status.json")?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    assert_eq!(status["lease_held"], true);
    assert_eq!(status["leases"][0]["owner"], "b");
    sigterm(&b)?;
    exits_ok(b, Duration::from_secs(30))?;

    // Both watchers' commits form one chain of the state's log.
    let out = pitwall(&[
        "score",
        "state",
        "show",
        "--state",
        &dir.path().join("state").display().to_string(),
        "--json",
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_cycle_that_cannot_read_its_rentals_fails_alone_and_the_next_goes_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    let rentals = dir.path().join("rentals.parquet");
    std::fs::write(&rentals, b"not parquet")?;
    let port = free_port();
    let w = watcher(dir.path(), &rentals, "w", port)?;
    wait_for("a failed cycle", || {
        http_get(port, "/metrics")
            .is_some_and(|(_, m)| m.contains("pitwall_watch_cycles_total{outcome=\"failed\"} 1"))
    });
    assert_eq!(log_entries(dir.path()), 0, "a failed cycle commits nothing");
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(503));
    // The rentals file is fixed (written whole, as an extract job would).
    std::fs::copy(
        dir.path().join("fleet/rentals.parquet"),
        dir.path().join("r.tmp"),
    )?;
    std::fs::rename(dir.path().join("r.tmp"), &rentals)?;
    wait_for("a committed cycle", || log_entries(dir.path()) >= 1);
    wait_for("readiness", || {
        http_get(port, "/readyz").map(|r| r.0) == Some(200)
    });
    sigterm(&w)?;
    exits_ok(w, Duration::from_secs(30))?;
    Ok(())
}
