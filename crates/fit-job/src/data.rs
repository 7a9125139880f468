//! The fitting data: rental results (a score state's final results, or a
//! `rental_scores.parquet` of a full run) joined with claims, one row per
//! rental, split by end time into the training and the validation period.

use std::collections::HashMap;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_lake::Location;
use pitwall_score::{Features, Model, Status};
use pitwall_score_state::results::{self, Columns};
use pitwall_score_state::{FinalTable, State};

use crate::claims::Span;
use crate::{FitJobError, Result};

/// One rental result with what a fit and a member score need of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RentalRow {
    pub rental_id: String,
    pub member_id: String,
    pub start_at: i64,
    pub end_at: i64,
    pub status: Status,
    pub features: Features,
    /// At-fault claims of the rental (after the claims contract).
    pub claims: u32,
}

impl RentalRow {
    /// A row a fit or a lift uses: scored, with distance.
    pub fn fits(&self) -> bool {
        self.status == Status::Scored && self.features.distance_km > 0.0
    }
}

impl From<&pitwall_score_state::ResultRow> for RentalRow {
    fn from(r: &pitwall_score_state::ResultRow) -> RentalRow {
        RentalRow {
            rental_id: r.rental.rental_id.clone(),
            member_id: r.rental.member_id.clone(),
            start_at: r.rental.start_at,
            end_at: r.rental.end_at,
            status: r.assessment.status,
            features: r.assessment.features,
            claims: 0,
        }
    }
}

/// `[from, to)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    pub from: i64,
    pub to: i64,
}

impl Period {
    pub fn holds(&self, end_at: i64) -> bool {
        end_at >= self.from && end_at < self.to
    }
}

/// Where the results came from, for the provenance.
#[derive(Debug, Clone)]
pub struct Results {
    pub source: String,
    pub rows: Vec<RentalRow>,
}

impl Results {
    pub fn spans(&self) -> HashMap<String, Span> {
        self.rows
            .iter()
            .map(|r| {
                (
                    r.rental_id.clone(),
                    Span {
                        start_at: r.start_at,
                        end_at: r.end_at,
                    },
                )
            })
            .collect()
    }

    /// Sets each rental's at-fault claim count.
    pub fn attach(&mut self, at_fault: &HashMap<&str, u32>) {
        for r in &mut self.rows {
            r.claims = at_fault.get(r.rental_id.as_str()).copied().unwrap_or(0);
        }
    }

    pub fn min_end(&self) -> Option<i64> {
        self.rows.iter().map(|r| r.end_at).min()
    }

    pub fn max_end(&self) -> Option<i64> {
        self.rows.iter().map(|r| r.end_at).max()
    }
}

/// Reads rental results from a score state (its final results) or from
/// Parquet results files (a full run's `rental_scores.parquet`).
pub fn load_results(url: &str) -> Result<Results> {
    let rows = if url.ends_with(".parquet") {
        from_files(url)?
    } else {
        let state = State::open(url)?;
        if state.head().is_some() {
            let table = state.load_final()?;
            from_table(&table)?
        } else {
            from_files(url)?
        }
    };
    let mut rows = rows;
    // Rental id order: every figure below is independent of the input's order.
    rows.sort_by(|a, b| a.rental_id.cmp(&b.rental_id));
    if let Some(w) = rows.windows(2).find(|w| w[0].rental_id == w[1].rental_id) {
        return Err(FitJobError::Refused(format!(
            "rental {} appears twice in the results at {url}: give one result per rental \
             (a state's final results, or one run's rental_scores.parquet)",
            w[0].rental_id
        )));
    }
    Ok(Results {
        source: url.to_string(),
        rows,
    })
}

fn from_table(table: &FinalTable) -> Result<Vec<RentalRow>> {
    let mut out = Vec::with_capacity(table.len());
    table.for_each(|c, i| {
        out.push(row_of(c, i)?);
        Ok(())
    })?;
    Ok(out)
}

fn from_files(url: &str) -> Result<Vec<RentalRow>> {
    let loc = Location::parse(url)?;
    let files = loc.list(&[".parquet"])?;
    if files.is_empty() {
        return Err(FitJobError::NoInput {
            what: "rental results",
            location: url.to_string(),
            expected: "a score state, or rental_scores.parquet files",
        });
    }
    let mut out = Vec::new();
    for file in &files {
        let bad = |e: &dyn std::fmt::Display| {
            FitJobError::Lake(pitwall_lake::LakeError::BadTable {
                path: file.display.clone(),
                problem: format!("{e} (expected the columns of rental_scores.parquet)"),
            })
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(Location::open(file)?)
            .and_then(|b| b.with_batch_size(64 * 1024).build())
            .map_err(|e| bad(&e))?;
        for batch in reader {
            let batch =
                results::normalize(&batch.map_err(|e| bad(&e))?, false).map_err(|e| bad(&e))?;
            let cols = Columns::of(&batch).map_err(|e| bad(&e))?;
            for i in 0..batch.num_rows() {
                out.push(row_of(&cols, i).map_err(|e| bad(&e))?);
            }
        }
    }
    Ok(out)
}

fn row_of(c: &Columns<'_>, i: usize) -> Result<RentalRow, pitwall_score_state::StateError> {
    Ok(RentalRow {
        rental_id: c.rental_id.value(i).to_string(),
        member_id: c.member_id.value(i).to_string(),
        start_at: c.start_at.value(i),
        end_at: c.end_at.value(i),
        status: c.status(i)?,
        features: c.features(i),
        claims: 0,
    })
}

/// The capped factor values of a rental under `model`, in its factor order.
pub fn factors(model: &Model, f: &Features) -> [f64; 5] {
    model.factor_inputs(f).as_array()
}
