//! Quality gates: the policies that hold a run back before wrong scores
//! reach customers. Each has a default threshold here and is reported
//! whether it passed or not.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Gate thresholds. A run whose observed value exceeds one is held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Largest tolerated share of telemetry rows rejected by the contract (0.01 = 1 %).
    pub max_rejected_telemetry_ratio: f64,
    /// Largest tolerated share of considered rentals left pending.
    pub max_pending_ratio: f64,
    /// Days that have rentals but no telemetry at all; more than this holds the run.
    pub max_days_without_telemetry: usize,
    /// Largest tolerated shift of the mean member score against the previous run, in points.
    pub max_member_score_shift: f64,
    /// Largest tolerated population stability index of member scores against the previous run.
    pub max_member_score_psi: f64,
    /// Scored members the drift gates need before they judge: the mean
    /// shift over this many members scored in both runs, the PSI over this
    /// many in each. Below it a shift or a PSI is noise (a young fleet, a
    /// watcher's first cycles), and the gates say so instead of holding.
    pub min_members_for_drift: usize,
    /// With a state: largest tolerated share of the rentals a run makes final
    /// that are `insufficient_coverage` (telemetry lost at the source).
    pub max_final_insufficient_coverage_ratio: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            max_rejected_telemetry_ratio: 0.01,
            max_pending_ratio: 0.20,
            max_days_without_telemetry: 0,
            max_member_score_shift: 3.0,
            max_member_score_psi: 0.2,
            min_members_for_drift: 100,
            max_final_insufficient_coverage_ratio: 0.05,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub gate: &'static str,
    /// False when the gate could not be evaluated (e.g. no previous run given).
    pub evaluated: bool,
    pub passed: bool,
    pub observed: Option<f64>,
    pub threshold: f64,
    pub detail: String,
}

/// What the drift gates compare: the member scores of the previous run and
/// of this one. Built from two maps of scores by member, or (a state run,
/// where few members change) from the previous scores and the changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drift {
    /// Over the members scored in both runs: the sum of their change.
    pub shift_sum: f64,
    /// Members scored in both runs.
    pub common: usize,
    /// Every member's score, previous and current (any order).
    pub previous: Vec<f64>,
    pub current: Vec<f64>,
}

impl Drift {
    pub fn between(prev: &HashMap<String, f64>, cur: &HashMap<String, f64>) -> Drift {
        // Summed in member order, so the total never depends on map order.
        let mut common: Vec<(&String, f64)> = cur
            .iter()
            .filter_map(|(m, &s)| prev.get(m).map(|&p| (m, s - p)))
            .collect();
        common.sort_by(|a, b| a.0.cmp(b.0));
        Drift {
            shift_sum: common.iter().map(|(_, d)| d).sum(),
            common: common.len(),
            previous: prev.values().copied().collect(),
            current: cur.values().copied().collect(),
        }
    }

    /// The previous scores moved by `moves`: (old, new) score of each
    /// member whose record changed, None where it had or has no score.
    pub fn moved(previous: Vec<f64>, moves: &[(Option<f64>, Option<f64>)]) -> Drift {
        let mut current = previous.clone();
        current.sort_by(f64::total_cmp);
        let mut olds: Vec<f64> = moves.iter().filter_map(|m| m.0).collect();
        olds.sort_by(f64::total_cmp);
        // The multiset difference of two sorted lists, then the new scores.
        let mut kept = Vec::with_capacity(current.len());
        let mut k = 0;
        for v in current {
            if k < olds.len() && olds[k].total_cmp(&v).is_eq() {
                k += 1;
            } else {
                kept.push(v);
            }
        }
        kept.extend(moves.iter().filter_map(|m| m.1));
        let lost = moves
            .iter()
            .filter(|m| m.0.is_some() && m.1.is_none())
            .count();
        let prev_scored = previous.len();
        Drift {
            shift_sum: moves.iter().filter_map(|m| Some(m.1? - m.0?)).sum(),
            common: prev_scored.saturating_sub(lost),
            previous,
            current: kept,
        }
    }
}

/// What the gates look at, gathered by the job.
#[derive(Debug, Clone, Default)]
pub struct GateInputs {
    pub telemetry_rows: u64,
    pub rejected_telemetry_rows: u64,
    pub considered_rentals: u64,
    pub pending_rentals: u64,
    /// Days (YYYY-MM-DD) that have considered rentals and no valid telemetry.
    pub days_without_telemetry: Vec<String>,
    /// The members' scores against the previous run's, when there is one.
    pub drift: Option<Drift>,
    /// With a state: rentals made final by the run, and how many of them
    /// were `insufficient_coverage`.
    pub made_final: Option<(u64, u64)>,
}

pub fn evaluate(cfg: &GateConfig, inp: &GateInputs) -> Vec<GateResult> {
    let mut out = vec![
        ratio_gate(
            "rejected_telemetry_rows",
            inp.rejected_telemetry_rows,
            inp.telemetry_rows,
            cfg.max_rejected_telemetry_ratio,
            "telemetry rows",
        ),
        ratio_gate(
            "pending_rentals",
            inp.pending_rentals,
            inp.considered_rentals,
            cfg.max_pending_ratio,
            "considered rentals",
        ),
        days_gate(cfg, &inp.days_without_telemetry),
    ];
    out.push(match inp.made_final {
        Some((total, lost)) => ratio_gate(
            "final_insufficient_coverage",
            lost,
            total,
            cfg.max_final_insufficient_coverage_ratio,
            "rentals made final insufficient_coverage",
        ),
        None => GateResult {
            gate: "final_insufficient_coverage",
            evaluated: false,
            passed: true,
            observed: None,
            threshold: cfg.max_final_insufficient_coverage_ratio,
            detail: "only runs with --state make rentals final".into(),
        },
    });
    match &inp.drift {
        Some(d) => out.extend(drift_gates(cfg, d)),
        None => {
            for (gate, threshold) in [
                ("member_score_shift", cfg.max_member_score_shift),
                ("member_score_psi", cfg.max_member_score_psi),
            ] {
                out.push(GateResult {
                    gate,
                    evaluated: false,
                    passed: true,
                    observed: None,
                    threshold,
                    detail: "no previous run given (--previous)".into(),
                });
            }
        }
    }
    out
}

fn ratio_gate(gate: &'static str, part: u64, whole: u64, threshold: f64, of: &str) -> GateResult {
    let ratio = if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    };
    GateResult {
        gate,
        evaluated: true,
        passed: ratio <= threshold,
        observed: Some(ratio),
        threshold,
        detail: format!("{part} of {whole} {of} ({:.2} %)", ratio * 100.0),
    }
}

fn days_gate(cfg: &GateConfig, days: &[String]) -> GateResult {
    let shown: Vec<&str> = days.iter().take(10).map(String::as_str).collect();
    GateResult {
        gate: "days_without_telemetry",
        evaluated: true,
        passed: days.len() <= cfg.max_days_without_telemetry,
        observed: Some(days.len() as f64),
        threshold: cfg.max_days_without_telemetry as f64,
        detail: if days.is_empty() {
            "every day with rentals has telemetry".into()
        } else {
            format!(
                "days with rentals and no telemetry: {}{}",
                shown.join(", "),
                if days.len() > 10 { ", …" } else { "" }
            )
        },
    }
}

fn drift_gates(cfg: &GateConfig, d: &Drift) -> Vec<GateResult> {
    let shift = if d.common == 0 {
        0.0
    } else {
        d.shift_sum / d.common as f64
    };
    let psi = psi(&d.previous, &d.current);
    let min = cfg.min_members_for_drift;
    let too_few = |gate, threshold, have: String| GateResult {
        gate,
        evaluated: false,
        passed: true,
        observed: None,
        threshold,
        detail: format!(
            "too few members to judge drift: {have}; it needs {min} (min_members_for_drift)"
        ),
    };
    let shift_gate = if d.common < min {
        too_few(
            "member_score_shift",
            cfg.max_member_score_shift,
            format!("{} scored in both runs", d.common),
        )
    } else {
        GateResult {
            gate: "member_score_shift",
            evaluated: true,
            passed: shift.abs() <= cfg.max_member_score_shift,
            observed: Some(shift),
            threshold: cfg.max_member_score_shift,
            detail: format!(
                "mean change {shift:+.2} points over {} members scored in both runs",
                d.common
            ),
        }
    };
    let (prev, cur) = (&d.previous, &d.current);
    let psi_gate = if prev.len().min(cur.len()) < min {
        too_few(
            "member_score_psi",
            cfg.max_member_score_psi,
            format!("{} previous, {} current members", prev.len(), cur.len()),
        )
    } else {
        GateResult {
            gate: "member_score_psi",
            evaluated: true,
            passed: psi <= cfg.max_member_score_psi,
            observed: Some(psi),
            threshold: cfg.max_member_score_psi,
            detail: format!(
                "PSI {psi:.4} over 10-point bins ({} previous, {} current members)",
                prev.len(),
                cur.len()
            ),
        }
    };
    vec![shift_gate, psi_gate]
}

/// Population stability index of `actual` against `expected` over ten
/// 10-point bins of the 0–100 score. Empty bins get a small floor so the
/// logarithm stays finite, as is customary.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    if expected.is_empty() || actual.is_empty() {
        return 0.0;
    }
    let (e, a) = (bin_shares(expected), bin_shares(actual));
    e.iter()
        .zip(&a)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(1e-4), a.max(1e-4));
            (a - e) * (a / e).ln()
        })
        .sum()
}

fn bin_shares(scores: &[f64]) -> [f64; 10] {
    let mut bins = [0.0; 10];
    for &s in scores {
        let i = ((s / 10.0).floor().max(0.0) as usize).min(9);
        bins[i] += 1.0;
    }
    bins.map(|c| c / scores.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
        pairs.iter().map(|(m, s)| (m.to_string(), *s)).collect()
    }

    fn gate<'a>(r: &'a [GateResult], name: &str) -> &'a GateResult {
        r.iter().find(|g| g.gate == name).expect("gate present")
    }

    #[test]
    fn lost_telemetry_in_more_than_5_percent_of_final_rentals_holds() {
        let cfg = GateConfig::default();
        let with = |made_final| GateInputs {
            made_final,
            ..Default::default()
        };
        let g =
            |inp: &GateInputs| gate(&evaluate(&cfg, inp), "final_insufficient_coverage").clone();
        assert!(g(&with(Some((100, 5)))).passed);
        let held = g(&with(Some((100, 6))));
        assert!(held.evaluated && !held.passed);
        let full_run = g(&with(None));
        assert!(!full_run.evaluated && full_run.passed);
        assert!(g(&with(Some((0, 0)))).passed);
    }

    #[test]
    fn rejected_rows_above_1_percent_hold() {
        let cfg = GateConfig::default();
        let ok = GateInputs {
            telemetry_rows: 1000,
            rejected_telemetry_rows: 10,
            ..Default::default()
        };
        assert!(gate(&evaluate(&cfg, &ok), "rejected_telemetry_rows").passed);
        let bad = GateInputs {
            telemetry_rows: 1000,
            rejected_telemetry_rows: 11,
            ..Default::default()
        };
        assert!(!gate(&evaluate(&cfg, &bad), "rejected_telemetry_rows").passed);
    }

    #[test]
    fn pending_above_20_percent_holds() {
        let cfg = GateConfig::default();
        let at = GateInputs {
            considered_rentals: 10,
            pending_rentals: 2,
            ..Default::default()
        };
        assert!(gate(&evaluate(&cfg, &at), "pending_rentals").passed);
        let over = GateInputs {
            considered_rentals: 10,
            pending_rentals: 3,
            ..Default::default()
        };
        assert!(!gate(&evaluate(&cfg, &over), "pending_rentals").passed);
    }

    #[test]
    fn a_day_without_telemetry_holds_and_is_named() {
        let inp = GateInputs {
            days_without_telemetry: vec!["2026-03-04".into()],
            ..Default::default()
        };
        let r = evaluate(&GateConfig::default(), &inp);
        let g = gate(&r, "days_without_telemetry");
        assert!(!g.passed);
        assert!(g.detail.contains("2026-03-04"));
    }

    #[test]
    fn drift_gates_are_not_evaluated_without_a_previous_run() {
        let r = evaluate(&GateConfig::default(), &GateInputs::default());
        let g = gate(&r, "member_score_psi");
        assert!(!g.evaluated && g.passed);
    }

    #[test]
    fn drift_is_not_judged_on_too_few_members() {
        let prev = scores(&[("a", 10.0), ("b", 20.0)]);
        let cur = scores(&[("a", 90.0), ("b", 95.0), ("c", 99.0)]);
        let inp = GateInputs {
            drift: Some(Drift::between(&prev, &cur)),
            ..Default::default()
        };
        let r = evaluate(&GateConfig::default(), &inp);
        for name in ["member_score_shift", "member_score_psi"] {
            let g = gate(&r, name);
            assert!(!g.evaluated && g.passed, "{name}: {g:?}");
            assert!(g.detail.contains("min_members_for_drift"), "{}", g.detail);
        }
        let strict = GateConfig {
            min_members_for_drift: 2,
            ..GateConfig::default()
        };
        let r = evaluate(&strict, &inp);
        assert!(!gate(&r, "member_score_shift").passed && !gate(&r, "member_score_psi").passed);
    }

    /// Thresholds that judge drift on a handful of members, as the small
    /// cases below have.
    fn few() -> GateConfig {
        GateConfig {
            min_members_for_drift: 1,
            ..GateConfig::default()
        }
    }

    #[test]
    fn mean_shift_above_3_points_holds() {
        let prev = scores(&[("a", 70.0), ("b", 80.0), ("gone", 10.0)]);
        let cur_ok = scores(&[("a", 73.0), ("b", 83.0), ("new", 99.0)]);
        let inp = GateInputs {
            drift: Some(Drift::between(&prev, &cur_ok)),
            ..Default::default()
        };
        let r = evaluate(&few(), &inp);
        assert_eq!(gate(&r, "member_score_shift").observed, Some(3.0));
        assert!(gate(&r, "member_score_shift").passed);
        let cur_bad = scores(&[("a", 66.0), ("b", 76.9)]);
        let inp = GateInputs {
            drift: Some(Drift::between(&prev, &cur_bad)),
            ..Default::default()
        };
        assert!(!gate(&evaluate(&few(), &inp), "member_score_shift").passed);
    }

    #[test]
    fn moved_scores_give_the_drift_two_maps_give() {
        let prev = scores(&[
            ("a", 70.0),
            ("b", 80.0),
            ("gone", 10.0),
            ("same", 50.0),
            ("lost", 60.0),
        ]);
        let cur = scores(&[("a", 73.0), ("b", 83.0), ("new", 99.0), ("same", 50.0)]);
        let moves = [
            (Some(70.0), Some(73.0)),
            (Some(80.0), Some(83.0)),
            (Some(10.0), None),
            (Some(60.0), None),
            (None, Some(99.0)),
        ];
        let mut want = Drift::between(&prev, &cur);
        let mut got = Drift::moved(prev.values().copied().collect(), &moves);
        for d in [&mut want, &mut got] {
            d.previous.sort_by(f64::total_cmp);
            d.current.sort_by(f64::total_cmp);
        }
        assert_eq!(got, want);
        assert_eq!((got.common, got.shift_sum), (3, 6.0));
    }

    #[test]
    fn psi_is_zero_for_equal_distributions_and_large_for_moved_ones() {
        let a: Vec<f64> = (0..100).map(|i| i as f64).collect();
        assert!(psi(&a, &a).abs() < 1e-12);
        let moved: Vec<f64> = a.iter().map(|s| (s + 30.0).min(100.0)).collect();
        assert!(psi(&a, &moved) > 0.2);
        // Score 100 falls in the top bin, not out of range.
        assert_eq!(bin_shares(&[100.0])[9], 1.0);
    }
}
