//! The normalised Gini of the ordered Lorenz curve and its bootstrap
//! interval (`score-model-fitting.md`, "Validation").

use serde::Serialize;

use crate::validate::{Ordered, Scored};

#[cfg(target_arch = "x86_64")]
mod avx2;

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
/// rental's weight in resample r is a hash of (seed, r, the rental), so a
/// resample is one streaming pass over each model's risk order (computed
/// once) that draws the weights as it goes, and the interval does not
/// depend on the thread count.
pub fn ginis(models: &[&[Scored]], resamples: usize, seed: u64, threads: usize) -> Vec<Gini> {
    let ordered: Vec<Ordered<'_>> = models.iter().map(|m| Ordered::new(m)).collect();
    ginis_ordered(&ordered, resamples, seed, threads)
}

/// [`ginis`] of models already in risk order.
pub fn ginis_ordered(
    models: &[Ordered<'_>],
    resamples: usize,
    seed: u64,
    threads: usize,
) -> Vec<Gini> {
    let Some((curves, perfect, _)) = orders(models) else {
        return Vec::new();
    };
    let point: Vec<f64> = normalised(&curves, &Ones, &perfect)
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
                    let mut out = Vec::new();
                    for b in (t..batches).step_by(threads) {
                        let keys = Keys::of(seed, b * LANES);
                        let per_model = normalised(curves, &keys, perfect);
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
            // A thread that panicked panics the caller: its resamples left
            // out would be a wrong interval, not a smaller one.
            .flat_map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
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

/// Each model's curve and the perfect order, their rentals numbered by
/// their place in the first model's order (also returned, by input index):
/// the first curve's rentals are then 0, 1, 2, … — its pass reads the
/// weights in place — and the draws do not depend on the order the rentals
/// were given in.
fn orders(models: &[Ordered<'_>]) -> Option<(Vec<Curve>, Perfect, Vec<u32>)> {
    let mut curves: Vec<Curve> = models.iter().map(|m| Curve::new(m)).collect();
    let first = curves.first()?;
    let mut place = vec![0u32; first.row.len()];
    for (k, &r) in first.row.iter().enumerate() {
        place[r as usize] = k as u32;
    }
    let mut perfect = Perfect::new(models[0].rows, &place);
    for rows in curves
        .iter_mut()
        .map(|c| &mut c.row)
        .chain([&mut perfect.row])
    {
        rows.iter_mut().for_each(|r| *r = place[*r as usize]);
    }
    Some((curves, perfect, place))
}

/// Resamples weighed in one pass over a curve: a rental's weights in LANES
/// resamples are drawn side by side (one AVX2 vector), so the pass reads
/// the curve once for all of them and their sums run as independent chains.
const LANES: usize = 8;

/// The ordered Lorenz curve as at most `points` + 1 points (cumulative
/// share of exposure, cumulative share of claims), from (0, 0) to (1, 1),
/// for plotting.
pub fn lorenz(rows: &[Scored], points: usize) -> Vec<(f64, f64)> {
    Ordered::new(rows).lorenz(points)
}

impl Ordered<'_> {
    /// See [`lorenz`].
    pub fn lorenz(&self, points: usize) -> Vec<(f64, f64)> {
        lorenz_of(&Curve::new(self), points)
    }
}

fn lorenz_of(curve: &Curve, points: usize) -> Vec<(f64, f64)> {
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
    ties: Vec<Tie>,
}

/// The rentals with a positive claim frequency in frequency order, with
/// their blocks of equal frequency: the curve ordered by the claims
/// themselves. Every other rental has frequency 0 and forms its first block.
struct Perfect {
    row: Vec<u32>,
    km: Vec<f64>,
    claims: Vec<f64>,
    ties: Vec<Tie>,
}

/// The borrowed view `area` reads, of a curve or of the perfect order.
macro_rules! order_view {
    ($t:ty) => {
        impl $t {
            #[inline(always)]
            fn order(&self) -> Order<'_> {
                Order {
                    row: &self.row,
                    km: &self.km,
                    claims: &self.claims,
                    ties: &self.ties,
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

/// A block of more than one rental of equal risk, holding claims: the
/// rentals `start..end` of an order.
#[derive(Debug, Clone, Copy)]
struct Tie {
    start: usize,
    end: usize,
}

fn ties(claims: &[f64], block_end: &[bool]) -> Vec<Tie> {
    let mut out = Vec::new();
    let mut start = 0;
    for (k, &end) in block_end.iter().enumerate() {
        if end {
            if k > start && claims[start..=k].iter().any(|c| *c > 0.0) {
                out.push(Tie { start, end: k + 1 });
            }
            start = k + 1;
        }
    }
    out
}

struct Order<'a> {
    row: &'a [u32],
    km: &'a [f64],
    claims: &'a [f64],
    ties: &'a [Tie],
}

/// One pass in which every rental is its own block — claims u = w·c and
/// exposure t = w·x add u × (exposure before + t/2) — the same few
/// operations for every rental, without a branch, so the lanes run as
/// vectors. Then each tie, few and small, is set right: the block's claims
/// see half the block's exposure, C·K/2 = ½ Σᵢ uᵢ K, where the pass gave
/// each rental the exposure before it in the block plus half its own, so
/// the difference is ½ Σᵢ uᵢ (K − tᵢ − 2 × exposure before i in the block).
///
/// The pass starts from no exposure before it; an order that follows
/// exposure `b` adds b × its claims (the area is linear in it).
fn area(o: &Order<'_>, w: &impl Weights) -> Areas {
    let mut a = w.pass(o);
    set_ties_right(o, w, &mut a.area);
    a
}

/// [`area`]'s pass, before the ties are set right; any target.
fn portable_pass(o: &Order<'_>, w: &impl Weights) -> Areas {
    let (mut area, mut before, mut total) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
    for ((&r, &x), &c) in o.row.iter().zip(o.km).zip(o.claims) {
        let ws = w.of(r);
        for l in 0..LANES {
            let wl = f64::from(ws[l]);
            let (t, u) = (wl * x, wl * c);
            area[l] += u * (before[l] + 0.5 * t);
            before[l] += t;
            total[l] += u;
        }
    }
    Areas {
        area,
        km: before,
        claims: total,
    }
}

fn set_ties_right(o: &Order<'_>, w: &impl Weights, area: &mut [f64; LANES]) {
    for tie in o.ties {
        let range = tie.start..tie.end;
        let weighed: Vec<[i32; LANES]> = o.row[range.clone()].iter().map(|&r| w.of(r)).collect();
        let mut block = [0.0; LANES];
        for (k, ws) in range.clone().zip(&weighed) {
            for (l, b) in block.iter_mut().enumerate() {
                *b += f64::from(ws[l]) * o.km[k];
            }
        }
        let mut inside = [0.0; LANES];
        for (k, ws) in range.zip(&weighed) {
            for l in 0..LANES {
                let wl = f64::from(ws[l]);
                let (t, u) = (wl * o.km[k], wl * o.claims[k]);
                area[l] += 0.5 * u * (block[l] - t - 2.0 * inside[l]);
                inside[l] += t;
            }
        }
    }
}

fn block_ends(n: usize, same: impl Fn(usize, usize) -> bool) -> Vec<bool> {
    (0..n).map(|k| k + 1 == n || !same(k, k + 1)).collect()
}

impl Curve {
    fn new(o: &Ordered<'_>) -> Curve {
        let (rows, order) = (o.rows, &o.order);
        let block_end = block_ends(order.len(), |a, b| {
            rows[order[a]].risk.total_cmp(&rows[order[b]].risk).is_eq()
        });
        let claims: Vec<f64> = order.iter().map(|&i| rows[i].claims).collect();
        Curve {
            km: order.iter().map(|&i| rows[i].km).collect(),
            ties: ties(&claims, &block_end),
            claims,
            row: order.iter().map(|&i| i as u32).collect(),
            block_end,
        }
    }
}

/// The normalised Gini of each model in each lane, rental i counted
/// `w.of(i)[lane]` times. The perfect order's Gini is the same for every
/// model: it is found once, from the first model's totals (the others'
/// differ only in the order of their sums).
#[inline(always)]
fn normalised(curves: &[Curve], w: &impl Weights, perfect: &Perfect) -> Vec<[f64; LANES]> {
    // A loop, not an iterator chain: the chain's fold would be a function
    // of its own, compiled without the dispatched target's instructions.
    let mut areas: Vec<Areas> = Vec::with_capacity(curves.len());
    for c in curves {
        areas.push(area(&c.order(), w));
    }
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
            ties: ties(&claims, &block_end),
            claims,
            row: order.iter().map(|&i| i as u32).collect(),
        }
    }

    /// The Gini of the curve ordered by the claims, given each lane's
    /// weighted totals.
    #[inline(always)]
    fn gini(&self, w: &impl Weights, km: &[f64; LANES], claims: &[f64; LANES]) -> [f64; LANES] {
        let a = area(&self.order(), w);
        let mut out = [0.0; LANES];
        for l in 0..LANES {
            if km[l] > 0.0 && claims[l] > 0.0 {
                // The first block: every rental of frequency 0 (claims
                // only from rentals with claims but no distance); the
                // rentals with a positive frequency follow its exposure.
                let zero_km = (km[l] - a.km[l]).max(0.0);
                let zero_claims = (claims[l] - a.claims[l]).max(0.0);
                let area = a.area[l] + zero_km * a.claims[l] + zero_claims * zero_km / 2.0;
                out[l] = 2.0 * area / (km[l] * claims[l]) - 1.0;
            }
        }
        out
    }
}

/// How often each resample of a batch counts rental i (numbered by its
/// place in the first model's order).
trait Weights: Sized {
    fn of(&self, i: u32) -> [i32; LANES];

    /// [`area`]'s pass over an order under these weights.
    fn pass(&self, o: &Order<'_>) -> Areas {
        portable_pass(o, self)
    }
}

/// The sample itself: every rental once.
struct Ones;

impl Weights for Ones {
    #[inline(always)]
    fn of(&self, _: u32) -> [i32; LANES] {
        [1; LANES]
    }
}

/// A batch's resamples: in lane l, rental i counts W ~ Poisson(1) times,
/// W drawn from the 32-bit uniform fmix32(i·γₗ + kₗ) — a counter-based
/// generator (SplitMix's Weyl sequence with MurmurHash3's finaliser, a
/// stream of its own per lane: γₗ odd and kₗ drawn from the resample's
/// seed). A weight is found from the rental's number alone, so each
/// model's pass draws the weights of its own order as it goes: nothing is
/// stored, and no pass reads weights at random.
struct Keys {
    gamma: [u32; LANES],
    offset: [u32; LANES],
}

impl Keys {
    /// The keys of resamples `first..first + LANES`.
    fn of(seed: u64, first: usize) -> Keys {
        let z: [u64; LANES] = std::array::from_fn(|lane| {
            let r = (first + lane) as u64;
            splitmix(seed ^ r.wrapping_mul(0xA24B_AED4_963E_E407))
        });
        Keys {
            gamma: z.map(|z| z as u32 | 1),
            offset: z.map(|z| (z >> 32) as u32),
        }
    }
}

impl Weights for Keys {
    #[inline(always)]
    fn of(&self, i: u32) -> [i32; LANES] {
        let u: [u32; LANES] = std::array::from_fn(|l| {
            fmix32(i.wrapping_mul(self.gamma[l]).wrapping_add(self.offset[l]))
        });
        poisson1(u)
    }

    fn pass(&self, o: &Order<'_>) -> Areas {
        #[cfg(target_arch = "x86_64")]
        if let Some(v3) = pulp::x86::V3::try_new() {
            return avx2::pass(v3, o, self);
        }
        portable_pass(o, self)
    }
}

/// MurmurHash3's 32-bit finaliser: a bijection in which every input bit
/// reaches every output bit.
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

/// floor(2³² × P(W ≤ k)) for W ~ Poisson(1), k = 0..=9.
const POISSON1_CDF: [u32; 10] = {
    let mut t = [0u32; 10];
    let e_inv = 0.367_879_441_171_442_33_f64;
    let (mut term, mut sum, mut k) = (1.0f64, 0.0f64, 0);
    while k < 10 {
        sum += term;
        t[k] = (e_inv * sum * 4_294_967_296.0) as u32;
        k += 1;
        term /= k as f64;
    }
    t
};

/// The thresholds moved to the signed range, where AVX2 compares in one
/// instruction: u ≥ t exactly when (u − 2³¹) ≥ (t − 2³¹) as i32.
const POISSON1_SIGNED: [i32; 10] = {
    let mut t = [0i32; 10];
    let mut k = 0;
    while k < 10 {
        t[k] = (POISSON1_CDF[k] ^ 0x8000_0000) as i32;
        k += 1;
    }
    t
};

/// The thresholds every lane is compared with; the rest only when a lane
/// reaches all of these (P(W ≥ 6) = 6e-4: one batch of rentals in 200).
const POISSON1_FIRST: usize = 6;

/// Each lane's count, W ~ Poisson(1): how many of the cumulative
/// probabilities its uniform reaches — compares without a table, so the
/// lanes run as vectors (counts above 10, probability 1e-8, count as 10).
#[inline(always)]
fn poisson1(u: [u32; LANES]) -> [i32; LANES] {
    let s = u.map(|u| (u ^ 0x8000_0000) as i32);
    let mut count = [0i32; LANES];
    for t in &POISSON1_SIGNED[..POISSON1_FIRST] {
        for (c, &s) in count.iter_mut().zip(&s) {
            *c += i32::from(s >= *t);
        }
    }
    if count.contains(&(POISSON1_FIRST as i32)) {
        for t in &POISSON1_SIGNED[POISSON1_FIRST..] {
            for (c, &s) in count.iter_mut().zip(&s) {
                *c += i32::from(s >= *t);
            }
        }
    }
    count
}

/// SplitMix64's output function (portable, so a bootstrap interval is the
/// same on every machine): a resample's keys from its seed.
#[inline(always)]
fn splitmix(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
    fn each_lane_is_the_gini_of_its_resample_written_out() {
        // Ties with claims inside them (ten risks in all), and a claim
        // without distance: the cases the pass sets right afterwards.
        let mut rows = informative(600);
        rows[7] = row(0.002, 0.0, 1.0);
        let blind: Vec<Scored> = rows.iter().map(|r| Scored { risk: 1.0, ..*r }).collect();
        let (a, b) = (Ordered::new(&rows), Ordered::new(&blind));
        let Some((curves, perfect, place)) = orders(&[a, b]) else {
            panic!("no orders");
        };
        let keys = Keys::of(11, 0);
        let got = normalised(&curves, &keys, &perfect);
        let freq = |r: &Scored| if r.km > 0.0 { r.claims / r.km } else { 0.0 };
        for (k, model) in [&rows, &blind].into_iter().enumerate() {
            for (l, got) in got[k].iter().enumerate() {
                // The resample itself: rental i repeated as often as it is drawn.
                let resample: Vec<Scored> = model
                    .iter()
                    .enumerate()
                    .flat_map(|(i, r)| std::iter::repeat_n(*r, keys.of(place[i])[l] as usize))
                    .collect();
                let want =
                    reference_gini(&resample, &|r| r.risk) / reference_gini(&resample, &freq);
                assert!(
                    (got - want).abs() < 1e-12,
                    "lane {l}, model {k}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn the_avx2_pass_gives_the_bits_of_the_portable_one() {
        let mut rows = informative(3_000);
        rows[7] = row(0.002, 0.0, 1.0);
        let other: Vec<Scored> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| Scored {
                risk: (i % 37) as f64,
                ..*r
            })
            .collect();
        let (a, b) = (Ordered::new(&rows), Ordered::new(&other));
        let Some((curves, perfect, _)) = orders(&[a, b]) else {
            panic!("no orders");
        };
        // Some lane reaches the first thresholds: the rare path is run too.
        let keys = Keys::of(3, 40);
        let orders: Vec<Order<'_>> = curves
            .iter()
            .map(|c| c.order())
            .chain([perfect.order()])
            .collect();
        let Some(v3) = pulp::x86::V3::try_new() else {
            // A CPU without AVX2 runs the portable pass only.
            return;
        };
        for o in &orders {
            let (want, got) = (portable_pass(o, &keys), avx2::pass(v3, o, &keys));
            assert_eq!(
                (want.area, want.km, want.claims),
                (got.area, got.km, got.claims)
            );
            assert!(want.area.iter().all(|a| a.is_finite() && *a != 0.0));
        }
        let rare = (0..rows.len() as u32).any(|i| keys.of(i).iter().any(|&w| w >= 6));
        assert!(rare, "no weight of 6 or more: the rare path was not taken");
    }

    #[test]
    fn the_interval_does_not_depend_on_the_thread_count() {
        let rows = informative(2_000);
        assert_eq!(gini(&rows, 64, 3, 1), gini(&rows, 64, 3, 2));
        assert_ne!(gini(&rows, 64, 3, 1), gini(&rows, 64, 4, 1));
    }

    #[test]
    fn poisson_weights_have_mean_and_variance_one_and_lanes_are_independent() {
        let n = 400_000u32;
        let keys = Keys::of(9, 0);
        let draws: Vec<[i32; LANES]> = (0..n).map(|i| keys.of(i)).collect();
        let lane = |l: usize| -> Vec<f64> { draws.iter().map(|w| f64::from(w[l])).collect() };
        let moments = |v: &[f64]| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / v.len() as f64;
            (mean, var)
        };
        for l in 0..LANES {
            let (mean, var) = moments(&lane(l));
            assert!(
                (mean - 1.0).abs() < 0.01 && (var - 1.0).abs() < 0.02,
                "lane {l}: {mean} {var}"
            );
            let zeros = lane(l).iter().filter(|d| **d == 0.0).count() as f64 / f64::from(n);
            assert!((zeros - (-1.0f64).exp()).abs() < 0.005, "{zeros}");
        }
        // Neighbouring lanes and neighbouring rentals uncorrelated:
        // |r| < 4/√n ≈ 0.006 holds by chance with probability 0.99994.
        let corr = |a: &[f64], b: &[f64]| {
            let (ma, va) = moments(a);
            let (mb, vb) = moments(b);
            let cov = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - ma) * (y - mb))
                .sum::<f64>()
                / a.len() as f64;
            cov / (va * vb).sqrt()
        };
        let (a, b) = (lane(0), lane(1));
        assert!(corr(&a, &b).abs() < 0.006, "lanes: {}", corr(&a, &b));
        let next = corr(&a[..a.len() - 1], &a[1..]);
        assert!(next.abs() < 0.006, "rentals: {next}");
        let later = Keys::of(9, LANES);
        let c: Vec<f64> = (0..n).map(|i| f64::from(later.of(i)[0])).collect();
        assert!(corr(&a, &c).abs() < 0.006, "batches: {}", corr(&a, &c));
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
    fn a_count_is_the_thresholds_its_uniform_reaches() {
        // Each threshold, one below it and one above, in every lane.
        let cases: Vec<(u32, i32)> = std::iter::once((0, 0))
            .chain(POISSON1_CDF.iter().enumerate().flat_map(|(k, &t)| {
                let k = k as i32;
                [(t - 1, k), (t, k + 1), (t.saturating_add(1), k + 1)]
            }))
            .chain([(u32::MAX, 10)])
            .collect();
        for (u, want) in cases {
            assert_eq!(poisson1([u; LANES]), [want; LANES], "u = {u:#x}");
        }
        let mixed = std::array::from_fn(|l| POISSON1_CDF[l]);
        assert_eq!(poisson1(mixed), std::array::from_fn(|l| l as i32 + 1));
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
