//! Server-log events, everything short of I/O: the data contract (ODCS),
//! decoding Kinesis record data, validation with PII transforms, the Arrow
//! batches the lake holds, and the DLQ entries for whatever is refused.

pub mod batch;
pub mod contract;
pub mod decode;
pub mod dlq;
pub mod keys;
pub mod kpl;
pub mod layout;
pub mod pattern;
pub mod pii;
mod rfc3339;
mod scan;
pub mod validate;

pub use contract::{Contract, ContractError};
pub use dlq::{DlqEntry, Position, Reason};
pub use pii::Pii;
pub use validate::{Cell, Row, Validator};
