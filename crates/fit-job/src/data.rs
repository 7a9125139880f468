//! The fitting data: rental results (a score state's final results, or a
//! `rental_scores.parquet` of a full run) joined with claims, one row per
//! rental, split by end time into the training and the validation period.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
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
    /// Index into [`Results::members`].
    pub member: u32,
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

/// Rental results in rental id order, members interned.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Where they came from, for the provenance.
    pub source: String,
    pub rows: Vec<RentalRow>,
    pub members: Vec<String>,
}

/// Member ids to dense indices while rows are read.
#[derive(Default)]
struct Interner {
    index: HashMap<String, u32>,
    ids: Vec<String>,
}

impl Interner {
    fn get(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        self.index.insert(id.to_string(), i);
        self.ids.push(id.to_string());
        i
    }
}

impl Results {
    /// Results from rows in any order (checked for duplicate ids).
    pub fn new(source: &str, mut rows: Vec<RentalRow>, members: Vec<String>) -> Result<Results> {
        // Rental id order: every figure is independent of the input's order.
        if !rows.is_sorted_by(|a, b| a.rental_id <= b.rental_id) {
            rows.sort_by(|a, b| a.rental_id.cmp(&b.rental_id));
        }
        if let Some(w) = rows.windows(2).find(|w| w[0].rental_id == w[1].rental_id) {
            return Err(FitJobError::Refused(format!(
                "rental {} appears twice in the results at {source}: give one result per rental \
                 (a state's final results, or one run's rental_scores.parquet)",
                w[0].rental_id
            )));
        }
        Ok(Results {
            source: source.to_string(),
            rows,
            members,
        })
    }

    /// Results from the state's own row type (synthetic data, tests).
    pub fn from_result_rows(
        source: &str,
        rows: &[pitwall_score_state::ResultRow],
    ) -> Result<Results> {
        let mut members = Interner::default();
        let rows = rows
            .iter()
            .map(|r| RentalRow {
                rental_id: r.rental.rental_id.clone(),
                member: members.get(&r.rental.member_id),
                start_at: r.rental.start_at,
                end_at: r.rental.end_at,
                status: r.assessment.status,
                features: r.assessment.features,
                claims: 0,
            })
            .collect();
        Results::new(source, rows, members.ids)
    }

    fn index(&self, rental_id: &str) -> Option<usize> {
        self.rows
            .binary_search_by(|r| r.rental_id.as_str().cmp(rental_id))
            .ok()
    }

    /// The rental with this id.
    pub fn find(&self, rental_id: &str) -> Option<&RentalRow> {
        self.index(rental_id).map(|i| &self.rows[i])
    }

    pub fn span(&self, rental_id: &str) -> Option<Span> {
        self.find(rental_id).map(|r| Span {
            start_at: r.start_at,
            end_at: r.end_at,
        })
    }

    /// Sets each rental's at-fault claim count from the valid claims.
    pub fn attach(&mut self, claims: &[crate::claims::Claim]) {
        for r in &mut self.rows {
            r.claims = 0;
        }
        for c in claims.iter().filter(|c| c.at_fault) {
            if let Some(i) = self.index(&c.rental_id) {
                self.rows[i].claims += 1;
            }
        }
    }

    /// Reads the claims at `url` under the contract, against these
    /// rentals, and attaches the valid at-fault ones.
    pub fn read_claims(&mut self, url: &str) -> Result<crate::claims::ClaimInput> {
        let input = crate::claims::read_claims(&Location::parse(url)?, &|id| self.span(id))?;
        self.attach(&input.claims);
        Ok(input)
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
    let mut members = Interner::default();
    let rows = if url.ends_with(".parquet") {
        from_files(url, &mut members)?
    } else {
        let state = State::open(url)?;
        if state.head().is_some() {
            from_table(&state.load_final()?, &mut members)?
        } else {
            from_files(url, &mut members)?
        }
    };
    Results::new(url, rows, members.ids)
}

fn from_table(table: &FinalTable, members: &mut Interner) -> Result<Vec<RentalRow>> {
    let mut out = Vec::with_capacity(table.len());
    table.for_each(|c, i| {
        out.push(row_of(c, i, members)?);
        Ok(())
    })?;
    Ok(out)
}

/// What a fit reads of a results file besides the integer features
/// ([`results::INT_COLUMNS`]): the rest (car, reason, score, grade, model)
/// is left undecoded.
const IDS: [&str; 3] = ["rental_id", "member_id", "status"];
const TIMES: [&str; 2] = ["start_at", "end_at"];
const FLOATS: [&str; 2] = ["coverage", "distance_km"];

fn from_files(url: &str, members: &mut Interner) -> Result<Vec<RentalRow>> {
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
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(Location::open(file)?).map_err(|e| bad(&e))?;
        let needed = IDS
            .iter()
            .chain(&TIMES)
            .chain(&FLOATS)
            .chain(&results::INT_COLUMNS);
        let mask = ProjectionMask::columns(builder.parquet_schema(), needed.copied());
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| bad(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            Projected::of(&batch)
                .map_err(|e| bad(&e))?
                .rows(members, &mut out)
                .map_err(|e| bad(&e))?;
        }
    }
    Ok(out)
}

/// The needed columns of one batch, cast to the types the rows take.
struct Projected {
    ids: [ArrayRef; 3],
    times: [ArrayRef; 2],
    floats: [ArrayRef; 2],
    ints: [ArrayRef; 7],
}

impl Projected {
    fn of(b: &RecordBatch) -> std::result::Result<Projected, String> {
        fn cast<const N: usize>(
            b: &RecordBatch,
            names: [&str; N],
            t: &DataType,
        ) -> std::result::Result<[ArrayRef; N], String> {
            let cols = names
                .iter()
                .map(|n| {
                    let c = b
                        .column_by_name(n)
                        .ok_or_else(|| format!("no column {n:?}"))?;
                    arrow_cast::cast(c, t).map_err(|e| format!("column {n}: {e}"))
                })
                .collect::<std::result::Result<Vec<_>, String>>()?;
            cols.try_into().map_err(|_| "column count".to_string())
        }
        Ok(Projected {
            ids: cast(b, IDS, &DataType::Utf8)?,
            times: cast(b, TIMES, &results::ts_type())?,
            floats: cast(b, FLOATS, &DataType::Float64)?,
            ints: cast(b, results::INT_COLUMNS, &DataType::Int64)?,
        })
    }

    fn rows(
        &self,
        members: &mut Interner,
        out: &mut Vec<RentalRow>,
    ) -> std::result::Result<(), String> {
        let [rental, member, status] = self.ids.each_ref().map(|a| a.as_string::<i32>());
        let [start, end] = self
            .times
            .each_ref()
            .map(|a| a.as_primitive::<TimestampMillisecondType>());
        let [coverage, km] = self
            .floats
            .each_ref()
            .map(|a| a.as_primitive::<Float64Type>());
        let ints = self.ints.each_ref().map(|a| a.as_primitive::<Int64Type>());
        for i in 0..rental.len() {
            let null = [
                rental.is_null(i),
                member.is_null(i),
                status.is_null(i),
                start.is_null(i),
                end.is_null(i),
            ];
            if null.iter().any(|x| *x) {
                return Err(format!(
                    "row {i}: a rental_id, member_id, status, start_at or end_at is null"
                ));
            }
            out.push(RentalRow {
                rental_id: rental.value(i).to_string(),
                member: members.get(member.value(i)),
                start_at: start.value(i),
                end_at: end.value(i),
                status: results::parse_status(status.value(i)).map_err(|e| e.to_string())?,
                features: results::features_at(&ints, coverage, km, i),
                claims: 0,
            });
        }
        Ok(())
    }
}

fn row_of(
    c: &Columns<'_>,
    i: usize,
    members: &mut Interner,
) -> Result<RentalRow, pitwall_score_state::StateError> {
    Ok(RentalRow {
        rental_id: c.rental_id.value(i).to_string(),
        member: members.get(c.member_id.value(i)),
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
