//! Publishing a score run: the member-score records built from a run's
//! outputs, and the schema registries that give them a schema id.

mod api_versions;
mod avro;
pub mod catchup;
pub mod consume;
pub mod kafka;
pub mod ledger;
pub mod msk_iam;
pub mod publish;
pub mod record;
pub mod registry;
pub mod tail;

pub use publish::{PublishError, PublishReport, PublishRequest, publish};
