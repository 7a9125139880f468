//! Archived records from files, through the same decode → validate → lake
//! path as the stream: each line of a file is one record's data (plain or
//! `.gz`), the file stands in for a shard and the line number for the
//! sequence number. Names stay deterministic, so ingesting the same files
//! again rewrites the same lake files.

use std::fmt::Write as _;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use pitwall_lake::{FileRef, Location, ParquetOptions};
use pitwall_logs::{Contract, Pii, Validator};

use crate::sink::{Counts, RawRecord, RollPolicy, ShardBuffer, SinkError};

pub struct FilesJob<'a> {
    pub inputs: Vec<FileRef>,
    pub lake: &'a Location,
    pub contract: &'a Contract,
    pub pii: Pii,
    pub roll: RollPolicy,
    pub parquet: ParquetOptions,
    pub threads: usize,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct FilesReport {
    pub files_read: usize,
    pub counts: Counts,
    pub files_written: usize,
    pub bytes_written: u64,
    pub millis: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Lake(#[from] pitwall_lake::LakeError),
    #[error("cannot decompress {path}: {source}")]
    Gzip {
        path: String,
        source: std::io::Error,
    },
}

/// Ingests every input, files spread over `threads` workers.
pub fn ingest_files(
    job: &FilesJob<'_>,
    on_file: &(dyn Fn(&FileRef) + Sync),
) -> Result<FilesReport, FilesError> {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let total = Mutex::new(FilesReport::default());
    let validator = Validator::new(job.contract, job.pii.clone());
    let worker = || -> Result<(), FilesError> {
        while let Some(file) = job.inputs.get(next.fetch_add(1, Ordering::Relaxed)) {
            let one = ingest_file(job, &validator, file)?;
            on_file(file);
            let mut t = total.lock().unwrap_or_else(|p| p.into_inner());
            t.files_read += 1;
            t.counts.add(&one.counts);
            t.files_written += one.files_written;
            t.bytes_written += one.bytes_written;
        }
        Ok(())
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..job.threads.max(1)).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<()>, _>>()
    })?;
    let mut report = total.into_inner().unwrap_or_else(|p| p.into_inner());
    report.millis = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn ingest_file(
    job: &FilesJob<'_>,
    validator: &Validator<'_>,
    file: &FileRef,
) -> Result<FilesReport, FilesError> {
    let raw = Location::read_all(file)?;
    let text = if file.display.ends_with(".gz") {
        let mut out = Vec::with_capacity(raw.len() * 8);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| FilesError::Gzip {
                path: file.display.clone(),
                source,
            })?;
        bytes::Bytes::from(out)
    } else {
        raw
    };
    let shard = shard_name(&file.display);
    let arrival_ms = arrival_from_path(&file.display).unwrap_or(0);
    let mut buf = ShardBuffer::new(validator, &shard);
    let mut report = FilesReport::default();
    let mut commit = |buf: &mut ShardBuffer<'_>| -> Result<(), FilesError> {
        if let Some(done) = buf.commit(job.lake, &job.parquet)? {
            report.files_written += done.files.len();
            report.bytes_written += done.bytes_written;
        }
        Ok(())
    };
    let mut seq = String::new();
    for (n, line) in pitwall_logs::decode::lines(&text).enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        seq.clear();
        // Zero-padded so names sort in file order.
        let _ = write!(seq, "{n:012}");
        buf.add(RawRecord {
            sequence_number: &seq,
            arrival_ms,
            data: line,
        })?;
        if buf.due(&job.roll) {
            commit(&mut buf)?;
        }
    }
    commit(&mut buf)?;
    report.counts = buf.counts.clone();
    Ok(report)
}

/// A file's stand-in shard id: its name without extensions, made path-safe,
/// after its Firehose hour when it has one — hour folders may hold files of
/// the same name, and their lake files must not overwrite each other.
fn shard_name(display: &str) -> String {
    let name = display.rsplit('/').next().unwrap_or(display);
    let stem = name.split('.').next().unwrap_or(name);
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match arrival_from_path(display).and_then(chrono::DateTime::from_timestamp_millis) {
        Some(hour) => format!("file-{}-{safe}", hour.format("%Y%m%d%H")),
        None => format!("file-{safe}"),
    }
}

/// Firehose-style `…/YYYY/MM/DD/HH/…`: the hour the records arrived.
fn arrival_from_path(display: &str) -> Option<i64> {
    let parts: Vec<&str> = display.split('/').collect();
    parts.windows(4).rev().find_map(|w| {
        let nums: Vec<u32> = w.iter().map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let (y, m, d, h) = (nums[0], nums[1], nums[2], nums[3]);
        if !(1970..10000).contains(&y) || w[0].len() != 4 || w[3].len() != 2 {
            return None;
        }
        chrono::NaiveDate::from_ymd_opt(y as i32, m, d)?
            .and_hms_opt(h, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firehose_paths_give_the_arrival_hour() {
        assert_eq!(
            arrival_from_path("s3://b/legacy/2026/11/01/09/stream-1-2026-11-01-09-00-00-abc.gz"),
            Some(1_793_523_600_000)
        );
        assert_eq!(arrival_from_path("/data/events-001.jsonl"), None);
    }

    #[test]
    fn shard_names_are_path_safe() {
        assert_eq!(shard_name("/x/events 01.jsonl.gz"), "file-events_01");
        assert_eq!(
            shard_name("s3://b/legacy/2026/11/01/09/part-1.gz"),
            "file-2026110109-part-1"
        );
        assert_ne!(
            shard_name("/l/2026/11/01/09/part-1.gz"),
            shard_name("/l/2026/11/01/10/part-1.gz")
        );
    }
}
