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

/// The normalised Gini of one model; see [`ginis`].
pub fn gini(rows: &[Scored], resamples: usize, seed: u64, threads: usize) -> Gini {
    ginis(&[rows], resamples, seed, threads)
        .pop()
        .unwrap_or(Gini {
            normalised: 0.0,
            ci_low: 0.0,
            ci_high: 0.0,
            resamples: 0,
        })
}

/// The normalised Gini of the ordered Lorenz curve — rentals from the
/// lowest predicted risk up, cumulative share of exposure against
/// cumulative share of claims, over the same curve ordered by the claims
/// themselves — of each model, with its 95 % percentile interval from
/// `resamples` bootstrap resamples drawn from `seed` on `threads` threads.
/// Every slice holds the same rentals in the same order (only the risk
/// differs): each resample weighs the rentals once for all models, so the
/// models are compared on the same resamples.
///
/// The resamples are Poisson bootstraps: each rental counts W ~ Poisson(1)
/// times, the large-sample equivalent of drawing n rentals with
/// replacement. Unlike a multinomial draw it needs no random access: a
/// resample is one streaming pass to draw the weights and one over each
/// model's risk order, which is computed once. Resample r draws from its
/// own stream (seed, r), so the interval does not depend on the thread count.
pub fn ginis(models: &[&[Scored]], resamples: usize, seed: u64, threads: usize) -> Vec<Gini> {
    let n = models.first().map_or(0, |m| m.len());
    let mut curves: Vec<Curve> = models.iter().map(|m| Curve::new(m)).collect();
    let Some(first) = curves.first() else {
        return Vec::new();
    };
    // Rentals are weighed by their place in the first model's order: its
    // pass then reads the weights in sequence, and the draws do not depend
    // on the order the rentals were given in.
    let mut place = vec![0u32; n];
    for (k, &r) in first.row.iter().enumerate() {
        place[r as usize] = k as u32;
    }
    let mut perfect = Perfect::new(models[0], &place);
    for rows in curves
        .iter_mut()
        .map(|c| &mut c.row)
        .chain([&mut perfect.row])
    {
        rows.iter_mut().for_each(|r| *r = place[*r as usize]);
    }
    let ones = vec![[1u8; LANES]; n];
    let point: Vec<f64> = normalised(&curves, &ones, &perfect)
        .iter()
        .map(|g| g[0])
        .collect();
    let batches = resamples.div_ceil(LANES);
    let threads = threads.clamp(1, batches.max(1));
    // (resample, one Gini per model) from every thread.
    let draws: Vec<(usize, Vec<f64>)> = std::thread::scope(|scope| {
        let (curves, perfect) = (&curves, &perfect);
        let jobs: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut w = vec![[0u8; LANES]; n];
                    let mut out = Vec::new();
                    for b in (t..batches).step_by(threads) {
                        let seeds: [u64; LANES] = std::array::from_fn(|lane| {
                            let r = (b * LANES + lane) as u64;
                            seed ^ r.wrapping_mul(0xA24B_AED4_963E_E407)
                        });
                        poisson_weights(&mut w, seeds);
                        let per_model = normalised(curves, &w, perfect);
                        for lane in 0..LANES {
                            let r = b * LANES + lane;
                            if r < resamples {
                                out.push((r, per_model.iter().map(|g| g[lane]).collect()));
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| j.join().unwrap_or_default())
            .collect()
    });
    (0..curves.len())
        .map(|m| {
            let mut draws: Vec<f64> = draws.iter().map(|d| d.1[m]).collect();
            draws.sort_by(f64::total_cmp);
            let at = |q: f64| {
                if draws.is_empty() {
                    point[m]
                } else {
                    draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)]
                }
            };
            Gini {
                normalised: point[m],
                ci_low: at(0.025),
                ci_high: at(0.975),
                resamples: draws.len(),
            }
        })
        .collect()
}

/// Resamples weighed in one pass over a curve: each rental's weights of
/// LANES resamples sit side by side, so the pass reads the curve once for
/// all of them and their sums run as independent chains.
const LANES: usize = 8;

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

/// One model's rentals in risk order with their tie blocks marked.
struct Curve {
    /// The rental (its index in the input) at each position.
    row: Vec<u32>,
    km: Vec<f64>,
    claims: Vec<f64>,
    /// The last rental of its block of equal risk.
    block_end: Vec<bool>,
    runs: Vec<Run>,
}

/// The rentals with a positive claim frequency in frequency order, with
/// their blocks of equal frequency: the curve ordered by the claims
/// themselves. Every other rental has frequency 0 and forms its first block.
struct Perfect {
    row: Vec<u32>,
    km: Vec<f64>,
    claims: Vec<f64>,
    block_end: Vec<bool>,
    runs: Vec<Run>,
}

/// The borrowed view `area` reads, of a curve or of the perfect order.
macro_rules! order_view {
    ($t:ty) => {
        impl $t {
            fn order(&self) -> Order<'_> {
                Order {
                    row: &self.row,
                    km: &self.km,
                    claims: &self.claims,
                    block_end: &self.block_end,
                    runs: &self.runs,
                }
            }
        }
    };
}
order_view!(Curve);
order_view!(Perfect);

/// The Lorenz area of rentals in a fixed order under each lane's
/// weights: Σ over blocks of claims × (exposure before + half the block's
/// own), with the exposure and claims the order adds.
struct Areas {
    area: [f64; LANES],
    km: [f64; LANES],
    claims: [f64; LANES],
}

/// Stretches of an order: `simple` ones hold only rentals without claims,
/// each its own block, which add exposure and nothing to the area — most
/// rentals — so a pass spends on them one product per resample.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    simple: bool,
}

fn runs(claims: &[f64], block_end: &[bool]) -> Vec<Run> {
    let simple = |k: usize| claims[k] == 0.0 && block_end[k] && (k == 0 || block_end[k - 1]);
    let mut out: Vec<Run> = Vec::new();
    for k in 0..claims.len() {
        let s = simple(k);
        match out.last_mut() {
            Some(r) if r.simple == s => r.end = k + 1,
            _ => out.push(Run {
                start: k,
                end: k + 1,
                simple: s,
            }),
        }
    }
    out
}

struct Order<'a> {
    row: &'a [u32],
    km: &'a [f64],
    claims: &'a [f64],
    block_end: &'a [bool],
    runs: &'a [Run],
}

fn area(o: &Order<'_>, w: &[[u8; LANES]], km_before: [f64; LANES]) -> Areas {
    let mut before = km_before;
    let (mut area, mut total) = ([0.0; LANES], [0.0; LANES]);
    let (mut block_km, mut block_claims) = ([0.0; LANES], [0.0; LANES]);
    for run in o.runs {
        if run.simple {
            for k in run.start..run.end {
                let (ws, x) = (&w[o.row[k] as usize], o.km[k]);
                for l in 0..LANES {
                    before[l] += f64::from(ws[l]) * x;
                }
            }
            continue;
        }
        for k in run.start..run.end {
            let ws = &w[o.row[k] as usize];
            let (x, c) = (o.km[k], o.claims[k]);
            for l in 0..LANES {
                let wl = f64::from(ws[l]);
                block_km[l] += wl * x;
                block_claims[l] += wl * c;
            }
            if o.block_end[k] {
                for l in 0..LANES {
                    area[l] += block_claims[l] * (before[l] + block_km[l] / 2.0);
                    before[l] += block_km[l];
                    total[l] += block_claims[l];
                }
                (block_km, block_claims) = ([0.0; LANES], [0.0; LANES]);
            }
        }
    }
    let mut added = before;
    for l in 0..LANES {
        added[l] -= km_before[l];
    }
    Areas {
        area,
        km: added,
        claims: total,
    }
}

fn block_ends(n: usize, same: impl Fn(usize, usize) -> bool) -> Vec<bool> {
    (0..n).map(|k| k + 1 == n || !same(k, k + 1)).collect()
}

impl Curve {
    fn new(rows: &[Scored]) -> Curve {
        let order = ordered(rows);
        let block_end = block_ends(order.len(), |a, b| {
            rows[order[a]].risk.total_cmp(&rows[order[b]].risk).is_eq()
        });
        let claims: Vec<f64> = order.iter().map(|&i| rows[i].claims).collect();
        Curve {
            km: order.iter().map(|&i| rows[i].km).collect(),
            runs: runs(&claims, &block_end),
            claims,
            row: order.iter().map(|&i| i as u32).collect(),
            block_end,
        }
    }
}

/// The normalised Gini of each model in each lane, rental i counted
/// w[i][lane] times. The perfect order's Gini is the same for every model:
/// it is found once, from the first model's totals (the others' differ
/// only in the order of their sums).
fn normalised(curves: &[Curve], w: &[[u8; LANES]], perfect: &Perfect) -> Vec<[f64; LANES]> {
    let areas: Vec<Areas> = curves
        .iter()
        .map(|c| area(&c.order(), w, [0.0; LANES]))
        .collect();
    let Some(first) = areas.first() else {
        return Vec::new();
    };
    let best = perfect.gini(w, &first.km, &first.claims);
    areas
        .iter()
        .map(|a| {
            let mut out = [0.0; LANES];
            for l in 0..LANES {
                let (km, claims) = (a.km[l], a.claims[l]);
                if km > 0.0 && claims > 0.0 && best[l] > 0.0 {
                    out[l] = (2.0 * a.area[l] / (km * claims) - 1.0) / best[l];
                }
            }
            out
        })
        .collect()
}

impl Perfect {
    /// `place`: each rental's position in the first model's order, which
    /// breaks ties (only to make the sums' order total: ties form one block).
    fn new(rows: &[Scored], place: &[u32]) -> Perfect {
        let freq = |r: &Scored| if r.km > 0.0 { r.claims / r.km } else { 0.0 };
        let mut order: Vec<usize> = (0..rows.len()).filter(|&i| freq(&rows[i]) > 0.0).collect();
        order.sort_by(|&a, &b| {
            freq(&rows[a])
                .total_cmp(&freq(&rows[b]))
                .then(place[a].cmp(&place[b]))
        });
        let block_end = block_ends(order.len(), |a, b| {
            freq(&rows[order[a]])
                .total_cmp(&freq(&rows[order[b]]))
                .is_eq()
        });
        let claims: Vec<f64> = order.iter().map(|&i| rows[i].claims).collect();
        Perfect {
            km: order.iter().map(|&i| rows[i].km).collect(),
            runs: runs(&claims, &block_end),
            claims,
            row: order.iter().map(|&i| i as u32).collect(),
            block_end,
        }
    }

    /// The Gini of the curve ordered by the claims, given each lane's
    /// weighted totals.
    fn gini(&self, w: &[[u8; LANES]], km: &[f64; LANES], claims: &[f64; LANES]) -> [f64; LANES] {
        let (mut pos_km, mut pos_claims) = ([0.0; LANES], [0.0; LANES]);
        for (j, &i) in self.row.iter().enumerate() {
            let ws = &w[i as usize];
            for l in 0..LANES {
                pos_km[l] += f64::from(ws[l]) * self.km[j];
                pos_claims[l] += f64::from(ws[l]) * self.claims[j];
            }
        }
        // The first block: every rental of frequency 0 (claims only from
        // rentals with claims but no distance).
        let mut zero_km = [0.0; LANES];
        for l in 0..LANES {
            zero_km[l] = (km[l] - pos_km[l]).max(0.0);
        }
        let a = area(&self.order(), w, zero_km);
        let mut out = [0.0; LANES];
        for l in 0..LANES {
            if km[l] > 0.0 && claims[l] > 0.0 {
                let zero_claims = (claims[l] - pos_claims[l]).max(0.0);
                out[l] =
                    2.0 * (a.area[l] + zero_claims * zero_km[l] / 2.0) / (km[l] * claims[l]) - 1.0;
            }
        }
        out
    }
}

/// Fills each lane of `w` with Poisson(1) counts from its stream: each 32-bit
/// uniform is looked up by its top byte, and only in the few bytes where a
/// cumulative probability falls is it compared with them (counts above 10,
/// probability 1e-8, are counted as 10).
fn poisson_weights(w: &mut [[u8; LANES]], seeds: [u64; LANES]) {
    let mut rngs = seeds.map(SplitMix);
    for pair in w.chunks_mut(2) {
        for (l, rng) in rngs.iter_mut().enumerate() {
            let v = rng.next();
            for (slot, u) in pair.iter_mut().zip([v as u32, (v >> 32) as u32]) {
                slot[l] = poisson1(u);
            }
        }
    }
}

/// floor(2³² × P(W ≤ k)) for W ~ Poisson(1), k = 0..=9.
const POISSON1_CDF: [u64; 10] = {
    let mut t = [0u64; 10];
    let e_inv = 0.367_879_441_171_442_33_f64;
    let (mut term, mut sum, mut k) = (1.0f64, 0.0f64, 0);
    while k < 10 {
        sum += term;
        t[k] = (e_inv * sum * 4_294_967_296.0) as u64;
        k += 1;
        term /= k as f64;
    }
    t
};

/// By the top byte of a uniform: its count when no threshold falls inside
/// the byte's range, else 255 (compare).
const POISSON1_BY_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let (lo, hi) = ((b as u64) << 24, ((b as u64 + 1) << 24) - 1);
        let (mut count_lo, mut count_hi, mut k) = (0u8, 0u8, 0);
        while k < 10 {
            count_lo += (lo >= POISSON1_CDF[k]) as u8;
            count_hi += (hi >= POISSON1_CDF[k]) as u8;
            k += 1;
        }
        t[b] = if count_lo == count_hi { count_lo } else { 255 };
        b += 1;
    }
    t
};

fn poisson1(u: u32) -> u8 {
    match POISSON1_BY_BYTE[(u >> 24) as usize] {
        255 => POISSON1_CDF
            .iter()
            .map(|&t| u8::from(u64::from(u) >= t))
            .sum(),
        c => c,
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
        let n = 400_000;
        let mut w = vec![[0u8; LANES]; n];
        poisson_weights(&mut w, [9; LANES]);
        let draws: Vec<f64> = w.iter().map(|c| f64::from(c[3])).collect();
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

    #[test]
    fn the_byte_table_agrees_with_the_thresholds_everywhere() {
        let slow = |u: u32| -> u8 {
            POISSON1_CDF
                .iter()
                .map(|&t| u8::from(u64::from(u) >= t))
                .sum()
        };
        for b in 0..=255u32 {
            for low in [0u32, 1, 0x7F_FFFF, 0xFF_FFFF, 0x12_3456] {
                let u = (b << 24) | low;
                assert_eq!(poisson1(u), slow(u), "u = {u:#x}");
            }
        }
        for t in POISSON1_CDF {
            for u in [t.saturating_sub(1), t, t + 1] {
                let u = u32::try_from(u.min(u64::from(u32::MAX))).unwrap_or(u32::MAX);
                assert_eq!(poisson1(u), slow(u), "u = {u:#x}");
            }
        }
    }

    #[test]
    fn models_judged_together_get_the_intervals_they_get_alone() {
        let rows = informative(2_000);
        let blind: Vec<Scored> = rows.iter().map(|r| Scored { risk: 1.0, ..*r }).collect();
        let both = ginis(&[&rows, &blind], 50, 5, 2);
        assert_eq!(both[0], gini(&rows, 50, 5, 1));
        assert_eq!(both[1], gini(&blind, 50, 5, 1));
    }
}
