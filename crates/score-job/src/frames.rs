//! Scoring data held in memory: the Python binding (a notebook's
//! DataFrames, one Spark group) hands Arrow batches to the same contract
//! checks and engine as `score run`, and gets its outputs back as batches,
//! in the same schemas, without a file or a spill in between.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use pitwall_score::rental::is_considered;
use pitwall_score::{Model, Rental, Sample};
use pitwall_score_state::results;

use crate::scoring::{Scored, Scoring};
use crate::telemetry::Cars;
use crate::{JobError, members, outputs, rejects::RejectLog, rentals, telemetry};

/// What a scoring of frames needs besides the data.
#[derive(Debug, Clone, Copy)]
pub struct FrameOptions<'a> {
    /// The run's "now" (ms since the epoch, UTC).
    pub as_of: i64,
    pub model: &'a Model,
    /// Grace period for late telemetry; the model's when None.
    pub grace_ms: Option<i64>,
    /// Score members too; a Spark job scores them in a pass of its own,
    /// over every car's rentals.
    pub members: bool,
}

/// The outputs of `score run`, as batches.
#[derive(Debug)]
pub struct Frames {
    pub rental_scores: RecordBatch,
    /// When asked for.
    pub member_scores: Option<RecordBatch>,
    pub rejected_rentals: RecordBatch,
    pub rejected_telemetry: RecordBatch,
    pub counts: FrameCounts,
}

/// What run.json counts of the inputs, for frames.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct FrameCounts {
    pub rental_rows: u64,
    pub rentals_valid: u64,
    pub rentals_considered: u64,
    pub telemetry_rows: u64,
    pub telemetry_valid: u64,
    pub samples_in_rentals: u64,
    pub samples_outside_rentals: u64,
    pub duplicate_samples: u64,
}

/// Rentals and their cars' telemetry in, scores and rejects out. Rejected
/// rows are named "rentals" and "telemetry" and numbered from 0 across
/// each input's batches, so a caller can map them back to its own rows.
pub fn score(
    rental_batches: &[RecordBatch],
    telemetry_batches: &[RecordBatch],
    o: &FrameOptions<'_>,
) -> Result<Frames, JobError> {
    let input = rentals::check("rentals", rental_batches)?;
    let rentals = &input.rentals;
    let considered = |r: &Rental| is_considered(r, o.as_of);
    let cars = Cars::new(rentals, considered);
    let mut counts = FrameCounts {
        rental_rows: input.rows,
        rentals_valid: rentals.len() as u64,
        rentals_considered: rentals.iter().filter(|r| considered(r)).count() as u64,
        ..FrameCounts::default()
    };
    let mut by_car: Vec<Vec<Sample>> = vec![Vec::new(); cars.ids.len()];
    let mut telemetry_rejects = RejectLog::default();
    counts.telemetry_rows = telemetry::check(
        "telemetry",
        telemetry_batches,
        &mut telemetry_rejects,
        |car, s| {
            counts.telemetry_valid += 1;
            match cars.index.get(car) {
                Some(&c) if cars.covers(c, s.ts) => {
                    counts.samples_in_rentals += 1;
                    by_car[c as usize].push(s);
                }
                _ => counts.samples_outside_rentals += 1,
            }
        },
    )?;
    let scoring = Scoring {
        rentals,
        cars: &cars,
        as_of: o.as_of,
        grace_ms: o.grace_ms.unwrap_or(o.model.completeness.grace_ms()),
        model: o.model,
    };
    let mut scored = Scored::of(rentals.len());
    for (car, samples) in by_car.iter_mut().enumerate() {
        let mut out = Vec::new();
        let dups = scoring.car(car, samples, &mut out);
        scored.add(out, dups);
    }
    counts.duplicate_samples = scored.duplicates;
    let model_id = o.model.id();
    let member_scores = o
        .members
        .then(|| {
            let m = members::score(rentals, &scored.assessments, o.as_of, o.model);
            pitwall_score_state::snapshot::to_batch(&m, &model_id, o.as_of)
        })
        .transpose()?;
    Ok(Frames {
        rental_scores: outputs::rental_scores(rentals, &scored, &model_id)?,
        member_scores,
        rejected_rentals: outputs::rejected(&input.rejects, &rentals::COLUMNS_REJECTED)?,
        rejected_telemetry: outputs::rejected(&telemetry_rejects, &telemetry::COLUMNS_REJECTED)?,
        counts,
    })
}

/// Member scores at `as_of` from rental results (`rental_scores.parquet`
/// rows, or a state's results), as `member_scores.parquet` holds them.
pub fn member_scores(
    results: &[RecordBatch],
    as_of: i64,
    model: &Model,
) -> Result<RecordBatch, JobError> {
    let mut rentals = Vec::new();
    let mut assessments = Vec::new();
    for batch in results {
        let batch = results::normalize(batch, false)?;
        let cols = results::Columns::of(&batch)?;
        for i in 0..batch.num_rows() {
            let row = cols.row(i)?;
            rentals.push(row.rental);
            assessments.push(Some(row.assessment));
        }
    }
    let members = members::score(&rentals, &assessments, as_of, model);
    Ok(pitwall_score_state::snapshot::to_batch(
        &members,
        &model.id(),
        as_of,
    )?)
}

/// Rentals checked under the contract: the valid ones (ms timestamps in
/// UTC, by rental_id, identical copies once) and the rejected rows.
pub fn check_rentals(batches: &[RecordBatch]) -> Result<(RecordBatch, RecordBatch), JobError> {
    let input = rentals::check("rentals", batches)?;
    let r = &input.rentals;
    let text = |f: fn(&Rental) -> &str| -> ArrayRef {
        Arc::new(r.iter().map(|x| Some(f(x))).collect::<StringArray>())
    };
    let time = |f: fn(&Rental) -> i64| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from_iter_values(r.iter().map(f)).with_timezone("UTC"))
    };
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let schema = Schema::new(vec![
        Field::new("rental_id", DataType::Utf8, false),
        Field::new("member_id", DataType::Utf8, false),
        Field::new("car_id", DataType::Utf8, false),
        Field::new("start_at", ts.clone(), false),
        Field::new("end_at", ts, false),
    ]);
    let valid = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            text(|x| &x.rental_id),
            text(|x| &x.member_id),
            text(|x| &x.car_id),
            time(|x| x.start_at),
            time(|x| x.end_at),
        ],
    )
    .map_err(arrow_error)?;
    let rejected = outputs::rejected(&input.rejects, &rentals::COLUMNS_REJECTED)?;
    Ok((valid, rejected))
}

/// Telemetry checked under the contract: the valid rows as they came (all
/// columns, in order) and the rejected rows.
pub fn check_telemetry(batches: &[RecordBatch]) -> Result<(RecordBatch, RecordBatch), JobError> {
    let mut rejects = RejectLog::default();
    telemetry::check("telemetry", batches, &mut rejects, |_, _| {})?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => Arc::new(Schema::empty()),
    };
    let all = arrow_select::concat::concat_batches(&schema, batches).map_err(arrow_error)?;
    let mut keep = vec![true; all.num_rows()];
    for r in &rejects.kept {
        if let Some(k) = keep.get_mut(r.row as usize) {
            *k = false;
        }
    }
    let valid = arrow_select::filter::filter_record_batch(&all, &BooleanArray::from(keep))
        .map_err(arrow_error)?;
    let rejected = outputs::rejected(&rejects, &telemetry::COLUMNS_REJECTED)?;
    Ok((valid, rejected))
}

fn arrow_error(e: arrow_schema::ArrowError) -> JobError {
    JobError::BadFile {
        file: "frame".into(),
        problem: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Float64Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;

    use super::*;

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = cols
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            cols.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch")
    }

    fn ts(v: Vec<Option<i64>>) -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
    }

    fn strs(v: Vec<Option<&str>>) -> ArrayRef {
        Arc::new(StringArray::from(v))
    }

    /// Two rentals of one car, 30 min at 60 km/h each; one row of each input breaks a rule.
    fn fleet() -> (RecordBatch, RecordBatch) {
        let rentals = batch(vec![
            ("rental_id", strs(vec![Some("r1"), Some("r2"), None])),
            ("member_id", strs(vec![Some("m"), Some("m"), Some("m")])),
            ("car_id", strs(vec![Some("c"), Some("c"), Some("c")])),
            ("start_at", ts(vec![Some(0), Some(3_600_000), Some(0)])),
            (
                "end_at",
                ts(vec![Some(1_800_000), Some(5_400_000), Some(1)]),
            ),
        ]);
        let mut t = Vec::new();
        for start in [0, 3_600_000] {
            t.extend((0..=1800).map(|s| start + s * 1000));
        }
        let n = t.len();
        let mut cars = vec![Some("c"); n];
        cars[7] = None;
        let telemetry = batch(vec![
            ("car_id", strs(cars)),
            ("ts", ts(t.into_iter().map(Some).collect())),
            ("speed_kmh", Arc::new(Float64Array::from(vec![60.0; n]))),
            (
                "speed_limit_kmh",
                Arc::new(Float64Array::from(vec![50.0; n])),
            ),
        ]);
        (rentals, telemetry)
    }

    #[test]
    fn frames_are_checked_and_scored_as_files_are() {
        let (rentals, telemetry) = fleet();
        let model = Model::default();
        let o = FrameOptions {
            as_of: 10 * 86_400_000,
            model: &model,
            grace_ms: None,
            members: true,
        };
        let f = score(&[rentals], &[telemetry.clone(), telemetry], &o).expect("scored");
        assert_eq!(f.rental_scores.num_rows(), 2);
        let rules = f.rejected_rentals.column_by_name("rule").expect("rule");
        assert_eq!(rules.as_string::<i32>().value(0), "rental_id_empty");
        let rows = f.rejected_telemetry.column_by_name("row").expect("row");
        let rows: Vec<u64> = rows
            .as_primitive::<arrow_array::types::UInt64Type>()
            .values()
            .to_vec();
        assert_eq!(rows, [7, 3609], "numbered across batches");
        assert_eq!(
            f.counts.duplicate_samples, 3601,
            "the second batch repeats the first"
        );
        let members = f.member_scores.expect("members asked for");
        assert_eq!(members.num_rows(), 1);

        // Member scores from the results equal those scored with the rentals.
        let again = member_scores(std::slice::from_ref(&f.rental_scores), o.as_of, &model)
            .expect("members");
        let score = |b: &RecordBatch| {
            b.column_by_name("score")
                .expect("score")
                .as_primitive::<Float64Type>()
                .clone()
        };
        assert_eq!(score(&again), score(&members));
    }

    #[test]
    fn a_column_of_the_wrong_type_is_refused_with_its_name() {
        let (rentals, telemetry) = fleet();
        let bad = batch(vec![
            ("car_id", telemetry.column(0).clone()),
            ("ts", telemetry.column(1).clone()),
            ("speed_kmh", strs(vec![Some("fast"); telemetry.num_rows()])),
            ("speed_limit_kmh", telemetry.column(3).clone()),
        ]);
        let model = Model::default();
        let o = FrameOptions {
            as_of: 0,
            model: &model,
            grace_ms: None,
            members: false,
        };
        let e = score(&[rentals], &[bad], &o).expect_err("refused");
        assert!(
            e.to_string()
                .starts_with("telemetry: column speed_kmh has type Utf8"),
            "{e}"
        );
    }

    #[test]
    fn checks_return_the_valid_rows_and_the_rejected_ones() {
        let (rentals, telemetry) = fleet();
        let (valid, rejected) = check_rentals(&[rentals]).expect("checked");
        assert_eq!((valid.num_rows(), rejected.num_rows()), (2, 1));
        let (valid, rejected) = check_telemetry(std::slice::from_ref(&telemetry)).expect("checked");
        assert_eq!(valid.num_rows(), telemetry.num_rows() - 1);
        assert_eq!(valid.schema(), telemetry.schema(), "rows as they came");
        let rule = rejected.column_by_name("rule").expect("rule");
        assert_eq!(rule.as_string::<i32>().value(0), "car_id_empty");
    }
}
