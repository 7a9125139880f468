//! Telemetry files the committed runs have read, by name and size. A sample
//! for a rental that is already final counts as late only when its file is
//! new to the state: the count is exact and needs no clock. Files older than
//! the horizon are forgotten, since no later run reads their partitions.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::StateError;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeenFiles {
    /// File name → (size, the latest instant it can hold).
    files: HashMap<String, (u64, i64)>,
}

impl SeenFiles {
    pub fn contains(&self, file: &str, size: u64) -> bool {
        self.files.get(file).is_some_and(|&(s, _)| s == size)
    }

    pub fn insert(&mut self, file: String, size: u64, latest: i64) {
        self.files.insert(file, (size, latest));
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Forgets the files that hold nothing at or after `horizon`.
    pub fn forget_before(&mut self, horizon: i64) {
        self.files.retain(|_, &mut (_, latest)| latest >= horizon);
    }

    pub fn to_batch(&self) -> Result<RecordBatch, StateError> {
        let mut rows: Vec<(&String, &(u64, i64))> = self.files.iter().collect();
        rows.sort();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.0.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.1.0 as i64))
                    .collect::<Int64Array>(),
            ),
            Arc::new(rows.iter().map(|r| Some(r.1.1)).collect::<Int64Array>()),
        ];
        let schema = Schema::new(vec![
            Field::new("file", DataType::Utf8, false),
            Field::new("size", DataType::Int64, false),
            Field::new("latest_ms", DataType::Int64, false),
        ]);
        RecordBatch::try_new(Arc::new(schema), cols).map_err(|e| table(e.to_string()))
    }

    pub fn from_batches(batches: &[RecordBatch]) -> Result<SeenFiles, StateError> {
        let mut seen = SeenFiles::default();
        for b in batches {
            let col = |n: &str| {
                b.column_by_name(n)
                    .ok_or_else(|| table(format!("no column {n}")))
            };
            let names = col("file")?
                .as_string_opt::<i32>()
                .ok_or_else(|| table("file".into()))?;
            let size = col("size")?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| table("size".into()))?;
            let latest = col("latest_ms")?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| table("latest_ms".into()))?;
            for i in 0..b.num_rows() {
                if names.is_valid(i) {
                    let s = u64::try_from(size.value(i)).unwrap_or(0);
                    seen.insert(names.value(i).to_string(), s, latest.value(i));
                }
            }
        }
        Ok(seen)
    }
}

fn table(problem: String) -> StateError {
    StateError::Table {
        what: "seen telemetry files".into(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_known_by_name_and_size_until_the_horizon_passes_it() -> Result<(), StateError> {
        let mut s = SeenFiles::default();
        s.insert("a.parquet".into(), 10, 100);
        s.insert("b.parquet".into(), 20, 300);
        assert!(s.contains("a.parquet", 10));
        // A file rewritten with other content is new again.
        assert!(!s.contains("a.parquet", 11));
        let back = SeenFiles::from_batches(&[s.to_batch()?])?;
        assert_eq!(back, s);
        s.forget_before(200);
        assert!(!s.contains("a.parquet", 10) && s.contains("b.parquet", 20));
        Ok(())
    }
}
