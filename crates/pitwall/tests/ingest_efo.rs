//! `pitwall ingest run --consumer efo:NAME` against kinesis-mock (npm
//! kinesis-local, started by scripts/services.sh): the consumer registered,
//! one SubscribeToShard per shard renewed every few seconds, a kill -9, a
//! split and a merge, and the lake read back: every event exactly once, parents read
//! to their end before their children. kinesis-mock never ends a split
//! parent's subscription with ChildShards: the reader learns the parent is
//! closed from ListShards and finds its end with one GetRecords (which
//! names the children); see `pitwall-ingest::source`.

use std::time::Duration;

mod common;

use common::TestResult;
use common::kinesis::{
    admin_at, drain, fixture_at, free_port, ingest_command, leases_table, metric, put_at, unique,
    wait_for, wait_for_within, wait_ok,
};
use common::lake::{assert_exactly_once, count_files, read_lake};

/// kinesis-mock's URL, or None (the test is skipped) without it.
fn mock() -> Option<String> {
    if let Ok(url) = std::env::var("PITWALL_TEST_KINESIS_MOCK") {
        return Some(url);
    }
    if std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() {
        panic!("PITWALL_TEST_KINESIS_MOCK is not set: start the services with scripts/services.sh");
    }
    eprintln!("skipped: no kinesis-mock (run scripts/test.sh)");
    None
}

fn efo_worker(
    mock: &str,
    stream: &str,
    lake: &str,
    leases: &std::path::Path,
    extra: &[&str],
) -> std::process::Command {
    let spec = format!("sqlite:{}", leases.display());
    efo_worker_with(mock, stream, lake, &spec, free_port(), extra)
}

/// [`efo_worker`] with any lease table and a known status port.
fn efo_worker_with(
    mock: &str,
    stream: &str,
    lake: &str,
    leases: &str,
    port: u16,
    extra: &[&str],
) -> std::process::Command {
    let efo = [
        "--consumer",
        "efo:pitwall-test",
        "--efo-renew",
        "3s",
        "--discover-every",
        "2s",
    ];
    let mut cmd = ingest_command(stream, lake, leases, port, &[&efo[..], extra].concat());
    cmd.env("AWS_ENDPOINT_URL_KINESIS", mock);
    cmd
}

#[test]
fn efo_reads_every_record_once_across_renewals_and_a_kill() -> TestResult {
    let Some(mock) = mock() else { return Ok(()) };
    let (dir, stream, lake) = fixture_at(Some(&mock), "efo-kill", 2)?;
    let leases = dir.path().join("leases.db");
    let small = ["--roll-bytes", "8KiB", "--roll-age", "1s"];
    let mut all = put_at(Some(&mock), &stream, 1, 600, true)?;
    let mut child = efo_worker(&mock, &stream, &lake, &leases, &small).spawn()?;
    wait_for("no files written", || {
        count_files(&dir.path().join("lake")) >= 4
    });
    child.kill()?; // SIGKILL: buffers lost, leases still held, subscriptions cut
    child.wait()?;
    all.add(put_at(Some(&mock), &stream, 1001, 600, false)?);
    // Longer than several renewals (3 s): each resumes after the last record.
    let mut args = small.to_vec();
    args.extend(["--stop-when-idle", "8s"]);
    let worker = efo_worker(&mock, &stream, &lake, &leases, &args).spawn()?;
    std::thread::sleep(Duration::from_secs(4));
    all.add(put_at(Some(&mock), &stream, 2001, 300, false)?);
    wait_ok(worker, Duration::from_secs(120))?;
    assert_exactly_once(&read_lake(&lake)?, &all);
    Ok(())
}

#[test]
fn efo_follows_a_split_and_a_merge_parents_to_their_end_first() -> TestResult {
    let Some(mock) = mock() else { return Ok(()) };
    let (dir, stream, lake) = fixture_at(Some(&mock), "efo-split", 1)?;
    let leases = dir.path().join("leases.db");
    let worker = efo_worker(
        &mock,
        &stream,
        &lake,
        &leases,
        &["--roll-age", "1s", "--stop-when-idle", "8s"],
    )
    .spawn()?;
    let mut all = put_at(Some(&mock), &stream, 1, 300, false)?;
    std::thread::sleep(Duration::from_secs(2));
    admin_at(Some(&mock), &["split", &stream, "shardId-000000000000"])?;
    all.add(put_at(Some(&mock), &stream, 1001, 300, false)?);
    std::thread::sleep(Duration::from_secs(2));
    // Merge the split's two children back into one.
    let children: Vec<String> =
        serde_json::from_str(&admin_at(Some(&mock), &["shards", &stream])?)?;
    assert_eq!(children.len(), 2, "split made two children: {children:?}");
    admin_at(Some(&mock), &["merge", &stream, &children[0], &children[1]])?;
    all.add(put_at(Some(&mock), &stream, 2001, 300, false)?);
    wait_ok(worker, Duration::from_secs(120))?;
    let got = read_lake(&lake)?;
    assert_exactly_once(&got, &all);
    // The parent, the split's children and the merge's child were read,
    // each closed one to its end.
    assert_eq!(got.shards.len(), 4, "shards read: {:?}", got.shards);
    let checkpoints = leases_table(&leases)?;
    for closed in ["shardId-000000000000", &children[0], &children[1]] {
        assert_eq!(
            checkpoints.get(closed).map(String::as_str),
            Some("SHARD_END"),
            "{closed}: {checkpoints:?}"
        );
    }
    Ok(())
}

/// Two EFO workers on one consumer and a DynamoDB lease table (moto): they
/// balance one shard each; a is killed with its subscription still open on
/// the service, and b takes a's shard over, subscribing to it while the
/// dead worker's subscription may still hold it (ResourceInUse: retried),
/// from a's last checkpoint. Every record lands once.
#[test]
fn a_second_efo_worker_takes_over_a_killed_ones_shard() -> TestResult {
    let Some(mock) = mock() else { return Ok(()) };
    let (_dir, stream, lake) = fixture_at(Some(&mock), "efo-pair", 2)?;
    let table = format!("dynamodb:{}", unique("efo-leases"));
    let mut all = put_at(Some(&mock), &stream, 1, 600, false)?;
    let (pa, pb) = (free_port(), free_port());
    let small = ["--roll-bytes", "8KiB", "--roll-age", "1s"];
    let mut a = efo_worker_with(
        &mock,
        &stream,
        &lake,
        &table,
        pa,
        &[&["--worker-id", "a"][..], &small].concat(),
    )
    .spawn()?;
    drain(&mut a);
    wait_for("a did not take both leases", || {
        metric(pa, "pitwall_ingest_leases") == Some(2.0)
    });
    let mut b = efo_worker_with(
        &mock,
        &stream,
        &lake,
        &table,
        pb,
        &[&["--worker-id", "b", "--stop-when-idle", "15s"][..], &small].concat(),
    )
    .spawn()?;
    drain(&mut b);
    wait_for("the workers did not balance 1/1", || {
        metric(pa, "pitwall_ingest_leases") == Some(1.0)
            && metric(pb, "pitwall_ingest_leases") == Some(1.0)
    });
    all.add(put_at(Some(&mock), &stream, 1001, 300, false)?);
    a.kill()?; // SIGKILL: its lease stays a's until it expires, its subscription open
    a.wait()?;
    wait_for_within("b did not take a's lease", Duration::from_secs(30), || {
        metric(pb, "pitwall_ingest_leases") == Some(2.0)
    });
    all.add(put_at(Some(&mock), &stream, 2001, 300, false)?);
    wait_ok(b, Duration::from_secs(120))?;
    assert_exactly_once(&read_lake(&lake)?, &all);
    Ok(())
}
