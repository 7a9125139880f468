//! A rental, and its assessment at `as_of`: completeness policy
//! (scored / pending / unscorable), score and grade.

use std::fmt;

use serde::Serialize;

use crate::features::Features;
use crate::model::Model;

/// A rental that passed the input contract. Times are ms since the epoch, UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rental {
    pub rental_id: String,
    pub member_id: String,
    pub car_id: String,
    pub start_at: i64,
    pub end_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Scored,
    Pending,
    Unscorable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    AwaitingTelemetry,
    InsufficientCoverage,
    TooShort,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scored => "scored",
            Status::Pending => "pending",
            Status::Unscorable => "unscorable",
        }
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AwaitingTelemetry => "awaiting_telemetry",
            Reason::InsufficientCoverage => "insufficient_coverage",
            Reason::TooShort => "too_short",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rental is considered at `as_of` once it has ended.
pub fn is_considered(rental: &Rental, as_of: i64) -> bool {
    rental.end_at <= as_of
}

/// The completeness policy of the spec, in its order: coverage first, then
/// the grace period, then the late coverage floor; too short a drive is
/// unscorable whatever its coverage.
pub fn completeness(
    features: &Features,
    end_at: i64,
    as_of: i64,
    grace_ms: i64,
    model: &Model,
) -> (Status, Option<Reason>) {
    let c = &model.completeness;
    let coverage_ok = if features.coverage >= c.scored_min_coverage {
        true
    } else if as_of < end_at.saturating_add(grace_ms) {
        return (Status::Pending, Some(Reason::AwaitingTelemetry));
    } else {
        features.coverage >= c.late_min_coverage
    };
    if !coverage_ok {
        (Status::Unscorable, Some(Reason::InsufficientCoverage))
    } else if features.distance_km < c.min_distance_km {
        (Status::Unscorable, Some(Reason::TooShort))
    } else {
        (Status::Scored, None)
    }
}

/// The outcome for one considered rental.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub features: Features,
    pub status: Status,
    pub reason: Option<Reason>,
    /// Present only when scored.
    pub score: Option<f64>,
    pub grade: Option<String>,
}

pub fn assess(
    features: Features,
    end_at: i64,
    as_of: i64,
    grace_ms: i64,
    model: &Model,
) -> Assessment {
    let (status, reason) = completeness(&features, end_at, as_of, grace_ms, model);
    let score = (status == Status::Scored).then(|| model.rental_score(&features));
    Assessment {
        features,
        status,
        reason,
        score,
        grade: score.map(|s| model.grade(s).grade.clone()),
    }
}

/// Whether a rental's tail is in (`score-state.md`, "Finality"): the run
/// read a sample of the car at or after end_at − `tail_within`, its own
/// last seconds or any later sample (its next trip). Devices upload in
/// order, so such a sample means nothing of the rental is still on its way.
/// `latest_sample` is the car's newest sample the run read, if any.
pub fn tail_is_in(latest_sample: Option<i64>, end_at: i64, model: &Model) -> bool {
    let from = end_at.saturating_sub(model.completeness.tail_within_ms());
    latest_sample.is_some_and(|t| t >= from)
}

/// Where an evaluated rental stands after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    Final,
    /// Final but for its tail: scored with full coverage, or too short,
    /// while the last seconds of the trip may still be on their way.
    AwaitingTail,
    Open,
}

/// The finality rules of `score-state.md`, in its order: scored with full
/// coverage and the tail in, past the grace period, or too short a drive
/// with the tail in. A final rental is never evaluated again, but by a
/// rescore.
pub fn finality(
    a: &Assessment,
    end_at: i64,
    as_of: i64,
    grace_ms: i64,
    tail_in: bool,
    model: &Model,
) -> Finality {
    let full =
        a.status == Status::Scored && a.features.coverage >= model.completeness.scored_min_coverage;
    if as_of >= end_at.saturating_add(grace_ms) {
        Finality::Final
    } else if full || a.reason == Some(Reason::TooShort) {
        if tail_in {
            Finality::Final
        } else {
            Finality::AwaitingTail
        }
    } else {
        Finality::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finality_follows_the_three_rules() {
        let m = Model::default();
        let at = |coverage: f64, km: f64, after_end: i64, tail_in: bool| {
            let a = assess(f(coverage, km), 0, after_end, GRACE, &m);
            finality(&a, 0, after_end, GRACE, tail_in, &m)
        };
        // 1. scored with coverage >= 0.95 and the tail in, at once.
        assert_eq!(at(0.95, 5.0, 0, true), Finality::Final);
        // ... but not before the tail is in.
        assert_eq!(at(0.99, 5.0, 0, false), Finality::AwaitingTail);
        assert_eq!(at(0.99, 5.0, GRACE - 1, false), Finality::AwaitingTail);
        // Pending within grace is open, tail or not.
        assert_eq!(at(0.94, 5.0, GRACE - 1, true), Finality::Open);
        // 2. at end + grace, whatever the outcome and the tail.
        assert_eq!(at(0.70, 5.0, GRACE, false), Finality::Final);
        assert_eq!(at(0.10, 5.0, GRACE, false), Finality::Final);
        assert_eq!(at(0.99, 5.0, GRACE, false), Finality::Final);
        // 3. too short (coverage was enough to judge the distance), with its tail.
        assert_eq!(at(1.0, 0.5, 0, true), Finality::Final);
        assert_eq!(at(1.0, 0.5, 0, false), Finality::AwaitingTail);
    }

    #[test]
    fn the_tail_is_in_from_end_at_minus_tail_within() {
        let m = Model::default();
        let end = 1_000_000;
        // The default tail_within is 1.5 s: the rental's last second.
        assert!(tail_is_in(Some(end), end, &m));
        assert!(tail_is_in(Some(end - 1500), end, &m), "the boundary is in");
        assert!(!tail_is_in(Some(end - 1501), end, &m));
        assert!(
            tail_is_in(Some(end + 60_000), end, &m),
            "a later sample of the car (its next trip) is evidence"
        );
        assert!(!tail_is_in(None, end, &m), "no sample, no tail");
        let mut wide = Model::default();
        wide.completeness.tail_within = std::time::Duration::from_secs(30);
        assert!(tail_is_in(Some(end - 30_000), end, &wide));
        assert!(!tail_is_in(Some(end - 30_001), end, &wide));
        let mut zero = Model::default();
        zero.completeness.tail_within = std::time::Duration::ZERO;
        assert!(tail_is_in(Some(end), end, &zero));
        assert!(!tail_is_in(Some(end - 1), end, &zero));
    }

    const H: i64 = 3_600_000;
    const GRACE: i64 = 4 * H;

    fn f(coverage: f64, distance_km: f64) -> Features {
        Features {
            coverage,
            distance_km,
            ..Features::default()
        }
    }

    fn status(coverage: f64, distance_km: f64, as_of_after_end: i64) -> (Status, Option<Reason>) {
        completeness(
            &f(coverage, distance_km),
            0,
            as_of_after_end,
            GRACE,
            &Model::default(),
        )
    }

    #[test]
    fn full_coverage_is_scored_at_once() {
        assert_eq!(status(0.95, 5.0, 0), (Status::Scored, None));
        assert_eq!(status(1.0, 5.0, 1), (Status::Scored, None));
    }

    #[test]
    fn low_coverage_waits_within_grace() {
        assert_eq!(
            status(0.9499, 5.0, 0),
            (Status::Pending, Some(Reason::AwaitingTelemetry))
        );
        assert_eq!(
            status(0.10, 5.0, GRACE - 1),
            (Status::Pending, Some(Reason::AwaitingTelemetry))
        );
    }

    #[test]
    fn grace_edge_is_past_the_grace() {
        // as_of == end_at + grace is no longer "as_of < end_at + grace".
        assert_eq!(status(0.60, 5.0, GRACE), (Status::Scored, None));
        assert_eq!(
            status(0.5999, 5.0, GRACE),
            (Status::Unscorable, Some(Reason::InsufficientCoverage))
        );
    }

    #[test]
    fn too_short_applies_to_would_be_scored_rentals() {
        assert_eq!(
            status(1.0, 0.999, 0),
            (Status::Unscorable, Some(Reason::TooShort))
        );
        assert_eq!(status(1.0, 1.0, 0), (Status::Scored, None));
        assert_eq!(
            status(0.7, 0.5, GRACE),
            (Status::Unscorable, Some(Reason::TooShort))
        );
        // Pending stays pending even when short: more telemetry may come.
        assert_eq!(
            status(0.5, 0.5, 0),
            (Status::Pending, Some(Reason::AwaitingTelemetry))
        );
    }

    #[test]
    fn assessment_scores_and_grades_only_scored_rentals() {
        let m = Model::default();
        let scored = assess(f(1.0, 10.0), 0, 0, GRACE, &m);
        assert_eq!(scored.score, Some(100.0));
        assert_eq!(scored.grade.as_deref(), Some("EXCELLENT"));
        let pending = assess(f(0.2, 10.0), 0, 0, GRACE, &m);
        assert_eq!((pending.score, pending.grade), (None, None));
    }

    #[test]
    fn only_ended_rentals_are_considered() {
        let r = Rental {
            rental_id: "r".into(),
            member_id: "m".into(),
            car_id: "c".into(),
            start_at: 0,
            end_at: 10,
        };
        assert!(is_considered(&r, 10));
        assert!(!is_considered(&r, 9));
    }
}
