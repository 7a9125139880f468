//! `pitwall reconcile`: the legacy output against the lake, hour by hour.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use pitwall_lake::Location;
use pitwall_reconcile::{HourReport, Job, reconcile};

use super::ingest::{load_contract, pii_from_env};
use crate::exit;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The legacy output: PREFIX of Firehose-style PREFIX/YYYY/MM/DD/HH/*.gz (local or s3://).
    #[arg(long)]
    pub legacy: String,
    /// The lake root (local or s3://), as given to `pitwall ingest`.
    #[arg(long)]
    pub lake: String,
    /// First event hour to compare (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long, value_parser = super::parse_time)]
    pub from: i64,
    /// End of the range, exclusive (RFC 3339); widened to a whole hour.
    #[arg(long, value_parser = super::parse_time)]
    pub to: i64,
    /// The ODCS data contract (YAML); default: the embedded server_log.api_request contract.
    #[arg(long)]
    pub contract: Option<PathBuf>,
    /// The contract field events are matched by.
    #[arg(long, default_value = "event_id")]
    pub key: String,
    /// Problems allowed per hour, as a fraction of its legacy events (0.001 = 0.1 %).
    #[arg(long, default_value_t = 0.0)]
    pub tolerance: f64,
    /// How long after its event time an event may reach the legacy output (whole hours).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub arrival_slack: std::time::Duration,
    /// Ids listed per hour and kind of problem.
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Write reconcile.json and reconcile.html into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(a: ReconcileArgs) -> anyhow::Result<u8> {
    let contract = load_contract(a.contract.as_ref())?;
    let legacy = Location::parse(&a.legacy).context("--legacy")?;
    let lake = Location::parse(&a.lake).context("--lake")?;
    let job = Job {
        legacy: &legacy,
        lake: &lake,
        contract: &contract,
        pii: pii_from_env(&contract)?,
        key: &a.key,
        from_ms: a.from,
        to_ms: a.to,
        arrival_slack_hours: a.arrival_slack.as_secs().div_ceil(3600) as i64,
        tolerance: a.tolerance,
        sample: a.samples,
        threads: a.threads.unwrap_or_else(super::ingest::default_threads),
    };
    let quiet = a.json;
    let report = reconcile(&job, &|h: &HourReport| {
        if !quiet {
            say!("{}", hour_line(h));
        }
    })?;
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating --out {}", dir.display()))?;
        let json = serde_json::to_string_pretty(&report)?;
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        write("reconcile.json", &json)?;
        write("reconcile.html", &report.to_html())?;
    }
    alert_on(&report, a.out.as_deref());
    let t = &report.totals;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say!(
            "{}: {} of {} hours beyond tolerance {}; legacy {} / lake {} events, {} missing, {} extra, \
             {} differing, {} refused by the contract ({} of them not in the DLQ), {} lake duplicates ({} ms)",
            if report.within_tolerance {
                "OK"
            } else {
                "MISMATCH"
            },
            t.hours_beyond_tolerance,
            report.hours.len(),
            report.tolerance,
            t.legacy,
            t.lake,
            t.missing,
            t.extra,
            t.differing,
            t.legacy_refused,
            t.refused_not_in_dlq,
            t.lake_duplicates,
            report.millis,
        );
        if let Some(dir) = &a.out {
            say!("report: {}", dir.join("reconcile.html").display());
        }
    }
    Ok(if report.within_tolerance {
        exit::OK
    } else {
        exit::BEYOND_TOLERANCE
    })
}

fn hour_line(h: &HourReport) -> String {
    format!(
        "{} {:>4}  legacy {:>9}  lake {:>9}  missing {:>6}  extra {:>6}  differing {:>6}  refused {:>6} (not in DLQ {})",
        h.hour,
        if h.within_tolerance { "ok" } else { "BAD" },
        h.legacy,
        h.lake,
        h.missing,
        h.extra,
        h.differing,
        h.legacy_refused.values().sum::<u64>(),
        h.refused_not_in_dlq,
    )
}

fn alert_on(r: &pitwall_reconcile::Report, out: Option<&std::path::Path>) {
    let key = format!("reconcile/{}", r.dataset);
    let source = "pitwall reconcile";
    let t = &r.totals;
    let problem = (!r.within_tolerance).then(|| pitwall_alert::Alert {
        key: key.clone(),
        summary: format!(
            "{}: legacy and lake disagree in {} hours ({} missing, {} extra, {} differing)",
            r.dataset, t.hours_beyond_tolerance, t.missing, t.extra, t.differing
        ),
        description: format!(
            "Event hours {} to {}, tolerance {}. Report: {}. Missing events can be re-ingested with \
             `pitwall ingest files --input <legacy hour folder>`.",
            r.from,
            r.to,
            r.tolerance,
            out.map_or("rerun with --out DIR".into(), |d| d.join("reconcile.html").display().to_string())
        ),
        severity: pitwall_alert::Severity::Critical,
        details: [
            ("legacy", t.legacy),
            ("lake", t.lake),
            ("missing", t.missing),
            ("extra", t.extra),
            ("differing", t.differing),
            ("refused_not_in_dlq", t.refused_not_in_dlq),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        source: source.into(),
    });
    crate::alerts::outcome(
        &key,
        source,
        problem,
        "legacy and lake agree within tolerance",
    );
}
