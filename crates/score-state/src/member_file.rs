//! A member snapshot file as state format 3 writes it: a Parquet file of
//! each member's summary, record and final-part columns, and beside it the
//! rentals file ([`crate::member_rentals`]) that its `rentals_at` and
//! `rentals_len` columns address. The Parquet file names its rentals file
//! in its schema metadata, so a file of format 2 (rentals inline) and one
//! of format 3 can sit in one snapshot.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, FixedSizeBinaryArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use pitwall_lake::Location;

use crate::StateError;
use crate::deltas::Kept;
use crate::member_rentals::{self, MAGIC};
use crate::snapshot;

/// Each record's [`snapshot::digest`]: publication compares these.
pub const DIGEST: &str = "record_digest";
pub const RENTALS_AT: &str = "rentals_at";
pub const RENTALS_LEN: &str = "rentals_len";
/// Schema metadata: the rentals file's name, in the Parquet file's folder.
pub const RENTALS_FILE: &str = "pitwall.rentals_file";

/// A snapshot file before it is written: its columns and its rentals file.
pub struct MemberFile {
    pub batch: RecordBatch,
    pub rentals: Bytes,
}

fn err(problem: impl ToString) -> StateError {
    StateError::Table {
        what: "member snapshot file".into(),
        problem: problem.to_string(),
    }
}

/// Members (sorted by member_id) as one snapshot file, with the model id
/// and as_of on every row. The part columns are there when every member
/// has a part.
pub fn encode<K: Borrow<Kept>>(
    kept: &[K],
    model: &str,
    as_of: i64,
) -> Result<MemberFile, StateError> {
    let records: Vec<&snapshot::MemberRecord> = kept.iter().map(|k| &k.borrow().record).collect();
    let batch = snapshot::record_batch(&records, model, as_of, false)?;
    let parts: Option<Vec<_>> = kept.iter().map(|k| k.borrow().part.as_ref()).collect();
    let mut rentals = MAGIC.to_vec();
    let mut at = Vec::with_capacity(kept.len());
    let mut len = Vec::with_capacity(kept.len());
    for k in kept {
        let k = k.borrow();
        let start = rentals.len() as u64;
        let kept_rentals = k.part.as_ref().map_or(&[][..], |p| &p.recent[..]);
        let n = member_rentals::encode(&k.record.recent, kept_rentals, &mut rentals);
        at.push(start);
        len.push(u32::try_from(n).map_err(|_| err("a member's rentals past 4 GiB"))?);
    }
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut cols = batch.columns().to_vec();
    if let Some(parts) = parts {
        let parts: Vec<_> = parts.into_iter().cloned().collect();
        for (f, c) in crate::parts::columns(&parts) {
            fields.push(f);
            cols.push(c);
        }
    }
    // Sized, so that a file of no members has the column too.
    let digests = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
        kept.iter()
            .map(|k| Some(snapshot::digest(&k.borrow().record))),
        16,
    )
    .map_err(err)?;
    fields.push(Field::new(DIGEST, DataType::FixedSizeBinary(16), false));
    cols.push(Arc::new(digests));
    fields.push(Field::new(RENTALS_AT, DataType::UInt64, false));
    cols.push(Arc::new(UInt64Array::from(at)));
    fields.push(Field::new(RENTALS_LEN, DataType::UInt32, false));
    cols.push(Arc::new(UInt32Array::from(len)));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(err)?;
    Ok(MemberFile {
        batch,
        rentals: Bytes::from(rentals),
    })
}

/// `batch` naming `rentals_file` as its rentals file.
pub fn naming(batch: RecordBatch, rentals_file: &str) -> Result<RecordBatch, StateError> {
    let meta = HashMap::from([(RENTALS_FILE.to_string(), rentals_file.to_string())]);
    let schema = Arc::new(batch.schema().as_ref().clone().with_metadata(meta));
    batch.with_schema(schema).map_err(err)
}

/// The byte range of each of `rows` of a format-3 batch.
pub fn ranges(batch: &RecordBatch, rows: &[u32]) -> Result<Vec<Range<u64>>, StateError> {
    let at = batch
        .column_by_name(RENTALS_AT)
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| err(format!("no {RENTALS_AT} column")))?;
    let len = batch
        .column_by_name(RENTALS_LEN)
        .and_then(|c| c.as_primitive_opt::<UInt32Type>())
        .ok_or_else(|| err(format!("no {RENTALS_LEN} column")))?;
    Ok(rows
        .iter()
        .map(|&r| {
            let start = at.value(r as usize);
            start..start + u64::from(len.value(r as usize))
        })
        .collect())
}

/// Snapshot files of consecutive member ranges appended into one: their
/// rows in order, their rentals entries copied once into one rentals file.
#[derive(Default)]
pub struct Appender {
    batches: Vec<RecordBatch>,
    rentals: Vec<u8>,
}

impl Appender {
    pub fn push(&mut self, piece: MemberFile) -> Result<(), StateError> {
        if self.rentals.is_empty() {
            self.rentals.extend_from_slice(MAGIC);
        }
        let shift = self.rentals.len() as u64 - MAGIC.len() as u64;
        let entries = piece
            .rentals
            .get(MAGIC.len()..)
            .ok_or_else(|| err("a rentals file without its magic"))?;
        self.rentals.extend_from_slice(entries);
        let at = piece
            .batch
            .column_by_name(RENTALS_AT)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| err(format!("no {RENTALS_AT} column")))?;
        let moved: ArrayRef = Arc::new(UInt64Array::from_iter_values(
            at.values().iter().map(|v| v + shift),
        ));
        self.batches.push(replaced(piece.batch, RENTALS_AT, moved)?);
        Ok(())
    }

    pub fn finish(self) -> Result<MemberFile, StateError> {
        let schema = self
            .batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| err("no member file to append"))?;
        let batch = arrow_select::concat::concat_batches(&schema, &self.batches).map_err(err)?;
        Ok(MemberFile {
            batch,
            rentals: Bytes::from(self.rentals),
        })
    }
}

/// Where a snapshot file's member rentals are.
#[derive(Clone)]
pub enum Rentals {
    /// In the file's own columns (state formats 1 and 2).
    Inline,
    /// In its rentals file, read by byte ranges.
    Stored {
        loc: Location,
        rel: String,
        url: String,
    },
}

impl Rentals {
    /// The rentals of the snapshot file `rel` (under `loc`, shown as
    /// `url`), from its schema's metadata.
    pub fn of(loc: &Location, url: &str, rel: &str, metadata: &HashMap<String, String>) -> Rentals {
        match metadata.get(RENTALS_FILE).cloned() {
            None => Rentals::Inline,
            Some(name) => {
                let rel = match rel.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{name}"),
                    None => name,
                };
                Rentals::Stored {
                    loc: loc.clone(),
                    url: format!("{url}/{rel}"),
                    rel,
                }
            }
        }
    }

    /// The bytes of `ranges`, in order. Dense requests (a quarter or more
    /// of the span they cover) read the span once: an export or a
    /// compaction reads the file, a run a few entries of it.
    pub fn fetch(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, StateError> {
        let Rentals::Stored { loc, rel, url } = self else {
            return Err(err("rentals asked of a file that keeps them inline"));
        };
        let (Some(lo), Some(hi)) = (
            ranges.iter().map(|r| r.start).min(),
            ranges.iter().map(|r| r.end).max(),
        ) else {
            return Ok(Vec::new());
        };
        let wanted: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        let gone = || StateError::MissingFile { path: url.clone() };
        if wanted.saturating_mul(4) >= hi - lo {
            let span = loc.get_range(rel, lo..hi)?.ok_or_else(gone)?;
            return ranges
                .iter()
                .map(|r| {
                    let (a, b) = ((r.start - lo) as usize, (r.end - lo) as usize);
                    if b > span.len() {
                        return Err(
                            self.damaged(format!("it ends at byte {}", lo as usize + span.len()))
                        );
                    }
                    Ok(span.slice(a..b))
                })
                .collect();
        }
        loc.get_ranges(rel, ranges)?.ok_or_else(gone)
    }

    /// Whether the rentals file is there and begins as pitwall writes one:
    /// a file that is gone or replaced stops the run that loads the
    /// snapshot, not only the one that happens to read its entries.
    pub fn check(&self) -> Result<(), StateError> {
        let Rentals::Stored { loc, rel, url } = self else {
            return Ok(());
        };
        let head = loc
            .get_range(rel, 0..MAGIC.len() as u64)
            .map_err(|e| self.damaged(e.to_string()))?
            .ok_or_else(|| StateError::MissingFile { path: url.clone() })?;
        if head[..] != MAGIC[..] {
            return Err(self.damaged("it does not begin as a pitwall rentals file".into()));
        }
        Ok(())
    }

    /// The error for a rentals file that cannot be read as pitwall wrote it.
    pub fn damaged(&self, problem: String) -> StateError {
        let path = match self {
            Rentals::Stored { url, .. } => url.clone(),
            Rentals::Inline => "member snapshot".into(),
        };
        StateError::Parquet { path, problem }
    }
}

/// A new file of rows `order` ((source, row) pairs) of `sources`, all of
/// one schema: their columns interleaved, their rentals entries copied
/// as bytes. A source without rentals is the one whose entries are
/// `own` (a file not written yet).
pub fn copy_rows(
    sources: &[(&RecordBatch, Option<&Rentals>)],
    order: &[(usize, usize)],
    own: &Bytes,
) -> Result<MemberFile, StateError> {
    let batches: Vec<&RecordBatch> = sources.iter().map(|s| s.0).collect();
    let batch = arrow_select::interleave::interleave_record_batch(&batches, order).map_err(err)?;
    // Each source's entries in output order, read once per source.
    let mut per_source: Vec<Vec<u32>> = vec![Vec::new(); sources.len()];
    for &(s, r) in order {
        per_source[s].push(r as u32);
    }
    let mut entries: Vec<std::vec::IntoIter<Bytes>> = Vec::with_capacity(sources.len());
    for ((b, rentals), rows) in sources.iter().zip(&per_source) {
        let ranges = ranges(b, rows)?;
        let got = match rentals {
            Some(r) => r.fetch(&ranges)?,
            None => ranges
                .iter()
                .map(|r| {
                    own.get(r.start as usize..r.end as usize)
                        .map(|b| own.slice_ref(b))
                        .ok_or_else(|| err("an entry past the end of the new rentals"))
                })
                .collect::<Result<_, _>>()?,
        };
        entries.push(got.into_iter());
    }
    let total: usize = MAGIC.len()
        + entries
            .iter()
            .map(|e| e.as_slice().iter().map(Bytes::len).sum::<usize>())
            .sum::<usize>();
    let mut rentals = Vec::with_capacity(total);
    rentals.extend_from_slice(MAGIC);
    let mut at = Vec::with_capacity(order.len());
    let mut len = Vec::with_capacity(order.len());
    for &(s, _) in order {
        let e = entries[s]
            .next()
            .ok_or_else(|| err("fewer rentals entries than rows"))?;
        at.push(rentals.len() as u64);
        len.push(e.len() as u32);
        rentals.extend_from_slice(&e);
    }
    let batch = replaced(batch, RENTALS_AT, Arc::new(UInt64Array::from(at)))?;
    let batch = replaced(batch, RENTALS_LEN, Arc::new(UInt32Array::from(len)))?;
    Ok(MemberFile {
        batch,
        rentals: Bytes::from(rentals),
    })
}

/// `batch` with the model id and as_of of the run that writes it.
pub fn stamped(batch: RecordBatch, model: &str, as_of: i64) -> Result<RecordBatch, StateError> {
    let n = batch.num_rows();
    let models: ArrayRef = Arc::new(arrow_array::StringArray::from(vec![model; n]));
    let as_ofs: ArrayRef =
        Arc::new(arrow_array::TimestampMillisecondArray::from(vec![as_of; n]).with_timezone("UTC"));
    replaced(replaced(batch, "model", models)?, "as_of", as_ofs)
}

fn replaced(batch: RecordBatch, name: &str, col: ArrayRef) -> Result<RecordBatch, StateError> {
    let (i, _) = batch
        .schema()
        .column_with_name(name)
        .ok_or_else(|| err(format!("no column {name:?}")))?;
    let mut cols = batch.columns().to_vec();
    cols[i] = col;
    RecordBatch::try_new(batch.schema(), cols).map_err(err)
}
