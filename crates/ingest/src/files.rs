//! Archived records from files, through the same decode → validate → lake
//! path as the stream: each line of a file is one record (its data, or a DLQ
//! entry holding it), the file stands in for a shard and the line number for
//! the sequence number. Names stay deterministic, so ingesting the same files
//! again rewrites the same lake files.

use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use pitwall_lake::{FileRef, Location, ParquetOptions};
use pitwall_logs::batch::Capacity;
use pitwall_logs::{Contract, Pii, Validator};

use base64::Engine as _;

use crate::sink::{Counts, InDlq, Landed, RawRecord, RollPolicy, ShardBuffer, SinkError};

/// What each line of an archived file is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Archive {
    /// One record's data (legacy Firehose output, an export of the stream).
    #[default]
    Records,
    /// A line of the lake's DLQ: its original bytes are read again (after a
    /// contract fix); what is still refused is counted, and stays where it is.
    Dlq,
}

pub struct FilesJob<'a> {
    pub inputs: Vec<FileRef>,
    pub lake: &'a Location,
    pub contract: &'a Contract,
    pub pii: Pii,
    pub roll: RollPolicy,
    pub parquet: ParquetOptions,
    pub threads: usize,
    pub archive: Archive,
    /// For a replay: leave out events the lake holds (key field index).
    pub landed: Option<(&'a dyn Landed, usize)>,
    /// For a replay: leave out of the DLQ refused events it holds.
    pub in_dlq: Option<&'a dyn InDlq>,
}

/// At most this many unreadable lines are named in a report.
const UNREADABLE_SAMPLES: usize = 20;

#[derive(Debug, Default, serde::Serialize)]
pub struct FilesReport {
    pub files_read: usize,
    pub counts: Counts,
    pub bytes_written: u64,
    pub millis: u64,
    /// DLQ lines that hold no record to replay (not a DLQ entry, bad base64);
    /// they stay in their file.
    pub unreadable_lines: u64,
    /// `file:line: why`, for the first few.
    pub unreadable: Vec<String>,
    /// Every file written, as named by [`Location::put`]; the JSON report
    /// gives their number.
    #[serde(rename = "files_written", serialize_with = "count")]
    pub written: Vec<String>,
}

fn count<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.len() as u64)
}

impl FilesReport {
    fn add(&mut self, one: FilesReport) {
        self.files_read += 1;
        self.counts.add(&one.counts);
        self.bytes_written += one.bytes_written;
        self.unreadable_lines += one.unreadable_lines;
        let room = UNREADABLE_SAMPLES.saturating_sub(self.unreadable.len());
        self.unreadable
            .extend(one.unreadable.into_iter().take(room));
        self.written.extend(one.written);
    }
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
        let mut bufs = Buffers::default();
        while let Some(file) = job.inputs.get(next.fetch_add(1, Ordering::Relaxed)) {
            let one = ingest_file(job, &validator, file, &mut bufs)?;
            on_file(file);
            total.lock().unwrap_or_else(|p| p.into_inner()).add(one);
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

/// A worker's file buffers, reused from file to file.
#[derive(Default)]
struct Buffers {
    raw: Vec<u8>,
    unzipped: Vec<u8>,
    /// The size of the last batch written, for the next file's partitions.
    capacity: Capacity,
}

fn ingest_file(
    job: &FilesJob<'_>,
    validator: &Validator<'_>,
    file: &FileRef,
    bufs: &mut Buffers,
) -> Result<FilesReport, FilesError> {
    Location::read_into(file, &mut bufs.raw)?;
    let text: &[u8] = if file.display.ends_with(".gz") {
        bufs.unzipped.clear();
        bufs.unzipped.reserve(bufs.raw.len() * 8);
        flate2::read::MultiGzDecoder::new(&bufs.raw[..])
            .read_to_end(&mut bufs.unzipped)
            .map_err(|source| FilesError::Gzip {
                path: file.display.clone(),
                source,
            })?;
        &bufs.unzipped
    } else {
        &bufs.raw
    };
    let shard = shard_name(&file.display, job.archive);
    let path_arrival_ms = arrival_from_path(&file.display).unwrap_or(0);
    let mut buf =
        ShardBuffer::new(validator, &shard).sized_like(std::mem::take(&mut bufs.capacity));
    if let Some((landed, key_field)) = job.landed {
        buf = buf.skipping_landed(landed, key_field);
    }
    if let Some(in_dlq) = job.in_dlq {
        buf = buf.skipping_refused(in_dlq);
    }
    if job.archive == Archive::Dlq {
        buf = buf.without_dlq_writes();
    }
    let mut report = FilesReport::default();
    let commit = |buf: &mut ShardBuffer<'_>, report: &mut FilesReport| {
        if let Some(done) = buf.commit(job.lake, &job.parquet)? {
            report.bytes_written += done.bytes_written;
            report.written.extend(done.files);
        }
        Ok::<_, FilesError>(())
    };
    let mut seq = String::new();
    for (n, line) in pitwall_logs::decode::lines(text).enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        seq.clear();
        push_line_number(&mut seq, n);
        let (data, arrival_ms) = match job.archive {
            Archive::Records => (std::borrow::Cow::Borrowed(line), path_arrival_ms),
            Archive::Dlq => match dlq_record(line) {
                Ok((data, arrival)) => (std::borrow::Cow::Owned(data), arrival),
                Err(why) => {
                    report.unreadable_lines += 1;
                    if report.unreadable.len() < UNREADABLE_SAMPLES {
                        report
                            .unreadable
                            .push(format!("{}:{}: {why}", file.display, n + 1));
                    }
                    continue;
                }
            },
        };
        buf.add(RawRecord {
            sequence_number: &seq,
            arrival_ms,
            data: &data,
        })?;
        // The age check reads the clock: every 256th line is often enough
        // for a policy counted in minutes; the size check runs every line.
        if buf.full(&job.roll) || (n % 256 == 0 && buf.due(&job.roll)) {
            commit(&mut buf, &mut report)?;
        }
    }
    commit(&mut buf, &mut report)?;
    report.counts = buf.counts.clone();
    bufs.capacity = buf.capacity().clone();
    Ok(report)
}

/// A line number as a sequence number: zero-padded to 12 digits so that
/// names sort in file order (wider only past 10^12 lines). By hand, not
/// with `write!`: it runs for every line, and formatting cost more than the
/// rest of the line's bookkeeping.
fn push_line_number(out: &mut String, n: usize) {
    let mut digits = [b'0'; 20];
    let (mut i, mut v) = (digits.len(), n);
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(digits.len() - 12);
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// A DLQ line's original bytes and arrival time.
pub(crate) fn dlq_record(line: &[u8]) -> Result<(Vec<u8>, i64), String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        data_base64: String,
        arrival_ts_ms: i64,
    }
    let e: Entry = serde_json::from_slice(line).map_err(|e| format!("not a DLQ entry ({e})"))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(e.data_base64.as_bytes())
        .map_err(|e| format!("data_base64 does not decode ({e})"))?;
    Ok((data, e.arrival_ts_ms))
}

/// A file's stand-in shard id: its name without extensions, made path-safe,
/// after its Firehose hour when it has one — hour folders may hold files of
/// the same name, and their lake files must not overwrite each other. DLQ
/// files are named after their first position already, so they are unique.
pub fn shard_name(display: &str, archive: Archive) -> String {
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
    if archive == Archive::Dlq {
        return format!("dlq-{safe}");
    }
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
    fn line_numbers_are_zero_padded_to_twelve_digits() {
        for n in [0, 7, 42, 999_999_999_999, 1_000_000_000_000, usize::MAX] {
            let mut s = String::from("stale");
            s.clear();
            push_line_number(&mut s, n);
            assert_eq!(s, format!("{n:012}"));
        }
    }

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
        let r = Archive::Records;
        assert_eq!(shard_name("/x/events 01.jsonl.gz", r), "file-events_01");
        assert_eq!(
            shard_name("s3://b/legacy/2026/11/01/09/part-1.gz", r),
            "file-2026110109-part-1"
        );
        assert_ne!(
            shard_name("/l/2026/11/01/09/part-1.gz", r),
            shard_name("/l/2026/11/01/10/part-1.gz", r)
        );
        assert_eq!(
            shard_name(
                "/lake/_dlq/ds/dt=2026-11-01/shardId-1-4959-0-3.jsonl",
                Archive::Dlq
            ),
            "dlq-shardId-1-4959-0-3"
        );
    }

    #[test]
    fn dlq_lines_give_back_their_bytes_or_say_why_not() {
        let line = br#"{"reason":"missing_field","arrival_ts_ms":1700000000000,"data_base64":"eyJhIjoxfQ=="}"#;
        assert_eq!(
            dlq_record(line),
            Ok((b"{\"a\":1}".to_vec(), 1_700_000_000_000))
        );
        assert!(dlq_record(b"{oops").is_err_and(|e| e.contains("not a DLQ entry")));
        let bad = br#"{"arrival_ts_ms":1,"data_base64":"***"}"#;
        assert!(dlq_record(bad).is_err_and(|e| e.contains("does not decode")));
    }
}
