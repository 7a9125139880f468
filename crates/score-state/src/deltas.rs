//! The member snapshot as the state holds it: one base file, sorted by
//! member_id, and the delta files of the runs since, each holding only the
//! records its run changed (or added). A member's record is its newest row:
//! the last delta that holds it, else the base. A run writes a delta of the
//! size of what changed instead of the whole snapshot; once the deltas pass
//! a share of the base, a run writes base and deltas as one new base
//! (a compaction, committed like any run: the log entry names the files).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use bytes::Bytes;

use pitwall_score::member_part::FinalPart;

use crate::StateError;
use crate::member_file::{self, MemberFile, Rentals};
use crate::member_rentals;
use crate::parts;
use crate::snapshot::{self, MemberRecord};

/// A member as the snapshot keeps it: its record, and the final part the
/// next run extends (absent in a snapshot written before parts existed).
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub record: MemberRecord,
    pub part: Option<FinalPart>,
}

/// When a run writes the snapshot as one new base instead of a delta.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compaction {
    /// Delta rows (summed over the delta files, this run's included) past
    /// this share of the base rows.
    pub share: f64,
    /// Delta files past this many, whatever their size.
    pub max_deltas: usize,
}

impl Default for Compaction {
    /// A tenth: reading the deltas then costs at most a tenth more than
    /// the base, and a compaction's rewrite comes once per that many
    /// changed records.
    fn default() -> Compaction {
        Compaction {
            share: 0.10,
            max_deltas: 48,
        }
    }
}

/// Where a member's newest row is: (batch, row).
type At = (u32, u32);

pub struct Snapshot {
    /// The base's batches, sorted by member_id across batches.
    base: Vec<RecordBatch>,
    base_rentals: Rentals,
    /// Per base batch: its member_id column.
    base_ids: Vec<StringArray>,
    /// The deltas' batches, oldest first.
    deltas: Vec<RecordBatch>,
    /// Per delta batch: where its file's rentals are.
    delta_rentals: Vec<Rentals>,
    /// Per member in a delta: its newest delta row.
    in_deltas: HashMap<String, At>,
    /// Members in the base that no delta holds, plus those only in deltas.
    len: usize,
    base_rows: usize,
    delta_rows: usize,
    delta_files: usize,
    /// Rentals entries and bytes read of the rentals files, ever.
    fetched: Fetched,
}

#[derive(Default)]
struct Fetched {
    entries: AtomicU64,
    bytes: AtomicU64,
}

/// One snapshot file as read: its batches and where their rentals are.
pub type File = (Vec<RecordBatch>, Rentals);

/// One member's summary, as the gates and counts need it.
pub struct Summary<'a> {
    pub member_id: &'a str,
    pub eligible: bool,
    pub status: &'a str,
    pub score: Option<f64>,
    pub grade: Option<&'a str>,
    /// The record's digest, where its file keeps one (state format 3).
    pub digest: Option<&'a [u8]>,
}

fn err(problem: impl ToString) -> StateError {
    StateError::Table {
        what: "member snapshot".into(),
        problem: problem.to_string(),
    }
}

fn ids_of(b: &RecordBatch) -> Result<StringArray, StateError> {
    b.column_by_name("member_id")
        .and_then(|c| c.as_string_opt::<i32>())
        .cloned()
        .ok_or_else(|| err("no member_id column of strings"))
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            base: Vec::new(),
            base_rentals: Rentals::Inline,
            base_ids: Vec::new(),
            deltas: Vec::new(),
            delta_rentals: Vec::new(),
            in_deltas: HashMap::new(),
            len: 0,
            base_rows: 0,
            delta_rows: 0,
            delta_files: 0,
            fetched: Fetched::default(),
        }
    }

    /// The base file (sorted by member_id, as pitwall writes it; an
    /// unsorted base is sorted here) and each delta file, oldest first.
    pub fn new(base: File, deltas: Vec<File>) -> Result<Snapshot, StateError> {
        let (batches, rentals) = base;
        Snapshot::assemble((sorted(batches)?, rentals), deltas)
    }

    /// [`new`](Self::new) of a base already in member_id order.
    fn assemble(base: File, deltas: Vec<File>) -> Result<Snapshot, StateError> {
        let (base, base_rentals) = base;
        let base_ids: Vec<StringArray> = base.iter().map(ids_of).collect::<Result<_, _>>()?;
        let base_rows = base_ids.iter().map(|a| a.len()).sum();
        let mut s = Snapshot {
            base,
            base_rentals,
            base_ids,
            deltas: Vec::new(),
            delta_rentals: Vec::new(),
            in_deltas: HashMap::new(),
            len: base_rows,
            base_rows,
            delta_rows: 0,
            delta_files: deltas.len(),
            fetched: Fetched::default(),
        };
        for (file, rentals) in deltas {
            for batch in file {
                let ids = ids_of(&batch)?;
                let b = s.deltas.len() as u32;
                for row in 0..ids.len() {
                    let id = ids.value(row);
                    let new = !s.in_deltas.contains_key(id) && s.base_at(id).is_none();
                    s.len += usize::from(new);
                    s.in_deltas.insert(id.to_string(), (b, row as u32));
                }
                s.delta_rows += batch.num_rows();
                s.deltas.push(batch);
                s.delta_rentals.push(rentals.clone());
            }
        }
        Ok(s)
    }

    /// The snapshot after a run that wrote `delta` (the members it changed,
    /// as [`member_file::encode`] encodes them, its rentals where
    /// `rentals` says): what the state holds once that run committed,
    /// without reading it back.
    pub fn with_delta(&self, delta: RecordBatch, rentals: Rentals) -> Result<Snapshot, StateError> {
        let mut deltas: Vec<File> = self
            .deltas
            .iter()
            .zip(&self.delta_rentals)
            .map(|(b, r)| (vec![b.clone()], r.clone()))
            .collect();
        deltas.push((vec![delta], rentals));
        let mut s = Snapshot::assemble((self.base.clone(), self.base_rentals.clone()), deltas)?;
        // Delta files, not batches, count towards compaction.
        s.delta_files = self.delta_files + 1;
        Ok(s)
    }

    /// (entries, bytes) read of the rentals files so far.
    pub fn fetched(&self) -> (u64, u64) {
        (
            self.fetched.entries.load(Ordering::Relaxed),
            self.fetched.bytes.load(Ordering::Relaxed),
        )
    }

    /// Members in the snapshot.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// (base rows, delta rows, delta files), for run.json.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.base_rows, self.delta_rows, self.delta_files)
    }

    /// Whether a run that adds `changed` delta rows should write one new
    /// base instead of another delta.
    pub fn should_compact(&self, changed: usize, policy: Compaction) -> bool {
        let rows = self.delta_rows + changed;
        self.delta_files + 1 > policy.max_deltas
            || rows as f64 > policy.share * self.base_rows as f64
    }

    fn base_at(&self, id: &str) -> Option<At> {
        // Batches are sorted and contiguous: the first batch whose last id is >= id.
        let b = self
            .base_ids
            .partition_point(|a| a.is_empty() || a.value(a.len() - 1) < id);
        let row = crate::table::find_sorted(self.base_ids.get(b)?, id)?;
        Some((b as u32, row as u32))
    }

    /// The newest row of `id`: (is it a delta's, batch, row).
    fn find(&self, id: &str) -> Option<(bool, At)> {
        match self.in_deltas.get(id) {
            Some(&at) => Some((true, at)),
            None => self.base_at(id).map(|at| (false, at)),
        }
    }

    fn batch(&self, delta: bool, b: u32) -> (&RecordBatch, &Rentals) {
        if delta {
            (&self.deltas[b as usize], &self.delta_rentals[b as usize])
        } else {
            (&self.base[b as usize], &self.base_rentals)
        }
    }

    /// Whether every file of the snapshot carries the members' final parts.
    pub fn has_parts(&self) -> bool {
        self.base.iter().chain(&self.deltas).all(parts::present)
    }

    /// The members in `ids` that the snapshot holds, with their parts, by member_id.
    pub fn kept_of(&self, ids: &HashSet<String>) -> Result<Vec<Kept>, StateError> {
        // Grouped by batch, so each batch is decoded once for all its rows.
        let mut wanted: BTreeMap<(bool, u32), Vec<u32>> = BTreeMap::new();
        for id in ids {
            if let Some((delta, (b, row))) = self.find(id) {
                wanted.entry((delta, b)).or_default().push(row);
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for ((delta, b), mut rows) in wanted {
            rows.sort_unstable();
            let (batch, rentals) = self.batch(delta, b);
            self.read_rows(batch, rentals, &rows, &mut out)?;
        }
        out.sort_by(|a, b| a.record.member_id.cmp(&b.record.member_id));
        Ok(out)
    }

    /// Rows `rows` of `batch`, whole: its columns, and its rentals from
    /// the rentals file unless inline.
    fn read_rows(
        &self,
        batch: &RecordBatch,
        rentals: &Rentals,
        rows: &[u32],
        out: &mut Vec<Kept>,
    ) -> Result<(), StateError> {
        let idx = arrow_array::UInt32Array::from(rows.to_vec());
        let taken = arrow_select::take::take_record_batch(batch, &idx).map_err(err)?;
        let records = snapshot::from_batches(std::slice::from_ref(&taken))?;
        let with_parts = parts::present(&taken);
        let entries = match rentals {
            // A file of format 3 whose metadata lost its rentals file's name
            // would otherwise read as members without rentals.
            Rentals::Inline if taken.column_by_name(member_file::RENTALS_AT).is_some() => {
                return Err(rentals
                    .damaged("the file has rentals_at columns but names no rentals file".into()));
            }
            Rentals::Inline => None,
            Rentals::Stored { .. } => {
                let got = rentals.fetch(&member_file::ranges(batch, rows)?)?;
                self.fetched
                    .entries
                    .fetch_add(got.len() as u64, Ordering::Relaxed);
                let bytes: usize = got.iter().map(Bytes::len).sum();
                self.fetched
                    .bytes
                    .fetch_add(bytes as u64, Ordering::Relaxed);
                Some(got)
            }
        };
        for (row, mut record) in records.into_iter().enumerate() {
            let mut part = with_parts.then(|| parts::read(&taken, row)).transpose()?;
            if let Some(entries) = &entries {
                let m = member_rentals::decode(&entries[row]).map_err(|e| {
                    rentals.damaged(format!("the rentals of member {}: {e}", record.member_id))
                })?;
                record.score.rentals_used = m.recent.iter().map(|r| r.rental_id.clone()).collect();
                record.recent = m.recent;
                if let Some(p) = part.as_mut() {
                    p.recent = m.kept;
                }
            }
            out.push(Kept { record, part });
        }
        Ok(())
    }

    /// Every member, by member_id, with `changes` in place of the
    /// snapshot's and the members in `removed` left out: the snapshot
    /// after a run.
    pub fn all_with(
        &self,
        changes: &[Kept],
        removed: &HashSet<String>,
    ) -> Result<Vec<Kept>, StateError> {
        let mut ids: Vec<&str> = self
            .base_ids
            .iter()
            .flat_map(|a| (0..a.len()).map(move |i| a.value(i)))
            .chain(self.in_deltas.keys().map(String::as_str))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let changed: HashSet<&str> = changes
            .iter()
            .map(|m| m.record.member_id.as_str())
            .collect();
        let unchanged: HashSet<String> = ids
            .iter()
            .filter(|id| !changed.contains(*id) && !removed.contains(**id))
            .map(|id| id.to_string())
            .collect();
        let mut out = self.kept_of(&unchanged)?;
        out.extend(changes.iter().cloned());
        out.sort_by(|a, b| a.record.member_id.cmp(&b.record.member_id));
        Ok(out)
    }

    /// Calls `f` with every member, in member_id order, `chunk` members at
    /// a time: an export holds a chunk, not the snapshot.
    pub fn for_each_chunk(
        &self,
        chunk: usize,
        mut f: impl FnMut(Vec<Kept>) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let order = self.newest_rows(None, &HashSet::new())?;
        for part in order.chunks(chunk.max(1)) {
            let mut by_source: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
            for &(src, row) in part {
                by_source.entry(src).or_default().push(row as u32);
            }
            let mut out = Vec::with_capacity(part.len());
            for (src, rows) in by_source {
                let (delta, b) = match src.checked_sub(self.base.len()) {
                    Some(d) => (true, d as u32),
                    None => (false, src as u32),
                };
                let (batch, rentals) = self.batch(delta, b);
                self.read_rows(batch, rentals, &rows, &mut out)?;
            }
            out.sort_by(|a, b| a.record.member_id.cmp(&b.record.member_id));
            f(out)?;
        }
        Ok(())
    }

    /// The snapshot after a run as one new base file: every member's
    /// newest row, the run's changes (`run`, and as records `run_kept`) in
    /// place of the snapshot's, the members in `removed` left out. When
    /// every file is of format 3, rows and rentals entries are copied, never
    /// decoded; a snapshot that still holds older files is decoded and
    /// encoded again (the upgrading run's one-off cost).
    pub fn compacted(
        &self,
        run: &MemberFile,
        run_kept: &[Kept],
        removed: &HashSet<String>,
        model: &str,
        as_of: i64,
    ) -> Result<MemberFile, StateError> {
        let fields = run.batch.schema().fields().clone();
        let copyable = self
            .base
            .iter()
            .chain(&self.deltas)
            .all(|b| b.schema().fields() == &fields)
            && (self.base.is_empty() || matches!(self.base_rentals, Rentals::Stored { .. }))
            && self
                .delta_rentals
                .iter()
                .all(|r| matches!(r, Rentals::Stored { .. }));
        if !copyable {
            let all = self.all_with(run_kept, removed)?;
            return member_file::encode(&all, model, as_of);
        }
        let mut sources: Vec<(&RecordBatch, Option<&Rentals>)> = Vec::new();
        sources.extend(self.base.iter().map(|b| (b, Some(&self.base_rentals))));
        sources.extend(
            self.deltas
                .iter()
                .zip(&self.delta_rentals)
                .map(|(b, r)| (b, Some(r))),
        );
        sources.push((&run.batch, None));
        let order = self.newest_rows(Some(&run.batch), removed)?;
        let mut file = member_file::copy_rows(&sources, &order, &run.rentals)?;
        file.batch = member_file::stamped(file.batch, model, as_of)?;
        let (entries, bytes) = (order.len() as u64, file.rentals.len() as u64);
        self.fetched.entries.fetch_add(entries, Ordering::Relaxed);
        self.fetched.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(file)
    }

    /// (source, row) of every member's newest row in member_id order: the
    /// sources are the base batches, the delta batches, then `run`.
    fn newest_rows(
        &self,
        run: Option<&RecordBatch>,
        removed: &HashSet<String>,
    ) -> Result<Vec<(usize, usize)>, StateError> {
        let run_ids = match run {
            Some(b) => ids_of(b)?,
            None => StringArray::from(Vec::<String>::new()),
        };
        let in_run: HashSet<&str> = (0..run_ids.len()).map(|i| run_ids.value(i)).collect();
        let mut rows: Vec<(&str, usize, usize)> = Vec::with_capacity(self.len + in_run.len());
        let keep = |id: &str| !in_run.contains(id) && !removed.contains(id);
        for (b, ids) in self.base_ids.iter().enumerate() {
            for r in 0..ids.len() {
                let id = ids.value(r);
                if keep(id) && !self.in_deltas.contains_key(id) {
                    rows.push((id, b, r));
                }
            }
        }
        let delta_ids: Vec<StringArray> =
            self.deltas.iter().map(ids_of).collect::<Result<_, _>>()?;
        for (b, ids) in delta_ids.iter().enumerate() {
            for r in 0..ids.len() {
                let id = ids.value(r);
                if keep(id) && self.in_deltas.get(id) == Some(&(b as u32, r as u32)) {
                    rows.push((id, self.base.len() + b, r));
                }
            }
        }
        let last = self.base.len() + self.deltas.len();
        for r in 0..run_ids.len() {
            if !removed.contains(run_ids.value(r)) {
                rows.push((run_ids.value(r), last, r));
            }
        }
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Ok(rows.into_iter().map(|(_, b, r)| (b, r)).collect())
    }

    /// Calls `f` with every member's summary, from its newest row (any order).
    pub fn for_each(&self, mut f: impl FnMut(Summary<'_>)) -> Result<(), StateError> {
        for (delta, batches) in [(false, &self.base), (true, &self.deltas)] {
            for (b, batch) in batches.iter().enumerate() {
                let cols = SummaryColumns::of(batch)?;
                for row in 0..batch.num_rows() {
                    let id = cols.ids.value(row);
                    // A base row is the newest unless a delta holds the member
                    // (base ids are unique); a delta row, if it is the last one.
                    let newest = if delta {
                        self.in_deltas.get(id) == Some(&(b as u32, row as u32))
                    } else {
                        !self.in_deltas.contains_key(id)
                    };
                    if newest {
                        f(cols.at(row));
                    }
                }
            }
        }
        Ok(())
    }
}

struct SummaryColumns<'a> {
    ids: &'a StringArray,
    eligible: &'a arrow_array::BooleanArray,
    status: &'a StringArray,
    score: &'a arrow_array::Float64Array,
    grade: &'a StringArray,
    digest: Option<&'a arrow_array::FixedSizeBinaryArray>,
}

impl<'a> SummaryColumns<'a> {
    fn of(b: &'a RecordBatch) -> Result<SummaryColumns<'a>, StateError> {
        let col = |n: &str| {
            b.column_by_name(n)
                .ok_or_else(|| err(format!("no column {n:?}")))
        };
        let s = |n: &str| col(n)?.as_string_opt::<i32>().ok_or_else(|| err(n));
        Ok(SummaryColumns {
            ids: s("member_id")?,
            eligible: col("eligible")?
                .as_boolean_opt()
                .ok_or_else(|| err("eligible"))?,
            status: s("status")?,
            score: col("score")?
                .as_primitive_opt::<arrow_array::types::Float64Type>()
                .ok_or_else(|| err("score"))?,
            grade: s("grade")?,
            digest: b
                .column_by_name(member_file::DIGEST)
                .and_then(|c| c.as_fixed_size_binary_opt()),
        })
    }

    fn at(&self, row: usize) -> Summary<'a> {
        Summary {
            member_id: self.ids.value(row),
            eligible: self.eligible.value(row),
            status: self.status.value(row),
            score: self.score.is_valid(row).then(|| self.score.value(row)),
            grade: self.grade.is_valid(row).then(|| self.grade.value(row)),
            digest: self.digest.map(|d| d.value(row)),
        }
    }
}

/// The base's batches in member_id order: as written, or sorted once here
/// (a base from an older writer is checked, not trusted).
fn sorted(base: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, StateError> {
    let ids: Vec<StringArray> = base.iter().map(ids_of).collect::<Result<_, _>>()?;
    let mut last: Option<&str> = None;
    let mut ordered = true;
    for a in &ids {
        for i in 0..a.len() {
            let id = a.value(i);
            ordered &= last.is_none_or(|l| l < id);
            last = Some(id);
        }
    }
    if ordered || base.is_empty() {
        return Ok(base);
    }
    let schema = base[0].schema();
    let one = arrow_select::concat::concat_batches(&schema, &base).map_err(err)?;
    let ids = ids_of(&one)?;
    let mut order: Vec<u32> = (0..one.num_rows() as u32).collect();
    order.sort_by(|&a, &b| ids.value(a as usize).cmp(ids.value(b as usize)));
    let order = arrow_array::UInt32Array::from(order);
    Ok(vec![
        arrow_select::take::take_record_batch(&one, &order).map_err(err)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tests::record;

    fn batch(records: &[MemberRecord]) -> Result<RecordBatch, StateError> {
        snapshot::to_batch(records, "m@1", 1)
    }

    fn inline(batches: Vec<RecordBatch>) -> File {
        (batches, Rentals::Inline)
    }

    #[test]
    fn the_newest_row_of_a_member_wins() -> Result<(), StateError> {
        let base = batch(&[
            record("a", Some(1.0)),
            record("b", Some(2.0)),
            record("c", None),
        ])?;
        let d1 = batch(&[record("b", Some(20.0)), record("d", Some(4.0))])?;
        let d2 = batch(&[record("b", Some(200.0))])?;
        let s = Snapshot::new(inline(vec![base]), vec![inline(vec![d1]), inline(vec![d2])])?;
        assert_eq!(s.len(), 4);
        assert_eq!(s.sizes(), (3, 3, 2));
        let ids: HashSet<String> = ["b", "d", "x"].iter().map(|s| s.to_string()).collect();
        let got: Vec<MemberRecord> = s.kept_of(&ids)?.into_iter().map(|k| k.record).collect();
        assert_eq!(got, vec![record("b", Some(200.0)), record("d", Some(4.0))]);
        let gone: HashSet<String> = ["c".to_string()].into();
        let a9 = Kept {
            record: record("a", Some(9.0)),
            part: None,
        };
        let all = s.all_with(&[a9], &gone)?;
        let scores: Vec<(String, Option<f64>)> = all
            .iter()
            .map(|m| (m.record.member_id.clone(), m.record.score.score))
            .collect();
        assert_eq!(
            scores,
            vec![
                ("a".into(), Some(9.0)),
                ("b".into(), Some(200.0)),
                ("d".into(), Some(4.0))
            ]
        );
        let mut chunked = Vec::new();
        s.for_each_chunk(1, |k| {
            assert_eq!(k.len(), 1);
            chunked.extend(k);
            Ok(())
        })?;
        assert_eq!(chunked, s.all_with(&[], &HashSet::new())?);
        let mut seen = Vec::new();
        s.for_each(|m| seen.push((m.member_id.to_string(), m.score)))?;
        seen.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            seen.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![Some(1.0), Some(200.0), None, Some(4.0)]
        );
        Ok(())
    }

    #[test]
    fn an_unsorted_base_is_sorted_and_a_split_one_is_searched_across_batches()
    -> Result<(), StateError> {
        let unsorted = batch(&[record("c", None), record("a", Some(1.0))])?;
        let s = Snapshot::new(inline(vec![unsorted]), Vec::new())?;
        let ids: HashSet<String> = ["a", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(s.kept_of(&ids)?.len(), 2);
        let split = vec![
            batch(&[record("a", Some(1.0)), record("b", None)])?,
            batch(&[record("c", Some(3.0)), record("e", None)])?,
        ];
        let s = Snapshot::new(inline(split), Vec::new())?;
        for id in ["a", "b", "c", "e"] {
            assert!(s.base_at(id).is_some(), "{id}");
        }
        assert!(s.base_at("d").is_none() && s.base_at("f").is_none());
        Ok(())
    }

    #[test]
    fn deltas_past_a_tenth_of_the_base_or_too_many_files_compact() -> Result<(), StateError> {
        let base: Vec<MemberRecord> = (0..100)
            .map(|i| record(&format!("m{i:03}"), None))
            .collect();
        let s = Snapshot::new(
            inline(vec![batch(&base)?]),
            vec![inline(vec![batch(&base[..5])?])],
        )?;
        let policy = Compaction::default();
        assert!(
            !s.should_compact(5, policy),
            "10 of 100 rows is not past a tenth"
        );
        assert!(s.should_compact(6, policy));
        let many: Vec<File> = (0..policy.max_deltas)
            .map(|_| Ok(inline(vec![batch(&base[..0])?])))
            .collect::<Result<_, StateError>>()?;
        let s = Snapshot::new(inline(vec![batch(&base)?]), many)?;
        assert!(s.should_compact(0, policy));
        assert!(!s.should_compact(
            0,
            Compaction {
                share: 1.0,
                max_deltas: 49
            }
        ));
        Ok(())
    }
}
