//! `pitwall score fit` and `pitwall score validate`
//! (`../shared/spec/score-model-fitting.md`): the claims contract, the
//! fitting rows drawn from rental results, the fit itself (pure, in
//! `pitwall-fit`), the validation of a candidate against the current model,
//! the fitted model file with its provenance, `validation.json` and
//! `report.html`. `synth` draws rental results and claims from a planted
//! model, so a fit can be checked against what was planted.

pub mod claims;
pub mod data;
pub mod fitting;
pub mod judge;
pub mod members;
pub mod outputs;
mod par;
pub mod report;
pub mod review;
mod svg;
pub mod synth;

pub use claims::{ClaimFiles, ClaimInput};
pub use data::{Period, RentalRow, load_results};
pub use fitting::{FitConfig, FitOutcome, fit_model};
pub use judge::{Judged, Validation, judge};

#[derive(Debug, thiserror::Error)]
pub enum FitJobError {
    #[error(transparent)]
    Lake(#[from] pitwall_lake::LakeError),
    #[error(transparent)]
    State(#[from] pitwall_score_state::StateError),
    #[error(transparent)]
    Model(#[from] pitwall_score::ModelError),
    #[error("no {what} found at {location}: expected {expected}")]
    NoInput {
        what: &'static str,
        location: String,
        expected: &'static str,
    },
    /// The fit or the validation cannot be made from these inputs; the
    /// message says why and what to change.
    #[error("{0}")]
    Refused(String),
    #[error("cannot write {path}: {problem}")]
    Write { path: String, problem: String },
}

pub type Result<T, E = FitJobError> = std::result::Result<T, E>;

const HOUR_MS: i64 = 3_600_000;

/// A time as RFC 3339 text, with milliseconds only when it has them: a
/// split or a window reads as `2026-08-01T00:00:00Z`, and a rejected
/// claim's time keeps every digit it was given (a claim 200 ms outside its
/// rental must show why).
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_keep_their_milliseconds_and_whole_seconds_stay_short() {
        assert_eq!(super::rfc3339(1_785_542_400_000), "2026-08-01T00:00:00Z");
        assert_eq!(
            super::rfc3339(1_785_542_400_200),
            "2026-08-01T00:00:00.200Z"
        );
    }
}
