//! One ingestion worker: discovers shards, takes and renews leases (taking
//! expired ones, stealing to balance), and runs one reader task per leased
//! shard. Several workers share a stream through the lease store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitwall_lake::{Location, ParquetOptions};
use pitwall_logs::Validator;
use tokio::task::JoinHandle;

use crate::kinesis::{Kinesis, KinesisError, StartPosition};
use crate::metrics::{Metrics, ShardState};
use crate::reader::{ReadEnd, read_shard};
use crate::sink::RollPolicy;
use pitwall_lease::{Lease, LeaseError, LeaseStore, LeaseTimings};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker_id: String,
    pub start: StartPosition,
    pub timings: LeaseTimings,
    pub roll: RollPolicy,
    pub parquet: ParquetOptions,
    /// How often ListShards looks for new shards (reshards).
    pub discover_every: Duration,
    /// Wait after a GetRecords that returned nothing.
    pub idle_poll: Duration,
    /// Records per GetRecords call (the service allows up to 10,000).
    pub max_records: i32,
    /// Exit once every shard is drained and nothing arrived for this long.
    pub stop_when_idle: Option<Duration>,
    /// Event bytes all shards' buffers may hold together before the
    /// largest commits early.
    pub max_buffered: usize,
}

impl WorkerConfig {
    pub fn new(worker_id: &str) -> WorkerConfig {
        WorkerConfig {
            worker_id: worker_id.to_string(),
            start: StartPosition::TrimHorizon,
            timings: LeaseTimings::default(),
            roll: RollPolicy::default(),
            parquet: ParquetOptions::default(),
            discover_every: Duration::from_secs(10),
            idle_poll: Duration::from_secs(1),
            max_records: 10_000,
            stop_when_idle: None,
            max_buffered: 512 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Kinesis(#[from] KinesisError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("{0}")]
    Reader(String),
}

/// What the reader tasks share with the worker.
#[derive(Clone)]
pub struct Shared {
    pub cfg: Arc<WorkerConfig>,
    pub kinesis: Kinesis,
    pub store: Arc<dyn LeaseStore>,
    pub lake: Location,
    pub validator: &'static Validator<'static>,
    pub metrics: Arc<Metrics>,
}

struct Held {
    counter: u64,
    state: Arc<ShardState>,
    task: JoinHandle<Result<ReadEnd, WorkerError>>,
}

pub struct Worker {
    sh: Shared,
    held: BTreeMap<String, Held>,
    /// Each lease's counter as last seen, and when it last changed (our clock).
    seen: HashMap<String, (u64, Instant)>,
    started: Instant,
}

impl Worker {
    pub fn new(sh: Shared) -> Worker {
        Worker {
            sh,
            held: BTreeMap::new(),
            seen: HashMap::new(),
            started: Instant::now(),
        }
    }

    /// Runs until `shutdown` resolves (or, with `stop_when_idle`, until the
    /// stream is drained), then commits, checkpoints and releases every lease.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        self.sh.store.prepare().await?;
        // A missing stream is an error at once, not an empty worker.
        self.discover().await?;
        let t = &self.sh.cfg.timings;
        let mut discover = tokio::time::interval(self.sh.cfg.discover_every);
        let mut renew = tokio::time::interval(t.renew_every);
        let mut take = tokio::time::interval(t.take_every);
        let mut check = tokio::time::interval(Duration::from_millis(250));
        tokio::pin!(shutdown);
        let result = loop {
            let step = tokio::select! {
                _ = &mut shutdown => break Ok(()),
                _ = discover.tick() => self.discover().await,
                _ = renew.tick() => self.renew().await,
                _ = take.tick() => self.take().await,
                _ = check.tick() => Ok(()),
            };
            if let Err(e) = step {
                // Store or stream trouble: keep the leases we hold until
                // they can no longer be renewed, and say so.
                tracing::warn!(error = %e, "lease or shard bookkeeping failed; retrying");
                self.sh.metrics.bump_errors();
            }
            if let Err(e) = self.reap().await {
                break Err(e);
            }
            if self.idle_enough().await {
                tracing::info!("every shard drained and idle: stopping");
                break Ok(());
            }
        };
        self.shutdown().await;
        result
    }

    async fn discover(&mut self) -> Result<(), WorkerError> {
        let shards = self.sh.kinesis.list_shards().await?;
        for s in shards {
            if self
                .sh
                .store
                .create(&Lease::new(&s.shard_id, s.parents))
                .await?
            {
                tracing::info!(shard = %s.shard_id, "new shard: lease created");
            }
        }
        Ok(())
    }

    async fn renew(&mut self) -> Result<(), WorkerError> {
        let me = self.sh.cfg.worker_id.clone();
        let mut lost = Vec::new();
        for (shard, h) in &mut self.held {
            match self.sh.store.claim(shard, &me, h.counter, false).await? {
                Some(c) => {
                    h.counter = c;
                    h.state.renewed(self.sh.cfg.timings.failover);
                }
                None => lost.push(shard.clone()),
            }
        }
        for shard in lost {
            tracing::warn!(shard = %shard, "lease lost to another worker: reading stops, nothing uncommitted is written");
            if let Some(h) = self.held.remove(&shard) {
                h.state.lose();
                self.sh.metrics.forget(&shard);
            }
        }
        self.sh.metrics.set_leases(self.held.len());
        Ok(())
    }

    async fn take(&mut self) -> Result<(), WorkerError> {
        let leases = self.sh.store.list().await?;
        let now = Instant::now();
        for l in &leases {
            let e = self
                .seen
                .entry(l.shard_id.clone())
                .or_insert((l.counter, now));
            if e.0 != l.counter {
                *e = (l.counter, now);
            }
        }
        let failover = self.sh.cfg.timings.failover;
        let me = self.sh.cfg.worker_id.clone();
        let plan = self.plan(&leases);
        for l in plan.take {
            if let Some(counter) = self
                .sh
                .store
                .claim(&l.shard_id, &me, l.counter, true)
                .await?
            {
                // The victim of a steal is alive and may be about to commit:
                // wait until its own clock must have told it the lease is gone.
                let stolen = plan.steal.as_deref() == Some(l.shard_id.as_str());
                if stolen {
                    tracing::info!(shard = %l.shard_id, from = ?l.owner, "stealing a lease to balance");
                }
                let delay = if stolen { failover } else { Duration::ZERO };
                self.start_reader(&l, counter, delay);
            }
        }
        self.sh.metrics.set_leases(self.held.len());
        Ok(())
    }

    /// What this worker would take now, by the lease table as listed.
    fn plan(&self, leases: &[Lease]) -> Plan {
        let failover = self.sh.cfg.timings.failover;
        let me = self.sh.cfg.worker_id.as_str();
        // Unowned, not renewed for the failover time, or ours from before a
        // restart (same worker id, not held by this process).
        let expired = |l: &Lease| {
            l.owner.is_none()
                || (l.owner.as_deref() == Some(me) && !self.held.contains_key(&l.shard_id))
                || self
                    .seen
                    .get(&l.shard_id)
                    .is_some_and(|(_, t)| t.elapsed() >= failover)
        };
        let held = |shard: &str| self.held.contains_key(shard);
        plan(leases, me, self.held.len(), &held, &expired)
    }

    fn start_reader(&mut self, l: &Lease, counter: u64, delay: Duration) {
        tracing::info!(shard = %l.shard_id, checkpoint = %l.checkpoint.encode(), "lease taken: reading");
        let state = self.sh.metrics.shard(&l.shard_id);
        state.renewed(self.sh.cfg.timings.failover);
        let (sh, shard, cp, st) = (
            self.sh.clone(),
            l.shard_id.clone(),
            l.checkpoint.clone(),
            state.clone(),
        );
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            read_shard(sh, shard, cp, st).await
        });
        self.held.insert(
            l.shard_id.clone(),
            Held {
                counter,
                state,
                task,
            },
        );
    }

    /// Collects reader tasks that ended: a shard read to its end, or a
    /// reader that failed (its lease is released so it is retried).
    async fn reap(&mut self) -> Result<(), WorkerError> {
        let done: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.task.is_finished())
            .map(|(s, _)| s.clone())
            .collect();
        for shard in done {
            let Some(h) = self.held.remove(&shard) else {
                continue;
            };
            match h.task.await {
                Ok(Ok(end)) => tracing::info!(shard = %shard, ?end, "reader ended"),
                Ok(Err(WorkerError::Kinesis(e @ KinesisError::NoStream { .. }))) => {
                    return Err(e.into());
                }
                Ok(Err(e)) => {
                    tracing::error!(shard = %shard, error = %e, "reader failed; releasing the lease to retry from the checkpoint");
                    self.sh.metrics.bump_errors();
                }
                Err(e) => {
                    tracing::error!(shard = %shard, error = %e, "reader panicked; releasing the lease");
                    self.sh.metrics.bump_errors();
                }
            }
            let _ = self.sh.store.release(&shard, &self.sh.cfg.worker_id).await;
            self.sh.metrics.forget(&shard);
        }
        self.sh.metrics.set_leases(self.held.len());
        Ok(())
    }

    /// Idle, for one worker of a group: every shard it holds quiet for the
    /// idle time, and nothing it would take (no lease free, expired or worth
    /// stealing). Then it stops and releases its leases; a peer still
    /// running finds them free, reads them to the same quiet and stops in
    /// turn, so the whole group ends.
    async fn idle_enough(&self) -> bool {
        let Some(quiet) = self.sh.cfg.stop_when_idle else {
            return false;
        };
        if self.started.elapsed() < quiet || !self.held.values().all(|h| h.state.idle_for(quiet)) {
            return false;
        }
        match self.sh.store.list().await {
            Ok(leases) => self.plan(&leases).take.is_empty(),
            Err(_) => false,
        }
    }

    /// Asks every reader to commit and checkpoint, waits, releases the leases.
    async fn shutdown(&mut self) {
        for h in self.held.values() {
            h.state.stop();
        }
        let held = std::mem::take(&mut self.held);
        for (shard, h) in held {
            match h.task.await {
                Ok(Ok(end)) => tracing::info!(shard = %shard, ?end, "reader stopped"),
                Ok(Err(e)) => {
                    tracing::error!(shard = %shard, error = %e, "reader failed while stopping")
                }
                Err(e) => {
                    tracing::error!(shard = %shard, error = %e, "reader panicked while stopping")
                }
            }
            if let Err(e) = self.sh.store.release(&shard, &self.sh.cfg.worker_id).await {
                tracing::warn!(shard = %shard, error = %e, "could not release the lease; it expires after the failover time");
            }
            self.sh.metrics.forget(&shard);
        }
        self.sh.metrics.set_leases(0);
    }
}

/// What one round of taking leases decides.
#[derive(Debug, PartialEq)]
struct Plan {
    take: Vec<Lease>,
    /// The one lease taken from a busier worker, if any.
    steal: Option<String>,
}

/// The KCL's balancing, without I/O: aim for an even share of the leases
/// whose parents are done; take expired ones first, and only when none is
/// free steal one from the busiest worker holding more than its share.
fn plan(
    leases: &[Lease],
    me: &str,
    held_count: usize,
    held: &dyn Fn(&str) -> bool,
    expired: &dyn Fn(&Lease) -> bool,
) -> Plan {
    let by_id: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    let parents_done = |l: &Lease| {
        l.parents
            .iter()
            .all(|p| by_id.get(p.as_str()).is_none_or(|pl| pl.finished()))
    };
    let active: Vec<&Lease> = leases.iter().filter(|l| !l.finished()).collect();
    let mut load: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
    for l in &active {
        if let Some(o) = l.owner.as_deref()
            && !expired(l)
        {
            load.entry(o).or_default().push(l);
        }
    }
    let workers = load
        .keys()
        .copied()
        .chain([me])
        .collect::<BTreeSet<_>>()
        .len();
    let takeable = active.iter().filter(|l| parents_done(l)).count();
    let target = takeable.div_ceil(workers.max(1));
    let want = target.saturating_sub(held_count);
    let take: Vec<Lease> = active
        .iter()
        .filter(|l| !held(&l.shard_id) && expired(l) && parents_done(l))
        .take(want)
        .map(|l| (*l).clone())
        .collect();
    if want == 0 || !take.is_empty() {
        return Plan { take, steal: None };
    }
    let busiest = load
        .iter()
        .filter(|(o, _)| **o != me)
        .max_by_key(|(_, v)| v.len());
    match busiest {
        Some((_, theirs)) if theirs.len() > target => {
            match theirs.iter().find(|l| parents_done(l)) {
                Some(l) => Plan {
                    take: vec![(*l).clone()],
                    steal: Some(l.shard_id.clone()),
                },
                None => Plan { take, steal: None },
            }
        }
        _ => Plan { take, steal: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_lease::Checkpoint;

    fn lease(id: &str, owner: Option<&str>, parents: &[&str]) -> Lease {
        let mut l = Lease::new(id, parents.iter().map(|p| p.to_string()).collect());
        l.owner = owner.map(String::from);
        l
    }

    fn ids(p: &Plan) -> Vec<&str> {
        p.take.iter().map(|l| l.shard_id.as_str()).collect()
    }

    /// Unowned leases are expired; owned ones are alive.
    fn unowned(l: &Lease) -> bool {
        l.owner.is_none()
    }

    #[test]
    fn a_new_worker_takes_its_share_of_free_leases() {
        let leases: Vec<Lease> = (0..4)
            .map(|i| lease(&format!("s-{i}"), None, &[]))
            .collect();
        let p = plan(&leases, "a", 0, &|_| false, &unowned);
        assert_eq!(ids(&p), ["s-0", "s-1", "s-2", "s-3"], "alone, it takes all");
        let mut shared = leases.clone();
        shared[0].owner = Some("b".into());
        let p = plan(&shared, "a", 0, &|_| false, &unowned);
        assert_eq!(ids(&p), ["s-1", "s-2"], "two workers: two each");
        assert_eq!(p.steal, None);
    }

    #[test]
    fn children_wait_for_every_parent_to_finish() {
        let mut parent = lease("p", Some("b"), &[]);
        let child = lease("c", None, &["p"]);
        let p = plan(
            &[parent.clone(), child.clone()],
            "a",
            0,
            &|_| false,
            &unowned,
        );
        assert!(p.take.is_empty(), "{p:?}");
        parent.checkpoint = Checkpoint::ShardEnd;
        let p = plan(&[parent, child], "a", 0, &|_| false, &unowned);
        assert_eq!(ids(&p), ["c"]);
    }

    #[test]
    fn one_lease_is_stolen_from_a_worker_above_its_share() {
        let leases: Vec<Lease> = (0..4)
            .map(|i| lease(&format!("s-{i}"), Some("b"), &[]))
            .collect();
        let p = plan(&leases, "a", 0, &|_| false, &unowned);
        assert_eq!(ids(&p), ["s-0"]);
        assert_eq!(p.steal.as_deref(), Some("s-0"));
        let even = [lease("s-0", Some("b"), &[]), lease("s-1", Some("a"), &[])];
        let p = plan(&even, "a", 1, &|s| s == "s-1", &unowned);
        assert_eq!(
            p,
            Plan {
                take: vec![],
                steal: None
            },
            "balanced: nothing to do"
        );
    }

    #[test]
    fn finished_and_held_leases_are_not_taken() {
        let mut done = lease("s-0", None, &[]);
        done.checkpoint = Checkpoint::ShardEnd;
        let mine = lease("s-1", Some("a"), &[]);
        let p = plan(&[done, mine], "a", 1, &|s| s == "s-1", &|l| {
            l.owner.is_none() || l.shard_id == "s-1"
        });
        assert!(p.take.is_empty(), "{p:?}");
    }

    /// The group-idle rule: a worker has nothing to take when each peer
    /// holds its share; one peer stopping frees leases the others take.
    #[test]
    fn three_workers_at_their_shares_have_nothing_to_take_until_one_stops() {
        let owners = ["a", "a", "b", "b", "c", "c"];
        let leases: Vec<Lease> = owners
            .iter()
            .enumerate()
            .map(|(i, o)| lease(&format!("s-{i}"), Some(o), &[]))
            .collect();
        for me in ["a", "b", "c"] {
            let mine = |s: &str| {
                leases
                    .iter()
                    .any(|l| l.shard_id == s && l.owner.as_deref() == Some(me))
            };
            let p = plan(&leases, me, 2, &mine, &unowned);
            assert!(p.take.is_empty(), "{me}: {p:?}");
        }
        // a stops and releases its two: b and c each have one to take.
        let mut after = leases.clone();
        for l in after.iter_mut().take(2) {
            l.owner = None;
        }
        for me in ["b", "c"] {
            let mine = |s: &str| {
                after
                    .iter()
                    .any(|l| l.shard_id == s && l.owner.as_deref() == Some(me))
            };
            let p = plan(&after, me, 2, &mine, &unowned);
            assert_eq!(p.take.len(), 1, "{me}: {p:?}");
        }
    }
}
