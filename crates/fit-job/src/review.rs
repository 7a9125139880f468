//! The claims section of a score run's report (`score run --claims`): how
//! the model in use ranks risk on the run's rental results — lift and the
//! member view (≥ 90 against ≤ 50) — so the monthly review needs no extra
//! step.

use pitwall_fit::calibration::MemberView;
use pitwall_fit::gini::Gini;
use pitwall_fit::validate::Lift;
use pitwall_score::Model;
use serde::Serialize;

use crate::Result;
use crate::claims::ClaimsReport;
use crate::data::{Period, load_results};
use crate::judge::{Judged, judge};

/// Bootstrap resamples of a run's Gini interval: enough for a review, cheap
/// enough for every run.
const RESAMPLES: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub model: String,
    /// The rental results judged (a state, or the run's rental_scores.parquet).
    pub results: String,
    pub from: String,
    pub to: String,
    pub rentals: usize,
    pub distance_km: f64,
    pub claims: u64,
    pub lift: Lift,
    pub gini: Gini,
    pub member_view: MemberView,
    pub claims_input: ClaimsReport,
}

/// Judges `model` on every scored rental of `results` that ended by as_of.
pub fn review(
    results_url: &str,
    claims_url: &str,
    model: &Model,
    as_of: i64,
    threads: usize,
) -> Result<Review> {
    let mut results = load_results(results_url, threads)?;
    let input = results.read_claims(claims_url, threads)?;
    let from = results.min_end().unwrap_or(as_of);
    let judged = Judged {
        results: &results,
        period: Period {
            from,
            to: as_of + 1,
        },
        resamples: RESAMPLES,
        seed: 1,
        threads,
    };
    let v = judge(&judged, model, None)?;
    Ok(Review {
        model: model.id(),
        results: results_url.to_string(),
        from: v.from,
        to: v.to,
        rentals: v.rentals,
        distance_km: v.distance_km,
        claims: v.claims,
        lift: v.candidate.lift,
        gini: v.candidate.gini,
        member_view: v.candidate.member_view,
        claims_input: input.report(),
    })
}
