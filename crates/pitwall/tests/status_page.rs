//! The ingestion service's status page, in headless Chromium (Debian's
//! `chromium`, driven by tests/browser.py): it loads, shows the live numbers
//! of a running service reading kinesalite, lists the score runs it was
//! pointed at, and logs no console error. The screenshot is kept.

use std::process::Command;

mod common;

use common::kinesis::{fixture, free_port, http_get, ingest_with, metric, put, script, wait_for};
use common::{Error, TestResult, have_chromium};

/// What the page shows once its numbers reach `events` and the throughput
/// chart has its lines.
const UNTIL: &str = r##"document.body.dataset.loaded === "yes"
  && document.getElementById("events").textContent === EVENTS
  && document.querySelectorAll("#chart polyline").length === 2"##;

const READ: &str = r##"({
  events: document.getElementById("events").textContent,
  dlq: document.getElementById("dlq").textContent,
  ready: document.getElementById("ready").textContent,
  owners: [...document.querySelectorAll("#shards tbody tr")].map(r => r.cells[1].textContent),
  reasons: [...document.querySelectorAll("#dlq-reasons tbody tr")].map(r => r.cells[0].textContent),
  files: document.querySelectorAll("#commits tbody code").length,
  runs: [...document.querySelectorAll("#runs tbody a")].map(a => a.getAttribute("href")),
  error_shown: getComputedStyle(document.getElementById("error")).display !== "none",
})"##;

fn browse(url: &str, until: &str, shot: &std::path::Path) -> Result<serde_json::Value, Error> {
    let out = Command::new("python3")
        .args([&script("browser.py"), url, "--until", until, "--eval", READ])
        .args([
            "--screenshot",
            &shot.display().to_string(),
            "--timeout",
            "60",
        ])
        .output()?;
    if !out.status.success() {
        return Err(format!("browser.py: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn the_status_page_shows_a_running_service_live_without_console_errors() -> TestResult {
    let Some((dir, stream, lake)) = fixture("status", 2)? else {
        return Ok(());
    };
    if !have_chromium() {
        return Ok(());
    }
    let runs = dir.path().join("runs");
    let demo = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args([
            "demo",
            "--rentals",
            "60",
            "--out",
            &runs.display().to_string(),
        ])
        .output()?;
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let put = put(&stream, 1, 200, true)?;
    let port = free_port();
    let leases = format!("sqlite:{}", dir.path().join("leases.db").display());
    let runs_s = runs.display().to_string();
    let mut worker = ingest_with(
        &stream,
        &lake,
        &leases,
        port,
        &["--roll-age", "1s", "--score-runs", &runs_s],
    )?;
    let good = put.good.len() as f64;
    wait_for("the worker to land every event", || {
        metric(port, "pitwall_ingest_events_total") == Some(good)
    });

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let events = format!("{:?}", group_thousands(put.good.len()));
    let page = browse(
        &format!("http://127.0.0.1:{port}/"),
        &UNTIL.replace("EVENTS", &events),
        &shot,
    );
    let _ = worker.kill();
    let _ = worker.wait();
    let page = page?;
    assert_eq!(
        page["ok"], true,
        "the page never showed the live numbers: {page:#}"
    );
    assert_eq!(
        page["errors"],
        serde_json::json!([]),
        "console errors: {page:#}"
    );
    let v = &page["value"];
    assert_eq!(v["ready"], "ready");
    assert_eq!(v["dlq"], group_thousands(put.dlq as usize));
    let owners: Vec<&str> = v["owners"]
        .as_array()
        .ok_or("owners")?
        .iter()
        .filter_map(|o| o.as_str())
        .collect();
    assert_eq!(owners.len(), 2, "{v:#}");
    assert!(owners.iter().all(|o| o.ends_with("(this worker)")), "{v:#}");
    assert!(
        v["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "invalid_json")),
        "{v:#}"
    );
    assert!(v["files"].as_u64().is_some_and(|n| n >= 2), "{v:#}");
    assert_eq!(
        v["runs"],
        serde_json::json!(["runs/run/report.html", "runs/run/run.json"])
    );
    assert_eq!(v["error_shown"], false);

    let png = std::fs::read(&shot)?;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "screenshot of {} bytes",
        png.len()
    );
    Ok(())
}

#[test]
fn score_runs_are_served_only_from_the_runs_directory() -> TestResult {
    let Some((dir, stream, lake)) = fixture("status-runs", 1)? else {
        return Ok(());
    };
    let runs = dir.path().join("runs");
    std::fs::create_dir_all(runs.join("2026-11-01"))?;
    std::fs::write(
        runs.join("2026-11-01/run.json"),
        r#"{"run_id":"r1","status":"held","held_because":["too few rentals"]}"#,
    )?;
    std::fs::write(runs.join("2026-11-01/report.html"), "<p>report</p>")?;
    std::fs::write(dir.path().join("secret.txt"), "no")?;
    let port = free_port();
    let leases = format!("sqlite:{}", dir.path().join("l.db").display());
    let runs_s = runs.display().to_string();
    let mut worker = ingest_with(&stream, &lake, &leases, port, &["--score-runs", &runs_s])?;
    wait_for("the HTTP server", || http_get(port, "/healthz").is_some());
    let listed = http_get(port, "/runs.json");
    let report = http_get(port, "/runs/2026-11-01/report.html");
    let escape = http_get(port, "/runs/..%2Fsecret.txt/run.json");
    let other = http_get(port, "/runs/2026-11-01/secret.txt");
    let _ = worker.kill();
    let _ = worker.wait();
    let (code, body) = listed.ok_or("no /runs.json")?;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["runs"][0]["status"], "held");
    assert_eq!(v["runs"][0]["held_because"][0], "too few rentals");
    assert_eq!(report, Some((200, "<p>report</p>".into())));
    assert_eq!(escape.map(|r| r.0), Some(404));
    assert_eq!(other.map(|r| r.0), Some(404));
    Ok(())
}

fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
