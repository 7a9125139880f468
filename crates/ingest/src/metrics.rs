//! What a worker knows about itself: its shards' states (see
//! [`ShardState`]), counters, and their Prometheus rendering.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

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

    /// Adds the worker's series to `registry` (the binary's, prefixed
    /// `pitwall`): `pitwall_ingest_…`, read from this worker at each scrape.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(Collect(self.clone())));
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("leases", &self.leases())
            .finish_non_exhaustive()
    }
}

/// A label value as the exposition format needs it: backslash, double
/// quote and newline escaped. prometheus-client writes label values as they
/// are, and a shard or stream name is input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Escaped(pub String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The worker's metrics, computed at scrape time from its counters and its
/// shards' states.
#[derive(Debug)]
struct Collect(Arc<Metrics>);

impl Collect {
    fn counter(
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        v: u64,
    ) -> std::fmt::Result {
        let c = ConstCounter::new(v);
        c.encode(e.encode_descriptor(name, help, unit, c.metric_type())?)
    }

    fn gauge(
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        v: f64,
    ) -> std::fmt::Result {
        let g = ConstGauge::new(v);
        g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
    }

    /// A gauge per shard.
    fn per_shard(
        e: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        values: &[(String, f64)],
    ) -> std::fmt::Result {
        let mut family =
            e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Gauge)?;
        for (shard, v) in values {
            let labels = [("shard", Escaped(shard.clone()))];
            ConstGauge::new(*v).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Collector for Collect {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.0;
        let c = m.counts();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let e = &mut e;
        Self::counter(
            e,
            "ingest_records",
            "Kinesis records read.",
            None,
            c.records,
        )?;
        Self::counter(
            e,
            "ingest_record",
            "Bytes of Kinesis record data read.",
            Some(&Unit::Bytes),
            c.record_bytes,
        )?;
        Self::counter(
            e,
            "ingest_events",
            "Events that passed the contract.",
            None,
            c.events,
        )?;
        let mut dlq = e.encode_descriptor(
            "ingest_dlq_events",
            "Events and records sent to the DLQ, by reason.",
            None,
            MetricType::Counter,
        )?;
        for r in pitwall_logs::Reason::ALL_CODES {
            let n = c.dlq.get(r).copied().unwrap_or(0);
            ConstCounter::new(n).encode(dlq.encode_family(&[("reason", r)])?)?;
        }
        Self::counter(
            e,
            "ingest_control_messages",
            "CloudWatch Logs control messages skipped.",
            None,
            c.control_messages,
        )?;
        Self::counter(
            e,
            "ingest_files_written",
            "Lake and DLQ files written.",
            None,
            load(&m.files_written),
        )?;
        Self::counter(
            e,
            "ingest_written",
            "Bytes written to the lake and DLQ.",
            Some(&Unit::Bytes),
            load(&m.bytes_written),
        )?;
        Self::counter(
            e,
            "ingest_throttles",
            "GetRecords calls throttled by Kinesis.",
            None,
            load(&m.throttles),
        )?;
        Self::counter(
            e,
            "ingest_errors",
            "Reader or lease errors (retried).",
            None,
            load(&m.errors),
        )?;
        Self::gauge(
            e,
            "ingest_leases",
            "Leases this worker holds.",
            None,
            m.leases() as f64,
        )?;
        let stuck = m.stuck().map_or(0.0, |(_, d)| d.as_secs_f64().floor());
        Self::gauge(
            e,
            "ingest_stuck",
            "How long the shard stuck the longest (held without progress, or readable and read by nobody) has been so.",
            Some(&Unit::Seconds),
            stuck,
        )?;
        let shards = m.shards();
        let behind: Vec<_> = shards
            .iter()
            .map(|s| (s.shard_id.clone(), s.millis_behind() as f64 / 1000.0))
            .collect();
        Self::per_shard(
            e,
            "ingest_behind_latest",
            "How far the shard's reader is behind the stream's tip (MillisBehindLatest of its last GetRecords, in seconds).",
            &behind,
        )?;
        let age: Vec<_> = shards
            .iter()
            .filter_map(|s| s.checkpoint().map(|(a, _)| (s.shard_id.clone(), a)))
            .collect();
        Self::per_shard(
            e,
            "ingest_checkpoint_age",
            "Seconds since the shard's last checkpoint.",
            &age,
        )
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

    fn encoded(m: &Arc<Metrics>) -> String {
        let mut registry = Registry::with_prefix("pitwall");
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("to a String");
        text
    }

    #[test]
    fn metrics_render_in_base_units_with_conventional_suffixes() {
        let m = Arc::new(Metrics::default());
        let s = m.shard("shardId-000000000001");
        s.read(3, 1500);
        m.set_leases(1);
        let text = encoded(&m);
        for want in [
            "# TYPE pitwall_ingest_leases gauge\npitwall_ingest_leases 1.0\n",
            "pitwall_ingest_behind_latest_seconds{shard=\"shardId-000000000001\"} 1.5\n",
            "# TYPE pitwall_ingest_written_bytes counter\n# UNIT pitwall_ingest_written_bytes bytes\npitwall_ingest_written_bytes_total 0\n",
            "pitwall_ingest_dlq_events_total{reason=\"invalid_json\"} 0\n",
            "pitwall_ingest_record_bytes_total 0\n",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }

    /// Bad input: a shard name with a quote, a backslash and a newline
    /// would cut the exposition short and make Prometheus drop the scrape.
    #[test]
    fn label_values_are_escaped() {
        let m = Arc::new(Metrics::default());
        m.shard("shard\"x\\y\nz").read(0, 0);
        let text = encoded(&m);
        assert!(
            text.contains(
                "pitwall_ingest_behind_latest_seconds{shard=\"shard\\\"x\\\\y\\nz\"} 0.0\n"
            ),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("shard")).count(), 0);
    }
}
