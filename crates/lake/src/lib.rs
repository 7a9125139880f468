//! Where data lives: local directories or object stores (`s3://…`),
//! listed, opened for Parquet reading, and written atomically.
//!
//! Reading is synchronous for callers: object-store calls run on a small
//! runtime owned here, so the CPU-bound readers above need no async.

pub mod hive;
mod location;
mod prune;
mod small;
pub mod tabular;
mod write;

pub use hive::Span;
pub use location::{FileRef, Input, Listing, Location};
pub use small::Created;
pub use write::{
    ParquetOptions, parquet_bytes, parquet_bytes_parallel, write_atomic, write_bytes, write_parquet,
};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: {source}")]
    ObjectStore {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{0:?} is not a location pitwall can read: use a local path or s3://bucket/prefix")]
    UnsupportedUrl(String),
    #[error("{path}: {problem}")]
    BadTable { path: String, problem: String },
    #[error(
        "{path}: the write was abandoned because the writer's right to write lapsed (its lease)"
    )]
    Abandoned { path: String },
    #[error("cannot write Parquet file {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;
