//! The command-line interface: one module per command group.

mod demo;
mod doctor;
mod gen_fleet;
mod gen_results;
mod gen_stream;
mod http;
mod ingest;
mod ingest_alerts;
mod ingest_http;
mod ingest_replay;
mod ingest_run;
mod lake;
mod publish;
mod reconcile;
mod schema;
mod score;
mod score_fit;
mod score_tail;
mod score_watch;
mod state_lease;

use clap::{Parser, Subcommand};

/// pitwall — driving scores and log ingestion for a car-sharing data platform.
///
/// Exit codes: 0 ok, 1 error, 2 usage, 3 run held by a quality gate, 4 reconciliation beyond tolerance.
#[derive(Debug, Parser)]
#[command(
    name = "pitwall",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Write logs as JSON lines on stderr, one object per line with its span's run_id,
    /// shard_id or cycle. Level from PITWALL_LOG, else RUST_LOG, else warn.
    #[arg(long, global = true, env = "PITWALL_LOG_JSON",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a sample fleet, score it and write the report: the whole job on embedded defaults.
    Demo(demo::DemoArgs),
    /// Before a deployment: is every dependency its flags name reachable and allowed?
    /// One line per check, what to do when it fails; exit 1 if one fails.
    Doctor(Box<doctor::DoctorArgs>),
    /// Generate synthetic inputs.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Driving scores: run the scorer, inspect the model.
    #[command(subcommand)]
    Score(score::ScoreCommand),
    /// Avro schemas in a registry: check compatibility, register, show.
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Server logs into the Parquet lake, validated against the data contract.
    #[command(subcommand)]
    Ingest(ingest::IngestCommand),
    /// Compare the legacy log output with the lake, hour by hour (exit 4 beyond tolerance).
    Reconcile(Box<reconcile::ReconcileArgs>),
    /// The lake in a catalog: tables for Athena and Trino.
    #[command(subcommand)]
    Lake(lake::LakeCommand),
}

#[derive(Debug, Subcommand)]
enum GenCommand {
    /// Write a deterministic synthetic fleet: rentals.parquet and telemetry/dt=YYYY-MM-DD/*.parquet.
    Fleet(gen_fleet::FleetArgs),
    /// Simulate cars live: put their 1 Hz telemetry on a Kinesis stream as devices upload it
    /// (batched, late after offline stretches, sometimes twice) and list returned rentals.
    Stream(gen_stream::StreamArgs),
    /// Write rental results without telemetry (features drawn per member style), and with
    /// --claims TRUE.toml claims drawn from that planted model: data for large fits.
    Results(gen_results::ResultsArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Doctor(a) => doctor::run(*a),
        Command::Gen(GenCommand::Fleet(a)) => gen_fleet::run(a),
        Command::Gen(GenCommand::Stream(a)) => gen_stream::run(a),
        Command::Gen(GenCommand::Results(a)) => gen_results::run(a),
        Command::Score(c) => score::run(c),
        Command::Schema(c) => schema::run(c),
        Command::Ingest(c) => ingest::run(c),
        Command::Reconcile(a) => reconcile::run(*a),
        Command::Lake(c) => lake::run(c),
    }
}

/// Parses an RFC 3339 time into ms since the epoch, for clap.
pub fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z ({e})"))
}
