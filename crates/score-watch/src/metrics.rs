//! What a watcher reports: Prometheus text for `/metrics`, the recent cycles
//! for the status page, and readiness for `/readyz`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{Cycle, Outcome};

/// Freshness buckets, seconds: the product promise is minutes; the
/// product it replaces takes 4 hours.
const FRESHNESS_BUCKETS: [f64; 10] = [
    15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14_400.0, 86_400.0,
];
/// Cycles kept for the status page.
const RECENT: usize = 50;

#[derive(Default)]
struct Inner {
    cycles: [u64; 4],
    duration_sum_s: f64,
    last_duration_s: f64,
    rentals_evaluated: u64,
    awaiting_tail: u64,
    members_published: u64,
    freshness: [u64; FRESHNESS_BUCKETS.len()],
    freshness_count: u64,
    freshness_sum_s: f64,
    lease_held: bool,
    last_good: Option<Instant>,
    recent: VecDeque<Cycle>,
}

pub struct WatchMetrics {
    every: Duration,
    inner: Mutex<Inner>,
}

/// The status page's view.
#[derive(Debug, Serialize)]
pub struct WatchStatus {
    pub lease_held: bool,
    pub every_s: f64,
    pub cycles: Vec<Cycle>,
}

fn index(o: Outcome) -> usize {
    match o {
        Outcome::Committed => 0,
        Outcome::PublishFailed => 1,
        Outcome::Held => 2,
        Outcome::Failed => 3,
    }
}

impl WatchMetrics {
    pub fn new(every: Duration) -> WatchMetrics {
        WatchMetrics {
            every,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain numbers: still readable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_lease(&self, held: bool) {
        self.lock().lease_held = held;
    }

    pub fn record(&self, c: &Cycle) {
        let mut m = self.lock();
        m.cycles[index(c.outcome)] += 1;
        m.duration_sum_s += c.duration_s;
        m.last_duration_s = c.duration_s;
        m.rentals_evaluated += c.report.rentals_evaluated;
        if c.outcome != Outcome::Failed {
            m.awaiting_tail = c.report.awaiting_tail;
        }
        m.members_published += c.report.members_published;
        for &f in &c.report.freshness_s {
            m.freshness_count += 1;
            m.freshness_sum_s += f;
            for (i, b) in FRESHNESS_BUCKETS.iter().enumerate() {
                if f <= *b {
                    m.freshness[i] += 1;
                }
            }
        }
        if c.outcome != Outcome::Failed {
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
            None if m.cycles[index(Outcome::Failed)] > 0 => Err("every cycle so far failed".into()),
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

    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = (|| -> std::fmt::Result {
            writeln!(
                out,
                "# HELP pitwall_watch_cycles_total Cycles finished, by outcome."
            )?;
            writeln!(out, "# TYPE pitwall_watch_cycles_total counter")?;
            for o in [
                Outcome::Committed,
                Outcome::PublishFailed,
                Outcome::Held,
                Outcome::Failed,
            ] {
                writeln!(
                    out,
                    "pitwall_watch_cycles_total{{outcome=\"{}\"}} {}",
                    o.as_str(),
                    m.cycles[index(o)]
                )?;
            }
            let total: u64 = m.cycles.iter().sum();
            writeln!(
                out,
                "# HELP pitwall_watch_cycle_duration_seconds Time cycles took."
            )?;
            writeln!(out, "# TYPE pitwall_watch_cycle_duration_seconds summary")?;
            writeln!(
                out,
                "pitwall_watch_cycle_duration_seconds_sum {}",
                m.duration_sum_s
            )?;
            writeln!(out, "pitwall_watch_cycle_duration_seconds_count {total}")?;
            writeln!(
                out,
                "# HELP pitwall_watch_last_cycle_duration_seconds The last cycle's time."
            )?;
            writeln!(
                out,
                "# TYPE pitwall_watch_last_cycle_duration_seconds gauge"
            )?;
            writeln!(
                out,
                "pitwall_watch_last_cycle_duration_seconds {}",
                m.last_duration_s
            )?;
            writeln!(
                out,
                "# HELP pitwall_watch_rentals_evaluated_total Rentals the cycles evaluated."
            )?;
            writeln!(out, "# TYPE pitwall_watch_rentals_evaluated_total counter")?;
            writeln!(
                out,
                "pitwall_watch_rentals_evaluated_total {}",
                m.rentals_evaluated
            )?;
            writeln!(
                out,
                "# HELP pitwall_watch_rentals_awaiting_tail Open rentals, as of the last cycle, final but for their last seconds (still on their way)."
            )?;
            writeln!(out, "# TYPE pitwall_watch_rentals_awaiting_tail gauge")?;
            writeln!(
                out,
                "pitwall_watch_rentals_awaiting_tail {}",
                m.awaiting_tail
            )?;
            writeln!(
                out,
                "# HELP pitwall_watch_members_published_total Member records sent to the topic."
            )?;
            writeln!(out, "# TYPE pitwall_watch_members_published_total counter")?;
            writeln!(
                out,
                "pitwall_watch_members_published_total {}",
                m.members_published
            )?;
            writeln!(
                out,
                "# HELP pitwall_watch_freshness_seconds Publish time minus the time the rental's last sample reached the lake."
            )?;
            writeln!(out, "# TYPE pitwall_watch_freshness_seconds histogram")?;
            for (b, n) in FRESHNESS_BUCKETS.iter().zip(m.freshness) {
                writeln!(
                    out,
                    "pitwall_watch_freshness_seconds_bucket{{le=\"{b}\"}} {n}"
                )?;
            }
            writeln!(
                out,
                "pitwall_watch_freshness_seconds_bucket{{le=\"+Inf\"}} {}",
                m.freshness_count
            )?;
            writeln!(
                out,
                "pitwall_watch_freshness_seconds_sum {}",
                m.freshness_sum_s
            )?;
            writeln!(
                out,
                "pitwall_watch_freshness_seconds_count {}",
                m.freshness_count
            )?;
            writeln!(
                out,
                "# HELP pitwall_watch_lease_held 1 while this watcher holds the state's lease."
            )?;
            writeln!(out, "# TYPE pitwall_watch_lease_held gauge")?;
            writeln!(out, "pitwall_watch_lease_held {}", u8::from(m.lease_held))
        })();
        out
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

    #[test]
    fn cycles_and_freshness_render_as_prometheus_counters_and_a_cumulative_histogram() {
        let m = WatchMetrics::new(Duration::from_secs(60));
        m.record(&cycle(Outcome::Committed, vec![20.0, 90.0]));
        m.record(&cycle(Outcome::Held, vec![]));
        let text = m.render();
        for line in [
            "pitwall_watch_cycles_total{outcome=\"committed\"} 1",
            "pitwall_watch_cycles_total{outcome=\"held\"} 1",
            "pitwall_watch_rentals_evaluated_total 14",
            "pitwall_watch_members_published_total 6",
            "pitwall_watch_freshness_seconds_bucket{le=\"15\"} 0",
            "pitwall_watch_freshness_seconds_bucket{le=\"30\"} 1",
            "pitwall_watch_freshness_seconds_bucket{le=\"120\"} 2",
            "pitwall_watch_freshness_seconds_bucket{le=\"+Inf\"} 2",
            "pitwall_watch_freshness_seconds_sum 110",
            "pitwall_watch_cycle_duration_seconds_count 2",
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
