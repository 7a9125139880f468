//! What a watcher reports: its Prometheus metrics (registered with the
//! binary's registry, see [`WatchMetrics::register`]), the recent cycles for
//! the status page, and readiness for `/readyz`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;

use crate::{Cycle, Outcome};

/// Freshness buckets, seconds: the product promise is minutes; the
/// product it replaces takes 4 hours.
const FRESHNESS_BUCKETS: [f64; 10] = [
    15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14_400.0, 86_400.0,
];
/// Cycle duration buckets, seconds: a cycle of a young fleet takes about
/// a second, one of a year of a large fleet a minute or more.
const DURATION_BUCKETS: [f64; 10] = [0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// Cycles kept for the status page.
const RECENT: usize = 50;

type Seconds = Gauge<f64, AtomicU64>;

/// The series a watcher exposes; each is a handle onto the value the
/// registry encodes at scrape time.
#[derive(Clone)]
struct Series {
    cycles: Family<[(&'static str, &'static str); 1], Counter>,
    duration: Histogram,
    last_duration: Seconds,
    rentals_evaluated: Counter,
    awaiting_tail: Gauge,
    members_published: Counter,
    freshness: Histogram,
    lease_held: Gauge,
    interval: Seconds,
    last_cycle: Seconds,
}

#[derive(Default)]
struct Inner {
    failed: u64,
    lease_held: bool,
    last_good: Option<Instant>,
    recent: VecDeque<Cycle>,
}

pub struct WatchMetrics {
    every: Duration,
    series: Series,
    inner: Mutex<Inner>,
}

/// The status page's view.
#[derive(Debug, Serialize)]
pub struct WatchStatus {
    pub lease_held: bool,
    pub every_s: f64,
    pub cycles: Vec<Cycle>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl WatchMetrics {
    pub fn new(every: Duration) -> WatchMetrics {
        let series = Series {
            cycles: Family::default(),
            duration: Histogram::new(DURATION_BUCKETS),
            last_duration: Seconds::default(),
            rentals_evaluated: Counter::default(),
            awaiting_tail: Gauge::default(),
            members_published: Counter::default(),
            freshness: Histogram::new(FRESHNESS_BUCKETS),
            lease_held: Gauge::default(),
            interval: Seconds::default(),
            last_cycle: Seconds::default(),
        };
        series.interval.set(every.as_secs_f64());
        // Every outcome is a series from the start: a rate over a counter
        // that appears only with its first failure misses that failure.
        for o in Outcome::ALL {
            drop(series.cycles.get_or_create(&[("outcome", o.as_str())]));
        }
        WatchMetrics {
            every,
            series,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Adds the watcher's series to `registry` (the binary's, prefixed
    /// `pitwall`): `pitwall_watch_…`.
    pub fn register(&self, registry: &mut Registry) {
        let s = self.series.clone();
        let r = registry.sub_registry_with_prefix("watch");
        r.register("cycles", "Cycles finished, by outcome.", s.cycles);
        r.register_with_unit(
            "cycle_duration",
            "Time cycles took.",
            Unit::Seconds,
            s.duration,
        );
        r.register_with_unit(
            "last_cycle_duration",
            "The last cycle's time.",
            Unit::Seconds,
            s.last_duration,
        );
        r.register(
            "rentals_evaluated",
            "Rentals the cycles evaluated.",
            s.rentals_evaluated,
        );
        r.register(
            "rentals_awaiting_tail",
            "Open rentals, as of the last cycle that got through, final but for their last seconds (still on their way).",
            s.awaiting_tail,
        );
        r.register(
            "members_published",
            "Member records sent to the topic.",
            s.members_published,
        );
        r.register_with_unit(
            "freshness",
            "Publish time minus the time the rental's last sample reached the lake.",
            Unit::Seconds,
            s.freshness,
        );
        r.register(
            "lease_held",
            "1 while this watcher holds the state's lease.",
            s.lease_held,
        );
        r.register_with_unit(
            "interval",
            "The time between the starts of two cycles (--every).",
            Unit::Seconds,
            s.interval,
        );
        r.register_with_unit(
            "last_cycle_timestamp",
            "When the last cycle finished, whatever its outcome (Unix time); 0 before the first.",
            Unit::Seconds,
            s.last_cycle,
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain numbers: still readable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_lease(&self, held: bool) {
        self.lock().lease_held = held;
        self.series.lease_held.set(i64::from(held));
    }

    pub fn record(&self, c: &Cycle) {
        let s = &self.series;
        s.cycles
            .get_or_create(&[("outcome", c.outcome.as_str())])
            .inc();
        s.duration.observe(c.duration_s);
        s.last_duration.set(c.duration_s);
        s.rentals_evaluated.inc_by(c.report.rentals_evaluated);
        s.members_published.inc_by(c.report.members_published);
        for &f in &c.report.freshness_s {
            s.freshness.observe(f);
        }
        s.last_cycle.set(unix_now());
        let mut m = self.lock();
        if c.outcome == Outcome::Failed {
            m.failed += 1;
        } else {
            s.awaiting_tail
                .set(i64::try_from(c.report.awaiting_tail).unwrap_or(i64::MAX));
            m.last_good = Some(Instant::now());
        }
        m.recent.push_front(c.clone());
        m.recent.truncate(RECENT);
    }

    /// Ready: the lease is held and a cycle got through (committed, held or
    /// committed without its publication) within three intervals.
    pub fn ready(&self) -> Result<String, String> {
        let m = self.lock();
        if !m.lease_held {
            return Err(
                "not holding the state's lease (another watcher does, or it is being taken)".into(),
            );
        }
        let within = (self.every * 3).max(Duration::from_secs(60));
        match m.last_good {
            Some(t) if t.elapsed() <= within => Ok(format!(
                "ready: last cycle {:.0} s ago",
                t.elapsed().as_secs_f64()
            )),
            Some(t) => Err(format!(
                "no cycle got through for {:.0} s (allowed {:.0} s)",
                t.elapsed().as_secs_f64(),
                within.as_secs_f64()
            )),
            None if m.failed > 0 => Err("every cycle so far failed".into()),
            None => Err("the first cycle is under way".into()),
        }
    }

    pub fn status(&self) -> WatchStatus {
        let m = self.lock();
        WatchStatus {
            lease_held: m.lease_held,
            every_s: self.every.as_secs_f64(),
            cycles: m.recent.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CycleReport;

    fn cycle(outcome: Outcome, freshness: Vec<f64>) -> Cycle {
        Cycle {
            as_of_ms: 0,
            duration_s: 2.5,
            outcome,
            report: CycleReport {
                rentals_evaluated: 7,
                members_published: 3,
                freshness_s: freshness,
                ..CycleReport::default()
            },
            error: None,
        }
    }

    fn encoded(m: &WatchMetrics) -> String {
        let mut registry = Registry::with_prefix("pitwall");
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("to a String");
        text
    }

    #[test]
    fn cycles_and_freshness_render_as_prometheus_counters_and_a_cumulative_histogram() {
        let m = WatchMetrics::new(Duration::from_secs(60));
        m.record(&cycle(Outcome::Committed, vec![20.0, 90.0]));
        m.record(&cycle(Outcome::Held, vec![]));
        let text = encoded(&m);
        for line in [
            "pitwall_watch_cycles_total{outcome=\"committed\"} 1",
            "pitwall_watch_cycles_total{outcome=\"held\"} 1",
            "pitwall_watch_cycles_total{outcome=\"failed\"} 0",
            "pitwall_watch_rentals_evaluated_total 14",
            "pitwall_watch_members_published_total 6",
            "pitwall_watch_freshness_seconds_bucket{le=\"15.0\"} 0",
            "pitwall_watch_freshness_seconds_bucket{le=\"30.0\"} 1",
            "pitwall_watch_freshness_seconds_bucket{le=\"120.0\"} 2",
            "pitwall_watch_freshness_seconds_bucket{le=\"+Inf\"} 2",
            "pitwall_watch_freshness_seconds_sum 110.0",
            "pitwall_watch_cycle_duration_seconds_count 2",
            "pitwall_watch_interval_seconds 60.0",
            "# TYPE pitwall_watch_freshness_seconds histogram",
            "# UNIT pitwall_watch_freshness_seconds seconds",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert_eq!(m.status().cycles.len(), 2);
        assert_eq!(m.status().cycles[0].outcome, Outcome::Held, "latest first");
    }

    #[test]
    fn ready_only_with_the_lease_and_a_cycle_through() {
        let m = WatchMetrics::new(Duration::from_secs(60));
        assert!(m.ready().is_err());
        m.set_lease(true);
        assert!(m.ready().unwrap_err().contains("first cycle"));
        m.record(&cycle(Outcome::Failed, vec![]));
        assert!(m.ready().unwrap_err().contains("failed"));
        m.record(&cycle(Outcome::Held, vec![]));
        assert!(m.ready().is_ok());
        m.set_lease(false);
        assert!(m.ready().is_err());
    }
}
