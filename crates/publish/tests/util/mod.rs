//! A scored run to publish, shared by the publish integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The fleets' "now": 2026-05-28T20:26:40Z.
pub const END: i64 = 1_780_000_000_000;

/// Generates a fleet of `rentals` under `dir` and scores it at END; returns
/// the run directory and what run.json says.
pub fn scored_run(
    dir: &Path,
    rentals: usize,
    seed: u64,
) -> Result<(PathBuf, pitwall_score_job::RunJson), Box<dyn std::error::Error>> {
    pitwall_fleetgen::generate(
        &dir.join("fleet"),
        &pitwall_fleetgen::FleetConfig::new(rentals, seed, END),
    )?;
    let mut cfg = pitwall_score_job::JobConfig::new(
        dir.join("fleet/rentals.parquet").display().to_string(),
        dir.join("fleet/telemetry").display().to_string(),
        END,
        dir.join("run"),
    );
    cfg.threads = 2;
    let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    Ok((cfg.out, run))
}
