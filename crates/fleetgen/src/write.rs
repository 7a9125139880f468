//! Writing the fleet: rentals with a few contract-breaking rows, telemetry
//! as one directory per day with a second "redelivery" file of duplicates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::schedule::{DAY_MS, PlannedRental, member_id};
use crate::{FleetSummary, GenError};

/// One telemetry row as written; `None` fields are written as nulls.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub car_id: Option<String>,
    pub ts: Option<i64>,
    pub speed_kmh: Option<f64>,
    pub speed_limit_kmh: Option<f64>,
    /// A redelivered copy, written to the day's second file.
    pub redelivered: bool,
}

impl Row {
    pub fn new(car: &str, ts: i64, speed: f64, limit: Option<f64>) -> Row {
        Row {
            car_id: Some(car.to_string()),
            ts: Some(ts),
            speed_kmh: Some(speed),
            speed_limit_kmh: limit,
            redelivered: false,
        }
    }
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

pub fn telemetry_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("car_id", DataType::Utf8, true),
        Field::new("ts", ts_type(), true),
        Field::new("speed_kmh", DataType::Float64, true),
        Field::new("speed_limit_kmh", DataType::Float64, true),
    ]))
}

/// Adds at-least-once duplicates (most identical, a few with another speed)
/// and contract-breaking rows of every kind.
pub fn add_flaws(
    rows: &mut Vec<Row>,
    bad_ratio: f64,
    rng: &mut ChaCha8Rng,
    summary: &mut FleetSummary,
) {
    let n = rows.len();
    for i in 0..n {
        if rng.random_bool(0.005) {
            let mut dup = rows[i].clone();
            dup.redelivered = true;
            if rng.random_bool(0.1) {
                dup.speed_kmh = dup.speed_kmh.map(|v| v + 1.5);
            }
            rows.push(dup);
            summary.duplicate_rows += 1;
        }
        if rng.random_bool(bad_ratio) {
            let row = &mut rows[i];
            match rng.random_range(0..6) {
                0 => row.speed_kmh = Some(-3.0),
                1 => row.speed_kmh = Some(412.0),
                2 => row.speed_kmh = None,
                3 => row.car_id = Some(String::new()),
                4 => row.ts = None,
                _ => row.speed_limit_kmh = Some(-10.0),
            }
            summary.bad_telemetry_rows += 1;
        }
    }
}

pub struct DayWriter {
    dir: PathBuf,
}

impl DayWriter {
    pub fn new(dir: PathBuf) -> Self {
        DayWriter { dir }
    }

    pub fn write_day(
        &mut self,
        day: i64,
        rows: Vec<Row>,
        summary: &mut FleetSummary,
    ) -> Result<(), GenError> {
        let date = day_name(day);
        let dir = self.dir.join(format!("dt={date}"));
        let (again, first): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|r| r.redelivered);
        for (name, part) in [
            ("part-00000.parquet", first),
            ("part-00001-redelivery.parquet", again),
        ] {
            if part.is_empty() {
                continue;
            }
            summary.telemetry_rows += part.len() as u64;
            summary.telemetry_files += 1;
            write_telemetry(&dir.join(name), &part)?;
        }
        summary.days += 1;
        Ok(())
    }
}

/// Writes telemetry rows as one Parquet file in the input contract's layout.
pub fn write_telemetry(path: &Path, rows: &[Row]) -> Result<(), GenError> {
    let batch = telemetry_batch(rows)?;
    pitwall_lake::write_parquet(path, telemetry_schema(), &[batch], &Default::default())?;
    Ok(())
}

fn telemetry_batch(rows: &[Row]) -> Result<RecordBatch, GenError> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            rows.iter()
                .map(|r| r.car_id.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.ts)
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(rows.iter().map(|r| r.speed_kmh).collect::<Float64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| r.speed_limit_kmh)
                .collect::<Float64Array>(),
        ),
    ];
    Ok(RecordBatch::try_new(telemetry_schema(), cols)?)
}

/// `YYYY-MM-DD` of a day number since the epoch.
pub fn day_name(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * DAY_MS)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day{day}"))
}

/// rental_id, member_id, car_id, start_at, end_at; None is written as null.
pub type RentalRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// Writes the rentals and returns how many contract-breaking rows were added.
pub fn rentals(
    path: &Path,
    plan: &[PlannedRental],
    rng: &mut ChaCha8Rng,
) -> Result<usize, GenError> {
    let mut rows: Vec<RentalRow> = plan
        .iter()
        .map(|r| {
            let car = crate::schedule::car_id(r.car);
            (
                Some(r.rental_id.clone()),
                Some(member_id(r.member)),
                Some(car),
                Some(r.start_at),
                Some(r.end_at),
            )
        })
        .collect();
    let bad = (plan.len() / 500).clamp(1, 5);
    for k in 0..bad {
        let base = &plan[rng.random_range(0..plan.len())];
        let id = Some(format!("X{k:07}"));
        let car = Some(crate::schedule::car_id(base.car));
        let (s, e) = (base.start_at, base.end_at);
        rows.push((
            id.clone(),
            Some(String::new()),
            car.clone(),
            Some(s),
            Some(e),
        ));
        rows.push((
            Some(format!("Y{k:07}")),
            Some(member_id(base.member)),
            car.clone(),
            Some(e),
            Some(s),
        ));
        rows.push((
            Some(format!("Z{k:07}")),
            Some(member_id(base.member)),
            car.clone(),
            Some(s),
            Some(s + 8 * DAY_MS),
        ));
        // The same id twice with different members: neither can be trusted.
        rows.push((
            Some(format!("D{k:07}")),
            Some(member_id(base.member)),
            car.clone(),
            Some(s),
            Some(e),
        ));
        rows.push((
            Some(format!("D{k:07}")),
            Some(member_id(base.member + 1)),
            car,
            Some(s),
            Some(e),
        ));
    }
    write_rentals(path, &rows)?;
    Ok(rows.len() - plan.len())
}

/// Writes rental rows as one Parquet file in the input contract's layout.
pub fn write_rentals(path: &Path, rows: &[RentalRow]) -> Result<(), GenError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("rental_id", DataType::Utf8, true),
        Field::new("member_id", DataType::Utf8, true),
        Field::new("car_id", DataType::Utf8, true),
        Field::new("start_at", ts_type(), true),
        Field::new("end_at", ts_type(), true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.0.as_deref()).collect::<StringArray>()),
        Arc::new(rows.iter().map(|r| r.1.as_deref()).collect::<StringArray>()),
        Arc::new(rows.iter().map(|r| r.2.as_deref()).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|r| r.3)
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.4)
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    pitwall_lake::write_parquet(path, schema, &[batch], &Default::default())?;
    Ok(())
}
