//! `score state import`: a state seeded from rental results computed
//! elsewhere, in memory bounded by a bucket of the input, not the input.
//!
//! A team moving from its old job imports years of results at once, in a
//! pod. So the input is read once, a batch at a time, and spilled to local
//! disk (Arrow IPC) in buckets by a hash of rental_id; each bucket is
//! deduplicated on its own (a rental's rows all hash to it) and its rows
//! spilled again, by group of days (for the day files) and by range of
//! member_id (for the members' parts). Each day group and each member range
//! is then loaded alone. Member ranges come from a sample of the input's
//! member ids, so they are balanced by rows and, taken in order, give the
//! member snapshot in member_id order without a merge.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_lake::Location;
use pitwall_score::{Model, Status};
use serde::Serialize;

use crate::days::{DayFile, day_of};
use crate::deltas::Kept;
use crate::log::{Counts, Entry, EntryKind, FORMAT, Files};
use crate::member_file::{self, MemberFile};
use crate::ops::{now_ms, rfc3339};
use crate::results::{self, Columns};
use crate::spill::{Buckets, SpillDir, load, take};
use crate::table::FinalTable;
use crate::{State, StateError};

/// What `state import` did.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub seq: u64,
    pub final_rentals: u64,
    /// Pending rows are not final: the next run evaluates them from the rentals input.
    pub left_open: u64,
    pub members: u64,
    pub model: String,
    pub as_of: String,
}

/// Input bytes (Parquet) per rental bucket: about 400 k rows, a bucket or
/// member range loaded at once is then a hundred-odd MB of Arrow.
const BYTES_PER_BUCKET: u64 = 16 << 20;
/// Days per day group.
const DAYS_PER_GROUP: i64 = 8;
/// Member ids sampled for the ranges.
const SAMPLE: usize = 1 << 16;
const ORDINAL: &str = "__ordinal";

fn table_err(e: impl std::fmt::Display) -> StateError {
    StateError::Table {
        what: "imported rental results".into(),
        problem: e.to_string(),
    }
}

/// Seeds an empty state from rental results computed elsewhere (an earlier
/// pitwall's `rental_scores.parquet`, or another engine's output with the
/// same columns). Scored and unscorable rows become final; pending ones are
/// left for the next run. The members are computed at `as_of` (default: the
/// latest end_at), with `model` (which must be the rows' model).
pub fn import(
    url: &str,
    file: &Path,
    as_of: Option<i64>,
    model: &Model,
) -> Result<Imported, StateError> {
    import_bucketed(url, file, as_of, model, BYTES_PER_BUCKET)
}

/// [`import`] with rental buckets of `bytes_per_bucket` of input.
fn import_bucketed(
    url: &str,
    file: &Path,
    as_of: Option<i64>,
    model: &Model,
    bytes_per_bucket: u64,
) -> Result<Imported, StateError> {
    let state = State::open(url)?;
    if let Some(h) = state.head() {
        return Err(StateError::Table {
            what: format!("state {url}"),
            problem: format!(
                "it already holds runs (the last is {}, seq {}): import seeds an empty state only; \
                 choose a new --state location",
                h.run_id, h.seq
            ),
        });
    }
    let spill = SpillDir::new()?;
    let model_id = model.id();
    let read = read_input(file, &model_id, &spill, bytes_per_bucket)?;
    let unique = deduplicate(&read, &spill)?;
    let as_of = as_of.unwrap_or(unique.latest_end);
    let draft = state.begin();
    let run_id = format!("import-{}", draft.seq());
    let final_days = write_days(&unique, &draft, draft.seq(), &run_id, as_of)?;
    let (snapshot, members) = members(&unique, as_of, model)?;
    let files = Files {
        final_results: Vec::new(),
        final_days,
        open: Some(draft.write_results("open.parquet", &mut [])?),
        members: Some(draft.write_members(snapshot, true)?.0),
        member_deltas: Vec::new(),
        // Which telemetry files exist is unknown here: the next run records them.
        seen: None,
    };
    let counts = Counts {
        made_final: unique.rows,
        final_total: unique.rows,
        members,
        member_changes: members,
        ..Counts::default()
    };
    let entry = Entry {
        format: FORMAT,
        seq: draft.seq(),
        kind: EntryKind::Import,
        run_id,
        as_of_ms: as_of,
        as_of: rfc3339(as_of),
        model: model_id.clone(),
        grace_ms: model.completeness.grace_ms(),
        pitwall_version: env!("CARGO_PKG_VERSION").to_string(),
        committed_at: rfc3339(now_ms()),
        forced: false,
        held_because: Vec::new(),
        rescore: None,
        model_change: None,
        files,
        counts,
        upgraded_from: None,
        inputs: serde_json::json!({ "rental_results": file.display().to_string() }),
    };
    let entry = draft.commit(entry)?;
    Ok(Imported {
        seq: entry.seq,
        final_rentals: unique.rows,
        left_open: read.left_open,
        members,
        model: model_id,
        as_of: entry.as_of,
    })
}

/// The input as read: its final rows in rental buckets, in input order.
struct Read {
    buckets: Vec<PathBuf>,
    left_open: u64,
    /// Member ids sampled from the final rows.
    sample: Vec<String>,
}

/// Reads every input file a batch at a time: rows checked (model,
/// features), pending ones counted and left out, final ones numbered in
/// input order and spilled by a hash of rental_id.
fn read_input(
    file: &Path,
    model_id: &str,
    spill: &SpillDir,
    bytes_per_bucket: u64,
) -> Result<Read, StateError> {
    let bad = |e: &dyn std::fmt::Display| StateError::Table {
        what: format!("the rental results {}", file.display()),
        problem: format!("not readable as Parquet ({e})"),
    };
    let loc = Location::parse(&file.display().to_string())?;
    let files = loc.list(&[".parquet"])?;
    // Bucket count from the files' sizes (about 45 bytes a row in Parquet):
    // known before any row is read, without a pass over the input.
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let buckets = bytes.div_ceil(bytes_per_bucket.max(1)).clamp(1, 4096) as usize;
    let mut out = Buckets::new(spill, "rentals", buckets);
    let mut sampler = Sampler::default();
    let (mut ordinal, mut left_open, mut row_no) = (0u64, 0u64, 0usize);
    for f in &files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(Location::open(f)?)
            .and_then(|b| b.with_batch_size(64 * 1024).build())
            .map_err(|e| bad(&e))?;
        for b in reader {
            let b = results::normalize(&b.map_err(|e| bad(&e))?, false)?;
            let keep = check(&b, model_id, file, row_no)?;
            row_no += b.num_rows();
            left_open += (b.num_rows() - keep.len()) as u64;
            let kept = take(&b, &keep)?;
            let n = kept.num_rows() as u64;
            let kept = with_column(
                kept,
                ORDINAL,
                Arc::new(UInt64Array::from_iter_values(ordinal..ordinal + n)),
            )?;
            ordinal += n;
            let c = Columns::of(&kept)?;
            for i in 0..kept.num_rows() {
                sampler.offer(c.member_id.value(i));
            }
            let ids = c.rental_id;
            out.route(&kept, |i| hash(ids.value(i)))?;
        }
    }
    Ok(Read {
        buckets: out.finish()?,
        left_open,
        sample: sampler.kept,
    })
}

/// The rows of `b` to import; a row of another model or with impossible
/// features stops the import, naming it.
fn check(
    b: &RecordBatch,
    model_id: &str,
    file: &Path,
    first_row: usize,
) -> Result<Vec<u32>, StateError> {
    let c = Columns::of(b)?;
    let mut keep = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        if c.model.value(i) != model_id {
            return Err(StateError::Table {
                what: file.display().to_string(),
                problem: format!(
                    "row {} was scored with model {}, but the state is seeded for {model_id}: \
                     pass the file's model with --model",
                    first_row + i,
                    c.model.value(i)
                ),
            });
        }
        // Refused here, with its row, rather than by the next run.
        c.features(i)?;
        if c.status(i)? != Status::Pending {
            keep.push(i as u32);
        }
    }
    Ok(keep)
}

/// The final rows, one per rental_id (the first in the input), spilled by
/// day group and by member range.
struct Unique {
    days: BTreeMap<i64, PathBuf>,
    members: Vec<PathBuf>,
    rows: u64,
    latest_end: i64,
}

fn deduplicate(read: &Read, spill: &SpillDir) -> Result<Unique, StateError> {
    let bounds = ranges_of(read.sample.clone(), read.buckets.len());
    let mut by_member = Buckets::new(spill, "members", bounds.len() + 1);
    let mut by_days: BTreeMap<i64, Buckets> = BTreeMap::new();
    let (mut rows, mut latest_end) = (0u64, i64::MIN);
    for path in &read.buckets {
        let Some(all) = load(path)? else { continue };
        let firsts = first_of_each_rental(&all)?;
        let unique = take(&all, &firsts)?;
        drop(all);
        rows += unique.num_rows() as u64;
        let c = Columns::of(&unique)?;
        let group = |i: usize| day_of(c.end_at.value(i)).div_euclid(DAYS_PER_GROUP);
        for i in 0..unique.num_rows() {
            latest_end = latest_end.max(c.end_at.value(i));
        }
        let mut rows_of: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for i in 0..unique.num_rows() {
            rows_of.entry(group(i)).or_default().push(i as u32);
        }
        for (g, idx) in rows_of {
            let part = take(&unique, &idx)?;
            by_days
                .entry(g)
                .or_insert_with(|| Buckets::new(spill, &format!("days-{g}"), 1))
                .route(&part, |_| 0)?;
        }
        let members = c.member_id;
        by_member.route(&unique, |i| {
            bounds.partition_point(|b| b.as_str() <= members.value(i)) as u64
        })?;
    }
    let mut days = BTreeMap::new();
    for (g, b) in by_days {
        if let Some(p) = b.finish()?.into_iter().next() {
            days.insert(g, p);
        }
    }
    Ok(Unique {
        days,
        members: by_member.finish()?,
        rows,
        latest_end: if rows == 0 { 0 } else { latest_end },
    })
}

/// Rows of `b` (one rental bucket) that are the first of their rental_id in
/// input order.
fn first_of_each_rental(b: &RecordBatch) -> Result<Vec<u32>, StateError> {
    let c = Columns::of(b)?;
    let ordinal = b
        .column_by_name(ORDINAL)
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| table_err("the spill lost its ordinal column"))?;
    let mut order: Vec<u32> = (0..b.num_rows() as u32).collect();
    order.sort_unstable_by(|&x, &y| {
        let (x, y) = (x as usize, y as usize);
        c.rental_id
            .value(x)
            .cmp(c.rental_id.value(y))
            .then(ordinal.value(x).cmp(&ordinal.value(y)))
    });
    order.dedup_by(|later, earlier| {
        c.rental_id.value(*later as usize) == c.rental_id.value(*earlier as usize)
    });
    Ok(order)
}

/// Writes each day group's days, sorted by rental_id, as final results of
/// import run `seq` at `as_of`.
fn write_days(
    unique: &Unique,
    draft: &crate::Draft,
    seq: u64,
    run_id: &str,
    as_of: i64,
) -> Result<Vec<DayFile>, StateError> {
    let mut out = Vec::new();
    for path in unique.days.values() {
        let Some(group) = load(path)? else { continue };
        let c = Columns::of(&group)?;
        let mut order: Vec<u32> = (0..group.num_rows() as u32).collect();
        order.sort_unstable_by(|&x, &y| {
            let (x, y) = (x as usize, y as usize);
            day_of(c.end_at.value(x))
                .cmp(&day_of(c.end_at.value(y)))
                .then(c.rental_id.value(x).cmp(c.rental_id.value(y)))
        });
        let days: Vec<i64> = order
            .iter()
            .map(|&i| day_of(c.end_at.value(i as usize)))
            .collect();
        let sorted = with_finality(&take(&group, &order)?, seq, run_id, as_of)?;
        let mut start = 0;
        while start < days.len() {
            let d = days[start];
            let len = days[start..].iter().take_while(|&&x| x == d).count();
            out.push(draft.write_final_day(d, sorted.slice(start, len))?);
            start += len;
        }
    }
    Ok(out)
}

/// Every member's record and part, range by range, as one snapshot file in
/// member_id order; and how many members.
fn members(unique: &Unique, as_of: i64, model: &Model) -> Result<(MemberFile, u64), StateError> {
    let model_id = model.id();
    let mut file = member_file::Appender::default();
    let mut count = 0u64;
    for path in &unique.members {
        let Some(rows) = load(path)? else { continue };
        let table = FinalTable::disjoint(vec![rows])?;
        let parts = crate::recompute::parts_of_all(&table, as_of, model)?;
        drop(table);
        let mut kept: Vec<Kept> = parts
            .into_iter()
            .filter_map(|(id, part)| {
                crate::recompute::record_of(&id, &part, &[], as_of, model).map(|record| Kept {
                    record,
                    part: Some(part),
                })
            })
            .collect();
        kept.sort_by(|a, b| a.record.member_id.cmp(&b.record.member_id));
        count += kept.len() as u64;
        file.push(member_file::encode(&kept, &model_id, as_of)?)?;
    }
    if count == 0 {
        file.push(member_file::encode::<Kept>(&[], &model_id, as_of)?)?;
    }
    Ok((file.finish()?, count))
}

/// `sample` cut into up to `n` ranges of about equal rows: the n − 1 ids
/// that bound them.
fn ranges_of(mut sample: Vec<String>, n: usize) -> Vec<String> {
    sample.sort_unstable();
    let mut bounds: Vec<String> = (1..n)
        .filter_map(|k| sample.get(k * sample.len() / n).cloned())
        .collect();
    bounds.dedup();
    bounds
}

/// The final columns of a state's results on `b`'s rows.
fn with_finality(
    b: &RecordBatch,
    seq: u64,
    run_id: &str,
    as_of: i64,
) -> Result<RecordBatch, StateError> {
    let rows = b.num_rows();
    let mut cols: Vec<ArrayRef> = results::schema(false)
        .fields()
        .iter()
        .map(|f| {
            b.column_by_name(f.name())
                .cloned()
                .ok_or_else(|| table_err(format!("the spill lost column {}", f.name())))
        })
        .collect::<Result<_, _>>()?;
    cols.push(Arc::new(arrow_array::BooleanArray::from(vec![true; rows])));
    cols.push(Arc::new(arrow_array::Int64Array::from(vec![
        seq as i64;
        rows
    ])));
    cols.push(Arc::new(StringArray::from(vec![run_id; rows])));
    cols.push(Arc::new(
        arrow_array::TimestampMillisecondArray::from(vec![as_of; rows]).with_timezone("UTC"),
    ));
    RecordBatch::try_new(results::schema(true), cols).map_err(table_err)
}

fn with_column(b: RecordBatch, name: &str, col: ArrayRef) -> Result<RecordBatch, StateError> {
    let mut fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(name, col.data_type().clone(), false));
    let mut cols = b.columns().to_vec();
    cols.push(col);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(table_err)
}

/// FNV-1a: stable across runs and platforms, which a spill needs only
/// within one import, and a run's reader can check by hand.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A uniform sample of member ids over the rows (reservoir sampling with a
/// fixed seed, so an import is repeatable).
#[derive(Default)]
struct Sampler {
    kept: Vec<String>,
    seen: u64,
    state: u64,
}

impl Sampler {
    fn offer(&mut self, id: &str) {
        self.seen += 1;
        if self.kept.len() < SAMPLE {
            self.kept.push(id.to_string());
            return;
        }
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let slot = (self.state >> 11) % self.seen;
        if let Some(s) = self.kept.get_mut(slot as usize) {
            *s = id.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::results::tests::row;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const DAY: i64 = 86_400_000;

    /// Rows over 60 days of 41 members, a rental sent three times (later
    /// copies on other days, with other scores) and a pending row.
    fn input(path: &Path, model: &Model) -> TestResult {
        let base = 1_780_000_000_000;
        let mut rows = Vec::new();
        for i in 0..300i64 {
            let mut r = row(
                &format!("r{i:03}"),
                &format!("m{:02}", i % 41),
                base + i * 5 * 3_600_000,
                false,
            );
            r.model = model.id();
            r.assessment.features.distance_km = 1.0 + i as f64 / 7.0;
            r.assessment.score = Some((i % 100) as f64);
            rows.push(r);
        }
        for i in [3usize, 150, 299, 3] {
            let mut r = rows[i].clone();
            r.rental.end_at += 10 * DAY;
            r.rental.start_at += 10 * DAY;
            r.assessment.score = Some(1.0);
            rows.push(r);
        }
        let mut pending = row("r-open", "m00", base + 59 * DAY, false);
        pending.model = model.id();
        pending.assessment.status = Status::Pending;
        pending.assessment.score = None;
        pending.assessment.grade = None;
        rows.push(pending);
        let batch = results::to_batch(&rows, false)?;
        pitwall_lake::write_parquet(path, batch.schema(), &[batch], &Default::default())?;
        Ok(())
    }

    #[test]
    fn any_bucket_size_gives_the_same_state_and_a_rentals_first_row_wins() -> TestResult {
        let dir = tempfile::tempdir()?;
        let model = Model::default();
        let file = dir.path().join("results.parquet");
        input(&file, &model)?;
        let mut states = Vec::new();
        for (k, bytes) in [(0, BYTES_PER_BUCKET), (1, 600), (2, 64)].into_iter() {
            let url = dir.path().join(format!("state-{k}")).display().to_string();
            let done = import_bucketed(&url, &file, None, &model, bytes)?;
            assert_eq!(
                (done.final_rentals, done.left_open, done.members),
                (300, 1, 41)
            );
            let state = State::open(&url)?;
            let mut rows = Vec::new();
            state.load_final()?.for_each(|c, i| {
                rows.push(c.row(i)?);
                Ok(())
            })?;
            rows.sort_by(|a, b| a.rental.rental_id.cmp(&b.rental.rental_id));
            states.push((rows, state.load_members()?));
        }
        let (rows, members) = &states[0];
        for other in &states[1..] {
            assert_eq!(&other.0, rows);
            assert_eq!(&other.1, members);
        }
        let r003 = rows
            .iter()
            .find(|r| r.rental.rental_id == "r003")
            .ok_or("r003")?;
        assert_eq!(
            r003.assessment.score,
            Some(3.0),
            "the first row of r003 wins"
        );
        assert!(members.iter().all(|m| !m.recent.is_empty()));
        Ok(())
    }

    #[test]
    fn member_ranges_are_balanced_and_ordered() {
        let sample: Vec<String> = (0..1000).rev().map(|i| format!("m{i:04}")).collect();
        let bounds = ranges_of(sample, 4);
        assert_eq!(bounds, vec!["m0250", "m0500", "m0750"]);
        // A bucket is the count of bounds at or below the id: ranges in order.
        let bucket = |id: &str| bounds.partition_point(|b| b.as_str() <= id);
        assert_eq!(
            ["m0000", "m0249", "m0250", "m0999"].map(bucket),
            [0, 0, 1, 3]
        );
        assert!(ranges_of(Vec::new(), 4).is_empty());
        assert_eq!(ranges_of(vec!["a".into(); 10], 4), vec!["a"]);
    }

    #[test]
    fn the_sample_is_repeatable_and_bounded() {
        let run = || {
            let mut s = Sampler::default();
            for i in 0..(3 * SAMPLE) {
                s.offer(&format!("m{}", i % 5000));
            }
            s.kept
        };
        let a = run();
        assert_eq!(a.len(), SAMPLE);
        assert_eq!(a, run());
    }
}
