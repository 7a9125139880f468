//! `score state export | show | import`: the state for people and other engines.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_lake::{Location, ParquetOptions};
use pitwall_score::{Model, Status};
use serde::Serialize;

use crate::days::FinalDays;
use crate::log::{Counts, Entry, EntryKind, FORMAT, Files};
use crate::results::{self, Columns, ResultRow};
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

/// What `state import` did.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub seq: u64,
    pub final_rentals: u64,
    /// Pending rows are not final: the next run evaluates them from the rentals input.
    pub left_open: u64,
    pub members: u64,
    pub model: String,
    pub as_of: String,
}

/// Seeds an empty state from rental results computed elsewhere (an earlier
/// full run's `rental_scores.parquet`, or another pipeline's output in the
/// same columns). Scored and unscorable rows become final; pending ones are
/// left for the next run. The members are computed at `as_of` (default: the
/// latest end_at), with `model` (which must be the rows' model).
pub fn import(
    url: &str,
    file: &Path,
    as_of: Option<i64>,
    model: &Model,
) -> Result<Imported, StateError> {
    let state = State::open(url)?;
    if let Some(h) = state.head() {
        return Err(StateError::Table {
            what: format!("state {url}"),
            problem: format!(
                "it already holds runs (the last is {}, seq {}): import seeds an empty state only; \
                 choose a new --state location",
                h.run_id, h.seq
            ),
        });
    }
    let batches = read_results(file)?;
    let model_id = model.id();
    // Checked and filtered as columns: five million rows as structs would
    // take gigabytes.
    let mut kept = Vec::with_capacity(batches.len());
    let mut left_open = 0u64;
    for b in &batches {
        let c = Columns::of(b)?;
        let mut keep = Vec::with_capacity(b.num_rows());
        for i in 0..b.num_rows() {
            if c.model.value(i) != model_id {
                return Err(StateError::Table {
                    what: file.display().to_string(),
                    problem: format!(
                        "row {i} was scored with model {}, but the state is seeded for {model_id}: \
                         pass the file's model with --model",
                        c.model.value(i)
                    ),
                });
            }
            // Refused here, with its row, rather than by the next run.
            c.features(i)?;
            let pending = c.status(i)? == Status::Pending;
            left_open += u64::from(pending);
            keep.push(Some(!pending));
        }
        let mask = arrow_array::BooleanArray::from(keep);
        kept.push(arrow_select::filter::filter_record_batch(b, &mask).map_err(table_err)?);
    }
    drop(batches);
    let draft = state.begin();
    let run_id = format!("import-{}", draft.seq());
    let (days, as_of, final_rentals) = by_day(kept, as_of, draft.seq(), &run_id)?;
    let table = days.table()?;
    // Each member with its final part, so the next run extends the parts
    // instead of reading every final rental again.
    let parts = crate::recompute::parts_of_all(&table, as_of, model)?;
    drop(table);
    let mut members: Vec<crate::Kept> = parts
        .into_iter()
        .filter_map(|(id, part)| {
            crate::recompute::record_of(&id, &part, &[], as_of, model).map(|record| crate::Kept {
                record,
                part: Some(part),
            })
        })
        .collect();
    members.sort_by(|a, b| a.record.member_id.cmp(&b.record.member_id));
    let files = Files {
        final_results: Vec::new(),
        // Every day is new to an empty state.
        final_days: draft.write_final_days(&days, &days.days.keys().copied().collect(), &[])?,
        open: Some(draft.write_results("open.parquet", &mut [])?),
        members: Some(
            draft
                .write_members(
                    crate::member_file::encode(&members, &model_id, as_of)?,
                    true,
                )?
                .0,
        ),
        member_deltas: Vec::new(),
        // Which telemetry files exist is unknown here: the next run records them.
        seen: None,
    };
    let counts = Counts {
        made_final: final_rentals,
        final_total: final_rentals,
        members: members.len() as u64,
        member_changes: members.len() as u64,
        ..Counts::default()
    };
    let entry = Entry {
        format: FORMAT,
        seq: draft.seq(),
        kind: EntryKind::Import,
        run_id,
        as_of_ms: as_of,
        as_of: rfc3339(as_of),
        model: model_id.clone(),
        grace_ms: model.completeness.grace.as_millis() as i64,
        pitwall_version: env!("CARGO_PKG_VERSION").to_string(),
        committed_at: rfc3339(now_ms()),
        forced: false,
        held_because: Vec::new(),
        rescore: None,
        model_change: None,
        files,
        counts,
        upgraded_from: None,
        inputs: serde_json::json!({ "rental_results": file.display().to_string() }),
    };
    let entry = draft.commit(entry)?;
    Ok(Imported {
        seq: entry.seq,
        final_rentals,
        left_open,
        members: members.len() as u64,
        model: model_id,
        as_of: entry.as_of,
    })
}

fn table_err(e: impl std::fmt::Display) -> StateError {
    StateError::Table {
        what: "imported rental results".into(),
        problem: e.to_string(),
    }
}

/// The final rows (without the state's columns) as days of final results:
/// one row per rental_id (the first in the input), each day sorted by
/// rental_id, made final by import run `seq` at `as_of` (default: the
/// latest end_at). Returns the days, the as_of and the rentals.
fn by_day(
    batches: Vec<RecordBatch>,
    as_of: Option<i64>,
    seq: u64,
    run_id: &str,
) -> Result<(FinalDays, i64, u64), StateError> {
    let schema = results::schema(false);
    let all = arrow_select::concat::concat_batches(&schema, &batches).map_err(table_err)?;
    drop(batches);
    let c = Columns::of(&all)?;
    let n = all.num_rows();
    // Stable: the first of a rental's rows in the input order wins.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by(|&a, &b| {
        c.rental_id
            .value(a as usize)
            .cmp(c.rental_id.value(b as usize))
    });
    order.dedup_by(|later, earlier| {
        c.rental_id.value(*later as usize) == c.rental_id.value(*earlier as usize)
    });
    let day = |i: u32| crate::days::day_of(c.end_at.value(i as usize));
    order.sort_by_key(|&i| day(i));
    let as_of = as_of.unwrap_or_else(|| {
        order
            .iter()
            .map(|&i| c.end_at.value(i as usize))
            .max()
            .unwrap_or(0)
    });
    let rows = order.len();
    let days_of: Vec<i64> = order.iter().map(|&i| day(i)).collect();
    let taken = arrow_select::take::take_record_batch(&all, &arrow_array::UInt32Array::from(order))
        .map_err(table_err)?;
    drop(all);
    let mut cols = taken.columns().to_vec();
    cols.push(std::sync::Arc::new(arrow_array::BooleanArray::from(
        vec![true; rows],
    )));
    cols.push(std::sync::Arc::new(arrow_array::Int64Array::from(
        vec![seq as i64; rows],
    )));
    cols.push(std::sync::Arc::new(arrow_array::StringArray::from(
        vec![run_id; rows],
    )));
    cols.push(std::sync::Arc::new(
        arrow_array::TimestampMillisecondArray::from(vec![as_of; rows]).with_timezone("UTC"),
    ));
    let with_final = RecordBatch::try_new(results::schema(true), cols).map_err(table_err)?;
    let mut days = std::collections::BTreeMap::new();
    let mut start = 0;
    while start < rows {
        let d = days_of[start];
        let len = days_of[start..].iter().take_while(|&&x| x == d).count();
        days.insert(d, with_final.slice(start, len));
        start += len;
    }
    Ok((
        FinalDays {
            known: days.keys().copied().collect(),
            days,
            from_legacy: false,
        },
        as_of,
        rows as u64,
    ))
}

fn read_results(file: &Path) -> Result<Vec<RecordBatch>, StateError> {
    let bad = |e: &dyn std::fmt::Display| StateError::Table {
        what: format!("the rental results {}", file.display()),
        problem: format!("not readable as Parquet ({e})"),
    };
    let loc = Location::parse(&file.display().to_string())?;
    let mut out = Vec::new();
    for f in loc.list(&[".parquet"])? {
        let bytes = Location::read_all(&f)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| bad(&e))?;
        for b in reader {
            out.push(results::normalize(&b.map_err(|e| bad(&e))?, false)?);
        }
    }
    Ok(out)
}

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
