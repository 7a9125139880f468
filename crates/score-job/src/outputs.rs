//! The Parquet outputs of a run: scores and the rows the contracts rejected.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use pitwall_lake::ParquetOptions;
use pitwall_score::Rental;
use pitwall_score_state::{MemberRecord, ResultRow};

use crate::rejects::RejectLog;
use crate::rentals::{self, RentalInput};
use crate::run_json::RunJson;
use crate::scoring::Scored;
use crate::telemetry::{self, TelemetryStats};
use crate::{JobConfig, JobError, names};

/// What a run's outputs are made of: the rentals it assessed (all
/// considered ones in a full run, the evaluated ones with a state) and the
/// member snapshot, when `member_scores.parquet` is written (a full run, or
/// a state run asked for it).
pub struct Outputs<'a> {
    pub input: &'a RentalInput,
    pub rentals: &'a [Rental],
    pub scored: &'a Scored,
    pub members: Option<&'a [MemberRecord]>,
}

pub fn write_all(
    cfg: &JobConfig,
    o: &Outputs<'_>,
    telemetry: &TelemetryStats,
    run: &mut RunJson,
) -> Result<(), JobError> {
    let out = &cfg.out;
    let model = cfg.model.id();
    let rentals = o.input;
    write(
        out,
        names::RENTAL_SCORES,
        rental_scores(o.rentals, o.scored, &model)?,
        run,
    )?;
    if let Some(members) = o.members {
        write(
            out,
            names::MEMBER_SCORES,
            pitwall_score_state::snapshot::to_batch(members, &model, cfg.as_of)?,
            run,
        )?;
    }
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

pub fn write(
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

fn batch(fields: Vec<Field>, cols: Vec<ArrayRef>) -> Result<RecordBatch, JobError> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| JobError::Write {
        path: "output batch".into(),
        problem: e.to_string(),
    })
}

fn strings<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(it.collect::<StringArray>())
}

/// One row per assessed rental, by rental_id, in the shared results schema.
pub fn rental_scores(
    rentals: &[Rental],
    scored: &Scored,
    model: &str,
) -> Result<RecordBatch, JobError> {
    let rows: Vec<ResultRow> = rentals
        .iter()
        .zip(&scored.assessments)
        .filter_map(|(r, a)| {
            a.as_ref().map(|a| ResultRow {
                rental: r.clone(),
                assessment: a.clone(),
                model: model.to_string(),
                finality: None,
            })
        })
        .collect();
    Ok(pitwall_score_state::results::to_batch(&rows, false)?)
}

/// Rejected rows: where they were, the rule, and their values as text.
pub fn rejected(log: &RejectLog, columns: &[&'static str]) -> Result<RecordBatch, JobError> {
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
