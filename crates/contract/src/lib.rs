//! Data contracts shared by producers and consumers: the Avro schemas that
//! pitwall publishes (checked in under `contracts/avro/`), whether a new
//! schema may follow registered versions under a registry's compatibility
//! mode, and the byte-exact Glue and Confluent wire formats.

pub mod compat;
pub mod schemas;
pub mod wire;

pub use apache_avro::Schema;
pub use compat::{Compatibility, Incompatibility};
