//! `score state export | show | import`: the state for people and other engines.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::RecordBatch;
use pitwall_lake::ParquetOptions;
use serde::Serialize;

use crate::log::Entry;
use crate::results;
use crate::snapshot::{self, MemberRecord};
use crate::{State, StateError};

/// What `state export` wrote.
#[derive(Debug, Serialize)]
pub struct Exported {
    pub rental_results: String,
    pub member_scores: String,
    pub final_rentals: u64,
    pub open_rentals: u64,
    pub members: u64,
}

/// Writes `DIR/rental_results.parquet` (final and open, a `final` column
/// telling which: the final ones day by day of end_at, each day by
/// rental_id, then the open ones) and `DIR/member_scores.parquet` (the
/// snapshot, by member_id). Both are written as they are read, a day or a
/// chunk of members at a time, so an export of years holds one of those.
pub fn export(state: &State, dir: &Path) -> Result<Exported, StateError> {
    let results_path = dir.join("rental_results.parquet");
    let (mut final_rentals, mut open_rentals) = (0u64, 0u64);
    write_streamed(&results_path, results::schema(true), &mut |put| {
        state.for_each_final_day(&mut |batch| {
            final_rentals += batch.num_rows() as u64;
            put(batch)
        })?;
        let mut open = state.load_open()?;
        open_rentals = open.len() as u64;
        open.sort_by(|a, b| a.rental.rental_id.cmp(&b.rental.rental_id));
        put(results::to_batch(&open, true)?)
    })?;
    let (model, as_of) = state
        .head()
        .map_or((String::new(), 0), |h| (h.model.clone(), h.as_of_ms));
    let members_path = dir.join("member_scores.parquet");
    let mut members = 0u64;
    let schema = snapshot::to_batch(&[], &model, as_of)?.schema();
    write_streamed(&members_path, schema, &mut |put| {
        state.load_snapshot()?.for_each_chunk(EXPORT_CHUNK, |kept| {
            members += kept.len() as u64;
            let records: Vec<MemberRecord> = kept.into_iter().map(|k| k.record).collect();
            put(snapshot::to_batch(&records, &model, as_of)?)
        })
    })?;
    Ok(Exported {
        rental_results: results_path.display().to_string(),
        member_scores: members_path.display().to_string(),
        final_rentals,
        open_rentals,
        members,
    })
}

/// Members per batch of an export.
const EXPORT_CHUNK: usize = 64 * 1024;

type Put<'a> = dyn FnMut(RecordBatch) -> Result<(), StateError> + 'a;

/// Writes the batches `fill` puts as one Parquet file at `path`, whole or
/// not at all.
fn write_streamed(
    path: &Path,
    schema: arrow_schema::SchemaRef,
    fill: &mut dyn FnMut(&mut Put<'_>) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let mut failed = None;
    pitwall_lake::write_atomic(path, |file| {
        let io = |e: parquet::errors::ParquetError| pitwall_lake::LakeError::Parquet {
            path: path.display().to_string(),
            source: e,
        };
        let props = ParquetOptions::default().properties();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(io)?;
        let mut put = |b: RecordBatch| -> Result<(), StateError> {
            w.write(&b).map_err(|e| StateError::Lake(io(e)))
        };
        if let Err(e) = fill(&mut put) {
            failed = Some(e);
            return Err(pitwall_lake::LakeError::Io {
                path: path.display().to_string(),
                source: std::io::Error::other("the export stopped"),
            });
        }
        w.close().map_err(io)?;
        Ok(())
    })
    .map_err(|e| failed.take().unwrap_or(StateError::Lake(e)))
}

/// What `state show` prints.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub state: String,
    pub last_run: Option<Entry>,
    pub final_rentals: u64,
    pub final_by_status: BTreeMap<String, u64>,
    pub open_rentals: u64,
    pub members: u64,
    pub members_scored: u64,
}

pub fn summary(state: &State) -> Result<Summary, StateError> {
    // Day by day: a summary of years holds a day of results, not the years.
    let mut by_status = BTreeMap::new();
    let mut final_rentals = 0u64;
    state.for_each_final_day(&mut |day| {
        let c = results::Columns::of(&day)?;
        for i in 0..day.num_rows() {
            *by_status.entry(c.status.value(i).to_string()).or_default() += 1;
        }
        final_rentals += day.num_rows() as u64;
        Ok(())
    })?;
    let (mut members, mut members_scored) = (0, 0);
    state.load_snapshot()?.for_each(|m| {
        members += 1;
        members_scored += u64::from(m.score.is_some());
    })?;
    Ok(Summary {
        state: state.url().to_string(),
        last_run: state.head().cloned(),
        final_rentals,
        final_by_status: by_status,
        open_rentals: state.load_open()?.len() as u64,
        members,
        members_scored,
    })
}

pub use crate::import::{Imported, import};

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// Wall-clock ms, for the times people read in the log (never for decisions).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
