//! The fitting data: rental results (a score state's final results, or a
//! `rental_scores.parquet` of a full run) joined with claims, one row per
//! rental, split by end time into the training and the validation period.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxBuildHasher;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use pitwall_lake::{FileRef, Input, Location};
use pitwall_score::{Features, Model, Status};
use pitwall_score_state::results::{self, Columns};
use pitwall_score_state::{FinalTable, State};

use crate::claims::{ClaimFiles, ClaimInput, Span};
use crate::{FitJobError, Result};

/// One rental result with what a fit and a member score need of it; its
/// rental id is [`Results::rental_id`] of its position.
#[derive(Debug, Clone, PartialEq)]
pub struct RentalRow {
    /// Index into [`Results::members`].
    pub member: u32,
    pub start_at: i64,
    pub end_at: i64,
    pub status: Status,
    pub features: Features,
    /// At-fault claims of the rental (after the claims contract).
    pub claims: u32,
}

impl RentalRow {
    /// A row a fit or a lift uses: scored, with distance.
    pub fn fits(&self) -> bool {
        fits(self.status, &self.features)
    }
}

/// A rental a fit, a lift or the member view uses: scored, with distance.
pub fn fits(status: Status, features: &Features) -> bool {
    status == Status::Scored && features.distance_km > 0.0
}

/// `[from, to)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    pub from: i64,
    pub to: i64,
}

impl Period {
    pub fn holds(&self, end_at: i64) -> bool {
        end_at >= self.from && end_at < self.to
    }
}

/// Rental results in rental id order, members interned.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Where they came from, for the provenance.
    pub source: String,
    pub rows: Vec<RentalRow>,
    /// The rental id of each row.
    ids: RentalIds,
    /// Every FENCE-th id, copied: a lookup's binary search runs in this
    /// small table, then in one stretch of `ids`, instead of jumping across
    /// all of them.
    fences: RentalIds,
    /// When every id has at most 15 bytes (most fleets'), each id as an
    /// integer in the same order ([`ordered_key`]): a lookup is a binary
    /// search over integers, reading no text.
    keys: Option<Vec<u128>>,
    pub members: Vec<String>,
}

/// Rental ids, one per row, in one buffer: millions of rows without an
/// allocation each, and a lookup that reads only ids.
#[derive(Debug, Clone, Default)]
pub struct RentalIds {
    text: String,
    /// Where id i ends in `text`; it starts where id i − 1 ends.
    ends: Vec<usize>,
}

impl RentalIds {
    pub fn with_capacity(rows: usize) -> RentalIds {
        let mut ids = RentalIds::default();
        ids.reserve(rows);
        ids
    }

    /// Room for `rows` more ids of about 16 bytes.
    pub fn reserve(&mut self, rows: usize) {
        self.ends.reserve(rows);
        self.text.reserve(rows * 16);
    }

    pub fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends.push(self.text.len());
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// `slice::partition_point` over the ids in `within` of a sorted list:
    /// the first place in it whose id fails `pred`.
    fn partition_point(
        &self,
        within: std::ops::Range<usize>,
        pred: impl Fn(&str) -> bool,
    ) -> usize {
        let (mut lo, mut hi) = (within.start, within.end.min(self.len()));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.get(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn permuted(&self, order: &[usize]) -> RentalIds {
        let mut out = RentalIds::with_capacity(order.len());
        for &i in order {
            out.push(self.get(i));
        }
        out
    }

    /// `other`'s ids after these, in one copy of their text.
    fn append(&mut self, other: &RentalIds) {
        let base = self.text.len();
        self.text.push_str(&other.text);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }
}

/// An id of at most 15 bytes as an integer that orders as the id does:
/// its bytes zero-padded and read big-endian, its length in the last byte
/// (so a prefix comes first, as it does among strings). Two ids have the
/// same key only if they are the same id.
pub(crate) fn ordered_key(id: &str) -> Option<u128> {
    let b = id.as_bytes();
    (b.len() < 16).then(|| {
        let mut k = [0u8; 16];
        k[..b.len()].copy_from_slice(b);
        k[15] = b.len() as u8;
        u128::from_be_bytes(k)
    })
}

fn ordered_keys(ids: &RentalIds) -> Option<Vec<u128>> {
    ids.iter().map(ordered_key).collect()
}

/// Rows per stretch between two fences of [`Results::index`].
const FENCE: usize = 32;

/// Member ids to dense indices while rows are read. An id of up to 15
/// bytes (most are) is its own key: its bytes and length in one `u128`,
/// held in the table beside its index, so a lookup reads one slot and
/// compares no text. Longer ids sit in one buffer and the table holds
/// their indices; a lookup reads the table and one id. The ids are kept
/// in first-met order either way.
#[derive(Default)]
struct Interner {
    short: HashTable<(u128, u32)>,
    long: HashTable<u32>,
    names: RentalIds,
}

fn hash(id: &str) -> u64 {
    FxBuildHasher.hash_one(id)
}

impl Interner {
    fn get(&mut self, id: &str) -> u32 {
        let next = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        if let Some(key) = ordered_key(id) {
            let entry = self.short.entry(
                FxBuildHasher.hash_one(key),
                |&(k, _)| k == key,
                |&(k, _)| FxBuildHasher.hash_one(k),
            );
            return match entry {
                Entry::Occupied(e) => e.get().1,
                Entry::Vacant(v) => {
                    v.insert((key, next));
                    self.names.push(id);
                    next
                }
            };
        }
        let names = &self.names;
        let entry = self.long.entry(
            hash(id),
            |&i| names.get(i as usize) == id,
            |&i| hash(names.get(i as usize)),
        );
        match entry {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(v) => {
                v.insert(next);
                self.names.push(id);
                next
            }
        }
    }

    fn ids(&self) -> impl Iterator<Item = &str> {
        self.names.iter()
    }

    fn into_ids(self) -> Vec<String> {
        self.ids().map(str::to_string).collect()
    }
}

impl Results {
    /// Results from rows in any order, `ids[i]` the rental id of
    /// `rows[i]` (checked for duplicates).
    pub fn new(
        source: &str,
        mut rows: Vec<RentalRow>,
        mut ids: RentalIds,
        members: Vec<String>,
    ) -> Result<Results> {
        // Rental id order: every figure is independent of the input's order.
        // Strictly rising ids are sorted and have no duplicate: one pass.
        let mut keys = ordered_keys(&ids);
        let rising = match &keys {
            Some(k) => k.windows(2).all(|w| w[0] < w[1]),
            None => (1..ids.len()).all(|i| ids.get(i - 1) < ids.get(i)),
        };
        if !rising {
            let mut order: Vec<usize> = (0..ids.len()).collect();
            order.sort_unstable_by(|&a, &b| ids.get(a).cmp(ids.get(b)));
            let mut taken: Vec<Option<RentalRow>> = rows.into_iter().map(Some).collect();
            rows = order.iter().filter_map(|&i| taken[i].take()).collect();
            ids = ids.permuted(&order);
            keys = ordered_keys(&ids);
            if let Some(i) = (1..ids.len()).find(|&i| ids.get(i - 1) == ids.get(i)) {
                return Err(FitJobError::Refused(format!(
                    "rental {} appears twice in the results at {source}: give one result per \
                     rental (a state's final results, or one run's rental_scores.parquet)",
                    ids.get(i)
                )));
            }
        }
        let mut fences = RentalIds::with_capacity(ids.len() / FENCE + 1);
        for i in (0..ids.len()).step_by(FENCE) {
            fences.push(ids.get(i));
        }
        Ok(Results {
            source: source.to_string(),
            rows,
            ids,
            fences,
            keys,
            members,
        })
    }

    /// The rental id of row i.
    pub fn rental_id(&self, i: usize) -> &str {
        self.ids.get(i)
    }

    /// Results from the state's own row type (synthetic data, tests).
    pub fn from_result_rows(
        source: &str,
        rows: &[pitwall_score_state::ResultRow],
    ) -> Result<Results> {
        let mut members = Interner::default();
        let mut ids = RentalIds::with_capacity(rows.len());
        let rows = rows
            .iter()
            .inspect(|r| ids.push(&r.rental.rental_id))
            .map(|r| RentalRow {
                member: members.get(&r.rental.member_id),
                start_at: r.rental.start_at,
                end_at: r.rental.end_at,
                status: r.assessment.status,
                features: r.assessment.features,
                claims: 0,
            })
            .collect();
        Results::new(source, rows, ids, members.into_ids())
    }

    /// The row of the rental with this id.
    pub fn index(&self, rental_id: &str) -> Option<usize> {
        if let Some(keys) = &self.keys {
            // An id longer than every stored one is not among them.
            return keys.binary_search(&ordered_key(rental_id)?).ok();
        }
        // The last fence at or below the id bounds its stretch of FENCE rows.
        let f = self
            .fences
            .partition_point(0..self.fences.len(), |k| k <= rental_id);
        let stretch = f.checked_sub(1)? * FENCE..f * FENCE;
        let i = self.ids.partition_point(stretch, |k| k < rental_id);
        (i < self.ids.len() && self.ids.get(i) == rental_id).then_some(i)
    }

    pub fn span(&self, rental_id: &str) -> Option<Span> {
        self.index(rental_id).map(|row| Span {
            start_at: self.rows[row].start_at,
            end_at: self.rows[row].end_at,
            row,
        })
    }

    /// Sets each rental's at-fault claim count from the valid claims.
    pub fn attach(&mut self, claims: &[crate::claims::Claim]) {
        let rows: Vec<usize> = claims
            .iter()
            .filter(|c| c.at_fault)
            .filter_map(|c| self.index(&c.rental_id))
            .collect();
        self.count_claims(rows);
    }

    /// Each rental's claim count: how often its row is in `rows`.
    fn count_claims(&mut self, rows: Vec<usize>) {
        for r in &mut self.rows {
            r.claims = 0;
        }
        for i in rows {
            self.rows[i].claims += 1;
        }
    }

    /// Reads the claims at `url` under the contract, against these
    /// rentals, and attaches the valid at-fault ones.
    pub fn read_claims(&mut self, url: &str, threads: usize) -> Result<ClaimInput> {
        self.attach_claims(&ClaimFiles::read(&Location::parse(url)?)?, threads)
    }

    /// Checks decoded claims files against these rentals and attaches the
    /// valid at-fault ones.
    pub fn attach_claims(&mut self, files: &ClaimFiles, threads: usize) -> Result<ClaimInput> {
        let input = files.check(&|id| self.span(id), threads)?;
        let rows: Vec<usize> = input
            .claims
            .iter()
            .zip(&input.rental_rows)
            .filter(|(c, _)| c.at_fault)
            .map(|(_, &row)| row)
            .collect();
        self.count_claims(rows);
        Ok(input)
    }

    pub fn min_end(&self) -> Option<i64> {
        self.rows.iter().map(|r| r.end_at).min()
    }

    pub fn max_end(&self) -> Option<i64> {
        self.rows.iter().map(|r| r.end_at).max()
    }
}

/// Reads rental results from a score state (its final results) or from
/// Parquet results files (a full run's `rental_scores.parquet`).
pub fn load_results(url: &str, threads: usize) -> Result<Results> {
    let read = if url.ends_with(".parquet") {
        from_files(url, threads)?
    } else {
        let state = State::open(url)?;
        if state.head().is_some() {
            from_table(&state.load_final()?)?
        } else {
            from_files(url, threads)?
        }
    };
    Results::new(url, read.rows, read.ids, read.members.into_ids())
}

/// The rental results at `results` and the claims files at `claims`,
/// decoded at the same time (the claims' checks need the rentals: see
/// [`Results::attach_claims`]).
pub fn load_with_claims(
    results: &str,
    claims: &str,
    threads: usize,
) -> Result<(Results, ClaimFiles)> {
    let (results, claims) = crate::par::beside(
        || load_results(results, threads),
        || ClaimFiles::read(&Location::parse(claims)?),
    );
    Ok((results?, claims?))
}

/// Rows as they are read, with their ids and the members met so far.
#[derive(Default)]
struct Read {
    rows: Vec<RentalRow>,
    ids: RentalIds,
    members: Interner,
}

impl Read {
    /// The rows of a later part, its members interned into ours: the
    /// member order is the one a single reader would have met them in.
    fn append(&mut self, part: Read) {
        let remap: Vec<u32> = part.members.ids().map(|id| self.members.get(id)).collect();
        self.rows.extend(part.rows.into_iter().map(|mut r| {
            r.member = remap[r.member as usize];
            r
        }));
        self.ids.append(&part.ids);
    }

    fn reserve(&mut self, rows: usize) {
        self.rows.reserve(rows);
        self.ids.reserve(rows);
    }
}

fn from_table(table: &FinalTable) -> Result<Read> {
    let mut read = Read::default();
    read.reserve(table.len());
    table.for_each(|c, i| {
        read.ids.push(c.rental_id.value(i));
        let row = row_of(c, i, &mut read.members)?;
        read.rows.push(row);
        Ok(())
    })?;
    Ok(read)
}

/// What a fit reads of a results file besides the integer features
/// ([`results::INT_COLUMNS`]): the rest (car, reason, score, grade, model)
/// is left undecoded.
const IDS: [&str; 3] = ["rental_id", "member_id", "status"];
const TIMES: [&str; 2] = ["start_at", "end_at"];
const FLOATS: [&str; 2] = ["coverage", "distance_km"];

fn from_files(url: &str, threads: usize) -> Result<Read> {
    let loc = Location::parse(url)?;
    let files = loc.list(&[".parquet"])?;
    if files.is_empty() {
        return Err(FitJobError::NoInput {
            what: "rental results",
            location: url.to_string(),
            expected: "a score state, or rental_scores.parquet files",
        });
    }
    // Every row group of every file is a unit of work; each thread reads a
    // contiguous run of them, so the parts join in file and row order.
    let mut opened = Vec::with_capacity(files.len());
    let mut units: Vec<(usize, usize, usize)> = Vec::new();
    for (f, file) in files.iter().enumerate() {
        let input = Location::open(file)?;
        let meta = ArrowReaderMetadata::load(&input, ArrowReaderOptions::default())
            .map_err(|e| bad_results(file, &e))?;
        for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
            units.push((f, g, rg.num_rows().max(0) as usize));
        }
        opened.push((input, meta));
    }
    let per = units.len().div_ceil(threads.max(1)).max(1);
    let (files, opened) = (&files, &opened);
    let parts = std::thread::scope(|s| {
        let jobs: Vec<_> = units
            .chunks(per)
            .map(|run| s.spawn(move || read_units(files, opened, run)))
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join().unwrap_or_else(|_| {
                    Err(FitJobError::Refused(
                        "a results reader thread panicked".into(),
                    ))
                })
            })
            .collect::<Vec<Result<Read>>>()
    });
    // The first part is the start of the whole, its members already in
    // first-met order: it is kept, not copied, and the others join it.
    let mut parts = parts.into_iter();
    let mut read = parts.next().transpose()?.unwrap_or_default();
    for part in parts {
        read.append(part?);
    }
    Ok(read)
}

fn bad_results(file: &FileRef, e: &dyn std::fmt::Display) -> FitJobError {
    FitJobError::Lake(pitwall_lake::LakeError::BadTable {
        path: file.display.clone(),
        problem: format!("{e} (expected the columns of rental_scores.parquet)"),
    })
}

/// A row whose value is no such value: the columns are right, the row is not.
fn bad_row(file: &FileRef, e: &dyn std::fmt::Display) -> FitJobError {
    FitJobError::Lake(pitwall_lake::LakeError::BadTable {
        path: file.display.clone(),
        problem: format!(
            "{e}; a fit reads the results as a score run wrote them: correct or drop the row"
        ),
    })
}

/// The rows of some row groups, `(file, row group, rows)`.
fn read_units(
    files: &[FileRef],
    opened: &[(Input, ArrowReaderMetadata)],
    units: &[(usize, usize, usize)],
) -> Result<Read> {
    let mut part = Read::default();
    part.reserve(units.iter().map(|u| u.2).sum());
    for &(f, g, _) in units {
        let file = &files[f];
        let bad = |e: &dyn std::fmt::Display| bad_results(file, e);
        let (opened_input, meta) = &opened[f];
        // The file's row number of the group's first row, for the messages.
        let mut first: usize = meta.metadata().row_groups()[..g]
            .iter()
            .map(|rg| rg.num_rows().max(0) as usize)
            .sum();
        // A local file is opened again (a clone would share its offset);
        // a fetched object is shared.
        let input = match opened_input {
            Input::Remote(bytes) => Input::Remote(bytes.clone()),
            Input::Local(_) => Location::open(file)?,
        };
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(input, meta.clone());
        let needed = IDS
            .iter()
            .chain(&TIMES)
            .chain(&FLOATS)
            .chain(&results::INT_COLUMNS);
        let mask = ProjectionMask::columns(builder.parquet_schema(), needed.copied());
        let reader = builder
            .with_row_groups(vec![g])
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| bad(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            Projected::of(&batch)
                .map_err(|e| bad(&e))?
                .rows(&mut part, first)
                .map_err(|e| bad_row(file, &e))?;
            first += batch.num_rows();
        }
    }
    Ok(part)
}

/// The needed columns of one batch, cast to the types the rows take.
struct Projected {
    ids: [ArrayRef; 3],
    times: [ArrayRef; 2],
    floats: [ArrayRef; 2],
    ints: [ArrayRef; 7],
}

impl Projected {
    fn of(b: &RecordBatch) -> std::result::Result<Projected, String> {
        fn cast<const N: usize>(
            b: &RecordBatch,
            names: [&str; N],
            t: &DataType,
        ) -> std::result::Result<[ArrayRef; N], String> {
            let cols = names
                .iter()
                .map(|n| {
                    let c = b
                        .column_by_name(n)
                        .ok_or_else(|| format!("no column {n:?}"))?;
                    arrow_cast::cast(c, t).map_err(|e| format!("column {n}: {e}"))
                })
                .collect::<std::result::Result<Vec<_>, String>>()?;
            cols.try_into().map_err(|_| "column count".to_string())
        }
        Ok(Projected {
            ids: cast(b, IDS, &DataType::Utf8)?,
            times: cast(b, TIMES, &results::ts_type())?,
            floats: cast(b, FLOATS, &DataType::Float64)?,
            ints: cast(b, results::INT_COLUMNS, &DataType::Int64)?,
        })
    }

    /// Appends the batch's rows; `first` is the file's row number of its
    /// first, for the messages.
    fn rows(&self, read: &mut Read, first: usize) -> std::result::Result<(), String> {
        let [rental, member, status] = self.ids.each_ref().map(|a| a.as_string::<i32>());
        let [start, end] = self
            .times
            .each_ref()
            .map(|a| a.as_primitive::<TimestampMillisecondType>());
        let [coverage, km] = self
            .floats
            .each_ref()
            .map(|a| a.as_primitive::<Float64Type>());
        let ints = self.ints.each_ref().map(|a| a.as_primitive::<Int64Type>());
        for i in 0..rental.len() {
            let at = |e: &dyn std::fmt::Display| format!("row {}: {e}", first + i);
            let null = [
                rental.is_null(i),
                member.is_null(i),
                status.is_null(i),
                start.is_null(i),
                end.is_null(i),
            ];
            if null.iter().any(|x| *x) {
                return Err(at(
                    &"a rental_id, member_id, status, start_at or end_at is null",
                ));
            }
            read.ids.push(rental.value(i));
            read.rows.push(RentalRow {
                member: read.members.get(member.value(i)),
                start_at: start.value(i),
                end_at: end.value(i),
                status: results::parse_status(status.value(i)).map_err(|e| at(&e))?,
                features: results::features_at(&ints, coverage, km, i).map_err(|e| at(&e))?,
                claims: 0,
            });
        }
        Ok(())
    }
}

fn row_of(
    c: &Columns<'_>,
    i: usize,
    members: &mut Interner,
) -> Result<RentalRow, pitwall_score_state::StateError> {
    Ok(RentalRow {
        member: members.get(c.member_id.value(i)),
        start_at: c.start_at.value(i),
        end_at: c.end_at.value(i),
        status: c.status(i)?,
        features: c.features(i)?,
        claims: 0,
    })
}

/// The capped factor values of a rental under `model`, in its factor order.
pub fn factors(model: &Model, f: &Features) -> [f64; 5] {
    model.factor_inputs(f).as_array()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(member: u32, end_at: i64) -> RentalRow {
        RentalRow {
            member,
            start_at: end_at - 60_000,
            end_at,
            status: Status::Scored,
            features: Features::default(),
            claims: 0,
        }
    }

    fn results(ids: &[String]) -> Result<Results> {
        let mut list = RentalIds::default();
        let rows = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                list.push(id);
                row(0, i as i64 * 1000)
            })
            .collect();
        Results::new("test", rows, list, vec!["m".into()])
    }

    #[test]
    fn every_id_is_found_at_its_row_and_no_other_is() {
        // More than a few fence stretches, the last one short; ids short
        // enough to search as integers, and ids that are not (searched in
        // the text through the fences).
        for long in ["", "-with-a-long-suffix"] {
            let ids: Vec<String> = (0..(FENCE * 7 + 5))
                .map(|i| format!("r{:05}{long}", i * 2))
                .collect();
            let r = results(&ids).expect("results");
            assert_eq!(r.keys.is_some(), long.is_empty());
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(r.index(id), Some(i), "{id}");
                assert_eq!(r.rental_id(i), id);
            }
            for miss in [
                "", "a", "r00001", "r00065", "r99999", "s", "r0000", "r00000\0",
            ] {
                let miss = format!("{miss}{long}");
                assert_eq!(r.index(&miss), None, "{miss}");
            }
            assert_eq!(r.index("r00000-and-longer-than-any"), None);
        }
        assert_eq!(results(&[]).expect("empty").index("r"), None);
    }

    #[test]
    fn integer_keys_order_as_the_ids_do() {
        let ids = [
            "",
            "\0",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "b",
            "r000000009",
            "r00000001",
            "~~~~~~~~~~~~~~~",
        ];
        for a in ids {
            for b in ids {
                assert_eq!(ordered_key(a).cmp(&ordered_key(b)), a.cmp(b), "{a:?} {b:?}");
            }
        }
        assert_eq!(ordered_key(&"x".repeat(16)), None);
    }

    #[test]
    fn rows_given_out_of_order_are_sorted_with_their_ids() {
        let ids: Vec<String> = ["c", "a", "b"].map(String::from).into();
        let r = results(&ids).expect("results");
        let by_id: Vec<(&str, i64)> = (0..3).map(|i| (r.rental_id(i), r.rows[i].end_at)).collect();
        assert_eq!(by_id, [("a", 1000), ("b", 2000), ("c", 0)]);
        assert_eq!(r.index("c"), Some(2));
    }

    fn read_of(rows: &[(&str, &str)]) -> Read {
        let mut read = Read::default();
        for (i, (rental, member)) in rows.iter().enumerate() {
            let m = read.members.get(member);
            read.ids.push(rental);
            read.rows.push(row(m, i as i64));
        }
        read
    }

    #[test]
    fn parts_read_apart_join_as_one_reader_would_have_read_them() {
        let all = [
            ("a", "m3"),
            ("b", "m1"),
            ("c", "m3"),
            ("d", "m2"),
            ("e", "m1"),
            ("f", "m4"),
        ];
        let whole = read_of(&all);
        let mut joined = read_of(&all[..2]);
        joined.append(read_of(&all[2..5]));
        joined.append(read_of(&all[5..]));
        let members = |r: &Read| r.rows.iter().map(|r| r.member).collect::<Vec<_>>();
        assert_eq!(members(&joined), members(&whole));
        let ids = |r: &Read| {
            (0..r.ids.len())
                .map(|i| r.ids.get(i).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&joined), ids(&whole));
        assert_eq!(joined.members.into_ids(), whole.members.into_ids());
    }

    #[test]
    fn short_and_long_ids_are_interned_in_first_met_order() {
        let long = "member-with-a-long-identifier";
        let ids = [
            "m1",
            "",
            long,
            "m1",
            "m1\0",
            "abcdefghijklmno",
            long,
            "",
            "abcdefghijklmnop",
        ];
        let mut i = Interner::default();
        let got: Vec<u32> = ids.iter().map(|id| i.get(id)).collect();
        // "m1\0" is not "m1": the length is part of the key.
        assert_eq!(got, [0, 1, 2, 0, 3, 4, 2, 1, 5]);
        assert_eq!(
            i.into_ids(),
            [
                "m1",
                "",
                long,
                "m1\0",
                "abcdefghijklmno",
                "abcdefghijklmnop"
            ]
        );
    }

    #[test]
    fn a_rental_twice_is_refused_by_id() {
        let ids: Vec<String> = ["b", "a", "b"].map(String::from).into();
        let e = results(&ids).expect_err("duplicate").to_string();
        assert!(e.contains("rental b appears twice"), "{e}");
    }
}
