//! `gen results`: rental results without telemetry (features drawn from
//! per-member styles), and claims drawn from a planted model, for fits of
//! millions of rentals. Also the claims half of `gen fleet --claims`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use pitwall_fit_job::claims::{self, Claim};
use pitwall_fit_job::synth::{self, SynthConfig};
use pitwall_score::Model;
use serde::Serialize;

use crate::exit;

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Output directory: rental_scores.parquet (and claims.parquet with --claims).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 200_000)]
    pub rentals: usize,
    /// Members the rentals are spread over (default: one per 10 rentals).
    #[arg(long)]
    pub members: Option<usize>,
    /// Rentals end in the --days before --end.
    #[arg(long, default_value = "2026-11-01T00:00:00Z", value_parser = super::parse_time)]
    pub end: i64,
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The model the results are scored with (default: the embedded psf-v1).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Draw claims from this planted model (a model file with a [fit] intercept, e.g.
    /// models/planted-claims.toml) into claims.parquet.
    #[arg(long)]
    pub claims: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct ClaimsSummary {
    pub truth: String,
    pub claims: usize,
    pub at_fault: usize,
    /// Rows breaking the contract on purpose (unknown rental, outside the rental, bad severity, a conflicting duplicate).
    pub flawed_rows: usize,
}

#[derive(Debug, Serialize)]
struct Summary {
    rentals: usize,
    members: usize,
    claims: Option<ClaimsSummary>,
}

fn model_from(path: &Path) -> anyhow::Result<Model> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read model file {}", path.display()))?;
    Model::from_toml(&text).with_context(|| format!("model file {}", path.display()))
}

/// Draws claims for `rentals` from the truth file and writes DIR/claims.parquet.
pub fn write_claims(
    dir: &Path,
    truth: &Path,
    rentals: &[synth::RentalSpan],
    seed: u64,
) -> anyhow::Result<ClaimsSummary> {
    let truth_model = model_from(truth)?;
    let good = synth::claims(rentals, &truth_model, seed)?;
    let flawed = synth::flawed(&good, rentals);
    let all: Vec<Claim> = good.iter().chain(&flawed).cloned().collect();
    let path = dir.join("claims.parquet");
    pitwall_fit_job::outputs::batch_to(&path, &claims::to_batch(&all)?)?;
    Ok(ClaimsSummary {
        truth: truth_model.id(),
        claims: good.len(),
        at_fault: good.iter().filter(|c| c.at_fault).count(),
        flawed_rows: flawed.len(),
    })
}

pub fn run(a: ResultsArgs) -> anyhow::Result<u8> {
    let model = match &a.model {
        Some(p) => model_from(p)?,
        None => Model::default(),
    };
    let mut cfg = SynthConfig::new(a.rentals, a.seed, a.end);
    cfg.days = a.days.max(1);
    if let Some(m) = a.members {
        cfg.members = m.max(1);
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let rows = synth::results(&cfg, &model);
    let batch = pitwall_score_state::results::to_batch(&rows, false)?;
    pitwall_fit_job::outputs::batch_to(&a.out.join("rental_scores.parquet"), &batch)?;
    let claims = match &a.claims {
        Some(truth) => Some(write_claims(&a.out, truth, &synth::spans(&rows), a.seed)?),
        None => None,
    };
    let summary = Summary {
        rentals: rows.len(),
        members: cfg.members,
        claims,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        say!(
            "wrote {} rental results of {} members to {}/rental_scores.parquet",
            summary.rentals,
            summary.members,
            a.out.display()
        );
        if let Some(c) = &summary.claims {
            say!(
                "drew {} claims ({} at fault) from {} into claims.parquet, plus {} contract-breaking rows",
                c.claims,
                c.at_fault,
                c.truth,
                c.flawed_rows
            );
        }
    }
    Ok(exit::OK)
}
