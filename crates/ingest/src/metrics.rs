//! What a worker knows about itself: per-shard state shared between the
//! worker and its readers, counters, and their Prometheus rendering.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sink::{Committed, Counts};

/// One leased shard, as its reader and the worker see it.
pub struct ShardState {
    pub shard_id: String,
    stop: AtomicBool,
    lost: AtomicBool,
    valid_until: Mutex<Instant>,
    last_data: Mutex<Instant>,
    caught_up: AtomicBool,
    millis_behind: AtomicI64,
    checkpointed: Mutex<Option<(Instant, String)>>,
    /// Event bytes the shard's buffer holds, for the worker-wide budget.
    held: AtomicUsize,
    /// When a GetRecords call last succeeded.
    last_call: Mutex<Option<Instant>>,
    /// Records read since the lease was taken, for the status page's rates.
    records: AtomicU64,
    /// Record bytes read since the lease was taken: the shard's load.
    bytes: AtomicU64,
    /// When the shard last made progress: a checkpoint, or a read that
    /// found it caught up with nothing held. Kept across takes by
    /// [`Metrics`], so a reader that fails and is taken again stays stuck.
    progress: Mutex<Instant>,
    committing: AtomicBool,
    /// ListShards showed the shard closed by a reshard.
    closed: AtomicBool,
    /// When the first renewal that failed since the last success was sent:
    /// it may have landed all the same (see [`renewal_failed`](Self::renewal_failed)).
    doubt: Mutex<Option<Instant>>,
    /// A PUT of the reader's may still land (see [`unsettle`](Self::unsettle)).
    unsettled: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ShardState {
    fn new(shard_id: &str, progress: Instant) -> ShardState {
        ShardState {
            shard_id: shard_id.to_string(),
            stop: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            valid_until: Mutex::new(Instant::now()),
            last_data: Mutex::new(Instant::now()),
            caught_up: AtomicBool::new(false),
            millis_behind: AtomicI64::new(0),
            checkpointed: Mutex::new(None),
            held: AtomicUsize::new(0),
            last_call: Mutex::new(None),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            progress: Mutex::new(progress),
            committing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            doubt: Mutex::new(None),
            unsettled: AtomicBool::new(false),
        }
    }

    /// The lease was renewed by a write sent at `sent`: it is ours for the
    /// failover time from then, less a margin, by our clock. From the send,
    /// not the answer: the store applied the write somewhere in between, and
    /// another worker counts the failover time from when it saw it, so a
    /// slow answer must not stretch our validity past theirs.
    ///
    /// After a failed renewal the success may only have found that one's
    /// write, read back (its answer was lost, the store had applied it):
    /// the counter others watch moved at the earlier send, so validity
    /// counts from there.
    pub fn renewed(&self, sent: Instant, failover: Duration) {
        let from = lock(&self.doubt).take().map_or(sent, |d| d.min(sent));
        *lock(&self.valid_until) = from + failover.mul_f32(0.8);
    }

    /// A renewal sent at `sent` failed: an attempt of it may have landed
    /// before its answer was lost, so it may have moved the counter.
    pub fn renewal_failed(&self, sent: Instant) {
        lock(&self.doubt).get_or_insert(sent);
    }

    /// A PUT of the reader's was abandoned or failed mid-commit: once sent,
    /// it may still land, so the shard's next reader must not start before
    /// it has, or its file could be replaced by this older one.
    pub fn unsettle(&self) {
        self.unsettled.store(true, Ordering::Release);
    }

    /// Whether a PUT of the reader's may still land.
    pub fn unsettled(&self) -> bool {
        self.unsettled.load(Ordering::Acquire)
    }

    /// May the reader still write? (No renewal for most of the failover
    /// time means another worker may already have taken the lease.)
    pub fn lease_valid(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && Instant::now() < *lock(&self.valid_until)
    }

    pub fn lose(&self) {
        self.lost.store(true, Ordering::Release);
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn read(&self, records: usize, millis_behind: i64) {
        *lock(&self.last_call) = Some(Instant::now());
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        self.millis_behind.store(millis_behind, Ordering::Relaxed);
        if records > 0 {
            *lock(&self.last_data) = Instant::now();
        } else if millis_behind == 0 && self.held() == 0 {
            *lock(&self.progress) = Instant::now();
        }
        self.caught_up
            .store(records == 0 && millis_behind == 0, Ordering::Relaxed);
    }

    /// Whether a GetRecords call has succeeded since the lease was taken.
    pub fn has_read(&self) -> bool {
        lock(&self.last_call).is_some()
    }

    pub fn read_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Caught up with the stream, nothing arrived for `d`, and no commit
    /// under way (one retrying a failing lake is not idle, however long ago
    /// its records arrived; a buffer merely held is committed at shutdown).
    pub fn idle_for(&self, d: Duration) -> bool {
        self.caught_up.load(Ordering::Relaxed)
            && !self.committing.load(Ordering::Acquire)
            && lock(&self.last_data).elapsed() >= d
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Whether ListShards showed the shard closed (it has an end to reach).
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// A commit starts (true) or ends (false).
    pub fn set_committing(&self, on: bool) {
        self.committing.store(on, Ordering::Release);
    }

    pub fn checkpointed(&self, at: &str) {
        *lock(&self.checkpointed) = Some((Instant::now(), at.to_string()));
        *lock(&self.progress) = Instant::now();
    }

    /// How long since the shard last made progress (see `progress`).
    pub fn stalled_for(&self) -> Duration {
        lock(&self.progress).elapsed()
    }

    pub fn set_held(&self, bytes: usize) {
        self.held.store(bytes, Ordering::Relaxed);
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn millis_behind(&self) -> i64 {
        self.millis_behind.load(Ordering::Relaxed)
    }

    /// Seconds since the last checkpoint (None before the first) and where it is.
    pub fn checkpoint(&self) -> Option<(f64, String)> {
        lock(&self.checkpointed)
            .as_ref()
            .map(|(t, s)| (t.elapsed().as_secs_f64(), s.clone()))
    }
}

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
            let at = *lock(&s.progress);
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
            .filter(|s| lock(&s.last_call).is_some_and(|t| t.elapsed() < within))
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
    fn a_lease_is_valid_for_most_of_the_failover_time_from_the_renewal_sent() {
        let m = Metrics::default();
        let s = m.shard("shard-1");
        let failover = Duration::from_secs(10);
        s.renewed(Instant::now(), failover);
        assert!(s.lease_valid(), "just renewed");
        // A renewal answered late: sent 9 s ago, past 80 % of 10 s.
        let sent = Instant::now().checked_sub(Duration::from_secs(9));
        s.renewed(sent.unwrap_or_else(Instant::now), failover);
        assert!(!s.lease_valid() || sent.is_none(), "valid from the send");
        s.renewed(Instant::now(), failover);
        s.lose();
        assert!(!s.lease_valid(), "lost");
    }

    #[test]
    fn a_renewal_after_a_failed_one_counts_from_the_failed_ones_send() {
        let m = Metrics::default();
        let s = m.shard("shard-1");
        let failover = Duration::from_secs(10);
        let Some(failed) = Instant::now().checked_sub(Duration::from_secs(9)) else {
            return;
        };
        // The failed renewal's write may be what the next one found.
        s.renewal_failed(failed);
        s.renewal_failed(Instant::now());
        s.renewed(Instant::now(), failover);
        assert!(
            !s.lease_valid(),
            "valid from the first failed send, 9 s ago"
        );
        // The doubt ends with that success: the next renewal moved the
        // counter itself.
        s.renewed(Instant::now(), failover);
        assert!(s.lease_valid(), "valid from its own send");
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
