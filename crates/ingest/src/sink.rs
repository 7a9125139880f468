//! What one shard has read and not yet committed, and the commit that puts
//! it in the lake.
//!
//! A commit writes every open partition of the shard (and its DLQ lines) at
//! once, then the caller checkpoints the last record read. Files are named
//! by the shard and the position of their *first* event. After a crash
//! between the files and the checkpoint, reading resumes at the checkpoint,
//! so each partition's next file starts at the same first event as the file
//! the crash left behind and replaces it, whatever its length: every event
//! is in the lake once, without a record of what was in flight.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pitwall_lake::{Location, ParquetOptions};
use pitwall_logs::batch::{Capacity, EventBatch};
use pitwall_logs::decode::{Item, decode_record};
use pitwall_logs::layout::{date_of, dlq_day_dir, hour_dir, hour_of};
use pitwall_logs::{Cell, Contract, DlqEntry, Position, Reason, Row, Validator};

/// When a shard's buffer is committed.
#[derive(Debug, Clone)]
pub struct RollPolicy {
    /// Event JSON bytes held for the shard (all partitions).
    pub max_bytes: usize,
    /// Age of the oldest event held.
    pub max_age: Duration,
}

impl Default for RollPolicy {
    fn default() -> Self {
        RollPolicy {
            max_bytes: 128 << 20,
            max_age: Duration::from_secs(300),
        }
    }
}

/// How the lake's Parquet files are written for a contract: zstd, and no
/// dictionary for near-unique columns.
pub fn lake_parquet(contract: &Contract, zstd_level: i32) -> ParquetOptions {
    ParquetOptions {
        zstd_level,
        no_dictionary: contract.high_cardinality_columns(),
        fast_columns: contract.random_text_columns(),
        no_statistics: contract.unprunable_columns(),
        delta_columns: contract.delta_columns(),
        ..ParquetOptions::default()
    }
}

/// One Kinesis record as read, whatever the source.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub sequence_number: &'a str,
    /// ApproximateArrivalTimestamp, epoch ms.
    pub arrival_ms: i64,
    pub data: &'a [u8],
}

/// Where a file starts: (sequence number, sub-sequence, line).
#[derive(Debug, Clone, PartialEq, Eq)]
struct First {
    seq: String,
    sub: u64,
    line: u32,
}

struct OpenPartition {
    batch: EventBatch,
    first: First,
}

struct OpenDlq {
    lines: String,
    first: First,
}

/// What a shard read, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub records: u64,
    pub record_bytes: u64,
    pub events: u64,
    pub dlq: BTreeMap<&'static str, u64>,
    pub control_messages: u64,
    /// Valid events a replay left out because the lake already held them.
    pub already_landed: u64,
    /// Refused events (counted in `dlq` by reason) a replay did not write
    /// to the DLQ again because it already held them.
    pub already_in_dlq: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.records += o.records;
        self.record_bytes += o.record_bytes;
        self.events += o.events;
        self.control_messages += o.control_messages;
        self.already_landed += o.already_landed;
        self.already_in_dlq += o.already_in_dlq;
        for (k, v) in &o.dlq {
            *self.dlq.entry(k).or_default() += v;
        }
    }

    pub fn dlq_total(&self) -> u64 {
        self.dlq.values().sum()
    }
}

/// The result of a commit: what the caller checkpoints, and what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The last record read; everything up to it is in the lake.
    pub checkpoint: String,
    /// Its last sub-sequence number (user record of a KPL aggregate).
    pub sub_sequence: u64,
    pub files: Vec<String>,
    pub bytes_written: u64,
    pub events: u64,
    pub dlq_events: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Lake(#[from] pitwall_lake::LakeError),
    #[error("building a record batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("cannot read the lake file {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("the lake file {path} has no text column {column:?}: is it the lake of this contract?")]
    Column { path: String, column: String },
}

/// What the lake already holds, asked by a replay before it adds an event.
pub trait Landed: Sync {
    /// Is an event with this key in the lake's partition of `hour`?
    fn contains(&self, hour: i64, key: &str) -> Result<bool, SinkError>;
}

/// What the lake's DLQ already holds, asked by a replay before it adds a
/// refused event: the stream path refused the same bytes before.
pub trait InDlq: Sync {
    /// Does the DLQ hold an entry with these original bytes, for a record
    /// that arrived around `arrival_ms`?
    fn holds(&self, arrival_ms: i64, bytes: &[u8]) -> Result<bool, SinkError>;
}

pub struct ShardBuffer<'c> {
    validator: &'c Validator<'c>,
    shard_id: String,
    partitions: BTreeMap<i64, OpenPartition>,
    dlq: BTreeMap<String, OpenDlq>,
    opened: Option<Instant>,
    held_bytes: usize,
    last_seq: Option<String>,
    /// The highest sub-sequence number seen in the last record read.
    last_sub: u64,
    pub counts: Counts,
    /// The last row's cells and scratch text, reused (across events of
    /// different lifetimes) so that a row costs no allocation.
    spare: (Vec<Cell<'static>>, String),
    /// A replay's check against the lake, with the key field's index.
    landed: Option<(&'c dyn Landed, usize)>,
    /// A replay's check against the DLQ.
    in_dlq: Option<&'c dyn InDlq>,
    /// False when the input is the DLQ itself: what is still refused is
    /// already there and must not be added again.
    write_dlq: bool,
    /// The size of the last batch written: where new partitions start.
    capacity: Capacity,
}

impl<'c> ShardBuffer<'c> {
    pub fn new(validator: &'c Validator<'c>, shard_id: &str) -> Self {
        ShardBuffer {
            validator,
            shard_id: shard_id.to_string(),
            partitions: BTreeMap::new(),
            dlq: BTreeMap::new(),
            opened: None,
            held_bytes: 0,
            last_seq: None,
            last_sub: 0,
            counts: Counts::default(),
            spare: (Vec::new(), String::new()),
            landed: None,
            in_dlq: None,
            write_dlq: true,
            capacity: Capacity::default(),
        }
    }

    /// Starts new partitions at the size of `like` (the last batch of the
    /// buffer before, for a worker reading file after file).
    pub fn sized_like(mut self, like: Capacity) -> Self {
        self.capacity = like;
        self
    }

    /// The size new partitions start at: the last batch written.
    pub fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    /// Leaves out valid events whose key (field `key_field`) the lake holds.
    pub fn skipping_landed(mut self, landed: &'c dyn Landed, key_field: usize) -> Self {
        self.landed = Some((landed, key_field));
        self
    }

    /// Leaves out of the DLQ refused events it already holds.
    pub fn skipping_refused(mut self, in_dlq: &'c dyn InDlq) -> Self {
        self.in_dlq = Some(in_dlq);
        self
    }

    /// Counts refused events without writing them to the DLQ.
    pub fn without_dlq_writes(mut self) -> Self {
        self.write_dlq = false;
        self
    }

    fn contract(&self) -> &'c Contract {
        self.validator.contract()
    }

    /// Reads one record: its events go to their hour's partition, anything
    /// refused to the DLQ. Nothing is written until [`commit`](Self::commit).
    pub fn add(&mut self, rec: RawRecord<'_>) -> Result<(), SinkError> {
        self.opened.get_or_insert_with(Instant::now);
        self.counts.records += 1;
        self.counts.record_bytes += rec.data.len() as u64;
        let mut failed = None;
        self.last_sub = 0;
        decode_record(rec.data, &mut |item| {
            if failed.is_none()
                && let Err(e) = self.take(item, &rec)
            {
                failed = Some(e);
            }
        });
        self.last_seq = Some(rec.sequence_number.to_string());
        failed.map_or(Ok(()), Err)
    }

    fn take(&mut self, item: Item<'_>, rec: &RawRecord<'_>) -> Result<(), SinkError> {
        let sub = match &item {
            Item::Event { sub, .. } | Item::Bad { sub, .. } | Item::Control { sub } => *sub,
        };
        self.last_sub = self.last_sub.max(sub);
        let pos = |sub, line| Position {
            shard_id: "",
            sequence_number: rec.sequence_number,
            sub_sequence: sub,
            line,
            arrival_ms: rec.arrival_ms,
        };
        match item {
            Item::Control { .. } => self.counts.control_messages += 1,
            Item::Bad {
                sub,
                line,
                bytes,
                reason,
            } => self.refuse(&pos(sub, line), &reason, bytes)?,
            Item::Event { sub, line, json } => {
                let (cells, scratch) = std::mem::take(&mut self.spare);
                let mut row = Row {
                    cells: recycle(cells),
                    scratch,
                    ..Row::default()
                };
                let result = self.event(json, &mut row, pos(sub, line));
                self.spare = (recycle(row.cells), row.scratch);
                result?;
            }
        }
        Ok(())
    }

    fn event<'j>(
        &mut self,
        json: &'j [u8],
        row: &mut Row<'j>,
        p: Position<'_>,
    ) -> Result<(), SinkError> {
        match self.validator.validate(json, row) {
            Ok(()) => {
                let hour = hour_of(row.event_ms);
                if let Some((landed, key_field)) = self.landed
                    && let Some(key) = row.cells.get(key_field).and_then(|c| row.text(c))
                    && landed.contains(hour, key)?
                {
                    self.counts.already_landed += 1;
                    return Ok(());
                }
                self.counts.events += 1;
                self.held_bytes += json.len();
                let contract = self.contract();
                let capacity = &self.capacity;
                let open = self
                    .partitions
                    .entry(hour)
                    .or_insert_with(|| OpenPartition {
                        batch: EventBatch::with_capacity(contract, capacity),
                        first: first(&p),
                    });
                let p = Position {
                    shard_id: &self.shard_id,
                    ..p
                };
                open.batch.push(row, &p, json.len());
            }
            Err(reason) => self.refuse(&p, &reason, json)?,
        }
        Ok(())
    }

    fn refuse(&mut self, p: &Position<'_>, reason: &Reason, bytes: &[u8]) -> Result<(), SinkError> {
        *self.counts.dlq.entry(reason.code()).or_default() += 1;
        if !self.write_dlq {
            return Ok(());
        }
        if let Some(in_dlq) = self.in_dlq
            && in_dlq.holds(p.arrival_ms, bytes)?
        {
            self.counts.already_in_dlq += 1;
            return Ok(());
        }
        self.held_bytes += bytes.len();
        let p = Position {
            shard_id: &self.shard_id,
            ..p.clone()
        };
        let line = DlqEntry::new(&self.contract().dataset, &p, reason, bytes).to_line();
        let dt = date_of(p.arrival_ms);
        let open = self.dlq.entry(dt).or_insert_with(|| OpenDlq {
            lines: String::new(),
            first: first(&p),
        });
        open.lines.push_str(&line);
        Ok(())
    }

    /// Is it time to commit?
    pub fn due(&self, policy: &RollPolicy) -> bool {
        self.full(policy)
            || self.opened.is_some_and(|t| t.elapsed() >= policy.max_age)
            || self.partitions.values().any(|p| p.batch.near_full())
    }

    /// The cheap part of [`due`](Self::due), for a check on every record:
    /// the policy's size is reached.
    pub fn full(&self, policy: &RollPolicy) -> bool {
        self.held_bytes >= policy.max_bytes
    }

    /// Event and DLQ bytes held, for a worker-wide memory budget.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// The last record read, if any was read since the last commit.
    pub fn pending(&self) -> Option<&str> {
        self.last_seq.as_deref()
    }

    /// Writes every open partition and DLQ file, durably. On success the
    /// caller checkpoints `Committed::checkpoint`; on error nothing is
    /// checkpointed and the same records must be read again.
    pub fn commit(
        &mut self,
        lake: &Location,
        opts: &ParquetOptions,
    ) -> Result<Option<Committed>, SinkError> {
        self.commit_while(lake, opts, &|| true)
    }

    /// [`commit`](Self::commit) by a writer whose right to write can lapse:
    /// every file's write is abandoned once `allowed` turns false (see
    /// [`Location::put_while`]), so a stale lease owner's PUT can never land
    /// after the next owner's file of the same name. Files written before it
    /// lapsed stay; the next owner, reading from the same checkpoint,
    /// rewrites them under the same names.
    pub fn commit_while(
        &mut self,
        lake: &Location,
        opts: &ParquetOptions,
        allowed: &dyn Fn() -> bool,
    ) -> Result<Option<Committed>, SinkError> {
        let Some(checkpoint) = self.last_seq.clone() else {
            return Ok(None);
        };
        let dataset = self.contract().dataset.clone();
        let schema = self.contract().arrow_schema();
        let mut done = Committed {
            checkpoint,
            sub_sequence: self.last_sub,
            files: Vec::new(),
            bytes_written: 0,
            events: 0,
            dlq_events: 0,
        };
        for (hour, open) in &mut self.partitions {
            self.capacity = open.batch.capacity();
            let batch = open.batch.finish()?;
            done.events += batch.num_rows() as u64;
            let bytes = pitwall_lake::parquet_bytes(schema.clone(), &[batch], opts)?;
            let rel = format!(
                "{}/{}.parquet",
                hour_dir(&dataset, *hour),
                file_stem(&self.shard_id, &open.first)
            );
            done.bytes_written += bytes.len() as u64;
            done.files
                .push(lake.put_while(&rel, Bytes::from(bytes), allowed)?);
        }
        for (dt, open) in &mut self.dlq {
            let rel = format!(
                "{}/{}.jsonl",
                dlq_day_dir(&dataset, dt),
                file_stem(&self.shard_id, &open.first)
            );
            done.dlq_events += open.lines.matches('\n').count() as u64;
            done.bytes_written += open.lines.len() as u64;
            let lines = std::mem::take(&mut open.lines);
            done.files
                .push(lake.put_while(&rel, Bytes::from(lines), allowed)?);
        }
        self.partitions.clear();
        self.dlq.clear();
        self.opened = None;
        self.held_bytes = 0;
        self.last_seq = None;
        Ok(Some(done))
    }
}

/// An emptied vector of cells with a new lifetime, reusing the allocation
/// (collecting an empty iterator in place keeps the buffer).
fn recycle<'b>(mut v: Vec<Cell<'_>>) -> Vec<Cell<'b>> {
    v.clear();
    v.into_iter().map(|_| Cell::Null).collect()
}

fn first(p: &Position<'_>) -> First {
    First {
        seq: p.sequence_number.to_string(),
        sub: p.sub_sequence,
        line: p.line,
    }
}

/// `shardId-000000000001-49590338271490256608559692538361571095921575989136588898-0-0`
fn file_stem(shard: &str, f: &First) -> String {
    let mut s = String::with_capacity(shard.len() + f.seq.len() + 16);
    let _ = write!(s, "{shard}-{}-{}-{}", f.seq, f.sub, f.line);
    s
}

/// The shard a lake or DLQ file was written for, from the file's name: its
/// stem without the `-sequence-sub-line` that [`file_stem`] appends.
pub fn shard_of_file(name: &str) -> Option<&str> {
    let name = name.rsplit('/').next().unwrap_or(name);
    let stem = name
        .strip_suffix(".parquet")
        .or_else(|| name.strip_suffix(".jsonl"))?;
    let mut parts = stem.rsplitn(4, '-');
    let (_line, _sub, _seq) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_shard_is_its_name_without_the_position() {
        let first = First {
            seq: "4959".into(),
            sub: 2,
            line: 7,
        };
        let name = format!("{}.parquet", file_stem("file-2026110109-part-1", &first));
        assert_eq!(
            shard_of_file(&format!("/lake/ds/dt=x/{name}")),
            Some("file-2026110109-part-1")
        );
        assert_eq!(
            shard_of_file("shardId-000000000001-4959-0-0.jsonl"),
            Some("shardId-000000000001")
        );
        assert_eq!(shard_of_file("a-1-2.parquet"), None);
        assert_eq!(shard_of_file("notes.txt"), None);
    }
}
