//! How readers and the worker end: reaping reader tasks that ended (lease
//! released, handed over, or left to settle), the decision to stop when the
//! stream is drained, and the stop itself, which lets the last commits
//! land first.

use std::time::{Duration, Instant};

use tokio::task::JoinError;

use super::{Held, Worker, WorkerError};
use crate::kinesis::KinesisError;
use crate::reader::ReadEnd;

impl Worker {
    /// Collects reader tasks that ended: a shard read to its end, a reader
    /// stopped for a hand-over (its lease goes to the asker), or one that
    /// failed (its lease is released, or left to settle, so it is retried).
    /// Returns how many readers of held leases ended otherwise than at the
    /// shard's end or stopped with everything committed.
    pub(super) async fn reap(&mut self) -> Result<usize, WorkerError> {
        let now = Instant::now();
        self.settling.retain(|_, until| now < *until);
        for shard in ended(&self.retiring) {
            if let Some(h) = self.retiring.remove(&shard) {
                let unsettled = h.state.unsettled();
                self.retired(&shard, h.task.await);
                if unsettled {
                    self.settle(&shard);
                }
            }
        }
        let mut unfinished = 0;
        for shard in ended(&self.held) {
            let Some(h) = self.held.remove(&shard) else {
                continue;
            };
            let finished = match h.task.await {
                Ok(Ok(end)) => {
                    tracing::info!(shard = %shard, ?end, hand_to = ?h.hand_to, "reader ended");
                    end != ReadEnd::Lost
                }
                Ok(Err(WorkerError::Kinesis(e @ KinesisError::NoStream { .. }))) => {
                    return Err(e.into());
                }
                Ok(Err(e)) => {
                    tracing::error!(shard = %shard, error = %e, "reader failed; the shard is read again from its checkpoint");
                    self.sh.metrics.bump_errors();
                    false
                }
                Err(e) => {
                    tracing::error!(shard = %shard, error = %e, "reader panicked; the shard is read again from its checkpoint");
                    self.sh.metrics.bump_errors();
                    false
                }
            };
            unfinished += usize::from(!finished);
            self.sh.metrics.forget(&shard);
            if h.state.unsettled() {
                // An asker steals it once the failover time has passed.
                self.settle(&shard);
            } else if let Some(to) = &h.hand_to {
                self.hand_over(&shard, to).await;
            } else {
                let _ = self.sh.store.release(&shard, &self.sh.cfg.worker_id).await;
            }
        }
        self.sh.metrics.set_leases(self.held.len());
        Ok(unfinished)
    }

    /// Keeps a shard whose last reader may have left a PUT in flight out of
    /// reach until it must have landed or died: a lease released now could
    /// be taken at once, and the next reader's file replaced by that older
    /// one of the same name. Not released, another worker takes it once
    /// the failover time has passed since our last renewal, as a dead
    /// worker's; we wait the failover time from now.
    fn settle(&mut self, shard: &str) {
        let wait = self.sh.cfg.timings.failover;
        tracing::warn!(
            shard,
            ?wait,
            "a write of the shard's last reader may still land: its lease is left to expire, not released, and not taken here again before then"
        );
        self.settling
            .insert(shard.to_string(), Instant::now() + wait);
    }

    /// The end of the reader of a lost lease: its shard may be taken again.
    /// A failure after the loss wrote nothing uncommitted (the commit is
    /// conditional on the lease), but it is said, with what failed.
    fn retired(&self, shard: &str, end: Result<Result<ReadEnd, WorkerError>, JoinError>) {
        match end {
            Ok(Ok(end)) => tracing::info!(
                shard = %shard,
                ?end,
                "the reader of a lost lease has ended; the shard may be taken again"
            ),
            Ok(Err(e)) => tracing::warn!(
                shard = %shard,
                error = %e,
                "the reader of a lost lease failed after the loss; nothing uncommitted was written, the shard may be taken again"
            ),
            Err(e) => {
                tracing::error!(shard = %shard, error = %e, "the reader of a lost lease panicked; the shard may be taken again");
                self.sh.metrics.bump_errors();
            }
        }
    }

    /// Idle, for one worker of a group: every shard it holds quiet for the
    /// idle time, none settling, every other unfinished lease held by a
    /// worker seen renewing it, and nothing it would take (no lease free,
    /// expired or worth stealing). Then it stops and releases its leases;
    /// a peer still running finds them free, reads them to the same quiet
    /// and stops in turn, so the whole group ends.
    pub(super) async fn idle_enough(&self) -> bool {
        let Some(quiet) = self.sh.cfg.stop_when_idle else {
            return false;
        };
        // A settling shard is still ours to read once it has settled.
        if self.started.elapsed() < quiet
            || !self.settling.is_empty()
            || !self.held.values().all(|h| h.state.idle_for(quiet))
        {
            return false;
        }
        let Ok(leases) = self.sh.store.list().await else {
            return false;
        };
        let others_alive = leases
            .iter()
            .filter(|l| !l.finished() && !self.held.contains_key(&l.shard_id))
            .all(|l| self.renewed_lately(l));
        others_alive && self.plan(&leases).take.is_empty()
    }

    /// The stop of a worker that found the stream drained: every reader
    /// commits and checkpoints what it holds (a tail too small to have
    /// rolled) and its lease is released. True when every one of them did.
    /// Otherwise the worker reads on: a peer that saw this worker renewing
    /// may have stopped already, and nobody else would read that tail.
    pub(super) async fn drain(&mut self) -> Result<bool, WorkerError> {
        let readers = self.held.len();
        self.stop_readers().await;
        // A lease lost meanwhile (a renewal retried after its first try
        // landed looks the same) took its reader's tail with it.
        let lost = readers - self.held.len();
        Ok(self.reap().await? == 0 && lost == 0)
    }

    /// Asks every reader to commit and checkpoint, and waits for them.
    async fn stop_readers(&mut self) {
        for h in self.held.values() {
            h.state.stop();
        }
        // Renewed while the last commits run: a slow one must not outlive
        // its lease and be abandoned.
        let mut renew = tokio::time::interval(self.sh.cfg.timings.renew_every);
        while self.held.values().any(|h| !h.task.is_finished()) {
            tokio::select! {
                _ = renew.tick() => if let Err(e) = self.renew().await {
                    tracing::warn!(error = %e, "renewing leases while stopping failed");
                },
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Asks every reader to commit and checkpoint, waits, releases the leases.
    pub(super) async fn shutdown(&mut self) {
        self.stop_readers().await;
        let held = std::mem::take(&mut self.held);
        for (shard, h) in held {
            let state = h.state.clone();
            stopped(&shard, h).await;
            if state.unsettled() {
                tracing::warn!(shard = %shard, "a write of the last commit may still land: the lease is left to expire after the failover time, not released");
            } else if let Err(e) = self.sh.store.release(&shard, &self.sh.cfg.worker_id).await {
                tracing::warn!(shard = %shard, error = %e, "could not release the lease; it expires after the failover time");
            }
            self.sh.metrics.forget(&shard);
        }
        self.sh.metrics.set_leases(0);
    }
}

/// The shards whose reader task has ended, of `readers` (held or retiring).
fn ended<'a>(readers: impl IntoIterator<Item = (&'a String, &'a Held)>) -> Vec<String> {
    readers
        .into_iter()
        .filter(|(_, h)| h.task.is_finished())
        .map(|(s, _)| s.clone())
        .collect()
}

/// Waits for a reader told to stop (its last commit and checkpoint) and
/// says how it ended.
async fn stopped(shard: &str, h: Held) {
    match h.task.await {
        Ok(Ok(end)) => tracing::info!(shard, ?end, "reader stopped"),
        Ok(Err(e)) => tracing::error!(shard, error = %e, "reader failed while stopping"),
        Err(e) => tracing::error!(shard, error = %e, "reader panicked while stopping"),
    }
}
