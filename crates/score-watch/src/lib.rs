//! `pitwall score watch`: every interval, the incremental score step at
//! as_of = now and the catch-up publication of the state, by the one watcher
//! that holds the state's lease ([`lease::Holder`]). What a cycle does is the
//! caller's [`Step`] (the binary wires `score run --state` and `score publish
//! --state` into it); this crate owns the rhythm: one cycle at a time, a
//! cycle that fails or is held leaves the state as it was and the next one
//! tries again, SIGTERM lets the cycle under way finish, and a watcher
//! whose lease is not provably its own neither commits nor publishes.

pub mod lease;
pub mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use metrics::WatchMetrics;

/// What one cycle did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CycleReport {
    /// The state run committed by the cycle, if any.
    pub committed_seq: Option<u64>,
    /// A quality gate held the run: nothing committed, nothing published.
    pub held_because: Option<String>,
    pub rentals_evaluated: u64,
    pub made_final: u64,
    /// Open rentals that wait only for their tail (`score-state.md`).
    pub awaiting_tail: u64,
    pub member_changes: u64,
    /// Members sent to the topic by the cycle's publication.
    pub members_published: u64,
    /// Seconds from each published rental's last sample reaching the lake
    /// to its publication.
    pub freshness_s: Vec<f64>,
    /// The publication failed: the state is committed, the next cycle's
    /// publication catches it up.
    pub publish_error: Option<String>,
}

/// The work of one cycle at `as_of_ms`.
pub trait Step: Send + Sync {
    /// `may_commit` is false once the lease is no longer provably held; the
    /// step passes it on to the run's commit and asks it before publishing.
    fn cycle(
        &self,
        as_of_ms: i64,
        may_commit: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Result<CycleReport, String>;
}

/// How a cycle ended, for metrics, the status page and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Committed,
    /// Committed, but the publication failed.
    PublishFailed,
    Held,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Committed,
        Outcome::PublishFailed,
        Outcome::Held,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::PublishFailed => "publish_failed",
            Outcome::Held => "held",
            Outcome::Failed => "failed",
        }
    }
}

/// One finished cycle.
#[derive(Debug, Clone, Serialize)]
pub struct Cycle {
    pub as_of_ms: i64,
    pub duration_s: f64,
    pub outcome: Outcome,
    pub report: CycleReport,
    pub error: Option<String>,
}

/// Something an on-call person must hear about, and when it is over.
pub trait Alerts: Send + Sync {
    /// `key` identifies the condition; `problem` None clears it.
    fn outcome(&self, key: &str, problem: Option<(String, String)>);
}

pub struct WatchConfig {
    pub every: Duration,
    /// The wall clock, ms since the epoch (a test may pin it).
    pub now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
}

/// Runs cycles until `stop`, while holding the lease; returns after the
/// cycle under way when `stop` is set, with the lease released.
pub async fn watch(
    cfg: WatchConfig,
    holder: Arc<lease::Holder>,
    step: Arc<dyn Step>,
    alerts: Arc<dyn Alerts>,
    metrics: Arc<WatchMetrics>,
    stop: Arc<AtomicBool>,
) -> Result<(), pitwall_lease::LeaseError> {
    let alerts: Arc<dyn Alerts> = Arc::new(Logged::new(alerts));
    while !stop.load(Ordering::SeqCst) {
        metrics.set_lease(false);
        if !holder.acquire(&stop).await? {
            break;
        }
        metrics.set_lease(true);
        // Renewals go on until the cycle under way is done, whatever `stop`
        // says: a SIGTERM mid-cycle must not let the lease lapse before the
        // cycle commits.
        let renewing = Arc::new(AtomicBool::new(false));
        let keeper = {
            let (holder, done) = (holder.clone(), renewing.clone());
            tokio::spawn(async move { holder.keep(&done).await })
        };
        let handed_to = cycles(&cfg, &holder, &step, alerts.as_ref(), &metrics, &stop).await;
        renewing.store(true, Ordering::SeqCst);
        keeper.abort();
        if stop.load(Ordering::SeqCst) {
            let _ = holder.release().await;
        } else if let Some(to) = handed_to {
            hand_over(&holder, &to).await;
        } else {
            alerts.outcome(
                "score/watch-lease",
                Some((
                    "score watch lost the state's lease".into(),
                    format!(
                        "Lease {} in {}: another watcher took it, or renewals failed for the failover time. This watcher stopped committing and waits to take it again.",
                        holder.name(),
                        holder.store_name()
                    ),
                )),
            );
        }
    }
    metrics.set_lease(false);
    Ok(())
}

/// Cycles while the lease is held and nobody asked for it; returns who
/// asked, if that is why they ended.
async fn cycles(
    cfg: &WatchConfig,
    holder: &Arc<lease::Holder>,
    step: &Arc<dyn Step>,
    alerts: &dyn Alerts,
    metrics: &WatchMetrics,
    stop: &AtomicBool,
) -> Option<String> {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && holder.is_valid() {
        match holder.handoff_requested().await {
            Ok(Some(to)) => return Some(to),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not read the lease; the cycle goes on"),
        }
        let started = Instant::now();
        n += 1;
        // Every line a cycle logs, its step's included, carries the cycle's
        // number and, once the step has named it, the run's id.
        let span = tracing::info_span!("cycle", cycle = n, run_id = tracing::field::Empty);
        let cycle = run_cycle(cfg, holder, step, &span).await;
        span.in_scope(|| {
            let r = &cycle.report;
            tracing::info!(
                outcome = cycle.outcome.as_str(),
                seconds = cycle.duration_s,
                committed_seq = r.committed_seq,
                made_final = r.made_final,
                member_changes = r.member_changes,
                members_published = r.members_published,
                "cycle done"
            );
            metrics.record(&cycle);
            alert(alerts, &cycle);
        });
        let wait = cfg.every.saturating_sub(started.elapsed());
        sleep_unless_stopped(wait, stop, holder).await;
    }
    None
}

/// A one-off run (`score run --state --leases`) asked for the lease: it is
/// given between two cycles, and this watcher waits to take it back once
/// the run releases it. Not an alert: someone asked for it.
async fn hand_over(holder: &lease::Holder, to: &str) {
    match holder.hand_over(to).await {
        Ok(true) => tracing::info!(
            lease = holder.name(),
            to,
            "handed the state's lease over to a one-off run; waiting to take it back"
        ),
        Ok(false) => tracing::info!(
            lease = holder.name(),
            to,
            "asked for the lease, but it changed before the hand-over; taking it again"
        ),
        Err(e) => {
            tracing::warn!(lease = holder.name(), error = %e, "handing the lease over failed")
        }
    }
}

/// Which conditions are firing, and for what cause: a condition is news
/// when it starts, when it ends, and when its cause changes while it lasts
/// (a cycle failing on a broken telemetry file, then on a rentals file cut
/// short, is two things to hear about), not at every cycle it goes on.
#[derive(Default)]
pub struct Transitions {
    firing: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Transitions {
    /// Whether `problem` for `key` is news, remembering it.
    pub fn changed(&self, key: &str, problem: Option<&(String, String)>) -> bool {
        let mut firing = match self.firing.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = problem.map(|(summary, description)| cause(&format!("{summary}: {description}")));
        let was = match &now {
            Some(c) => firing.insert(key.to_string(), c.clone()),
            None => firing.remove(key),
        };
        was != now
    }
}

/// A problem's text without its numbers: the same cause says "after 3
/// retries, in 1.8 s" one cycle and "after 4 retries, in 2.1 s" the next.
fn cause(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Alerts, also logged: someone tailing the pod's logs sees a cycle fail
/// or be held, its cause change, and its end, as the alert sinks do.
struct Logged {
    inner: Arc<dyn Alerts>,
    news: Transitions,
}

impl Logged {
    fn new(inner: Arc<dyn Alerts>) -> Logged {
        Logged {
            inner,
            news: Transitions::default(),
        }
    }
}

impl Alerts for Logged {
    fn outcome(&self, key: &str, problem: Option<(String, String)>) {
        if self.news.changed(key, problem.as_ref()) {
            match &problem {
                Some((summary, description)) => {
                    tracing::error!(alert = key, "{summary}: {description}")
                }
                None => tracing::warn!(alert = key, "resolved: a later cycle got through"),
            }
        }
        self.inner.outcome(key, problem);
    }
}

async fn run_cycle(
    cfg: &WatchConfig,
    holder: &Arc<lease::Holder>,
    step: &Arc<dyn Step>,
    span: &tracing::Span,
) -> Cycle {
    let as_of_ms = (cfg.now_ms)();
    let started = Instant::now();
    let fence: Arc<dyn Fn() -> bool + Send + Sync> = {
        let holder = holder.clone();
        Arc::new(move || holder.is_valid())
    };
    let (step, span) = (step.clone(), span.clone());
    let result = tokio::task::spawn_blocking(move || span.in_scope(|| step.cycle(as_of_ms, fence)))
        .await
        .unwrap_or_else(|e| Err(format!("the cycle panicked: {e}")));
    let (outcome, report, error) = match result {
        Ok(r) if r.held_because.is_some() => (Outcome::Held, r, None),
        Ok(r) if r.publish_error.is_some() => (Outcome::PublishFailed, r, None),
        Ok(r) => (Outcome::Committed, r, None),
        Err(e) => (Outcome::Failed, CycleReport::default(), Some(e)),
    };
    Cycle {
        as_of_ms,
        duration_s: started.elapsed().as_secs_f64(),
        outcome,
        report,
        error,
    }
}

/// A held or failed cycle raises `score/watch`; a publication that failed
/// raises `score/publish`; each clears once a cycle gets past it.
fn alert(alerts: &dyn Alerts, c: &Cycle) {
    let run = match (&c.outcome, &c.report.held_because, &c.error) {
        (Outcome::Held, Some(why), _) => Some((
            "score watch: a cycle was held by a quality gate; nothing was committed or published"
                .to_string(),
            format!("{why}. The next cycle tries again from the last committed run."),
        )),
        (Outcome::Failed, _, Some(e)) => Some((
            "score watch: a cycle failed; the state is as after the last committed run".to_string(),
            format!("{e}. The next cycle tries again."),
        )),
        _ => None,
    };
    alerts.outcome("score/watch", run);
    let publish = match (&c.outcome, &c.report.publish_error) {
        (Outcome::PublishFailed, Some(e)) => Some((
            "driving-score publication failed: the app sees stale scores until one succeeds"
                .to_string(),
            format!("{e}. The state is committed; the next cycle's publication catches up."),
        )),
        (Outcome::Committed, _) => None,
        // Held and failed cycles do not publish: the last word stands.
        _ => return,
    };
    alerts.outcome("score/publish", publish);
}

async fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool, holder: &lease::Holder) {
    let until = Instant::now() + wait;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) && holder.is_valid() {
        tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(100))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_lease::LeaseTimings;
    use pitwall_lease::sqlite::SqliteLeases;
    use std::sync::Mutex;

    /// A cycle that outlasts the lease's validity, asked to stop as it
    /// starts (a SIGTERM mid-cycle), and says whether it could still commit.
    struct Slow {
        stop: Arc<AtomicBool>,
        took: Duration,
        could_commit: Mutex<Vec<bool>>,
    }

    impl Step for Slow {
        fn cycle(
            &self,
            _: i64,
            may_commit: Arc<dyn Fn() -> bool + Send + Sync>,
        ) -> Result<CycleReport, String> {
            self.stop.store(true, Ordering::SeqCst);
            std::thread::sleep(self.took);
            if let Ok(mut v) = self.could_commit.lock() {
                v.push(may_commit());
            }
            Ok(CycleReport::default())
        }
    }

    #[derive(Default)]
    struct Recorded(Mutex<Vec<(String, bool)>>);

    impl Alerts for Recorded {
        fn outcome(&self, key: &str, problem: Option<(String, String)>) {
            if let Ok(mut v) = self.0.lock() {
                v.push((key.to_string(), problem.is_some()));
            }
        }
    }

    /// Found by bench/score_soak.py: a rentals file cut short while cycles
    /// were already failing on a broken telemetry file was neither logged
    /// nor alerted, as the condition was already firing.
    #[test]
    fn a_condition_is_news_when_it_starts_ends_or_changes_cause() {
        let news = Transitions::default();
        let failed = |why: &str| Some(("a cycle failed".to_string(), why.to_string()));
        assert!(
            news.changed("k", failed("broken.parquet, after 3 retries").as_ref()),
            "starts"
        );
        assert!(
            !news.changed("k", failed("broken.parquet, after 4 retries").as_ref()),
            "goes on, only its numbers differ: not again"
        );
        assert!(
            news.changed("k", failed("rentals.parquet cut short").as_ref()),
            "another cause while it lasts"
        );
        assert!(news.changed("k", None), "ends");
        assert!(!news.changed("k", None));
        assert!(!news.changed("other", None), "never started");
    }

    #[test]
    fn every_outcome_still_reaches_the_sinks() {
        let inner = Arc::new(Recorded::default());
        let logged = Logged::new(inner.clone());
        let failed = || Some(("a cycle failed".to_string(), "why".to_string()));
        logged.outcome("x", failed());
        logged.outcome("x", failed());
        assert_eq!(inner.0.lock().expect("lock").len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_during_a_cycle_longer_than_the_lease_still_lets_it_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(SqliteLeases::open(&dir.path().join("l.db")).expect("sqlite"));
        let failover = Duration::from_millis(900);
        let holder = Arc::new(lease::Holder::new(
            store,
            "score-watch:/s",
            "w",
            LeaseTimings::new(failover),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let step = Arc::new(Slow {
            stop: stop.clone(),
            took: failover * 3,
            could_commit: Mutex::new(Vec::new()),
        });
        let cfg = WatchConfig {
            every: Duration::from_millis(100),
            now_ms: Arc::new(|| 0),
        };
        let metrics = Arc::new(WatchMetrics::new(cfg.every));
        let alerts = Arc::new(Recorded::default());
        watch(
            cfg,
            holder.clone(),
            step.clone(),
            alerts.clone(),
            metrics.clone(),
            stop,
        )
        .await
        .expect("watch");
        assert_eq!(
            *step.could_commit.lock().expect("lock"),
            vec![true],
            "one cycle, its lease kept"
        );
        assert!(!holder.is_valid(), "the lease is released after the cycle");
        let cycles = metrics.status().cycles;
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].outcome, Outcome::Committed);
        let recorded = alerts.0.lock().expect("lock");
        assert!(
            recorded.iter().all(|(_, firing)| !firing),
            "nothing to alert: {recorded:?}"
        );
    }
}
