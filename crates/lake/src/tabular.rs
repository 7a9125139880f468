//! Small tabular inputs (rentals, claims): a Parquet or CSV file as Arrow
//! batches, and time columns in whatever form such files carry them.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{FileRef, LakeError, Location};

/// `source` names the table in errors: a file's display name, or what a
/// caller holding the batch in memory calls it (a DataFrame).
fn bad(source: &str, problem: impl ToString) -> LakeError {
    LakeError::BadTable {
        path: source.to_string(),
        problem: problem.to_string(),
    }
}

/// Every batch of `file`. A CSV file is read with `csv_columns` as text:
/// values are parsed per row by the caller, so one bad value rejects one
/// row, not the file.
pub fn read_table(file: &FileRef, csv_columns: &[&str]) -> Result<Vec<RecordBatch>, LakeError> {
    if file.display.ends_with(".csv") {
        let bytes = Location::read_all(file)?;
        let schema = Arc::new(Schema::new(
            csv_columns
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let reader = arrow_csv::ReaderBuilder::new(schema)
            .with_header(true)
            .build(std::io::Cursor::new(bytes))
            .map_err(|e| bad(&file.display, e))?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&file.display, e))
    } else {
        let input = Location::open(file)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(input)
            .and_then(|b| b.build())
            .map_err(|e| bad(&file.display, e))?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&file.display, e))
    }
}

/// Column `name` of a batch, or an error naming the columns a file needs.
pub fn column(
    source: &str,
    batch: &RecordBatch,
    name: &str,
    what: &str,
    needs: &[&str],
) -> Result<ArrayRef, LakeError> {
    batch.column_by_name(name).cloned().ok_or_else(|| {
        bad(
            source,
            format!(
                "no column {name:?}; a {what} file needs {}",
                needs.join(", ")
            ),
        )
    })
}

/// A column as UTF-8 text, whatever its type.
pub fn text(source: &str, name: &str, col: &ArrayRef) -> Result<ArrayRef, LakeError> {
    arrow_cast::cast(col, &DataType::Utf8).map_err(|e| bad(source, format!("column {name}: {e}")))
}

/// A timestamp column as ms since the epoch: native timestamps of any unit,
/// or text in RFC 3339 (a naive time is taken as UTC).
pub enum TimeColumn {
    Native(ArrayRef),
    Text(ArrayRef),
}

impl TimeColumn {
    pub fn new(source: &str, name: &str, col: &ArrayRef) -> Result<Self, LakeError> {
        match col.data_type() {
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
                let ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
                Ok(TimeColumn::Native(
                    arrow_cast::cast(col, &ms)
                        .map_err(|e| bad(source, format!("column {name}: {e}")))?,
                ))
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Ok(TimeColumn::Text(text(source, name, col)?))
            }
            other => Err(bad(
                source,
                format!(
                    "column {name} has type {other}; expected a timestamp (UTC, ms) or RFC 3339 text"
                ),
            )),
        }
    }

    /// `Ok(None)` for null, `Err(Unparseable)` for text that is no time.
    pub fn get(&self, i: usize) -> Result<Option<i64>, Unparseable> {
        match self {
            TimeColumn::Native(a) => {
                let a = a.as_primitive::<TimestampMillisecondType>();
                Ok(a.is_valid(i).then(|| a.value(i)))
            }
            TimeColumn::Text(a) => {
                let a = a.as_string::<i32>();
                if a.is_null(i) || a.value(i).trim().is_empty() {
                    return Ok(None);
                }
                parse_time(a.value(i).trim()).map(Some).ok_or(Unparseable)
            }
        }
    }
}

/// A time value that is neither null nor a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unparseable;

/// RFC 3339, or a naive ISO date-time taken as UTC.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc().timestamp_millis())
}
