//! How a model is judged on a period it did not see
//! (`score-model-fitting.md`, "Validation"): lift over deciles of predicted
//! risk with equal exposure, and the normalised Gini of the ordered Lorenz
//! curve with a seeded bootstrap interval (in [`crate::gini`]).

use serde::Serialize;

/// One rental of the validation period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The model's expected claims per km (its relative risk on any fixed scale).
    pub risk: f64,
    /// Exposure: the rental's distance, km.
    pub km: f64,
    /// At-fault claims of the rental.
    pub claims: f64,
    /// The model's expected claims for the rental (risk × km, calibrated).
    pub expected: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decile {
    pub decile: usize,
    pub km: f64,
    pub claims: f64,
    pub expected: f64,
    pub per_1000_km: f64,
    /// Actual over expected claims.
    pub actual_over_expected: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lift {
    pub deciles: Vec<Decile>,
    /// The worst decile's claim frequency over the best's (None when the best has none).
    pub worst_over_best: Option<f64>,
    /// Times a decile's frequency falls below the one before it.
    pub inversions: usize,
}

/// A model's rentals of the period with their order by risk: sorted once
/// for every figure that reads it (lift, Lorenz curve, Gini).
pub struct Ordered<'a> {
    pub rows: &'a [Scored],
    pub(crate) order: Vec<usize>,
}

impl<'a> Ordered<'a> {
    pub fn new(rows: &'a [Scored]) -> Ordered<'a> {
        Ordered {
            rows,
            order: ordered(rows),
        }
    }

    /// See [`lift`].
    pub fn lift(&self) -> Lift {
        lift_in(self.rows, &self.order)
    }
}

/// Rentals ordered by risk, cut into ten groups of equal exposure. Rentals
/// of equal risk form one block that is spread over the deciles it spans in
/// proportion to exposure: ties are not broken by anything, least of all the
/// outcome, so the result never depends on the input's order.
pub fn lift(rows: &[Scored]) -> Lift {
    Ordered::new(rows).lift()
}

fn lift_in(rows: &[Scored], order: &[usize]) -> Lift {
    let total: f64 = rows.iter().map(|r| r.km).sum();
    let mut deciles: Vec<Decile> = (0..10)
        .map(|d| Decile {
            decile: d + 1,
            km: 0.0,
            claims: 0.0,
            expected: 0.0,
            per_1000_km: 0.0,
            actual_over_expected: None,
        })
        .collect();
    let mut seen = 0.0;
    for block in blocks(rows, order) {
        let (start, end) = (seen, seen + block.km);
        seen = end;
        if block.km <= 0.0 || total <= 0.0 {
            continue;
        }
        // Only the deciles the block may overlap: the others' share is 0.
        let first = ((start / total * 10.0) as usize).saturating_sub(1);
        let last = ((end / total * 10.0) as usize + 1).min(9);
        for (d, dec) in deciles.iter_mut().enumerate().take(last + 1).skip(first) {
            let (lo, hi) = (total * d as f64 / 10.0, total * (d + 1) as f64 / 10.0);
            let share = ((end.min(hi) - start.max(lo)).max(0.0)) / block.km;
            dec.km += block.km * share;
            dec.claims += block.claims * share;
            dec.expected += block.expected * share;
        }
    }
    for d in &mut deciles {
        d.per_1000_km = if d.km > 0.0 {
            d.claims / d.km * 1000.0
        } else {
            0.0
        };
        d.actual_over_expected = (d.expected > 0.0).then(|| d.claims / d.expected);
    }
    let (best, worst) = (deciles[0].per_1000_km, deciles[9].per_1000_km);
    let inversions = deciles
        .windows(2)
        .filter(|w| w[1].per_1000_km < w[0].per_1000_km)
        .count();
    Lift {
        worst_over_best: (best > 0.0).then(|| worst / best),
        inversions,
        deciles,
    }
}

/// One rental judged by two models: the double-lift chart's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compared {
    pub km: f64,
    pub claims: f64,
    /// Each model's expected claims for the rental.
    pub candidate: f64,
    pub current: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoubleDecile {
    pub decile: usize,
    pub km: f64,
    pub claims: f64,
    /// Claims per 1,000 km: actual, and as each model expects them.
    pub actual_per_1000_km: f64,
    pub candidate_per_1000_km: f64,
    pub current_per_1000_km: f64,
}

/// Rentals sorted by the ratio of the two models' expectations, in ten
/// groups of equal exposure: where they disagree, which one the claims
/// side with. Both expectations are cut by the same order and blocks.
pub fn double_lift(rows: &[Compared]) -> Vec<DoubleDecile> {
    let ratio = |r: &Compared| {
        if r.current > 0.0 {
            r.candidate / r.current
        } else {
            0.0
        }
    };
    let scored = |expected: &dyn Fn(&Compared) -> f64| -> Vec<Scored> {
        rows.iter()
            .map(|r| Scored {
                risk: ratio(r),
                km: r.km,
                claims: r.claims,
                expected: expected(r),
            })
            .collect()
    };
    let (candidate, current) = (scored(&|r| r.candidate), scored(&|r| r.current));
    // One order for both: the risk (the ratio) is the same, only the
    // expectations summed differ.
    let order = ordered(&candidate);
    let (candidate, current) = (
        lift_in(&candidate, &order).deciles,
        lift_in(&current, &order).deciles,
    );
    let per_1000 = |v: f64, km: f64| if km > 0.0 { v / km * 1000.0 } else { 0.0 };
    candidate
        .iter()
        .zip(&current)
        .map(|(a, b)| DoubleDecile {
            decile: a.decile,
            km: a.km,
            claims: a.claims,
            actual_per_1000_km: a.per_1000_km,
            candidate_per_1000_km: per_1000(a.expected, a.km),
            current_per_1000_km: per_1000(b.expected, b.km),
        })
        .collect()
}

/// Row indices by risk. Ties are merged by [`blocks`], so their order
/// decides nothing; it is still total (by every field) because float sums
/// depend on the order they are added in, and the figures must not depend
/// on the input's.
pub(crate) fn ordered(rows: &[Scored]) -> Vec<usize> {
    // The keys are copied beside each index: a sort that compared through
    // the indices would jump across the rows at every comparison. The index
    // last makes the unstable sort's order the stable sort's.
    let mut keyed: Vec<([u64; 4], usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let k = [r.risk, r.km, r.claims, r.expected].map(total_order);
            (k, i)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// A key whose unsigned order is `f64::total_cmp`'s.
fn total_order(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | 1 << 63 }
}

/// Sums of consecutive rows of equal risk, in risk order.
struct Block {
    km: f64,
    claims: f64,
    expected: f64,
}

fn blocks(rows: &[Scored], order: &[usize]) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut last = f64::NAN;
    for &i in order {
        let r = &rows[i];
        match out.last_mut() {
            Some(b) if r.risk.total_cmp(&last).is_eq() => {
                b.km += r.km;
                b.claims += r.claims;
                b.expected += r.expected;
            }
            _ => out.push(Block {
                km: r.km,
                claims: r.claims,
                expected: r.expected,
            }),
        }
        last = r.risk;
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gini::gini;

    #[test]
    fn total_order_keys_sort_as_total_cmp() {
        let mut v = vec![
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            1.5,
            -1.5,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            3e300,
        ];
        let mut by_key = v.clone();
        v.sort_by(f64::total_cmp);
        by_key.sort_by_key(|x| total_order(*x));
        assert_eq!(
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            by_key.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

    pub(crate) fn row(risk: f64, km: f64, claims: f64) -> Scored {
        Scored {
            risk,
            km,
            claims,
            expected: risk * km,
        }
    }

    /// Risk that truly drives claims: claims = risk × km, in whole numbers.
    pub(crate) fn informative(n: usize) -> Vec<Scored> {
        (0..n)
            .map(|i| {
                let risk = 0.001 * (1 + i % 10) as f64;
                let km = 100.0 + (i % 7) as f64 * 10.0;
                let claims = if (i * 7919) % 100 < (risk * 1000.0 * 8.0) as usize {
                    1.0
                } else {
                    0.0
                };
                row(risk, km, claims)
            })
            .collect()
    }

    #[test]
    fn deciles_have_equal_exposure_and_rising_frequency_for_an_informative_model() {
        let rows = informative(5_000);
        let l = lift(&rows);
        let total: f64 = rows.iter().map(|r| r.km).sum();
        for d in &l.deciles {
            assert!(
                (d.km / total - 0.1).abs() < 0.01,
                "decile {} holds {:.3}",
                d.decile,
                d.km / total
            );
        }
        assert!(l.inversions <= 1, "{:?}", l.deciles);
        assert!(
            l.worst_over_best.is_some_and(|r| r > 2.5),
            "{:?}",
            l.worst_over_best
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_interval_and_input_order_does_not_matter() {
        let rows = informative(2_000);
        let mut reversed = rows.clone();
        reversed.reverse();
        let (a, b) = (gini(&rows, 100, 7, 1), gini(&rows, 100, 7, 1));
        assert_eq!(a, b);
        assert_eq!(lift(&rows), lift(&reversed));
        // The resamples weigh rentals by their place in the risk order,
        // so the whole interval, not only the point, ignores input order.
        assert_eq!(gini(&rows, 100, 7, 2), gini(&reversed, 100, 7, 1));
    }

    #[test]
    fn double_lift_sides_with_the_model_that_knows_the_claims() {
        // Claims follow `risk`; the candidate knows it, the current model is flat.
        let rows: Vec<Compared> = informative(5_000)
            .iter()
            .map(|r| Compared {
                km: r.km,
                claims: r.claims,
                candidate: r.risk * r.km,
                current: 0.0055 * r.km,
            })
            .collect();
        let d = double_lift(&rows);
        assert_eq!(d.len(), 10);
        let (low, high) = (&d[0], &d[9]);
        assert!(
            high.actual_per_1000_km > 2.0 * low.actual_per_1000_km,
            "{d:?}"
        );
        // The current model expects the same everywhere, the candidate what happened.
        assert!((low.current_per_1000_km - high.current_per_1000_km).abs() < 1e-9);
        assert!(high.candidate_per_1000_km > low.candidate_per_1000_km);
    }
}
