//! The driving-score engine of `../shared/spec/driving-score.md`: pure
//! functions from samples and rentals to features, statuses, scores,
//! grades, member scores and quality-gate verdicts. No I/O lives here, so
//! every rule is unit-tested on hand-built data.

pub mod contract;
pub mod exact;
pub mod features;
pub mod fitted;
pub mod gates;
pub mod member;
pub mod member_part;
pub mod model;
pub mod rental;

pub use features::{Features, Sample, rental_features, rental_slice, sort_dedup};
pub use model::{Model, ModelError};
pub use rental::{Assessment, Reason, Rental, Status, assess};
