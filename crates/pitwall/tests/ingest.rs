//! `pitwall ingest run` against kinesalite (Kinesis, started by
//! scripts/services.sh), with records put by boto3 and AWS's KPL aggregator
//! (tests/kinesis_put.py), and the lake read back: every event exactly once,
//! every bad record in the DLQ with its reason — across kill -9, resharding
//! and an S3 lake on moto.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::TestResult;
use common::kinesis::{
    admin, drain, fixture, free_port, have_kinesis, http_get, ingest, ingest_command, ingest_with,
    leases_table, metric, put, script, unique, wait_for, wait_for_within, wait_ok,
};
use common::lake::{assert_exactly_once, count_files, read_lake};

#[test]
fn every_record_format_and_every_bad_record_lands_once() -> TestResult {
    let Some((dir, stream, lake)) = fixture("formats", 2)? else {
        return Ok(());
    };
    let put = put(&stream, 1, 400, true)?;
    let child = ingest(
        &stream,
        &lake,
        &dir.path().join("leases.db"),
        &["--stop-when-idle", "2s"],
    )?;
    wait_ok(child, Duration::from_secs(60))?;
    let got = read_lake(&lake)?;
    assert_exactly_once(&got, &put);
    for reason in [
        "invalid_value",
        "not_utf8",
        "invalid_json",
        "kpl_md5_mismatch",
        "gzip_invalid",
        "empty",
    ] {
        assert!(got.dlq.contains_key(reason), "{reason} in {:?}", got.dlq);
    }
    // Run again: everything is checkpointed, nothing is read twice.
    let child = ingest(
        &stream,
        &lake,
        &dir.path().join("leases.db"),
        &["--stop-when-idle", "1s"],
    )?;
    wait_ok(child, Duration::from_secs(30))?;
    assert_exactly_once(&read_lake(&lake)?, &put);
    Ok(())
}

/// Bad input of the scraper's kind: scrapes all through a SIGTERM. Every
/// answer, until the server is gone, is a whole exposition (the worker's
/// series and its build info, each line a comment or `name value`), never
/// a half-written one, and the worker still exits 0.
#[test]
fn metrics_scraped_during_shutdown_are_whole_or_refused() -> TestResult {
    let Some((dir, stream, lake)) = fixture("scrape-stop", 2)? else {
        return Ok(());
    };
    put(&stream, 1, 200, false)?;
    let port = free_port();
    let spec = format!("sqlite:{}", dir.path().join("leases.db").display());
    let mut child = ingest_command(&stream, &lake, &spec, port, &["--roll-age", "1s"])
        .stderr(Stdio::null())
        .spawn()?;
    wait_for("the first scrape", || {
        metric(port, "pitwall_ingest_leases").is_some_and(|n| n > 0.0)
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let (mut whole, deadline) = (0, Instant::now() + Duration::from_secs(30));
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        if let Some((status, body)) = http_get(port, "/metrics") {
            assert_eq!(status, 200, "{body}");
            assert!(
                body.contains("pitwall_build_info{") && body.ends_with('\n'),
                "{body}"
            );
            for line in body.lines().filter(|l| !l.starts_with('#')) {
                let value = line.rsplit_once(' ').map(|(_, v)| v);
                assert!(
                    value.is_some_and(|v| v.parse::<f64>().is_ok()),
                    "not `name value`: {line:?}"
                );
            }
            whole += 1;
        }
    }
    let status = child.wait()?;
    assert!(status.success(), "{status}");
    assert!(whole > 0, "no scrape was answered after SIGTERM");
    Ok(())
}

/// An aggregator's view: with PITWALL_LOG_JSON set, as the chart sets it,
/// every line is one JSON object; the level comes from RUST_LOG; a shard
/// reader's lines carry its shard_id inside the worker's span.
#[test]
fn logs_are_json_lines_whose_reader_lines_carry_worker_and_shard() -> TestResult {
    let Some((dir, stream, lake)) = fixture("jsonlog", 2)? else {
        return Ok(());
    };
    put(&stream, 1, 50, false)?;
    let leases = dir.path().join("leases.db");
    let args = ["--stop-when-idle", "2s", "--roll-age", "1s"];
    let spec = format!("sqlite:{}", leases.display());
    let out = ingest_command(&stream, &lake, &spec, free_port(), &args)
        .env_remove("PITWALL_LOG")
        .env("RUST_LOG", "warn,pitwall_ingest=debug")
        .env("PITWALL_LOG_JSON", "1")
        .output()?;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
        .collect::<Result<_, _>>()?;
    let span = |l: &serde_json::Value, name: &str| {
        l["spans"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name).cloned())
    };
    let committed: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "committed")
        .collect();
    assert!(!committed.is_empty(), "{log}");
    for l in committed {
        let shard = span(l, "shard").ok_or_else(|| format!("no shard span: {l}"))?;
        assert!(
            shard["shard_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("shardId-")),
            "{l}"
        );
        assert!(
            span(l, "worker").is_some_and(|w| w["worker_id"].is_string()),
            "{l}"
        );
    }
    // The summary at the end is a log event too, not a plain line.
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("stopped: "))),
        "{log}"
    );
    Ok(())
}

#[test]
fn expired_iterators_resume_after_the_last_record_read() -> TestResult {
    let Some((dir, stream, lake)) = fixture("expire", 2)? else {
        return Ok(());
    };
    let upstream = std::env::var("PITWALL_TEST_KINESIS")?;
    // Every third GetRecords answers ExpiredIteratorException.
    let mut proxy = Command::new("python3")
        .args([&script("kinesis_expiring_proxy.py"), &upstream, "3"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(proxy.stdout.take().ok_or("proxy stdout")?);
    let mut port = String::new();
    std::io::BufRead::read_line(&mut out, &mut port)?;
    let put = put(&stream, 1, 400, false)?;
    let leases = format!("sqlite:{}", dir.path().join("leases.db").display());
    let mut cmd = ingest_command(
        &stream,
        &lake,
        &leases,
        free_port(),
        &["--stop-when-idle", "2s", "--max-records", "20"],
    );
    cmd.env(
        "AWS_ENDPOINT_URL_KINESIS",
        format!("http://127.0.0.1:{}", port.trim()),
    );
    let done = wait_ok(cmd.spawn()?, Duration::from_secs(90));
    let _ = Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status();
    let _ = proxy.wait();
    let mut report = String::new();
    std::io::Read::read_to_string(&mut out, &mut report)?;
    done?;
    let expired: u32 = report
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("proxy said {report:?}"))?;
    assert!(expired >= 3, "only {expired} iterators expired: {report}");
    assert_exactly_once(&read_lake(&lake)?, &put);
    Ok(())
}

#[test]
fn kill_9_mid_file_then_restart_is_exactly_once() -> TestResult {
    let Some((dir, stream, lake)) = fixture("kill", 1)? else {
        return Ok(());
    };
    let put = put(&stream, 1, 3000, false)?;
    let leases = dir.path().join("leases.db");
    // Small reads and small files: many commits, so the kill lands between them.
    let small = ["--max-records", "40", "--roll-bytes", "20KiB"];
    let mut child = ingest(&stream, &lake, &leases, &small)?;
    wait_for("no files written", || {
        count_files(&dir.path().join("lake")) >= 6
    });
    child.kill()?; // SIGKILL: no shutdown, buffers lost, lease still held
    child.wait()?;
    let partial = read_lake(&lake)?;
    assert!(partial.ids.len() < put.good.len(), "killed before the end");

    let mut args = small.to_vec();
    args.extend(["--stop-when-idle", "2s"]);
    wait_ok(
        ingest(&stream, &lake, &leases, &args)?,
        Duration::from_secs(90),
    )?;
    assert_exactly_once(&read_lake(&lake)?, &put);
    Ok(())
}

#[test]
fn a_split_and_a_merge_while_consuming_lose_nothing() -> TestResult {
    let Some((dir, stream, lake)) = fixture("reshard", 2)? else {
        return Ok(());
    };
    let leases = dir.path().join("leases.db");
    let child = ingest(&stream, &lake, &leases, &["--stop-when-idle", "5s"])?;
    let mut all = put(&stream, 1, 300, false)?;
    std::thread::sleep(Duration::from_millis(1500));
    admin(&["split", &stream, "shardId-000000000000"])?;
    all.add(put(&stream, 1001, 300, false)?);
    std::thread::sleep(Duration::from_millis(1500));
    // Merge the two children of the split back into one.
    let open: Vec<String> = serde_json::from_str(&admin(&["shards", &stream])?)?;
    let children: Vec<&String> = open
        .iter()
        .filter(|s| s.as_str() > "shardId-000000000001")
        .collect();
    assert_eq!(children.len(), 2, "split made two children: {open:?}");
    admin(&["merge", &stream, children[0], children[1]])?;
    all.add(put(&stream, 2001, 300, false)?);
    wait_ok(child, Duration::from_secs(90))?;
    let got = read_lake(&lake)?;
    assert_exactly_once(&got, &all);
    // Events were read from the parent, the split's children and the merge's child.
    assert!(got.shards.len() >= 4, "shards read: {:?}", got.shards);
    // Every closed shard was read to its end and checkpointed so.
    let conn = leases_table(&leases)?;
    for closed in ["shardId-000000000000", children[0], children[1]] {
        assert_eq!(
            conn.get(closed).map(String::as_str),
            Some("SHARD_END"),
            "{closed}: {conn:?}"
        );
    }
    Ok(())
}

#[test]
fn an_s3_lake_on_moto_holds_every_event_once() -> TestResult {
    if !have_kinesis() {
        return Ok(());
    }
    let bucket = std::env::var("PITWALL_TEST_S3_BUCKET")?;
    let dir = tempfile::tempdir()?;
    let stream = unique("s3");
    admin(&["create", &stream, "1"])?;
    let put = put(&stream, 1, 200, true)?;
    let lake = format!("s3://{bucket}/{}", unique("lake"));
    // Settings from a config file; the flag wins over the file's 60s.
    let config = dir.path().join("ingest.toml");
    std::fs::write(
        &config,
        format!(
            "stream = \"{stream}\"\nlake = \"{lake}\"\nleases = \"sqlite:{}\"\nlisten = \"127.0.0.1:{}\"\n\
             stop_when_idle = \"60s\"\nidle_poll = \"200ms\"\n",
            dir.path().join("leases.db").display(),
            free_port()
        ),
    )?;
    let child = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(["ingest", "run", "--config"])
        .arg(&config)
        .args(["--stop-when-idle", "2s"])
        .env("PITWALL_PII_KEY", "test-key")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    wait_ok(child, Duration::from_secs(40))?;
    assert_exactly_once(&read_lake(&lake)?, &put);
    Ok(())
}

#[test]
fn a_missing_stream_is_a_clear_error() -> TestResult {
    if !have_kinesis() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let child = ingest(
        "no-such-stream",
        &dir.path().join("lake").display().to_string(),
        &dir.path().join("l.db"),
        &[],
    )?;
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-stream") && err.contains("--stream"),
        "{err}"
    );
    Ok(())
}

#[test]
fn two_workers_share_a_stream_and_one_takes_over_when_the_other_dies() -> TestResult {
    let Some((_dir, stream, lake)) = fixture("pair", 4)? else {
        return Ok(());
    };
    let table = format!("dynamodb:{}", unique("leases"));
    let mut all = put(&stream, 1, 2000, false)?;
    let (pa, pb) = (free_port(), free_port());
    let slow = ["--max-records", "25", "--roll-bytes", "16KiB"];
    let mut a = ingest_with(
        &stream,
        &lake,
        &table,
        pa,
        &[&["--worker-id", "a"][..], &slow].concat(),
    )?;
    drain(&mut a);
    // a alone takes every lease; b, started later, must steal its share.
    wait_for("a did not take all four leases", || {
        metric(pa, "pitwall_ingest_leases") == Some(4.0)
    });
    let mut b = ingest_with(
        &stream,
        &lake,
        &table,
        pb,
        &[&["--worker-id", "b", "--stop-when-idle", "45s"][..], &slow].concat(),
    )?;
    drain(&mut b);
    // They balance by stealing, one lease per round: two each. a may have
    // read every record before b's second steal; balancing by throughput
    // then moves nothing (a drained shard carries no load), and the second
    // steal comes by count once the smoothed rates have decayed to zero,
    // some 20 s later on a loaded machine. b's idle window outlasts that,
    // or b would stop, drained, holding one lease.
    wait_for_within(
        "workers did not balance 2/2",
        Duration::from_secs(60),
        || {
            metric(pa, "pitwall_ingest_leases") == Some(2.0)
                && metric(pb, "pitwall_ingest_leases") == Some(2.0)
        },
    );
    assert_eq!(http_get(pa, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(pa, "/readyz").map(|r| r.0), Some(200));
    a.kill()?; // kill -9: a's leases stay owned by a until they expire
    a.wait()?;
    let killed = Instant::now();
    wait_for_within("b did not take a's leases", Duration::from_secs(15), || {
        metric(pb, "pitwall_ingest_leases") == Some(4.0)
    });
    // The bound: b notices a's last renewal at its next listing (≤ 1.5s),
    // waits the failover time (3s) by its own clock, and takes at the next
    // listing (≤ 1.5s); one second of slack for a loaded machine.
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(1500 + 3000 + 1500 + 1000),
        "took {took:?}"
    );
    all.add(put(&stream, 5001, 500, false)?);
    wait_ok(b, Duration::from_secs(90))?;
    assert_exactly_once(&read_lake(&lake)?, &all);
    Ok(())
}

#[test]
fn sigterm_commits_checkpoints_and_hands_the_leases_over_at_once() -> TestResult {
    let Some((dir, stream, lake)) = fixture("term", 2)? else {
        return Ok(());
    };
    let table = format!("dynamodb:{}", unique("leases"));
    let all = put(&stream, 1, 600, false)?;
    let pa = free_port();
    // Long failover and roll age: only a graceful stop explains a quick handover and full files.
    let slow = ["--failover", "30s", "--roll-age", "10m"];
    let a = ingest_with(
        &stream,
        &lake,
        &table,
        pa,
        &[&["--worker-id", "a"][..], &slow].concat(),
    )?;
    wait_for("a did not take both leases", || {
        metric(pa, "pitwall_ingest_leases") == Some(2.0)
    });
    std::thread::sleep(Duration::from_secs(2)); // a reads everything, commits nothing yet
    assert_eq!(
        count_files(&dir.path().join("lake")),
        0,
        "nothing committed before the signal"
    );
    let status = Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()?;
    assert!(status.success());
    wait_ok(a, Duration::from_secs(20))?;
    assert_exactly_once(&read_lake(&lake)?, &all);

    // The leases were released: b takes them at once, not after 30s, and reads nothing twice.
    let started = Instant::now();
    let b = ingest_with(
        &stream,
        &lake,
        &table,
        free_port(),
        &[&["--worker-id", "b", "--stop-when-idle", "1s"][..], &slow].concat(),
    )?;
    wait_ok(b, Duration::from_secs(20))?;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "b waited for expiry"
    );
    assert_exactly_once(&read_lake(&lake)?, &all);
    Ok(())
}

#[test]
fn a_worker_wide_buffer_budget_commits_the_largest_shard_early() -> TestResult {
    let Some((dir, stream, lake)) = fixture("budget", 4)? else {
        return Ok(());
    };
    let put = put(&stream, 1, 1200, false)?;
    // Size and age never trigger a commit here; only the budget (and the stop) can.
    let args = [
        "--max-buffered",
        "24KiB",
        "--roll-bytes",
        "1GiB",
        "--roll-age",
        "10m",
        "--max-records",
        "20",
        "--stop-when-idle",
        "2s",
    ];
    wait_ok(
        ingest(&stream, &lake, &dir.path().join("leases.db"), &args)?,
        Duration::from_secs(90),
    )?;
    assert_exactly_once(&read_lake(&lake)?, &put);
    // Events fall in three hours: one commit per shard at the stop would give
    // at most 4 × 3 files.
    let files = count_files(&dir.path().join("lake"));
    assert!(
        files > 12,
        "only {files} files: the budget never forced a commit"
    );
    Ok(())
}

/// `--stop-when-idle` for a group: three workers draining one stream each
/// stop once their own shards are quiet and nothing is left to take; a
/// worker that stops first hands its leases to the others, who stop in turn.
#[test]
fn three_workers_with_stop_when_idle_all_exit_and_land_everything_once() -> TestResult {
    let Some((_dir, stream, lake)) = fixture("idle3", 6)? else {
        return Ok(());
    };
    let table = format!("dynamodb:{}", unique("leases"));
    let all = put(&stream, 1, 1500, false)?;
    let workers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|w| {
            ingest_with(
                &stream,
                &lake,
                &table,
                free_port(),
                &[
                    "--worker-id",
                    w,
                    "--stop-when-idle",
                    "3s",
                    "--max-records",
                    "50",
                ],
            )
        })
        .collect::<Result<_, _>>()?;
    // Before the fix none exited: each waited for the others' leases.
    for w in workers {
        wait_ok(w, Duration::from_secs(90))?;
    }
    assert_exactly_once(&read_lake(&lake)?, &all);
    Ok(())
}

/// A lease stolen to balance is handed over by its live owner: it commits
/// and checkpoints what it read, then gives the lease to the worker that
/// asked, which goes on from that checkpoint. Roll settings that never
/// commit on their own show it: files appear only through the hand-over.
#[test]
fn a_stolen_lease_is_committed_checkpointed_and_handed_over_by_its_live_owner() -> TestResult {
    let Some((dir, stream, lake)) = fixture("handover", 2)? else {
        return Ok(());
    };
    let table = format!("dynamodb:{}", unique("leases"));
    let all = put(&stream, 1, 600, false)?;
    let (pa, pb) = (free_port(), free_port());
    let slow = [
        "--failover",
        "12s",
        "--roll-age",
        "10m",
        "--roll-bytes",
        "1GiB",
    ];
    let a = ingest_with(
        &stream,
        &lake,
        &table,
        pa,
        &[&["--worker-id", "a"][..], &slow].concat(),
    )?;
    wait_for("a did not take both leases", || {
        metric(pa, "pitwall_ingest_leases") == Some(2.0)
    });
    std::thread::sleep(Duration::from_secs(2)); // a reads everything, commits nothing
    assert_eq!(count_files(&dir.path().join("lake")), 0);
    let mut b = ingest_with(
        &stream,
        &lake,
        &table,
        pb,
        &[&["--worker-id", "b", "--stop-when-idle", "3s"][..], &slow].concat(),
    )?;
    drain(&mut b);
    // b asks, a commits and hands over (a is still running), b holds one.
    wait_for("a did not commit the lease it handed over", || {
        count_files(&dir.path().join("lake")) > 0
    });
    wait_for("b did not get the handed-over lease", || {
        metric(pb, "pitwall_ingest_leases") == Some(1.0)
            && metric(pa, "pitwall_ingest_leases") == Some(1.0)
    });
    let status = Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()?;
    assert!(status.success());
    wait_ok(a, Duration::from_secs(30))?;
    wait_ok(b, Duration::from_secs(60))?;
    assert_exactly_once(&read_lake(&lake)?, &all);
    Ok(())
}
