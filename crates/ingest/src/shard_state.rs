//! One leased shard as its reader and the worker share it: whether the
//! lease may still be written under, whether the reader should stop, how
//! far it read, and whether a PUT of its may still land.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

impl ShardState {
    pub(crate) fn new(shard_id: &str, progress: Instant) -> ShardState {
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

    /// When the shard last made progress (see the field).
    pub(crate) fn progress(&self) -> Instant {
        *lock(&self.progress)
    }

    /// Whether a GetRecords call succeeded within `d`.
    pub(crate) fn read_within(&self, d: Duration) -> bool {
        lock(&self.last_call).is_some_and(|t| t.elapsed() < d)
    }
}

/// A poisoned lock's data is still good here: every write is one whole value.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_valid_for_most_of_the_failover_time_from_the_renewal_sent() {
        let s = ShardState::new("shard-1", Instant::now());
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
        let s = ShardState::new("shard-1", Instant::now());
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
}
