//! `score fit` and `score validate`: the binary's side of pitwall-fit-job
//! (arguments, the order of the steps, what is printed).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use pitwall_fit_job::claims::{self, ClaimInput, ClaimsReport};
use pitwall_fit_job::data::{Period, Results, load_with_claims};
use pitwall_fit_job::fitting::{FitConfig, FitReport, Timings, fit_model};
use pitwall_fit_job::judge::{Judged, Validation, judge};
use pitwall_fit_job::{outputs, report};
use pitwall_score::Model;
use serde::Serialize;

use crate::exit;

#[derive(Debug, Args)]
pub struct Inputs {
    /// Rental results: a score state (its final results; local or s3://) or rental_scores.parquet of a full run.
    #[arg(long)]
    pub results: String,
    /// Claims, one row per accident (Parquet or CSV; a file or a directory): claim_id, rental_id,
    /// occurred_at, at_fault, severity.
    #[arg(long)]
    pub claims: String,
    /// Bootstrap resamples of the Gini interval.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    /// Seed of the bootstrap: the same seed gives the same interval.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output directory: validation.json, report.html, rejected_claims.parquet (and model.toml for a fit).
    #[arg(long)]
    pub out: PathBuf,
    /// Print validation.json on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

impl Inputs {
    fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}

#[derive(Debug, Args)]
pub struct FitArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// Fit on rentals that ended before T; validate on those that ended on or after it.
    #[arg(long, value_parser = super::parse_time)]
    pub split: i64,
    /// Ridge penalty λ on the five factor coefficients (not the intercept); 0 = maximum likelihood.
    #[arg(long, default_value_t = 0.0)]
    pub ridge: f64,
    /// Choose the mapping slope so the fitted model's median member score on the training data
    /// equals the current model's (100 still at zero events).
    #[arg(long)]
    pub calibrate: bool,
    /// The model in use (default: the embedded psf-v1): its caps, grades and mapping are kept, and
    /// every figure compares with it.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Name of the fitted model (default: the current model's).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Version of the fitted model (default: the current version + "-fit-" + today's date).
    #[arg(long)]
    pub model_version: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// The model to judge (psf-v1 itself: `pitwall score model > psf-v1.toml`).
    #[arg(long)]
    pub model: PathBuf,
    /// The period: rentals that ended in [from, to).
    #[arg(long, value_parser = super::parse_time)]
    pub from: i64,
    /// End of the period (default: just after the last rental of the results).
    #[arg(long, value_parser = super::parse_time)]
    pub to: Option<i64>,
    /// Compare with this model (double lift, stability, Gini check); default: the embedded psf-v1
    /// unless --model is psf-v1.
    #[arg(long)]
    pub current: Option<PathBuf>,
}

fn load_model(path: &Path) -> anyhow::Result<Model> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read model file {}", path.display()))?;
    Model::from_toml(&text).with_context(|| format!("model file {}", path.display()))
}

/// Results with their claims attached, what the claims contract said, and
/// the time each took.
fn read(inputs: &Inputs) -> anyhow::Result<(Results, ClaimInput, Timings)> {
    let ms = |t: std::time::Instant| t.elapsed().as_millis() as u64;
    let mut timings = Timings::default();
    say!(
        "reading rental results from {} and claims from {} ...",
        inputs.results,
        inputs.claims
    );
    let t = std::time::Instant::now();
    let (mut results, files) = load_with_claims(&inputs.results, &inputs.claims, inputs.threads())?;
    timings.read_results = ms(t);
    let t = std::time::Instant::now();
    let input = results.attach_claims(&files, inputs.threads())?;
    timings.read_claims = ms(t);
    std::fs::create_dir_all(&inputs.out)
        .with_context(|| format!("cannot create output directory {}", inputs.out.display()))?;
    claims::write_rejected(&inputs.out.join("rejected_claims.parquet"), &input.rejected)?;
    Ok((results, input, timings))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn fit(a: FitArgs) -> anyhow::Result<u8> {
    let current = match &a.model {
        Some(p) => load_model(p)?,
        None => Model::default(),
    };
    let (results, input, mut timings) = read(&a.inputs)?;
    say!("fitting on {} rental results ...", results.rows.len());
    let cfg = FitConfig {
        split: a.split,
        ridge: a.ridge,
        calibrate: a.calibrate,
        current,
        name: a.model_name.clone(),
        version: a.model_version.clone(),
        resamples: a.inputs.resamples,
        seed: a.inputs.seed,
        threads: a.inputs.threads(),
        fitted_at: now(),
    };
    let out = fit_model(&results, &cfg)?;
    (timings.fit, timings.validate) = (out.fit_ms, out.validate_ms);
    let claims = input.report();
    let dir = &a.inputs.out;
    let text = format!(
        "# Fitted by `pitwall score fit` from {} and {}; see [fit] for its provenance.\n{}",
        a.inputs.results,
        a.inputs.claims,
        out.model.to_toml()?
    );
    outputs::text_to(&dir.join("model.toml"), text.as_bytes())?;
    let doc = FitReport {
        model: out.model.id(),
        current: cfg.current.id(),
        results: &results.source,
        claims: &claims,
        fit: &out.fit,
        validation: &out.validation,
        timings_ms: timings,
    };
    outputs::json(&dir.join("validation.json"), &doc)?;
    let title = format!("Fit of {} against {}", out.model.id(), cfg.current.id());
    let html = report::render(&title, &out.validation, Some(&out.fit), &claims);
    outputs::text_to(&dir.join("report.html"), html.as_bytes())?;
    if a.inputs.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_fit(&doc, dir);
    }
    Ok(exit::OK)
}

fn print_fit(doc: &FitReport<'_>, dir: &Path) {
    let f = &doc.fit.fit;
    println!(
        "fitted {} on {} rentals, {:.0} km, {} at-fault claims ({} IRLS iterations, dispersion {:.3})",
        doc.model, doc.fit.rentals, doc.fit.distance_km, doc.fit.claims, f.iterations, f.dispersion
    );
    for c in &f.coefficients {
        println!(
            "  {:<16} β {:>9.5}  SE {:.5}  95 % [{:.5}, {:.5}]  multiplier {:.4}",
            c.name,
            c.estimate,
            c.std_error,
            c.ci_low,
            c.ci_high,
            c.estimate.exp()
        );
    }
    for w in &doc.fit.warnings {
        println!("  warning: {w}");
    }
    print_validation(doc.validation, doc.claims);
    println!(
        "wrote {}/model.toml, validation.json, report.html",
        dir.display()
    );
}

fn print_validation(v: &Validation, claims: &ClaimsReport) {
    let rejected: u64 = claims.rejected.values().map(|r| r.count).sum();
    println!(
        "claims: {} rows, {} valid ({} at fault), {rejected} rejected (rejected_claims.parquet)",
        claims.rows, claims.valid, claims.at_fault
    );
    println!(
        "validation {} – {}: {} rentals, {:.0} km, {} claims",
        v.from, v.to, v.rentals, v.distance_km, v.claims
    );
    for m in std::iter::once(&v.candidate).chain(v.current.as_ref()) {
        let num = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.3}"));
        println!(
            "  {:<24} Gini {:.3} [{:.3}, {:.3}]  worst/best {}  A/E {}  ≥90 vs ≤50 rate ratio {}",
            m.model,
            m.gini.normalised,
            m.gini.ci_low,
            m.gini.ci_high,
            num(m.lift.worst_over_best),
            num(m.calibration.actual_over_expected),
            num(m.member_view.rate_ratio)
        );
    }
    for c in &v.checks {
        println!(
            "  {} {}: {}",
            if c.passed { "pass" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!(
        "{}",
        if v.recommended {
            "recommended for promotion (commit the model file to switch; nothing switches by itself)"
        } else {
            "not recommended for promotion: see the failed checks"
        }
    );
}

#[derive(Serialize)]
struct ValidateReport<'a> {
    model: String,
    current: Option<String>,
    results: &'a str,
    claims: &'a ClaimsReport,
    validation: &'a Validation,
    timings_ms: Timings,
}

pub fn validate(a: ValidateArgs) -> anyhow::Result<u8> {
    let model = load_model(&a.model)?;
    let current = match &a.current {
        Some(p) => Some(load_model(p)?),
        None => Some(Model::default()).filter(|d| d.id() != model.id()),
    };
    let (results, input, mut timings) = read(&a.inputs)?;
    let to =
        a.to.unwrap_or_else(|| results.max_end().map_or(a.from, |e| e + 1));
    say!("validating {} ...", model.id());
    let judged = Judged {
        results: &results,
        period: Period { from: a.from, to },
        resamples: a.inputs.resamples,
        seed: a.inputs.seed,
        threads: a.inputs.threads(),
    };
    let t = std::time::Instant::now();
    let v = judge(&judged, &model, current.as_ref())?;
    timings.validate = t.elapsed().as_millis() as u64;
    let claims = input.report();
    let doc = ValidateReport {
        model: model.id(),
        current: current.as_ref().map(Model::id),
        results: &results.source,
        claims: &claims,
        validation: &v,
        timings_ms: timings,
    };
    let dir = &a.inputs.out;
    outputs::json(&dir.join("validation.json"), &doc)?;
    let title = format!("Validation of {}", model.id());
    outputs::text_to(
        &dir.join("report.html"),
        report::render(&title, &v, None, &claims).as_bytes(),
    )?;
    if a.inputs.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_validation(&v, &claims);
        println!("wrote {}/validation.json, report.html", dir.display());
    }
    Ok(exit::OK)
}
