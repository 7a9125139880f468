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
    pub severity: String,
}

/// A rental as the claims rules need it.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start_at: i64,
    pub end_at: i64,
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

/// One row as read, every value as text (for rejects) plus the parsed ones.
struct Raw {
    file: String,
    row: u64,
    claim_id: Option<String>,
    rental_id: Option<String>,
    occurred_text: Option<String>,
    occurred_at: Result<Option<i64>, tabular::Unparseable>,
    at_fault_text: Option<String>,
    severity: Option<String>,
}

impl Raw {
    fn reject(&self, rule: &'static str) -> RejectedClaim {
        RejectedClaim {
            file: self.file.clone(),
            row: self.row,
            rule,
            claim_id: self.claim_id.clone(),
            rental_id: self.rental_id.clone(),
            occurred_at: self.occurred_text.clone(),
            at_fault: self.at_fault_text.clone(),
            severity: self.severity.clone(),
        }
    }

    fn at_fault(&self) -> Option<bool> {
        match self.at_fault_text.as_deref().map(str::trim) {
            Some("true" | "TRUE" | "True" | "1") => Some(true),
            Some("false" | "FALSE" | "False" | "0") => Some(false),
            _ => None,
        }
    }

    /// The claim, or the first rule it breaks.
    fn check(&self, rentals: &dyn Fn(&str) -> Option<Span>) -> Result<Claim, &'static str> {
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        if !present(&self.claim_id) {
            return Err("claim_id_missing");
        }
        if !present(&self.rental_id) {
            return Err("rental_id_missing");
        }
        let rental_id = self.rental_id.clone().unwrap_or_default();
        let Some(span) = rentals(&rental_id) else {
            return Err("rental_unknown");
        };
        let occurred_at = match self.occurred_at {
            Err(_) => return Err("occurred_at_unparseable"),
            Ok(None) => return Err("occurred_at_missing"),
            Ok(Some(t)) => t,
        };
        if occurred_at < span.start_at || occurred_at > span.end_at + HOUR_MS {
            return Err("occurred_outside_rental");
        }
        let Some(at_fault) = self.at_fault() else {
            return Err("at_fault_missing");
        };
        let severity = self.severity.clone().unwrap_or_default();
        if !SEVERITIES.contains(&severity.as_str()) {
            return Err("severity_invalid");
        }
        Ok(Claim {
            claim_id: self.claim_id.clone().unwrap_or_default(),
            rental_id,
            occurred_at,
            at_fault,
            severity,
        })
    }
}

/// Reads every claims file under `loc` and checks each row against the
/// contract and the rentals. Duplicate ids are resolved after all files are
/// read, so file order never matters.
pub fn read_claims(loc: &Location, rentals: &dyn Fn(&str) -> Option<Span>) -> Result<ClaimInput> {
    let files = loc.list(&[".parquet", ".csv"])?;
    if files.is_empty() {
        return Err(FitJobError::NoInput {
            what: "claims",
            location: loc.to_string(),
            expected: ".parquet or .csv files",
        });
    }
    let mut input = ClaimInput {
        files: files.len(),
        ..ClaimInput::default()
    };
    let mut valid: Vec<(Claim, RejectedClaim)> = Vec::new();
    for file in &files {
        let mut row = 0u64;
        for batch in tabular::read_table(file, &COLUMNS)? {
            for raw in raws(file, &batch, &mut row)? {
                input.rows += 1;
                match raw.check(rentals) {
                    Ok(c) => valid.push((c, raw.reject("claim_id_duplicate"))),
                    Err(rule) => input.rejected.push(raw.reject(rule)),
                }
            }
        }
    }
    resolve_duplicates(valid, &mut input);
    input
        .rejected
        .sort_by(|a, b| a.file.cmp(&b.file).then(a.row.cmp(&b.row)));
    Ok(input)
}

/// Identical copies of a claim are one claim (a redelivered extract); an id
/// on rows that differ cannot be trusted on any of them.
fn resolve_duplicates(mut valid: Vec<(Claim, RejectedClaim)>, input: &mut ClaimInput) {
    valid.sort_by(|a, b| a.0.claim_id.cmp(&b.0.claim_id));
    let mut rows = valid.into_iter().peekable();
    while let Some(first) = rows.next() {
        let mut same: Vec<(Claim, RejectedClaim)> = vec![first];
        while let Some(next) = rows.next_if(|n| n.0.claim_id == same[0].0.claim_id) {
            same.push(next);
        }
        if same.iter().all(|(c, _)| *c == same[0].0) {
            let (c, _) = same.swap_remove(0);
            input.claims.push(c);
        } else {
            input.rejected.extend(same.into_iter().map(|(_, r)| r));
        }
    }
}

fn raws(file: &FileRef, batch: &RecordBatch, row: &mut u64) -> Result<Vec<Raw>> {
    let col = |n: &str| tabular::column(file, batch, n, "claims", &COLUMNS);
    let as_text = |n: &str| -> Result<ArrayRef> { Ok(tabular::text(file, n, &col(n)?)?) };
    let (ids, rentals, fault, severity) = (
        as_text("claim_id")?,
        as_text("rental_id")?,
        as_text("at_fault")?,
        as_text("severity")?,
    );
    let occurred = col("occurred_at")?;
    let times = TimeColumn::new(file, "occurred_at", &occurred)?;
    // Text as given for text columns; a native timestamp shown in RFC 3339.
    let occurred_text: Option<ArrayRef> = match &times {
        TimeColumn::Text(a) => Some(a.clone()),
        TimeColumn::Native(_) => None,
    };
    let get = |a: &ArrayRef, i: usize| {
        let a = a.as_string::<i32>();
        a.is_valid(i).then(|| a.value(i).to_string())
    };
    Ok((0..batch.num_rows())
        .map(|i| {
            *row += 1;
            Raw {
                file: file.display.clone(),
                row: *row - 1,
                claim_id: get(&ids, i),
                rental_id: get(&rentals, i),
                occurred_text: match &occurred_text {
                    Some(a) => get(a, i),
                    None => times.get(i).ok().flatten().map(crate::rfc3339),
                },
                occurred_at: times.get(i),
                at_fault_text: get(&fault, i),
                severity: get(&severity, i),
            }
        })
        .collect())
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
                .map(|c| Some(c.severity.as_str()))
                .collect::<StringArray>(),
        ),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| FitJobError::Write {
        path: "claims batch".into(),
        problem: e.to_string(),
    })
}
