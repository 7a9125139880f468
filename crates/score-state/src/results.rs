//! Rental results as rows and as Arrow: one schema for a run's
//! `rental_scores.parquet` and, with the finality columns, for the state's
//! tables and `state export`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use pitwall_score::{Assessment, Features, Reason, Rental, Status};

use crate::StateError;

/// When and by which committed run a rental became final.
#[derive(Debug, Clone, PartialEq)]
pub struct Finality {
    pub seq: u64,
    pub run_id: String,
    pub as_of: i64,
}

/// One evaluated rental: what the rentals input said, what the engine
/// decided, with which model, and whether that is final.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub rental: Rental,
    pub assessment: Assessment,
    pub model: String,
    /// None while the rental is open (evaluated again by the next run).
    pub finality: Option<Finality>,
}

/// The columns every rental result has, in `rental_scores.parquet` order.
pub const RESULT_COLUMNS: [&str; 19] = [
    "rental_id",
    "member_id",
    "car_id",
    "start_at",
    "end_at",
    "status",
    "reason",
    "samples",
    "coverage",
    "distance_km",
    "moving_s",
    "speeding_s",
    "excess_speeding_s",
    "harsh_accel_n",
    "harsh_brake_n",
    "unstable_stop_n",
    "score",
    "grade",
    "model",
];

/// The columns the state adds: `final`, and for final rows the run that made them so.
pub const FINALITY_COLUMNS: [&str; 4] = ["final", "final_seq", "final_run_id", "final_as_of"];

pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The schema of rental results; `with_finality` adds the state's columns.
pub fn schema(with_finality: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("rental_id", DataType::Utf8, false),
        Field::new("member_id", DataType::Utf8, false),
        Field::new("car_id", DataType::Utf8, false),
        Field::new("start_at", ts_type(), false),
        Field::new("end_at", ts_type(), false),
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
    if with_finality {
        fields.extend([
            Field::new("final", DataType::Boolean, false),
            Field::new("final_seq", DataType::Int64, true),
            Field::new("final_run_id", DataType::Utf8, true),
            Field::new("final_as_of", ts_type(), true),
        ]);
    }
    Arc::new(Schema::new(fields))
}

/// Rows as one record batch, in the order given.
pub fn to_batch(rows: &[ResultRow], with_finality: bool) -> Result<RecordBatch, StateError> {
    let text = |f: &dyn Fn(&ResultRow) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let int = |f: fn(&Features) -> u32| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|r| Some(i64::from(f(&r.assessment.features))))
                .collect::<Int64Array>(),
        )
    };
    let float = |f: &dyn Fn(&ResultRow) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Float64Array>())
    };
    let time = |f: &dyn Fn(&ResultRow) -> Option<i64>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(f)
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        )
    };
    let mut cols: Vec<ArrayRef> = vec![
        text(&|r| Some(&r.rental.rental_id)),
        text(&|r| Some(&r.rental.member_id)),
        text(&|r| Some(&r.rental.car_id)),
        time(&|r| Some(r.rental.start_at)),
        time(&|r| Some(r.rental.end_at)),
        text(&|r| Some(r.assessment.status.as_str())),
        text(&|r| r.assessment.reason.map(Reason::as_str)),
        int(|f| f.samples),
        float(&|r| Some(r.assessment.features.coverage)),
        float(&|r| Some(r.assessment.features.distance_km)),
        int(|f| f.moving_s),
        int(|f| f.speeding_s),
        int(|f| f.excess_speeding_s),
        int(|f| f.harsh_accel_n),
        int(|f| f.harsh_brake_n),
        int(|f| f.unstable_stop_n),
        float(&|r| r.assessment.score),
        text(&|r| r.assessment.grade.as_deref()),
        text(&|r| Some(&r.model)),
    ];
    if with_finality {
        cols.push(Arc::new(
            rows.iter()
                .map(|r| Some(r.finality.is_some()))
                .collect::<BooleanArray>(),
        ));
        cols.push(Arc::new(
            rows.iter()
                .map(|r| r.finality.as_ref().map(|f| f.seq as i64))
                .collect::<Int64Array>(),
        ));
        cols.push(text(&|r| r.finality.as_ref().map(|f| f.run_id.as_str())));
        cols.push(time(&|r| r.finality.as_ref().map(|f| f.as_of)));
    }
    RecordBatch::try_new(schema(with_finality), cols).map_err(|e| StateError::Table {
        what: "rental results".into(),
        problem: e.to_string(),
    })
}

/// Typed views of a results batch's columns, checked once.
pub struct Columns<'a> {
    pub rental_id: &'a StringArray,
    pub member_id: &'a StringArray,
    pub car_id: &'a StringArray,
    pub start_at: &'a TimestampMillisecondArray,
    pub end_at: &'a TimestampMillisecondArray,
    pub status: &'a StringArray,
    pub reason: &'a StringArray,
    pub ints: [&'a Int64Array; 7],
    pub coverage: &'a Float64Array,
    pub distance_km: &'a Float64Array,
    pub score: &'a Float64Array,
    pub grade: &'a StringArray,
    pub model: &'a StringArray,
    /// Present in the state's tables, absent in a run's rental_scores.
    pub finality: Option<FinalityColumns<'a>>,
}

pub struct FinalityColumns<'a> {
    pub is_final: &'a BooleanArray,
    pub seq: &'a Int64Array,
    pub run_id: &'a StringArray,
    pub as_of: &'a TimestampMillisecondArray,
}

/// The integer feature columns in [`Columns::ints`] order.
pub const INT_COLUMNS: [&str; 7] = [
    "samples",
    "moving_s",
    "speeding_s",
    "excess_speeding_s",
    "harsh_accel_n",
    "harsh_brake_n",
    "unstable_stop_n",
];

/// A feature value that is no such value, and which column held it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadValue {
    pub column: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl std::fmt::Display for BadValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {}; expected {}",
            self.column, self.value, self.expected
        )
    }
}

/// Row i's features from the [`INT_COLUMNS`] arrays, coverage and distance.
/// A results file need not be pitwall's own (a fit reads any), so a count
/// that is null, negative or beyond u32, or a coverage or distance that is
/// null, negative or not finite, is refused rather than read as some other
/// number; the caller says which row of what it was.
pub fn features_at(
    ints: &[&Int64Array; 7],
    coverage: &Float64Array,
    distance_km: &Float64Array,
    i: usize,
) -> Result<Features, BadValue> {
    let bad = |column, value, expected| BadValue {
        column,
        value,
        expected,
    };
    let n = |k: usize| -> Result<u32, BadValue> {
        let (a, name) = (ints[k], INT_COLUMNS[k]);
        if a.is_null(i) {
            return Err(bad(name, "null".into(), "a count"));
        }
        u32::try_from(a.value(i))
            .map_err(|_| bad(name, a.value(i).to_string(), "a count from 0 to 4294967295"))
    };
    let x = |a: &Float64Array, name| -> Result<f64, BadValue> {
        if a.is_null(i) {
            return Err(bad(name, "null".into(), "a number"));
        }
        let v = a.value(i);
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(bad(name, v.to_string(), "a finite number ≥ 0"))
        }
    };
    // In column order, so a row with several bad values names the first.
    let mut counts = [n(0)?, 0, 0, 0, 0, 0, 0];
    let (coverage, distance_km) = (x(coverage, "coverage")?, x(distance_km, "distance_km")?);
    for (k, v) in counts.iter_mut().enumerate().skip(1) {
        *v = n(k)?;
    }
    Ok(Features::from_counts(counts, coverage, distance_km))
}

impl<'a> Columns<'a> {
    /// Checks that `batch` has the result columns with their types (casts
    /// are the caller's job: see [`normalize`]).
    pub fn of(batch: &'a RecordBatch) -> Result<Columns<'a>, StateError> {
        let col = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| StateError::Table {
                what: "rental results".into(),
                problem: format!("no column {name:?}"),
            })
        };
        let s = |n| col(n).and_then(|c| typed(n, c.as_string_opt::<i32>()));
        let t = |n| col(n).and_then(|c| typed(n, c.as_primitive_opt::<TimestampMillisecondType>()));
        let f = |n| col(n).and_then(|c| typed(n, c.as_primitive_opt::<Float64Type>()));
        let i = |n| col(n).and_then(|c| typed(n, c.as_primitive_opt::<Int64Type>()));
        let finality = match batch.column_by_name("final") {
            None => None,
            Some(c) => Some(FinalityColumns {
                is_final: typed("final", c.as_boolean_opt())?,
                seq: i("final_seq")?,
                run_id: s("final_run_id")?,
                as_of: t("final_as_of")?,
            }),
        };
        let mut ints = Vec::with_capacity(7);
        for n in INT_COLUMNS {
            ints.push(i(n)?);
        }
        let ints: [&Int64Array; 7] = ints.try_into().map_err(|_| StateError::Table {
            what: "rental results".into(),
            problem: "integer columns".into(),
        })?;
        Ok(Columns {
            rental_id: s("rental_id")?,
            member_id: s("member_id")?,
            car_id: s("car_id")?,
            start_at: t("start_at")?,
            end_at: t("end_at")?,
            status: s("status")?,
            reason: s("reason")?,
            ints,
            coverage: f("coverage")?,
            distance_km: f("distance_km")?,
            score: f("score")?,
            grade: s("grade")?,
            model: s("model")?,
            finality,
        })
    }

    pub fn features(&self, i: usize) -> Result<Features, StateError> {
        features_at(&self.ints, self.coverage, self.distance_km, i).map_err(|e| StateError::Table {
            what: "rental results".into(),
            problem: format!("row {i}: {e}"),
        })
    }

    pub fn status(&self, i: usize) -> Result<Status, StateError> {
        parse_status(self.status.value(i))
    }

    /// Row `i` as an owned row.
    pub fn row(&self, i: usize) -> Result<ResultRow, StateError> {
        let opt_str = |a: &StringArray| a.is_valid(i).then(|| a.value(i).to_string());
        let reason = match opt_str(self.reason) {
            Some(r) => Some(parse_reason(&r)?),
            None => None,
        };
        let finality = match &self.finality {
            Some(f) if f.is_final.value(i) => Some(Finality {
                seq: u64::try_from(f.seq.value(i)).unwrap_or(0),
                run_id: f.run_id.value(i).to_string(),
                as_of: f.as_of.value(i),
            }),
            _ => None,
        };
        Ok(ResultRow {
            rental: Rental {
                rental_id: self.rental_id.value(i).to_string(),
                member_id: self.member_id.value(i).to_string(),
                car_id: self.car_id.value(i).to_string(),
                start_at: self.start_at.value(i),
                end_at: self.end_at.value(i),
            },
            assessment: Assessment {
                features: self.features(i)?,
                status: self.status(i)?,
                reason,
                score: self.score.is_valid(i).then(|| self.score.value(i)),
                grade: opt_str(self.grade),
            },
            model: self.model.value(i).to_string(),
            finality,
        })
    }
}

fn typed<T>(name: &str, a: Option<T>) -> Result<T, StateError> {
    a.ok_or_else(|| StateError::Table {
        what: "rental results".into(),
        problem: format!("column {name:?} has the wrong type"),
    })
}

/// Casts a batch read from a file to the exact types of [`schema`] (a
/// legacy pipeline's output may carry other string, integer or timestamp
/// widths); columns other than the schema's are dropped.
pub fn normalize(batch: &RecordBatch, with_finality: bool) -> Result<RecordBatch, StateError> {
    let target = schema(with_finality);
    let mut cols = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let col = batch
            .column_by_name(field.name())
            .ok_or_else(|| StateError::Table {
                what: "rental results".into(),
                problem: format!(
                    "no column {:?}; rental results need {}",
                    field.name(),
                    RESULT_COLUMNS.join(", ")
                ),
            })?;
        let cast = arrow_cast::cast(col, field.data_type()).map_err(|e| StateError::Table {
            what: "rental results".into(),
            problem: format!("column {}: {e}", field.name()),
        })?;
        cols.push(cast);
    }
    RecordBatch::try_new(target, cols).map_err(|e| StateError::Table {
        what: "rental results".into(),
        problem: e.to_string(),
    })
}

pub fn parse_status(s: &str) -> Result<Status, StateError> {
    match s {
        "scored" => Ok(Status::Scored),
        "pending" => Ok(Status::Pending),
        "unscorable" => Ok(Status::Unscorable),
        other => Err(StateError::Table {
            what: "rental results".into(),
            problem: format!("unknown status {other:?} (scored, pending or unscorable)"),
        }),
    }
}

fn parse_reason(s: &str) -> Result<Reason, StateError> {
    match s {
        "awaiting_telemetry" => Ok(Reason::AwaitingTelemetry),
        "insufficient_coverage" => Ok(Reason::InsufficientCoverage),
        "too_short" => Ok(Reason::TooShort),
        other => Err(StateError::Table {
            what: "rental results".into(),
            problem: format!("unknown reason {other:?}"),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(id: &str, member: &str, end_at: i64, fin: bool) -> ResultRow {
        ResultRow {
            rental: Rental {
                rental_id: id.into(),
                member_id: member.into(),
                car_id: "car".into(),
                start_at: end_at - 600_000,
                end_at,
            },
            assessment: Assessment {
                features: Features {
                    samples: 601,
                    coverage: 1.0,
                    distance_km: 7.25,
                    moving_s: 500,
                    speeding_s: 3,
                    excess_speeding_s: 1,
                    harsh_accel_n: 2,
                    harsh_brake_n: 0,
                    unstable_stop_n: 1,
                },
                status: Status::Scored,
                reason: None,
                score: Some(81.5),
                grade: Some("GOOD".into()),
            },
            model: "psf@1".into(),
            finality: fin.then(|| Finality {
                seq: 3,
                run_id: "score-x".into(),
                as_of: end_at + 1,
            }),
        }
    }

    #[test]
    fn rows_survive_a_round_trip_through_arrow() -> Result<(), StateError> {
        let mut pending = row("b", "m2", 2_000_000, false);
        pending.assessment.status = Status::Pending;
        pending.assessment.reason = Some(Reason::AwaitingTelemetry);
        pending.assessment.score = None;
        pending.assessment.grade = None;
        let rows = vec![row("a", "m1", 1_000_000, true), pending];
        let batch = to_batch(&rows, true)?;
        let cols = Columns::of(&batch)?;
        let back: Vec<ResultRow> = (0..batch.num_rows())
            .map(|i| cols.row(i))
            .collect::<Result<_, _>>()?;
        assert_eq!(back, rows);
        Ok(())
    }

    #[test]
    fn without_finality_the_columns_are_rental_scores() -> Result<(), StateError> {
        let batch = to_batch(&[row("a", "m", 1, true)], false)?;
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, RESULT_COLUMNS);
        assert_eq!(Columns::of(&batch)?.row(0)?.finality, None);
        Ok(())
    }

    #[test]
    fn normalize_names_a_missing_column() {
        let batch = RecordBatch::try_from_iter([(
            "rental_id",
            Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
        )]);
        let err = batch
            .map_err(|e| e.to_string())
            .and_then(|b| normalize(&b, false).map_err(|e| e.to_string()));
        assert!(err.is_err_and(|e| e.contains("member_id")));
    }

    /// The batch of `row` with one column replaced.
    fn with_column(name: &str, col: ArrayRef) -> Result<RecordBatch, StateError> {
        let batch = to_batch(&[row("a", "m", 1_000_000, false)], false)?;
        // Another producer's file may declare any column nullable.
        let (fields, cols): (Vec<Field>, Vec<ArrayRef>) = batch
            .schema_ref()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| {
                let f = f.as_ref().clone();
                match f.name() == name {
                    true => (f.with_nullable(true), col.clone()),
                    false => (f, c.clone()),
                }
            })
            .unzip();
        let schema = Arc::new(Schema::new(fields));
        RecordBatch::try_new(schema, cols).map_err(|e| StateError::Table {
            what: "test batch".into(),
            problem: e.to_string(),
        })
    }

    #[test]
    fn counts_and_distances_that_are_no_such_thing_are_refused_by_row_and_column()
    -> Result<(), StateError> {
        let ints = |v: Option<i64>| Arc::new(Int64Array::from(vec![v])) as ArrayRef;
        let floats = |v: Option<f64>| Arc::new(Float64Array::from(vec![v])) as ArrayRef;
        let cases = [
            (
                "harsh_brake_n",
                ints(Some(-3)),
                "row 0: harsh_brake_n is -3",
            ),
            (
                "samples",
                ints(Some(1 << 40)),
                "row 0: samples is 1099511627776",
            ),
            ("moving_s", ints(None), "row 0: moving_s is null"),
            (
                "distance_km",
                floats(Some(f64::NAN)),
                "row 0: distance_km is NaN",
            ),
            (
                "distance_km",
                floats(Some(-1.5)),
                "row 0: distance_km is -1.5",
            ),
            ("coverage", floats(None), "row 0: coverage is null"),
        ];
        for (name, col, says) in cases {
            let batch = with_column(name, col)?;
            let err = Columns::of(&batch)?
                .row(0)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert!(
                err.as_ref().is_err_and(|e| e.contains(says)),
                "{name}: {err:?}"
            );
        }
        // The largest count and a zero distance are features like any other.
        let batch = with_column("samples", ints(Some(i64::from(u32::MAX))))?;
        assert_eq!(Columns::of(&batch)?.features(0)?.samples, u32::MAX);
        let batch = with_column("distance_km", floats(Some(0.0)))?;
        assert_eq!(Columns::of(&batch)?.features(0)?.distance_km, 0.0);
        Ok(())
    }
}
