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
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: FleetArgs) -> anyhow::Result<u8> {
    let summary = generate(&a.out, &FleetConfig::new(a.rentals, a.seed, a.end))
        .with_context(|| format!("generating a fleet into {}", a.out.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "wrote {} rentals (+{} bad rows) and {} telemetry rows in {} files over {} days to {}",
            summary.rentals,
            summary.bad_rental_rows,
            summary.telemetry_rows,
            summary.telemetry_files,
            summary.days,
            a.out.display()
        );
    }
    Ok(exit::OK)
}
