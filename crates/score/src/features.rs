//! Per-rental features from a car's deduplicated, ts-ordered samples
//! (spec: "Features of one rental").

use serde::Serialize;

use crate::model::EventParams;

/// One telemetry sample of a car. `limit_kmh` is NaN where the road's limit
/// is unknown: a plain f64 keeps the struct at 24 bytes, which matters when
/// millions of samples are sorted.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Milliseconds since the Unix epoch, UTC.
    pub ts: i64,
    pub speed_kmh: f64,
    pub limit_kmh: f64,
}

impl Sample {
    pub fn new(ts: i64, speed_kmh: f64, limit_kmh: Option<f64>) -> Self {
        Sample {
            ts,
            speed_kmh,
            limit_kmh: limit_kmh.unwrap_or(f64::NAN),
        }
    }

    pub fn limit(&self) -> Option<f64> {
        (!self.limit_kmh.is_nan()).then_some(self.limit_kmh)
    }
}

/// Two unknown limits are equal, whatever NaN bits they carry.
impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        self.ts == other.ts && self.speed_kmh == other.speed_kmh && self.limit() == other.limit()
    }
}

/// Sorts samples by ts and keeps one per ts: the lowest speed, then the
/// lowest known limit (unknown last). That total order is what makes the
/// result independent of the order in which rows were read. Returns the
/// number of duplicate rows removed.
pub fn sort_dedup(samples: &mut Vec<Sample>) -> usize {
    samples.sort_unstable_by(|a, b| {
        a.ts.cmp(&b.ts)
            .then(a.speed_kmh.total_cmp(&b.speed_kmh))
            .then(limit_order(a.limit_kmh).total_cmp(&limit_order(b.limit_kmh)))
    });
    let before = samples.len();
    samples.dedup_by_key(|s| s.ts);
    before - samples.len()
}

/// NaN payloads differ between sources; map every unknown limit to +inf so
/// unknown sorts after any known limit, whatever bits the NaN carried.
fn limit_order(limit: f64) -> f64 {
    if limit.is_nan() { f64::INFINITY } else { limit }
}

/// The index range of `samples` (sorted by ts) with start ≤ ts ≤ end.
pub fn rental_slice(samples: &[Sample], start: i64, end: i64) -> &[Sample] {
    let lo = samples.partition_point(|s| s.ts < start);
    let hi = samples.partition_point(|s| s.ts <= end);
    &samples[lo..hi.max(lo)]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Features {
    pub samples: u32,
    pub coverage: f64,
    pub distance_km: f64,
    pub moving_s: u32,
    pub speeding_s: u32,
    pub excess_speeding_s: u32,
    pub harsh_accel_n: u32,
    pub harsh_brake_n: u32,
    pub unstable_stop_n: u32,
}

impl Features {
    /// The seven counts in the order rental results store them
    /// (samples, moving_s, speeding_s, excess_speeding_s, harsh_accel_n,
    /// harsh_brake_n, unstable_stop_n).
    pub fn counts(&self) -> [u32; 7] {
        [
            self.samples,
            self.moving_s,
            self.speeding_s,
            self.excess_speeding_s,
            self.harsh_accel_n,
            self.harsh_brake_n,
            self.unstable_stop_n,
        ]
    }

    /// Features from [`counts`](Self::counts) and the two measures.
    pub fn from_counts(counts: [u32; 7], coverage: f64, distance_km: f64) -> Features {
        let [
            samples,
            moving_s,
            speeding_s,
            excess_speeding_s,
            harsh_accel_n,
            harsh_brake_n,
            unstable_stop_n,
        ] = counts;
        Features {
            samples,
            coverage,
            distance_km,
            moving_s,
            speeding_s,
            excess_speeding_s,
            harsh_accel_n,
            harsh_brake_n,
            unstable_stop_n,
        }
    }
}

/// Samples expected at 1 Hz over [start, end]: floor((end − start) / 1 s) + 1.
pub fn expected_samples(start: i64, end: i64) -> i64 {
    (end - start).div_euclid(1000) + 1
}

/// Features of one rental from its samples (deduplicated, ts order, all
/// within [start, end]).
pub fn rental_features(samples: &[Sample], start: i64, end: i64, p: &EventParams) -> Features {
    let mut f = Features {
        samples: count(samples.len()),
        coverage: coverage(samples.len(), start, end),
        ..Features::default()
    };
    for s in samples {
        if s.speed_kmh > p.moving_above_kmh {
            f.moving_s += 1;
        }
        if let Some(limit) = s.limit() {
            if s.speed_kmh > limit + p.speeding_over_limit_kmh {
                f.speeding_s += 1;
            }
            if s.speed_kmh > limit + p.excess_speeding_over_limit_kmh {
                f.excess_speeding_s += 1;
            }
        }
    }
    let mut accel = RunCounter::default();
    let mut brake = RunCounter::default();
    for i in 1..samples.len() {
        let (prev, cur) = (samples[i - 1], samples[i]);
        let dt_ms = cur.ts - prev.ts;
        // A gap (a pair that is not adjacent) breaks any run.
        let (harsh_accel, harsh_brake) = if dt_ms > 0 && dt_ms <= p.adjacent_max_gap_ms {
            let dt_s = dt_ms as f64 / 1000.0;
            f.distance_km += (prev.speed_kmh + cur.speed_kmh) / 2.0 * dt_s / 3600.0;
            let rate = (cur.speed_kmh - prev.speed_kmh) / dt_s;
            (
                rate >= p.harsh_accel_kmh_per_s,
                rate <= -p.harsh_brake_kmh_per_s,
            )
        } else {
            (false, false)
        };
        accel.pair(harsh_accel);
        // A run that ends at pair (i-1, i) had sample i-1 as its last.
        if brake.pair(harsh_brake) {
            f.unstable_stop_n += u32::from(stands_still_after(i - 1, samples, p));
        }
    }
    if brake.in_run {
        f.unstable_stop_n += u32::from(stands_still_after(samples.len() - 1, samples, p));
    }
    f.harsh_accel_n = accel.runs;
    f.harsh_brake_n = brake.runs;
    f
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn coverage(samples: usize, start: i64, end: i64) -> f64 {
    let expected = expected_samples(start, end);
    if expected <= 0 {
        return 0.0;
    }
    (samples as f64 / expected as f64).min(1.0)
}

/// Counts maximal runs of qualifying pairs: a run starts at the first
/// qualifying pair after a non-qualifying one.
#[derive(Default)]
struct RunCounter {
    runs: u32,
    in_run: bool,
}

impl RunCounter {
    /// Returns true when this pair ended a run.
    fn pair(&mut self, qualifies: bool) -> bool {
        let ended = self.in_run && !qualifies;
        if qualifies && !self.in_run {
            self.runs += 1;
        }
        self.in_run = qualifies;
        ended
    }
}

/// An unstable stop: some sample k with ts_end ≤ ts_k ≤ ts_end + window has
/// speed ≤ stop_at_most_kmh, where ts_end is the ts of the run's last sample.
fn stands_still_after(last: usize, samples: &[Sample], p: &EventParams) -> bool {
    let ts_end = samples[last].ts;
    samples[last..]
        .iter()
        .take_while(|s| s.ts <= ts_end + p.stop_within_ms)
        .any(|s| s.speed_kmh <= p.stop_at_most_kmh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    fn params() -> EventParams {
        Model::default().events
    }

    /// Samples at 1 s steps from t=0 with the given speeds and an unknown limit.
    fn at_1hz(speeds: &[f64]) -> Vec<Sample> {
        speeds
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample::new(i as i64 * 1000, v, None))
            .collect()
    }

    fn features_of(samples: &[Sample]) -> Features {
        let end = samples.last().map_or(0, |s| s.ts);
        rental_features(samples, 0, end, &params())
    }

    #[test]
    fn empty_rental_has_zero_features() {
        let f = rental_features(&[], 0, 9_999, &params());
        assert_eq!(f, Features::default());
    }

    #[test]
    fn coverage_counts_expected_samples_inclusive_and_caps_at_one() {
        assert_eq!(expected_samples(0, 9_999), 10);
        assert_eq!(expected_samples(0, 10_000), 11);
        let f = rental_features(&at_1hz(&[0.0; 5]), 0, 9_999, &params());
        assert_eq!(f.coverage, 0.5);
        // Jittered clocks can deliver more samples than whole seconds.
        let jittered: Vec<Sample> = (0..12).map(|i| Sample::new(i * 900, 0.0, None)).collect();
        assert_eq!(
            rental_features(&jittered, 0, 9_999, &params()).coverage,
            1.0
        );
    }

    #[test]
    fn distance_is_trapezoidal_over_adjacent_pairs_only() {
        // 36 km/h for 10 pairs of 1 s = 100 m.
        let f = features_of(&at_1hz(&[36.0; 11]));
        assert!((f.distance_km - 0.1).abs() < 1e-12, "{}", f.distance_km);
        // A 2 s gap is not an adjacent pair: it adds no distance.
        let gap = vec![Sample::new(0, 36.0, None), Sample::new(2_000, 36.0, None)];
        assert_eq!(features_of(&gap).distance_km, 0.0);
        // 1.5 s is still adjacent (boundary inclusive).
        let edge = vec![Sample::new(0, 36.0, None), Sample::new(1_500, 36.0, None)];
        assert!((features_of(&edge).distance_km - 0.015).abs() < 1e-12);
    }

    #[test]
    fn moving_counts_samples_strictly_above_5() {
        let f = features_of(&at_1hz(&[0.0, 5.0, 5.1, 30.0]));
        assert_eq!(f.moving_s, 2);
    }

    #[test]
    fn speeding_needs_a_known_limit_and_strict_excess() {
        let s = vec![
            Sample::new(0, 60.0, Some(50.0)),     // +10: not speeding
            Sample::new(1_000, 60.1, Some(50.0)), // speeding
            Sample::new(2_000, 90.0, Some(50.0)), // +40: speeding, not excess
            Sample::new(3_000, 91.0, Some(50.0)), // excess
            Sample::new(4_000, 200.0, None),      // unknown limit: neither
        ];
        let f = features_of(&s);
        assert_eq!(f.speeding_s, 3);
        assert_eq!(f.excess_speeding_s, 1);
    }

    #[test]
    fn harsh_accel_counts_maximal_runs_once() {
        // +10, +10, +10 is one run; then +5 breaks it; then +12 a second run.
        let f = features_of(&at_1hz(&[0.0, 10.0, 20.0, 30.0, 35.0, 47.0]));
        assert_eq!(f.harsh_accel_n, 2);
        // +9.99 does not qualify.
        assert_eq!(features_of(&at_1hz(&[0.0, 9.99])).harsh_accel_n, 0);
    }

    #[test]
    fn a_gap_breaks_a_run_and_never_forms_a_pair() {
        let s = vec![
            Sample::new(0, 0.0, None),
            Sample::new(1_000, 12.0, None),
            // 1.6 s later: not adjacent, so neither a qualifying pair nor part of the run.
            Sample::new(2_600, 40.0, None),
            Sample::new(3_600, 52.0, None),
        ];
        assert_eq!(features_of(&s).harsh_accel_n, 2);
        // Without adjacency a huge jump is no event at all.
        let jump = vec![Sample::new(0, 0.0, None), Sample::new(5_000, 100.0, None)];
        assert_eq!(features_of(&jump).harsh_accel_n, 0);
    }

    #[test]
    fn rate_uses_the_real_interval_under_jitter() {
        // +11 km/h over 1.2 s is 9.17 km/h/s: not harsh. Over 0.9 s: harsh.
        let slow = vec![Sample::new(0, 0.0, None), Sample::new(1_200, 11.0, None)];
        let fast = vec![Sample::new(0, 0.0, None), Sample::new(900, 9.5, None)];
        assert_eq!(features_of(&slow).harsh_accel_n, 0);
        assert_eq!(features_of(&fast).harsh_accel_n, 1);
    }

    #[test]
    fn harsh_brake_runs_and_unstable_stop_within_3s() {
        // Brake 50 → 30 → 10 (one run ending at t=2 s), then 6 at 3 s, 4 at 5 s:
        // 4 km/h at t=5 s is exactly 3 s after the run's last sample.
        let f = features_of(&at_1hz(&[50.0, 30.0, 10.0, 6.0, 6.0, 4.0]));
        assert_eq!(f.harsh_brake_n, 1);
        assert_eq!(f.unstable_stop_n, 1);
    }

    #[test]
    fn stop_after_3s_is_not_unstable() {
        // Run ends at t=2 s; speed drops to ≤5 only at t=6 s.
        let f = features_of(&at_1hz(&[50.0, 30.0, 10.0, 8.0, 7.0, 6.0, 5.0]));
        assert_eq!(f.harsh_brake_n, 1);
        assert_eq!(f.unstable_stop_n, 0);
    }

    #[test]
    fn braking_to_a_standstill_at_the_runs_last_sample_is_unstable() {
        let f = features_of(&at_1hz(&[40.0, 20.0, 0.0]));
        assert_eq!((f.harsh_brake_n, f.unstable_stop_n), (1, 1));
    }

    #[test]
    fn stop_window_is_limited_to_the_rentals_samples() {
        // Brake run ends at the rental's last sample at 12 km/h: nothing after it.
        let f = features_of(&at_1hz(&[40.0, 22.0, 12.0]));
        assert_eq!((f.harsh_brake_n, f.unstable_stop_n), (1, 0));
    }

    #[test]
    fn a_gap_ends_a_brake_run_at_the_sample_before_it() {
        // Run ends at t=1 s (speed 20); next sample 2 s later at 0 km/h, within 3 s.
        let s = vec![
            Sample::new(0, 40.0, None),
            Sample::new(1_000, 20.0, None),
            Sample::new(3_000, 0.0, None),
        ];
        let f = features_of(&s);
        assert_eq!((f.harsh_brake_n, f.unstable_stop_n), (1, 1));
    }

    #[test]
    fn dedup_keeps_lowest_speed_then_known_lowest_limit() {
        let mut s = vec![
            Sample::new(2_000, 30.0, Some(50.0)),
            Sample::new(1_000, 20.0, None),
            Sample::new(1_000, 10.0, None),
            Sample::new(2_000, 30.0, None),
            Sample::new(2_000, 30.0, Some(40.0)),
            Sample::new(1_000, 10.0, None),
        ];
        let removed = sort_dedup(&mut s);
        assert_eq!(removed, 4);
        assert_eq!(s[0], Sample::new(1_000, 10.0, None));
        assert_eq!(s[1].limit(), Some(40.0));
    }

    #[test]
    fn slice_is_inclusive_at_both_ends() {
        let s = at_1hz(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let r = rental_slice(&s, 1_000, 3_000);
        assert_eq!(r.len(), 3);
        assert_eq!(rental_slice(&s, 10_000, 20_000).len(), 0);
    }
}
