//! `score state export | show | import`: the state for people and other engines.

use std::collections::BTreeMap;
use std::path::Path;

use pitwall_lake::ParquetOptions;
use serde::Serialize;

use crate::log::Entry;
use crate::results::{self, ResultRow};
use crate::snapshot;
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
/// telling which) and `DIR/member_scores.parquet` (the snapshot).
pub fn export(state: &State, dir: &Path) -> Result<Exported, StateError> {
    let table = state.load_final()?;
    let mut rows: Vec<ResultRow> = Vec::with_capacity(table.len());
    table.for_each(|c, i| {
        rows.push(c.row(i)?);
        Ok(())
    })?;
    let final_rentals = rows.len() as u64;
    let open = state.load_open()?;
    let open_rentals = open.len() as u64;
    rows.extend(open);
    rows.sort_by(|a, b| a.rental.rental_id.cmp(&b.rental.rental_id));
    let results_path = dir.join("rental_results.parquet");
    let batch = results::to_batch(&rows, true)?;
    pitwall_lake::write_parquet(
        &results_path,
        batch.schema(),
        &[batch],
        &ParquetOptions::default(),
    )?;
    let members = state.load_members()?;
    let (model, as_of) = state
        .head()
        .map_or((String::new(), 0), |h| (h.model.clone(), h.as_of_ms));
    let members_path = dir.join("member_scores.parquet");
    let batch = snapshot::to_batch(&members, &model, as_of)?;
    pitwall_lake::write_parquet(
        &members_path,
        batch.schema(),
        &[batch],
        &ParquetOptions::default(),
    )?;
    Ok(Exported {
        rental_results: results_path.display().to_string(),
        member_scores: members_path.display().to_string(),
        final_rentals,
        open_rentals,
        members: members.len() as u64,
    })
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
    let table = state.load_final()?;
    let mut by_status = BTreeMap::new();
    table.for_each(|c, i| {
        *by_status.entry(c.status.value(i).to_string()).or_default() += 1;
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
        final_rentals: table.len() as u64,
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
