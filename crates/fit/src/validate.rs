//! How a model is judged on a period it did not see
//! (`score-model-fitting.md`, "Validation"): lift over deciles of predicted
//! risk with equal exposure, and the normalised Gini of the ordered Lorenz
//! curve with a seeded bootstrap interval.

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

/// Rentals ordered by risk, cut into ten groups of equal exposure. Rentals
/// of equal risk form one block that is spread over the deciles it spans in
/// proportion to exposure: ties are not broken by anything, least of all the
/// outcome, so the result never depends on the input's order.
pub fn lift(rows: &[Scored]) -> Lift {
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
    for block in blocks(rows, &ordered(rows)) {
        let (start, end) = (seen, seen + block.km);
        seen = end;
        if block.km <= 0.0 || total <= 0.0 {
            continue;
        }
        for (d, dec) in deciles.iter_mut().enumerate() {
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

/// Row indices by risk. Ties are merged by [`blocks`], so their order
/// decides nothing; it is still total (by every field) because float sums
/// depend on the order they are added in, and the figures must not depend
/// on the input's.
fn ordered(rows: &[Scored]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&rows[a], &rows[b]);
        x.risk
            .total_cmp(&y.risk)
            .then(x.km.total_cmp(&y.km))
            .then(x.claims.total_cmp(&y.claims))
            .then(x.expected.total_cmp(&y.expected))
    });
    order
}

/// Sums of consecutive rows of equal risk, in risk order.
struct Block {
    km: f64,
    claims: f64,
    expected: f64,
}

fn blocks(rows: &[Scored], order: &[usize]) -> Vec<Block> {
    weighted_blocks(rows, order, &|_| 1.0)
}

fn weighted_blocks(rows: &[Scored], order: &[usize], weight: &dyn Fn(usize) -> f64) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut last = f64::NAN;
    for &i in order {
        let (r, w) = (&rows[i], weight(i));
        if w == 0.0 {
            continue;
        }
        match out.last_mut() {
            Some(b) if r.risk.total_cmp(&last).is_eq() => {
                b.km += r.km * w;
                b.claims += r.claims * w;
                b.expected += r.expected * w;
            }
            _ => out.push(Block {
                km: r.km * w,
                claims: r.claims * w,
                expected: r.expected * w,
            }),
        }
        last = r.risk;
    }
    out
}

/// The Gini of the ordered Lorenz curve — rentals from the lowest predicted
/// risk up, cumulative share of exposure against cumulative share of
/// claims — with each rental counted `weight[i]` times (1 for the sample
/// itself, a bootstrap's multiplicities otherwise). Twice the area between
/// the diagonal and the curve: 0 for a model that orders nothing (one
/// block, a straight line).
fn gini_of(rows: &[Scored], order: &[usize], weight: &dyn Fn(usize) -> f64) -> f64 {
    let blocks = weighted_blocks(rows, order, weight);
    let km: f64 = blocks.iter().map(|b| b.km).sum();
    let claims: f64 = blocks.iter().map(|b| b.claims).sum();
    if km <= 0.0 || claims <= 0.0 {
        return 0.0;
    }
    let (mut y, mut area) = (0.0, 0.0);
    for b in &blocks {
        let (dx, dy) = (b.km / km, b.claims / claims);
        area += dx * (y + dy / 2.0);
        y += dy;
    }
    1.0 - 2.0 * area
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gini {
    /// The model's Gini over the Gini of ordering by the claims themselves.
    pub normalised: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub resamples: usize,
}

/// The normalised Gini and its percentile bootstrap interval: `resamples`
/// resamples of the rentals with replacement, from `seed`. The order is
/// computed once; a resample only changes how often each rental counts.
pub fn gini(rows: &[Scored], resamples: usize, seed: u64) -> Gini {
    let order = ordered(rows);
    let perfect = {
        let freq: Vec<Scored> = rows
            .iter()
            .map(|r| Scored {
                risk: if r.km > 0.0 { r.claims / r.km } else { 0.0 },
                ..*r
            })
            .collect();
        (ordered(&freq), freq)
    };
    let normalised = |w: &dyn Fn(usize) -> f64| {
        let best = gini_of(&perfect.1, &perfect.0, w);
        if best > 0.0 {
            gini_of(rows, &order, w) / best
        } else {
            0.0
        }
    };
    let point = normalised(&|_| 1.0);
    let mut rng = SplitMix(seed);
    let n = rows.len();
    let mut counts = vec![0u32; n];
    let mut draws: Vec<f64> = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        counts.iter_mut().for_each(|c| *c = 0);
        for _ in 0..n {
            counts[rng.below(n as u64) as usize] += 1;
        }
        draws.push(normalised(&|i| f64::from(counts[i])));
    }
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if draws.is_empty() {
            point
        } else {
            draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)]
        }
    };
    Gini {
        normalised: point,
        ci_low: at(0.025),
        ci_high: at(0.975),
        resamples,
    }
}

/// SplitMix64: a seeded, portable stream, so a bootstrap interval is the
/// same on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n) without modulo bias (Lemire's multiply-shift).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(risk: f64, km: f64, claims: f64) -> Scored {
        Scored {
            risk,
            km,
            claims,
            expected: risk * km,
        }
    }

    /// Risk that truly drives claims: claims = risk × km, in whole numbers.
    fn informative(n: usize) -> Vec<Scored> {
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
    fn a_model_that_orders_nothing_has_a_gini_near_zero_and_a_good_one_excludes_zero() {
        let rows = informative(4_000);
        let good = gini(&rows, 200, 1);
        assert!(good.normalised > 0.2 && good.ci_low > 0.0, "{good:?}");
        assert!(good.ci_low <= good.normalised && good.normalised <= good.ci_high);
        let blind: Vec<Scored> = rows.iter().map(|r| Scored { risk: 1.0, ..*r }).collect();
        let g = gini(&blind, 200, 1);
        // One block of equal risk: a straight Lorenz line, whatever the
        // claims inside it (ties never look at the outcome).
        assert!(
            g.normalised.abs() < 1e-12 && g.ci_low.abs() < 1e-12,
            "{g:?}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_interval_and_input_order_does_not_matter() {
        let rows = informative(2_000);
        let mut reversed = rows.clone();
        reversed.reverse();
        let (a, b) = (gini(&rows, 100, 7), gini(&rows, 100, 7));
        assert_eq!(a, b);
        assert_eq!(lift(&rows), lift(&reversed));
        assert_eq!(
            gini(&rows, 0, 7).normalised,
            gini(&reversed, 0, 7).normalised
        );
    }

    #[test]
    fn no_claims_or_no_rows_give_zero_not_nan() {
        let rows = vec![row(0.1, 10.0, 0.0), row(0.2, 10.0, 0.0)];
        assert_eq!(gini(&rows, 10, 1).normalised, 0.0);
        let l = lift(&[]);
        assert_eq!(l.worst_over_best, None);
        assert!(l.deciles.iter().all(|d| d.per_1000_km == 0.0));
    }
}
