//! The normalised Gini of the ordered Lorenz curve and its bootstrap
//! interval (`score-model-fitting.md`, "Validation").

use serde::Serialize;

use crate::validate::{Scored, ordered};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gini {
    /// The model's Gini over the Gini of ordering by the claims themselves.
    pub normalised: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub resamples: usize,
}

/// The normalised Gini of the ordered Lorenz curve — rentals from the
/// lowest predicted risk up, cumulative share of exposure against
/// cumulative share of claims, over the same curve ordered by the claims
/// themselves — and its 95 % percentile interval from `resamples`
/// bootstrap resamples drawn from `seed` on `threads` threads.
///
/// The resamples are Poisson bootstraps: each rental counts W ~ Poisson(1)
/// times, the large-sample equivalent of drawing n rentals with
/// replacement. Unlike a multinomial draw it needs no random access, so a
/// resample is one streaming pass over the rentals in risk order, and the
/// ordering itself is computed once. Resample r draws from its own stream
/// (seed, r): the interval does not depend on the thread count.
pub fn gini(rows: &[Scored], resamples: usize, seed: u64, threads: usize) -> Gini {
    let curve = Curve::new(rows);
    let point = curve.normalised(&mut |_| 1);
    let threads = threads.clamp(1, resamples.max(1));
    let mut draws: Vec<f64> = std::thread::scope(|scope| {
        let curve = &curve;
        let jobs: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..resamples)
                        .step_by(threads)
                        .map(|r| {
                            let mut rng =
                                SplitMix(seed ^ (r as u64).wrapping_mul(0xA24B_AED4_963E_E407));
                            let mut bits = Poisson1::default();
                            curve.normalised(&mut |_| bits.draw(&mut rng))
                        })
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| j.join().unwrap_or_default())
            .collect()
    });
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
        resamples: draws.len(),
    }
}

/// The ordered Lorenz curve as at most `points` + 1 points (cumulative
/// share of exposure, cumulative share of claims), from (0, 0) to (1, 1),
/// for plotting.
pub fn lorenz(rows: &[Scored], points: usize) -> Vec<(f64, f64)> {
    let curve = Curve::new(rows);
    let km: f64 = curve.km.iter().sum();
    let claims: f64 = curve.claims.iter().sum();
    let mut out = vec![(0.0, 0.0)];
    if km <= 0.0 || claims <= 0.0 {
        out.push((1.0, 1.0));
        return out;
    }
    let step = 1.0 / points.max(1) as f64;
    let (mut x, mut y) = (0.0, 0.0);
    for k in 0..curve.km.len() {
        x += curve.km[k] / km;
        y += curve.claims[k] / claims;
        let last = out.last().map_or(0.0, |p| p.0);
        if curve.block_end[k] && (x - last >= step || k + 1 == curve.km.len()) {
            out.push((x.min(1.0), y.min(1.0)));
        }
    }
    out
}

/// The rentals in risk order with their tie blocks marked, and the rentals
/// with claims in frequency order: all a Lorenz curve needs under any
/// weighting of the rentals.
struct Curve {
    km: Vec<f64>,
    claims: Vec<f64>,
    /// The last rental of its block of equal risk.
    block_end: Vec<bool>,
    /// For a rental with a positive claim frequency, its slot in `perfect`
    /// order's weights; u32::MAX otherwise.
    slot: Vec<u32>,
    /// Rentals with a positive frequency, lowest first: (slot, km, claims,
    /// last of its block of equal frequency). Every other rental has
    /// frequency 0 and forms the perfect curve's first block.
    perfect: Vec<(u32, f64, f64, bool)>,
}

impl Curve {
    fn new(rows: &[Scored]) -> Curve {
        let order = ordered(rows);
        let sorted: Vec<&Scored> = order.iter().map(|&i| &rows[i]).collect();
        let block_end = (0..sorted.len())
            .map(|k| {
                sorted
                    .get(k + 1)
                    .is_none_or(|n| n.risk.total_cmp(&sorted[k].risk).is_ne())
            })
            .collect();
        let freq = |r: &Scored| if r.km > 0.0 { r.claims / r.km } else { 0.0 };
        let mut positive: Vec<(usize, f64)> = sorted
            .iter()
            .enumerate()
            .filter(|(_, r)| freq(r) > 0.0)
            .map(|(k, r)| (k, freq(r)))
            .collect();
        // Slots in risk order; the perfect order sorts them by frequency
        // (then by position, only to be total: ties form one block).
        let mut slot = vec![u32::MAX; sorted.len()];
        for (s, (k, _)) in positive.iter().enumerate() {
            slot[*k] = s as u32;
        }
        let slots: Vec<u32> = positive.iter().map(|(k, _)| slot[*k]).collect();
        let mut by_freq: Vec<usize> = (0..positive.len()).collect();
        by_freq.sort_by(|&a, &b| positive[a].1.total_cmp(&positive[b].1).then(a.cmp(&b)));
        let perfect = by_freq
            .iter()
            .enumerate()
            .map(|(j, &a)| {
                let end = by_freq
                    .get(j + 1)
                    .is_none_or(|&b| positive[b].1.total_cmp(&positive[a].1).is_ne());
                let r = sorted[positive[a].0];
                (slots[a], r.km, r.claims, end)
            })
            .collect();
        positive.clear();
        Curve {
            km: sorted.iter().map(|r| r.km).collect(),
            claims: sorted.iter().map(|r| r.claims).collect(),
            block_end,
            slot,
            perfect,
        }
    }

    /// The normalised Gini with rental k (in risk order) counted weight(k) times.
    fn normalised(&self, weight: &mut dyn FnMut(usize) -> u32) -> f64 {
        let mut w_slot = vec![0u32; self.perfect.len()];
        let (mut km, mut claims, mut area) = (0.0, 0.0, 0.0);
        let (mut block_km, mut block_claims) = (0.0, 0.0);
        for k in 0..self.km.len() {
            let w = weight(k);
            if let Some(s) = w_slot.get_mut(self.slot[k] as usize) {
                *s = w;
            }
            let w = f64::from(w);
            block_km += w * self.km[k];
            block_claims += w * self.claims[k];
            if self.block_end[k] {
                area += block_claims * (km + block_km / 2.0);
                km += block_km;
                claims += block_claims;
                (block_km, block_claims) = (0.0, 0.0);
            }
        }
        if km <= 0.0 || claims <= 0.0 {
            return 0.0;
        }
        let model = 2.0 * area / (km * claims) - 1.0;
        let best = self.best(&w_slot, km, claims);
        if best > 0.0 { model / best } else { 0.0 }
    }

    /// The Gini of the curve ordered by the claims themselves, under the
    /// weights of the rentals with claims and the weighted totals.
    fn best(&self, w_slot: &[u32], km: f64, claims: f64) -> f64 {
        let (mut pos_km, mut pos_claims) = (0.0, 0.0);
        for &(s, k, c, _) in &self.perfect {
            let w = f64::from(w_slot[s as usize]);
            pos_km += w * k;
            pos_claims += w * c;
        }
        // The first block: every rental of frequency 0.
        let (zero_km, zero_claims) = ((km - pos_km).max(0.0), (claims - pos_claims).max(0.0));
        let mut area = zero_claims * zero_km / 2.0;
        let mut before = zero_km;
        let (mut block_km, mut block_claims) = (0.0, 0.0);
        for &(s, k, c, end) in &self.perfect {
            let w = f64::from(w_slot[s as usize]);
            block_km += w * k;
            block_claims += w * c;
            if end {
                area += block_claims * (before + block_km / 2.0);
                before += block_km;
                (block_km, block_claims) = (0.0, 0.0);
            }
        }
        2.0 * area / (km * claims) - 1.0
    }
}

/// Poisson(1) counts from 32-bit uniforms: the count is how many of the
/// distribution's cumulative probabilities the uniform reaches (counts
/// above 11, probability 1e-9, are counted as 11).
#[derive(Default)]
struct Poisson1 {
    spare: Option<u32>,
}

/// floor(2³² × P(W ≤ k)) for W ~ Poisson(1), k = 0..=10.
const POISSON1_CDF: [u64; 11] = {
    let mut t = [0u64; 11];
    // e⁻¹ Σ 1/j!, computed at compile time in f64 (exact to ~1e-16).
    let e_inv = 0.367_879_441_171_442_33_f64;
    let (mut term, mut sum, mut k) = (1.0f64, 0.0f64, 0);
    while k < 11 {
        sum += term;
        t[k] = (e_inv * sum * 4_294_967_296.0) as u64;
        k += 1;
        term /= k as f64;
    }
    t
};

impl Poisson1 {
    fn draw(&mut self, rng: &mut SplitMix) -> u32 {
        let u = match self.spare.take() {
            Some(u) => u,
            None => {
                let v = rng.next();
                self.spare = Some((v >> 32) as u32);
                v as u32
            }
        };
        let u = u64::from(u);
        POISSON1_CDF.iter().map(|&t| u32::from(u >= t)).sum()
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::lift;
    use crate::validate::tests::{informative, row};

    /// The Lorenz area the slow way: blocks of equal key, trapezoids.
    fn reference_gini(rows: &[Scored], key: &dyn Fn(&Scored) -> f64) -> f64 {
        let mut v: Vec<&Scored> = rows.iter().collect();
        v.sort_by(|a, b| key(a).total_cmp(&key(b)));
        let (km, claims): (f64, f64) = (
            v.iter().map(|r| r.km).sum(),
            v.iter().map(|r| r.claims).sum(),
        );
        let (mut y, mut area, mut k) = (0.0, 0.0, 0);
        while k < v.len() {
            let (mut dx, mut dy) = (0.0, 0.0);
            let here = key(v[k]);
            while k < v.len() && key(v[k]).total_cmp(&here).is_eq() {
                dx += v[k].km / km;
                dy += v[k].claims / claims;
                k += 1;
            }
            area += dx * (y + dy / 2.0);
            y += dy;
        }
        1.0 - 2.0 * area
    }

    #[test]
    fn a_model_that_orders_nothing_has_a_gini_near_zero_and_a_good_one_excludes_zero() {
        let rows = informative(4_000);
        let good = gini(&rows, 200, 1, 2);
        assert!(good.normalised > 0.2 && good.ci_low > 0.0, "{good:?}");
        assert!(good.ci_low <= good.normalised && good.normalised <= good.ci_high);
        let blind: Vec<Scored> = rows.iter().map(|r| Scored { risk: 1.0, ..*r }).collect();
        let g = gini(&blind, 200, 1, 2);
        // One block of equal risk: a straight Lorenz line, whatever the
        // claims inside it (ties never look at the outcome).
        assert!(
            g.normalised.abs() < 1e-12 && g.ci_low.abs() < 1e-12,
            "{g:?}"
        );
    }

    #[test]
    fn the_streaming_curve_matches_the_trapezoids() {
        let mut rows = informative(3_000);
        // Ties in risk, and a rental with a claim but no distance.
        rows[5].risk = rows[6].risk;
        rows[7] = row(0.002, 0.0, 1.0);
        let freq = |r: &Scored| if r.km > 0.0 { r.claims / r.km } else { 0.0 };
        let want = reference_gini(&rows, &|r| r.risk) / reference_gini(&rows, &freq);
        let got = gini(&rows, 0, 1, 1).normalised;
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn the_interval_does_not_depend_on_the_thread_count() {
        let rows = informative(2_000);
        assert_eq!(gini(&rows, 64, 3, 1), gini(&rows, 64, 3, 2));
        assert_ne!(gini(&rows, 64, 3, 1), gini(&rows, 64, 4, 1));
    }

    #[test]
    fn poisson_weights_have_mean_and_variance_one() {
        let (mut rng, mut p) = (SplitMix(9), Poisson1::default());
        let n = 400_000;
        let draws: Vec<f64> = (0..n).map(|_| f64::from(p.draw(&mut rng))).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (mean - 1.0).abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        let zeros = draws.iter().filter(|d| **d == 0.0).count() as f64 / n as f64;
        assert!((zeros - (-1.0f64).exp()).abs() < 0.005, "{zeros}");
    }

    #[test]
    fn no_claims_or_no_rows_give_zero_not_nan() {
        let rows = vec![row(0.1, 10.0, 0.0), row(0.2, 10.0, 0.0)];
        assert_eq!(gini(&rows, 10, 1, 1).normalised, 0.0);
        let l = lift(&[]);
        assert_eq!(l.worst_over_best, None);
        assert!(l.deciles.iter().all(|d| d.per_1000_km == 0.0));
    }
}
