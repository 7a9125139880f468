//! One ingestion worker: discovers shards, takes and renews leases (taking
//! expired ones, stealing to balance), and runs one reader task per leased
//! shard. Several workers share a stream through the lease store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pitwall_lake::{Location, ParquetOptions};
use pitwall_logs::Validator;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::balance::{Plan, plan};
use crate::kinesis::{Kinesis, KinesisError, StartPosition};
use crate::metrics::Metrics;
use crate::reader::{ReadEnd, read_shard};
use crate::shard_state::ShardState;
use crate::sink::RollPolicy;
use crate::stuck::Unread;
use pitwall_lease::{Lease, LeaseError, LeaseStore, LeaseTimings};

mod ending;

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
    /// Read by enhanced fan-out as this registered consumer, not by polling.
    pub consumer: Option<String>,
    /// Subscribe again after this long (the service ends a subscription
    /// after five minutes).
    pub efo_renew: Duration,
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
            consumer: None,
            efo_renew: Duration::from_secs(290),
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
    /// The enhanced fan-out consumer's ARN: set by the worker when it
    /// starts, from `WorkerConfig::consumer`.
    pub consumer_arn: Option<String>,
}

struct Held {
    counter: u64,
    state: Arc<ShardState>,
    task: JoinHandle<Result<ReadEnd, WorkerError>>,
    rate: Rate,
    /// The worker that asked for the lease: once the reader has stopped
    /// (committed and checkpointed), the lease is handed to it.
    hand_to: Option<String>,
}

/// A shard's read rate, smoothed over renewals (bytes per second).
struct Rate {
    bytes: u64,
    at: Instant,
    smoothed: Option<f64>,
}

impl Rate {
    /// Starts from what the lease last reported, so a shard taken over does
    /// not look idle while its new reader starts.
    fn new(reported: u64) -> Rate {
        Rate {
            bytes: 0,
            at: Instant::now(),
            smoothed: (reported > 0).then_some(reported as f64),
        }
    }

    /// Folds in the bytes read so far; returns the smoothed rate.
    fn sample(&mut self, bytes: u64, reading: bool) -> u64 {
        if let (false, Some(s)) = (reading, self.smoothed) {
            // The reader has not read yet (a stolen shard's reader waits
            // out the failover time): keep what was reported.
            self.at = Instant::now();
            return s as u64;
        }
        let secs = self.at.elapsed().as_secs_f64().max(0.001);
        let now = bytes.saturating_sub(self.bytes) as f64 / secs;
        (self.bytes, self.at) = (bytes, Instant::now());
        // Half the weight on the latest interval: a shard's load shows
        // within a few renewals, and one quiet interval does not erase it.
        let s = self.smoothed.map_or(now, |old| 0.5 * old + 0.5 * now);
        self.smoothed = Some(s);
        s as u64
    }
}

pub struct Worker {
    sh: Shared,
    held: BTreeMap<String, Held>,
    /// Readers whose lease was lost and that have not ended yet. Their shard
    /// is not taken again meanwhile: the lease table may still name this
    /// worker, and a second reader of the same shard in this process could
    /// overwrite the first one's files after it checkpointed past them.
    retiring: HashMap<String, Held>,
    /// Shards whose last reader may have left a PUT in flight, and until
    /// when it may still land: neither released nor taken again meanwhile.
    settling: HashMap<String, Instant>,
    /// Each lease's counter as last seen, when it last changed (our clock),
    /// and whether we saw it change at all (its owner proved alive).
    seen: HashMap<String, (u64, Instant, bool)>,
    /// Leases this worker asked to be handed over, and when.
    asked: HashMap<String, Instant>,
    /// Readable shards nobody reads, for the stuck-shard alert.
    unread: Unread,
    started: Instant,
}

impl Worker {
    pub fn new(sh: Shared) -> Worker {
        Worker {
            sh,
            held: BTreeMap::new(),
            retiring: HashMap::new(),
            settling: HashMap::new(),
            seen: HashMap::new(),
            asked: HashMap::new(),
            unread: Unread::default(),
            started: Instant::now(),
        }
    }

    /// Runs until `shutdown` resolves (or, with `stop_when_idle`, until the
    /// stream is drained), then commits, checkpoints and releases every lease.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        // Every line of the worker and of its shards' readers names it.
        let span = tracing::info_span!("worker", worker_id = %self.sh.cfg.worker_id);
        self.serve(shutdown).instrument(span).await
    }

    async fn serve(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        self.prepare().await?;
        if let Some(name) = self.sh.cfg.consumer.clone() {
            let arn = self.sh.kinesis.register_consumer(&name).await?;
            tracing::info!(consumer = %name, arn = %arn, "reading by enhanced fan-out");
            self.sh.consumer_arn = Some(arn);
        }
        // A missing stream is an error at once, not an empty worker; any
        // other trouble (a throttled lease table) is the loop's to retry.
        match self.discover().await {
            Err(WorkerError::Kinesis(e @ KinesisError::NoStream { .. })) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "listing shards failed; retrying");
                self.sh.metrics.bump_errors();
            }
            Ok(()) => {}
        }
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
                match self.drain().await {
                    Ok(true) => {
                        tracing::info!("every shard drained and idle: stopping");
                        break Ok(());
                    }
                    Ok(false) => tracing::warn!(
                        "a last commit before stopping did not complete: reading on until what it held is in the lake"
                    ),
                    Err(e) => break Err(e),
                }
            }
        };
        self.sh.metrics.stop_reading();
        self.shutdown().await;
        result
    }

    /// Makes sure the lease table exists, retrying a store that throttles
    /// or stalls for a while before giving up.
    async fn prepare(&self) -> Result<(), WorkerError> {
        let mut wait = Duration::from_millis(200);
        for attempt in 1.. {
            match self.sh.store.prepare().await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 8 => {
                    tracing::warn!(attempt, error = %e, "preparing the lease table failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn discover(&mut self) -> Result<(), WorkerError> {
        let shards = self.sh.kinesis.list_shards().await?;
        for s in shards {
            if s.closed
                && let Some(h) = self.held.get(&s.shard_id)
            {
                h.state.mark_closed();
            }
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
        let (me, store) = (self.sh.cfg.worker_id.as_str(), &self.sh.store);
        // All at once: one slow answer must not hold up the other leases'
        // renewals past their validity.
        let calls = self.held.iter_mut().map(|(shard, h)| {
            let throughput = h.rate.sample(h.state.bytes(), h.state.has_read());
            let seen = h.counter;
            async move {
                let sent = Instant::now();
                let answer = store.renew(shard, me, seen, throughput).await;
                (shard.clone(), sent, answer)
            }
        });
        let answers = futures::future::join_all(calls).await;
        let failover = self.sh.cfg.timings.failover;
        let (mut lost, mut failed) = (Vec::new(), None);
        for (shard, sent, answer) in answers {
            let Some(h) = self.held.get_mut(&shard) else {
                continue;
            };
            match answer {
                Ok(Some(c)) => {
                    h.counter = c;
                    h.state.renewed(sent, failover);
                }
                Ok(None) => lost.push(shard),
                Err(e) => {
                    h.state.renewal_failed(sent);
                    failed.get_or_insert(e);
                }
            }
        }
        for shard in lost {
            tracing::warn!(shard = %shard, "lease lost to another worker: reading stops, nothing uncommitted is written");
            if let Some(h) = self.held.remove(&shard) {
                h.state.lose();
                self.sh.metrics.forget(&shard);
                self.retiring.insert(shard, h);
            }
        }
        self.sh.metrics.set_leases(self.held.len());
        failed.map_or(Ok(()), |e| Err(e.into()))
    }

    async fn take(&mut self) -> Result<(), WorkerError> {
        let leases = self.sh.store.list().await?;
        let now = Instant::now();
        for l in &leases {
            let e = self
                .seen
                .entry(l.shard_id.clone())
                .or_insert((l.counter, now, false));
            if e.0 != l.counter {
                *e = (l.counter, now, true);
            }
        }
        let read: HashSet<String> = leases
            .iter()
            .filter(|l| self.held.contains_key(&l.shard_id) || self.renewed_lately(l))
            .map(|l| l.shard_id.clone())
            .collect();
        let oldest = self.unread.observe(&leases, &read, now);
        self.sh.metrics.set_unread(oldest);
        self.honour_handoffs(&leases);
        let failover = self.sh.cfg.timings.failover;
        let me = self.sh.cfg.worker_id.clone();
        let plan = self.plan(&leases);
        for l in plan.take {
            let stolen = plan.steal.as_deref() == Some(l.shard_id.as_str());
            let asked = self.asked.get(&l.shard_id).copied();
            if stolen && asked.is_none_or(|t| t.elapsed() < failover) {
                // Ask first: the owner commits, checkpoints and hands it over.
                if asked.is_none()
                    && self
                        .sh
                        .store
                        .request_handoff(&l.shard_id, &me, l.counter)
                        .await?
                {
                    tracing::info!(shard = %l.shard_id, from = ?l.owner, "asked for a lease to balance");
                }
                self.asked
                    .entry(l.shard_id.clone())
                    .or_insert_with(Instant::now);
                continue;
            }
            let sent = Instant::now();
            if let Some(counter) = self
                .sh
                .store
                .claim(&l.shard_id, &me, l.counter, true)
                .await?
            {
                // An owner that did not hand over within the failover time
                // (an older pitwall) may be about to commit: wait until its
                // own clock must have told it the lease is gone.
                if stolen {
                    tracing::info!(shard = %l.shard_id, from = ?l.owner, "stealing a lease its owner did not hand over");
                }
                let delay = if stolen { failover } else { Duration::ZERO };
                self.start_reader(&l, counter, delay, sent);
            }
        }
        self.sh.metrics.set_leases(self.held.len());
        Ok(())
    }

    /// Stops the reader of every held lease another worker asked for; once
    /// it has committed and checkpointed, [`reap`](Self::reap) hands the
    /// lease over, so the next owner starts where this one stopped, with
    /// nothing read twice. Not waited for here: the lease is renewed while
    /// the reader's last commit runs, as are the others.
    fn honour_handoffs(&mut self, leases: &[Lease]) {
        let me = self.sh.cfg.worker_id.as_str();
        for l in leases {
            let Some(to) = l.pending_owner.as_deref().filter(|p| *p != me) else {
                continue;
            };
            let Some(h) = self.held.get_mut(&l.shard_id) else {
                continue;
            };
            if h.hand_to.is_none() {
                tracing::info!(shard = %l.shard_id, to, "asked for the lease: its reader stops to hand it over");
                h.state.stop();
                h.hand_to = Some(to.to_string());
            }
        }
    }

    /// Gives the lease of a reader stopped for a hand-over to its asker.
    async fn hand_over(&self, shard: &str, to: &str) {
        let me = self.sh.cfg.worker_id.as_str();
        match self.sh.store.hand_over(shard, me, to).await {
            Ok(true) => tracing::info!(
                shard,
                to,
                "lease handed over to the worker that asked for it"
            ),
            // Lost meanwhile, or the request was withdrawn: let it go.
            Ok(false) => {
                let _ = self.sh.store.release(shard, me).await;
            }
            Err(e) => {
                tracing::warn!(shard, to, error = %e, "could not hand the lease over; it is read again from its checkpoint")
            }
        }
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
                    .is_some_and(|(_, t, _)| t.elapsed() >= failover)
        };
        let held = |shard: &str| {
            self.held.contains_key(shard)
                || self.retiring.contains_key(shard)
                || self.settling.contains_key(shard)
        };
        plan(leases, me, self.held.len(), &held, &expired)
    }

    /// Whether the owner of a lease held elsewhere has proved alive: we saw
    /// it renew within the failover time. A dead worker's lease looks held
    /// until then, and nobody else would read it if we stopped now.
    fn renewed_lately(&self, l: &Lease) -> bool {
        let failover = self.sh.cfg.timings.failover;
        self.seen
            .get(&l.shard_id)
            .is_some_and(|(_, t, changed)| *changed && t.elapsed() < failover)
    }

    fn start_reader(&mut self, l: &Lease, counter: u64, delay: Duration, claimed: Instant) {
        self.asked.remove(&l.shard_id);
        tracing::info!(shard = %l.shard_id, checkpoint = %l.checkpoint.encode(), "lease taken: reading");
        let state = self.sh.metrics.shard(&l.shard_id);
        state.renewed(claimed, self.sh.cfg.timings.failover);
        let (sh, shard, cp, st) = (
            self.sh.clone(),
            l.shard_id.clone(),
            l.checkpoint.clone(),
            state.clone(),
        );
        // The reader's every line names its shard, inside the worker's span.
        let span = tracing::info_span!("shard", shard_id = %shard);
        let task = tokio::spawn(
            async move {
                tokio::time::sleep(delay).await;
                read_shard(sh, shard, cp, st).await
            }
            .instrument(span),
        );
        self.held.insert(
            l.shard_id.clone(),
            Held {
                counter,
                state,
                task,
                rate: Rate::new(l.throughput),
                hand_to: None,
            },
        );
    }
}
