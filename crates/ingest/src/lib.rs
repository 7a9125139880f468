//! Log ingestion: records read from Kinesis shards (or archived files) go
//! through the contract into the Parquet lake, exactly once.

pub mod files;
pub mod sink;

pub use files::{FilesJob, FilesReport, ingest_files};
pub use sink::{Committed, Counts, RawRecord, RollPolicy, ShardBuffer, SinkError};
