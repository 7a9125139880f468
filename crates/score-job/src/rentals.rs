//! Reading rentals (Parquet or CSV) under their contract.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use pitwall_lake::tabular::{self, TimeColumn};
use pitwall_lake::{FileRef, Location};
use pitwall_score::Rental;
use pitwall_score::contract::{RawRental, RentalRule, check_rental};

use crate::JobError;
use crate::rejects::{RejectLog, Rejected};

pub const COLUMNS: [&str; 5] = ["rental_id", "member_id", "car_id", "start_at", "end_at"];
/// The columns of `rejected_rentals.parquet` after file, row and rule.
pub const COLUMNS_REJECTED: [&str; 5] = [
    "rental_id",
    "member_id",
    "car_id",
    "start_at_ms",
    "end_at_ms",
];

#[derive(Debug, Default)]
pub struct RentalInput {
    pub files: usize,
    pub rows: u64,
    pub rentals: Vec<Rental>,
    pub rejects: RejectLog,
}

/// Reads every rentals file under `loc` (a file, or a directory of `.parquet`
/// / `.csv` files). Rows are validated one by one; ids seen on several rows
/// are resolved after all files are read, so file order never matters.
pub fn read(loc: &Location) -> Result<RentalInput, JobError> {
    let files = loc.list(&[".parquet", ".csv"])?;
    if files.is_empty() {
        return Err(JobError::NoInput {
            what: "rentals",
            location: loc.to_string(),
            expected: ".parquet or .csv files",
        });
    }
    let mut input = RentalInput {
        files: files.len(),
        ..Default::default()
    };
    let mut rows = Vec::new();
    for file in &files {
        let mut row_in_file = 0;
        for batch in batches(file)? {
            read_batch(
                &file.display,
                &batch,
                &mut row_in_file,
                &mut input,
                &mut rows,
            )?;
        }
    }
    finish(rows, &mut input);
    Ok(input)
}

/// Rentals held in memory (a DataFrame's batches, in order), checked as
/// [`read`] checks files; rejected rows are named `source` and numbered
/// from 0 across the batches, and every one is kept.
pub fn check(source: &str, batches: &[RecordBatch]) -> Result<RentalInput, JobError> {
    let mut input = RentalInput {
        files: 1,
        ..Default::default()
    };
    input.rejects.unbounded = true;
    let mut rows = Vec::new();
    let mut row = 0;
    for batch in batches {
        read_batch(source, batch, &mut row, &mut input, &mut rows)?;
    }
    finish(rows, &mut input);
    Ok(input)
}

/// A candidate rental: the rental, where it came from, and its row there.
type Row = (Rental, String, u64);

fn finish(rows: Vec<Row>, input: &mut RentalInput) {
    resolve_duplicates(rows, input);
    input.rejects.sort();
    input.rentals.sort_by(|a, b| a.rental_id.cmp(&b.rental_id));
}

fn batches(file: &FileRef) -> Result<Vec<RecordBatch>, JobError> {
    Ok(tabular::read_table(file, &COLUMNS)?)
}

fn text(source: &str, name: &str, col: &ArrayRef) -> Result<ArrayRef, JobError> {
    Ok(tabular::text(source, name, col)?)
}

fn column(source: &str, batch: &RecordBatch, name: &str) -> Result<ArrayRef, JobError> {
    Ok(tabular::column(source, batch, name, "rentals", &COLUMNS)?)
}

fn read_batch(
    file: &str,
    batch: &RecordBatch,
    row_in_file: &mut u64,
    input: &mut RentalInput,
    rows: &mut Vec<Row>,
) -> Result<(), JobError> {
    let ids: Vec<ArrayRef> = COLUMNS[..3]
        .iter()
        .map(|c| column(file, batch, c).and_then(|a| text(file, c, &a)))
        .collect::<Result<_, _>>()?;
    let start = TimeColumn::new(file, "start_at", &column(file, batch, "start_at")?)?;
    let end = TimeColumn::new(file, "end_at", &column(file, batch, "end_at")?)?;
    let s = |k: usize, i: usize| {
        let a = ids[k].as_string::<i32>();
        a.is_valid(i).then(|| a.value(i))
    };
    let mut kept_in_file = input.rejects.kept.iter().filter(|r| r.file == file).count();
    for i in 0..batch.num_rows() {
        let row_no = *row_in_file;
        *row_in_file += 1;
        input.rows += 1;
        let (start_at, end_at) = (start.get(i), end.get(i));
        let raw = RawRental {
            rental_id: s(0, i),
            member_id: s(1, i),
            car_id: s(2, i),
            start_at: start_at.unwrap_or(None),
            end_at: end_at.unwrap_or(None),
        };
        let verdict = if start_at.is_err() || end_at.is_err() {
            Err(RentalRule::TimestampUnparseable)
        } else {
            check_rental(&raw)
        };
        match verdict {
            Err(rule) => {
                let r = rejected(file, row_no, rule, &raw);
                input.rejects.push(r, &mut kept_in_file);
            }
            Ok(()) => rows.push((
                Rental {
                    rental_id: raw.rental_id.unwrap_or_default().to_string(),
                    member_id: raw.member_id.unwrap_or_default().to_string(),
                    car_id: raw.car_id.unwrap_or_default().to_string(),
                    start_at: raw.start_at.unwrap_or_default(),
                    end_at: raw.end_at.unwrap_or_default(),
                },
                file.to_string(),
                row_no,
            )),
        }
    }
    Ok(())
}

fn rejected(file: &str, row: u64, rule: RentalRule, r: &RawRental<'_>) -> Rejected {
    let ts = |t: Option<i64>| t.map(|t| t.to_string());
    Rejected {
        file: file.to_string(),
        row,
        rule: rule.as_str(),
        values: [
            ("rental_id", r.rental_id.map(str::to_string)),
            ("member_id", r.member_id.map(str::to_string)),
            ("car_id", r.car_id.map(str::to_string)),
            ("start_at_ms", ts(r.start_at)),
            ("end_at_ms", ts(r.end_at)),
        ]
        .into_iter()
        .collect(),
    }
}

/// A rental_id on several rows: identical copies are one rental (a
/// redelivery); differing copies cannot be told apart, so all are rejected.
fn resolve_duplicates(rows: Vec<Row>, input: &mut RentalInput) {
    let mut by_id: HashMap<String, Vec<Row>> = HashMap::new();
    for row in rows {
        by_id.entry(row.0.rental_id.clone()).or_default().push(row);
    }
    for (_, mut copies) in by_id {
        copies.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)));
        let identical = copies.windows(2).all(|w| w[0].0 == w[1].0);
        let mut kept_in_file = 0;
        if identical {
            let mut it = copies.into_iter();
            if let Some((rental, ..)) = it.next() {
                input.rentals.push(rental);
            }
            for (r, file, row) in it {
                let raw = raw_of(&r);
                input.rejects.push(
                    rejected(&file, row, RentalRule::DuplicateRow, &raw),
                    &mut kept_in_file,
                );
            }
        } else {
            for (r, file, row) in copies {
                let raw = raw_of(&r);
                input.rejects.push(
                    rejected(&file, row, RentalRule::RentalIdDuplicate, &raw),
                    &mut kept_in_file,
                );
            }
        }
    }
}

fn raw_of(r: &Rental) -> RawRental<'_> {
    RawRental {
        rental_id: Some(&r.rental_id),
        member_id: Some(&r.member_id),
        car_id: Some(&r.car_id),
        start_at: Some(r.start_at),
        end_at: Some(r.end_at),
    }
}
