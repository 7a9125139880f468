//! What the status page shows: every shard's lease (whoever holds it), this
//! worker's lag, checkpoints and rates, the throughput of the last minutes,
//! the DLQ by reason and the last commits — one JSON document the page polls.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::metrics::{Metrics, READY_WITHIN};
use crate::sink::Committed;
use pitwall_lease::{Lease, LeaseError};

/// Commits kept for the page.
const RECENT_COMMITS: usize = 30;
/// Samples kept: 15 minutes at one per 5 s.
const SAMPLES: usize = 180;
/// How often the caller should call [`Metrics::sample`].
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Serialize)]
pub struct CommitView {
    pub at_ms: i64,
    pub shard_id: String,
    pub files: Vec<String>,
    pub events: u64,
    pub dlq_events: u64,
    pub bytes: u64,
}

/// Cumulative totals at one moment; rates are differences of two.
#[derive(Debug, Clone, Default)]
struct Sample {
    at_ms: i64,
    records: u64,
    record_bytes: u64,
    events: u64,
    dlq: u64,
    per_shard: BTreeMap<String, u64>,
}

/// Recent commits and rate samples.
#[derive(Default)]
pub struct Activity {
    commits: Mutex<VecDeque<CommitView>>,
    samples: Mutex<VecDeque<Sample>>,
}

impl Activity {
    pub(crate) fn committed(&self, shard_id: &str, done: &Committed) {
        let mut c = lock(&self.commits);
        if c.len() == RECENT_COMMITS {
            c.pop_back();
        }
        c.push_front(CommitView {
            at_ms: now_ms(),
            shard_id: shard_id.to_string(),
            files: done.files.clone(),
            events: done.events,
            dlq_events: done.dlq_events,
            bytes: done.bytes_written,
        });
    }
}

impl Metrics {
    /// Takes a rate sample; call every [`SAMPLE_EVERY`].
    pub fn sample(&self) {
        let c = self.counts();
        let s = Sample {
            at_ms: now_ms(),
            records: c.records,
            record_bytes: c.record_bytes,
            events: c.events,
            dlq: c.dlq_total(),
            per_shard: self
                .shards()
                .iter()
                .map(|s| (s.shard_id.clone(), s.records()))
                .collect(),
        };
        let mut samples = lock(&self.activity.samples);
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(s);
    }
}

/// Per second between two samples.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rate {
    pub at_ms: i64,
    pub records: f64,
    pub events: f64,
    pub dlq: f64,
    pub mb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardView {
    pub shard_id: String,
    pub owner: Option<String>,
    /// Held by this worker (lag, checkpoint age and rate are known here).
    pub mine: bool,
    pub checkpoint: String,
    pub parents: Vec<String>,
    pub finished: bool,
    pub millis_behind: Option<i64>,
    pub checkpoint_age_s: Option<f64>,
    pub records_per_s: Option<f64>,
}

impl ShardView {
    /// A shard with nothing known yet but its owner.
    fn new(shard_id: &str, owner: Option<String>) -> ShardView {
        ShardView {
            shard_id: shard_id.to_string(),
            owner,
            mine: false,
            checkpoint: String::new(),
            parents: Vec::new(),
            finished: false,
            millis_behind: None,
            checkpoint_age_s: None,
            records_per_s: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub stream: String,
    pub worker_id: String,
    pub at_ms: i64,
    pub ready: bool,
    pub ready_detail: String,
    pub records: u64,
    pub record_bytes: u64,
    pub events: u64,
    pub dlq_events: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub throttles: u64,
    pub errors: u64,
    pub leases_held: usize,
    /// The lease table could not be read; shards show this worker's only.
    pub lease_error: Option<String>,
    pub shards: Vec<ShardView>,
    pub dlq_by_reason: BTreeMap<&'static str, u64>,
    pub throughput: Vec<Rate>,
    pub recent_commits: Vec<CommitView>,
}

/// The status of `m`, with the lease table as read from the store.
pub fn status(
    m: &Metrics,
    leases: Result<Vec<Lease>, LeaseError>,
    stream: &str,
    worker_id: &str,
) -> Status {
    let c = m.counts();
    let samples: Vec<Sample> = lock(&m.activity.samples).iter().cloned().collect();
    let (ready, ready_detail) = match m.ready(READY_WITHIN) {
        Ok(s) => (true, s),
        Err(s) => (false, s),
    };
    let (leases, lease_error) = match leases {
        Ok(l) => (l, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Status {
        stream: stream.to_string(),
        worker_id: worker_id.to_string(),
        at_ms: now_ms(),
        ready,
        ready_detail,
        records: c.records,
        record_bytes: c.record_bytes,
        events: c.events,
        dlq_events: c.dlq_total(),
        files_written: m.files_written.load(Ordering::Relaxed),
        bytes_written: m.bytes_written.load(Ordering::Relaxed),
        throttles: m.throttles.load(Ordering::Relaxed),
        errors: m.errors.load(Ordering::Relaxed),
        leases_held: m.leases(),
        lease_error,
        shards: shard_views(m, &leases, &samples, worker_id),
        dlq_by_reason: c.dlq,
        throughput: rates(&samples),
        recent_commits: lock(&m.activity.commits).iter().cloned().collect(),
    }
}

fn rates(samples: &[Sample]) -> Vec<Rate> {
    samples
        .windows(2)
        .filter_map(|w| {
            let secs = (w[1].at_ms - w[0].at_ms) as f64 / 1000.0;
            (secs > 0.0).then(|| {
                let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
                Rate {
                    at_ms: w[1].at_ms,
                    records: per_s(w[0].records, w[1].records),
                    events: per_s(w[0].events, w[1].events),
                    dlq: per_s(w[0].dlq, w[1].dlq),
                    mb: per_s(w[0].record_bytes, w[1].record_bytes) / 1e6,
                }
            })
        })
        .collect()
}

/// Records per second of one shard over the last minute of samples.
fn shard_rate(samples: &[Sample], shard: &str) -> Option<f64> {
    let last = samples.last()?;
    let now = *last.per_shard.get(shard)?;
    let base = samples
        .iter()
        .find(|s| s.at_ms >= last.at_ms - 60_000 && s.per_shard.contains_key(shard))?;
    let secs = (last.at_ms - base.at_ms) as f64 / 1000.0;
    (secs > 0.0).then(|| now.saturating_sub(base.per_shard[shard]) as f64 / secs)
}

/// Every shard in the lease table, plus any this worker reads that the
/// table (unreadable, or not yet listing it) does not show.
fn shard_views(m: &Metrics, leases: &[Lease], samples: &[Sample], me: &str) -> Vec<ShardView> {
    let mut views: BTreeMap<String, ShardView> = leases
        .iter()
        .map(|l| {
            let view = ShardView {
                checkpoint: l.checkpoint.encode(),
                parents: l.parents.clone(),
                finished: l.finished(),
                ..ShardView::new(&l.shard_id, l.owner.clone())
            };
            (l.shard_id.clone(), view)
        })
        .collect();
    for s in m.shards() {
        let v = views
            .entry(s.shard_id.clone())
            .or_insert_with(|| ShardView::new(&s.shard_id, Some(me.to_string())));
        v.mine = true;
        v.millis_behind = Some(s.millis_behind());
        v.checkpoint_age_s = s.checkpoint().map(|(age, _)| age);
        v.records_per_s = shard_rate(samples, &s.shard_id);
    }
    views.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_lease::Checkpoint;

    fn sample(at_ms: i64, records: u64, shard: u64) -> Sample {
        Sample {
            at_ms,
            records,
            record_bytes: records * 1000,
            events: records,
            dlq: 0,
            per_shard: [("s-1".to_string(), shard)].into(),
        }
    }

    #[test]
    fn rates_are_per_second_between_samples() {
        let r = rates(&[sample(0, 0, 0), sample(5_000, 500, 500)]);
        assert_eq!(
            r,
            vec![Rate {
                at_ms: 5_000,
                records: 100.0,
                events: 100.0,
                dlq: 0.0,
                mb: 0.1
            }]
        );
        assert!(rates(&[sample(0, 0, 0)]).is_empty(), "one sample, no rate");
        assert!(rates(&[]).is_empty());
    }

    #[test]
    fn a_shard_rate_covers_the_last_minute_only() {
        let s: Vec<Sample> = (0..=24)
            .map(|i| sample(i * 5_000, 0, (i as u64) * if i > 12 { 50 } else { 10 }))
            .collect();
        // From 60 s (sample 12: 120) to 120 s (sample 24: 1200).
        assert_eq!(shard_rate(&s, "s-1"), Some(18.0));
        assert_eq!(shard_rate(&s, "s-2"), None);
    }

    #[test]
    fn shards_of_other_workers_show_their_owner_and_mine_show_lag() {
        let m = Metrics::default();
        m.shard("s-1").read(10, 2_500);
        let mut other = Lease::new("s-2", vec!["s-0".into()]);
        other.owner = Some("pod-b".into());
        other.checkpoint = Checkpoint::Sequence {
            sequence_number: "49".into(),
            sub_sequence: 0,
        };
        let leases = vec![Lease::new("s-1", vec![]), other];
        let st = status(&m, Ok(leases), "logs", "pod-a");
        assert_eq!(st.shards.len(), 2);
        assert!(st.shards[0].mine && st.shards[0].millis_behind == Some(2_500));
        assert_eq!(st.shards[1].owner.as_deref(), Some("pod-b"));
        assert_eq!(st.shards[1].checkpoint, "SEQ:49:0");
        assert_eq!(st.shards[1].millis_behind, None);
        let failed = status(
            &m,
            Err(LeaseError::Store {
                store: "t".into(),
                problem: "down".into(),
            }),
            "logs",
            "pod-a",
        );
        assert!(failed.lease_error.is_some_and(|e| e.contains("down")));
        assert_eq!(failed.shards.len(), 1, "this worker's shard is still shown");
    }

    #[test]
    fn recent_commits_are_newest_first_and_bounded() {
        let m = Metrics::default();
        for i in 0..(RECENT_COMMITS + 5) {
            let done = Committed {
                checkpoint: i.to_string(),
                sub_sequence: 0,
                files: vec![format!("f{i}.parquet")],
                bytes_written: 1,
                events: 1,
                dlq_events: 0,
            };
            m.committed("s-1", &done);
        }
        let st = status(&m, Ok(vec![]), "logs", "me");
        assert_eq!(st.recent_commits.len(), RECENT_COMMITS);
        assert_eq!(
            st.recent_commits[0].files,
            vec![format!("f{}.parquet", RECENT_COMMITS + 4)]
        );
    }
}
