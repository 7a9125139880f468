//! `pitwall ingest run`: the ingestion service. Settings come from a TOML
//! file and flags (flags win); secrets only from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use pitwall_ingest::kinesis::{Kinesis, StartPosition};
use pitwall_ingest::metrics::Metrics;
use pitwall_ingest::{RollPolicy, Shared, Worker, WorkerConfig};
use pitwall_lake::Location;
use pitwall_lease::dynamodb::DynamoLeases;
use pitwall_lease::sqlite::SqliteLeases;
use pitwall_lease::{LeaseStore, LeaseTimings};
use pitwall_logs::Validator;
use serde::Deserialize;

use super::ingest::{load_contract, parse_bytes, pii_from_env};
use crate::exit;

/// The flags, and also what a config file holds (same names, `_` for `-`).
#[derive(Debug, Args, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// A TOML file with any of the settings below (keys as the flags, with _ for -); flags win.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The Kinesis data stream to read.
    #[arg(long)]
    pub stream: Option<String>,
    /// The lake root: a local directory or s3://bucket/prefix.
    #[arg(long)]
    pub lake: Option<String>,
    /// The ODCS data contract (YAML); default: the embedded server_log.api_request contract.
    #[arg(long)]
    pub contract: Option<PathBuf>,
    /// Where leases and checkpoints live: sqlite:PATH (one worker) or dynamodb:TABLE (several).
    #[arg(long)]
    pub leases: Option<String>,
    /// This worker's name in the lease table (default: $HOSTNAME, else pitwall-PID).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Where shards without a checkpoint start: TRIM_HORIZON, LATEST or AT_TIMESTAMP=RFC3339.
    #[arg(long)]
    pub start_position: Option<String>,
    /// Exit 0 once every shard is drained and nothing arrived for this long (tests, replays).
    #[arg(long)]
    pub stop_when_idle: Option<String>,
    /// A lease not renewed for this long may be taken by another worker (default 10s).
    #[arg(long)]
    pub failover: Option<String>,
    /// Commit a shard's open files once they hold this many bytes of events (default 128MiB).
    #[arg(long)]
    pub roll_bytes: Option<String>,
    /// … or once their oldest event was read this long ago (default 5m).
    #[arg(long)]
    pub roll_age: Option<String>,
    /// Serve the status page (/), /healthz, /readyz and /metrics here (default 127.0.0.1:9464;
    /// 0.0.0.0:9464 in a pod).
    #[arg(long)]
    pub listen: Option<String>,
    /// How often shards are listed to find new ones after a reshard (default 10s).
    #[arg(long)]
    pub discover_every: Option<String>,
    /// Wait after a GetRecords call that returned nothing (default 1s).
    #[arg(long)]
    pub idle_poll: Option<String>,
    /// Records per GetRecords call, at most 10000 (default 10000).
    #[arg(long)]
    pub max_records: Option<i32>,
    /// Event bytes all shards may buffer together before the largest commits early (default 512MiB).
    #[arg(long)]
    pub max_buffered: Option<String>,
    /// zstd level of the lake's Parquet files, 1 (fastest) to 22 (smallest); default 3.
    #[arg(long)]
    pub zstd_level: Option<i32>,
    /// Alert when the furthest-behind shard lags the stream by more than this, or a shard makes no progress for as long (default 5m).
    #[arg(long)]
    pub alert_lag: Option<String>,
    /// Alert when more than this share of an interval's events goes to the DLQ (default 0.05).
    #[arg(long)]
    pub alert_dlq_rate: Option<f64>,
    /// How shards are read: `polling` (GetRecords, the default) or `efo:NAME` (enhanced fan-out as
    /// the consumer NAME, registered if it is not; SubscribeToShard per shard).
    #[arg(long)]
    pub consumer: Option<String>,
    /// With `--consumer efo:…`, subscribe again after this long (default 290s; the service ends a
    /// subscription after 5 minutes).
    #[arg(long)]
    pub efo_renew: Option<String>,
    /// List the score runs of this directory (a `score run --out`, or a directory of them) on the
    /// status page.
    #[arg(long)]
    pub score_runs: Option<PathBuf>,
}

impl RunArgs {
    /// Flags over the config file.
    fn merged(mut self) -> anyhow::Result<RunArgs> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        let file: RunArgs = toml::from_str(&text)
            .with_context(|| format!("in the config file {}", path.display()))?;
        // The destructuring is exhaustive: a new setting the list forgets
        // does not compile, rather than being silently ignored in files.
        macro_rules! fill {
            ($($k:ident),*) => {
                let RunArgs { config: _, $($k),* } = file;
                $( if self.$k.is_none() { self.$k = $k; } )*
            };
        }
        fill!(
            stream,
            lake,
            contract,
            leases,
            worker_id,
            start_position,
            stop_when_idle,
            failover,
            roll_bytes,
            roll_age,
            listen,
            discover_every,
            idle_poll,
            max_records,
            max_buffered,
            zstd_level,
            alert_lag,
            alert_dlq_rate,
            consumer,
            efo_renew,
            score_runs
        );
        Ok(self)
    }
}

fn duration(flag: &str, v: Option<&str>, default: &str) -> anyhow::Result<Duration> {
    let s = v.unwrap_or(default);
    humantime::parse_duration(s)
        .with_context(|| format!("--{flag} {s:?} is not a duration such as 10s or 5m"))
}

fn required(flag: &str, v: Option<String>) -> anyhow::Result<String> {
    v.ok_or_else(|| anyhow::anyhow!("--{flag} is required (as a flag or in --config)"))
}

/// How long a stopping worker waits for its last alerts to be sent.
const ALERTS_AT_STOP: Duration = Duration::from_secs(15);

pub fn run(a: RunArgs) -> anyhow::Result<u8> {
    let a = a.merged()?;
    let stream = required("stream", a.stream.clone())?;
    let lake = Location::parse(&required("lake", a.lake.clone())?)?;
    let leases = required("leases", a.leases.clone())?;
    let contract: &'static _ = Box::leak(Box::new(load_contract(a.contract.as_ref())?));
    let validator: &'static Validator<'static> =
        Box::leak(Box::new(Validator::new(contract, pii_from_env(contract)?)));
    let mut cfg = WorkerConfig::new(&a.worker_id.clone().unwrap_or_else(default_worker_id));
    if let Some(p) = &a.start_position {
        cfg.start = p
            .parse::<StartPosition>()
            .map_err(anyhow::Error::msg)
            .context("--start-position")?;
    }
    cfg.timings = LeaseTimings::new(duration("failover", a.failover.as_deref(), "10s")?);
    cfg.roll = RollPolicy {
        max_bytes: parse_bytes(a.roll_bytes.as_deref().unwrap_or("128MiB"))
            .map_err(anyhow::Error::msg)?,
        max_age: duration("roll-age", a.roll_age.as_deref(), "5m")?,
    };
    let zstd_level = match a.zstd_level.unwrap_or(3) {
        l @ 1..=22 => l,
        l => bail!("--zstd-level {l}: use 1 (fastest) to 22 (smallest)"),
    };
    cfg.parquet = pitwall_ingest::lake_parquet(contract, zstd_level);
    cfg.discover_every = duration("discover-every", a.discover_every.as_deref(), "10s")?;
    cfg.idle_poll = duration("idle-poll", a.idle_poll.as_deref(), "1s")?;
    cfg.max_buffered = parse_bytes(a.max_buffered.as_deref().unwrap_or("512MiB"))
        .map_err(anyhow::Error::msg)
        .context("--max-buffered")?;
    cfg.max_records = match a.max_records {
        None => 10_000,
        Some(n @ 1..=10_000) => n,
        Some(n) => bail!("--max-records {n}: Kinesis allows 1 to 10000"),
    };
    cfg.consumer = match a.consumer.as_deref() {
        None | Some("polling") => None,
        Some(c) => match c.strip_prefix("efo:") {
            Some(name) if !name.is_empty() => Some(name.to_string()),
            _ => bail!("--consumer {c:?}: use polling or efo:NAME (the stream consumer's name)"),
        },
    };
    cfg.efo_renew = duration("efo-renew", a.efo_renew.as_deref(), "290s")?;
    cfg.stop_when_idle = a
        .stop_when_idle
        .as_deref()
        .map(|s| duration("stop-when-idle", Some(s), ""))
        .transpose()?;
    let listen: SocketAddr = a
        .listen
        .as_deref()
        .unwrap_or("127.0.0.1:9464")
        .parse()
        .context("--listen must be HOST:PORT")?;

    let thresholds = super::ingest_alerts::Thresholds {
        lag: duration("alert-lag", a.alert_lag.as_deref(), "5m")?,
        dlq_rate: a.alert_dlq_rate.unwrap_or(0.05),
    };
    let roll_age = cfg.roll.max_age;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let store = open_leases(&leases).await?;
        let metrics = Arc::new(Metrics::default());
        super::ingest_http::serve(
            listen,
            super::ingest_http::Http {
                metrics: metrics.clone(),
                registry: crate::metrics::registry(|r| {
                    metrics.register(r);
                    settings(r, &thresholds, roll_age);
                }),
                store: store.clone(),
                stream: stream.clone(),
                worker_id: cfg.worker_id.clone(),
                score_runs: a.score_runs.clone(),
            },
        )
        .await?;
        let alerts = tokio::spawn(super::ingest_alerts::watch(
            metrics.clone(),
            stream.clone(),
            cfg.worker_id.clone(),
            thresholds,
            // A tenth of the threshold (at most 30 s): a condition is then
            // told within 1.1 × its threshold.
            (thresholds.lag / 10).clamp(Duration::from_secs(1), Duration::from_secs(30)),
        ));
        tracing::info!(stream = %stream, worker = %cfg.worker_id, leases = %store.name(), lake = %lake, "ingesting");
        let sh = Shared {
            cfg: Arc::new(cfg),
            kinesis: Kinesis::from_env(&stream).await,
            store,
            lake,
            validator,
            metrics: metrics.clone(),
            consumer_arn: None,
        };
        let ran = Worker::new(sh).run(shutdown_signal()).await;
        // The watch took its last look as the worker stopped reading (or
        // takes it now, had the worker failed before); its notifications
        // go out before the process ends.
        metrics.stop_reading();
        if tokio::time::timeout(ALERTS_AT_STOP, alerts).await.is_err() {
            tracing::warn!(wait = ?ALERTS_AT_STOP, "the alert sinks did not answer at stop; exiting without them");
        }
        ran?;
        let c = metrics.counts();
        say!(
            "stopped: {} records, {} events to the lake, {} to the DLQ {:?}",
            c.records,
            c.events,
            c.dlq_total(),
            c.dlq
        );
        Ok::<_, anyhow::Error>(exit::OK)
    })
}

/// The thresholds the chart's alert rules compare with.
fn settings(
    r: &mut prometheus_client::registry::Registry,
    t: &super::ingest_alerts::Thresholds,
    roll_age: Duration,
) {
    use prometheus_client::registry::Unit;
    let set = crate::metrics::setting;
    set(
        r,
        "ingest_alert_lag",
        "--alert-lag: how far behind, or how long without progress, a shard may be.",
        Some(Unit::Seconds),
        t.lag.as_secs_f64(),
    );
    set(
        r,
        "ingest_alert_dlq",
        "--alert-dlq-rate: the share of events that may go to the DLQ.",
        // The base unit's name (OpenMetrics: ratio); the crate spells it "ratios".
        Some(Unit::Other("ratio".into())),
        t.dlq_rate,
    );
    set(
        r,
        "ingest_roll_age",
        "--roll-age: how long an open file may wait before its commit and checkpoint.",
        Some(Unit::Seconds),
        roll_age.as_secs_f64(),
    );
}

pub(super) fn default_worker_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pitwall-{}", std::process::id()))
}

pub(super) async fn open_leases(spec: &str) -> anyhow::Result<Arc<dyn LeaseStore>> {
    match spec.split_once(':') {
        Some(("sqlite", path)) if !path.is_empty() => {
            Ok(Arc::new(SqliteLeases::open(path.as_ref())?))
        }
        Some(("dynamodb", table)) if !table.is_empty() => {
            Ok(Arc::new(DynamoLeases::from_env(table).await))
        }
        _ => bail!("--leases {spec:?}: use sqlite:PATH or dynamodb:TABLE"),
    }
}

/// SIGTERM (Kubernetes) or Ctrl-C: finish files, checkpoint, release leases.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("signal received: finishing open files, checkpointing, releasing leases");
}
