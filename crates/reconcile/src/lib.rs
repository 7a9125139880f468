//! Dual-run reconciliation: does the lake hold what the legacy path holds?
//!
//! The legacy path writes Firehose-style `PREFIX/YYYY/MM/DD/HH/*.gz` (gzip
//! JSON lines, by arrival hour); the lake holds the same events as Parquet by
//! event hour, PII transformed. Both sides are reduced to, per event hour, a
//! map from event id to a fingerprint of the contract's fields (the legacy
//! events after the contract's own validation and transforms), and compared.
//! Memory is bounded by the hours in flight, not by the range: legacy hours
//! are read in order and an event hour is compared as soon as every arrival
//! hour that can hold its events has been read.

mod dlq;
mod html;
mod read;
mod report;
mod run;
mod side;

use pitwall_logs::keys;

pub use report::{HourReport, Report, Totals};
pub use run::{Job, reconcile};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Lake(#[from] pitwall_lake::LakeError),
    #[error("cannot read the lake file {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error(
        "the lake file {path} has no column {column:?} of the expected type: is it the lake of this contract?"
    )]
    Column { path: String, column: String },
    #[error("the time range is empty: --from {from} is not before --to {to}")]
    EmptyRange { from: String, to: String },
    #[error("the contract has no field {0:?} to match events by")]
    NoKey(String),
}

pub type Result<T, E = ReconcileError> = std::result::Result<T, E>;

pub(crate) use pitwall_logs::layout::HOUR_MS;
