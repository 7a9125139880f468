//! `pitwall score watch` as a process: one watcher acts on a state while a
//! second waits on the lease (SQLite), SIGTERM finishes the cycle under way
//! and hands the lease over, and a cycle whose rentals cannot be read fails
//! alone, leaving the state as it was, with the next cycle going on.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;

use common::kinesis::{free_port, http_get, metric, unique, wait_for};
use common::{TestResult, create_topic, pitwall_ok, recorder};

fn fleet(dir: &Path) -> TestResult {
    pitwall_ok(&[
        "gen",
        "fleet",
        "--out",
        &dir.display().to_string(),
        "--rentals",
        "300",
        "--seed",
        "3",
    ])?;
    Ok(())
}

fn watcher(dir: &Path, rentals: &Path, name: &str, port: u16) -> Result<Child, common::Error> {
    Ok(watch_command(dir, rentals, name, port).spawn()?)
}

fn watch_command(dir: &Path, rentals: &Path, name: &str, port: u16) -> Command {
    watch_command_on(
        &dir.join("state").display().to_string(),
        dir,
        rentals,
        name,
        port,
    )
}

/// A watcher of the state at `state` (a directory or s3://), its other files in `dir`.
fn watch_command_on(state: &str, dir: &Path, rentals: &Path, name: &str, port: u16) -> Command {
    common::score_watch_command(state, dir, "leases.db", rentals, name, port)
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
    // The commit is inside b's cycle; the cycle is on the status page once it ends.
    wait_for("b's first cycle on its status page", || {
        metric(pb, "pitwall_watch_cycle_duration_seconds_count").is_some_and(|n| n >= 1.0)
    });
    let (_, status) = http_get(pb, "/status.json").ok_or("status.json")?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    assert_eq!(status["lease_held"], true);
    assert!(status["cycles"][0]["report"]["rentals_evaluated"].is_u64());
    let (code, page) = http_get(pb, "/").ok_or("status page")?;
    assert!(code == 200 && page.contains("score watch") && page.contains("/status.json"));
    assert_eq!(status["leases"][0]["owner"], "b");
    sigterm(&b)?;
    exits_ok(b, Duration::from_secs(30))?;

    // Both watchers' commits form one chain of the state's log.
    pitwall_ok(&[
        "score",
        "state",
        "show",
        "--state",
        &dir.path().join("state").display().to_string(),
        "--json",
    ])?;
    Ok(())
}

#[test]
fn a_cycle_that_cannot_read_its_rentals_fails_alone_and_the_next_goes_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    // Not there yet: the cycle fails with the operating system's word for it.
    let rentals = dir.path().join("rentals.parquet");
    let port = free_port();
    let (hook, alerts) = recorder()?;
    let w = watch_command(dir.path(), &rentals, "w", port)
        .env(
            "PITWALL_SLACK_WEBHOOK_URL",
            format!("{hook}/services/T/B/X"),
        )
        .spawn()?;
    wait_for("a failed cycle", || {
        http_get(port, "/metrics")
            .is_some_and(|(_, m)| m.contains("pitwall_watch_cycles_total{outcome=\"failed\"} 1"))
    });
    assert_eq!(log_entries(dir.path()), 0, "a failed cycle commits nothing");
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(503));
    let (_, fired) = alerts.recv_timeout(Duration::from_secs(10))?;
    assert!(
        fired.contains("a cycle failed") && fired.contains("rentals"),
        "{fired}"
    );
    wait_for("more failed cycles", || {
        http_get(port, "/metrics").is_some_and(|(_, m)| m.contains("outcome=\"failed\"} 3"))
    });
    assert!(alerts.try_recv().is_err(), "a lasting failure alerts once");
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
    let log = exit_log(w, Duration::from_secs(30))?;
    // Someone tailing the pod's logs sees the failure once, with its
    // reason said once, and its end.
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a cycle failed") && l.contains("pitwall_score_watch"))
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert!(failed[0].contains("ERROR"), "{log}");
    assert!(failed[0].contains("rentals.parquet"), "{log}");
    assert_eq!(failed[0].matches("(os error 2)").count(), 1, "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("resolved") && l.contains("pitwall_score_watch"))
            .count(),
        1,
        "{log}"
    );
    Ok(())
}

/// The stderr of a watcher that exits successfully within `within`.
fn exit_log(mut child: Child, within: Duration) -> Result<String, common::Error> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let out = child.wait_with_output()?;
            let log = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(status.success(), "{status}: {log}");
            return Ok(log);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Err("the watcher did not stop".into())
}

/// Found by bench/score_soak.py: a watcher of an s3:// state panicked at
/// start ("Cannot start a runtime from within a runtime"), since opening
/// the state blocked on the S3 client inside the watcher's runtime. Every
/// watcher test before it used a local state.
#[test]
fn score_watch_on_an_s3_state_starts_and_commits() -> TestResult {
    let Some(bucket) = common::s3_bucket() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    let state = format!("s3://{bucket}/{}/state", unique("watch-s3"));
    let out = watch_command_on(
        &state,
        dir.path(),
        &dir.path().join("fleet/rentals.parquet"),
        "s3",
        free_port(),
    )
    .args(["--cycles", "2"])
    .output()?;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {log}", out.status);
    assert!(!log.contains("panicked"), "{log}");
    let shown = pitwall_ok(&["score", "state", "show", "--state", &state, "--json"])?;
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
    assert_eq!(shown["last_run"]["seq"], 2, "{shown}");
    Ok(())
}

#[test]
fn a_lake_nothing_has_landed_in_yet_is_an_empty_input_not_a_failed_cycle() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Rentals that all end in the future (a generated fleet spans a year):
    // this fresh deployment has none to judge yet, so no gate holds it.
    let later = chrono::Utc::now() + chrono::Duration::days(400);
    pitwall_ok(&[
        "gen",
        "fleet",
        "--out",
        &dir.path().join("fleet").display().to_string(),
        "--rentals",
        "50",
        "--seed",
        "3",
        "--end",
        &later.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ])?;
    let rentals = dir.path().join("fleet/rentals.parquet");
    std::fs::remove_dir_all(dir.path().join("fleet/telemetry"))?;
    let port = free_port();
    let out = watch_command(dir.path(), &rentals, "w", port)
        .args(["--cycles", "1"])
        .output()?;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(log_entries(dir.path()), 1, "the cycle committed: {log}");
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no telemetry at"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains("fleet/telemetry"),
        "{log}"
    );
    assert!(!log.contains("a cycle failed"), "{log}");
    Ok(())
}

/// Member keys on a topic, read from the start.
fn topic_keys(brokers: &str, topic: &str) -> Result<Vec<String>, common::Error> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("watch-keys"))
        .set("auto.offset.reset", "earliest")
        .create()?;
    c.subscribe(&[topic])?;
    let (mut keys, mut quiet) = (Vec::new(), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && (keys.is_empty() || quiet.elapsed() < Duration::from_secs(3))
    {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            keys.push(String::from_utf8_lossy(m?.key().unwrap_or_default()).into_owned());
            quiet = Instant::now();
        }
    }
    Ok(keys)
}

#[test]
fn a_failed_publication_alerts_and_the_next_one_catches_up() -> TestResult {
    let Ok(brokers) = std::env::var("PITWALL_TEST_KAFKA") else {
        assert!(
            std::env::var_os("PITWALL_REQUIRE_SERVICES").is_none(),
            "PITWALL_TEST_KAFKA is not set"
        );
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    let rentals = dir.path().join("fleet/rentals.parquet");
    let topic = unique("watch-catchup");
    let registry = format!("file:{}", dir.path().join("registry").display());
    let (hook, alerts) = recorder()?;
    // No broker listens on a free port: the cycle commits, the publication fails.
    let down = free_port();
    let out = watch_command(dir.path(), &rentals, "w", free_port())
        .args([
            "--cycles",
            "1",
            "--brokers",
            &format!("127.0.0.1:{down}"),
            "--kafka-timeout",
            "2s",
        ])
        .args([
            "--topic",
            &topic,
            "--registry",
            &registry,
            "--transactional=false",
        ])
        .env(
            "PITWALL_SLACK_WEBHOOK_URL",
            format!("{hook}/services/T/B/X"),
        )
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        log_entries(dir.path()),
        1,
        "the cycle committed before publishing"
    );
    let (_, fired) = alerts.recv_timeout(Duration::from_secs(10))?;
    assert!(fired.contains("publication failed"), "{fired}");

    create_topic(&brokers, &topic)?;
    let out = watch_command(dir.path(), &rentals, "w", free_port())
        .args(["--cycles", "1", "--brokers", &brokers])
        .args([
            "--topic",
            &topic,
            "--registry",
            &registry,
            "--transactional=false",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = topic_keys(&brokers, &topic)?;
    let eligible = eligible_members(&dir.path().join("state"))?;
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), keys.len(), "no member sent twice");
    assert_eq!(
        sorted, eligible,
        "the next publication sent every eligible member the failed one missed"
    );
    Ok(())
}

/// The eligible members of a state's snapshot, by `score state export`.
fn eligible_members(state: &Path) -> Result<Vec<String>, common::Error> {
    use arrow_array::cast::AsArray;
    let out_dir = state.with_file_name("export");
    pitwall_ok(&[
        "score",
        "state",
        "export",
        "--state",
        &state.display().to_string(),
        "--out",
        &out_dir.display().to_string(),
    ])?;
    let file = std::fs::File::open(out_dir.join("member_scores.parquet"))?;
    let mut ids = Vec::new();
    for b in
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?
    {
        let b = b?;
        let id = b
            .column_by_name("member_id")
            .ok_or("member_id")?
            .as_string::<i32>();
        let eligible = b.column_by_name("eligible").ok_or("eligible")?.as_boolean();
        ids.extend(
            (0..b.num_rows())
                .filter(|&i| eligible.value(i))
                .map(|i| id.value(i).to_string()),
        );
    }
    ids.sort();
    Ok(ids)
}

#[test]
fn a_watcher_starts_each_cycle_from_the_snapshot_it_committed() -> TestResult {
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    let rentals = dir.path().join("fleet/rentals.parquet");
    let out = watch_command(dir.path(), &rentals, "w", free_port())
        .args(["--cycles", "3"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cycles: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("runs-w"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    cycles.sort();
    assert_eq!(cycles.len(), 3);
    let in_memory: Vec<bool> = cycles
        .iter()
        .map(|c| -> Result<bool, common::Error> {
            let run: serde_json::Value =
                serde_json::from_slice(&std::fs::read(c.join("run.json"))?)?;
            Ok(run["state"]["state_io"]["snapshot_in_memory"] == true)
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(in_memory, vec![false, true, true]);
    Ok(())
}

/// A watcher killed mid-work and replaced by another process: the state
/// the second one leaves equals one full run at its last as_of, whatever
/// the first had in memory when it died.
#[test]
fn a_watcher_killed_and_replaced_reaches_the_state_a_full_run_gives() -> TestResult {
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    let rentals = dir.path().join("fleet/rentals.parquet");
    let mut first = watcher(dir.path(), &rentals, "a", free_port())?;
    wait_for("a's second commit", || log_entries(dir.path()) >= 2);
    first.kill()?;
    first.wait()?;
    let out = watch_command(dir.path(), &rentals, "b", free_port())
        // a's lease must lapse (3 s) before b takes it.
        .args(["--cycles", "2"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = dir.path().join("state").display().to_string();
    let show = pitwall_ok(&["score", "state", "show", "--state", &state, "--json"])?;
    let show: serde_json::Value = serde_json::from_slice(&show.stdout)?;
    let as_of = show["last_run"]["as_of"]
        .as_str()
        .ok_or("as_of")?
        .to_string();
    let full = dir.path().join("full");
    pitwall_ok(&[
        "score",
        "run",
        "--rentals",
        &rentals.display().to_string(),
        "--telemetry",
        &dir.path().join("fleet/telemetry").display().to_string(),
        "--as-of",
        &as_of,
        "--out",
        &full.display().to_string(),
    ])?;
    let export = dir.path().join("export");
    pitwall_ok(&[
        "score",
        "state",
        "export",
        "--state",
        &state,
        "--out",
        &export.display().to_string(),
    ])?;
    let read = |p: std::path::PathBuf| -> Result<Vec<String>, common::Error> {
        let f = std::fs::File::open(p)?;
        let batches: Vec<arrow_array::RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)?
                .build()?
                .collect::<Result<_, _>>()?;
        Ok(pitwall_score_state::snapshot::from_batches(&batches)?
            .iter()
            .map(|m| format!("{m:?}"))
            .collect())
    };
    let (got, want) = (
        read(export.join("member_scores.parquet"))?,
        read(full.join("member_scores.parquet"))?,
    );
    assert!(!want.is_empty());
    assert_eq!(got, want);
    Ok(())
}

/// Found by bench/score_soak.py: a rescore run beside a watcher that
/// commits every few seconds lost the commit race to it again and again.
/// With `--leases` the run asks the watcher for the state's lease, which
/// hands it over between two cycles, commits its rescore, and lets the
/// watcher take the lease back.
#[test]
fn a_rescore_beside_a_running_watcher_takes_its_lease_and_gives_it_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    let rentals = dir.path().join("fleet/rentals.parquet");
    let port = free_port();
    let w = watcher(dir.path(), &rentals, "w", port)?;
    wait_for("the watcher's first commit", || {
        log_entries(dir.path()) >= 1
    });
    let state = dir.path().join("state").display().to_string();
    let leases = format!("sqlite:{}", dir.path().join("leases.db").display());
    // `now` is read once the lease is held: the watcher's last run may be
    // later than the moment the command starts (a fixed time flaked so).
    let out = pitwall_ok(&[
        "score",
        "run",
        "--state",
        &state,
        "--rentals",
        &rentals.display().to_string(),
        "--telemetry",
        &dir.path().join("fleet/telemetry").display().to_string(),
        "--as-of",
        "now",
        "--rescore-from",
        "2025-01-01T00:00:00Z",
        "--rescore-to",
        "2030-01-01T00:00:00Z",
        "--out",
        &dir.path().join("rescore").display().to_string(),
        "--leases",
        &leases,
        "--failover",
        "3s",
        "--lease-wait",
        "60s",
    ])?;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("holding the state's lease"), "{said}");
    let show = pitwall_ok(&["score", "state", "show", "--state", &state, "--json"])?;
    let show: serde_json::Value = serde_json::from_slice(&show.stdout)?;
    let rescored = show["last_run"]["seq"].as_u64().ok_or("seq")?;
    assert!(show["last_run"]["rescore"].is_array(), "{show}");
    // The watcher takes the lease back and goes on, long before its
    // failover time would have let it.
    wait_for("the watcher's commit after the rescore", || {
        log_entries(dir.path()) as u64 > rescored
    });
    assert_eq!(metric(port, "pitwall_watch_lease_held"), Some(1.0));
    sigterm(&w)?;
    let log = exit_log(w, Duration::from_secs(30))?;
    assert!(log.contains("handed the state's lease over"), "{log}");
    assert!(
        !log.contains("lost the state's lease"),
        "not an alert: {log}"
    );
    Ok(())
}

/// Found by bench/score_soak.py in CI: a watcher stopped (TERM) while it
/// was still starting died by the signal (exit 143) instead of exiting 0:
/// its handler was installed only after the state, the leases and the HTTP
/// side were set up, which under a slow S3 takes seconds. Here every S3
/// answer takes a second.
#[test]
fn a_watcher_terminated_as_it_starts_exits_cleanly() -> TestResult {
    let Some(bucket) = common::s3_bucket() else {
        return Ok(());
    };
    let proxy = common::proxy::Proxy::start(
        &std::env::var("AWS_ENDPOINT_URL")?,
        &[
            "--rate",
            "1",
            "--s3",
            "slow",
            "--slow",
            "1",
            "--dynamodb-rate",
            "0",
        ],
    )?;
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    let state = format!("s3://{bucket}/{}/state", unique("watch-term"));
    let w = watch_command_on(
        &state,
        dir.path(),
        &dir.path().join("fleet/rentals.parquet"),
        "t",
        free_port(),
    )
    .env(
        "AWS_ENDPOINT_URL_S3",
        format!("http://127.0.0.1:{}", proxy.port),
    )
    .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&w)?;
    exits_ok(w, Duration::from_secs(60))?;
    Ok(())
}

/// An aggregator's view: with PITWALL_LOG_JSON set (as the chart sets it)
/// and the level from RUST_LOG, every line is one JSON object, and a
/// cycle's lines carry its number and its run's id, so one run's lines can
/// be found together.
#[test]
fn logs_are_json_lines_whose_cycle_lines_carry_cycle_and_run_id() -> TestResult {
    let dir = tempfile::tempdir()?;
    fleet(&dir.path().join("fleet"))?;
    let rentals = dir.path().join("fleet/rentals.parquet");
    let w = watch_command(dir.path(), &rentals, "w", free_port())
        .env_remove("PITWALL_LOG")
        .env("RUST_LOG", "info")
        .env("PITWALL_LOG_JSON", "true")
        .spawn()?;
    wait_for("a committed cycle", || log_entries(dir.path()) >= 1);
    sigterm(&w)?;
    let log = exit_log(w, Duration::from_secs(30))?;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
        .collect::<Result<_, _>>()?;
    let in_cycle: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "cycle" || l["spans"][0]["name"] == "cycle")
        .collect();
    assert!(!in_cycle.is_empty(), "no line inside a cycle: {log}");
    let first_run = in_cycle
        .iter()
        .find(|l| l["spans"][0]["run_id"].is_string())
        .ok_or_else(|| format!("no cycle line names its run: {log}"))?;
    assert_eq!(first_run["spans"][0]["cycle"], 1, "{log}");
    assert!(lines.iter().all(|l| l["level"].is_string()), "{log}");
    // Recorded once: a field recorded twice is written twice, and a JSON
    // object with a key twice is read differently by every parser.
    for raw in log.lines() {
        assert!(raw.matches("\"run_id\"").count() <= 2, "{raw}");
    }
    Ok(())
}
