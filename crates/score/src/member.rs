//! Member score over the latest rentals of the past year (spec: "Member score").

use serde::Serialize;

use crate::exact::exact_sum;
use crate::features::Features;
use crate::model::{Model, per_100km, round1, share_pct};
use crate::rental::Status;

const DAY_MS: i64 = 86_400_000;

/// What the member score needs of one assessed rental.
#[derive(Debug, Clone, PartialEq)]
pub struct RentalOutcome<'a> {
    /// Borrowed: a member score is computed for every member of a fleet,
    /// and only the ids of the rentals used are copied out.
    pub rental_id: &'a str,
    pub end_at: i64,
    pub status: Status,
    pub score: Option<f64>,
    pub features: Features,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Scored,
    /// Below the total scored distance a member needs to be shown a score.
    InsufficientDistance,
    /// Eligible, but no scored rental ended in the window.
    NoRecentRentals,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Scored => "scored",
            MemberStatus::InsufficientDistance => "insufficient_distance",
            MemberStatus::NoRecentRentals => "no_recent_rentals",
        }
    }
}

/// Event rates over the rentals used, pooled (sum of events over sum of distance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FactorRates {
    pub harsh_accel_per_100km: f64,
    pub harsh_brake_per_100km: f64,
    pub unstable_stop_per_100km: f64,
    pub speeding_pct: f64,
    pub excess_speeding_pct: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberScore {
    pub eligible: bool,
    pub status: MemberStatus,
    pub score: Option<f64>,
    pub grade: Option<String>,
    /// Rental ids used for the score, latest first.
    pub rentals_used: Vec<String>,
    pub rentals_12m: u32,
    /// Distance of all scored rentals up to as_of (the eligibility measure).
    pub distance_km_total: f64,
    pub rates: FactorRates,
}

/// Scores one member from all their considered rentals (any order).
pub fn member_score(rentals: &[RentalOutcome<'_>], as_of: i64, model: &Model) -> MemberScore {
    score_of(choose(rentals, as_of, model), model)
}

pub(crate) fn score_of(c: Chosen<'_, '_>, model: &Model) -> MemberScore {
    MemberScore {
        eligible: c.eligible,
        status: c.status,
        score: c.score,
        grade: c.score.map(|s| model.grade(s).grade.clone()),
        rentals_used: c.recent.iter().map(|r| r.rental_id.to_string()).collect(),
        rentals_12m: u32::try_from(c.rentals_12m).unwrap_or(u32::MAX),
        distance_km_total: c.distance_km_total,
        rates: pooled_rates(c.recent.iter().map(|r| &r.features)),
    }
}

/// A member's status and score alone, exactly as [`member_score`] finds
/// them, without the ids of the rentals used, the grade's text or the
/// rates: what a model's validation needs of every member, under two
/// models, without copying ten ids per member.
pub fn member_value(
    rentals: &[RentalOutcome<'_>],
    as_of: i64,
    model: &Model,
) -> (MemberStatus, Option<f64>) {
    let c = choose(rentals, as_of, model);
    (c.status, c.score)
}

/// The rentals a member score uses and what follows from them.
pub(crate) struct Chosen<'r, 'a> {
    recent: Vec<&'r RentalOutcome<'a>>,
    rentals_12m: usize,
    distance_km_total: f64,
    eligible: bool,
    status: MemberStatus,
    score: Option<f64>,
}

fn choose<'r, 'a>(rentals: &'r [RentalOutcome<'a>], as_of: i64, model: &Model) -> Chosen<'r, 'a> {
    let window = Window::at(as_of, model);
    let scored = || {
        rentals
            .iter()
            .filter(|r| r.status == Status::Scored && r.end_at <= as_of)
    };
    choose_from(
        Pool {
            candidates: scored().filter(|r| window.holds(r.end_at)).collect(),
            distance_km_total: exact_sum(scored().map(|r| r.features.distance_km)),
            rentals_12m: rentals.iter().filter(|r| window.holds(r.end_at)).count(),
        },
        model,
    )
}

/// The 365-day window of a member score at an as_of: (as_of − window, as_of].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    start: i64,
    end: i64,
}

impl Window {
    pub(crate) fn at(as_of: i64, model: &Model) -> Window {
        Window {
            start: as_of - model.member.window_days * DAY_MS,
            end: as_of,
        }
    }

    pub(crate) fn holds(&self, end_at: i64) -> bool {
        end_at > self.start && end_at <= self.end
    }
}

/// What a member's record is chosen from: its scored rentals within the
/// window (at least the latest `latest_rentals` of them), its total scored
/// distance and how many of its rentals ended within the window.
pub(crate) struct Pool<'r, 'a> {
    pub candidates: Vec<&'r RentalOutcome<'a>>,
    pub distance_km_total: f64,
    pub rentals_12m: usize,
}

pub(crate) fn choose_from<'r, 'a>(pool: Pool<'r, 'a>, model: &Model) -> Chosen<'r, 'a> {
    let p = &model.member;
    let Pool {
        candidates: mut recent,
        distance_km_total,
        rentals_12m,
    } = pool;
    // Latest first; rental_id breaks ties so the choice never depends on input order.
    recent.sort_by(|a, b| {
        b.end_at
            .cmp(&a.end_at)
            .then_with(|| a.rental_id.cmp(b.rental_id))
    });
    recent.truncate(p.latest_rentals);

    let eligible = distance_km_total >= p.eligible_min_distance_km;
    let status = if !eligible {
        MemberStatus::InsufficientDistance
    } else if recent.is_empty() {
        MemberStatus::NoRecentRentals
    } else {
        MemberStatus::Scored
    };
    let score = (status == MemberStatus::Scored)
        .then(|| weighted_mean_score(&recent))
        .flatten();
    Chosen {
        recent,
        rentals_12m,
        distance_km_total,
        eligible,
        status,
        score,
    }
}

/// Distance-weighted mean of the rental scores, rounded to one decimal.
fn weighted_mean_score(used: &[&RentalOutcome<'_>]) -> Option<f64> {
    let weight: f64 = used.iter().map(|r| r.features.distance_km).sum();
    if weight <= 0.0 {
        return None;
    }
    let total: f64 = used
        .iter()
        .map(|r| r.score.unwrap_or(0.0) * r.features.distance_km)
        .sum();
    Some(round1(total / weight))
}

/// Event rates pooled over rentals: summed events over summed distance
/// (per 100 km), summed speeding seconds over summed moving seconds (%).
pub fn pooled_rates<'a>(rentals: impl IntoIterator<Item = &'a Features>) -> FactorRates {
    let used: Vec<&Features> = rentals.into_iter().collect();
    let sum = |f: fn(&Features) -> u32| used.iter().map(|r| f(r)).sum::<u32>();
    let distance: f64 = used.iter().map(|r| r.distance_km).sum();
    let moving = sum(|r| r.moving_s);
    FactorRates {
        harsh_accel_per_100km: per_100km(sum(|r| r.harsh_accel_n), distance),
        harsh_brake_per_100km: per_100km(sum(|r| r.harsh_brake_n), distance),
        unstable_stop_per_100km: per_100km(sum(|r| r.unstable_stop_n), distance),
        speeding_pct: share_pct(sum(|r| r.speeding_s), moving),
        excess_speeding_pct: share_pct(sum(|r| r.excess_speeding_s), moving),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS_OF: i64 = 1_000 * DAY_MS;

    fn scored(id: &str, days_before: i64, score: f64, km: f64) -> RentalOutcome<'_> {
        RentalOutcome {
            rental_id: id,
            end_at: AS_OF - days_before * DAY_MS,
            status: Status::Scored,
            score: Some(score),
            features: Features {
                distance_km: km,
                moving_s: 100,
                ..Features::default()
            },
        }
    }

    #[test]
    fn uses_the_latest_10_scored_rentals_distance_weighted() {
        let ids: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
        let mut rentals: Vec<RentalOutcome> = (0..12)
            .map(|i| scored(&ids[i as usize], i, 90.0, 20.0))
            .collect();
        // The two oldest would drag the mean down if used.
        rentals[10].score = Some(0.0);
        rentals[11].score = Some(0.0);
        let m = member_score(&rentals, AS_OF, &Model::default());
        assert_eq!(m.status, MemberStatus::Scored);
        assert_eq!(m.rentals_used.len(), 10);
        assert_eq!(m.rentals_used[0], "r00");
        assert_eq!(m.score, Some(90.0));
        assert_eq!(m.grade.as_deref(), Some("GOOD"));
    }

    #[test]
    fn member_value_is_member_scores_status_and_score() {
        let ids: Vec<String> = (0..14).map(|i| format!("r{i:02}")).collect();
        let rentals: Vec<RentalOutcome> = (0..14)
            .map(|i| scored(&ids[i as usize], i * 40, 50.0 + i as f64, 5.0 + i as f64))
            .collect();
        for as_of in [
            AS_OF,
            AS_OF - 100 * DAY_MS,
            AS_OF - 600 * DAY_MS,
            AS_OF + 400 * DAY_MS,
        ] {
            for n in [0, 1, 3, 14] {
                let m = member_score(&rentals[..n], as_of, &Model::default());
                assert_eq!(
                    member_value(&rentals[..n], as_of, &Model::default()),
                    (m.status, m.score)
                );
            }
        }
    }

    #[test]
    fn weights_by_distance() {
        let rentals = vec![scored("a", 1, 100.0, 90.0), scored("b", 2, 50.0, 10.0)];
        let m = member_score(&rentals, AS_OF, &Model::default());
        assert_eq!(m.score, Some(95.0));
    }

    #[test]
    fn window_is_365_days_open_at_the_start() {
        let rentals = vec![
            scored("old", 365, 10.0, 200.0),
            scored("new", 364, 80.0, 5.0),
        ];
        let m = member_score(&rentals, AS_OF, &Model::default());
        assert_eq!(m.rentals_used, vec!["new".to_string()]);
        assert_eq!(m.rentals_12m, 1);
        // The old rental still counts toward eligibility.
        assert!(m.eligible);
        assert_eq!(m.score, Some(80.0));
    }

    #[test]
    fn eligibility_needs_100km_of_scored_rentals() {
        let just = vec![scored("a", 1, 70.0, 60.0), scored("b", 2, 70.0, 40.0)];
        assert!(member_score(&just, AS_OF, &Model::default()).eligible);
        let short = vec![scored("a", 1, 70.0, 60.0), scored("b", 2, 70.0, 39.9)];
        let m = member_score(&short, AS_OF, &Model::default());
        assert!(!m.eligible);
        assert_eq!(m.status, MemberStatus::InsufficientDistance);
        assert_eq!((m.score, m.grade), (None, None));
        // Their rentals are still listed.
        assert_eq!(m.rentals_used.len(), 2);
    }

    #[test]
    fn pending_and_unscorable_count_for_frequency_only() {
        let mut pending = scored("p", 0, 0.0, 500.0);
        pending.status = Status::Pending;
        pending.score = None;
        let rentals = vec![pending, scored("a", 1, 70.0, 120.0)];
        let m = member_score(&rentals, AS_OF, &Model::default());
        assert_eq!(m.rentals_12m, 2);
        assert_eq!(m.rentals_used, vec!["a".to_string()]);
        assert_eq!(m.distance_km_total, 120.0);
    }

    #[test]
    fn eligible_without_recent_rentals_has_no_score() {
        let rentals = vec![scored("old", 400, 70.0, 150.0)];
        let m = member_score(&rentals, AS_OF, &Model::default());
        assert_eq!(m.status, MemberStatus::NoRecentRentals);
        assert_eq!(m.score, None);
    }

    #[test]
    fn input_order_does_not_matter() {
        let ids: Vec<String> = (0..15).map(|i| format!("r{i}")).collect();
        let mut rentals: Vec<RentalOutcome> = (0..15)
            .map(|i| scored(&ids[i as usize], i % 4, 50.0 + i as f64, 7.3 + i as f64))
            .collect();
        let a = member_score(&rentals, AS_OF, &Model::default());
        rentals.reverse();
        let b = member_score(&rentals, AS_OF, &Model::default());
        assert_eq!(a, b);
    }

    #[test]
    fn rates_are_pooled_over_used_rentals() {
        let mut a = scored("a", 1, 70.0, 50.0);
        a.features.harsh_brake_n = 3;
        a.features.speeding_s = 10;
        let mut b = scored("b", 2, 70.0, 50.0);
        b.features.harsh_brake_n = 1;
        let m = member_score(&[a, b], AS_OF, &Model::default());
        assert_eq!(m.rates.harsh_brake_per_100km, 4.0);
        assert_eq!(m.rates.speeding_pct, 5.0);
    }
}
