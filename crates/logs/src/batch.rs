//! Valid rows → Arrow record batches in the lake's column layout.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};

use crate::contract::{Contract, Kind};
use crate::dlq::Position;
use crate::validate::{Cell, Row};

enum Column {
    Str(StringBuilder),
    Int(Int32Builder),
    Float(Float64Builder),
    Ts(TimestampMillisecondBuilder),
    Bool(BooleanBuilder),
}

impl Column {
    /// A column with room for `rows` values and `text` bytes of text.
    fn new(kind: Kind, rows: usize, text: usize) -> Column {
        match kind {
            Kind::String | Kind::Json => Column::Str(StringBuilder::with_capacity(rows, text)),
            Kind::Integer => Column::Int(Int32Builder::with_capacity(rows)),
            Kind::Number => Column::Float(Float64Builder::with_capacity(rows)),
            Kind::Timestamp => Column::Ts(utc_ts(rows)),
            Kind::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
        }
    }

    fn text_bytes(&self) -> usize {
        match self {
            Column::Str(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    fn push(&mut self, cell: &Cell<'_>, row: &Row<'_>) {
        // The validator produced cells of the field's kind; a mismatch can
        // only be a null.
        match (self, cell) {
            (Column::Str(b), Cell::Str(s)) => b.append_value(s),
            (Column::Str(b), Cell::Made(_)) => b.append_option(row.text(cell)),
            (Column::Int(b), Cell::Int(v)) => b.append_value(*v),
            (Column::Float(b), Cell::Float(v)) => b.append_value(*v),
            (Column::Ts(b), Cell::Ts(v)) => b.append_value(*v),
            (Column::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Column::Str(b), _) => b.append_null(),
            (Column::Int(b), _) => b.append_null(),
            (Column::Float(b), _) => b.append_null(),
            (Column::Ts(b), _) => b.append_null(),
            (Column::Bool(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Str(b) => Arc::new(b.finish()),
            Column::Int(b) => Arc::new(b.finish()),
            Column::Float(b) => Arc::new(b.finish()),
            Column::Ts(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
        }
    }
}

fn utc_ts(rows: usize) -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC")
}

/// Text bytes in one column at which a batch asks to be written.
const NEAR_FULL: usize = 1 << 30;

/// How large a finished batch had grown: its rows and the text bytes of
/// each column. The next batch of a shard starts at that size (and a
/// little more), so its columns are allocated once instead of doubling
/// their way up, copying at every step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capacity {
    rows: usize,
    /// The contract's columns, then `_extra`, `_shard_id`, `_sequence_number`.
    text: Vec<usize>,
}

impl Capacity {
    fn text(&self, i: usize) -> usize {
        self.text.get(i).copied().unwrap_or(0)
    }
}

/// Room beyond the last size: the next batch is often a little larger.
fn with_headroom(n: usize) -> usize {
    n + n / 8
}

/// Rows of one partition, in the order they were read.
pub struct EventBatch {
    schema: SchemaRef,
    cols: Vec<Column>,
    extra: StringBuilder,
    shard: StringBuilder,
    seq: StringBuilder,
    sub: Int64Builder,
    arrival: TimestampMillisecondBuilder,
    rows: usize,
    /// JSON bytes of the rows: what size-based rolling measures.
    bytes: usize,
}

impl EventBatch {
    pub fn new(contract: &Contract) -> EventBatch {
        EventBatch::with_capacity(contract, &Capacity::default())
    }

    /// A batch with room for what a batch of `like`'s size holds.
    pub fn with_capacity(contract: &Contract, like: &Capacity) -> EventBatch {
        let rows = with_headroom(like.rows);
        let text = |i| with_headroom(like.text(i));
        let n = contract.fields.len();
        EventBatch {
            schema: contract.arrow_schema(),
            cols: contract
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| Column::new(f.kind, rows, text(i)))
                .collect(),
            extra: StringBuilder::with_capacity(rows, text(n)),
            shard: StringBuilder::with_capacity(rows, text(n + 1)),
            seq: StringBuilder::with_capacity(rows, text(n + 2)),
            sub: Int64Builder::with_capacity(rows),
            arrival: utc_ts(rows),
            rows: 0,
            bytes: 0,
        }
    }

    /// The size of the rows held so far, for [`with_capacity`](Self::with_capacity).
    pub fn capacity(&self) -> Capacity {
        Capacity {
            rows: self.rows,
            text: self.text_bytes().collect(),
        }
    }

    /// Text bytes per column, in [`Capacity::text`]'s order.
    fn text_bytes(&self) -> impl Iterator<Item = usize> + '_ {
        let own = [&self.extra, &self.shard, &self.seq].map(|b| b.values_slice().len());
        self.cols.iter().map(Column::text_bytes).chain(own)
    }

    pub fn push(&mut self, row: &Row<'_>, pos: &Position<'_>, json_len: usize) {
        for (col, cell) in self.cols.iter_mut().zip(&row.cells) {
            col.push(cell, row);
        }
        self.extra.append_option(row.extra());
        self.shard.append_value(pos.shard_id);
        self.seq.append_value(pos.sequence_number);
        self.sub.append_value(pos.sub_sequence as i64);
        self.arrival.append_value(pos.arrival_ms);
        self.rows += 1;
        self.bytes += json_len;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn json_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a text column holds half of the 2 GiB that Arrow's 32-bit
    /// offsets allow: time to commit, whatever the roll policy says. (PII
    /// hashes make text longer than the JSON it came from, so the size a
    /// roll policy counts does not bound a column.)
    pub fn near_full(&self) -> bool {
        self.holds_text(NEAR_FULL)
    }

    /// Whether some text column holds `bytes` or more.
    fn holds_text(&self, bytes: usize) -> bool {
        self.text_bytes().any(|n| n >= bytes)
    }

    /// Takes the rows so far as a record batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut cols: Vec<ArrayRef> = self.cols.iter_mut().map(Column::finish).collect();
        cols.push(Arc::new(self.extra.finish()));
        cols.push(Arc::new(self.shard.finish()));
        cols.push(Arc::new(self.seq.finish()));
        cols.push(Arc::new(self.sub.finish()));
        cols.push(Arc::new(self.arrival.finish()));
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(self.schema.clone(), cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Pii, Validator};

    #[test]
    fn rows_land_in_the_contract_layout() {
        let c = Contract::embedded().expect("contract");
        let v = Validator::new(&c, Pii::new(b"k"));
        let mut b = EventBatch::new(&c);
        let json = br#"{"event_id":"0b8e2f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b","ts":"2026-11-01T10:00:00Z","service":"s","env":"dev","level":"WARN","method":"POST","path":"/x","status":503,"latency_ms":1,"extra_field":true}"#;
        let mut row = Row::default();
        v.validate(json, &mut row).expect("valid");
        let pos = Position {
            shard_id: "shardId-1",
            sequence_number: "42",
            sub_sequence: 3,
            line: 0,
            arrival_ms: 7,
        };
        b.push(&row, &pos, json.len());
        b.push(&row, &pos, json.len());
        assert_eq!((b.rows(), b.json_bytes()), (2, 2 * json.len()));
        let size = b.capacity();
        assert_eq!(size.rows, 2);
        assert_eq!(size.text(0), 2 * 36, "two event ids");
        assert_eq!(size.text(c.fields.len() + 1), 2 * "shardId-1".len());
        // A batch made to that size holds the same rows the same way.
        let mut sized = EventBatch::with_capacity(&c, &size);
        sized.push(&row, &pos, json.len());
        sized.push(&row, &pos, json.len());
        // The longest column is the event ids': two of 36 bytes.
        assert!(b.holds_text(72) && !b.holds_text(73));
        assert!(!b.near_full());
        let batch = b.finish().expect("batch");
        assert!(!b.holds_text(1));
        assert_eq!(sized.finish().expect("batch"), batch);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), c.arrow_schema());
        assert_eq!(b.rows(), 0);
        let extra = batch.column_by_name("_extra").expect("extra");
        assert_eq!(
            arrow_array::cast::AsArray::as_string::<i32>(extra).value(0),
            r#"{"extra_field":true}"#
        );
    }
}
