//! The lake in a catalog: what `pitwall lake register` declares for a
//! contract's dataset (a Parquet table partitioned `dt`/`hour`) and its DLQ
//! (JSON lines partitioned `dt`), with partition projection so Athena and
//! Trino find partitions without a crawler or `MSCK REPAIR`.
//!
//! [`table`] says what the tables are, without I/O; [`glue`] creates or
//! updates them in the AWS Glue Data Catalog.

pub mod glue;
pub mod table;

pub use glue::{GlueCatalog, Registration};
pub use table::{Break, Column, TableDef, check_readers, dlq_table, lake_table};
