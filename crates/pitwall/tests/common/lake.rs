//! The lake read back by the ingestion tests: every event id landed, by
//! shard, and the DLQ's reasons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::Error;
use super::kinesis::Put;

/// Every event_id in the lake's Parquet files (sorted), with its shard, and
/// the DLQ's reasons.
pub struct Lake {
    pub ids: Vec<String>,
    pub shards: BTreeMap<String, usize>,
    pub dlq: BTreeMap<String, u64>,
}

pub fn read_lake(root: &str) -> Result<Lake, Error> {
    let loc = pitwall_lake::Location::parse(&format!("{root}/server_log.api_request"))?;
    let mut lake = Lake {
        ids: Vec::new(),
        shards: BTreeMap::new(),
        dlq: BTreeMap::new(),
    };
    for f in loc.list(&[".parquet"]).unwrap_or_default() {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(pitwall_lake::Location::open(&f)?)?.build()?;
        for b in reader {
            let b = b?;
            let ids = b
                .column_by_name("event_id")
                .ok_or("no event_id")?
                .as_string::<i32>();
            let shards = b
                .column_by_name("_shard_id")
                .ok_or("no _shard_id")?
                .as_string::<i32>();
            let phones = b
                .column_by_name("phone")
                .ok_or("no phone")?
                .as_string::<i32>();
            for i in 0..b.num_rows() {
                assert_eq!(phones.value(i).len(), 64, "phone is hashed");
                lake.ids.push(ids.value(i).to_string());
                *lake.shards.entry(shards.value(i).to_string()).or_default() += 1;
            }
        }
    }
    lake.ids.sort();
    let dlq = pitwall_lake::Location::parse(&format!("{root}/_dlq/server_log.api_request"))?;
    for f in dlq.list(&[".jsonl"]).unwrap_or_default() {
        let text = String::from_utf8(pitwall_lake::Location::read_all(&f)?.to_vec())?;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            assert!(v["data_base64"].is_string(), "the original bytes are kept");
            *lake
                .dlq
                .entry(v["reason"].as_str().unwrap_or("?").into())
                .or_default() += 1;
        }
    }
    Ok(lake)
}

pub fn assert_exactly_once(lake: &Lake, put: &Put) {
    let mut want = put.good.clone();
    want.sort();
    let mut dups = lake.ids.clone();
    dups.dedup();
    assert_eq!(dups.len(), lake.ids.len(), "no event twice");
    assert_eq!(lake.ids.len(), want.len(), "every event once");
    assert_eq!(lake.ids, want);
    assert_eq!(
        lake.dlq.values().sum::<u64>(),
        put.dlq,
        "DLQ: {:?}",
        lake.dlq
    );
}

/// Parquet files under `dir`.
pub fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
    }
    n
}
