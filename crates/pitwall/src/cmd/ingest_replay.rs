//! `pitwall ingest replay`: archived records for a time range into the lake again.

use anyhow::Context;
use clap::Args;
use pitwall_ingest::replay::{ReplayJob, ReplayReport, ReplaySource, replay};
use pitwall_lake::Location;

use super::ingest::{LakeArgs, default_threads, load_contract, pii_from_env};
use crate::exit;
use crate::progress::TermProgress;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true))]
pub struct ReplayArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Replay the legacy output: PREFIX of Firehose-style PREFIX/YYYY/MM/DD/HH/* (local or s3://).
    #[arg(long, group = "source")]
    pub legacy: Option<String>,
    /// Replay the lake's own DLQ (after a contract fix); what is still refused stays in it.
    #[arg(long, group = "source")]
    pub dlq: bool,
    /// Start of the arrival times to replay (RFC 3339); legacy hours and DLQ days are read whole.
    #[arg(long, value_parser = super::parse_time)]
    pub from: i64,
    /// End of the range, exclusive (RFC 3339).
    #[arg(long, value_parser = super::parse_time)]
    pub to: i64,
    /// The contract field that identifies an event: events the lake holds under it are left out.
    #[arg(long, default_value = "event_id")]
    pub key: String,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ReplayArgs) -> anyhow::Result<u8> {
    let contract = load_contract(a.lake.contract.as_ref())?;
    let lake = Location::parse(&a.lake.lake).context("--lake")?;
    let source = match &a.legacy {
        Some(p) => ReplaySource::Legacy(Location::parse(p).context("--legacy")?),
        None => ReplaySource::Dlq,
    };
    let job = ReplayJob {
        source,
        lake: &lake,
        contract: &contract,
        pii: pii_from_env(&contract)?,
        key: &a.key,
        from_ms: a.from,
        to_ms: a.to,
        roll: a.lake.roll(),
        parquet: pitwall_ingest::lake_parquet(&contract, a.lake.zstd_level),
        threads: a.threads.unwrap_or_else(default_threads),
    };
    let progress = TermProgress::new();
    use pitwall_score_job::Progress as _;
    let report = replay(
        &job,
        &|n| progress.stage("replaying files", n as u64),
        &|_| progress.advance(1),
    )?;
    progress.finish();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say!("{}", summary(&report, &lake));
    }
    Ok(exit::OK)
}

fn summary(r: &ReplayReport, lake: &Location) -> String {
    let c = &r.files.counts;
    let mut s = format!(
        "replayed {} files from {} folders: {} records; {} events to {}, {} already there (left out), \
         {} refused {:?} ({} of them already in the DLQ, not written again); wrote {} files",
        r.files.files_read,
        r.folders.len(),
        c.records,
        c.events,
        lake,
        c.already_landed,
        c.dlq_total(),
        c.dlq,
        c.already_in_dlq,
        r.files.written.len(),
    );
    if !r.stale_removed.is_empty() {
        s += &format!(
            "; removed {} files an earlier replay wrote",
            r.stale_removed.len()
        );
    }
    if r.files.unreadable_lines > 0 {
        s += &format!(
            "\n{} lines hold no record to replay and stay where they are, e.g.:\n  {}",
            r.files.unreadable_lines,
            r.files.unreadable.join("\n  ")
        );
    }
    s
}
