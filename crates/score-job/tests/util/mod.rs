//! Helpers shared by the score-job integration tests: hand-built inputs
//! written as real Parquet/CSV files, and outputs read back.

#![allow(dead_code)]

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_score_job::{JobConfig, NoProgress, RunJson};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub const T0: i64 = 1_780_000_000_000; // 2026-05-28T20:26:40Z
pub const H: i64 = 3_600_000;

/// (car_id, ts, speed, limit) with None for nulls.
pub type Row = (Option<&'static str>, Option<i64>, Option<f64>, Option<f64>);

/// Writes telemetry with the fleet generator's writer: the contract's layout lives there once.
pub fn write_telemetry(path: &Path, rows: &[Row]) -> TestResult {
    let rows: Vec<pitwall_fleetgen::Row> = rows
        .iter()
        .map(
            |&(car_id, ts, speed_kmh, speed_limit_kmh)| pitwall_fleetgen::Row {
                car_id: car_id.map(str::to_string),
                ts,
                speed_kmh,
                speed_limit_kmh,
                redelivered: false,
            },
        )
        .collect();
    pitwall_fleetgen::write_telemetry(path, &rows)?;
    Ok(())
}

/// (rental_id, member_id, car_id, start, end), written with the fleet generator's writer.
pub fn write_rentals(path: &Path, rows: &[(&str, &str, &str, i64, i64)]) -> TestResult {
    let rows: Vec<pitwall_fleetgen::RentalRow> = rows
        .iter()
        .map(|&(r, m, c, s, e)| {
            (
                Some(r.into()),
                Some(m.into()),
                Some(c.into()),
                Some(s),
                Some(e),
            )
        })
        .collect();
    pitwall_fleetgen::write_rentals(path, &rows)?;
    Ok(())
}

/// A steady drive at `speed` for `secs` seconds from `start`, 1 Hz.
pub fn drive(car: &'static str, start: i64, secs: i64, speed: f64) -> Vec<Row> {
    (0..=secs)
        .map(|i| (Some(car), Some(start + i * 1000), Some(speed), Some(50.0)))
        .collect()
}

pub fn run(dir: &Path, as_of: i64) -> Result<RunJson, pitwall_score_job::JobError> {
    let cfg = config(dir, as_of);
    pitwall_score_job::run(&cfg, &NoProgress)
}

pub fn config(dir: &Path, as_of: i64) -> JobConfig {
    let mut cfg = JobConfig::new(
        dir.join("rentals.parquet").display().to_string(),
        dir.join("telemetry").display().to_string(),
        as_of,
        dir.join("out"),
    );
    cfg.threads = 2;
    cfg
}

pub fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error>> {
    let f = std::fs::File::open(path)?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(f)?
        .build()?
        .collect::<Result<Vec<_>, _>>()?)
}

/// A rental_scores row as text, for comparisons and lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct RentalRow {
    pub rental_id: String,
    pub status: String,
    pub reason: Option<String>,
    pub samples: i64,
    pub score: Option<f64>,
    pub grade: Option<String>,
    pub distance_km: f64,
    pub harsh_brake_n: i64,
    pub unstable_stop_n: i64,
}

pub fn rental_rows(out: &Path) -> Result<Vec<RentalRow>, Box<dyn std::error::Error>> {
    let mut rows = Vec::new();
    for b in read_batches(&out.join("rental_scores.parquet"))? {
        let s = |n: &str| b.column_by_name(n).map(|c| c.as_string::<i32>().clone());
        let (ids, status, reason, grade) = (s("rental_id"), s("status"), s("reason"), s("grade"));
        let (Some(ids), Some(status), Some(reason), Some(grade)) = (ids, status, reason, grade)
        else {
            return Err("missing string column".into());
        };
        let i64c = |n: &str| {
            b.column_by_name(n)
                .map(|c| c.as_primitive::<Int64Type>().clone())
        };
        let f64c = |n: &str| {
            b.column_by_name(n)
                .map(|c| c.as_primitive::<Float64Type>().clone())
        };
        let (Some(samples), Some(hb), Some(us), Some(score), Some(dist)) = (
            i64c("samples"),
            i64c("harsh_brake_n"),
            i64c("unstable_stop_n"),
            f64c("score"),
            f64c("distance_km"),
        ) else {
            return Err("missing numeric column".into());
        };
        for i in 0..b.num_rows() {
            rows.push(RentalRow {
                rental_id: ids.value(i).to_string(),
                status: status.value(i).to_string(),
                reason: reason.is_valid(i).then(|| reason.value(i).to_string()),
                samples: samples.value(i),
                score: score.is_valid(i).then(|| score.value(i)),
                grade: grade.is_valid(i).then(|| grade.value(i).to_string()),
                distance_km: dist.value(i),
                harsh_brake_n: hb.value(i),
                unstable_stop_n: us.value(i),
            });
        }
    }
    Ok(rows)
}

pub fn find<'a>(rows: &'a [RentalRow], id: &str) -> &'a RentalRow {
    rows.iter()
        .find(|r| r.rental_id == id)
        .unwrap_or_else(|| panic!("no rental {id} in {rows:?}"))
}
