//! What a worker knows about itself: its shards' states (see
//! [`ShardState`]), counters, and their Prometheus rendering.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::shard_state::{ShardState, lock};
use crate::sink::{Committed, Counts};

/// A worker is ready while some shard's GetRecords succeeded this recently.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Metrics {
    shards: Mutex<BTreeMap<String, Arc<ShardState>>>,
    counts: Mutex<Counts>,
    pub(crate) files_written: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) throttles: AtomicU64,
    pub(crate) errors: AtomicU64,
    leases: AtomicUsize,
    /// Recent commits and rate samples, for the status page.
    pub activity: crate::status::Activity,
    /// Each shard's last progress, kept when its reader ends.
    progress: Mutex<HashMap<String, Instant>>,
    /// The readable shard no live worker read the longest, and since when.
    unread: Mutex<Option<(String, Instant)>>,
    /// Told when the worker stops reading (see [`stop_reading`](Self::stop_reading)).
    stopping: tokio::sync::Notify,
}

impl Metrics {
    /// The worker stops reading and is about to make its last commits: what
    /// watches it takes its last look now, while the shards are still its.
    pub fn stop_reading(&self) {
        self.stopping.notify_one();
    }

    /// Resolves once [`stop_reading`](Self::stop_reading) has been called
    /// (also when it was before this call).
    pub async fn stopped_reading(&self) {
        self.stopping.notified().await;
    }

    pub fn shard(&self, shard_id: &str) -> Arc<ShardState> {
        let since = lock(&self.progress).get(shard_id).copied();
        let s = Arc::new(ShardState::new(
            shard_id,
            since.unwrap_or_else(Instant::now),
        ));
        lock(&self.shards).insert(shard_id.to_string(), s.clone());
        s
    }

    pub fn forget(&self, shard_id: &str) {
        if let Some(s) = lock(&self.shards).remove(shard_id) {
            let at = s.progress();
            lock(&self.progress).insert(shard_id.to_string(), at);
        }
    }

    /// Notes the readable shard left unread the longest (by the lease table).
    pub fn set_unread(&self, oldest: Option<(String, Duration)>) {
        let since = oldest.and_then(|(s, d)| Some((s, Instant::now().checked_sub(d)?)));
        *lock(&self.unread) = since;
    }

    /// The shard stuck the longest, and for how long: one held here that
    /// made no progress, or one that nobody reads.
    pub fn stuck(&self) -> Option<(String, Duration)> {
        let held = self
            .shards()
            .iter()
            .map(|s| (s.shard_id.clone(), s.stalled_for()))
            .max_by_key(|(_, d)| *d);
        let unread = lock(&self.unread)
            .as_ref()
            .map(|(s, t)| (s.clone(), t.elapsed()));
        held.into_iter().chain(unread).max_by_key(|(_, d)| *d)
    }

    pub fn shards(&self) -> Vec<Arc<ShardState>> {
        lock(&self.shards).values().cloned().collect()
    }

    /// Should the shard holding `mine` commit early? Yes when all shards
    /// together hold more than `budget` and it holds the most: with one
    /// hour open on many shards, memory stays near the budget and files
    /// stay as large as the budget allows.
    pub fn over_budget(&self, mine: usize, budget: usize) -> bool {
        let held: Vec<usize> = self.shards().iter().map(|s| s.held()).collect();
        over_budget(mine, &held, budget)
    }

    pub fn add_counts(&self, c: &Counts) {
        lock(&self.counts).add(c);
    }

    pub fn counts(&self) -> Counts {
        lock(&self.counts).clone()
    }

    pub fn committed(&self, shard_id: &str, done: &Committed) {
        self.files_written
            .fetch_add(done.files.len() as u64, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(done.bytes_written, Ordering::Relaxed);
        self.activity.committed(shard_id, done);
    }

    pub fn bump_throttles(&self) {
        self.throttles.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bump_errors(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_leases(&self, n: usize) {
        self.leases.store(n, Ordering::Relaxed);
    }

    pub fn leases(&self) -> usize {
        self.leases.load(Ordering::Relaxed)
    }

    /// Ready: holds leases and at least one shard's GetRecords succeeded
    /// within `within` (a worker whose reads all fail is not ready).
    pub fn ready(&self, within: Duration) -> Result<String, String> {
        if self.leases() == 0 {
            return Err("no leases held".into());
        }
        let reading = self
            .shards()
            .iter()
            .filter(|s| s.read_within(within))
            .count();
        match reading {
            0 => Err(format!(
                "{} leases held, but no shard read in the last {within:?}",
                self.leases()
            )),
            n => Ok(format!("reading {n} of {} leased shards", self.leases())),
        }
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let c = self.counts();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        metric(
            "pitwall_ingest_records_total",
            "counter",
            "Kinesis records read.",
            &one(c.records as f64),
        );
        metric(
            "pitwall_ingest_record_bytes_total",
            "counter",
            "Bytes of Kinesis record data read.",
            &one(c.record_bytes as f64),
        );
        metric(
            "pitwall_ingest_events_total",
            "counter",
            "Events that passed the contract.",
            &one(c.events as f64),
        );
        let dlq: Vec<_> = pitwall_logs::Reason::ALL_CODES
            .iter()
            .map(|r| {
                (
                    format!("{{reason=\"{r}\"}}"),
                    c.dlq.get(r).copied().unwrap_or(0) as f64,
                )
            })
            .collect();
        metric(
            "pitwall_ingest_dlq_events_total",
            "counter",
            "Events and records sent to the DLQ, by reason.",
            &dlq,
        );
        metric(
            "pitwall_ingest_control_messages_total",
            "counter",
            "CloudWatch Logs control messages skipped.",
            &one(c.control_messages as f64),
        );
        metric(
            "pitwall_ingest_files_written_total",
            "counter",
            "Lake and DLQ files written.",
            &one(self.files_written.load(Ordering::Relaxed) as f64),
        );
        metric(
            "pitwall_ingest_bytes_written_total",
            "counter",
            "Bytes written to the lake and DLQ.",
            &one(self.bytes_written.load(Ordering::Relaxed) as f64),
        );
        metric(
            "pitwall_ingest_throttles_total",
            "counter",
            "GetRecords calls throttled by Kinesis.",
            &one(self.throttles.load(Ordering::Relaxed) as f64),
        );
        metric(
            "pitwall_ingest_errors_total",
            "counter",
            "Reader or lease errors (retried).",
            &one(self.errors.load(Ordering::Relaxed) as f64),
        );
        metric(
            "pitwall_ingest_leases",
            "gauge",
            "Leases this worker holds.",
            &one(self.leases() as f64),
        );
        let stuck = self.stuck().map_or(0.0, |(_, d)| d.as_secs_f64().floor());
        metric(
            "pitwall_ingest_stuck_seconds",
            "gauge",
            "How long the shard stuck the longest (held without progress, or readable and read by nobody) has been so.",
            &one(stuck),
        );
        let shards = self.shards();
        let behind: Vec<_> = shards
            .iter()
            .map(|s| {
                (
                    format!("{{shard=\"{}\"}}", s.shard_id),
                    s.millis_behind() as f64,
                )
            })
            .collect();
        metric(
            "pitwall_ingest_millis_behind_latest",
            "gauge",
            "MillisBehindLatest of the last GetRecords, per shard.",
            &behind,
        );
        let age: Vec<_> = shards
            .iter()
            .filter_map(|s| {
                s.checkpoint()
                    .map(|(a, _)| (format!("{{shard=\"{}\"}}", s.shard_id), a))
            })
            .collect();
        metric(
            "pitwall_ingest_checkpoint_age_seconds",
            "gauge",
            "Seconds since the shard's last checkpoint.",
            &age,
        );
        out
    }
}

fn over_budget(mine: usize, all: &[usize], budget: usize) -> bool {
    mine > 0 && all.iter().sum::<usize>() > budget && all.iter().all(|&h| h <= mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_buffer_commits_when_the_budget_is_exceeded() {
        assert!(!over_budget(40, &[40, 30, 20], 100), "within budget");
        assert!(over_budget(50, &[50, 30, 30], 100), "largest, over budget");
        assert!(!over_budget(30, &[50, 30, 30], 100), "not the largest");
        assert!(!over_budget(0, &[0, 0], 0), "nothing held");
    }

    #[test]
    fn a_shards_progress_is_a_checkpoint_or_being_caught_up_and_outlives_its_reader() {
        let m = Metrics::default();
        let s = m.shard("shard-1");
        std::thread::sleep(Duration::from_millis(30));
        s.set_held(10);
        s.read(0, 0);
        assert!(
            s.stalled_for() >= Duration::from_millis(30),
            "records held: no progress"
        );
        s.checkpointed("49");
        assert!(
            s.stalled_for() < Duration::from_millis(30),
            "a checkpoint is progress"
        );
        std::thread::sleep(Duration::from_millis(30));
        m.forget("shard-1");
        let again = m.shard("shard-1");
        assert!(
            again.stalled_for() >= Duration::from_millis(30),
            "taken again, the shard is as stuck as before"
        );
        assert_eq!(m.stuck().map(|(s, _)| s), Some("shard-1".into()));
        again.set_held(0);
        again.read(0, 0);
        assert!(
            again.stalled_for() < Duration::from_millis(30),
            "caught up, nothing held"
        );
    }

    #[test]
    fn ready_means_leases_held_and_a_recent_read() {
        let m = Metrics::default();
        assert!(m.ready(Duration::from_secs(30)).is_err(), "no leases");
        let s = m.shard("shard-1");
        m.set_leases(1);
        assert!(
            m.ready(Duration::from_secs(30)).is_err(),
            "leased, never read"
        );
        s.read(0, 0);
        assert_eq!(
            m.ready(Duration::from_secs(30)),
            Ok("reading 1 of 1 leased shards".into())
        );
    }

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let m = Metrics::default();
        let s = m.shard("shardId-000000000001");
        s.read(3, 1500);
        m.set_leases(1);
        let text = m.render();
        assert!(
            text.contains("# TYPE pitwall_ingest_leases gauge\npitwall_ingest_leases 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "pitwall_ingest_millis_behind_latest{shard=\"shardId-000000000001\"} 1500"
            )
        );
        assert!(text.contains("pitwall_ingest_dlq_events_total{reason=\"invalid_json\"} 0"));
    }
}
