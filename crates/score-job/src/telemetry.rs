//! The telemetry pass: every file is read once, rows are checked against the
//! contract, and samples inside a considered rental are spilled by car.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use pitwall_lake::{FileRef, Input, Location};
use pitwall_score::contract::check_telemetry;
use pitwall_score::{Rental, Sample};

use crate::plan::{ReadPlan, latest_in, ts_unit};
use crate::rejects::{RejectLog, Rejected};
use crate::spill::{Buffers, Spill};
use crate::{JobError, Progress};

pub const COLUMNS: [&str; 4] = ["car_id", "ts", "speed_kmh", "speed_limit_kmh"];
/// The columns of `rejected_telemetry.parquet` after file, row and rule.
pub const COLUMNS_REJECTED: [&str; 4] = ["car_id", "ts_ms", "speed_kmh", "speed_limit_kmh"];
const DAY_MS: i64 = 86_400_000;

/// The cars that have considered rentals, and when those rentals ran.
pub struct Cars {
    pub ids: Vec<String>,
    pub(crate) index: HashMap<String, u32>,
    /// Per car: disjoint, sorted [start, end] spans of its rentals.
    spans: Vec<Vec<(i64, i64)>>,
    /// Per car: indices into the rentals slice, by start.
    pub rentals: Vec<Vec<usize>>,
}

impl Cars {
    pub fn new(rentals: &[Rental], considered: impl Fn(&Rental) -> bool) -> Cars {
        let mut ids: Vec<String> = rentals
            .iter()
            .filter(|r| considered(r))
            .map(|r| r.car_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        ids.shrink_to_fit();
        let index: HashMap<String, u32> = ids
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u32))
            .collect();
        let mut by_car: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
        for (i, r) in rentals.iter().enumerate() {
            if let (true, Some(&c)) = (considered(r), index.get(&r.car_id)) {
                by_car[c as usize].push(i);
            }
        }
        let mut spans = Vec::with_capacity(ids.len());
        for list in &mut by_car {
            list.sort_by_key(|&i| (rentals[i].start_at, rentals[i].end_at));
            spans.push(crate::plan::merge(
                list.iter()
                    .map(|&i| (rentals[i].start_at, rentals[i].end_at)),
            ));
        }
        Cars {
            ids,
            index,
            spans,
            rentals: by_car,
        }
    }

    /// Whether a car id in `[lo, hi]` has rentals here (ids are sorted).
    pub fn any_between(&self, lo: &str, hi: &str) -> bool {
        let i = self.ids.partition_point(|c| c.as_str() < lo);
        self.ids.get(i).is_some_and(|c| c.as_str() <= hi)
    }

    /// Every rental span, for the reading plan.
    pub fn spans(&self) -> Vec<(i64, i64)> {
        self.spans.iter().flatten().copied().collect()
    }

    /// When the newest file holding samples of `rental` reached the lake:
    /// the time its telemetry became complete, as far as this run saw.
    pub fn landed(&self, stats: &TelemetryStats, rental: &Rental) -> Option<i64> {
        let car = *self.index.get(&rental.car_id)?;
        let from = stats.landed.partition_point(|l| l.car < car);
        let to = stats.landed.partition_point(|l| l.car <= car);
        stats.landed[from..to]
            .iter()
            .filter(|l| l.first_ts <= rental.end_at && l.last_ts >= rental.start_at)
            .filter_map(|l| l.modified_ms)
            .max()
    }

    /// The newest valid sample of `rental`'s car that the pass read, inside
    /// a rental or not: the evidence that the rental's tail is in.
    pub fn latest(&self, stats: &TelemetryStats, rental: &Rental) -> Option<i64> {
        let car = *self.index.get(&rental.car_id)?;
        stats
            .latest
            .get(car as usize)
            .copied()
            .filter(|&t| t != i64::MIN)
    }

    pub(crate) fn covers(&self, car: u32, ts: i64) -> bool {
        let spans = &self.spans[car as usize];
        let i = spans.partition_point(|&(s, _)| s <= ts);
        i > 0 && spans[i - 1].1 >= ts
    }
}

#[derive(Debug, Default)]
pub struct TelemetryStats {
    pub files: usize,
    pub rows: u64,
    pub valid: u64,
    pub in_rentals: u64,
    pub outside_rentals: u64,
    /// Days (since the epoch) with at least one valid sample.
    pub days: BTreeSet<i64>,
    pub rejects: RejectLog,
    /// Valid samples for recently final rentals, in files new to the state.
    pub late_for_final: u64,
    pub read: ReadCounts,
    /// Files read or known, as (name, size, latest instant they can hold).
    pub files_seen: Vec<(String, u64, i64)>,
    /// Per file and car: the samples kept, and when the file was written;
    /// sorted by car once the pass is done, so a rental's are found by
    /// binary search instead of a scan per rental.
    pub landed: Vec<Landed>,
    /// Per car (by index among `Cars`): its newest valid sample read,
    /// `i64::MIN` for none; may be shorter than the cars, for none.
    pub latest: Vec<i64>,
}

/// A car's kept samples in one file.
#[derive(Debug, Clone, Copy)]
pub struct Landed {
    pub car: u32,
    pub first_ts: i64,
    pub last_ts: i64,
    pub modified_ms: Option<i64>,
}

/// What the telemetry pass opened and what it left out, for run.json.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReadCounts {
    pub files_listed: u64,
    pub folders_listed: u64,
    pub partitions_skipped: u64,
    /// Files whose partition holds no evaluated rental, already read by earlier runs.
    pub files_skipped_by_partition: u64,
    /// Files opened (their footer read).
    pub files_opened: u64,
    /// Opened files none of whose row groups can meet the plan.
    pub files_skipped_by_statistics: u64,
    pub row_groups: u64,
    pub row_groups_read: u64,
    pub rows_skipped_by_statistics: u64,
}

impl ReadCounts {
    fn merge(&mut self, o: &ReadCounts) {
        self.files_skipped_by_partition += o.files_skipped_by_partition;
        self.files_opened += o.files_opened;
        self.files_skipped_by_statistics += o.files_skipped_by_statistics;
        self.row_groups += o.row_groups;
        self.row_groups_read += o.row_groups_read;
        self.rows_skipped_by_statistics += o.rows_skipped_by_statistics;
    }
}

impl TelemetryStats {
    fn merge(&mut self, o: TelemetryStats) {
        self.files += o.files;
        self.rows += o.rows;
        self.valid += o.valid;
        self.in_rentals += o.in_rentals;
        self.outside_rentals += o.outside_rentals;
        self.days.extend(o.days);
        self.rejects.merge(o.rejects);
        self.late_for_final += o.late_for_final;
        self.read.merge(&o.read);
        self.files_seen.extend(o.files_seen);
        self.landed.extend(o.landed);
        self.note_latest(o.latest.iter().copied().enumerate());
    }

    /// Raises each car's newest sample to what `cars` says.
    fn note_latest(&mut self, cars: impl Iterator<Item = (usize, i64)>) {
        for (car, t) in cars {
            if t == i64::MIN {
                continue;
            }
            if self.latest.len() <= car {
                self.latest.resize(car + 1, i64::MIN);
            }
            self.latest[car] = self.latest[car].max(t);
        }
    }
}

/// Reads all files with `threads` workers, each taking the next file.
pub fn read_all(
    files: &[FileRef],
    cars: &Cars,
    plan: &ReadPlan<'_>,
    spill: &Spill,
    threads: usize,
    progress: &dyn Progress,
) -> Result<TelemetryStats, JobError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Result<TelemetryStats, JobError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut stats = TelemetryStats::default();
                    let mut buf = spill.buffers();
                    while !failed.load(Ordering::Relaxed) {
                        let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        let pass = Pass { cars, plan, spill };
                        if let Err(e) = pass.file(file, &mut buf, &mut stats) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        progress.advance(file.size);
                    }
                    spill.flush(&mut buf).map_err(JobError::Spill)?;
                    Ok(stats)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(JobError::WorkerPanicked)))
            .collect()
    });
    let mut total = TelemetryStats::default();
    for r in results {
        total.merge(r?);
    }
    spill.seal().map_err(JobError::Spill)?;
    total.rejects.sort();
    total.landed.sort_unstable_by_key(|l| l.car);
    total.files_seen.sort();
    total.read.files_listed = files.len() as u64;
    Ok(total)
}

fn bad(file: &FileRef, problem: impl std::fmt::Display) -> JobError {
    bad_table(&file.display, problem)
}

fn bad_table(source: &str, problem: impl std::fmt::Display) -> JobError {
    JobError::BadFile {
        file: source.to_string(),
        problem: problem.to_string(),
    }
}

/// One worker's view of the pass.
struct Pass<'a> {
    cars: &'a Cars,
    plan: &'a ReadPlan<'a>,
    spill: &'a Spill,
}

impl Pass<'_> {
    fn file(
        &self,
        file: &FileRef,
        buf: &mut Buffers,
        stats: &mut TelemetryStats,
    ) -> Result<(), JobError> {
        let new = self.plan.is_new(file);
        if !self.plan.opens(file, new) {
            stats.read.files_skipped_by_partition += 1;
            stats
                .files_seen
                .push((file.display.clone(), file.size, latest_in(file, None)));
            return Ok(());
        }
        let input = Location::open(file)?;
        let meta = metadata(file, &input)?;
        stats.read.files_opened += 1;
        stats.files += 1;
        let unit = meta
            .schema()
            .field_with_name("ts")
            .ok()
            .and_then(|f| ts_unit(f.data_type()))
            .unwrap_or(arrow_schema::TimeUnit::Millisecond);
        let pq = meta.metadata().clone();
        stats.files_seen.push((
            file.display.clone(),
            file.size,
            latest_in(file, Some((&pq, unit))),
        ));
        let groups = self.plan.row_groups(&pq, unit, self.cars, new);
        stats.read.row_groups += pq.num_row_groups() as u64;
        stats.read.row_groups_read += groups.len() as u64;
        let all_rows: i64 = pq.row_groups().iter().map(|g| g.num_rows()).sum();
        let read_rows: i64 = groups.iter().map(|&g| pq.row_group(g).num_rows()).sum();
        stats.read.rows_skipped_by_statistics += (all_rows - read_rows).max(0) as u64;
        if groups.is_empty() {
            stats.read.files_skipped_by_statistics += 1;
            return Ok(());
        }
        let late = self.plan.late.as_ref().filter(|_| new).map(|(c, _)| *c);
        let mut kept = 0usize;
        let mut reach: HashMap<u32, (i64, i64)> = HashMap::new();
        let first_rows: Vec<u64> = pq
            .row_groups()
            .iter()
            .scan(0u64, |acc, g| {
                let at = *acc;
                *acc += g.num_rows().max(0) as u64;
                Some(at)
            })
            .collect();
        for g in groups {
            let mut row = first_rows[g];
            for batch in reader(file, &input, meta.clone(), g)? {
                let batch = batch.map_err(|e| bad(file, e))?;
                let mut b = Batch {
                    file,
                    batch: &batch,
                    late,
                    buf: &mut *buf,
                    row: &mut row,
                    kept: &mut kept,
                    reach: &mut reach,
                };
                self.batch(&mut b, stats)?;
            }
        }
        stats
            .landed
            .extend(reach.into_iter().map(|(car, (first_ts, last_ts))| Landed {
                car,
                first_ts,
                last_ts,
                modified_ms: file.modified_ms,
            }));
        Ok(())
    }
}

/// A file's footer, with car_id asked for as a dictionary: a car id is
/// then looked up once per row group, not per row.
fn metadata(file: &FileRef, input: &Input) -> Result<ArrowReaderMetadata, JobError> {
    let meta =
        ArrowReaderMetadata::load(input, ArrowReaderOptions::new()).map_err(|e| bad(file, e))?;
    for c in COLUMNS {
        if meta.schema().field_with_name(c).is_err() {
            return Err(bad(
                file,
                format!("no column {c:?}; telemetry needs {}", COLUMNS.join(", ")),
            ));
        }
    }
    let hinted: Vec<Field> = meta
        .schema()
        .fields()
        .iter()
        .map(|f| match (f.name().as_str(), f.data_type()) {
            ("car_id", DataType::Utf8 | DataType::LargeUtf8) => Field::new(
                "car_id",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            _ => f.as_ref().clone(),
        })
        .collect();
    let options = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(hinted)));
    Ok(ArrowReaderMetadata::try_new(meta.metadata().clone(), options).unwrap_or(meta))
}

/// A reader of the contract columns of one row group.
fn reader(
    file: &FileRef,
    input: &Input,
    meta: ArrowReaderMetadata,
    group: usize,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, JobError> {
    let mask = ProjectionMask::columns(meta.metadata().file_metadata().schema_descr(), COLUMNS);
    ParquetRecordBatchReaderBuilder::new_with_metadata(
        input.try_clone().map_err(|e| bad(file, e))?,
        meta,
    )
    .with_projection(mask)
    .with_row_groups(vec![group])
    .with_batch_size(64 * 1024)
    .build()
    .map_err(|e| bad(file, e))
}

fn cast(
    source: &str,
    batch: &RecordBatch,
    name: &str,
    to: &DataType,
) -> Result<ArrayRef, JobError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| bad_table(source, format!("no column {name:?}")))?;
    let ok = match (name, col.data_type()) {
        ("ts", DataType::Timestamp(..)) => true,
        (
            "car_id",
            DataType::Dictionary(..) | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View,
        ) => true,
        (_, t) if t.is_numeric() => name != "ts" && name != "car_id",
        _ => false,
    };
    if !ok {
        return Err(bad_table(
            source,
            format!(
                "column {name} has type {}; the telemetry contract wants car_id string, ts timestamp, speeds float64",
                col.data_type()
            ),
        ));
    }
    arrow_cast::cast(col, to).map_err(|e| bad_table(source, format!("column {name}: {e}")))
}

/// The contract columns of a batch, cast to what the checks read: car_id
/// as a dictionary (a car's id is then looked up once per batch, not per
/// row), ts in ms, speeds as float64.
struct Columns {
    car: ArrayRef,
    ts: ArrayRef,
    speed: ArrayRef,
    limit: ArrayRef,
}

impl Columns {
    fn of(source: &str, batch: &RecordBatch) -> Result<Columns, JobError> {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
        Ok(Columns {
            car: cast(source, batch, "car_id", &dict)?,
            ts: cast(source, batch, "ts", &ms)?,
            speed: cast(source, batch, "speed_kmh", &DataType::Float64)?,
            limit: cast(source, batch, "speed_limit_kmh", &DataType::Float64)?,
        })
    }
}

/// A row the contract refused, with its values as text.
fn rejected(
    source: &str,
    row: u64,
    rule: pitwall_score::contract::TelemetryRule,
    (car_id, t, v, l): (Option<&str>, Option<i64>, Option<f64>, Option<f64>),
) -> Rejected {
    let values = [
        ("car_id", car_id.map(str::to_string)),
        ("ts_ms", t.map(|x| x.to_string())),
        ("speed_kmh", v.map(|x| x.to_string())),
        ("speed_limit_kmh", l.map(|x| x.to_string())),
    ];
    Rejected {
        file: source.to_string(),
        row,
        rule: rule.as_str(),
        values: values.into_iter().collect(),
    }
}

/// Telemetry held in memory (a DataFrame's batches, in order), checked row
/// by row as [`read_all`] checks files: each valid sample goes to `keep`
/// with its car id, each refused row to `rejects` (all kept, named
/// `source`, numbered from 0 across the batches). Returns the rows seen.
pub fn check(
    source: &str,
    batches: &[RecordBatch],
    rejects: &mut RejectLog,
    mut keep: impl FnMut(&str, Sample),
) -> Result<u64, JobError> {
    rejects.unbounded = true;
    let mut row = 0u64;
    for batch in batches {
        let cols = Columns::of(source, batch)?;
        let car = cols.car.as_dictionary::<Int32Type>();
        let (names, keys) = (car.values().as_string::<i32>(), car.keys());
        let ts = cols.ts.as_primitive::<TimestampMillisecondType>();
        let speed = cols.speed.as_primitive::<Float64Type>();
        let limit = cols.limit.as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let key = keys.is_valid(i).then(|| keys.value(i) as usize);
            let car_id = key.and_then(|k| names.is_valid(k).then(|| names.value(k)));
            let t = ts.is_valid(i).then(|| ts.value(i));
            let v = speed.is_valid(i).then(|| speed.value(i));
            let l = limit.is_valid(i).then(|| limit.value(i));
            match (check_telemetry(car_id, t, v, l), car_id, t, v) {
                (Ok(()), Some(c), Some(t), Some(v)) => keep(c, Sample::new(t, v, l)),
                (Err(rule), ..) => {
                    rejects.push(rejected(source, row, rule, (car_id, t, v, l)), &mut 0)
                }
                // The checks refuse a row missing any of these.
                (Ok(()), ..) => {}
            }
            row += 1;
        }
    }
    Ok(row)
}

/// One decoded batch of a file, and where the worker keeps its place.
struct Batch<'a> {
    file: &'a FileRef,
    batch: &'a RecordBatch,
    /// The recently final rentals, when the file is new to the state.
    late: Option<&'a Cars>,
    buf: &'a mut Buffers,
    row: &'a mut u64,
    kept: &'a mut usize,
    /// Per car: the first and last sample kept from this file.
    reach: &'a mut HashMap<u32, (i64, i64)>,
}

/// Per distinct car id of a dictionary: its index among `cars`.
fn lookup(names: &arrow_array::StringArray, cars: &Cars) -> Vec<Option<u32>> {
    (0..names.len())
        .map(|k| {
            names
                .is_valid(k)
                .then(|| cars.index.get(names.value(k)).copied())
                .flatten()
        })
        .collect()
}

impl Pass<'_> {
    fn batch(&self, b: &mut Batch<'_>, stats: &mut TelemetryStats) -> Result<(), JobError> {
        let (file, batch) = (b.file, b.batch);
        let cols = Columns::of(&file.display, batch)?;
        let (car, ts, speed, limit) = (&cols.car, &cols.ts, &cols.speed, &cols.limit);
        let car = car.as_dictionary::<Int32Type>();
        let names = car.values().as_string::<i32>();
        let wanted = lookup(names, self.cars);
        let late = b.late.map(|c| (c, lookup(names, c)));
        let keys = car.keys();
        let ts = ts.as_primitive::<TimestampMillisecondType>();
        let speed = speed.as_primitive::<Float64Type>();
        let limit = limit.as_primitive::<Float64Type>();
        let mut last_day = i64::MIN;
        // Per dictionary key, not per row through a map: the loop is hot.
        let mut key_reach: Vec<(i64, i64)> = vec![(i64::MAX, i64::MIN); names.len()];
        let mut key_latest: Vec<i64> = vec![i64::MIN; names.len()];
        for i in 0..batch.num_rows() {
            let row_no = *b.row;
            *b.row += 1;
            let key = keys.is_valid(i).then(|| keys.value(i) as usize);
            let car_id = key.and_then(|k| names.is_valid(k).then(|| names.value(k)));
            let t = ts.is_valid(i).then(|| ts.value(i));
            let v = speed.is_valid(i).then(|| speed.value(i));
            let l = limit.is_valid(i).then(|| limit.value(i));
            if let Err(rule) = check_telemetry(car_id, t, v, l) {
                let r = rejected(&file.display, row_no, rule, (car_id, t, v, l));
                stats.rejects.push(r, b.kept);
                continue;
            }
            let (t, v) = (t.unwrap_or_default(), v.unwrap_or_default());
            stats.valid += 1;
            if let Some(l) = key.and_then(|k| key_latest.get_mut(k)) {
                *l = (*l).max(t);
            }
            let day = t.div_euclid(DAY_MS);
            if day != last_day {
                stats.days.insert(day);
                last_day = day;
            }
            match key.and_then(|k| wanted[k]) {
                Some(c) if self.cars.covers(c, t) => {
                    stats.in_rentals += 1;
                    if let Some(r) = key.and_then(|k| key_reach.get_mut(k)) {
                        *r = (r.0.min(t), r.1.max(t));
                    }
                    self.spill
                        .push(b.buf, c, Sample::new(t, v, l))
                        .map_err(JobError::Spill)?;
                }
                _ => match (&late, key) {
                    (Some((cars, ids)), Some(k)) if ids[k].is_some_and(|c| cars.covers(c, t)) => {
                        stats.late_for_final += 1;
                    }
                    _ => stats.outside_rentals += 1,
                },
            }
        }
        for (k, &(first, last)) in key_reach.iter().enumerate() {
            if let (true, Some(c)) = (first <= last, wanted[k]) {
                let r = b.reach.entry(c).or_insert((first, last));
                *r = (r.0.min(first), r.1.max(last));
            }
        }
        let latest = key_latest.iter().zip(&wanted);
        stats.note_latest(latest.filter_map(|(&t, c)| c.map(|c| (c as usize, t))));
        stats.rows += batch.num_rows() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rental(id: &str, car: &str, start_at: i64, end_at: i64) -> Rental {
        Rental {
            rental_id: id.into(),
            member_id: "m".into(),
            car_id: car.into(),
            start_at,
            end_at,
        }
    }

    #[test]
    fn a_rental_landed_when_the_newest_file_with_its_samples_was_written() {
        let rentals = [
            rental("a", "C1", 0, 100),
            rental("b", "C1", 200, 300),
            rental("c", "C2", 0, 100),
        ];
        let cars = Cars::new(&rentals, |_| true);
        let (c1, c2) = (cars.index["C1"], cars.index["C2"]);
        let at = |car, first_ts, last_ts, modified| Landed {
            car,
            first_ts,
            last_ts,
            modified_ms: Some(modified),
        };
        let stats = TelemetryStats {
            // As the pass leaves it: sorted by car.
            landed: vec![
                at(c1, 0, 60, 1_000),
                at(c1, 50, 100, 5_000), // the tail, uploaded late
                at(c1, 210, 300, 9_000),
                at(c2, 0, 100, 2_000),
            ],
            ..TelemetryStats::default()
        };
        assert_eq!(cars.landed(&stats, &rentals[0]), Some(5_000));
        assert_eq!(
            cars.landed(&stats, &rentals[1]),
            Some(9_000),
            "another rental's files do not count"
        );
        assert_eq!(
            cars.landed(&stats, &rentals[2]),
            Some(2_000),
            "another car's files do not count"
        );
        assert_eq!(cars.landed(&stats, &rental("d", "C9", 0, 1)), None);
    }
}
