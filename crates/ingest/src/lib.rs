//! Log ingestion: records read from Kinesis shards (or archived files) go
//! through the contract into the Parquet lake, exactly once.
//!
//! - [`sink`]: a shard's buffer of partitions and its commit (the
//!   exactly-once argument is there);
//! - leases and checkpoints (KCL-style, SQLite or DynamoDB) are
//!   `pitwall-lease`'s, shared with the score watcher;
//! - [`kinesis`], [`reader`], [`worker`]: the stream side;
//! - [`files`]: archived records through the same path; [`replay`] and
//!   [`landed`]: re-ingesting them without doubling what the lake holds;
//! - [`shard_state`]: one leased shard as its reader and the worker share
//!   it; [`metrics`]: what the worker reports; [`status`]: the same, and the
//!   lease table, for the status page.

mod balance;
pub mod efo;
pub mod files;
pub mod kinesis;
pub mod landed;
pub mod metrics;
pub mod reader;
pub mod replay;
pub mod shard_state;
pub mod sink;
mod source;
pub mod status;
mod stuck;
pub mod worker;

pub use files::{Archive, FilesJob, FilesReport, ingest_files};
pub use sink::{Committed, Counts, RawRecord, RollPolicy, ShardBuffer, SinkError, lake_parquet};
pub use worker::{Shared, Worker, WorkerConfig, WorkerError};
