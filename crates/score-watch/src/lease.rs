//! The one lease of a watched state: taken the way ingestion takes a
//! shard's (unowned, expired by the observer's clock, or its own from before
//! a restart), renewed every failover/3, and trusted only while provably
//! held: the last successful renewal plus 80 % of the failover time, by this
//! process's own monotonic clock. A watcher commits and publishes only then.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pitwall_lease::{Lease, LeaseError, LeaseStore, LeaseTimings};

/// A lease named after what it guards, held by `owner`.
pub struct Holder {
    store: Arc<dyn LeaseStore>,
    name: String,
    owner: String,
    timings: LeaseTimings,
    epoch: Instant,
    /// Counter of our last successful claim.
    counter: AtomicU64,
    /// Until when (ms since `epoch`) the lease is provably ours; 0: not held.
    valid_until_ms: AtomicU64,
    lost: AtomicBool,
}

impl Holder {
    pub fn new(
        store: Arc<dyn LeaseStore>,
        name: &str,
        owner: &str,
        timings: LeaseTimings,
    ) -> Holder {
        Holder {
            store,
            name: name.to_string(),
            owner: owner.to_string(),
            timings,
            epoch: Instant::now(),
            counter: AtomicU64::new(0),
            valid_until_ms: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn store_name(&self) -> String {
        self.store.name()
    }

    /// Whether the lease is provably ours now.
    pub fn is_valid(&self) -> bool {
        self.now_ms() < self.valid_until_ms.load(Ordering::SeqCst)
    }

    /// Whether a renewal found another owner since the lease was taken.
    pub fn was_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn claimed(&self, at: Instant, counter: u64) {
        self.counter.store(counter, Ordering::SeqCst);
        let valid = self.timings.failover.mul_f64(0.8);
        let until = (at + valid)
            .saturating_duration_since(self.epoch)
            .as_millis() as u64;
        self.valid_until_ms.store(until, Ordering::SeqCst);
    }

    /// Waits until the lease is ours, or `stop` is set (false). Another
    /// holder's lease is taken only once its counter has not moved for the
    /// failover time, as this watcher saw it.
    pub async fn acquire(&self, stop: &AtomicBool) -> Result<bool, LeaseError> {
        self.acquire_asking(stop, false).await
    }

    /// [`acquire`](Self::acquire), and when `ask`, asks a live holder to
    /// hand the lease over (a one-off `score run --state --leases`): the
    /// watcher hands it over between two cycles and waits to take it back.
    pub async fn acquire_asking(&self, stop: &AtomicBool, ask: bool) -> Result<bool, LeaseError> {
        self.store.prepare().await?;
        self.store
            .create(&Lease::new(&self.name, Vec::new()))
            .await?;
        let mut seen: Option<(u64, Instant)> = None;
        let mut waiting_logged = false;
        while !stop.load(Ordering::SeqCst) {
            let lease = self
                .store
                .list()
                .await?
                .into_iter()
                .find(|l| l.shard_id == self.name);
            let Some(lease) = lease else {
                self.store
                    .create(&Lease::new(&self.name, Vec::new()))
                    .await?;
                continue;
            };
            let stale = match seen {
                Some((c, since)) if c == lease.counter => since.elapsed() >= self.timings.failover,
                _ => {
                    seen = Some((lease.counter, Instant::now()));
                    false
                }
            };
            let mine = lease.owner.as_deref() == Some(self.owner.as_str());
            if lease.owner.is_none() || mine || stale {
                let at = Instant::now();
                let take = !mine;
                if let Some(c) = self
                    .store
                    .claim(&self.name, &self.owner, lease.counter, take)
                    .await?
                {
                    self.claimed(at, c);
                    self.lost.store(false, Ordering::SeqCst);
                    tracing::info!(lease = %self.name, owner = %self.owner, "lease taken");
                    return Ok(true);
                }
                seen = None;
                continue;
            }
            if ask && lease.pending_owner.as_deref() != Some(self.owner.as_str()) {
                self.store
                    .request_handoff(&self.name, &self.owner, lease.counter)
                    .await?;
            }
            if !waiting_logged {
                tracing::info!(
                    lease = %self.name,
                    holder = lease.owner.as_deref().unwrap_or("-"),
                    "{}",
                    if ask {
                        "a watcher holds the state's lease; asked it to hand the lease over after its cycle"
                    } else {
                        "another watcher holds the state's lease; waiting for it to expire or be released"
                    }
                );
                waiting_logged = true;
            }
            tokio::time::sleep(self.timings.take_every.min(Duration::from_secs(1))).await;
        }
        Ok(false)
    }

    /// One renewal; false (and the lease is no longer trusted) when someone
    /// else wrote first.
    pub async fn renew(&self) -> Result<bool, LeaseError> {
        let at = Instant::now();
        let seen = self.counter.load(Ordering::SeqCst);
        match self
            .store
            .claim(&self.name, &self.owner, seen, false)
            .await?
        {
            Some(c) => {
                self.claimed(at, c);
                Ok(true)
            }
            None => {
                self.valid_until_ms.store(0, Ordering::SeqCst);
                self.lost.store(true, Ordering::SeqCst);
                tracing::error!(lease = %self.name, "the state's lease was taken by another watcher");
                Ok(false)
            }
        }
    }

    /// Renews every failover/3 until `done`; a failed renewal call is logged
    /// and retried (the lease stays trusted only until its validity ends).
    pub async fn keep(&self, done: &AtomicBool) {
        while !done.load(Ordering::SeqCst) && !self.was_lost() {
            tokio::time::sleep(self.timings.renew_every).await;
            if let Err(e) = self.renew().await {
                tracing::warn!(lease = %self.name, error = %e, "renewing the lease failed; retrying");
            }
        }
    }

    /// Who asked for the lease held here, if anyone did.
    pub async fn handoff_requested(&self) -> Result<Option<String>, LeaseError> {
        Ok(self
            .store
            .list()
            .await?
            .into_iter()
            .find(|l| l.shard_id == self.name && l.owner.as_deref() == Some(self.owner.as_str()))
            .and_then(|l| l.pending_owner)
            .filter(|to| *to != self.owner))
    }

    /// Gives the lease to `to`, who asked for it; this holder is no longer
    /// valid whatever the answer.
    pub async fn hand_over(&self, to: &str) -> Result<bool, LeaseError> {
        self.valid_until_ms.store(0, Ordering::SeqCst);
        self.store.hand_over(&self.name, &self.owner, to).await
    }

    /// Gives the lease up, so a standby takes it at once.
    pub async fn release(&self) -> Result<bool, LeaseError> {
        self.valid_until_ms.store(0, Ordering::SeqCst);
        self.store.release(&self.name, &self.owner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_lease::sqlite::SqliteLeases;

    fn holder(db: &std::path::Path, owner: &str, failover_ms: u64) -> Holder {
        let store = Arc::new(SqliteLeases::open(db).expect("sqlite"));
        Holder::new(
            store,
            "score-watch:/s",
            owner,
            LeaseTimings::new(Duration::from_millis(failover_ms)),
        )
    }

    #[tokio::test]
    async fn a_second_watcher_waits_and_takes_over_only_once_the_first_stops_renewing() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("leases.db");
        let (a, b) = (holder(&db, "a", 600), holder(&db, "b", 600));
        let stop = AtomicBool::new(false);
        assert!(a.acquire(&stop).await.expect("a"));
        assert!(a.is_valid());
        // b waits while a renews.
        let b_took = tokio::select! {
            took = b.acquire(&stop) => took.expect("b"),
            _ = async { for _ in 0..8 { tokio::time::sleep(Duration::from_millis(150)).await; a.renew().await.expect("renew"); } } => false,
        };
        assert!(!b_took && a.is_valid(), "b took a lease a kept renewing");
        // a stops renewing: its lease expires by a's own clock, then b takes it.
        assert!(b.acquire(&stop).await.expect("b"));
        assert!(!a.is_valid(), "a's validity ended before b could take it");
        assert!(!a.renew().await.expect("renew"), "a finds it lost");
        assert!(a.was_lost() && b.is_valid());
    }

    #[tokio::test]
    async fn a_holder_asked_for_the_lease_hands_it_over_and_takes_it_back_once_released() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("leases.db");
        let (watcher, one_off) = (holder(&db, "w", 60_000), holder(&db, "run", 60_000));
        let stop = AtomicBool::new(false);
        assert!(watcher.acquire(&stop).await.expect("w"));
        assert_eq!(watcher.handoff_requested().await.expect("ask"), None);
        // The one-off asks, then waits; the watcher sees it between cycles.
        let asked = async {
            while watcher.handoff_requested().await.expect("ask").is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(watcher.hand_over("run").await.expect("hand over"));
        };
        let (took, ()) = tokio::join!(one_off.acquire_asking(&stop, true), asked);
        assert!(took.expect("run") && one_off.is_valid());
        assert!(!watcher.is_valid(), "the watcher stops trusting it at once");
        assert!(
            !watcher.renew().await.expect("renew"),
            "nor can it renew it"
        );
        // Long before the failover time, the watcher takes it back.
        assert!(one_off.release().await.expect("release"));
        let t = Instant::now();
        assert!(watcher.acquire(&stop).await.expect("w"));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("leases.db");
        let (a, b) = (holder(&db, "a", 60_000), holder(&db, "b", 60_000));
        let stop = AtomicBool::new(false);
        assert!(a.acquire(&stop).await.expect("a"));
        assert!(a.release().await.expect("release"));
        let t = Instant::now();
        assert!(b.acquire(&stop).await.expect("b"));
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no failover wait after a release"
        );
    }
}
