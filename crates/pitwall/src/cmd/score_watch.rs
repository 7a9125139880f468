//! `pitwall score watch`: the long-running scorer. Every `--every` it runs
//! `score run --state` at as_of = now and, with `--brokers`, the state's
//! catch-up publication, while it holds the state's lease; it serves
//! /healthz, /readyz, /metrics and a status page (/, /status.json).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use clap::Args;
use pitwall_lease::{LeaseStore, LeaseTimings};
use pitwall_score_job::{Fence, RunStatus};
use pitwall_score_watch::lease::Holder;
use pitwall_score_watch::{Alerts, CycleReport, Step, WatchConfig, WatchMetrics, watch};

use crate::exit;

const PAGE: &str = include_str!("watch.html");

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The score state (local directory or s3://bucket/prefix).
    #[arg(long)]
    pub state: String,
    /// Rentals: a Parquet or CSV file, or a directory of them; local path or s3://.
    #[arg(long)]
    pub rentals: String,
    /// Telemetry: the lake's dataset directory (LAKE/telemetry.kinematics) or any Parquet tree.
    #[arg(long)]
    pub telemetry: String,
    /// How often a cycle starts (a cycle longer than this is followed at once by the next).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub every: Duration,
    /// Where the lease lives: sqlite:PATH or dynamodb:TABLE (as `ingest run --leases`).
    #[arg(long)]
    pub leases: String,
    /// This watcher's name in the lease table (default: $HOSTNAME, else pitwall-PID).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// A lease not renewed for this long may be taken by a standby watcher.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub failover: Duration,
    /// Each cycle's outputs go to DIR/<as_of>/ (the latest 20 are kept).
    #[arg(long)]
    pub out: PathBuf,
    /// Model file (TOML); default: the embedded model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Quality-gate thresholds (TOML).
    #[arg(long)]
    pub gates: Option<PathBuf>,
    /// Serve /healthz, /readyz, /metrics and the status page here.
    #[arg(long, default_value = "127.0.0.1:9465")]
    pub listen: SocketAddr,
    /// Stop after this many cycles (tests, demos); default: run until SIGTERM.
    #[arg(long)]
    pub cycles: Option<u64>,
    #[command(flatten)]
    pub publish: super::publish::PublishArgs,
}

pub fn run(a: WatchArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(serve(a))?;
    Ok(exit::OK)
}

async fn serve(a: WatchArgs) -> anyhow::Result<()> {
    // First of all: a SIGTERM while the watcher is still starting (a pod
    // rolled at once) ends it cleanly, instead of by the signal's default.
    let stop = Arc::new(AtomicBool::new(false));
    signals(stop.clone());
    let store = super::ingest_run::open_leases(&a.leases).await?;
    let owner = a
        .worker_id
        .clone()
        .unwrap_or_else(super::ingest_run::default_worker_id);
    // Named by the state's URL, so every spelling of one state is one lease.
    // The state's reads block on a runtime of their own (an S3 state's
    // client): off this one's workers, or tokio refuses to nest them.
    let location = a.state.clone();
    let url = tokio::task::spawn_blocking(move || {
        pitwall_score_state::State::open(&location).map(|s| s.url().to_string())
    })
    .await
    .context("opening the state: the task failed")?
    .with_context(|| format!("opening the state {}", a.state))?;
    let holder = Arc::new(Holder::new(
        store.clone(),
        &format!("score-watch:{url}"),
        &owner,
        LeaseTimings::new(a.failover),
    ));
    let metrics = Arc::new(WatchMetrics::new(a.every));
    http(a.listen, metrics.clone(), store).await?;
    let step = Arc::new(ScoreStep {
        memory: Default::default(),
        cycles_left: Mutex::new(a.cycles),
        stop: stop.clone(),
        args: a,
    });
    let cfg = WatchConfig {
        every: step.args.every,
        now_ms: Arc::new(|| chrono::Utc::now().timestamp_millis()),
    };
    say!(
        "score watch on {} every {}, lease {} in {}; status on http://{}/",
        step.args.state,
        humantime::format_duration(step.args.every),
        holder.name(),
        holder.store_name(),
        step.args.listen
    );
    watch(
        cfg,
        holder,
        step,
        Arc::new(Notify::default()),
        metrics,
        stop,
    )
    .await
    .context("score watch: the lease store failed")?;
    Ok(())
}

/// SIGTERM or Ctrl-C: finish the cycle under way, release the lease, exit.
fn signals(stop: Arc<AtomicBool>) {
    // Registered now, not when the task below first runs: from here on a
    // SIGTERM is the watcher's to handle.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    tokio::spawn(async move {
        let term = async {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        say!("stopping: the cycle under way finishes, then the lease is released");
        stop.store(true, Ordering::SeqCst);
    });
}

struct ScoreStep {
    args: WatchArgs,
    /// The member snapshot this watcher committed last: the next cycle
    /// starts from it instead of reading the state's snapshot again.
    memory: pitwall_score_job::SnapshotMemory,
    cycles_left: Mutex<Option<u64>>,
    stop: Arc<AtomicBool>,
}

impl Step for ScoreStep {
    fn cycle(
        &self,
        as_of_ms: i64,
        may_commit: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Result<CycleReport, String> {
        if let Ok(mut left) = self.cycles_left.lock()
            && let Some(n) = left.as_mut()
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
        self.run(as_of_ms, may_commit)
            .map_err(|e| crate::errors::describe(&e))
    }
}

impl ScoreStep {
    fn run(
        &self,
        as_of_ms: i64,
        may_commit: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> anyhow::Result<CycleReport> {
        let a = &self.args;
        let out = a.out.join(as_of_dir(as_of_ms));
        let mut cfg = pitwall_score_job::JobConfig::new(
            a.rentals.clone(),
            a.telemetry.clone(),
            as_of_ms,
            out.clone(),
        );
        super::score::apply_model_and_gates(&mut cfg, a.model.as_deref(), a.gates.as_deref())?;
        cfg.state = Some(pitwall_score_job::StateOptions {
            location: a.state.clone(),
            rescore: None,
            model_change: false,
            force: false,
            fence: Some(Fence(may_commit.clone())),
            write_snapshot: false,
            compaction: Default::default(),
            memory: Some(self.memory.clone()),
        });
        let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)
            // Not the cycle's own output folder: the same cause reads the
            // same at every cycle, so it alerts once.
            .with_context(|| format!("score run --state {}", a.state))?;
        prune_runs(&a.out, 20);
        let state = run.state.as_ref();
        let counts = state.map(|s| s.counts.clone()).unwrap_or_default();
        let mut report = CycleReport {
            committed_seq: state.and_then(|s| s.seq),
            held_because: (run.status == RunStatus::Held).then(|| run.held_because.join("; ")),
            rentals_evaluated: counts.evaluated,
            made_final: counts.made_final,
            awaiting_tail: counts.awaiting_tail,
            member_changes: counts.member_changes,
            ..CycleReport::default()
        };
        if report.committed_seq.is_none() || a.publish.to.broker.brokers.is_none() {
            return Ok(report);
        }
        if !may_commit() {
            report.publish_error = Some("the lease was not provably held: not publishing".into());
            return Ok(report);
        }
        match super::publish::run_publish_state(&a.state, &a.publish) {
            Ok(p) => {
                report.members_published = p.records;
                // The rentals made final now changed their members' records,
                // so this publication carried them.
                let now = chrono::Utc::now().timestamp_millis();
                report.freshness_s = run
                    .made_final_landed_ms
                    .iter()
                    .map(|&landed| (now - landed).max(0) as f64 / 1000.0)
                    .collect();
            }
            Err(e) => report.publish_error = Some(crate::errors::describe(&e)),
        }
        Ok(report)
    }
}

fn as_of_dir(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Keeps the newest `keep` cycle directories (their names sort by time).
fn prune_runs(root: &std::path::Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let old = dirs.len().saturating_sub(keep);
    for d in &dirs[..old] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Alerts on news only: a condition fires when it starts or its cause
/// changes, and resolves once when it ends, however many cycles it lasts.
#[derive(Default)]
struct Notify {
    news: pitwall_score_watch::Transitions,
}

impl Alerts for Notify {
    fn outcome(&self, key: &str, problem: Option<(String, String)>) {
        if !self.news.changed(key, problem.as_ref()) {
            return;
        }
        let source = "pitwall score watch";
        let alert = problem.map(|(summary, description)| pitwall_alert::Alert {
            key: key.into(),
            summary,
            description,
            severity: pitwall_alert::Severity::Critical,
            details: Default::default(),
            source: source.into(),
        });
        // The notifier blocks on HTTP: off the async workers.
        std::thread::scope(|s| {
            s.spawn(|| crate::alerts::outcome(key, source, alert, "a later cycle got through"));
        });
    }
}

struct Http {
    metrics: Arc<WatchMetrics>,
    registry: prometheus_client::registry::Registry,
    store: Arc<dyn LeaseStore>,
}

async fn http(
    addr: SocketAddr,
    metrics: Arc<WatchMetrics>,
    store: Arc<dyn LeaseStore>,
) -> anyhow::Result<()> {
    let registry = crate::metrics::registry(|r| metrics.register(r));
    let h = Arc::new(Http {
        metrics,
        registry,
        store,
    });
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/", get(|| async { Html(PAGE) }))
        .route("/status.json", get(status_json))
        .with_state(h);
    super::http::serve(addr, app).await
}

async fn readyz(State(h): State<Arc<Http>>) -> (StatusCode, String) {
    super::http::probe(h.metrics.ready())
}

async fn metrics_text(State(h): State<Arc<Http>>, headers: HeaderMap) -> impl IntoResponse {
    super::http::prometheus(&h.registry, &headers)
}

async fn status_json(State(h): State<Arc<Http>>) -> impl IntoResponse {
    let leases = match h.store.list().await {
        Ok(l) => serde_json::json!(
            l.into_iter()
                .filter(|x| x.shard_id.starts_with("score-watch:"))
                .collect::<Vec<_>>()
        ),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    let status = h.metrics.status();
    let body = serde_json::json!({
        "lease_held": status.lease_held,
        "every_s": status.every_s,
        "cycles": status.cycles,
        "leases": leases,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
