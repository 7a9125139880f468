//! The Parquet outputs of a run: scores and the rows the contracts rejected.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMillisecondArray, UInt64Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use pitwall_lake::ParquetOptions;

use crate::members::MemberRow;
use crate::rejects::RejectLog;
use crate::rentals::{self, RentalInput};
use crate::run_json::RunJson;
use crate::scoring::Scored;
use crate::telemetry::{self, TelemetryStats};
use crate::{JobConfig, JobError, names};

pub fn write_all(
    cfg: &JobConfig,
    rentals: &RentalInput,
    telemetry: &TelemetryStats,
    scored: &Scored,
    members: &[MemberRow],
    run: &mut RunJson,
) -> Result<(), JobError> {
    let out = &cfg.out;
    let model = cfg.model.id();
    write(
        out,
        names::RENTAL_SCORES,
        rental_scores(rentals, scored, &model)?,
        run,
    )?;
    write(
        out,
        names::MEMBER_SCORES,
        member_scores(members, rentals, scored, &model, cfg.as_of)?,
        run,
    )?;
    write(
        out,
        names::REJECTED_RENTALS,
        rejected(&rentals.rejects, &rentals::COLUMNS_REJECTED)?,
        run,
    )?;
    write(
        out,
        names::REJECTED_TELEMETRY,
        rejected(&telemetry.rejects, &telemetry::COLUMNS_REJECTED)?,
        run,
    )?;
    run.outputs
        .insert("run_json", out.join(names::RUN_JSON).display().to_string());
    run.outputs
        .insert("report", out.join(names::REPORT).display().to_string());
    Ok(())
}

fn write(
    out: &Path,
    name: &'static str,
    batch: RecordBatch,
    run: &mut RunJson,
) -> Result<(), JobError> {
    let path = out.join(name);
    pitwall_lake::write_parquet(&path, batch.schema(), &[batch], &ParquetOptions::default())?;
    run.outputs.insert(
        name.trim_end_matches(".parquet"),
        path.display().to_string(),
    );
    Ok(())
}

fn ts_field(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        nullable,
    )
}

fn batch(fields: Vec<Field>, cols: Vec<ArrayRef>) -> Result<RecordBatch, JobError> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| JobError::Write {
        path: "output batch".into(),
        problem: e.to_string(),
    })
}

fn strings<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(it.collect::<StringArray>())
}

fn ints(it: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(it.map(Some).collect::<Int64Array>())
}

fn floats(it: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(it.collect::<Float64Array>())
}

fn times(it: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(
        it.map(Some)
            .collect::<TimestampMillisecondArray>()
            .with_timezone("UTC"),
    )
}

/// One row per considered rental, by rental_id.
fn rental_scores(
    input: &RentalInput,
    scored: &Scored,
    model: &str,
) -> Result<RecordBatch, JobError> {
    let rows: Vec<_> = input
        .rentals
        .iter()
        .zip(&scored.assessments)
        .filter_map(|(r, a)| a.as_ref().map(|a| (r, a)))
        .collect();
    let f = |g: fn(&pitwall_score::Features) -> u32| {
        ints(rows.iter().map(move |(_, a)| i64::from(g(&a.features))))
    };
    let fields = vec![
        Field::new("rental_id", DataType::Utf8, false),
        Field::new("member_id", DataType::Utf8, false),
        Field::new("car_id", DataType::Utf8, false),
        ts_field("start_at", false),
        ts_field("end_at", false),
        Field::new("status", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("samples", DataType::Int64, false),
        Field::new("coverage", DataType::Float64, false),
        Field::new("distance_km", DataType::Float64, false),
        Field::new("moving_s", DataType::Int64, false),
        Field::new("speeding_s", DataType::Int64, false),
        Field::new("excess_speeding_s", DataType::Int64, false),
        Field::new("harsh_accel_n", DataType::Int64, false),
        Field::new("harsh_brake_n", DataType::Int64, false),
        Field::new("unstable_stop_n", DataType::Int64, false),
        Field::new("score", DataType::Float64, true),
        Field::new("grade", DataType::Utf8, true),
        Field::new("model", DataType::Utf8, false),
    ];
    let cols = vec![
        strings(rows.iter().map(|(r, _)| Some(r.rental_id.as_str()))),
        strings(rows.iter().map(|(r, _)| Some(r.member_id.as_str()))),
        strings(rows.iter().map(|(r, _)| Some(r.car_id.as_str()))),
        times(rows.iter().map(|(r, _)| r.start_at)),
        times(rows.iter().map(|(r, _)| r.end_at)),
        strings(rows.iter().map(|(_, a)| Some(a.status.as_str()))),
        strings(rows.iter().map(|(_, a)| a.reason.map(|x| x.as_str()))),
        f(|x| x.samples),
        floats(rows.iter().map(|(_, a)| Some(a.features.coverage))),
        floats(rows.iter().map(|(_, a)| Some(a.features.distance_km))),
        f(|x| x.moving_s),
        f(|x| x.speeding_s),
        f(|x| x.excess_speeding_s),
        f(|x| x.harsh_accel_n),
        f(|x| x.harsh_brake_n),
        f(|x| x.unstable_stop_n),
        floats(rows.iter().map(|(_, a)| a.score)),
        strings(rows.iter().map(|(_, a)| a.grade.as_deref())),
        strings(rows.iter().map(|_| Some(model))),
    ];
    batch(fields, cols)
}

/// The fields of one recent rental inside `member_scores.recent_rentals`.
fn recent_rental_fields() -> Fields {
    Fields::from(vec![
        Field::new("rental_id", DataType::Utf8, false),
        ts_field("end_at", false),
        Field::new("distance_km", DataType::Float64, false),
        Field::new("score", DataType::Float64, true),
        Field::new("grade", DataType::Utf8, true),
    ])
}

/// Each member's used rentals, latest first, inline as a list of structs:
/// a publisher then reads one file and needs no join against rental scores.
fn recent_rentals(
    members: &[MemberRow],
    input: &RentalInput,
    scored: &Scored,
) -> Result<ArrayRef, JobError> {
    let by_id: HashMap<&str, (&pitwall_score::Rental, &pitwall_score::Assessment)> = input
        .rentals
        .iter()
        .zip(&scored.assessments)
        .filter_map(|(r, a)| a.as_ref().map(|a| (r.rental_id.as_str(), (r, a))))
        .collect();
    let used: Vec<Vec<(&pitwall_score::Rental, &pitwall_score::Assessment)>> = members
        .iter()
        .map(|m| {
            m.score
                .rentals_used
                .iter()
                .filter_map(|id| by_id.get(id.as_str()).copied())
                .collect()
        })
        .collect();
    let flat: Vec<_> = used.iter().flatten().collect();
    let children: Vec<ArrayRef> = vec![
        strings(flat.iter().map(|(r, _)| Some(r.rental_id.as_str()))),
        times(flat.iter().map(|(r, _)| r.end_at)),
        floats(flat.iter().map(|(_, a)| Some(a.features.distance_km))),
        floats(flat.iter().map(|(_, a)| a.score)),
        strings(flat.iter().map(|(_, a)| a.grade.as_deref())),
    ];
    let err = |e: arrow_schema::ArrowError| JobError::Write {
        path: "member_scores.recent_rentals".into(),
        problem: e.to_string(),
    };
    let structs = StructArray::try_new(recent_rental_fields(), children, None).map_err(err)?;
    let offsets = OffsetBuffer::from_lengths(used.iter().map(Vec::len));
    let item = Arc::new(Field::new(
        "item",
        DataType::Struct(recent_rental_fields()),
        false,
    ));
    Ok(Arc::new(
        ListArray::try_new(item, offsets, Arc::new(structs), None).map_err(err)?,
    ))
}

fn member_scores(
    members: &[MemberRow],
    input: &RentalInput,
    scored: &Scored,
    model: &str,
    as_of: i64,
) -> Result<RecordBatch, JobError> {
    let rate = |g: fn(&pitwall_score::member::FactorRates) -> f64| {
        floats(members.iter().map(move |m| Some(g(&m.score.rates))))
    };
    let recent = recent_rentals(members, input, scored)?;
    let fields = vec![
        Field::new("member_id", DataType::Utf8, false),
        Field::new("eligible", DataType::Boolean, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("score", DataType::Float64, true),
        Field::new("grade", DataType::Utf8, true),
        Field::new("rentals_used", DataType::Int64, false),
        Field::new("recent_rentals", recent.data_type().clone(), false),
        Field::new("rentals_12m", DataType::Int64, false),
        Field::new("distance_km_total", DataType::Float64, false),
        Field::new("harsh_accel_per_100km", DataType::Float64, false),
        Field::new("harsh_brake_per_100km", DataType::Float64, false),
        Field::new("unstable_stop_per_100km", DataType::Float64, false),
        Field::new("speeding_pct", DataType::Float64, false),
        Field::new("excess_speeding_pct", DataType::Float64, false),
        Field::new("model", DataType::Utf8, false),
        ts_field("as_of", false),
    ];
    let cols: Vec<ArrayRef> = vec![
        strings(members.iter().map(|m| Some(m.member_id.as_str()))),
        Arc::new(
            members
                .iter()
                .map(|m| Some(m.score.eligible))
                .collect::<BooleanArray>(),
        ),
        strings(members.iter().map(|m| Some(m.score.status.as_str()))),
        floats(members.iter().map(|m| m.score.score)),
        strings(members.iter().map(|m| m.score.grade.as_deref())),
        ints(members.iter().map(|m| m.score.rentals_used.len() as i64)),
        recent,
        ints(members.iter().map(|m| i64::from(m.score.rentals_12m))),
        floats(members.iter().map(|m| Some(m.score.distance_km_total))),
        rate(|r| r.harsh_accel_per_100km),
        rate(|r| r.harsh_brake_per_100km),
        rate(|r| r.unstable_stop_per_100km),
        rate(|r| r.speeding_pct),
        rate(|r| r.excess_speeding_pct),
        strings(members.iter().map(|_| Some(model))),
        times(members.iter().map(|_| as_of)),
    ];
    batch(fields, cols)
}

/// Rejected rows: where they were, the rule, and their values as text.
fn rejected(log: &RejectLog, columns: &[&'static str]) -> Result<RecordBatch, JobError> {
    let mut fields = vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("rule", DataType::Utf8, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        strings(log.kept.iter().map(|r| Some(r.file.as_str()))),
        Arc::new(
            log.kept
                .iter()
                .map(|r| Some(r.row))
                .collect::<UInt64Array>(),
        ),
        strings(log.kept.iter().map(|r| Some(r.rule))),
    ];
    for &c in columns {
        fields.push(Field::new(c, DataType::Utf8, true));
        cols.push(strings(
            log.kept
                .iter()
                .map(|r| r.values.get(c).and_then(|v| v.as_deref())),
        ));
    }
    batch(fields, cols)
}
