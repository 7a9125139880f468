//! Reading both sides into per-hour [`Events`]: legacy gzip JSON lines
//! through the contract's validator, lake Parquet through its columns.

use std::collections::BTreeMap;
use std::io::Read as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_lake::{FileRef, Location};
use pitwall_logs::{Cell, Contract, Row, Validator};
use serde::Serialize;

use crate::keys::{Key, Names};
use crate::side::{Events, Value};
use pitwall_logs::layout::hour_of;

use crate::{ReconcileError, Result};

/// Where a legacy line could not be used, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// Legacy events the contract refuses, which the new path must have put in
/// its DLQ.
#[derive(Debug, Default)]
pub struct Refused {
    pub by_reason: BTreeMap<&'static str, u64>,
    pub keys: Vec<Key>,
    pub names: Names,
    /// Refused events without a usable id: they can't be looked up in the DLQ.
    pub without_id: u64,
}

/// What one legacy file holds for the hours being compared.
#[derive(Debug, Default)]
pub struct LegacyFile {
    pub by_hour: BTreeMap<i64, Events>,
    pub refused: BTreeMap<i64, Refused>,
    /// Lines with no event time to place them by (broken JSON, no `ts`).
    pub unreadable: u64,
    pub unreadable_sample: Vec<Unreadable>,
    pub lines: u64,
    /// Events of hours outside the range (neighbours read for their slack).
    pub outside: u64,
}

pub struct LegacyReader<'a> {
    pub validator: &'a Validator<'a>,
    pub key_field: usize,
    /// Event hours kept, as hour numbers since the epoch: `from..to`.
    pub hours: std::ops::Range<i64>,
    pub sample: usize,
}

impl LegacyReader<'_> {
    pub fn read(&self, file: &FileRef) -> Result<LegacyFile> {
        let raw = Location::read_all(file)?;
        let mut text = Vec::with_capacity(raw.len() * 6);
        let mut out = LegacyFile::default();
        // Firehose writes gzip; an uncompressed file is read as it is.
        let data: &[u8] = if raw.starts_with(&[0x1f, 0x8b]) {
            if let Err(e) = flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut text) {
                self.unreadable(&mut out, file, 0, format!("gzip: {e}"));
            }
            &text
        } else {
            &raw
        };
        let contract = self.validator.contract();
        let mut row = Row::default();
        for (n, line) in pitwall_logs::decode::lines(data).enumerate() {
            if line.trim_ascii().is_empty() {
                continue;
            }
            out.lines += 1;
            match self.validator.validate(line, &mut row) {
                Ok(()) => {
                    let hour = hour_of(row.event_ms);
                    if !self.hours.contains(&hour) {
                        out.outside += 1;
                        continue;
                    }
                    let id = row.text(&row.cells[self.key_field]).unwrap_or("");
                    let values = row.cells.iter().map(|c| value_of(&row, c));
                    out.by_hour
                        .entry(hour)
                        .or_insert_with(|| Events::new(contract.fields.len()))
                        .push(id, values);
                }
                Err(reason) => {
                    let (hour, id) = place(line, contract, self.key_field);
                    match hour {
                        Some(h) if !self.hours.contains(&h) => out.outside += 1,
                        Some(h) => {
                            let r = out.refused.entry(h).or_default();
                            *r.by_reason.entry(reason.code()).or_default() += 1;
                            match id {
                                Some(id) => {
                                    let k = r.names.key(&id);
                                    r.keys.push(k);
                                }
                                None => r.without_id += 1,
                            }
                        }
                        None => self.unreadable(&mut out, file, n + 1, reason.to_string()),
                    }
                }
            }
        }
        Ok(out)
    }

    fn unreadable(&self, out: &mut LegacyFile, file: &FileRef, line: usize, reason: String) {
        out.unreadable += 1;
        if out.unreadable_sample.len() < self.sample {
            out.unreadable_sample.push(Unreadable {
                file: file.display.clone(),
                line,
                reason,
            });
        }
    }
}

fn value_of<'r>(row: &'r Row<'_>, c: &'r Cell<'_>) -> Value<'r> {
    match c {
        Cell::Null => Value::Null,
        Cell::Str(_) | Cell::Made(_) => row.text(c).map_or(Value::Null, Value::Str),
        Cell::Int(v) => Value::Int(i64::from(*v)),
        Cell::Float(v) => Value::Float(*v),
        Cell::Ts(v) => Value::Ts(*v),
        Cell::Bool(v) => Value::Bool(*v),
    }
}

/// The hour and id of an event the contract refused, where they can still
/// be read: the refusal may be about any other field.
fn place(line: &[u8], contract: &Contract, key_field: usize) -> (Option<i64>, Option<String>) {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(line) else {
        return (None, None);
    };
    let time = &contract.fields[contract.time_field].name;
    let hour = m
        .get(time)
        .and_then(|v| v.as_str())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| hour_of(t.timestamp_millis()));
    let id = m
        .get(&contract.fields[key_field].name)
        .and_then(|v| v.as_str())
        .map(String::from);
    (hour, id)
}

/// Reads one lake file's events (they are all of one hour).
pub fn read_lake_file(file: &FileRef, contract: &Contract, key_field: usize) -> Result<Events> {
    let pq = |source| ReconcileError::Parquet {
        path: file.display.clone(),
        source,
    };
    let bytes = Location::read_all(file)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(pq)?;
    let names: Vec<&str> = contract.fields.iter().map(|f| f.name.as_str()).collect();
    let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
    let reader = builder.with_projection(mask).build().map_err(pq)?;
    let mut events = Events::new(names.len());
    for batch in reader {
        let batch = batch.map_err(|e| pq(e.into()))?;
        push_batch(&batch, &names, key_field, &mut events).map_err(|column| {
            ReconcileError::Column {
                path: file.display.clone(),
                column,
            }
        })?;
    }
    Ok(events)
}

/// One column, typed once per batch rather than once per value.
enum Col<'a> {
    Str(&'a arrow_array::StringArray),
    Int(&'a arrow_array::Int32Array),
    Float(&'a arrow_array::Float64Array),
    /// Timestamps of any unit, as their i64 values and unit.
    Ts(arrow_array::Int64Array, TimeUnit),
    Bool(&'a arrow_array::BooleanArray),
}

impl Col<'_> {
    fn value(&self, i: usize) -> Value<'_> {
        let null = match self {
            Col::Str(a) => a.is_null(i),
            Col::Int(a) => a.is_null(i),
            Col::Float(a) => a.is_null(i),
            Col::Ts(a, _) => a.is_null(i),
            Col::Bool(a) => a.is_null(i),
        };
        if null {
            return Value::Null;
        }
        match self {
            Col::Str(a) => Value::Str(a.value(i)),
            Col::Int(a) => Value::Int(i64::from(a.value(i))),
            Col::Float(a) => Value::Float(a.value(i)),
            Col::Ts(a, unit) => Value::Ts(to_ms(a.value(i), unit)),
            Col::Bool(a) => Value::Bool(a.value(i)),
        }
    }
}

fn timestamps(a: &dyn Array, unit: &TimeUnit) -> arrow_array::Int64Array {
    match unit {
        TimeUnit::Second => a
            .as_primitive::<TimestampSecondType>()
            .reinterpret_cast::<Int64Type>(),
        TimeUnit::Millisecond => a
            .as_primitive::<TimestampMillisecondType>()
            .reinterpret_cast::<Int64Type>(),
        TimeUnit::Microsecond => a
            .as_primitive::<TimestampMicrosecondType>()
            .reinterpret_cast::<Int64Type>(),
        TimeUnit::Nanosecond => a
            .as_primitive::<TimestampNanosecondType>()
            .reinterpret_cast::<Int64Type>(),
    }
}

fn to_ms(v: i64, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1000),
        TimeUnit::Millisecond => v,
        TimeUnit::Microsecond => v.div_euclid(1000),
        TimeUnit::Nanosecond => v.div_euclid(1_000_000),
    }
}

fn push_batch(
    batch: &RecordBatch,
    names: &[&str],
    key_field: usize,
    events: &mut Events,
) -> std::result::Result<(), String> {
    let cols = names
        .iter()
        .map(|&n| {
            let a = batch.column_by_name(n).ok_or_else(|| n.to_string())?;
            Ok(match a.data_type() {
                DataType::Utf8 => Col::Str(a.as_string::<i32>()),
                DataType::Int32 => Col::Int(a.as_primitive::<Int32Type>()),
                DataType::Float64 => Col::Float(a.as_primitive::<Float64Type>()),
                // Another writer (a DuckDB or Spark rewrite) may use another unit.
                DataType::Timestamp(unit, _) => Col::Ts(timestamps(a.as_ref(), unit), *unit),
                DataType::Boolean => Col::Bool(a.as_boolean()),
                _ => return Err(n.to_string()),
            })
        })
        .collect::<std::result::Result<Vec<Col<'_>>, String>>()?;
    let key = match &cols[key_field] {
        Col::Str(a) => *a,
        _ => return Err(names[key_field].to_string()),
    };
    for i in 0..batch.num_rows() {
        events.push(key.value(i), cols.iter().map(|c| c.value(i)));
    }
    Ok(())
}
