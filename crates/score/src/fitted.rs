//! What a model file records when its numbers were fitted to claims
//! (`score-model-fitting.md`): the claim frequency at zero events, and the
//! provenance a reviewer needs to trust the multipliers. A planted truth for
//! synthetic claims is the same section with only `intercept` set.

use serde::{Deserialize, Serialize};

/// The `[fit]` section of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitRecord {
    /// β₀: log of at-fault claims per 100 km of a rental with no events.
    pub intercept: f64,
    /// When and by which pitwall it was fitted; absent in a planted truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitwall_version: Option<String>,
    /// The model the fit started from (its caps and grades were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coefficients: Vec<CoefficientRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationSummary>,
}

/// The data a fit saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// Rentals that ended in [from, split) were fitted; RFC 3339.
    pub from: String,
    pub split: String,
    pub rentals: u64,
    pub distance_km: f64,
    pub claims: u64,
    /// SHA-256 over the fitted rows (rental id, factor values, distance, claims) in rental id order.
    pub fingerprint: String,
    pub ridge: f64,
    /// Whether `--calibrate` chose the mapping slope.
    pub calibrated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoefficientRecord {
    pub name: String,
    pub estimate: f64,
    pub std_error: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// The headline figures of the validation period, so the file alone tells
/// a reviewer whether it was worth promoting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSummary {
    pub from: String,
    pub to: String,
    pub gini: f64,
    pub gini_ci_low: f64,
    pub gini_ci_high: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_over_best: Option<f64>,
    pub actual_over_expected: f64,
    pub recommended: bool,
}

impl FitRecord {
    /// Every number of the section, for the never-a-NaN check.
    pub(crate) fn numbers(&self) -> Vec<f64> {
        let mut v = vec![self.intercept];
        if let Some(t) = &self.training {
            v.extend([t.distance_km, t.ridge]);
        }
        for c in &self.coefficients {
            v.extend([c.estimate, c.std_error, c.ci_low, c.ci_high]);
        }
        if let Some(s) = &self.validation {
            v.extend([
                s.gini,
                s.gini_ci_low,
                s.gini_ci_high,
                s.actual_over_expected,
            ]);
            v.extend(s.worst_over_best);
        }
        v
    }
}
