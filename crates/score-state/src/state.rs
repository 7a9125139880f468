//! A state location: finding the last committed run, reading its tables,
//! and committing the next one.
//!
//! ```text
//! STATE/log/000000000042.json      the commit of run 42 (create-if-absent)
//! STATE/runs/000000000042-<nonce>/  the files run 42 wrote: final.parquet
//!                                   (rentals it made final), open.parquet,
//!                                   members-delta.parquet (the records it
//!                                   changed) or members.parquet (a new
//!                                   base), seen.parquet
//! STATE/_head                      a hint: the newest seq known (never trusted alone)
//! ```

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use pitwall_lake::{Created, Location, ParquetOptions};

use crate::StateError;
use crate::days::{DayFile, FinalDays};
use crate::deltas::Snapshot;
use crate::log::{self, Entry, FORMAT};
use crate::member_file::{self, MemberFile, Rentals};
use crate::results::{self, Columns, ResultRow};
use crate::seen::SeenFiles;
use crate::snapshot::MemberRecord;
use crate::table::FinalTable;

const HEAD_HINT: &str = "_head";
/// Committed runs whose files are kept, so a person can step back a few
/// runs by removing log entries.
const KEEP_RUNS: u64 = 3;

pub struct State {
    loc: Location,
    url: String,
    head: Option<Entry>,
    /// Threads a file is decoded on: every core unless the job says.
    threads: usize,
    /// What was read of the state's files, for run.json.
    read: std::sync::Mutex<Reads>,
}

/// Files and bytes read of a state's tables.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Reads {
    pub files: u64,
    pub bytes: u64,
}

impl State {
    /// Opens a state (local directory or `s3://`) and finds its last
    /// committed run; an empty or absent location is an empty state.
    pub fn open(url: &str) -> Result<State, StateError> {
        let loc = Location::parse(url)?;
        let mut state = State {
            loc,
            url: url.trim_end_matches('/').to_string(),
            head: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            read: Default::default(),
        };
        state.head = state.find_head()?;
        Ok(state)
    }

    /// Decodes files on at most `threads` threads (a job's `--threads`).
    pub fn with_threads(mut self, threads: usize) -> State {
        self.threads = threads.max(1);
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// What this handle has read of the state's tables so far.
    pub fn reads(&self) -> Reads {
        self.read.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn location(&self) -> &Location {
        &self.loc
    }

    /// The last committed run, None for an empty state.
    pub fn head(&self) -> Option<&Entry> {
        self.head.as_ref()
    }

    fn find_head(&self) -> Result<Option<Entry>, StateError> {
        let hint = self
            .loc
            .get(HEAD_HINT)?
            .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse::<u64>().ok());
        let mut seq = match hint {
            Some(s) if self.entry_exists(s)? => s,
            // No hint, or one pointing past the log: the listing is the truth.
            _ => match self
                .loc
                .names("log")?
                .iter()
                .filter_map(|n| log::seq_of(n))
                .max()
            {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        // The hint may lag behind commits that crashed before updating it.
        while self.entry_exists(seq + 1)? {
            seq += 1;
        }
        self.entry(seq).map(Some)
    }

    fn entry_exists(&self, seq: u64) -> Result<bool, StateError> {
        Ok(self.loc.get(&log::entry_name(seq))?.is_some())
    }

    /// Reads and checks the log entry of `seq`.
    pub fn entry(&self, seq: u64) -> Result<Entry, StateError> {
        let name = log::entry_name(seq);
        let path = format!("{}/{name}", self.url);
        let bytes = self.loc.get(&name)?.ok_or_else(|| StateError::Corrupt {
            path: path.clone(),
            problem: "the entry is missing".into(),
        })?;
        parse_entry(&path, &bytes)
    }

    /// A whole state file, its row groups decoded on `threads` threads in
    /// contiguous runs (the rows keep the file's order): the final results
    /// of a year are millions of rows, read on every run.
    fn parquet(&self, rel: &str) -> Result<Vec<RecordBatch>, StateError> {
        Ok(self.parquet_and_metadata(rel)?.0)
    }

    /// A state file's batches and its Arrow schema's metadata.
    fn parquet_and_metadata(
        &self,
        rel: &str,
    ) -> Result<(Vec<RecordBatch>, HashMap<String, String>), StateError> {
        let path = format!("{}/{rel}", self.url);
        let bytes = self
            .loc
            .get(rel)?
            .ok_or_else(|| StateError::MissingFile { path: path.clone() })?;
        if let Ok(mut r) = self.read.lock() {
            r.files += 1;
            r.bytes += bytes.len() as u64;
        }
        let bad = |e: &dyn std::fmt::Display| StateError::Parquet {
            path: path.clone(),
            problem: e.to_string(),
        };
        let meta = ArrowReaderMetadata::load(&bytes, Default::default()).map_err(|e| bad(&e))?;
        let schema_metadata: HashMap<String, String> = meta.schema().metadata().clone().into();
        let groups = meta.metadata().num_row_groups();
        let per = groups.div_ceil(self.threads.clamp(1, groups.max(1))).max(1);
        let runs: Vec<Vec<usize>> = (0..groups)
            .collect::<Vec<_>>()
            .chunks(per)
            .map(<[usize]>::to_vec)
            .collect();
        let decode = |run: Vec<usize>| -> Result<Vec<RecordBatch>, StateError> {
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
                .with_row_groups(run)
                .with_batch_size(1 << 20)
                .build()
                .map_err(|e| bad(&e))?
                .map(|b| b.map_err(|e| bad(&e)))
                .collect()
        };
        if runs.len() <= 1 {
            let batches = decode(runs.into_iter().next().unwrap_or_default())?;
            return Ok((batches, schema_metadata));
        }
        let batches = std::thread::scope(|s| {
            let handles: Vec<_> = runs
                .into_iter()
                .map(|run| s.spawn(|| decode(run)))
                .collect();
            let mut out = Vec::new();
            for h in handles {
                let part = h.join().map_err(|_| bad(&"a decoding thread panicked"))??;
                out.extend(part);
            }
            Ok::<_, StateError>(out)
        })?;
        Ok((batches, schema_metadata))
    }

    /// One batch of a results file, in the state's exact types.
    fn results_file(&self, rel: &str) -> Result<RecordBatch, StateError> {
        let batches = self.parquet(rel)?;
        let schema = results::schema(true);
        let normalized: Vec<RecordBatch> = batches
            .iter()
            .map(|b| results::normalize(b, true))
            .collect::<Result<_, _>>()?;
        arrow_select::concat::concat_batches(&schema, &normalized).map_err(|e| {
            StateError::Parquet {
                path: format!("{}/{rel}", self.url),
                problem: e.to_string(),
            }
        })
    }

    /// Every final result (an export, a fit, a run that rebuilds every member).
    pub fn load_final(&self) -> Result<FinalTable, StateError> {
        self.load_final_days(&|_| true)?.table()
    }

    /// The final results of the days `wanted` says yes to. A state of the
    /// previous layout has no days: all of it is read, split by day.
    pub fn load_final_days(&self, wanted: &dyn Fn(i64) -> bool) -> Result<FinalDays, StateError> {
        let Some(head) = &self.head else {
            return Ok(FinalDays::default());
        };
        if !head.files.final_results.is_empty() {
            let batches = head
                .files
                .final_results
                .iter()
                .map(|f| self.results_file(f))
                .collect::<Result<Vec<_>, _>>()?;
            return FinalDays::split(&FinalTable::new(batches)?);
        }
        let mut days = std::collections::BTreeMap::new();
        for d in head.files.final_days.iter().filter(|d| wanted(d.day)) {
            days.insert(d.day, self.results_file(&d.file)?);
        }
        Ok(FinalDays {
            days,
            known: head.files.final_days.iter().map(|d| d.day).collect(),
            from_legacy: false,
        })
    }

    /// Calls `f` with each day of final results in day order (a state of
    /// the previous layout: its rows split by day), one day in memory at a time.
    pub fn for_each_final_day(
        &self,
        f: &mut dyn FnMut(RecordBatch) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let Some(head) = &self.head else {
            return Ok(());
        };
        if !head.files.final_results.is_empty() {
            for batch in self.load_final_days(&|_| true)?.days.into_values() {
                f(batch)?;
            }
            return Ok(());
        }
        for d in &head.files.final_days {
            f(self.results_file(&d.file)?)?;
        }
        Ok(())
    }

    pub fn load_open(&self) -> Result<Vec<ResultRow>, StateError> {
        let Some(rel) = self.head.as_ref().and_then(|h| h.files.open.clone()) else {
            return Ok(Vec::new());
        };
        let batch = self.results_file(&rel)?;
        let cols = Columns::of(&batch)?;
        (0..batch.num_rows()).map(|i| cols.row(i)).collect()
    }

    /// The member snapshot as base and deltas, decoded as columns: a run
    /// turns only the records it needs into structs.
    pub fn load_snapshot(&self) -> Result<Snapshot, StateError> {
        let Some(head) = &self.head else {
            return Ok(Snapshot::empty());
        };
        let file = |rel: &String| -> Result<(Vec<RecordBatch>, Rentals), StateError> {
            let (batches, metadata) = self.parquet_and_metadata(rel)?;
            let rentals = Rentals::of(&self.loc, &self.url, rel, &metadata);
            rentals.check()?;
            Ok((batches, rentals))
        };
        let base = match &head.files.members {
            Some(rel) => file(rel)?,
            None => (Vec::new(), Rentals::Inline),
        };
        let deltas = head
            .files
            .member_deltas
            .iter()
            .map(file)
            .collect::<Result<Vec<_>, _>>()?;
        Snapshot::new(base, deltas)
    }

    /// Every member's record, by member_id.
    pub fn load_members(&self) -> Result<Vec<MemberRecord>, StateError> {
        Ok(self
            .load_snapshot()?
            .all_with(&[], &Default::default())?
            .into_iter()
            .map(|k| k.record)
            .collect())
    }

    /// The telemetry files committed runs have read; None when the state
    /// does not know (empty, or seeded by an import): late samples are then
    /// not counted until a run has recorded what is there.
    pub fn load_seen(&self) -> Result<Option<SeenFiles>, StateError> {
        match self.head.as_ref().and_then(|h| h.files.seen.clone()) {
            Some(rel) => SeenFiles::from_batches(&self.parquet(&rel)?).map(Some),
            None => Ok(None),
        }
    }

    /// A draft of the next run: files go to a folder of their own, which
    /// only the commit makes part of the state.
    pub fn begin(&self) -> Draft {
        let seq = self.head.as_ref().map_or(1, |h| h.seq + 1);
        Draft {
            loc: self.loc.clone(),
            url: self.url.clone(),
            seq,
            dir: format!("runs/{seq:012}-{}", nonce()),
            threads: self.threads,
        }
    }
}

fn parse_entry(path: &str, bytes: &[u8]) -> Result<Entry, StateError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
            path: path.to_string(),
            problem: format!("not valid JSON ({e})"),
        })?;
    let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
    if format > u64::from(FORMAT) {
        return Err(StateError::Newer {
            path: path.to_string(),
            format,
            supported: FORMAT,
        });
    }
    serde_json::from_value(value).map_err(|e| StateError::Corrupt {
        path: path.to_string(),
        problem: e.to_string(),
    })
}

/// Unique per attempt: two runs racing for one seq never share a folder.
fn nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id())
}

/// The files of a run being written, and its commit.
pub struct Draft {
    loc: Location,
    url: String,
    seq: u64,
    dir: String,
    /// Threads a file's columns are encoded on (the member base is
    /// hundreds of MB at a fleet's scale).
    threads: usize,
}

impl Draft {
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn put_parquet(&self, name: &str, batch: RecordBatch) -> Result<String, StateError> {
        let rel = format!("{}/{name}", self.dir);
        let opts = ParquetOptions {
            max_row_group_rows: 256 * 1024,
            ..ParquetOptions::default()
        };
        let bytes = pitwall_lake::parquet_bytes_parallel(&batch, &opts, self.threads)?;
        self.loc.put(&rel, Bytes::from(bytes))?;
        Ok(rel)
    }

    /// Writes rental results (final or open) sorted by rental_id.
    pub fn write_results(&self, name: &str, rows: &mut [ResultRow]) -> Result<String, StateError> {
        rows.sort_by(|a, b| a.rental.rental_id.cmp(&b.rental.rental_id));
        self.put_parquet(name, results::to_batch(rows, true)?)
    }

    /// Writes one day of final results (sorted by rental_id).
    pub fn write_final_day(&self, day: i64, batch: RecordBatch) -> Result<DayFile, StateError> {
        let rows = batch.num_rows() as u64;
        let date = chrono_day(day);
        let file = self.put_parquet(&format!("final-{date}.parquet"), batch)?;
        Ok(DayFile { day, file, rows })
    }

    /// Writes the days `touched` of `days` and returns the state's day
    /// files after it: `before`'s, those days replaced (or gone, emptied).
    pub fn write_final_days(
        &self,
        days: &FinalDays,
        touched: &std::collections::BTreeSet<i64>,
        before: &[DayFile],
    ) -> Result<Vec<DayFile>, StateError> {
        let mut out: std::collections::BTreeMap<i64, DayFile> = if days.from_legacy {
            Default::default()
        } else {
            before.iter().map(|d| (d.day, d.clone())).collect()
        };
        for day in touched {
            out.remove(day);
        }
        for (&day, batch) in &days.days {
            if days.from_legacy || touched.contains(&day) {
                out.insert(day, self.write_final_day(day, batch.clone())?);
            }
        }
        Ok(out.into_values().collect())
    }

    /// Writes a member snapshot file (members sorted by member_id): the
    /// changes of a run as a delta of the snapshot, or the whole snapshot
    /// as a new base. Its rentals file goes first, so the Parquet file never
    /// names one that is not there. Returns the Parquet file's name and
    /// where its rentals are, for a snapshot kept in memory.
    pub fn write_members(
        &self,
        file: MemberFile,
        base: bool,
    ) -> Result<(String, Rentals), StateError> {
        let stem = if base { "members" } else { "members-delta" };
        let rentals_name = format!("{stem}.rentals");
        let rentals_rel = format!("{}/{rentals_name}", self.dir);
        self.loc.put(&rentals_rel, file.rentals)?;
        let batch = member_file::naming(file.batch, &rentals_name)?;
        let rel = self.put_parquet(&format!("{stem}.parquet"), batch)?;
        let rentals = Rentals::Stored {
            loc: self.loc.clone(),
            url: format!("{}/{rentals_rel}", self.url),
            rel: rentals_rel,
        };
        Ok((rel, rentals))
    }

    pub fn write_seen(&self, seen: &SeenFiles) -> Result<String, StateError> {
        self.put_parquet("seen.parquet", seen.to_batch()?)
    }

    /// Commits the run: its log entry is created only if no other run took
    /// this seq first. Afterwards the head hint moves and files no kept entry
    /// names are removed; a crash there leaves only garbage for the next run.
    pub fn commit(self, mut entry: Entry) -> Result<Entry, StateError> {
        entry.format = FORMAT;
        entry.seq = self.seq;
        let name = log::entry_name(self.seq);
        let bytes = serde_json::to_vec_pretty(&entry).map_err(|e| StateError::Table {
            what: "run-log entry".into(),
            problem: e.to_string(),
        })?;
        if self.loc.put_if_absent(&name, Bytes::from(bytes))? == Created::AlreadyExists {
            let path = format!("{}/{name}", self.url);
            let winner = self.loc.get(&name)?.map(|b| parse_entry(&path, &b));
            let _ = self.loc.remove_tree(&self.dir);
            return Err(match winner {
                Some(Ok(w)) => StateError::Lost {
                    seq: self.seq,
                    winner: w.run_id,
                    winner_as_of: w.as_of,
                    committed_at: w.committed_at,
                },
                Some(Err(e)) => e,
                None => StateError::Corrupt {
                    path,
                    problem: "the entry vanished after another run created it".into(),
                },
            });
        }
        let _ = self
            .loc
            .put(HEAD_HINT, Bytes::from(self.seq.to_string().into_bytes()));
        if let Err(e) = self.collect_garbage(&entry) {
            tracing::warn!(error = %e, "could not remove old state files; the next run tries again");
        }
        Ok(entry)
    }

    /// Removes run folders up to this seq that neither this entry nor the
    /// last few entries name: attempts that never committed, and old runs.
    fn collect_garbage(&self, entry: &Entry) -> Result<(), StateError> {
        let state = State {
            loc: self.loc.clone(),
            url: self.url.clone(),
            head: None,
            threads: 1,
            read: Default::default(),
        };
        let mut keep: Vec<String> = referenced(entry);
        for seq in self.seq.saturating_sub(KEEP_RUNS)..self.seq {
            if let Ok(e) = state.entry(seq) {
                keep.extend(referenced(&e));
            }
        }
        for name in self.loc.names("runs")? {
            let seq = name.get(..12).and_then(|d| d.parse::<u64>().ok());
            let dir = format!("runs/{name}");
            if seq.is_some_and(|s| s <= self.seq)
                && !keep.iter().any(|k| k.starts_with(&format!("{dir}/")))
            {
                self.loc.remove_tree(&dir)?;
            }
        }
        Ok(())
    }
}

/// YYYY-MM-DD of a day since the epoch.
fn chrono_day(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day.saturating_mul(crate::days::DAY_MS))
        .map_or_else(|| format!("day{day}"), |t| t.format("%Y-%m-%d").to_string())
}

fn referenced(e: &Entry) -> Vec<String> {
    let f = &e.files;
    f.final_results
        .iter()
        .cloned()
        .chain(f.final_days.iter().map(|d| d.file.clone()))
        .chain(f.open.clone())
        .chain(f.members.clone())
        .chain(f.member_deltas.iter().cloned())
        .chain(f.seen.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Counts, EntryKind};

    fn entry(run_id: &str) -> Entry {
        Entry {
            format: FORMAT,
            seq: 0,
            kind: EntryKind::Run,
            run_id: run_id.into(),
            as_of_ms: 1,
            as_of: "t".into(),
            model: "m@1".into(),
            grace_ms: 0,
            pitwall_version: "test".into(),
            committed_at: "now".into(),
            forced: false,
            held_because: Vec::new(),
            rescore: None,
            model_change: None,
            files: crate::Files::default(),
            counts: Counts::default(),
            upgraded_from: None,
            inputs: serde_json::Value::Null,
        }
    }

    fn commit_one(state: &State, run_id: &str) -> Result<Entry, StateError> {
        let draft = state.begin();
        let mut e = entry(run_id);
        e.files.open = Some(draft.write_results("open.parquet", &mut [])?);
        draft.commit(e)
    }

    fn tmp() -> Result<(tempfile::TempDir, String), StateError> {
        let dir = tempfile::tempdir().map_err(|source| pitwall_lake::LakeError::Io {
            path: "tmp".into(),
            source,
        })?;
        let url = dir.path().join("state").display().to_string();
        Ok((dir, url))
    }

    #[test]
    fn two_runs_from_one_state_cannot_both_commit() -> Result<(), StateError> {
        let (_dir, url) = tmp()?;
        let base = State::open(&url)?;
        assert!(base.head().is_none());
        let (a, b) = (base.begin(), base.begin());
        assert_eq!((a.seq(), b.seq()), (1, 1));
        let b_dir = b.dir.clone();
        b.write_results("open.parquet", &mut [])?;
        a.commit(entry("run-a"))?;
        let lost = b
            .commit(entry("run-b"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            lost.contains("run-a") && lost.contains("state run 1"),
            "{lost}"
        );
        let now = State::open(&url)?;
        assert_eq!(now.head().map(|h| h.run_id.as_str()), Some("run-a"));
        // The loser's files are gone, not left to look like data.
        assert!(
            !now.location()
                .names("runs")?
                .iter()
                .any(|n| b_dir.ends_with(n.as_str()))
        );
        Ok(())
    }

    #[test]
    fn files_of_a_run_that_never_committed_are_ignored_then_removed() -> Result<(), StateError> {
        let (_dir, url) = tmp()?;
        commit_one(&State::open(&url)?, "one")?;
        // A crash after writing its files, before the commit.
        let crashed = State::open(&url)?.begin();
        crashed.write_results("open.parquet", &mut [])?;
        let s = State::open(&url)?;
        assert_eq!(s.head().map(|h| h.seq), Some(1));
        assert!(s.load_open()?.is_empty());
        commit_one(&s, "two")?;
        let names = State::open(&url)?.location().names("runs")?;
        assert!(
            !names.iter().any(|n| crashed.dir.ends_with(n.as_str())),
            "{names:?}"
        );
        Ok(())
    }

    #[test]
    fn the_head_is_found_without_or_past_a_stale_hint() -> Result<(), StateError> {
        let (_dir, url) = tmp()?;
        for k in 0..3 {
            commit_one(&State::open(&url)?, &format!("run-{k}"))?;
        }
        let s = State::open(&url)?;
        s.location().put(HEAD_HINT, Bytes::from_static(b"1"))?;
        assert_eq!(State::open(&url)?.head().map(|h| h.seq), Some(3));
        s.location()
            .put(HEAD_HINT, Bytes::from_static(b"garbage"))?;
        assert_eq!(State::open(&url)?.head().map(|h| h.seq), Some(3));
        Ok(())
    }

    #[test]
    fn a_file_of_many_row_groups_reads_back_in_its_order() -> Result<(), StateError> {
        use arrow_array::Int64Array;
        let (_dir, url) = tmp()?;
        let state = State::open(&url)?;
        let values: Vec<i64> = (0..10_000).map(|i| i * 3).collect();
        let batch = RecordBatch::try_from_iter([(
            "v",
            std::sync::Arc::new(Int64Array::from(values.clone())) as arrow_array::ArrayRef,
        )])
        .map_err(|e| StateError::Table {
            what: "test".into(),
            problem: e.to_string(),
        })?;
        let opts = ParquetOptions {
            max_row_group_rows: 700,
            ..ParquetOptions::default()
        };
        let bytes = pitwall_lake::parquet_bytes(batch.schema(), &[batch], &opts)?;
        state.location().put("t.parquet", Bytes::from(bytes))?;
        for threads in [1, 2, 3] {
            let read: Vec<i64> = State::open(&url)?
                .with_threads(threads)
                .parquet("t.parquet")?
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .map(|a| a.values().to_vec())
                        .unwrap_or_default()
                })
                .collect();
            assert_eq!(read, values, "{threads} threads");
        }
        Ok(())
    }

    #[test]
    fn day_files_are_named_by_their_date() {
        assert_eq!(chrono_day(0), "1970-01-01");
        assert_eq!(chrono_day(20_758), "2026-11-01");
        assert_eq!(chrono_day(-1), "1969-12-31");
        assert_eq!(chrono_day(11_016), "2000-02-29");
    }

    #[test]
    fn old_runs_are_kept_a_few_deep_then_removed() -> Result<(), StateError> {
        let (_dir, url) = tmp()?;
        for k in 0..6 {
            commit_one(&State::open(&url)?, &format!("run-{k}"))?;
        }
        let names = State::open(&url)?.location().names("runs")?;
        assert_eq!(names.len(), KEEP_RUNS as usize + 1, "{names:?}");
        Ok(())
    }
}
