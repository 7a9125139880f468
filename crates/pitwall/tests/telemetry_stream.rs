//! The cars' telemetry through the stream: `pitwall gen stream` puts
//! simulated uploads on kinesalite, `pitwall ingest run --contract
//! contracts/telemetry.kinematics.odcs.yaml` lands them, and `pitwall score
//! run` reads the lake as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

mod common;

use common::kinesis::{fixture, ingest_telemetry};
use common::{TestResult, pitwall, pitwall_ok};

const HOUR_MS: i64 = 3_600_000;

/// `gen stream` at a speed-up, returning its JSON summary.
fn simulate(
    stream: &str,
    rentals: &Path,
    args: &[&str],
) -> Result<serde_json::Value, common::Error> {
    let rentals = rentals.display().to_string();
    let mut all = vec![
        "gen",
        "stream",
        "--stream",
        stream,
        "--rentals",
        &rentals,
        "--json",
    ];
    all.extend_from_slice(args);
    let out = pitwall_ok(&all)?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn batches(path: &Path) -> Result<Vec<RecordBatch>, common::Error> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

#[test]
fn simulated_cars_land_by_event_hour_with_positions_coarsened_and_the_score_job_reads_the_lake()
-> TestResult {
    let Some((dir, stream, lake)) = fixture("telemetry", 2)? else {
        return Ok(());
    };
    let rentals = dir.path().join("rentals.parquet");
    // 50 simulated minutes across an hour boundary, 600x: about 5 s.
    let sim = simulate(
        &stream,
        &rentals,
        &[
            "--cars",
            "12",
            "--speedup",
            "600",
            "--duration",
            "50m",
            "--start",
            "2026-11-01T09:40:00Z",
            "--seed",
            "5",
            "--bad-chance",
            "0.002",
            "--resend-chance",
            "0.05",
        ],
    )?;
    ingest_telemetry(&stream, &lake, &dir.path().join("leases.db"))?;

    let root = Path::new(&lake).join("telemetry.kinematics");
    let files: Vec<_> = walk(&root)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    let mut samples = BTreeSet::new();
    let mut rows = 0u64;
    let mut hours = BTreeMap::<String, u64>::new();
    for f in &files {
        let partition = f
            .parent()
            .and_then(|p| p.strip_prefix(&root).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        for b in batches(f)? {
            let car = b
                .column_by_name("car_id")
                .ok_or("car_id")?
                .as_string::<i32>();
            let ts = b
                .column_by_name("ts")
                .ok_or("ts")?
                .as_primitive::<TimestampMillisecondType>();
            for pos in ["lat", "lon"] {
                let v = b
                    .column_by_name(pos)
                    .ok_or(pos)?
                    .as_primitive::<Float64Type>();
                for x in v.iter().flatten() {
                    assert!(
                        ((x * 1000.0).round() - x * 1000.0).abs() < 1e-6,
                        "{pos} {x} kept more than 3 decimals"
                    );
                }
            }
            for i in 0..b.num_rows() {
                let hour = ts.value(i).div_euclid(HOUR_MS);
                let want = format!("dt=2026-11-01/hour={:02}", hour % 24);
                assert_eq!(partition, want, "a sample lands in its event hour");
                samples.insert((car.value(i).to_string(), ts.value(i)));
            }
            rows += b.num_rows() as u64;
            *hours.entry(partition.clone()).or_default() += b.num_rows() as u64;
        }
    }
    assert_eq!(hours.len(), 2, "two event hours: {hours:?}");
    let (n, bad) = (
        sim["samples"].as_u64().ok_or("samples")?,
        sim["bad_samples"].as_u64().ok_or("bad")?,
    );
    assert!(bad > 0 && sim["resends"].as_u64() > Some(0));
    assert_eq!(
        samples.len() as u64,
        n - bad,
        "every good sample, and only those"
    );
    assert!(
        rows > samples.len() as u64,
        "resent uploads land as duplicates for the reader to drop"
    );

    let mut dlq_lines = 0;
    let dlq = Path::new(&lake).join("_dlq/telemetry.kinematics");
    for e in walk(&dlq)? {
        for line in std::fs::read_to_string(e)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            assert_eq!(
                (v["reason"].as_str(), v["field"].as_str()),
                (Some("invalid_value"), Some("speed_kmh")),
                "{v}"
            );
            dlq_lines += 1;
        }
    }
    assert!(
        dlq_lines >= bad,
        "{dlq_lines} DLQ lines for {bad} bad samples"
    );

    let out = dir.path().join("scores");
    pitwall_ok(&[
        "score",
        "run",
        "--rentals",
        &rentals.display().to_string(),
        "--telemetry",
        &root.display().to_string(),
        "--as-of",
        "2026-11-01T10:30:00Z",
        "--out",
        &out.display().to_string(),
    ])?;
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json"))?)?;
    assert_eq!(
        report["inputs"]["telemetry"]["rejected"], 0,
        "the lake's extra columns are ignored"
    );
    assert_eq!(report["inputs"]["rentals"]["valid"], sim["rentals_ended"]);
    let scored = batches(&out.join("rental_scores.parquet"))?
        .iter()
        .map(|b| {
            let s = b
                .column_by_name("status")
                .map(|c| c.as_string::<i32>().clone());
            s.map_or(0, |s| s.iter().filter(|v| *v == Some("scored")).count())
        })
        .sum::<usize>();
    assert!(scored > 0, "rentals are scored from the lake's telemetry");
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>, common::Error> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

#[test]
fn gen_stream_refuses_bad_flags_with_exit_2_or_1() -> TestResult {
    for (flag, value, code, says) in [
        ("--rental-minutes", "30..5", 2, "MIN..MAX"),
        ("--idle-minutes", "x", 2, "MIN..MAX"),
        ("--speedup", "0", 1, "--speedup"),
        ("--resend-chance", "1.5", 1, "between 0 and 1"),
    ] {
        let args = [
            "gen",
            "stream",
            "--stream",
            "s",
            "--rentals",
            "r.parquet",
            flag,
            value,
        ];
        let out = pitwall(&args)?;
        assert_eq!(out.status.code(), Some(code), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
    Ok(())
}
