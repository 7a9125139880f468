//! The Poisson GLM with log link and offset, fitted by IRLS.
//!
//! Ridge: the penalised log-likelihood is `ℓ(β) − λ/2 Σᵢ₌₁ᵏ βᵢ²` (β₀ is not
//! penalised). That is statsmodels' `GLM.fit_regularized(L1_wt=0)` with
//! `alpha = [0, λ/n, …, λ/n]`: statsmodels scales the log-likelihood by 1/n
//! and penalises `alpha/2 × β²`. Standard errors of a ridge fit are from the
//! penalised information `(XᵀWX + λI₊)⁻¹`.

use serde::Serialize;

use crate::linalg::{Matrix, inverse, solve};

/// The rows of a fit: per rental, its factor values, the offset
/// log(distance / 100 km) and its count of at-fault claims.
#[derive(Debug, Clone, Default)]
pub struct Design {
    pub names: Vec<String>,
    /// Row-major: `rows × names.len()` factor values (the intercept is added).
    pub x: Vec<f64>,
    pub offset: Vec<f64>,
    pub y: Vec<f64>,
}

impl Design {
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    fn k(&self) -> usize {
        self.names.len()
    }

    /// Row i with the intercept first.
    fn row(&self, i: usize, out: &mut [f64]) {
        let k = self.k();
        out[0] = 1.0;
        out[1..=k].copy_from_slice(&self.x[i * k..(i + 1) * k]);
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Ridge penalty λ on β₁…βₖ; 0 for plain maximum likelihood.
    pub ridge: f64,
    pub max_iterations: usize,
    /// Convergence: relative change of the (penalised) deviance below this.
    pub tolerance: f64,
    /// Likelihood-ratio tests of dropping each factor (k more fits).
    pub lr_tests: bool,
    /// Threads of each pass over the rows; the result does not depend on it.
    pub threads: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            ridge: 0.0,
            max_iterations: 50,
            tolerance: 1e-10,
            lr_tests: true,
            threads: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coefficient {
    pub name: String,
    pub estimate: f64,
    pub std_error: f64,
    /// 95 % Wald interval.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Deviance gained by dropping it, and its χ²(1) p-value.
    pub lr_statistic: Option<f64>,
    pub lr_p_value: Option<f64>,
    /// Standard error scaled by the Pearson dispersion (quasi-Poisson).
    pub quasi_std_error: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    pub coefficients: Vec<Coefficient>,
    pub log_likelihood: f64,
    pub deviance: f64,
    pub null_deviance: f64,
    pub aic: f64,
    /// Pearson χ² / (n − p); above 1.2 the data are over-dispersed.
    pub dispersion: f64,
    pub iterations: usize,
    pub rows: usize,
    pub claims: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no rows to fit")]
    Empty,
    #[error("row {row}: {problem}")]
    BadRow { row: usize, problem: String },
    #[error(
        "the design matrix is singular: a factor is constant or a copy of others \
         (one never observed in the training rows?); drop it or use --ridge"
    )]
    Singular,
    #[error("IRLS did not converge in {0} iterations (relative deviance change < 1e-10)")]
    NotConverged(usize),
}

const Z95: f64 = 1.959_963_984_540_054;

/// Fits the model; see the module's notes for the ridge and the errors.
pub fn fit(d: &Design, opts: &FitOptions) -> Result<Fit, FitError> {
    check(d)?;
    let p = d.k() + 1;
    let (beta, info, iterations, _) = irls(d, opts, None, None)?;
    let mu = means(d, &beta);
    let ll = log_likelihood(&d.y, &mu);
    let deviance = deviance(&d.y, &mu);
    let null_deviance = null_deviance(d);
    let pearson: f64 =
        d.y.iter()
            .zip(&mu)
            .map(|(y, m)| (y - m) * (y - m) / m)
            .sum();
    let dispersion = pearson / (d.rows() as f64 - p as f64).max(1.0);
    let cov = inverse(&info.cholesky().ok_or(FitError::Singular)?);
    let names: Vec<String> = std::iter::once("intercept".to_string())
        .chain(d.names.iter().cloned())
        .collect();
    let mut coefficients = Vec::with_capacity(p);
    for (j, name) in names.into_iter().enumerate() {
        let se = cov.at(j, j).sqrt();
        let lr = if opts.lr_tests && j > 0 {
            let start = without(&beta, &info, j);
            let (_, _, _, reduced) = irls(d, opts, Some(start), Some(j))?;
            let stat = (reduced - deviance).max(0.0);
            Some((stat, chi2_1_survival(stat)))
        } else {
            None
        };
        coefficients.push(Coefficient {
            name,
            estimate: beta[j],
            std_error: se,
            ci_low: beta[j] - Z95 * se,
            ci_high: beta[j] + Z95 * se,
            lr_statistic: lr.map(|l| l.0),
            lr_p_value: lr.map(|l| l.1),
            quasi_std_error: se * dispersion.sqrt(),
        });
    }
    Ok(Fit {
        coefficients,
        log_likelihood: ll,
        deviance,
        null_deviance,
        aic: -2.0 * ll + 2.0 * p as f64,
        dispersion,
        iterations,
        rows: d.rows(),
        claims: d.y.iter().sum(),
    })
}

/// Where the fit without factor j starts: βⱼ = 0 and the others where the
/// full fit's quadratic approximation of the log-likelihood puts them,
/// β₋ⱼ + I₋ⱼ,₋ⱼ⁻¹ I₋ⱼ,ⱼ βⱼ (one Newton step of the reduced fit, taken
/// without a pass over the rows): the others take up what factor j
/// explained, and IRLS is left a step or two from the reduced optimum.
fn without(beta: &[f64], info: &Matrix, j: usize) -> Vec<f64> {
    let kept: Vec<usize> = (0..beta.len()).filter(|&k| k != j).collect();
    let mut start = beta.to_vec();
    start[j] = 0.0;
    if let Some(l) = info.sub(&kept).cholesky() {
        let cross: Vec<f64> = kept.iter().map(|&k| info.at(k, j) * beta[j]).collect();
        for (&k, s) in kept.iter().zip(solve(&l, &cross)) {
            start[k] += s;
        }
    }
    start
}

fn check(d: &Design) -> Result<(), FitError> {
    let n = d.rows();
    if n == 0 {
        return Err(FitError::Empty);
    }
    let k = d.k();
    if d.x.len() != n * k || d.offset.len() != n {
        return Err(FitError::BadRow {
            row: 0,
            problem: "the columns have different lengths".into(),
        });
    }
    for i in 0..n {
        let bad = |problem: &str| FitError::BadRow {
            row: i,
            problem: problem.into(),
        };
        let whole = d.y[i].is_finite() && d.y[i] >= 0.0 && d.y[i].fract() == 0.0;
        if !whole {
            return Err(bad("the claim count is not a whole number ≥ 0"));
        }
        if !d.offset[i].is_finite() || d.x[i * k..(i + 1) * k].iter().any(|v| !v.is_finite()) {
            return Err(bad(
                "a factor or the distance offset is not finite (distance 0?)",
            ));
        }
    }
    Ok(())
}

/// β, the (penalised) information at β, the iterations taken and the
/// deviance at β.
///
/// One pass over the rows per iteration: at β it sums the information,
/// the score and the deviance together, so the pass that finds the
/// deviance has stopped changing already holds the information to return.
///
/// `dropped`: the model without factor j (its likelihood-ratio test),
/// fitted on the same rows with βⱼ held at 0 — the rows are not copied
/// without the column; its row and column of the system are left out.
fn irls(
    d: &Design,
    opts: &FitOptions,
    start: Option<Vec<f64>>,
    dropped: Option<usize>,
) -> Result<(Vec<f64>, Matrix, usize, f64), FitError> {
    let p = d.k() + 1;
    let mut beta = start.unwrap_or_else(|| {
        // The intercept-only rate: every row's μ at the overall frequency.
        let exposure: f64 = d.offset.iter().map(|o| o.exp()).sum();
        let mut b = vec![0.0; p];
        b[0] = ((d.y.iter().sum::<f64>() + 0.5) / exposure).ln();
        b
    });
    let kept: Vec<usize> = (0..p).filter(|&j| Some(j) != dropped).collect();
    let mut last = f64::INFINITY;
    for it in 0..=opts.max_iterations {
        let (info, score, deviance) = pass(d, &beta, opts.threads);
        let (mut info, mut score) = (
            info.sub(&kept),
            kept.iter().map(|&j| score[j]).collect::<Vec<_>>(),
        );
        for (a, &j) in kept.iter().enumerate().skip(1) {
            info.add(a, a, opts.ridge);
            score[a] -= opts.ridge * beta[j];
        }
        let penalised = deviance + opts.ridge * beta[1..].iter().map(|b| b * b).sum::<f64>();
        if !penalised.is_finite() {
            return Err(FitError::NotConverged(it));
        }
        if (last - penalised).abs() <= opts.tolerance * penalised.abs().max(1e-300) {
            return Ok((beta, info, it, deviance));
        }
        if it == opts.max_iterations {
            break;
        }
        last = penalised;
        // Newton on the log-likelihood: for the canonical link this is
        // IRLS with weight μ and working response η − offset + (y − μ)/μ.
        let l = info.cholesky().ok_or(FitError::Singular)?;
        for (&j, s) in kept.iter().zip(solve(&l, &score)) {
            beta[j] += s;
        }
    }
    Err(FitError::NotConverged(opts.max_iterations))
}

/// Rows per chunk of a pass. Chunks are summed in their order whatever the
/// thread count, so a fit gives the same bits on any machine.
const CHUNK: usize = 1 << 16;

/// XᵀWX, Xᵀ(y − μ) and the deviance at β, over every row.
fn pass(d: &Design, beta: &[f64], threads: usize) -> (Matrix, Vec<f64>, f64) {
    let chunks = d.rows().div_ceil(CHUNK).max(1);
    let threads = threads.clamp(1, chunks);
    let parts: Vec<(usize, Matrix, Vec<f64>, f64)> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..chunks)
                        .step_by(threads)
                        .map(|c| {
                            let (info, score, dev) =
                                chunk(d, beta, c * CHUNK..((c + 1) * CHUNK).min(d.rows()));
                            (c, info, score, dev)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        jobs.into_iter()
            // A thread that panicked panics the caller: its chunks' sums
            // left out would be a wrong fit, not a smaller one.
            .flat_map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut parts = parts;
    parts.sort_by_key(|p| p.0);
    let p = beta.len();
    let (mut info, mut score, mut deviance) = (Matrix::zeros(p), vec![0.0; p], 0.0);
    for (_, i, sc, dev) in parts {
        for (a, v) in info.a.iter_mut().zip(&i.a) {
            *a += v;
        }
        for (a, v) in score.iter_mut().zip(&sc) {
            *a += v;
        }
        deviance += dev;
    }
    (info, score, deviance)
}

fn chunk(d: &Design, beta: &[f64], rows: std::ops::Range<usize>) -> (Matrix, Vec<f64>, f64) {
    pulp::Arch::new().dispatch(Chunk { d, beta, rows })
}

/// One chunk's sums, run through [`pulp::Arch::dispatch`]: the same code,
/// compiled also for AVX2 and taken where the CPU has it. The sums keep
/// their order (Rust never fuses a multiply and an add by itself), so the
/// bits are the same either way.
struct Chunk<'a> {
    d: &'a Design,
    beta: &'a [f64],
    rows: std::ops::Range<usize>,
}

impl pulp::WithSimd for Chunk<'_> {
    type Output = (Matrix, Vec<f64>, f64);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Self::Output {
        chunk_in(self.d, self.beta, self.rows)
    }
}

#[inline(always)]
fn chunk_in(d: &Design, beta: &[f64], rows: std::ops::Range<usize>) -> (Matrix, Vec<f64>, f64) {
    // The factor count fixed at compile time keeps a row's sums in
    // registers; the model has five factors, its LR tests four.
    match d.k() {
        1 => chunk_of::<1>(d, beta, rows),
        2 => chunk_of::<2>(d, beta, rows),
        3 => chunk_of::<3>(d, beta, rows),
        4 => chunk_of::<4>(d, beta, rows),
        5 => chunk_of::<5>(d, beta, rows),
        6 => chunk_of::<6>(d, beta, rows),
        _ => chunk_any(d, beta, rows),
    }
}

/// ln y of a claim count, from `table` (ln 0 … ln 15) for the counts that occur.
#[inline(always)]
fn ln_count(y: f64, table: &[f64; 16]) -> f64 {
    if y < 16.0 { table[y as usize] } else { y.ln() }
}

/// Rows whose means are computed before they are summed.
const STRETCH: usize = 256;

/// [`chunk_any`] for K factors: the same formulas and the same sums in
/// the same order, so the same bits (tested).
#[inline(always)]
fn chunk_of<const K: usize>(
    d: &Design,
    beta: &[f64],
    rows: std::ops::Range<usize>,
) -> (Matrix, Vec<f64>, f64) {
    let (x, _) = d.x[rows.start * K..rows.end * K].as_chunks::<K>();
    let (offset, y) = (&d.offset[rows.clone()], &d.y[rows]);
    let b: [f64; K] = std::array::from_fn(|j| beta[j + 1]);
    let (mut mu_sum, mut r_sum, mut dev) = (0.0, 0.0, 0.0);
    let (mut score, mut xw) = ([0.0; K], [0.0; K]);
    let mut xwx = [[0.0; K]; K];
    // The means of a stretch are found first (exp is inlined, ln is a
    // table), then summed in a loop without calls: a call may clobber
    // every vector register, and the accumulators stay in registers.
    let mut mu = [0.0; STRETCH];
    let ln: [f64; 16] = std::array::from_fn(|k| (k as f64).ln());
    for start in (0..y.len()).step_by(STRETCH) {
        let end = (start + STRETCH).min(y.len());
        let mut eta = [0.0; STRETCH];
        for (i, e) in (start..end).zip(eta.iter_mut()) {
            *e = offset[i] + x[i].iter().zip(&b).fold(beta[0], |s, (a, b)| s + a * b);
        }
        for (m, &e) in mu.iter_mut().zip(&eta) {
            *m = crate::exp::exp(e);
        }
        for (i, (&m, &e)) in (start..end).zip(mu.iter().zip(&eta)) {
            // ln(y/μ) = ln y − η: no logarithm of μ per row.
            dev += if y[i] > 0.0 {
                2.0 * (y[i] * (ln_count(y[i], &ln) - e) - (y[i] - m))
            } else {
                2.0 * m
            };
        }
        for (i, &mu) in (start..end).zip(&mu) {
            let (x, r) = (&x[i], y[i] - mu);
            r_sum += r;
            mu_sum += mu;
            for a in 0..K {
                score[a] += x[a] * r;
                let wa = x[a] * mu;
                xw[a] += wa;
                for c in 0..=a {
                    xwx[a][c] += wa * x[c];
                }
            }
        }
    }
    let p = K + 1;
    let mut info = Matrix::zeros(p);
    info.a[0] = mu_sum;
    let mut sc = vec![0.0; p];
    sc[0] = r_sum;
    for a in 0..K {
        sc[a + 1] = score[a];
        info.a[(a + 1) * p] = xw[a];
        info.a[a + 1] = xw[a];
        for (c, &v) in xwx[a][..=a].iter().enumerate() {
            info.a[(a + 1) * p + c + 1] = v;
            info.a[(c + 1) * p + a + 1] = v;
        }
    }
    (info, sc, dev)
}

fn chunk_any(d: &Design, beta: &[f64], rows: std::ops::Range<usize>) -> (Matrix, Vec<f64>, f64) {
    let (k, p) = (d.k(), beta.len());
    let mut info = Matrix::zeros(p);
    let mut score = vec![0.0; p];
    let mut dev = 0.0;
    for i in rows {
        // Row i is (1, x): the intercept's terms are written out.
        let x = &d.x[i * k..(i + 1) * k];
        let eta = d.offset[i]
            + x.iter()
                .zip(&beta[1..])
                .fold(beta[0], |s, (a, b)| s + a * b);
        let mu = crate::exp::exp(eta);
        let y = d.y[i];
        // ln(y/μ) = ln y − η, as in chunk_of.
        dev += if y > 0.0 {
            2.0 * (y * (y.ln() - eta) - (y - mu))
        } else {
            2.0 * mu
        };
        let r = y - mu;
        score[0] += r;
        info.a[0] += mu;
        for (a, &xa) in x.iter().enumerate() {
            score[a + 1] += xa * r;
            let wa = xa * mu;
            let row = &mut info.a[(a + 1) * p..(a + 1) * p + a + 2];
            row[0] += wa;
            for (cell, xb) in row[1..].iter_mut().zip(x) {
                *cell += wa * xb;
            }
        }
    }
    for a in 0..p {
        for b in 0..a {
            info.a[b * p + a] = info.a[a * p + b];
        }
    }
    (info, score, dev)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn means(d: &Design, beta: &[f64]) -> Vec<f64> {
    let mut row = vec![0.0; beta.len()];
    (0..d.rows())
        .map(|i| {
            d.row(i, &mut row);
            (d.offset[i] + dot(&row, beta)).exp()
        })
        .collect()
}

fn log_likelihood(y: &[f64], mu: &[f64]) -> f64 {
    y.iter()
        .zip(mu)
        .map(|(&y, &m)| y * m.ln() - m - libm::lgamma(y + 1.0))
        .sum()
}

fn deviance(y: &[f64], mu: &[f64]) -> f64 {
    2.0 * y
        .iter()
        .zip(mu)
        .map(|(&y, &m)| {
            if y > 0.0 {
                y * (y / m).ln() - (y - m)
            } else {
                m
            }
        })
        .sum::<f64>()
}

/// The intercept-only model with the same offsets: μ = exposure × rate.
fn null_deviance(d: &Design) -> f64 {
    let exposure: Vec<f64> = d.offset.iter().map(|o| o.exp()).collect();
    let rate = d.y.iter().sum::<f64>() / exposure.iter().sum::<f64>();
    let mu: Vec<f64> = exposure.iter().map(|e| e * rate).collect();
    deviance(&d.y, &mu)
}

/// P(χ²₁ > x) = erfc(√(x/2)).
fn chi2_1_survival(x: f64) -> f64 {
    libm::erfc((x / 2.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Rows drawn from the model with known β (Poisson by inversion).
    fn planted(n: usize, beta: &[f64], seed: u64) -> Design {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let k = beta.len() - 1;
        let mut d = Design {
            names: (0..k).map(|j| format!("x{j}")).collect(),
            ..Design::default()
        };
        for _ in 0..n {
            let km: f64 = rng.random_range(2.0..80.0);
            let xs: Vec<f64> = (0..k).map(|_| rng.random_range(0.0..3.0)).collect();
            let off = (km / 100.0).ln();
            let mu =
                (off + beta[0] + xs.iter().zip(&beta[1..]).map(|(x, b)| x * b).sum::<f64>()).exp();
            let (mut y, mut p, u) = (0.0, (-mu).exp(), rng.random::<f64>());
            let mut c = p;
            while u > c {
                y += 1.0;
                p *= mu / y;
                c += p;
            }
            d.x.extend(xs);
            d.offset.push(off);
            d.y.push(y);
        }
        d
    }

    #[test]
    fn recovers_planted_coefficients_within_two_standard_errors() {
        let beta = [-3.0, 0.2, 0.1, -0.15];
        let d = planted(40_000, &beta, 9);
        let f = fit(&d, &FitOptions::default()).expect("fit");
        for (c, b) in f.coefficients.iter().zip(beta) {
            assert!((c.estimate - b).abs() < 2.0 * c.std_error, "{c:?} vs {b}");
            assert!(c.ci_low < b && b < c.ci_high);
        }
        assert!(f.deviance < f.null_deviance);
        assert!(
            (f.dispersion - 1.0).abs() < 0.1,
            "Poisson data: dispersion near 1, {}",
            f.dispersion
        );
        // A real effect is significant, and the likelihood-ratio statistic
        // is close to the Wald z² (they agree asymptotically).
        let c = &f.coefficients[1];
        let (lr, z2) = (
            c.lr_statistic.unwrap_or(0.0),
            (c.estimate / c.std_error).powi(2),
        );
        assert!(c.lr_p_value.is_some_and(|p| p < 1e-3), "{c:?}");
        assert!((lr - z2).abs() < 0.2 * z2, "LR {lr} vs Wald {z2}");
    }

    #[test]
    fn each_lr_statistic_is_the_deviance_of_the_model_without_it_fitted_afresh() {
        // Correlated factors: dropping one moves the others, so a start
        // that left them where the full fit had them would be far off.
        let mut d = planted(20_000, &[-2.8, 0.3, 0.2, -0.1], 4);
        for row in d.x.chunks_mut(3) {
            row[1] += 0.5 * row[0];
        }
        for ridge in [0.0, 50.0] {
            let opts = FitOptions {
                ridge,
                ..FitOptions::default()
            };
            let full = fit(&d, &opts).expect("fit");
            for j in 0..3 {
                let reduced = Design {
                    names: d
                        .names
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| *k != j)
                        .map(|(_, n)| n.clone())
                        .collect(),
                    x: d.x
                        .chunks(3)
                        .flat_map(|r| (0..3).filter(|&k| k != j).map(|k| r[k]))
                        .collect(),
                    ..d.clone()
                };
                let alone = fit(
                    &reduced,
                    &FitOptions {
                        lr_tests: false,
                        ..opts
                    },
                )
                .expect("fit");
                let want = alone.deviance - full.deviance;
                let got = full.coefficients[j + 1].lr_statistic.unwrap_or(f64::NAN);
                assert!(
                    (got - want).abs() <= 1e-7 * want.abs().max(1.0),
                    "ridge {ridge}, factor {j}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn ridge_shrinks_the_factors_but_not_the_intercept_rate() {
        let d = planted(5_000, &[-2.5, 0.4, -0.3], 3);
        let plain = fit(&d, &FitOptions::default()).expect("fit");
        let ridge = fit(
            &d,
            &FitOptions {
                ridge: 500.0,
                ..FitOptions::default()
            },
        )
        .expect("fit");
        for j in 1..3 {
            assert!(ridge.coefficients[j].estimate.abs() < plain.coefficients[j].estimate.abs());
        }
    }

    #[test]
    fn a_constant_factor_is_refused_as_singular_not_fitted_to_nan() {
        let mut d = planted(500, &[-2.0, 0.3], 1);
        for v in &mut d.x {
            *v = 0.0; // a factor never observed
        }
        assert_eq!(fit(&d, &FitOptions::default()), Err(FitError::Singular));
        // A ridge makes the system definite: the factor's β is then 0.
        let f = fit(
            &d,
            &FitOptions {
                ridge: 1.0,
                lr_tests: false,
                ..FitOptions::default()
            },
        )
        .expect("ridge fit");
        assert_eq!(f.coefficients[1].estimate, 0.0);
    }

    #[test]
    fn bad_rows_and_empty_designs_are_refused_by_row() {
        assert_eq!(
            fit(&Design::default(), &FitOptions::default()),
            Err(FitError::Empty)
        );
        let mut d = planted(10, &[-2.0, 0.3], 1);
        d.offset[4] = f64::NEG_INFINITY; // distance 0
        assert!(matches!(
            fit(&d, &FitOptions::default()),
            Err(FitError::BadRow { row: 4, .. })
        ));
        let mut d = planted(10, &[-2.0, 0.3], 1);
        d.y[2] = 1.5;
        assert!(matches!(
            fit(&d, &FitOptions::default()),
            Err(FitError::BadRow { row: 2, .. })
        ));
    }

    #[test]
    fn the_passes_fixed_to_a_factor_count_are_the_general_pass() {
        // Over more than one stretch, with claim counts past the log table.
        let mut d = planted(3 * STRETCH + 17, &[-1.0, 0.3, 0.2, -0.1], 5);
        d.y[7] = 20.0;
        let beta = [-0.9, 0.25, 0.1, -0.05];
        let rows = 3..d.rows();
        let (a, b) = (
            chunk_of::<3>(&d, &beta, rows.clone()),
            chunk_any(&d, &beta, rows),
        );
        assert_eq!(a.0.a, b.0.a);
        assert_eq!((a.1, a.2), (b.1, b.2));
    }

    #[test]
    fn a_chunk_gives_the_same_bits_with_and_without_avx2() {
        use pulp::Simd;
        let mut d = planted(3 * STRETCH + 17, &[-1.0, 0.3, 0.2, -0.1, 0.05, 0.1], 9);
        d.y[7] = 20.0;
        let beta = [-0.9, 0.25, 0.1, -0.05, 0.0, 0.2];
        let rows = 3..d.rows();
        let scalar = pulp::Scalar::new().vectorize(Chunk {
            d: &d,
            beta: &beta,
            rows: rows.clone(),
        });
        let best = chunk(&d, &beta, rows);
        assert_eq!(scalar.0.a, best.0.a);
        assert_eq!((scalar.1, scalar.2), (best.1, best.2));
    }

    #[test]
    fn the_log_table_is_ln() {
        let table: [f64; 16] = std::array::from_fn(|k| (k as f64).ln());
        for k in 1..40 {
            let y = f64::from(k);
            assert_eq!(ln_count(y, &table), y.ln(), "{k}");
        }
    }

    #[test]
    fn chi2_survival_matches_known_quantiles() {
        assert!((chi2_1_survival(3.841_458_820_694_124) - 0.05).abs() < 1e-9);
        assert!((chi2_1_survival(6.634_896_601_021_214) - 0.01).abs() < 1e-9);
        assert_eq!(chi2_1_survival(0.0), 1.0);
    }
}
