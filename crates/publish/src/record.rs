//! The member-score records of a run, built from its output directory:
//! `member_scores.parquet` (members with their recent rentals inline) and
//! `run.json` (run id, status, eligible count).
//!
//! Records are plain structs that mirror `contracts/avro/member_score.v1.avsc`
//! (serde-serializable, so apache-avro can check the hand encoder in tests).

use std::path::Path;

use apache_avro::Schema;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "cannot read run output {path}: {problem}; is this the --out directory of `pitwall score run`?"
    )]
    Read { path: String, problem: String },
    #[error("record for member {member} does not fit the schema: {problem}")]
    Encode { member: String, problem: String },
}

/// What run.json says about a run, and how many records it offers.
#[derive(Debug)]
pub struct RunInfo {
    pub run_id: String,
    /// `ok` or `held`.
    pub status: String,
    /// Eligible members as run.json counts them: delivery accounting checks records against it.
    pub eligible_in_run: u64,
    /// Eligible members in member_scores.parquet: the records to publish.
    pub eligible_rows: u64,
}

/// `com.pitwall.driving_score.MemberScore`, field for field. Strings borrow
/// from the Arrow arrays of the batch being published: a million members
/// with ten rentals each cost no per-string allocation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberScore<'a> {
    pub member_id: &'a str,
    pub eligible: bool,
    pub status: &'a str,
    pub score: Option<f64>,
    pub grade: Option<&'a str>,
    pub rentals_used: i32,
    pub rentals_12m: i32,
    pub distance_km_total: f64,
    pub rates: FactorRates,
    pub model: &'a str,
    /// timestamp-millis
    pub as_of: i64,
    pub run_id: &'a str,
    pub recent_rentals: Vec<RecentRental<'a>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FactorRates {
    pub harsh_accel_per_100km: f64,
    pub harsh_brake_per_100km: f64,
    pub unstable_stop_per_100km: f64,
    pub speeding_pct: f64,
    pub excess_speeding_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentRental<'a> {
    pub rental_id: &'a str,
    /// timestamp-millis
    pub end_at: i64,
    pub distance_km: f64,
    pub score: Option<f64>,
    pub grade: Option<&'a str>,
}

/// Encodes records of `member_score.v1`; refuses any other schema, since
/// the encoder is written for that one (see `crate::avro`).
pub struct Encoder;

impl Encoder {
    pub fn new(schema: &Schema) -> Result<Self, RecordError> {
        let v1 = pitwall_contract::schemas::member_score_v1().map_err(|e| RecordError::Encode {
            member: "-".into(),
            problem: e.to_string(),
        })?;
        if schema.canonical_form() != v1.canonical_form() {
            return Err(RecordError::Encode {
                member: "-".into(),
                problem:
                    "the encoder writes member_score.v1 only; a new record version needs its own"
                        .into(),
            });
        }
        Ok(Encoder)
    }

    /// Appends the Avro binary datum of a record (no container, no framing).
    pub fn encode(&self, r: &MemberScore<'_>, out: &mut Vec<u8>) -> Result<(), RecordError> {
        crate::avro::write_member_score(r, out);
        Ok(())
    }
}

pub fn member_scores_path(dir: &Path) -> std::path::PathBuf {
    dir.join("member_scores.parquet")
}

/// Reads run.json and counts eligible rows (reading only that column).
pub fn read_run_info(dir: &Path) -> Result<RunInfo, RecordError> {
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
    let path = member_scores_path(dir);
    let mut eligible_rows = 0;
    for b in batches(&path, Some(&["eligible"]))? {
        let b = b?;
        let col = Cols { b: &b, path: &path }.col("eligible")?;
        eligible_rows += col.as_boolean().true_count() as u64;
    }
    Ok(RunInfo {
        run_id,
        status,
        eligible_in_run,
        eligible_rows,
    })
}

/// One batch of member_scores with its columns cast, ready to lend records.
pub struct MemberBatch {
    rows: usize,
    ids: StringArray,
    status: StringArray,
    grade: StringArray,
    model: StringArray,
    eligible: arrow_array::BooleanArray,
    score: arrow_array::Float64Array,
    dist: arrow_array::Float64Array,
    used_n: arrow_array::Int64Array,
    r12: arrow_array::Int64Array,
    as_of: arrow_array::TimestampMillisecondArray,
    rates: [arrow_array::Float64Array; 5],
    recent: RecentColumns,
}

/// Streams member_scores.parquet of a run directory, one cast batch at a time.
pub fn member_batches(
    dir: &Path,
) -> Result<impl Iterator<Item = Result<MemberBatch, RecordError>>, RecordError> {
    let path = member_scores_path(dir);
    let it = batches(&path, None)?;
    Ok(it.map(move |b| {
        let b = b?;
        MemberBatch::new(&Cols { b: &b, path: &path })
    }))
}

impl MemberBatch {
    /// Every column is cast once per batch; rows only index into them.
    fn new(c: &Cols<'_>) -> Result<Self, RecordError> {
        let eligible = c
            .col("eligible")?
            .as_boolean_opt()
            .ok_or_else(|| read_err(c.path, "eligible is not boolean"))?
            .clone();
        Ok(MemberBatch {
            rows: c.b.num_rows(),
            ids: c.str("member_id")?,
            status: c.str("status")?,
            grade: c.str("grade")?,
            model: c.str("model")?,
            eligible,
            score: c.f64("score")?,
            dist: c.f64("distance_km_total")?,
            used_n: c.i64("rentals_used")?,
            r12: c.i64("rentals_12m")?,
            as_of: c.ts("as_of")?,
            rates: [
                c.f64("harsh_accel_per_100km")?,
                c.f64("harsh_brake_per_100km")?,
                c.f64("unstable_stop_per_100km")?,
                c.f64("speeding_pct")?,
                c.f64("excess_speeding_pct")?,
            ],
            recent: RecentColumns::new(c)?,
        })
    }

    /// The eligible members of the batch as records.
    pub fn records<'a>(&'a self, run_id: &'a str) -> Vec<MemberScore<'a>> {
        let int = |v: i64| v.clamp(0, i64::from(i32::MAX)) as i32;
        let opt = |a: &'a StringArray, i: usize| a.is_valid(i).then(|| a.value(i));
        (0..self.rows)
            .filter(|&i| self.eligible.value(i))
            .map(|i| MemberScore {
                member_id: self.ids.value(i),
                eligible: true,
                status: self.status.value(i),
                score: self.score.is_valid(i).then(|| self.score.value(i)),
                grade: opt(&self.grade, i),
                rentals_used: int(self.used_n.value(i)),
                rentals_12m: int(self.r12.value(i)),
                distance_km_total: self.dist.value(i),
                rates: FactorRates {
                    harsh_accel_per_100km: self.rates[0].value(i),
                    harsh_brake_per_100km: self.rates[1].value(i),
                    unstable_stop_per_100km: self.rates[2].value(i),
                    speeding_pct: self.rates[3].value(i),
                    excess_speeding_pct: self.rates[4].value(i),
                },
                model: self.model.value(i),
                as_of: self.as_of.value(i),
                run_id,
                recent_rentals: self.recent.of_member(i),
            })
            .collect()
    }
}

/// The `recent_rentals` list column, its struct fields cast once.
struct RecentColumns {
    offsets: Vec<i32>,
    ids: StringArray,
    grades: StringArray,
    ends: arrow_array::TimestampMillisecondArray,
    dist: arrow_array::Float64Array,
    score: arrow_array::Float64Array,
}

impl RecentColumns {
    fn new(c: &Cols<'_>) -> Result<Self, RecordError> {
        let list = c.col("recent_rentals")?;
        let list = list
            .as_list_opt::<i32>()
            .ok_or_else(|| read_err(c.path, "recent_rentals is not a list"))?;
        let s = list
            .values()
            .as_struct_opt()
            .ok_or_else(|| read_err(c.path, "recent_rentals items are not structs"))?;
        let cast = |name: &str, to: &DataType| -> Result<ArrayRef, RecordError> {
            let col = s
                .column_by_name(name)
                .ok_or_else(|| read_err(c.path, format!("recent_rentals has no field {name:?}")))?;
            arrow_cast::cast(col, to)
                .map_err(|e| read_err(c.path, format!("recent_rentals.{name}: {e}")))
        };
        Ok(RecentColumns {
            offsets: list.offsets().to_vec(),
            ids: cast("rental_id", &DataType::Utf8)?
                .as_string::<i32>()
                .clone(),
            grades: cast("grade", &DataType::Utf8)?.as_string::<i32>().clone(),
            ends: cast("end_at", &DataType::Timestamp(TimeUnit::Millisecond, None))?
                .as_primitive::<TimestampMillisecondType>()
                .clone(),
            dist: cast("distance_km", &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .clone(),
            score: cast("score", &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .clone(),
        })
    }

    fn of_member(&self, i: usize) -> Vec<RecentRental<'_>> {
        let (from, to) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        (from..to)
            .map(|k| RecentRental {
                rental_id: self.ids.value(k),
                end_at: self.ends.value(k),
                distance_km: self.dist.value(k),
                score: self.score.is_valid(k).then(|| self.score.value(k)),
                grade: self.grades.is_valid(k).then(|| self.grades.value(k)),
            })
            .collect()
    }
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> RecordError {
    RecordError::Read {
        path: path.display().to_string(),
        problem: e.to_string(),
    }
}

/// Streams a Parquet file's batches, optionally only some columns.
fn batches(
    path: &Path,
    columns: Option<&[&str]>,
) -> Result<impl Iterator<Item = Result<RecordBatch, RecordError>> + use<>, RecordError> {
    let f = std::fs::File::open(path).map_err(|e| read_err(path, e))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| read_err(path, e))?
        .with_batch_size(16 * 1024);
    if let Some(cols) = columns {
        let mask =
            parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), cols.iter().copied());
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(|e| read_err(path, e))?;
    let p = path.to_path_buf();
    Ok(reader.map(move |b| b.map_err(|e| read_err(&p, e))))
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
    fn str(&self, name: &str) -> Result<StringArray, RecordError> {
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
