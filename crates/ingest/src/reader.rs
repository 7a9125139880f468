//! One leased shard read: GetRecords within the service's limits, records
//! through the shard's buffer, commits when due, checkpoints after them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::kinesis::{From, KinesisError, Record};
use crate::shard_state::ShardState;
use crate::sink::{RawRecord, ShardBuffer, SinkError};
use crate::source::{MIN_CALL_GAP, Source};
use crate::worker::{Shared, WorkerError};
use pitwall_lake::LakeError;
use pitwall_lease::{Checkpoint, Lease};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// The shard was closed and read to its end; SHARD_END is checkpointed.
    ShardEnd,
    /// Asked to stop: what was read is committed and checkpointed.
    Stopped,
    /// The lease went to another worker: nothing uncommitted was written.
    Lost,
}

pub async fn read_shard(
    sh: Shared,
    shard: String,
    checkpoint: Checkpoint,
    state: Arc<ShardState>,
) -> Result<ReadEnd, WorkerError> {
    let start = match &checkpoint {
        Checkpoint::ShardEnd => return Ok(ReadEnd::ShardEnd),
        Checkpoint::Start => From::Start(sh.cfg.start),
        Checkpoint::Sequence {
            sequence_number, ..
        } => From::After(sequence_number.clone()),
    };
    let mut source = Source::open(&sh, &shard, &start).await?;
    let mut buf = Some(ShardBuffer::new(sh.validator, &shard));
    let mut last_read: Option<String> = None;
    let mut backoff = MIN_CALL_GAP;
    loop {
        if state.is_lost() {
            return Ok(ReadEnd::Lost);
        }
        if state.stopping() {
            return match commit(&sh, &shard, &state, &mut buf).await? {
                true => Ok(ReadEnd::Stopped),
                false => Ok(ReadEnd::Lost),
            };
        }
        let called = Instant::now();
        let resume = last_read.clone().map_or(start.clone(), From::After);
        let batch = match source.next(&sh, &shard, &resume, state.closed()).await {
            Ok(b) => b,
            Err(KinesisError::Throttled) => {
                sh.metrics.bump_throttles();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e @ (KinesisError::ExpiredIterator | KinesisError::SubscriptionBroken(_))) => {
                // Resume right after what is already in the buffer (the
                // checkpoint, when the buffer is empty), as the KCL does.
                tracing::info!(shard = %shard, reason = %e, "resuming after the last record read");
                source.reopen(&sh, &shard, &resume).await?;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        backoff = MIN_CALL_GAP;
        state.read(batch.records.len(), batch.millis_behind);
        state.read_bytes(batch.records.iter().map(|r| r.data.len() as u64).sum());
        if let Some(r) = batch.records.last() {
            last_read = Some(r.sequence_number.clone());
        }
        let got = batch.records.len();
        let (due, held) = add_records(&sh, &mut buf, batch.records).await?;
        state.set_held(held);
        let due = due || sh.metrics.over_budget(held, sh.cfg.max_buffered);
        let end = batch.next_iterator.is_none();
        if (due || end) && !commit(&sh, &shard, &state, &mut buf).await? {
            return Ok(ReadEnd::Lost);
        }
        match batch.next_iterator {
            None => {
                // Children named at the end (ChildShards) get their leases
                // now, not at the next ListShards; they are read once this
                // parent's SHARD_END is checkpointed.
                for c in batch.children {
                    if sh.store.create(&Lease::new(&c.shard_id, c.parents)).await? {
                        tracing::info!(shard = %c.shard_id, parent = %shard, "child shard: lease created");
                    }
                }
                if state.is_lost() {
                    return Ok(ReadEnd::Lost);
                }
                if !sh
                    .store
                    .checkpoint(&shard, &sh.cfg.worker_id, &Checkpoint::ShardEnd)
                    .await?
                {
                    return Ok(ReadEnd::Lost);
                }
                state.checkpointed("SHARD_END");
                return Ok(ReadEnd::ShardEnd);
            }
            Some(next) => source.advance(next),
        }
        tokio::time::sleep(source.wait(got, called, sh.cfg.idle_poll)).await;
    }
}

/// Decodes and validates a batch on the blocking pool (it is CPU work);
/// returns whether the buffer is due for a commit, and the bytes it holds.
async fn add_records(
    sh: &Shared,
    buf: &mut Option<ShardBuffer<'static>>,
    records: Vec<Record>,
) -> Result<(bool, usize), WorkerError> {
    let Some(mut b) = buf.take() else {
        return Ok((false, 0));
    };
    let roll = sh.cfg.roll.clone();
    let (b, res) = tokio::task::spawn_blocking(move || {
        let mut res = Ok(());
        for r in &records {
            if let Err(e) = b.add(RawRecord {
                sequence_number: &r.sequence_number,
                arrival_ms: r.arrival_ms,
                data: &r.data,
            }) {
                res = Err(e);
                break;
            }
        }
        let due = (b.due(&roll), b.held_bytes());
        (b, res.map(|()| due))
    })
    .await
    .map_err(|e| WorkerError::Reader(format!("decoding task failed: {e}")))?;
    *buf = Some(b);
    res.map_err(|e| WorkerError::Reader(e.to_string()))
}

/// Writes the buffer to the lake and checkpoints it, if the lease is still
/// ours. Returns false if the lease was lost (nothing is written then).
async fn commit(
    sh: &Shared,
    shard: &str,
    state: &Arc<ShardState>,
    buf: &mut Option<ShardBuffer<'static>>,
) -> Result<bool, WorkerError> {
    if !state.lease_valid() {
        return Ok(false);
    }
    let Some(mut b) = buf.take() else {
        return Ok(true);
    };
    let (lake, opts, fence) = (sh.lake.clone(), sh.cfg.parquet.clone(), state.clone());
    state.set_committing(true);
    let written = tokio::task::spawn_blocking(move || {
        let counts = std::mem::take(&mut b.counts);
        // Checked while each PUT runs, not only before the commit: a PUT
        // retrying past the lease's validity would land after the next
        // owner's file of the same name and overwrite it.
        let res = b
            .commit_while(&lake, &opts, &|| fence.lease_valid())
            .map(|c| (c, counts));
        (b, res)
    })
    .await
    .map_err(|e| WorkerError::Reader(format!("commit task failed: {e}")));
    state.set_committing(false);
    // A commit that did not complete (abandoned, failed, its task gone) may
    // have left a PUT that still lands: the worker lets the lease settle
    // before the records are read again.
    if !matches!(written, Ok((_, Ok(_)))) {
        state.unsettle();
    }
    let (b, res) = written?;
    let (done, counts) = match res {
        Ok(x) => x,
        Err(SinkError::Lake(LakeError::Abandoned { path })) => {
            tracing::warn!(
                shard,
                path,
                "lease lapsed during a commit: the write was abandoned; the next owner reads from the checkpoint"
            );
            return Ok(false);
        }
        Err(e) => {
            return Err(WorkerError::Reader(format!("writing to the lake: {e}")));
        }
    };
    *buf = Some(b);
    state.set_held(0);
    let Some(done) = done else {
        return Ok(true);
    };
    let cp = Checkpoint::Sequence {
        sequence_number: done.checkpoint.clone(),
        sub_sequence: done.sub_sequence,
    };
    // The table may still name this worker after a renewal failed; a lost
    // reader must not move the checkpoint the next reader starts from.
    if state.is_lost() {
        return Ok(false);
    }
    if !sh.store.checkpoint(shard, &sh.cfg.worker_id, &cp).await? {
        return Ok(false);
    }
    sh.metrics.add_counts(&counts);
    sh.metrics.committed(shard, &done);
    state.checkpointed(&done.checkpoint);
    tracing::debug!(shard, files = done.files.len(), events = done.events, checkpoint = %done.checkpoint, "committed");
    Ok(true)
}
