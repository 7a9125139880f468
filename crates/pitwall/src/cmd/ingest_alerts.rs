//! What the ingestion service alerts on, judged from its metrics once per
//! interval: lag above a threshold, a shard stuck for longer than the same
//! threshold (held here without progress, or readable and read by nobody),
//! a DLQ rate above a threshold, and a worker that held leases and lost
//! them all. Each condition fires once when
//! it starts and resolves once when it ends. The last look is taken as the
//! worker stops, so what ended by then is resolved before the process
//! exits, and what has not stays open for whoever reads the shards next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pitwall_alert::{Alert, Notifier, Severity};
use pitwall_ingest::metrics::Metrics;

/// One look at the metrics.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub max_lag_ms: i64,
    /// The shard stuck the longest and for how long (see `Metrics::stuck`).
    pub stuck: Option<(String, Duration)>,
    pub events: u64,
    pub dlq: u64,
    pub leases: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub lag: Duration,
    /// Share of the interval's events that went to the DLQ.
    pub dlq_rate: f64,
}

#[derive(Debug, PartialEq)]
pub enum Action {
    Fire(&'static str, String),
    Resolve(&'static str, String),
}

/// The conditions' state between looks.
#[derive(Debug, Default)]
pub struct Watch {
    last: Snapshot,
    firing: BTreeMap<&'static str, bool>,
    held_leases: bool,
    /// Looks in a row that found no lease held.
    leaseless_looks: u32,
}

/// Looks in a row without a lease before "leases-lost" fires: between a
/// shard read to its end or handed over and the next take, a worker can
/// hold none for a moment, which one look can catch.
const LEASELESS_LOOKS: u32 = 3;

impl Watch {
    pub fn step(&mut self, now: Snapshot, t: &Thresholds) -> Vec<Action> {
        self.look(now, t, false)
    }

    /// The look taken as the worker stops: as [`step`](Self::step), except
    /// that its leases are given up on purpose, so "leases-lost" does not
    /// fire and, having fired, ends with the worker.
    pub fn last_look(&mut self, now: Snapshot, t: &Thresholds) -> Vec<Action> {
        self.look(now, t, true)
    }

    fn look(&mut self, now: Snapshot, t: &Thresholds, stopping: bool) -> Vec<Action> {
        let events = now.events.saturating_sub(self.last.events);
        let dlq = now.dlq.saturating_sub(self.last.dlq);
        let rate = dlq as f64 / (events + dlq).max(1) as f64;
        self.held_leases |= now.leases > 0;
        self.leaseless_looks = if now.leases == 0 {
            self.leaseless_looks + 1
        } else {
            0
        };
        let lag = Duration::from_millis(now.max_lag_ms.max(0) as u64);
        let (stuck_shard, stuck_for) = now.stuck.clone().unwrap_or_default();
        let conditions = [
            (
                "lag",
                lag > t.lag,
                format!("ingestion is {} behind the stream (threshold {})", human(lag), human(t.lag)),
            ),
            (
                "stuck-shard",
                stuck_for > t.lag,
                format!(
                    "shard {stuck_shard} has made no progress for {} (threshold {}): no checkpoint while records wait, or nobody reads it",
                    human(stuck_for),
                    human(t.lag)
                ),
            ),
            (
                "dlq-rate",
                dlq > 0 && rate > t.dlq_rate,
                format!(
                    "{:.1} % of the last interval's events went to the DLQ ({dlq} of {}; threshold {:.1} %)",
                    rate * 100.0,
                    events + dlq,
                    t.dlq_rate * 100.0
                ),
            ),
            (
                "leases-lost",
                !stopping && self.held_leases && self.leaseless_looks >= LEASELESS_LOOKS,
                "this worker held leases and now holds none: is it partitioned from the lease table, or are its renewals failing?".to_string(),
            ),
        ];
        self.last = now.clone();
        let mut actions = Vec::new();
        for (name, bad, text) in conditions {
            let was = self.firing.insert(name, bad).unwrap_or(false);
            match (was, bad) {
                (false, true) => actions.push(Action::Fire(name, text)),
                (true, false) => {
                    actions.push(Action::Resolve(name, format!("{name} is back to normal")))
                }
                _ => {}
            }
        }
        actions
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

pub fn snapshot(m: &Metrics) -> Snapshot {
    let c = m.counts();
    Snapshot {
        max_lag_ms: m
            .shards()
            .iter()
            .map(|s| s.millis_behind())
            .max()
            .unwrap_or(0),
        stuck: m.stuck(),
        events: c.events,
        dlq: c.dlq_total(),
        leases: m.leases(),
    }
}

/// Looks at the metrics every `every` and tells the sinks, until the worker
/// stops reading (`Metrics::stop_reading`): then it takes its last look,
/// tells what that found and returns. Does nothing when no sink is
/// configured.
pub async fn watch(
    metrics: Arc<Metrics>,
    stream: String,
    worker: String,
    t: Thresholds,
    every: Duration,
) {
    let Ok(n) = Notifier::from_env() else { return };
    if n.sinks().is_empty() {
        return;
    }
    let mut w = Watch::default();
    let mut tick = tokio::time::interval(every);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            () = metrics.stopped_reading() => true,
        };
        let actions = if last {
            w.last_look(snapshot(&metrics), &t)
        } else {
            w.step(snapshot(&metrics), &t)
        };
        tell(&n, actions, &stream, &worker).await;
        if last {
            return;
        }
    }
}

/// Sends what one look found.
async fn tell(n: &Notifier, actions: Vec<Action>, stream: &str, worker: &str) {
    for action in actions {
        let (name, text, fire) = match action {
            Action::Fire(n, t) => (n, t, true),
            Action::Resolve(n, t) => (n, t, false),
        };
        let key = if name == "leases-lost" {
            format!("ingest/{name}/{stream}/{worker}")
        } else {
            format!("ingest/{name}/{stream}")
        };
        if !fire {
            n.resolve(&key, &text, "pitwall ingest run").await;
            continue;
        }
        let a = Alert {
            key,
            summary: format!("pitwall ingest on {stream}: {text}"),
            description: format!(
                "Worker {worker}. See its /metrics and /status, and the lake's _dlq for refused events."
            ),
            severity: if name == "dlq-rate" {
                Severity::Warning
            } else {
                Severity::Critical
            },
            details: BTreeMap::from([
                ("stream".into(), stream.to_string()),
                ("worker".into(), worker.to_string()),
            ]),
            source: "pitwall ingest run".into(),
        };
        n.fire(&a).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        lag: Duration::from_secs(300),
        dlq_rate: 0.05,
    };

    fn snap(lag_s: i64, events: u64, dlq: u64, leases: usize) -> Snapshot {
        Snapshot {
            max_lag_ms: lag_s * 1000,
            stuck: None,
            events,
            dlq,
            leases,
        }
    }

    #[test]
    fn lag_fires_once_when_it_crosses_and_resolves_once_when_back() {
        let mut w = Watch::default();
        assert!(w.step(snap(10, 0, 0, 2), &T).is_empty());
        let a = w.step(snap(301, 0, 0, 2), &T);
        assert!(
            matches!(&a[..], [Action::Fire("lag", t)] if t.contains("5m 1s")),
            "{a:?}"
        );
        assert!(w.step(snap(900, 0, 0, 2), &T).is_empty());
        assert_eq!(
            w.step(snap(2, 0, 0, 2), &T),
            [Action::Resolve("lag", "lag is back to normal".into())]
        );
    }

    #[test]
    fn a_stuck_shard_fires_past_the_lag_threshold_naming_it_and_resolves() {
        let mut w = Watch::default();
        let stuck = |s: u64| Snapshot {
            stuck: Some(("shardId-000000000007".into(), Duration::from_secs(s))),
            leases: 1,
            ..Snapshot::default()
        };
        assert!(w.step(stuck(299), &T).is_empty());
        let a = w.step(stuck(301), &T);
        assert!(
            matches!(&a[..], [Action::Fire("stuck-shard", t)] if t.contains("shardId-000000000007") && t.contains("5m 1s")),
            "{a:?}"
        );
        assert!(w.step(stuck(400), &T).is_empty(), "fires once");
        assert!(matches!(
            &w.step(stuck(1), &T)[..],
            [Action::Resolve("stuck-shard", _)]
        ));
    }

    #[test]
    fn the_dlq_rate_is_judged_per_interval_not_since_start() {
        let mut w = Watch::default();
        assert!(w.step(snap(0, 1000, 10, 1), &T).is_empty());
        // 60 of the next 160 events refused: 37.5 %.
        assert!(matches!(
            &w.step(snap(0, 1100, 70, 1), &T)[..],
            [Action::Fire("dlq-rate", _)]
        ));
        // A clean interval after it, though the total stays high.
        assert!(matches!(
            &w.step(snap(0, 2100, 70, 1), &T)[..],
            [Action::Resolve("dlq-rate", _)]
        ));
    }

    #[test]
    fn losing_every_lease_fires_only_after_holding_some() {
        let mut w = Watch::default();
        assert!(
            w.step(snap(0, 0, 0, 0), &T).is_empty(),
            "a starting worker holds none yet"
        );
        assert!(w.step(snap(0, 0, 0, 3), &T).is_empty());
        assert!(
            w.step(snap(0, 0, 0, 0), &T).is_empty(),
            "a lease given back and taken again"
        );
        assert!(w.step(snap(0, 0, 0, 1), &T).is_empty());
        assert!(w.step(snap(0, 0, 0, 0), &T).is_empty());
        assert!(w.step(snap(0, 0, 0, 0), &T).is_empty());
        assert!(matches!(
            &w.step(snap(0, 0, 0, 0), &T)[..],
            [Action::Fire("leases-lost", _)]
        ));
        assert!(matches!(
            &w.step(snap(0, 0, 0, 1), &T)[..],
            [Action::Resolve("leases-lost", _)]
        ));
    }

    #[test]
    fn the_last_look_resolves_what_ended_keeps_what_did_not_and_never_fires_leases_lost() {
        let mut w = Watch::default();
        let look = |lag_s, stuck_s: u64, leases| Snapshot {
            stuck: Some(("shardId-000000000001".into(), Duration::from_secs(stuck_s))),
            ..snap(lag_s, 0, 0, leases)
        };
        w.step(look(400, 400, 1), &T);
        for _ in 0..LEASELESS_LOOKS {
            w.step(look(400, 400, 0), &T);
        }
        assert_eq!(w.firing.values().filter(|f| **f).count(), 3, "{w:?}");
        // Caught up as it stops: the stuck shard moved, the lag did not.
        let a = w.last_look(look(400, 1, 0), &T);
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a.contains(&Action::Resolve(
            "stuck-shard",
            "stuck-shard is back to normal".into()
        )));
        assert!(a.contains(&Action::Resolve(
            "leases-lost",
            "leases-lost is back to normal".into()
        )));
        // A worker stopping without ever having lost its leases does not
        // report its own stop as their loss.
        let mut w = Watch::default();
        for _ in 0..=LEASELESS_LOOKS {
            w.step(snap(0, 0, 0, 2), &T);
        }
        assert!(w.last_look(snap(0, 0, 0, 0), &T).is_empty());
    }
}
