//! `pitwall ingest replay`: the legacy output fills what the stream path
//! missed without doubling what it landed; the DLQ after a contract fix
//! lands what now passes; replaying twice leaves the lake as after once.

use std::collections::BTreeMap;
use std::path::Path;

mod common;

use common::{
    Error, TestResult, legacy_event, pitwall, reconcile, s3_bucket, upload, write_legacy,
};

/// Every file under the lake, by relative path, with its bytes.
fn snapshot(root: &Path) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root)?.display().to_string();
                out.insert(rel, std::fs::read(&path)?);
            }
        }
    }
    Ok(out)
}

fn run_json(args: &[&str]) -> Result<serde_json::Value, Error> {
    let out = pitwall(args)?;
    if !out.status.success() {
        return Err(format!(
            "pitwall {args:?} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The stream path's landing of events `ns`, as an export of their records
/// ingested under a shard of its own, arriving in the range's first hour
/// (so what it refuses is in the DLQ of that day, as the stream's would be).
fn stream_lands(
    dir: &Path,
    name: &str,
    ns: std::ops::RangeInclusive<u64>,
    lake: &str,
) -> TestResult {
    let hour = dir.join("stream/2026/11/01/10");
    std::fs::create_dir_all(&hour)?;
    let path = hour.join(format!("{name}.jsonl"));
    let lines: Vec<String> = ns.map(|n| legacy_event(n).0.to_string()).collect();
    std::fs::write(&path, lines.join("\n") + "\n")?;
    let input = path.display().to_string();
    run_json(&[
        "ingest", "files", "--input", &input, "--lake", lake, "--json",
    ])?;
    Ok(())
}

fn replay_legacy(legacy: &str, lake: &str) -> Result<serde_json::Value, Error> {
    run_json(&[
        "ingest",
        "replay",
        "--legacy",
        legacy,
        "--lake",
        lake,
        "--from",
        "2026-11-01T10:00:00Z",
        "--to",
        "2026-11-01T14:00:00Z",
        "--json",
    ])
}

#[test]
fn a_legacy_replay_fills_what_the_stream_missed_and_twice_is_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let legacy_dir = dir.path().join("legacy");
    let good = write_legacy(&legacy_dir, &|_, _| {})?;
    let lake_dir = dir.path().join("lake");
    let (legacy, lake) = (
        legacy_dir.display().to_string(),
        lake_dir.display().to_string(),
    );
    let snap = || snapshot(&lake_dir);
    fills_the_gap_idempotently(dir.path(), &legacy, &lake, good.len(), &snap)
}

#[test]
fn a_legacy_replay_on_s3_fills_the_gap_and_twice_is_once() -> TestResult {
    let Some(bucket) = s3_bucket() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let good = write_legacy(&dir.path().join("legacy"), &|_, _| {})?;
    let prefix = format!("replay-{}", std::process::id());
    upload(
        &dir.path().join("legacy"),
        &bucket,
        &format!("{prefix}/legacy"),
    )?;
    let legacy = format!("s3://{bucket}/{prefix}/legacy");
    let lake = format!("s3://{bucket}/{prefix}/lake");
    // The listing with ETags (MD5 of each object) stands in for the bytes.
    let list = || list_s3(&bucket, &format!("{prefix}/lake/"));
    fills_the_gap_idempotently(dir.path(), &legacy, &lake, good.len(), &list)
}

/// Objects under `s3://bucket/prefix` with their bytes.
fn list_s3(bucket: &str, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let out = std::process::Command::new("python3")
        .args(["-c", LIST_S3, bucket, prefix])
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into());
    }
    let listed: BTreeMap<String, String> = serde_json::from_slice(&out.stdout)?;
    Ok(listed
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect())
}

/// Key → ETag (the MD5 of the bytes for a single PUT).
const LIST_S3: &str = r#"
import json, os, sys, boto3
bucket, prefix = sys.argv[1:3]
s3 = boto3.client("s3", region_name=os.environ.get("AWS_REGION", "us-east-1"))
out = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        out[o["Key"]] = o["ETag"]
print(json.dumps(out))
"#;

/// The stream path lands part of the range, a replay fills the rest without
/// doubling anything, a second replay changes nothing; after the stream lands
/// more, the next replay leaves those out and removes its files that no
/// longer hold anything new. `snap` reads the whole lake.
fn fills_the_gap_idempotently(
    dir: &Path,
    legacy: &str,
    lake: &str,
    good: usize,
    snap: &dyn Fn() -> Result<BTreeMap<String, Vec<u8>>, Error>,
) -> TestResult {
    // Events 1–100 (40 and 80 are refused) landed before the stream path stopped.
    stream_lands(dir, "stream-a", 1..=100, lake)?;
    let first = replay_legacy(legacy, lake)?;
    assert_eq!(first["counts"]["already_landed"], 98, "{first:#}");
    assert_eq!(first["counts"]["events"], good - 98);
    assert_eq!(first["counts"]["dlq"]["invalid_value"], 7);
    // 40 and 80 are in the DLQ already: the stream path refused them.
    assert_eq!(first["counts"]["already_in_dlq"], 2, "{first:#}");
    let (code, r) = reconcile(legacy, lake, &[])?;
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["totals"]["matched"], good);
    assert_eq!(r["totals"]["lake_duplicates"], 0);
    assert_eq!(dlq_entries(&r), 7, "each refused event once: {r:#}");

    let after_once = snap()?;
    let second = replay_legacy(legacy, lake)?;
    assert_eq!(second["counts"], first["counts"]);
    assert_eq!(snap()?, after_once, "a second replay changed the lake");

    stream_lands(dir, "stream-b", 101..=200, lake)?;
    let third = replay_legacy(legacy, lake)?;
    // 120, 160 and 200 are refused.
    assert_eq!(third["counts"]["already_landed"], 98 + 97, "{third:#}");
    assert_eq!(third["counts"]["already_in_dlq"], 5, "{third:#}");
    assert!(
        third["stale_removed"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{third:#}"
    );
    let (code, r) = reconcile(legacy, lake, &[])?;
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["totals"]["matched"], good);
    assert_eq!(r["totals"]["lake_duplicates"], 0);
    assert_eq!(dlq_entries(&r), 7, "each refused event once: {r:#}");
    let after_third = snap()?;
    replay_legacy(legacy, lake)?;
    assert_eq!(snap()?, after_third);
    Ok(())
}

/// The lake's DLQ entries, as a reconcile report counts them.
fn dlq_entries(report: &serde_json::Value) -> u64 {
    report["dlq_by_date"]
        .as_object()
        .into_iter()
        .flat_map(|dates| dates.values())
        .filter_map(serde_json::Value::as_object)
        .flat_map(|reasons| reasons.values())
        .filter_map(serde_json::Value::as_u64)
        .sum()
}

#[test]
fn a_dlq_replay_after_a_contract_fix_lands_what_now_passes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let legacy_dir = dir.path().join("legacy");
    write_legacy(&legacy_dir, &|_, _| {})?;
    let lake_dir = dir.path().join("lake");
    let (legacy, lake) = (
        legacy_dir.display().to_string(),
        lake_dir.display().to_string(),
    );
    run_json(&[
        "ingest", "files", "--input", &legacy, "--lake", &lake, "--json",
    ])?;
    // A line damaged by hand stays where it is and is reported.
    let dlq_dir = lake_dir.join("_dlq/server_log.api_request/dt=2026-11-01");
    let damaged = std::fs::read_dir(&dlq_dir)?
        .next()
        .ok_or("no DLQ file")??
        .path();
    let mut text = std::fs::read_to_string(&damaged)?;
    text.push_str("{not a dlq entry\n");
    std::fs::write(&damaged, text)?;

    let replay_dlq = |contract: &str| {
        run_json(&[
            "ingest",
            "replay",
            "--dlq",
            "--lake",
            &lake,
            "--contract",
            contract,
            "--from",
            "2026-11-01T00:00:00Z",
            "--to",
            "2026-11-02T00:00:00Z",
            "--json",
        ])
    };
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/server_log.api_request.odcs.yaml"
    );
    let before = snapshot(&lake_dir)?;
    let unchanged = replay_dlq(shipped)?;
    assert_eq!(unchanged["counts"]["events"], 0);
    assert_eq!(unchanged["counts"]["dlq"]["invalid_value"], 7);
    assert_eq!(unchanged["unreadable_lines"], 1);
    assert!(
        unchanged["unreadable"][0]
            .as_str()
            .is_some_and(|s| s.contains("not a DLQ entry") && s.contains(".jsonl:")),
        "{unchanged:#}"
    );
    assert_eq!(
        snapshot(&lake_dir)?,
        before,
        "still-refused events must not be written again"
    );

    // The fix: status codes up to 799 are valid now.
    let fixed = dir.path().join("fixed.odcs.yaml");
    let yaml = std::fs::read_to_string(shipped)?;
    assert!(yaml.contains("maximum: 599"));
    std::fs::write(&fixed, yaml.replace("maximum: 599", "maximum: 799"))?;
    let fixed = fixed.display().to_string();
    let landed = replay_dlq(&fixed)?;
    assert_eq!(landed["counts"]["events"], 7, "{landed:#}");
    assert_eq!(landed["counts"]["dlq"], serde_json::json!({}));
    let (code, r) = reconcile(&legacy, &lake, &["--contract", &fixed])?;
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["totals"]["matched"], 300);

    let after_once = snapshot(&lake_dir)?;
    replay_dlq(&fixed)?;
    assert_eq!(snapshot(&lake_dir)?, after_once);
    Ok(())
}

#[test]
fn a_replay_says_what_is_wrong_with_its_source() -> TestResult {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake").display().to_string();
    let nowhere = dir.path().join("nowhere").display().to_string();
    let out = pitwall(&[
        "ingest",
        "replay",
        "--legacy",
        &nowhere,
        "--lake",
        &lake,
        "--from",
        "2026-11-01T10:00:00Z",
        "--to",
        "2026-11-01T11:00:00Z",
    ])?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no legacy files under") && err.contains("YYYY/MM/DD/HH"),
        "{err}"
    );
    let both = pitwall(&[
        "ingest",
        "replay",
        "--legacy",
        &nowhere,
        "--dlq",
        "--lake",
        &lake,
        "--from",
        "2026-11-01T10:00:00Z",
        "--to",
        "2026-11-01T11:00:00Z",
    ])?;
    assert_eq!(both.status.code(), Some(2));
    Ok(())
}
