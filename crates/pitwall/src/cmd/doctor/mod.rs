//! `pitwall doctor`: given the flags of a deployment, is every dependency
//! they name reachable, and may this role do what the service will do?
//! One line per check with what to do when it fails; exit 1 if one fails.
//! Read-only, but for one small object written and deleted under the lake
//! and the state (the only way to know a write is allowed).

mod aws;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use pitwall_contract::schemas::MEMBER_SCORE_V1;
use pitwall_publish::registry::{Outcome, check_and_register};

use super::publish::TopicArgs;
use super::schema::{DEFAULT_SUBJECT, open_registry};
use crate::exit;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The Kinesis stream `ingest run` reads (its shards are listed).
    #[arg(long)]
    pub stream: Option<String>,
    /// The lease store, sqlite:PATH or dynamodb:TABLE (`ingest run`'s or `score watch`'s).
    #[arg(long)]
    pub leases: Option<String>,
    /// The ingestion's lake, a directory or s3://: a probe object is written and deleted.
    #[arg(long)]
    pub lake: Option<String>,
    /// The event contract `ingest run` validates against: PII fields need PITWALL_PII_KEY.
    #[arg(long)]
    pub contract: Option<PathBuf>,
    /// The score state (`score run --state`, `score watch`): a probe object is written and deleted.
    #[arg(long)]
    pub state: Option<String>,
    /// The rentals the score reads (listed, not read).
    #[arg(long)]
    pub rentals: Option<String>,
    /// The telemetry the score reads (listed, not read).
    #[arg(long)]
    pub telemetry: Option<String>,
    /// The topic and registry the scores go to; brokers and registry are checked with --brokers.
    #[command(flatten)]
    pub to: TopicArgs,
    /// Registry subject of the member record.
    #[arg(long, default_value = DEFAULT_SUBJECT)]
    pub subject: String,
    /// Time limit of each check: one that does not answer fails, saying so.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// One JSON object on stdout: every check and whether all passed.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    target: String,
    status: Status,
    detail: String,
    /// What to do, for a warning or a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    seconds: f64,
}

/// What a check found: a line of detail, or why it failed and what to do.
pub(crate) type Found = Result<(Status, String), (String, String)>;

pub fn run(a: DoctorArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let checks = rt.block_on(checks(&a));
    // A check that timed out may still hold a blocking thread: not waited for.
    rt.shutdown_background();
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"ok": failed == 0, "failed": failed, "checks": checks})
        );
    } else {
        print(&checks);
    }
    Ok(if failed == 0 { exit::OK } else { exit::ERROR })
}

fn print(checks: &[Check]) {
    if checks.is_empty() {
        println!("nothing to check: give the flags of a deployment (see --help)");
    }
    for c in checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        println!("{mark}  {} {}: {}", c.check, c.target, c.detail);
        if let Some(fix) = &c.fix {
            println!("      → {fix}");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        println!("{failed} of {} checks failed", checks.len());
    }
}

/// Runs `work` within the time limit.
async fn timed(
    check: &'static str,
    target: String,
    limit: Duration,
    work: impl Future<Output = Found>,
) -> Check {
    let t = Instant::now();
    let found = tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err((
            format!("no answer within {}", humantime::format_duration(limit)),
            "is the endpoint reachable from here (network path, VPC endpoint, security group, \
             AWS_ENDPOINT_URL)? A longer --timeout if it is only slow"
                .to_string(),
        ))
    });
    report(check, target, found, t)
}

/// The line of a check that found `found`, started at `started`.
fn report(check: &'static str, target: String, found: Found, started: Instant) -> Check {
    let (status, detail, fix) = match found {
        Ok((s, d)) => (s, d, None),
        Err((d, fix)) => (Status::Fail, d, Some(fix)),
    };
    Check {
        check,
        target,
        status,
        detail,
        fix,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// A blocking check (object store, Kafka) on the blocking pool.
async fn blocking(work: impl FnOnce() -> Found + Send + 'static) -> Found {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err((format!("the check panicked: {e}"), "report it".into())))
}

async fn checks(a: &DoctorArgs) -> Vec<Check> {
    let limit = a.timeout;
    let mut out = Vec::new();
    let s3 = |l: &Option<String>| l.as_deref().is_some_and(|l| l.starts_with("s3://"));
    let aws = a.stream.is_some()
        || a.leases
            .as_deref()
            .is_some_and(|l| l.starts_with("dynamodb:"))
        || [&a.lake, &a.state, &a.rentals, &a.telemetry]
            .into_iter()
            .any(s3)
        || a.to.registry.to_string().starts_with("glue:");
    if aws {
        out.push(timed("credentials", "AWS".into(), limit, aws::identity()).await);
    }
    if let Some(stream) = &a.stream {
        out.push(timed("stream", stream.clone(), limit, aws::stream(stream)).await);
    }
    if let Some(leases) = &a.leases {
        out.push(timed("leases", leases.clone(), limit, aws::leases(leases)).await);
    }
    for (check, loc, write) in [
        ("lake", &a.lake, true),
        ("state", &a.state, true),
        ("rentals", &a.rentals, false),
        ("telemetry", &a.telemetry, false),
    ] {
        if let Some(loc) = loc.clone() {
            let target = loc.clone();
            let probe = blocking(move || location(&loc, write));
            out.push(timed(check, target, limit, probe).await);
        }
    }
    if let Some(path) = &a.contract {
        out.push(pii_key(path));
    }
    if a.to.broker.brokers.is_some() {
        out.push(topic(a, limit).await);
        out.push(registry(a, limit).await);
    }
    out
}

/// A location: written to and cleaned up (`write`), or listed.
fn location(loc: &str, write: bool) -> Found {
    let fix = |what: &str| {
        format!(
            "check the URL, that the bucket exists, the credentials and that the role may {what} \
             under it (s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject)"
        )
    };
    let l = pitwall_lake::Location::parse(loc).map_err(|e| (e.to_string(), fix("read")))?;
    if write {
        let probe = l.probe_write().map_err(|e| {
            (
                format!("a probe object could not be written and deleted: {e}"),
                fix("write"),
            )
        })?;
        return Ok((Status::Ok, format!("writable (wrote and deleted {probe})")));
    }
    let files = l
        .list_if_exists(&[".parquet", ".csv"])
        .map_err(|e| (e.to_string(), fix("list")))?;
    match files.len() {
        0 => Ok((
            Status::Warn,
            "readable, but holds no .parquet or .csv file yet".into(),
        )),
        n => Ok((Status::Ok, format!("readable, {n} files"))),
    }
}

fn pii_key(path: &PathBuf) -> Check {
    let t = Instant::now();
    let target = path.display().to_string();
    let key = std::env::var(pitwall_logs::pii::KEY_ENV)
        .ok()
        .filter(|k| !k.is_empty());
    let found: Found = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| pitwall_logs::Contract::from_yaml(&t).map_err(|e| e.to_string()))
    {
        Err(e) => Err((e, "give the contract file the deployment mounts".into())),
        Ok(c) if !c.needs_key() => Ok((Status::Ok, "no field of it needs PITWALL_PII_KEY".into())),
        Ok(_) if key.is_some() => Ok((
            Status::Ok,
            "PITWALL_PII_KEY is set (its value is not shown)".into(),
        )),
        Ok(_) => Err((
            "the contract hashes PII fields but PITWALL_PII_KEY is not set".into(),
            "set PITWALL_PII_KEY from its Secret (the chart's piiKeySecret); it must be the key \
             the legacy reconciliation uses"
                .into(),
        )),
    };
    report("pii key", target, found, t)
}

async fn topic(a: &DoctorArgs, limit: Duration) -> Check {
    let target = format!(
        "{} on {}",
        a.to.topic,
        a.to.broker.brokers.as_deref().unwrap_or("")
    );
    let settings = a.to.broker.settings(&a.to.topic).map(|mut s| {
        s.timeout = s.timeout.min(limit);
        s
    });
    let work = blocking(move || {
        let s = settings.map_err(|e| (format!("{e:#}"), "fix the broker flags".into()))?;
        let t = pitwall_publish::consume::describe_topic(&s).map_err(|e| {
            (
                e.to_string(),
                "create the topic (compacted, keyed by member) or fix --brokers and the security flags"
                    .into(),
            )
        })?;
        let base = format!("{} partitions on {} brokers", t.partitions, t.brokers);
        Ok(match t.cleanup_policy.as_deref() {
            Some(p) if p.contains("compact") => (Status::Ok, format!("{base}, cleanup.policy={p}")),
            Some(p) => (
                Status::Warn,
                format!(
                    "{base}, cleanup.policy={p}: members' older records are deleted by age, not \
                     compacted (the app reads a member's latest record; set cleanup.policy=compact)"
                ),
            ),
            None => (
                Status::Ok,
                format!("{base}; the brokers do not report its cleanup.policy"),
            ),
        })
    });
    timed("topic", target, limit, work).await
}

async fn registry(a: &DoctorArgs, limit: Duration) -> Check {
    let spec = a.to.registry.clone();
    let subject = a.subject.clone();
    let target = format!("{subject} in {spec}");
    let work = blocking(move || {
        let fix = || {
            "check the registry flag, the network path and the role's registry permissions"
                .to_string()
        };
        let registry = open_registry(&spec).map_err(|e| (format!("{e:#}"), fix()))?;
        let outcome = check_and_register(registry.as_ref(), &subject, MEMBER_SCORE_V1, None, false)
            .map_err(|e| {
                (
                    e.to_string(),
                    "a schema registered under the subject is not compatible with this version's: \
                 see `pitwall schema check`"
                        .into(),
                )
            })?;
        Ok((
            Status::Ok,
            match outcome {
                Outcome::AlreadyRegistered(r) => format!(
                    "this version's schema is registered (version {})",
                    r.version
                ),
                Outcome::Compatible {
                    mode,
                    checked_versions: 0,
                } => {
                    format!("reachable; the first publication registers the schema ({mode})")
                }
                Outcome::Compatible {
                    mode,
                    checked_versions,
                } => format!(
                    "this version's schema is compatible under {mode} with {checked_versions} registered version(s)"
                ),
                Outcome::Registered(r) => format!("registered as version {}", r.version),
            },
        ))
    });
    timed("registry", target, limit, work).await
}
