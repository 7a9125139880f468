//! The claims input (`score-model-fitting.md`, "Claims input"): one row per
//! accident, checked row by row. Rows that break a rule, or name an unknown
//! rental, are counted per rule, kept in `rejected_claims.parquet`, and left
//! out.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use pitwall_lake::tabular::{self, TimeColumn};
use pitwall_lake::{FileRef, Location};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::{FitJobError, HOUR_MS, Result};

pub const COLUMNS: [&str; 5] = [
    "claim_id",
    "rental_id",
    "occurred_at",
    "at_fault",
    "severity",
];
pub const SEVERITIES: [&str; 3] = ["minor", "major", "total_loss"];

/// A claim that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub claim_id: String,
    pub rental_id: String,
    pub occurred_at: i64,
    pub at_fault: bool,
    pub severity: &'static str,
}

/// A rental as the claims rules need it.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start_at: i64,
    pub end_at: i64,
    /// Where the caller keeps the rental, handed back with its claims.
    pub row: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedClaim {
    pub file: String,
    pub row: u64,
    pub rule: &'static str,
    pub claim_id: Option<String>,
    pub rental_id: Option<String>,
    pub occurred_at: Option<String>,
    pub at_fault: Option<String>,
    pub severity: Option<String>,
}

#[derive(Debug, Default)]
pub struct ClaimInput {
    pub files: usize,
    pub rows: u64,
    pub claims: Vec<Claim>,
    /// The [`Span::row`] of each claim's rental, beside `claims`.
    pub rental_rows: Vec<usize>,
    pub rejected: Vec<RejectedClaim>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimsReport {
    pub files: usize,
    pub rows: u64,
    pub valid: usize,
    pub at_fault: usize,
    pub rejected: BTreeMap<&'static str, RuleCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleCount {
    pub count: u64,
    pub description: &'static str,
}

pub fn describe(rule: &str) -> &'static str {
    match rule {
        "claim_id_missing" => "claim_id is null or empty",
        "claim_id_duplicate" => {
            "the claim_id appears on rows that differ: none of them is trusted (identical copies count once)"
        }
        "rental_id_missing" => "rental_id is null or empty",
        "rental_unknown" => "rental_id names no rental of the rental results",
        "occurred_at_missing" => "occurred_at is null",
        "occurred_at_unparseable" => "occurred_at is not a timestamp or RFC 3339 text",
        "occurred_outside_rental" => "occurred_at is outside the rental's [start_at, end_at + 1 h]",
        "at_fault_missing" => "at_fault is null or not true/false",
        "severity_invalid" => "severity is not one of minor, major, total_loss",
        _ => "unknown rule",
    }
}

impl ClaimInput {
    pub fn report(&self) -> ClaimsReport {
        let mut rejected: BTreeMap<&'static str, RuleCount> = BTreeMap::new();
        for r in &self.rejected {
            rejected
                .entry(r.rule)
                .or_insert(RuleCount {
                    count: 0,
                    description: describe(r.rule),
                })
                .count += 1;
        }
        ClaimsReport {
            files: self.files,
            rows: self.rows,
            valid: self.claims.len(),
            at_fault: self.claims.iter().filter(|c| c.at_fault).count(),
            rejected,
        }
    }
}

/// at_fault as the file holds it: a boolean column, or text.
enum Fault<'a> {
    Native(&'a BooleanArray),
    Text(&'a StringArray),
}

/// One batch's columns, borrowed: a row is checked without copying a value,
/// and only what a claim or a rejection keeps is copied out.
struct Batch<'a> {
    file: &'a str,
    first_row: u64,
    claim_id: &'a StringArray,
    rental_id: &'a StringArray,
    occurred: &'a TimeColumn,
    fault: Fault<'a>,
    severity: &'a StringArray,
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

impl Batch<'_> {
    fn at_fault(&self, i: usize) -> Option<bool> {
        match &self.fault {
            Fault::Native(a) => a.is_valid(i).then(|| a.value(i)),
            Fault::Text(a) => match opt(a, i).map(str::trim) {
                Some("true" | "TRUE" | "True" | "1") => Some(true),
                Some("false" | "FALSE" | "False" | "0") => Some(false),
                _ => None,
            },
        }
    }

    /// Row i as text, for `rejected_claims.parquet`.
    fn reject(&self, i: usize, rule: &'static str) -> RejectedClaim {
        let owned = |a: &StringArray| opt(a, i).map(str::to_string);
        RejectedClaim {
            file: self.file.to_string(),
            row: self.first_row + i as u64,
            rule,
            claim_id: owned(self.claim_id),
            rental_id: owned(self.rental_id),
            occurred_at: match self.occurred {
                TimeColumn::Text(a) => owned(a.as_string::<i32>()),
                TimeColumn::Native(_) => self.occurred.get(i).ok().flatten().map(crate::rfc3339),
            },
            at_fault: match &self.fault {
                Fault::Native(a) => a.is_valid(i).then(|| a.value(i).to_string()),
                Fault::Text(a) => owned(a),
            },
            severity: owned(self.severity),
        }
    }

    /// Row i's claim, or the first rule it breaks.
    fn check(
        &self,
        i: usize,
        rentals: &(dyn Fn(&str) -> Option<Span> + Sync),
    ) -> Result<(Claim, usize), &'static str> {
        let present = |v: Option<&str>| v.is_some_and(|s| !s.trim().is_empty());
        let (claim_id, rental_id) = (opt(self.claim_id, i), opt(self.rental_id, i));
        if !present(claim_id) {
            return Err("claim_id_missing");
        }
        let rental_id = rental_id
            .filter(|r| present(Some(r)))
            .ok_or("rental_id_missing")?;
        let span = rentals(rental_id).ok_or("rental_unknown")?;
        let occurred_at = match self.occurred.get(i) {
            Err(_) => return Err("occurred_at_unparseable"),
            Ok(None) => return Err("occurred_at_missing"),
            Ok(Some(t)) => t,
        };
        if occurred_at < span.start_at || occurred_at > span.end_at + HOUR_MS {
            return Err("occurred_outside_rental");
        }
        let at_fault = self.at_fault(i).ok_or("at_fault_missing")?;
        let severity = opt(self.severity, i)
            .and_then(|s| SEVERITIES.iter().find(|k| **k == s))
            .ok_or("severity_invalid")?;
        let claim = Claim {
            claim_id: claim_id.unwrap_or_default().to_string(),
            rental_id: rental_id.to_string(),
            occurred_at,
            at_fault,
            severity,
        };
        Ok((claim, span.row))
    }
}

/// A valid claim and where it was read, should its id turn out duplicated.
struct Found {
    claim: Claim,
    rental_row: usize,
    file: usize,
    row: u64,
}

/// The claims files under a location, decoded: they need nothing of the
/// rentals, so they can be read while the rental results are.
pub struct ClaimFiles {
    files: Vec<FileRef>,
    tables: Vec<Vec<RecordBatch>>,
}

impl ClaimFiles {
    pub fn read(loc: &Location) -> Result<ClaimFiles> {
        let files = loc.list(&[".parquet", ".csv"])?;
        if files.is_empty() {
            return Err(FitJobError::NoInput {
                what: "claims",
                location: loc.to_string(),
                expected: ".parquet or .csv files",
            });
        }
        let tables = files
            .iter()
            .map(|f| tabular::read_table(f, &COLUMNS))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClaimFiles { files, tables })
    }

    /// Checks each row against the contract and the rentals, on `threads`
    /// runs of batches joined in file and row order. Duplicate ids are
    /// resolved after every file is checked, so file order never matters.
    pub fn check(
        &self,
        rentals: &(dyn Fn(&str) -> Option<Span> + Sync),
        threads: usize,
    ) -> Result<ClaimInput> {
        // (file, its first row, batch), in file and row order.
        let mut units: Vec<(usize, u64, &RecordBatch)> = Vec::new();
        for (f, batches) in self.tables.iter().enumerate() {
            let mut row = 0u64;
            for b in batches {
                units.push((f, row, b));
                row += b.num_rows() as u64;
            }
        }
        let per = units.len().div_ceil(threads.max(1)).max(1);
        let runs: Vec<&[(usize, u64, &RecordBatch)]> = units.chunks(per).collect();
        let checked = crate::par::each(&runs, |run| self.check_run(run, rentals));
        let mut input = ClaimInput {
            files: self.files.len(),
            rows: units.iter().map(|u| u.2.num_rows() as u64).sum(),
            ..ClaimInput::default()
        };
        let mut valid: Vec<Found> = Vec::new();
        for part in checked {
            let (found, rejected) = part?;
            valid.extend(found);
            input.rejected.extend(rejected);
        }
        resolve_duplicates(valid, &self.files, &mut input);
        input
            .rejected
            .sort_by(|a, b| a.file.cmp(&b.file).then(a.row.cmp(&b.row)));
        Ok(input)
    }

    fn check_run(
        &self,
        run: &[(usize, u64, &RecordBatch)],
        rentals: &(dyn Fn(&str) -> Option<Span> + Sync),
    ) -> Result<(Vec<Found>, Vec<RejectedClaim>)> {
        let (mut valid, mut rejected) = (Vec::new(), Vec::new());
        for &(f, first_row, batch) in run {
            let file = &self.files[f];
            let cols = Columns::of(file, batch)?;
            let b = cols.batch(file, first_row);
            for i in 0..batch.num_rows() {
                match b.check(i, rentals) {
                    Ok((claim, rental_row)) => valid.push(Found {
                        claim,
                        rental_row,
                        file: f,
                        row: first_row + i as u64,
                    }),
                    Err(rule) => rejected.push(b.reject(i, rule)),
                }
            }
        }
        Ok((valid, rejected))
    }
}

/// A batch's columns in the types the checks read.
struct Columns {
    claim_id: ArrayRef,
    rental_id: ArrayRef,
    occurred: TimeColumn,
    fault: ArrayRef,
    severity: ArrayRef,
}

impl Columns {
    fn of(file: &FileRef, batch: &RecordBatch) -> Result<Columns> {
        let col = |n: &str| tabular::column(&file.display, batch, n, "claims", &COLUMNS);
        let text = |n: &str| -> Result<ArrayRef> { Ok(tabular::text(&file.display, n, &col(n)?)?) };
        let fault = col("at_fault")?;
        Ok(Columns {
            claim_id: text("claim_id")?,
            rental_id: text("rental_id")?,
            occurred: TimeColumn::new(&file.display, "occurred_at", &col("occurred_at")?)?,
            fault: if fault.data_type() == &DataType::Boolean {
                fault
            } else {
                text("at_fault")?
            },
            severity: text("severity")?,
        })
    }

    fn batch<'a>(&'a self, file: &'a FileRef, first_row: u64) -> Batch<'a> {
        Batch {
            file: &file.display,
            first_row,
            claim_id: self.claim_id.as_string::<i32>(),
            rental_id: self.rental_id.as_string::<i32>(),
            occurred: &self.occurred,
            fault: match self.fault.as_boolean_opt() {
                Some(b) => Fault::Native(b),
                None => Fault::Text(self.fault.as_string::<i32>()),
            },
            severity: self.severity.as_string::<i32>(),
        }
    }
}

/// Identical copies of a claim are one claim (a redelivered extract); an id
/// on rows that differ cannot be trusted on any of them. Ids are grouped
/// by hashing: only the few that repeat are sorted and compared.
fn resolve_duplicates(valid: Vec<Found>, files: &[FileRef], input: &mut ClaimInput) {
    let mut first: FxHashMap<&str, usize> = FxHashMap::default();
    first.reserve(valid.len());
    let mut repeated = vec![false; valid.len()];
    for (i, f) in valid.iter().enumerate() {
        if let Some(&j) = first.get(f.claim.claim_id.as_str()) {
            repeated[i] = true;
            repeated[j] = true;
        } else {
            first.insert(&f.claim.claim_id, i);
        }
    }
    drop(first);
    let mut again = Vec::new();
    for (f, repeated) in valid.into_iter().zip(repeated) {
        if repeated {
            again.push(f);
        } else {
            input.claims.push(f.claim);
            input.rental_rows.push(f.rental_row);
        }
    }
    again.sort_by(|a, b| a.claim.claim_id.cmp(&b.claim.claim_id));
    let mut rows = again.into_iter().peekable();
    while let Some(first) = rows.next() {
        let mut same = vec![first];
        while let Some(next) = rows.next_if(|n| n.claim.claim_id == same[0].claim.claim_id) {
            same.push(next);
        }
        if same.iter().all(|f| f.claim == same[0].claim) {
            let kept = same.swap_remove(0);
            input.claims.push(kept.claim);
            input.rental_rows.push(kept.rental_row);
        } else {
            input
                .rejected
                .extend(same.into_iter().map(|f| RejectedClaim {
                    file: files[f.file].display.clone(),
                    row: f.row,
                    rule: "claim_id_duplicate",
                    claim_id: Some(f.claim.claim_id),
                    rental_id: Some(f.claim.rental_id),
                    occurred_at: Some(crate::rfc3339(f.claim.occurred_at)),
                    at_fault: Some(f.claim.at_fault.to_string()),
                    severity: Some(f.claim.severity.to_string()),
                }));
        }
    }
}

/// `rejected_claims.parquet`: file, row and rule, then the row's values as text.
pub fn write_rejected(path: &Path, rejected: &[RejectedClaim]) -> Result<()> {
    let text = |f: &dyn Fn(&RejectedClaim) -> Option<&str>| -> ArrayRef {
        Arc::new(rejected.iter().map(f).collect::<StringArray>())
    };
    let mut fields = vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("rule", DataType::Utf8, false),
    ];
    fields.extend(COLUMNS.map(|c| Field::new(c, DataType::Utf8, true)));
    let cols: Vec<ArrayRef> = vec![
        text(&|r| Some(&r.file)),
        Arc::new(rejected.iter().map(|r| r.row).collect::<UInt64Array>()),
        text(&|r| Some(r.rule)),
        text(&|r| r.claim_id.as_deref()),
        text(&|r| r.rental_id.as_deref()),
        text(&|r| r.occurred_at.as_deref()),
        text(&|r| r.at_fault.as_deref()),
        text(&|r| r.severity.as_deref()),
    ];
    crate::outputs::parquet(path, Arc::new(Schema::new(fields)), cols)
}

/// A claims batch in the contract's types (what `gen` writes).
pub fn to_batch(claims: &[Claim]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("claim_id", DataType::Utf8, false),
        Field::new("rental_id", DataType::Utf8, false),
        Field::new(
            "occurred_at",
            pitwall_score_state::results::ts_type(),
            false,
        ),
        Field::new("at_fault", DataType::Boolean, false),
        Field::new("severity", DataType::Utf8, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            claims
                .iter()
                .map(|c| Some(c.claim_id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            claims
                .iter()
                .map(|c| Some(c.rental_id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            arrow_array::TimestampMillisecondArray::from(
                claims.iter().map(|c| c.occurred_at).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(
            claims
                .iter()
                .map(|c| Some(c.at_fault))
                .collect::<BooleanArray>(),
        ),
        Arc::new(
            claims
                .iter()
                .map(|c| Some(c.severity))
                .collect::<StringArray>(),
        ),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| FitJobError::Write {
        path: "claims batch".into(),
        problem: e.to_string(),
    })
}
