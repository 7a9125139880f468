//! Where a reader's records come from: GetRecords polling (an iterator the
//! reader advances) or an enhanced fan-out subscription (records pushed,
//! renewed before the service's five minutes are up).

use std::time::{Duration, Instant};

use crate::efo::Subscription;
use crate::kinesis::{Batch, From, KinesisError};
use crate::worker::Shared;

/// Kinesis allows five GetRecords calls per second per shard.
pub(crate) const MIN_CALL_GAP: Duration = Duration::from_millis(200);

/// How often a closed shard's subscription, silent at the tip, is checked
/// for the shard's end with one GetRecords (see [`Source::next`]).
const END_PROBE_EVERY: Duration = Duration::from_secs(1);

pub(crate) enum Source {
    Poll(String),
    Push {
        consumer_arn: String,
        // Boxed: a subscription's receiver is large, and a poller is most readers.
        sub: Option<Box<Subscription>>,
        probed: Instant,
    },
}

impl Source {
    pub(crate) async fn open(
        sh: &Shared,
        shard: &str,
        from: &From,
    ) -> Result<Source, KinesisError> {
        Ok(match &sh.consumer_arn {
            None => Source::Poll(sh.kinesis.iterator(shard, from).await?),
            // Subscribed at the first `next`, from where reading resumes.
            Some(arn) => Source::Push {
                consumer_arn: arn.clone(),
                sub: None,
                probed: Instant::now(),
            },
        })
    }

    /// The next batch, read from `resume` when a new subscription is needed
    /// (the first, one the service ended, or one old enough to renew).
    ///
    /// A closed shard's subscription ends with an event naming its children
    /// (ChildShards). kinesis-mock never sends that event: a split parent's
    /// subscription goes on with empty events at the same continuation. So
    /// once ListShards has shown the shard `closed`, a subscription silent
    /// at the tip is checked every [`END_PROBE_EVERY`] with one GetRecords
    /// after the last record read; a shard at its end answers without a
    /// next iterator, with the same children, and the reader ends the shard
    /// as from the event. Open shards cost no extra call.
    pub(crate) async fn next(
        &mut self,
        sh: &Shared,
        shard: &str,
        resume: &From,
        closed: bool,
    ) -> Result<Batch, KinesisError> {
        match self {
            Source::Poll(iterator) => sh.kinesis.get_records(iterator, sh.cfg.max_records).await,
            Source::Push {
                consumer_arn,
                sub,
                probed,
            } => loop {
                if sub.as_ref().is_some_and(|s| s.age() >= sh.cfg.efo_renew) {
                    tracing::debug!(shard, "renewing the subscription");
                    *sub = None;
                }
                let s = match sub {
                    Some(s) => s,
                    None => sub.insert(Box::new(
                        sh.kinesis.subscribe(consumer_arn, shard, resume).await?,
                    )),
                };
                let next = s.next().await;
                if next.is_err() {
                    *sub = None; // a broken stream is subscribed again
                }
                let Some(batch) = next? else {
                    *sub = None;
                    continue;
                };
                let quiet = batch.records.is_empty() && batch.millis_behind == 0;
                if closed
                    && quiet
                    && batch.next_iterator.is_some()
                    && probed.elapsed() >= END_PROBE_EVERY
                {
                    *probed = Instant::now();
                    let it = sh.kinesis.iterator(shard, resume).await?;
                    let probe = sh.kinesis.get_records(&it, 1).await?;
                    if probe.next_iterator.is_none() && probe.records.is_empty() {
                        tracing::info!(
                            shard,
                            "shard read to its end (found by GetRecords; the subscription did not say)"
                        );
                        return Ok(probe);
                    }
                }
                return Ok(batch);
            },
        }
    }

    /// After a batch: a poller reads on from the batch's next iterator; a
    /// subscription goes on by itself.
    pub(crate) fn advance(&mut self, next: String) {
        if let Source::Poll(iterator) = self {
            *iterator = next;
        }
    }

    /// Starts over from `from` (an expired iterator, a broken subscription).
    pub(crate) async fn reopen(
        &mut self,
        sh: &Shared,
        shard: &str,
        from: &From,
    ) -> Result<(), KinesisError> {
        match self {
            Source::Poll(iterator) => *iterator = sh.kinesis.iterator(shard, from).await?,
            Source::Push { sub, .. } => *sub = None,
        }
        Ok(())
    }

    /// How long to wait before the next call: a poller keeps within the
    /// shard's call limit and waits longer when nothing came; pushed
    /// records come when they come.
    pub(crate) fn wait(&self, got: usize, called: Instant, idle_poll: Duration) -> Duration {
        match self {
            Source::Poll(_) if got == 0 => idle_poll,
            Source::Poll(_) => MIN_CALL_GAP.saturating_sub(called.elapsed()),
            Source::Push { .. } => Duration::ZERO,
        }
    }
}
