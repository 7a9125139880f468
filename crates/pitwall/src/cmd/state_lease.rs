//! `score run --state S --leases L`: a one-off run (a rescore, a model
//! change) holds the state's lease, the one `score watch` holds, for as
//! long as it runs. A running watcher is asked to hand it over between two
//! cycles and takes it back once the run lets it go; without the lease, a
//! run beside a watcher that commits every few seconds loses the commit
//! race again and again (found by bench/score_soak.py).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use pitwall_lease::LeaseTimings;
use pitwall_score_job::Fence;
use pitwall_score_watch::lease::Holder;

pub struct StateLease {
    rt: tokio::runtime::Runtime,
    holder: Arc<Holder>,
    done: Arc<AtomicBool>,
}

pub struct LeaseArgs<'a> {
    pub leases: &'a str,
    pub state: &'a str,
    pub owner: String,
    pub failover: Duration,
    pub wait: Duration,
}

impl StateLease {
    /// Takes the lease, asking a watcher that holds it to hand it over;
    /// renews it until dropped, then releases it.
    pub fn take(a: LeaseArgs) -> anyhow::Result<StateLease> {
        let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        // Named as `score watch` names it: by the state's URL.
        let url = pitwall_score_state::State::open(a.state)
            .with_context(|| format!("opening the state {}", a.state))?
            .url()
            .to_string();
        let store = rt.block_on(super::ingest_run::open_leases(a.leases))?;
        let holder = Arc::new(Holder::new(
            store,
            &format!("score-watch:{url}"),
            &a.owner,
            LeaseTimings::new(a.failover),
        ));
        let never = AtomicBool::new(false);
        let took = rt.block_on(async {
            tokio::time::timeout(a.wait, holder.acquire_asking(&never, true)).await
        });
        match took {
            Ok(taken) => {
                taken.with_context(|| format!("taking the lease {}", holder.name()))?;
            }
            Err(_) => anyhow::bail!(
                "waited {} for the state's lease {} in {}: the watcher holding it did not hand it \
                 over (a cycle stuck on its storage? see the watcher's status page). Nothing was \
                 run; try again, or give a longer --lease-wait",
                humantime::format_duration(a.wait),
                holder.name(),
                holder.store_name()
            ),
        }
        say!(
            "holding the state's lease {} as {} (a watcher waits until this run ends)",
            holder.name(),
            a.owner
        );
        let done = Arc::new(AtomicBool::new(false));
        rt.spawn({
            let (holder, done) = (holder.clone(), done.clone());
            async move { holder.keep(&done).await }
        });
        Ok(StateLease { rt, holder, done })
    }

    /// The commit's fence: the run commits only while the lease is provably held.
    pub fn fence(&self) -> Fence {
        let holder = self.holder.clone();
        Fence(Arc::new(move || holder.is_valid()))
    }
}

impl Drop for StateLease {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Err(e) = self.rt.block_on(self.holder.release()) {
            say_warn!(
                "could not release the lease {} ({e}); a watcher takes it after its failover time",
                self.holder.name()
            );
        }
    }
}
