//! The member-score records of a run, built from its output directory:
//! `member_scores.parquet` (members with their recent rentals inline) and
//! `run.json` (run id, status, eligible count).

use std::path::Path;

use apache_avro::Schema;
use apache_avro::types::Value;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "cannot read run output {path}: {problem}; is this the --out directory of `pitwall score run`?"
    )]
    Read { path: String, problem: String },
    #[error("record for member {member} does not fit the schema: {problem}")]
    Encode { member: String, problem: String },
}

/// What a run offers for publication.
#[derive(Debug)]
pub struct RunRecords {
    pub run_id: String,
    /// `ok` or `held`.
    pub status: String,
    /// Eligible members: the records to publish.
    pub records: Vec<MemberRecord>,
    /// Members the run computed (eligible or not).
    pub members_total: usize,
    /// Eligible members as run.json counts them: delivery accounting checks records against it.
    pub eligible_in_run: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub member_id: String,
    pub value: Value,
}

pub fn read_run(dir: &Path) -> Result<RunRecords, RecordError> {
    let run_json = dir.join("run.json");
    let text = std::fs::read_to_string(&run_json).map_err(|e| read_err(&run_json, e))?;
    let run: serde_json::Value = serde_json::from_str(&text).map_err(|e| read_err(&run_json, e))?;
    let field = |k: &str| {
        run[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| read_err(&run_json, format!("no {k:?}")))
    };
    let (run_id, status) = (field("run_id")?, field("status")?);
    let eligible_in_run = run["members"]["eligible"]
        .as_u64()
        .ok_or_else(|| read_err(&run_json, "no members.eligible"))?;

    let path = dir.join("member_scores.parquet");
    let mut records = Vec::new();
    let mut members_total = 0;
    for b in batches(&path)? {
        members_total += b.num_rows();
        let c = Cols { b: &b, path: &path };
        let (ids, eligible, status_col, grade, model) = (
            c.str("member_id")?,
            c.col("eligible")?,
            c.str("status")?,
            c.str("grade")?,
            c.str("model")?,
        );
        let eligible = eligible.as_boolean();
        let (score, dist) = (c.f64("score")?, c.f64("distance_km_total")?);
        let (used_n, r12) = (c.i64("rentals_used")?, c.i64("rentals_12m")?);
        let as_of = c.ts("as_of")?;
        let rates: Vec<_> = [
            "harsh_accel_per_100km",
            "harsh_brake_per_100km",
            "unstable_stop_per_100km",
            "speeding_pct",
            "excess_speeding_pct",
        ]
        .iter()
        .map(|n| c.f64(n).map(|a| (*n, a)))
        .collect::<Result<_, _>>()?;
        let recent_col = c.col("recent_rentals")?;
        let recent_list = recent_col.as_list::<i32>();
        for i in 0..b.num_rows() {
            if !eligible.value(i) {
                continue;
            }
            let recent = recent_values(&c, &recent_list.value(i))?;
            let member_id = ids.value(i).to_string();
            let value = Value::Record(vec![
                ("member_id".into(), Value::String(member_id.clone())),
                ("eligible".into(), Value::Boolean(true)),
                ("status".into(), Value::String(status_col.value(i).into())),
                (
                    "score".into(),
                    opt_double(score.is_valid(i).then(|| score.value(i))),
                ),
                (
                    "grade".into(),
                    opt_string(grade.is_valid(i).then(|| grade.value(i).to_string())),
                ),
                (
                    "rentals_used".into(),
                    Value::Int(used_n.value(i).clamp(0, i32::MAX as i64) as i32),
                ),
                (
                    "rentals_12m".into(),
                    Value::Int(r12.value(i).clamp(0, i32::MAX as i64) as i32),
                ),
                ("distance_km_total".into(), Value::Double(dist.value(i))),
                (
                    "rates".into(),
                    Value::Record(
                        rates
                            .iter()
                            .map(|(n, a)| (n.to_string(), Value::Double(a.value(i))))
                            .collect(),
                    ),
                ),
                ("model".into(), Value::String(model.value(i).into())),
                ("as_of".into(), Value::TimestampMillis(as_of.value(i))),
                ("run_id".into(), Value::String(run_id.clone())),
                ("recent_rentals".into(), Value::Array(recent)),
            ]);
            records.push(MemberRecord { member_id, value });
        }
    }
    Ok(RunRecords {
        run_id,
        status,
        records,
        members_total,
        eligible_in_run,
    })
}

/// The Avro binary datum of a record (no container, no framing).
pub fn encode(schema: &Schema, r: &MemberRecord) -> Result<Vec<u8>, RecordError> {
    #[allow(deprecated)] // GenericDatumWriter is not in 0.22's stable API yet.
    apache_avro::to_avro_datum(schema, r.value.clone()).map_err(|e| RecordError::Encode {
        member: r.member_id.clone(),
        problem: e.to_string(),
    })
}

/// One member's `recent_rentals` (a struct array) as Avro values.
fn recent_values(c: &Cols<'_>, rentals: &ArrayRef) -> Result<Vec<Value>, RecordError> {
    let s = rentals.as_struct();
    let col = |name: &str| {
        s.column_by_name(name)
            .cloned()
            .ok_or_else(|| read_err(c.path, format!("recent_rentals has no field {name:?}")))
    };
    let cast = |name: &str, to: &DataType| {
        arrow_cast::cast(&col(name)?, to)
            .map_err(|e| read_err(c.path, format!("recent_rentals.{name}: {e}")))
    };
    let ids = cast("rental_id", &DataType::Utf8)?;
    let grades = cast("grade", &DataType::Utf8)?;
    let ends = cast("end_at", &DataType::Timestamp(TimeUnit::Millisecond, None))?;
    let dist = cast("distance_km", &DataType::Float64)?;
    let score = cast("score", &DataType::Float64)?;
    let (ids, grades) = (ids.as_string::<i32>(), grades.as_string::<i32>());
    let ends = ends.as_primitive::<TimestampMillisecondType>();
    let (dist, score) = (
        dist.as_primitive::<Float64Type>(),
        score.as_primitive::<Float64Type>(),
    );
    Ok((0..s.len())
        .map(|k| {
            Value::Record(vec![
                ("rental_id".into(), Value::String(ids.value(k).into())),
                ("end_at".into(), Value::TimestampMillis(ends.value(k))),
                ("distance_km".into(), Value::Double(dist.value(k))),
                (
                    "score".into(),
                    opt_double(score.is_valid(k).then(|| score.value(k))),
                ),
                (
                    "grade".into(),
                    opt_string(grades.is_valid(k).then(|| grades.value(k).to_string())),
                ),
            ])
        })
        .collect())
}

fn opt_double(v: Option<f64>) -> Value {
    match v {
        Some(x) => Value::Union(1, Box::new(Value::Double(x))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn opt_string(v: Option<String>) -> Value {
    match v {
        Some(x) => Value::Union(1, Box::new(Value::String(x))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> RecordError {
    RecordError::Read {
        path: path.display().to_string(),
        problem: e.to_string(),
    }
}

fn batches(path: &Path) -> Result<Vec<RecordBatch>, RecordError> {
    let f = std::fs::File::open(path).map_err(|e| read_err(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|e| read_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(path, e))
}

/// Typed column access with errors naming the file and column.
struct Cols<'a> {
    b: &'a RecordBatch,
    path: &'a Path,
}

impl Cols<'_> {
    fn col(&self, name: &str) -> Result<ArrayRef, RecordError> {
        self.b
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| read_err(self.path, format!("no column {name:?}")))
    }
    fn cast(&self, name: &str, to: &DataType) -> Result<ArrayRef, RecordError> {
        arrow_cast::cast(&self.col(name)?, to)
            .map_err(|e| read_err(self.path, format!("column {name}: {e}")))
    }
    fn str(&self, name: &str) -> Result<arrow_array::StringArray, RecordError> {
        Ok(self.cast(name, &DataType::Utf8)?.as_string::<i32>().clone())
    }
    fn f64(&self, name: &str) -> Result<arrow_array::Float64Array, RecordError> {
        Ok(self
            .cast(name, &DataType::Float64)?
            .as_primitive::<Float64Type>()
            .clone())
    }
    fn i64(&self, name: &str) -> Result<arrow_array::Int64Array, RecordError> {
        Ok(self
            .cast(name, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone())
    }
    fn ts(&self, name: &str) -> Result<arrow_array::TimestampMillisecondArray, RecordError> {
        let t = self.cast(name, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        Ok(t.as_primitive::<TimestampMillisecondType>().clone())
    }
}
