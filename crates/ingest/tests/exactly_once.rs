//! The lake holds every event exactly once whatever the commit points and
//! wherever a worker crashed between writing files and checkpointing.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use pitwall_ingest::{RawRecord, ShardBuffer};
use pitwall_lake::{Location, ParquetOptions};
use pitwall_logs::{Contract, Pii, Validator};
use proptest::prelude::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `n` records of one to three events each, over three hours with late
/// events; every seventh event breaks the contract.
/// (sequence number, data) per record, the valid event ids sorted, the count of bad events.
type Generated = (Vec<(String, Vec<u8>)>, Vec<String>, usize);

fn records(n: usize) -> Generated {
    let mut out = Vec::new();
    let (mut good, mut bad) = (Vec::new(), 0);
    let mut k = 0u32;
    for i in 0..n {
        let mut data = String::new();
        for _ in 0..(i % 3 + 1) {
            k += 1;
            let id = format!("00000000-0000-4000-8000-{k:012}");
            let hour = [10, 11, 10, 12][k as usize % 4];
            let status = if k.is_multiple_of(7) { 700 } else { 200 };
            data.push_str(&format!(
                r#"{{"event_id":"{id}","ts":"2026-11-01T{hour}:{:02}:00Z","service":"s","env":"prod","level":"INFO","method":"GET","path":"/p","status":{status},"latency_ms":1.5}}"#,
                k % 60
            ));
            data.push('\n');
            if status == 200 {
                good.push(id);
            } else {
                bad += 1;
            }
        }
        out.push((format!("{:020}", 1000 + i), data.into_bytes()));
    }
    good.sort();
    (out, good, bad)
}

/// Every event_id in the lake's Parquet files, and the DLQ line count.
fn read_lake(root: &Path) -> Result<(Vec<String>, usize), Box<dyn std::error::Error>> {
    let lake = Location::Local(root.to_path_buf());
    let mut ids = Vec::new();
    for f in lake.list(&[".parquet"])? {
        let input = Location::open(&f)?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(input)?
            .build()?;
        for b in reader {
            let b = b?;
            let col = b.column_by_name("event_id").ok_or("no event_id")?;
            ids.extend(col.as_string::<i32>().iter().flatten().map(str::to_string));
        }
    }
    ids.sort();
    let mut dlq = 0;
    // Listing skips `_`-names as not data, so the DLQ is listed from its own root.
    let dlq_root = root.join("_dlq");
    if !dlq_root.exists() {
        return Ok((ids, 0));
    }
    for f in Location::Local(dlq_root).list(&[".jsonl"])? {
        dlq += String::from_utf8(Location::read_all(&f)?.to_vec())?
            .lines()
            .count();
    }
    Ok((ids, dlq))
}

/// A tiny deterministic generator: the test's commit and crash decisions.
struct Dice(u64);
impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % sides
    }
}

fn ingest_with_crashes(root: &Path, n: usize, seed: u64, max_crashes: u32) -> TestResult {
    let contract = Contract::embedded()?;
    let validator = Validator::new(&contract, Pii::new(b"k"));
    let lake = Location::Local(root.to_path_buf());
    let opts = ParquetOptions::default();
    let (recs, _, _) = records(n);
    let mut dice = Dice(seed);
    let mut checkpoint = 0usize; // index of the next record to read
    let mut crashes = 0;
    'restart: loop {
        let mut buf = ShardBuffer::new(&validator, "shardId-000000000000");
        let mut i = checkpoint;
        while i < recs.len() {
            let (seq, data) = &recs[i];
            buf.add(RawRecord {
                sequence_number: seq,
                arrival_ms: 1_793_500_000_000,
                data,
            })?;
            i += 1;
            if dice.roll(5) == 0 || i == recs.len() {
                let done = buf.commit(&lake, &opts)?.ok_or("nothing to commit")?;
                assert_eq!(done.checkpoint, *seq);
                if crashes < max_crashes && dice.roll(3) == 0 {
                    // Files written, checkpoint lost: start again from the old one.
                    crashes += 1;
                    continue 'restart;
                }
                checkpoint = i;
            }
        }
        return Ok(());
    }
}

#[test]
fn without_crashes_every_event_lands_once_and_bad_ones_in_the_dlq() -> TestResult {
    let dir = tempfile::tempdir()?;
    ingest_with_crashes(dir.path(), 60, 1, 0)?;
    let (_, good, bad) = records(60);
    let (ids, dlq) = read_lake(dir.path())?;
    assert_eq!(ids, good);
    assert_eq!(dlq, bad);
    // Partitioned by event hour.
    let hours: BTreeMap<_, _> = Location::Local(dir.path().join("server_log.api_request"))
        .list(&[".parquet"])?
        .into_iter()
        .map(|f| {
            (
                f.display.split("/dt=").nth(1).map(|s| s[..18].to_string()),
                (),
            )
        })
        .collect();
    assert_eq!(
        hours.into_keys().flatten().collect::<Vec<_>>(),
        [
            "2026-11-01/hour=10",
            "2026-11-01/hour=11",
            "2026-11-01/hour=12"
        ]
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn crashes_between_files_and_checkpoint_never_lose_or_double(seed in any::<u64>(), n in 1usize..80) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        ingest_with_crashes(dir.path(), n, seed, 4).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (_, good, bad) = records(n);
        let (ids, dlq) = read_lake(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(ids, good);
        prop_assert_eq!(dlq, bad);
    }
}
