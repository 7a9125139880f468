use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pitwall_fleetgen::{FleetConfig, generate};

use crate::exit;

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of valid rentals; a few contract-breaking rental rows are added.
    #[arg(long, default_value_t = 2000)]
    pub rentals: usize,
    /// Seed: the same seed and flags write the same fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The fleet's "now": history runs 13 months before it, a few rentals end just before or after it.
    #[arg(long, default_value = "2026-11-01T00:00:00Z", value_parser = super::parse_time)]
    pub end: i64,
    /// Also draw claims for the fleet's rentals from this planted model (a model file with a [fit]
    /// intercept, e.g. models/planted-claims.toml) into claims.parquet: the fleet is scored at --end
    /// once to get each rental's features (into OUT/scored/).
    #[arg(long)]
    pub claims: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Summary {
    #[serde(flatten)]
    fleet: pitwall_fleetgen::FleetSummary,
    claims: Option<super::gen_results::ClaimsSummary>,
}

/// Scores the fleet once (features of every rental) and draws its claims.
fn fleet_claims(
    a: &FleetArgs,
    truth: &std::path::Path,
) -> anyhow::Result<super::gen_results::ClaimsSummary> {
    let scored = a.out.join("scored");
    let cfg = pitwall_score_job::JobConfig::new(
        a.out.join("rentals.parquet").display().to_string(),
        a.out.join("telemetry").display().to_string(),
        a.end,
        scored.clone(),
    );
    pitwall_score_job::run(&cfg, &crate::progress::TermProgress::new())
        .context("scoring the fleet for its features")?;
    let results = pitwall_fit_job::data::load_results(
        &scored.join("rental_scores.parquet").display().to_string(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )?;
    let spans: Vec<_> = results
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let id = results.rental_id(i).to_string();
            (id, r.start_at, r.end_at, r.features)
        })
        .collect();
    super::gen_results::write_claims(&a.out, truth, &spans, a.seed)
}

pub fn run(a: FleetArgs) -> anyhow::Result<u8> {
    let fleet = generate(&a.out, &FleetConfig::new(a.rentals, a.seed, a.end))
        .with_context(|| format!("generating a fleet into {}", a.out.display()))?;
    let claims = match &a.claims {
        Some(truth) => Some(fleet_claims(&a, truth)?),
        None => None,
    };
    let summary = Summary { fleet, claims };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let (summary, claims) = (&summary.fleet, &summary.claims);
        say!(
            "wrote {} rentals (+{} bad rows) and {} telemetry rows in {} files over {} days to {}",
            summary.rentals,
            summary.bad_rental_rows,
            summary.telemetry_rows,
            summary.telemetry_files,
            summary.days,
            a.out.display()
        );
        if let Some(c) = claims {
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
