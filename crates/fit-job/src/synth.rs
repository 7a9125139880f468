//! Synthetic data with a known answer: rental results whose features are
//! drawn from per-member driving styles (the fleet generator's: most
//! members calm, a few aggressive, speeding a habit of its own), and
//! claims drawn from the spec's Poisson model with a planted truth, so that
//! a fit can be checked against what was planted.

use pitwall_score::rental::Reason;
use pitwall_score::{Assessment, Features, Model, Rental, Status};
use pitwall_score_state::ResultRow;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::claims::{Claim, SEVERITIES};
use crate::{FitJobError, HOUR_MS, Result};

const DAY_MS: i64 = 24 * HOUR_MS;

#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub rentals: usize,
    pub members: usize,
    pub seed: u64,
    /// Rentals end in the `days` before this (ms since the epoch).
    pub end: i64,
    pub days: i64,
}

impl SynthConfig {
    pub fn new(rentals: usize, seed: u64, end: i64) -> SynthConfig {
        SynthConfig {
            rentals,
            members: (rentals / 10).max(1),
            seed,
            end,
            days: 365,
        }
    }
}

/// A poisson count: Knuth's product method for small means, a rounded
/// normal above 30 (event counts of long rentals, where the difference is
/// immaterial). Claims always take the exact branch.
pub fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean < 30.0 {
        let (limit, mut p, mut k) = ((-mean).exp(), 1.0, 0u32);
        loop {
            p *= rng.random::<f64>();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
    let (u, v): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
    let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
    (mean + mean.sqrt() * z).round().max(0.0) as u32
}

/// Member i's style: (aggression, speeding habit), both in [0, 1].
fn style(seed: u64, member: usize) -> (f64, f64) {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (member as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (rng.random::<f64>().powi(2), rng.random::<f64>().powi(3))
}

fn features(rng: &mut ChaCha8Rng, (aggression, speeding): (f64, f64)) -> Features {
    let duration_s = (600.0 - 2400.0 * rng.random::<f64>().max(1e-12).ln()).min(6.0 * 3600.0);
    let moving_s = (duration_s * rng.random_range(0.55..0.85)) as u32;
    let speed = 28.0 + 15.0 * rng.random::<f64>() + 10.0 * aggression;
    let km = f64::from(moving_s) / 3600.0 * speed;
    let per_100 = |rate: f64, rng: &mut ChaCha8Rng| poisson(rng, km / 100.0 * rate);
    let moving = f64::from(moving_s);
    Features {
        samples: duration_s as u32 + 1,
        coverage: 1.0,
        distance_km: km,
        moving_s,
        speeding_s: poisson(rng, moving * (0.01 + 0.25 * speeding)).min(moving_s),
        excess_speeding_s: poisson(rng, moving * (0.0005 + 0.02 * speeding * aggression))
            .min(moving_s),
        harsh_accel_n: per_100(1.0 + 12.0 * aggression, rng),
        harsh_brake_n: per_100(1.5 + 14.0 * aggression, rng),
        unstable_stop_n: per_100(0.3 + 4.0 * aggression, rng),
    }
}

/// `cfg.rentals` rental results scored by `model`, in rental id order;
/// about 3 % lost too much telemetry and are unscorable.
pub fn results(cfg: &SynthConfig, model: &Model) -> Vec<ResultRow> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let span = cfg.days * DAY_MS;
    (0..cfg.rentals)
        .map(|i| {
            let member = rng.random_range(0..cfg.members);
            let mut f = features(&mut rng, style(cfg.seed, member));
            let end_at = cfg.end - 1 - rng.random_range(0..span);
            let start_at = end_at - i64::from(f.samples - 1) * 1000;
            let lost = rng.random::<f64>() < 0.03;
            if lost {
                f.coverage = 0.5;
                f.samples /= 2;
            }
            let scored = !lost && f.distance_km >= model.completeness.min_distance_km;
            let score = scored.then(|| model.rental_score(&f));
            ResultRow {
                rental: Rental {
                    rental_id: format!("r{i:09}"),
                    member_id: format!("m{member:07}"),
                    car_id: format!("car-{:05}", i % (cfg.rentals / 8).max(1)),
                    start_at,
                    end_at,
                },
                assessment: Assessment {
                    features: f,
                    status: if scored {
                        Status::Scored
                    } else {
                        Status::Unscorable
                    },
                    reason: match (scored, lost) {
                        (true, _) => None,
                        (false, true) => Some(Reason::InsufficientCoverage),
                        (false, false) => Some(Reason::TooShort),
                    },
                    score,
                    grade: score.map(|s| model.grade(s).grade.clone()),
                },
                model: model.id(),
                finality: None,
            }
        })
        .collect()
}

/// What a claim is drawn from: a rental's id, start, end and features.
pub type RentalSpan = (String, i64, i64, Features);

/// The spans of rental results.
pub fn spans(rows: &[ResultRow]) -> Vec<RentalSpan> {
    rows.iter()
        .map(|r| {
            (
                r.rental.rental_id.clone(),
                r.rental.start_at,
                r.rental.end_at,
                r.assessment.features,
            )
        })
        .collect()
}

/// Claims of each rental drawn from `truth` (a model file with a `[fit]`
/// intercept): at-fault ones Poisson with mean d/100 × exp(β₀ + Σ βᵢ xᵢ)
/// (xᵢ capped as `truth` caps them), and a quarter as many not at fault,
/// whatever the driving. Claim times fall inside the rental.
pub fn claims(rentals: &[RentalSpan], truth: &Model, seed: u64) -> Result<Vec<Claim>> {
    let Some(fit) = &truth.fit else {
        return Err(FitJobError::Refused(format!(
            "the truth model {} has no [fit] section: its `intercept` (log at-fault claims per 100 km \
             at zero events) is what claims are drawn from",
            truth.id()
        )));
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC1A1_0000);
    let mut out = Vec::new();
    for (id, start, end, f) in rentals {
        let base = f.distance_km / 100.0 * fit.intercept.exp();
        let at_fault = poisson(&mut rng, base * truth.relative_risk(f));
        let other = poisson(&mut rng, base / 4.0);
        for k in 0..at_fault + other {
            let u: f64 = rng.random();
            out.push(Claim {
                claim_id: format!("c-{id}-{k}"),
                rental_id: id.clone(),
                occurred_at: start + ((end - start) as f64 * rng.random::<f64>()) as i64,
                at_fault: k < at_fault,
                severity: SEVERITIES[usize::from(u > 0.8) + usize::from(u > 0.98)],
            });
        }
    }
    Ok(out)
}

/// A few rows breaking each rule, appended after the good ones so the
/// contract's refusals show in every synthetic run.
pub fn flawed(good: &[Claim], rentals: &[RentalSpan]) -> Vec<Claim> {
    let (Some(first), Some(r)) = (good.first(), rentals.first()) else {
        return Vec::new();
    };
    let mut conflicting = first.clone();
    conflicting.severity = if first.severity == "minor" {
        "major"
    } else {
        "minor"
    };
    vec![
        Claim {
            claim_id: "c-unknown-rental".into(),
            rental_id: "no-such-rental".into(),
            ..first.clone()
        },
        Claim {
            claim_id: "c-outside-rental".into(),
            rental_id: r.0.clone(),
            occurred_at: r.2 + 3 * HOUR_MS,
            ..first.clone()
        },
        Claim {
            claim_id: "c-bad-severity".into(),
            severity: "scratch",
            ..first.clone()
        },
        conflicting,
    ]
}
