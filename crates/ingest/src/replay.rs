//! Replays: archived records for a time range go through the same
//! validation into the lake again — the legacy Firehose output (to fill a
//! gap the stream path left) or the lake's own DLQ (after a contract fix).
//!
//! A replay is idempotent: replaying twice leaves the lake as after once.
//! Three things make it so:
//! - its files are named after the archived file and line they came from,
//!   so a second replay rewrites the same names;
//! - an event another writer already landed (the stream path, or a replay
//!   of other files) is left out, found by key in that hour's partition;
//! - a refused event whose bytes the DLQ already holds (the stream path
//!   refused it too) is counted, not written to the DLQ again;
//! - files a previous replay of the same archives wrote and this one did
//!   not (because the lake gained some of their events since) are removed.

use std::collections::HashSet;

use pitwall_lake::{FileRef, Location, ParquetOptions};
use pitwall_logs::layout::{
    DAY_MS, HOUR_MS, ceil_units, date_of, dlq_day_dir, dlq_root, firehose_hour_dir, hour_of,
};
use pitwall_logs::{Contract, Pii};

use crate::files::{Archive, FilesError, FilesJob, FilesReport, ingest_files, shard_name};
use crate::landed::{DlqIndex, LakeIndex};
use crate::sink::{RollPolicy, shard_of_file};

/// Where the archived records are.
#[derive(Debug, Clone)]
pub enum ReplaySource {
    /// Firehose-style `PREFIX/YYYY/MM/DD/HH/*`, by arrival hour.
    Legacy(Location),
    /// The lake's own `_dlq/<dataset>/dt=YYYY-MM-DD/`, by arrival day.
    Dlq,
}

pub struct ReplayJob<'a> {
    pub source: ReplaySource,
    pub lake: &'a Location,
    pub contract: &'a Contract,
    pub pii: Pii,
    /// The contract field that identifies an event.
    pub key: &'a str,
    /// Arrival times to replay, `[from_ms, to_ms)`: whole hours of legacy
    /// folders, whole days of DLQ folders.
    pub from_ms: i64,
    pub to_ms: i64,
    pub roll: RollPolicy,
    pub parquet: ParquetOptions,
    pub threads: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct ReplayReport {
    /// Folders read, in order.
    pub folders: Vec<String>,
    #[serde(flatten)]
    pub files: FilesReport,
    /// Files an earlier replay of these archives wrote that this one did not.
    pub stale_removed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Lake(#[from] pitwall_lake::LakeError),
    #[error("the contract has no field {0:?} to identify events by")]
    NoKey(String),
    #[error("the time range is empty: --from is not before --to")]
    EmptyRange,
    #[error(
        "no legacy files under {0} for that range: check the prefix (it holds YYYY/MM/DD/HH folders) and the times"
    )]
    NothingFound(String),
}

/// Replays the range; `on_listed` learns how many files there are before
/// the first is read, `on_file` each one as it is done.
pub fn replay(
    job: &ReplayJob<'_>,
    on_listed: &dyn Fn(usize),
    on_file: &(dyn Fn(&FileRef) + Sync),
) -> Result<ReplayReport, ReplayError> {
    if job.from_ms >= job.to_ms {
        return Err(ReplayError::EmptyRange);
    }
    let key_field = job
        .contract
        .field_index(job.key)
        .ok_or_else(|| ReplayError::NoKey(job.key.to_string()))?;
    let (folders, archive) = folders(job);
    let mut inputs = Vec::new();
    for f in &folders {
        inputs.extend(f.list_if_exists(&[".gz", ".jsonl", ".json", ".log"])?);
    }
    if let (ReplaySource::Legacy(prefix), true) = (&job.source, inputs.is_empty()) {
        return Err(ReplayError::NothingFound(prefix.to_string()));
    }
    on_listed(inputs.len());
    let own: HashSet<String> = inputs
        .iter()
        .map(|f| shard_name(&f.display, archive))
        .collect();
    let dataset = &job.contract.dataset;
    let index = LakeIndex::new(job.lake, dataset, job.key, own.clone());
    // A DLQ replay writes no DLQ lines at all.
    let dlq_index = DlqIndex::new(job.lake, dataset, own.clone());
    let in_dlq = match job.source {
        ReplaySource::Legacy(_) => Some(&dlq_index as &dyn crate::sink::InDlq),
        ReplaySource::Dlq => None,
    };
    let files = ingest_files(
        &FilesJob {
            inputs,
            lake: job.lake,
            contract: job.contract,
            pii: job.pii.clone(),
            roll: job.roll.clone(),
            parquet: job.parquet.clone(),
            threads: job.threads,
            archive,
            landed: Some((&index, key_field)),
            in_dlq,
        },
        on_file,
    )?;
    let stale_removed = remove_stale(job.lake, dataset, &own, &files.written)?;
    Ok(ReplayReport {
        folders: folders.iter().map(ToString::to_string).collect(),
        files,
        stale_removed,
    })
}

/// The archive folders the range covers.
fn folders(job: &ReplayJob<'_>) -> (Vec<Location>, Archive) {
    match &job.source {
        ReplaySource::Legacy(prefix) => {
            let hours = hour_of(job.from_ms)..ceil_units(job.to_ms, HOUR_MS);
            let dirs = hours
                .filter_map(firehose_hour_dir)
                .map(|rel| prefix.join(&rel))
                .collect();
            (dirs, Archive::Records)
        }
        ReplaySource::Dlq => {
            let dataset = &job.contract.dataset;
            let days = job.from_ms.div_euclid(DAY_MS)..ceil_units(job.to_ms, DAY_MS);
            let dirs = days
                .map(|d| job.lake.join(&dlq_day_dir(dataset, &date_of(d * DAY_MS))))
                .collect();
            (dirs, Archive::Dlq)
        }
    }
}

/// Removes the files of `own` shards that this replay did not write.
fn remove_stale(
    lake: &Location,
    dataset: &str,
    own: &HashSet<String>,
    written: &[String],
) -> Result<Vec<String>, ReplayError> {
    let written: HashSet<&str> = written.iter().map(String::as_str).collect();
    let mut removed = Vec::new();
    let found = lake
        .join(dataset)
        .list_if_exists(&[".parquet"])?
        .into_iter()
        .chain(lake.join(&dlq_root(dataset)).list_if_exists(&[".jsonl"])?);
    for file in found {
        let ours = shard_of_file(&file.display).is_some_and(|s| own.contains(s));
        if ours && !written.contains(file.display.as_str()) {
            Location::remove(&file)?;
            removed.push(file.display);
        }
    }
    Ok(removed)
}
