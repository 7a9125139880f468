//! How far before end_at rentals' last samples fall: the evidence a fleet
//! sets `completeness.tail_within` from (`score-state.md`, "Finality").

use pitwall_score::Rental;
use serde::Serialize;

use crate::scoring::Scored;

/// Upper bounds of the histogram's buckets, in seconds; the last is open.
const BOUNDS_S: [(f64, &str); 7] = [
    (1.5, "<= 1.5 s"),
    (5.0, "<= 5 s"),
    (30.0, "<= 30 s"),
    (60.0, "<= 1 min"),
    (300.0, "<= 5 min"),
    (1800.0, "<= 30 min"),
    (f64::INFINITY, "> 30 min"),
];

/// The distribution over the rentals a run assessed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TailGaps {
    /// Assessed rentals with at least one sample.
    pub rentals_with_samples: u64,
    /// Assessed rentals with none: their tail can only come from a later
    /// sample of the car, or the grace.
    pub rentals_without_samples: u64,
    /// Seconds from the last sample to end_at.
    pub p50_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub p99_s: Option<f64>,
    pub max_s: Option<f64>,
    /// (bucket, rentals), in order.
    pub histogram: Vec<(&'static str, u64)>,
}

impl TailGaps {
    pub fn of(rentals: &[Rental], scored: &Scored) -> TailGaps {
        let mut gaps: Vec<f64> = Vec::new();
        let mut without = 0;
        for (i, r) in rentals.iter().enumerate() {
            if scored.assessments.get(i).is_none_or(Option::is_none) {
                continue;
            }
            match scored.last_sample.get(i).copied().flatten() {
                Some(t) => gaps.push((r.end_at - t).max(0) as f64 / 1000.0),
                None => without += 1,
            }
        }
        gaps.sort_by(f64::total_cmp);
        let mut histogram: Vec<(&'static str, u64)> =
            BOUNDS_S.iter().map(|&(_, label)| (label, 0)).collect();
        for &g in &gaps {
            let b = BOUNDS_S.partition_point(|&(bound, _)| bound < g);
            histogram[b.min(BOUNDS_S.len() - 1)].1 += 1;
        }
        TailGaps {
            rentals_with_samples: gaps.len() as u64,
            rentals_without_samples: without,
            p50_s: quantile(&gaps, 0.50),
            p90_s: quantile(&gaps, 0.90),
            p99_s: quantile(&gaps, 0.99),
            max_s: gaps.last().copied(),
            histogram,
        }
    }
}

/// The nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_score::{Features, assess};

    fn rental(end_at: i64) -> Rental {
        Rental {
            rental_id: format!("r{end_at}"),
            member_id: "m".into(),
            car_id: "c".into(),
            start_at: 0,
            end_at,
        }
    }

    #[test]
    fn gaps_fall_into_buckets_with_their_quantiles() {
        let model = pitwall_score::Model::default();
        let a = assess(Features::default(), 0, 0, 0, &model);
        // Gaps of 0 s, 1.5 s (the boundary), 2 s, 45 s, 2 h, and one rental
        // without samples; one rental not assessed.
        let rentals: Vec<Rental> = [100_000, 101_500, 102_000, 145_000, 7_300_000, 5, 6]
            .map(rental)
            .to_vec();
        let last = [100_000, 100_000, 100_000, 100_000, 100_000];
        let mut scored = Scored {
            assessments: vec![Some(a.clone()); 6],
            duplicates: 0,
            last_sample: last.iter().map(|&t| Some(t)).collect(),
        };
        scored.assessments.push(None);
        scored.last_sample.extend([None, Some(0)]);
        let t = TailGaps::of(&rentals, &scored);
        assert_eq!((t.rentals_with_samples, t.rentals_without_samples), (5, 1));
        let counts: Vec<u64> = t.histogram.iter().map(|h| h.1).collect();
        assert_eq!(counts, vec![2, 1, 0, 1, 0, 0, 1]);
        assert_eq!(t.p50_s, Some(2.0));
        assert_eq!(t.max_s, Some(7200.0));
        assert_eq!(t.p99_s, Some(7200.0));
        let none = TailGaps::of(&[], &scored);
        assert_eq!((none.p50_s, none.max_s), (None, None));
    }
}
