//! Writing what a fit or a validation leaves in `--out`, each file whole
//! or not at all.

use std::path::Path;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use serde::Serialize;

use crate::{FitJobError, Result};

fn write_err(path: &Path, e: impl ToString) -> FitJobError {
    FitJobError::Write {
        path: path.display().to_string(),
        problem: e.to_string(),
    }
}

pub fn parquet(path: &Path, schema: SchemaRef, cols: Vec<ArrayRef>) -> Result<()> {
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| write_err(path, e))?;
    batch_to(path, &batch)
}

pub fn batch_to(path: &Path, batch: &RecordBatch) -> Result<()> {
    Ok(pitwall_lake::write_parquet(
        path,
        batch.schema(),
        std::slice::from_ref(batch),
        &pitwall_lake::ParquetOptions::default(),
    )?)
}

/// Pretty JSON; serde_json writes a non-finite float as null, and every
/// figure that can be undefined is an Option, so no NaN reaches a reader.
pub fn json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| write_err(path, e))?;
    text.push(b'\n');
    text_to(path, &text)
}

pub fn text_to(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(pitwall_lake::write_bytes(path, bytes)?)
}
