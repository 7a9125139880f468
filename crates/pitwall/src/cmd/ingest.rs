//! `pitwall ingest …`: server logs into the Parquet lake.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use pitwall_ingest::{FilesJob, RollPolicy, ingest_files};
use pitwall_lake::Location;
use pitwall_logs::{Contract, Pii};

use crate::exit;
use crate::progress::TermProgress;

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Run the ingestion service: read a Kinesis stream under leases, validate, write the lake.
    Run(Box<super::ingest_run::RunArgs>),
    /// Ingest archived records from files (one record's data per line, plain or .gz) through the
    /// contract into the lake; the same files ingested again rewrite the same lake files.
    Files(FilesArgs),
    /// Re-ingest archived records for a time range — the legacy Firehose output, or the lake's DLQ
    /// after a contract fix — leaving out events the lake already holds; replaying twice leaves
    /// the lake as after once.
    Replay(super::ingest_replay::ReplayArgs),
}

/// What every ingestion shares: the lake, the contract, the PII key.
#[derive(Debug, Args)]
pub struct LakeArgs {
    /// The lake root: a local directory or s3://bucket/prefix.
    #[arg(long)]
    pub lake: String,
    /// The ODCS data contract (YAML); default: the embedded server_log.api_request contract.
    #[arg(long)]
    pub contract: Option<PathBuf>,
    /// Commit a shard's open files once they hold this many bytes of events (e.g. 128MiB).
    #[arg(long, default_value = "128MiB", value_parser = parse_bytes)]
    pub roll_bytes: usize,
    /// … or once their oldest event was read this long ago.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub roll_age: std::time::Duration,
    /// zstd level of the lake's Parquet files (1 fastest … 22 smallest).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub zstd_level: i32,
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Files or directories to read (local or s3://); directories are read recursively.
    #[arg(long = "input", required = true)]
    pub inputs: Vec<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(c: IngestCommand) -> anyhow::Result<u8> {
    match c {
        IngestCommand::Files(a) => files(a),
        IngestCommand::Run(a) => super::ingest_run::run(*a),
        IngestCommand::Replay(a) => super::ingest_replay::run(a),
    }
}

pub fn load_contract(path: Option<&PathBuf>) -> anyhow::Result<Contract> {
    match path {
        None => Ok(Contract::embedded()?),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the contract {}", p.display()))?;
            Contract::from_yaml(&text).with_context(|| format!("in the contract {}", p.display()))
        }
    }
}

/// The PII key, from the environment only: a secret never sits in a flag or a file.
/// The HMAC key, which only a contract with hashed fields needs (the
/// telemetry contract's positions are rounded, not hashed).
pub fn pii_from_env(contract: &Contract) -> anyhow::Result<Pii> {
    match std::env::var(pitwall_logs::pii::KEY_ENV) {
        Ok(k) if !k.is_empty() => Ok(Pii::new(k.as_bytes())),
        _ if !contract.needs_key() => Ok(Pii::new(b"")),
        _ => bail!(
            "{} is not set: PII fields are hashed with this key before they land; set it to the \
             team's secret (or any value for a local try)",
            pitwall_logs::pii::KEY_ENV
        ),
    }
}

fn files(a: FilesArgs) -> anyhow::Result<u8> {
    let contract = load_contract(a.lake.contract.as_ref())?;
    let pii = pii_from_env(&contract)?;
    let lake = Location::parse(&a.lake.lake)?;
    let mut inputs = Vec::new();
    for i in &a.inputs {
        let found = Location::parse(i)?
            .list(&[".jsonl", ".json", ".gz", ".log"])
            .with_context(|| format!("listing --input {i}"))?;
        if found.is_empty() {
            bail!("--input {i}: no .jsonl, .json, .log or .gz files there");
        }
        inputs.extend(found);
    }
    let total: u64 = inputs.iter().map(|f| f.size).sum();
    let progress = TermProgress::new();
    use pitwall_score_job::Progress as _;
    progress.stage("ingesting files", inputs.len() as u64);
    let job = FilesJob {
        inputs,
        lake: &lake,
        contract: &contract,
        pii,
        roll: a.lake.roll(),
        parquet: pitwall_ingest::lake_parquet(&contract, a.lake.zstd_level),
        threads: a.threads.unwrap_or_else(default_threads),
        archive: pitwall_ingest::Archive::Records,
        landed: None,
        in_dlq: None,
    };
    let report = ingest_files(&job, &|_| progress.advance(1))?;
    progress.finish();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let secs = (report.millis as f64 / 1000.0).max(1e-3);
        say!(
            "read {} files ({:.1} MB, {:.0} MB/s): {} records, {} events to {}, {} to the DLQ {:?}; wrote {} files",
            report.files_read,
            total as f64 / 1e6,
            total as f64 / 1e6 / secs,
            report.counts.records,
            report.counts.events,
            lake,
            report.counts.dlq_total(),
            report.counts.dlq,
            report.written.len(),
        );
    }
    Ok(exit::OK)
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl LakeArgs {
    pub fn roll(&self) -> RollPolicy {
        RollPolicy {
            max_bytes: self.roll_bytes,
            max_age: self.roll_age,
        }
    }
}

/// `128MiB`, `64MB`, `1048576`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 128MiB"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "unknown unit {u:?}: use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("128MiB"), Ok(128 << 20));
        assert_eq!(parse_bytes("64MB"), Ok(64_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }
}
