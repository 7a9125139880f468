//! The versioned model file: every tunable number of the spec, and the
//! arithmetic that turns rental features into a score and a grade.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::features::Features;
use crate::fitted::FitRecord;

/// The model shipped with pitwall, used when no `--model` is given.
pub const DEFAULT_MODEL_TOML: &str = include_str!("../../../models/psf-v1.toml");

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file is not valid TOML for a pitwall model: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("model {name}: {problem}")]
    Invalid { name: String, problem: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Model name, e.g. `psf-v1`.
    pub name: String,
    /// Model version; bump it whenever a number changes.
    pub version: String,
    pub events: EventParams,
    pub completeness: CompletenessParams,
    pub score: ScoreParams,
    /// Grades, highest `min_score` first.
    pub grades: Vec<Grade>,
    pub member: MemberParams,
    /// Present when the multipliers were fitted to claims (or planted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<FitRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    pub adjacent_max_gap_ms: i64,
    pub moving_above_kmh: f64,
    pub speeding_over_limit_kmh: f64,
    pub excess_speeding_over_limit_kmh: f64,
    pub harsh_accel_kmh_per_s: f64,
    pub harsh_brake_kmh_per_s: f64,
    pub stop_within_ms: i64,
    pub stop_at_most_kmh: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletenessParams {
    pub scored_min_coverage: f64,
    #[serde(with = "humantime_serde_compat")]
    pub grace: Duration,
    pub late_min_coverage: f64,
    pub min_distance_km: f64,
    /// A rental's tail is in once a sample of its car at or after
    /// end_at − this has been read (`score-state.md`, "Finality"). Model
    /// files written before it existed get the adjacency gap, the rental's
    /// last second.
    #[serde(
        default = "default_tail_within",
        with = "humantime_serde_compat::tail_within"
    )]
    pub tail_within: Duration,
}

fn default_tail_within() -> Duration {
    Duration::from_millis(1500)
}

impl CompletenessParams {
    /// The grace period for late telemetry, in ms (what runs and states record).
    pub fn grace_ms(&self) -> i64 {
        i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn tail_within_ms(&self) -> i64 {
        i64::try_from(self.tail_within.as_millis()).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    pub multiplier: f64,
    pub cap: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreParams {
    pub base: f64,
    pub intercept: f64,
    pub slope: f64,
    pub harsh_accel: Factor,
    pub harsh_brake: Factor,
    pub unstable_stop: Factor,
    pub speeding: Factor,
    pub excess_speeding: Factor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grade {
    pub min_score: f64,
    pub grade: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberParams {
    pub latest_rentals: usize,
    pub window_days: i64,
    pub eligible_min_distance_km: f64,
}

/// The five factor inputs of the score formula, after capping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FactorInputs {
    pub harsh_accel_per_100km: f64,
    pub harsh_brake_per_100km: f64,
    pub unstable_stop_per_100km: f64,
    pub speeding_pct: f64,
    pub excess_speeding_pct: f64,
}

impl Default for Model {
    fn default() -> Self {
        // The embedded file is checked by a unit test, so this cannot fail in a build that passed its tests.
        #[allow(clippy::expect_used)]
        Model::from_toml(DEFAULT_MODEL_TOML).expect("embedded default model is valid")
    }
}

impl Model {
    pub fn from_toml(text: &str) -> Result<Self, ModelError> {
        let model: Model = toml::from_str(text)?;
        model.validate()?;
        Ok(model)
    }

    /// `name@version`, as written into every output row.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let invalid = |problem: &str| ModelError::Invalid {
            name: self.id(),
            problem: problem.to_string(),
        };
        if self.grades.is_empty() {
            return Err(invalid("`grades` is empty; at least one grade is needed"));
        }
        if self
            .grades
            .windows(2)
            .any(|w| w[0].min_score <= w[1].min_score)
        {
            return Err(invalid(
                "`grades` must be ordered by min_score, highest first",
            ));
        }
        if self.grades.last().is_some_and(|g| g.min_score > 0.0) {
            return Err(invalid(
                "the last grade must have min_score <= 0 so every score gets a grade",
            ));
        }
        if self.events.adjacent_max_gap_ms <= 0 || self.events.stop_within_ms < 0 {
            return Err(invalid("event time windows must be positive"));
        }
        let c = &self.completeness;
        if !(0.0..=1.0).contains(&c.scored_min_coverage)
            || !(0.0..=1.0).contains(&c.late_min_coverage)
        {
            return Err(invalid("coverage thresholds must be within 0..=1"));
        }
        if c.tail_within > c.grace {
            return Err(invalid(&format!(
                "`completeness.tail_within` ({}) must not exceed `completeness.grace` ({}): \
                 a rental waits for its tail at most until the grace ends",
                humantime::format_duration(c.tail_within),
                humantime::format_duration(c.grace)
            )));
        }
        let s = &self.score;
        let factors = self.factors();
        let numbers = [s.base, s.intercept, s.slope]
            .into_iter()
            .chain(factors.iter().flat_map(|(_, f)| [f.multiplier, f.cap]))
            .chain(self.fit.iter().flat_map(FitRecord::numbers));
        if numbers.into_iter().any(|v| !v.is_finite()) {
            return Err(invalid(
                "every number of [score] and [fit] must be finite (no nan or inf)",
            ));
        }
        if factors.iter().any(|(_, f)| f.multiplier <= 0.0) {
            return Err(invalid("factor multipliers must be > 0"));
        }
        if self.member.latest_rentals == 0 || self.member.window_days <= 0 {
            return Err(invalid(
                "member window must hold at least one rental and one day",
            ));
        }
        Ok(())
    }

    /// The file's text; `from_toml` of it gives the same model.
    pub fn to_toml(&self) -> Result<String, ModelError> {
        toml::to_string(self).map_err(|e| ModelError::Invalid {
            name: self.id(),
            problem: e.to_string(),
        })
    }

    /// The five factors in the formula's order, with their names in
    /// fitted coefficient tables.
    pub fn factors(&self) -> [(&'static str, Factor); 5] {
        let s = &self.score;
        [
            ("harsh_accel", s.harsh_accel),
            ("harsh_brake", s.harsh_brake),
            ("unstable_stop", s.unstable_stop),
            ("speeding", s.speeding),
            ("excess_speeding", s.excess_speeding),
        ]
    }

    /// Sets the multipliers in [`Model::factors`]' order, caps unchanged.
    pub fn set_multipliers(&mut self, m: [f64; 5]) {
        let s = &mut self.score;
        for (f, m) in [
            &mut s.harsh_accel,
            &mut s.harsh_brake,
            &mut s.unstable_stop,
            &mut s.speeding,
            &mut s.excess_speeding,
        ]
        .into_iter()
        .zip(m)
        {
            f.multiplier = m;
        }
    }

    /// Relative risk Π mᵢ^xᵢ of one rental (PCF = base × this).
    pub fn relative_risk(&self, f: &Features) -> f64 {
        let x = self.factor_inputs(f).as_array();
        self.factors()
            .iter()
            .zip(x)
            .map(|((_, f), x)| f.multiplier.powf(x))
            .product()
    }

    /// The score of a predicted collision frequency, unrounded.
    pub fn score_of_pcf(&self, pcf: f64) -> f64 {
        (self.score.intercept - self.score.slope * pcf).clamp(0.0, 100.0)
    }

    /// The capped factor inputs of the formula for one rental's features.
    pub fn factor_inputs(&self, f: &Features) -> FactorInputs {
        let s = &self.score;
        FactorInputs {
            harsh_accel_per_100km: per_100km(f.harsh_accel_n, f.distance_km).min(s.harsh_accel.cap),
            harsh_brake_per_100km: per_100km(f.harsh_brake_n, f.distance_km).min(s.harsh_brake.cap),
            unstable_stop_per_100km: per_100km(f.unstable_stop_n, f.distance_km)
                .min(s.unstable_stop.cap),
            speeding_pct: share_pct(f.speeding_s, f.moving_s).min(s.speeding.cap),
            excess_speeding_pct: share_pct(f.excess_speeding_s, f.moving_s)
                .min(s.excess_speeding.cap),
        }
    }

    /// The rental score, 0..=100, rounded half away from zero to one decimal.
    pub fn rental_score(&self, f: &Features) -> f64 {
        let s = &self.score;
        let x = self.factor_inputs(f);
        let pcf = s.base
            * s.harsh_accel.multiplier.powf(x.harsh_accel_per_100km)
            * s.harsh_brake.multiplier.powf(x.harsh_brake_per_100km)
            * s.unstable_stop.multiplier.powf(x.unstable_stop_per_100km)
            * s.speeding.multiplier.powf(x.speeding_pct)
            * s.excess_speeding.multiplier.powf(x.excess_speeding_pct);
        round1((s.intercept - s.slope * pcf).clamp(0.0, 100.0))
    }

    /// The grade of a score: the first (highest) grade whose min_score it reaches.
    pub fn grade(&self, score: f64) -> &Grade {
        self.grades
            .iter()
            .find(|g| score >= g.min_score)
            .unwrap_or_else(|| &self.grades[self.grades.len() - 1])
    }
}

impl FactorInputs {
    /// The values in [`Model::factors`]' order.
    pub fn as_array(&self) -> [f64; 5] {
        [
            self.harsh_accel_per_100km,
            self.harsh_brake_per_100km,
            self.unstable_stop_per_100km,
            self.speeding_pct,
            self.excess_speeding_pct,
        ]
    }
}

/// Events per 100 km. A rental that drove nowhere has no meaningful rate:
/// no events means 0; any event means the factor's cap (via `min`).
pub fn per_100km(n: u32, distance_km: f64) -> f64 {
    if n == 0 {
        0.0
    } else if distance_km > 0.0 {
        f64::from(n) / distance_km * 100.0
    } else {
        f64::INFINITY
    }
}

/// Percent of moving seconds; 0 when the car never moved.
pub fn share_pct(s: u32, moving_s: u32) -> f64 {
    if moving_s == 0 {
        0.0
    } else {
        f64::from(s) / f64::from(moving_s) * 100.0
    }
}

/// Round half away from zero to one decimal (`f64::round` rounds half away from zero).
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Durations in the model file are human strings ("4h", "90m").
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    /// `completeness.tail_within`: humantime has no negative durations, so
    /// a leading minus gets a message that names the key instead of
    /// "expected number".
    pub mod tail_within {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            super::serialize(d, s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            let text = String::deserialize(d)?;
            if text.trim_start().starts_with('-') {
                return Err(serde::de::Error::custom(format!(
                    "`completeness.tail_within` is {text:?}; it must not be negative \
                     (a duration such as \"1500ms\" or \"30s\")"
                )));
            }
            humantime::parse_duration(&text).map_err(|e| {
                serde::de::Error::custom(format!("`completeness.tail_within` is {text:?}: {e}"))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(distance_km: f64, moving_s: u32) -> Features {
        Features {
            distance_km,
            moving_s,
            ..Features::default()
        }
    }

    #[test]
    fn embedded_model_parses_and_carries_spec_defaults() {
        let m = Model::default();
        assert_eq!(m.id(), "psf-v1@1");
        assert_eq!(m.completeness.grace, Duration::from_secs(4 * 3600));
        assert_eq!(m.grades.len(), 6);
        assert_eq!(
            m.score.unstable_stop,
            Factor {
                multiplier: 1.15,
                cap: 10.0
            }
        );
    }

    #[test]
    fn rental_without_events_scores_100() {
        let m = Model::default();
        assert_eq!(m.rental_score(&features(12.0, 900)), 100.0);
    }

    #[test]
    fn score_follows_the_formula() {
        let m = Model::default();
        // 1 harsh brake over 20 km = 5 per 100 km; 10 % speeding.
        let f = Features {
            harsh_brake_n: 1,
            speeding_s: 100,
            ..features(20.0, 1000)
        };
        let pcf = 0.60 * 1.08f64.powf(5.0) * 1.03f64.powf(10.0);
        let expected = ((124.0 - 40.0 * pcf).clamp(0.0, 100.0) * 10.0).round() / 10.0;
        assert_eq!(m.rental_score(&f), expected);
        assert_eq!(expected, 76.6);
    }

    #[test]
    fn factors_are_capped() {
        let m = Model::default();
        let at_cap = Features {
            harsh_accel_n: 2,
            ..features(10.0, 100)
        };
        let beyond = Features {
            harsh_accel_n: 50,
            ..features(10.0, 100)
        };
        assert_eq!(m.factor_inputs(&at_cap).harsh_accel_per_100km, 20.0);
        assert_eq!(m.rental_score(&at_cap), m.rental_score(&beyond));
        let xs = Features {
            excess_speeding_s: 90,
            ..features(10.0, 100)
        };
        assert_eq!(m.factor_inputs(&xs).excess_speeding_pct, 10.0);
    }

    #[test]
    fn score_is_clamped_at_zero() {
        let m = Model::default();
        let f = Features {
            harsh_accel_n: 100,
            harsh_brake_n: 100,
            unstable_stop_n: 100,
            speeding_s: 100,
            excess_speeding_s: 100,
            ..features(1.0, 100)
        };
        assert_eq!(m.rental_score(&f), 0.0);
    }

    #[test]
    fn share_is_zero_when_never_moving() {
        assert_eq!(share_pct(10, 0), 0.0);
        assert_eq!(per_100km(0, 0.0), 0.0);
        assert_eq!(per_100km(1, 0.0), f64::INFINITY);
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round1(84.25), 84.3);
        assert_eq!(round1(84.24), 84.2);
        assert_eq!(round1(99.95), 100.0);
    }

    #[test]
    fn grade_boundaries() {
        let m = Model::default();
        let g = |s: f64| m.grade(s).grade.clone();
        assert_eq!(g(100.0), "EXCELLENT");
        assert_eq!(g(95.0), "EXCELLENT");
        assert_eq!(g(94.9), "GOOD");
        assert_eq!(g(80.0), "GOOD");
        assert_eq!(g(79.9), "FAIR");
        assert_eq!(g(65.0), "FAIR");
        assert_eq!(g(64.9), "POOR");
        assert_eq!(g(50.0), "POOR");
        assert_eq!(g(49.9), "CAUTION");
        assert_eq!(g(30.0), "CAUTION");
        assert_eq!(g(29.9), "DANGER");
        assert_eq!(g(0.0), "DANGER");
        assert_eq!(m.grade(95.0).label, "탁월");
    }

    #[test]
    fn invalid_models_are_refused_with_a_reason() {
        let unordered = DEFAULT_MODEL_TOML.replace("min_score = 95.0", "min_score = 5.0");
        let err = Model::from_toml(&unordered).unwrap_err().to_string();
        assert!(err.contains("ordered by min_score"), "{err}");
        let unknown = format!("{DEFAULT_MODEL_TOML}\nsurprise = 1\n");
        assert!(Model::from_toml(&unknown).is_err());
        let bad_grace = DEFAULT_MODEL_TOML.replace("grace = \"4h\"", "grace = \"soon\"");
        assert!(Model::from_toml(&bad_grace).is_err());
    }

    fn with_tail_within(value: &str) -> String {
        DEFAULT_MODEL_TOML.replace(
            "tail_within = \"1500ms\"",
            &format!("tail_within = \"{value}\""),
        )
    }

    #[test]
    fn tail_within_defaults_to_the_last_second_and_is_bounded_by_the_grace() {
        assert_eq!(
            Model::default().completeness.tail_within,
            Duration::from_millis(1500)
        );
        let older = DEFAULT_MODEL_TOML.replace("tail_within = \"1500ms\"", "");
        assert_ne!(older, DEFAULT_MODEL_TOML, "the embedded model names it");
        let m = Model::from_toml(&older).expect("a model file without the key");
        assert_eq!(m.completeness.tail_within, Duration::from_millis(1500));
        let at_grace = Model::from_toml(&with_tail_within("4h")).expect("4h is the grace");
        assert_eq!(at_grace.completeness.tail_within_ms(), 4 * 3_600_000);
        let zero = Model::from_toml(&with_tail_within("0s")).expect("zero is allowed");
        assert_eq!(zero.completeness.tail_within_ms(), 0);
        let beyond = Model::from_toml(&with_tail_within("4h 1s")).expect_err("beyond the grace");
        assert!(
            beyond
                .to_string()
                .contains("`completeness.tail_within` (4h 1s)"),
            "{beyond}"
        );
        let negative = Model::from_toml(&with_tail_within("-2s")).expect_err("negative");
        assert!(
            negative
                .to_string()
                .contains("`completeness.tail_within` is \"-2s\""),
            "{negative}"
        );
        assert!(negative.to_string().contains("negative"), "{negative}");
        let m = Model::from_toml(&with_tail_within("30s")).expect("30s");
        let again = Model::from_toml(&m.to_toml().expect("toml")).expect("round trip");
        assert_eq!(again.completeness.tail_within, Duration::from_secs(30));
    }

    #[test]
    fn a_fitted_model_survives_its_file() {
        let mut m = Model {
            version: "1+fit".into(),
            ..Model::default()
        };
        m.set_multipliers([1.01, 1.02, 1.03, 1.04, 1.05]);
        m.fit = Some(FitRecord {
            intercept: -1.5,
            fitted_at: Some("2026-12-01T00:00:00Z".into()),
            pitwall_version: None,
            from_model: Some("psf-v1@1".into()),
            training: None,
            coefficients: Vec::new(),
            validation: None,
        });
        let text = m.to_toml().expect("toml");
        assert_eq!(Model::from_toml(&text).expect("parses"), m);
        assert!(text.contains("[fit]"), "{text}");
    }

    #[test]
    fn refuses_a_nan_anywhere_in_the_numbers() {
        let text = DEFAULT_MODEL_TOML.replace("multiplier = 1.05", "multiplier = nan");
        let e = Model::from_toml(&text).expect_err("nan refused");
        assert!(e.to_string().contains("finite"), "{e}");
        let with_fit = format!("{DEFAULT_MODEL_TOML}\n[fit]\nintercept = inf\n");
        assert!(Model::from_toml(&with_fit).is_err());
    }

    #[test]
    fn relative_risk_is_the_product_of_multipliers() {
        let m = Model::default();
        let f = Features {
            distance_km: 100.0,
            moving_s: 100,
            harsh_brake_n: 2,
            ..Features::default()
        };
        assert!((m.relative_risk(&f) - 1.08f64.powi(2)).abs() < 1e-12);
        assert!((m.score_of_pcf(0.6) - 100.0).abs() < 1e-12);
    }
}
