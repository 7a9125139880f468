use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pitwall_fleetgen::{FleetConfig, generate};
use pitwall_score_job::{JobConfig, RunStatus};

use crate::exit;
use crate::progress::TermProgress;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the sample fleet and the run's outputs go.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Rentals in the sample fleet.
    #[arg(long, default_value_t = 2000)]
    pub rentals: usize,
    /// Seed of the sample fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Generates a fleet, scores it at the fleet's "now" and says where the report is.
pub fn run(a: DemoArgs) -> anyhow::Result<u8> {
    let end = super::parse_time("2026-11-01T00:00:00Z").map_err(anyhow::Error::msg)?;
    let fleet_dir = a.out.join("fleet");
    say!(
        "generating {} rentals into {} …",
        a.rentals,
        fleet_dir.display()
    );
    generate(&fleet_dir, &FleetConfig::new(a.rentals, a.seed, end))
        .with_context(|| format!("generating the demo fleet into {}", fleet_dir.display()))?;
    let cfg = JobConfig::new(
        fleet_dir.join("rentals.parquet").display().to_string(),
        fleet_dir.join("telemetry").display().to_string(),
        end,
        a.out.join("run"),
    );
    let run =
        pitwall_score_job::run(&cfg, &TermProgress::new()).context("scoring the demo fleet")?;
    super::score::print_summary(&run);
    Ok(if run.status == RunStatus::Held {
        exit::HELD
    } else {
        exit::OK
    })
}
