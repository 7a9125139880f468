//! `score fit`: the Poisson fit on the rentals before `--split`, the
//! candidate model built from it, and its validation on the rentals after.

use pitwall_fit::{Design, Fit, FitError, FitOptions, fit};
use pitwall_score::Model;
use pitwall_score::fitted::{CoefficientRecord, FitRecord, Training, ValidationSummary};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::claims::ClaimsReport;
use crate::data::{Period, RentalRow, Results, factors};
use crate::judge::{Judged, Validation, judge};
use crate::members::{ByMember, scores};
use crate::par::beside;
use crate::{FitJobError, Result, rfc3339};

/// At-fault claims a fit needs per estimated parameter.
pub const CLAIMS_PER_PARAMETER: usize = 10;

#[derive(Debug, Clone)]
pub struct FitConfig {
    pub split: i64,
    pub ridge: f64,
    pub calibrate: bool,
    /// The model in use: its caps, grades and mapping are kept; it is the
    /// comparison in every figure.
    pub current: Model,
    pub name: Option<String>,
    pub version: Option<String>,
    pub resamples: usize,
    pub seed: u64,
    pub threads: usize,
    /// When the fit was made (RFC 3339), for the provenance.
    pub fitted_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FitFigures {
    pub rentals: usize,
    pub distance_km: f64,
    pub claims: f64,
    #[serde(flatten)]
    pub fit: Fit,
    pub over_dispersed: bool,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct FitOutcome {
    pub model: Model,
    pub fit: FitFigures,
    pub validation: Validation,
    pub fit_ms: u64,
    pub validate_ms: u64,
}

/// What `validation.json` holds for a fit.
#[derive(Debug, Serialize)]
pub struct FitReport<'a> {
    pub model: String,
    pub current: String,
    pub results: &'a str,
    pub claims: &'a ClaimsReport,
    pub fit: &'a FitFigures,
    pub validation: &'a Validation,
    pub timings_ms: Timings,
}

/// Where a command's time went, in ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Reading the rental results, with the claims files decoded beside.
    pub read_results: u64,
    /// Checking the claims against the rentals and attaching them.
    pub read_claims: u64,
    pub fit: u64,
    pub validate: u64,
}

fn refused(msg: String) -> FitJobError {
    FitJobError::Refused(msg)
}

pub fn fit_model(results: &Results, cfg: &FitConfig) -> Result<FitOutcome> {
    let started = std::time::Instant::now();
    let rows = &results.rows;
    let max_end = rows.iter().map(|r| r.end_at).max().unwrap_or(cfg.split);
    let training_rows: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].fits() && rows[i].end_at < cfg.split)
        .collect();
    let training: Vec<&RentalRow> = training_rows.iter().map(|&i| &rows[i]).collect();
    let later = rows
        .iter()
        .filter(|r| r.fits() && r.end_at >= cfg.split)
        .count();
    if training.is_empty() || later == 0 {
        let (min, max) = (
            rows.iter()
                .map(|r| r.end_at)
                .min()
                .map_or("-".into(), rfc3339),
            rfc3339(max_end),
        );
        return Err(refused(format!(
            "--split {} leaves {} scored rentals before it and {later} on or after it: both sides \
             need some (the results' rentals ended from {min} to {max}); choose a split inside",
            rfc3339(cfg.split),
            training.len()
        )));
    }
    // The hash is one stream on one core: it runs beside the design.
    let (design, fingerprint) = beside(
        || design(&cfg.current, &training),
        || fingerprint(results, &training_rows, &cfg.current),
    );
    check_design(&design, cfg)?;
    let fitted = fit(
        &design,
        &FitOptions {
            ridge: cfg.ridge,
            threads: cfg.threads,
            ..FitOptions::default()
        },
    )
    .map_err(|e| fit_refused(e, cfg))?;
    let mut model = candidate(cfg, &fitted);
    if cfg.calibrate {
        calibrate(&mut model, &cfg.current, results, cfg);
    }
    let judged = Judged {
        results,
        period: Period {
            from: cfg.split,
            to: max_end + 1,
        },
        resamples: cfg.resamples,
        seed: cfg.seed,
        threads: cfg.threads,
    };
    let fit_ms = started.elapsed().as_millis() as u64;
    let validation = judge(&judged, &model, Some(&cfg.current))?;
    let validate_ms = started.elapsed().as_millis() as u64 - fit_ms;
    let figures = figures(&training, fitted);
    model.fit = Some(record(cfg, &figures, &validation, &training, fingerprint));
    // A model file is never written with a NaN: from_toml checks every number.
    let model = Model::from_toml(&model.to_toml()?)?;
    Ok(FitOutcome {
        model,
        fit: figures,
        validation,
        fit_ms,
        validate_ms,
    })
}

/// The rows of the fit: factor values under the current model's caps,
/// offset log(d / 100), at-fault claims.
fn design(current: &Model, training: &[&RentalRow]) -> Design {
    let mut d = Design {
        names: current
            .factors()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect(),
        x: Vec::with_capacity(training.len() * 5),
        offset: Vec::with_capacity(training.len()),
        y: Vec::with_capacity(training.len()),
    };
    for r in training {
        d.x.extend(factors(current, &r.features));
        d.offset.push((r.features.distance_km / 100.0).ln());
        d.y.push(f64::from(r.claims));
    }
    d
}

fn check_design(d: &Design, cfg: &FitConfig) -> Result<()> {
    let k = d.names.len();
    let claims = d.y.iter().sum::<f64>() as usize;
    let need = CLAIMS_PER_PARAMETER * (k + 1);
    if claims < need {
        return Err(refused(format!(
            "the {} training rentals (ended before --split {}) have {claims} at-fault claims; a fit of {} \
             parameters needs at least {need} ({CLAIMS_PER_PARAMETER} per parameter): use a later split or more history",
            d.rows(),
            rfc3339(cfg.split),
            k + 1
        )));
    }
    if cfg.ridge > 0.0 {
        return Ok(());
    }
    for (j, name) in d.names.iter().enumerate() {
        let first = d.x[j];
        if d.x.iter().skip(j).step_by(k).all(|v| *v == first) {
            return Err(refused(format!(
                "factor {name} is {first} in every training rental (never observed): its multiplier cannot \
                 be fitted. Give --ridge λ to keep it at 1, or fit on history where it occurs"
            )));
        }
    }
    Ok(())
}

fn fit_refused(e: FitError, cfg: &FitConfig) -> FitJobError {
    match e {
        FitError::NotConverged(n) => refused(format!(
            "the fit did not converge in {n} iterations (relative deviance change < 1e-10); \
             nothing was written. Try --ridge (now {}) or check the claims",
            cfg.ridge
        )),
        other => refused(format!("the fit was refused: {other}")),
    }
}

/// The current model with the fitted multipliers; caps, base and grades kept.
fn candidate(cfg: &FitConfig, f: &Fit) -> Model {
    let mut m = cfg.current.clone();
    m.name = cfg.name.clone().unwrap_or_else(|| cfg.current.name.clone());
    m.version = cfg
        .version
        .clone()
        .unwrap_or_else(|| format!("{}-fit-{}", cfg.current.version, &cfg.fitted_at[..10]));
    let beta: Vec<f64> = f
        .coefficients
        .iter()
        .skip(1)
        .map(|c| c.estimate.exp())
        .collect();
    m.set_multipliers([beta[0], beta[1], beta[2], beta[3], beta[4]]);
    m.fit = Some(FitRecord {
        intercept: f.coefficients[0].estimate,
        fitted_at: None,
        pitwall_version: None,
        from_model: None,
        training: None,
        coefficients: Vec::new(),
        validation: None,
    });
    m
}

/// `--calibrate`: the mapping slope b (a keeps 100 at zero events) that
/// gives the candidate's median member score on the training data the
/// current model's.
fn calibrate(model: &mut Model, current: &Model, results: &Results, cfg: &FitConfig) {
    let by = ByMember::new(results, cfg.threads);
    // Member scores at the split see only the training rentals.
    let as_of = cfg.split - 1;
    let median = |m: &Model| {
        let mut s: Vec<f64> = scores(&by, m, as_of)
            .iter()
            .filter_map(|m| m.score)
            .collect();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied()
    };
    let Some(target) = median(current) else {
        return;
    };
    let base = model.score.base;
    let set = |m: &mut Model, b: f64| {
        m.score.slope = b;
        m.score.intercept = 100.0 + b * base;
    };
    // The median falls as b grows: bisect for the smallest b reaching the target.
    let (mut lo, mut hi) = (0.0, current.score.slope.max(1.0) * 64.0);
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        set(model, mid);
        if median(model).is_some_and(|m| m > target) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    set(model, hi);
}

fn figures(training: &[&RentalRow], fit: Fit) -> FitFigures {
    let mut warnings = Vec::new();
    let over = fit.dispersion > 1.2;
    if over {
        warnings.push(format!(
            "Pearson dispersion {:.2} > 1.2: the claims are over-dispersed; read the quasi-Poisson standard errors",
            fit.dispersion
        ));
    }
    FitFigures {
        rentals: training.len(),
        distance_km: training.iter().map(|r| r.features.distance_km).sum(),
        claims: fit.claims,
        fit,
        over_dispersed: over,
        warnings,
    }
}

/// SHA-256 over the fitted rows in rental id order: each rental's id, its
/// factor values under `current`'s caps, distance and claims.
fn fingerprint(results: &Results, training: &[usize], current: &Model) -> String {
    let mut h = Sha256::new();
    // The same bytes as one update per value, handed over 64 KiB at a time:
    // millions of small updates cost more than the hashing.
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    for &row in training {
        let r = &results.rows[row];
        buf.extend_from_slice(results.rental_id(row).as_bytes());
        buf.push(0);
        for v in factors(current, &r.features) {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        buf.extend_from_slice(&r.features.distance_km.to_le_bytes());
        buf.extend_from_slice(&r.claims.to_le_bytes());
        if buf.len() >= (1 << 16) - 256 {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn record(
    cfg: &FitConfig,
    f: &FitFigures,
    v: &Validation,
    training: &[&RentalRow],
    fingerprint: String,
) -> FitRecord {
    let from = training.iter().map(|r| r.end_at).min().unwrap_or(cfg.split);
    FitRecord {
        intercept: f.fit.coefficients[0].estimate,
        fitted_at: Some(cfg.fitted_at.clone()),
        pitwall_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        from_model: Some(cfg.current.id()),
        training: Some(Training {
            from: rfc3339(from),
            split: rfc3339(cfg.split),
            rentals: training.len() as u64,
            distance_km: f.distance_km,
            claims: f.claims as u64,
            fingerprint,
            ridge: cfg.ridge,
            calibrated: cfg.calibrate,
        }),
        coefficients: f
            .fit
            .coefficients
            .iter()
            .map(|c| CoefficientRecord {
                name: c.name.clone(),
                estimate: c.estimate,
                std_error: c.std_error,
                ci_low: c.ci_low,
                ci_high: c.ci_high,
            })
            .collect(),
        validation: Some(ValidationSummary {
            from: v.from.clone(),
            to: v.to.clone(),
            gini: v.candidate.gini.normalised,
            gini_ci_low: v.candidate.gini.ci_low,
            gini_ci_high: v.candidate.gini.ci_high,
            worst_over_best: v.candidate.lift.worst_over_best,
            actual_over_expected: v.candidate.calibration.actual_over_expected.unwrap_or(0.0),
            recommended: v.recommended,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{SynthConfig, claims, results, spans};

    const END: i64 = 1_793_491_200_000;

    fn rows(n: usize) -> Results {
        let truth = Model::from_toml(include_str!("../../../models/planted-claims.toml"))
            .expect("the planted model parses");
        let rows = results(&SynthConfig::new(n, 5, END), &Model::default());
        let drawn = claims(&spans(&rows), &truth, 5).expect("claims");
        let mut r = Results::from_result_rows("synthetic", &rows).expect("results");
        r.attach(&drawn);
        r
    }

    /// The fingerprint as the provenance defines it, from the design's
    /// own columns: one update per value.
    fn reference(results: &Results, training: &[usize], d: &Design) -> String {
        let mut h = Sha256::new();
        for (i, &row) in training.iter().enumerate() {
            h.update(results.rental_id(row).as_bytes());
            h.update([0]);
            for v in &d.x[i * 5..i * 5 + 5] {
                h.update(v.to_le_bytes());
            }
            h.update(results.rows[row].features.distance_km.to_le_bytes());
            h.update(results.rows[row].claims.to_le_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_fingerprint_hashes_the_rows_the_design_fits_and_moves_with_a_claim() {
        let mut r = rows(3_000);
        let current = Model::default();
        let training: Vec<usize> = (0..r.rows.len()).filter(|&i| r.rows[i].fits()).collect();
        let design_rows: Vec<&RentalRow> = training.iter().map(|&i| &r.rows[i]).collect();
        let d = design(&current, &design_rows);
        let got = fingerprint(&r, &training, &current);
        assert_eq!(got, reference(&r, &training, &d));
        // One more claim on one fitted rental: another fingerprint.
        r.rows[training[17]].claims += 1;
        assert_ne!(fingerprint(&r, &training, &current), got);
    }
}
