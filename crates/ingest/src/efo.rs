//! Enhanced fan-out: a registered stream consumer and one SubscribeToShard
//! per leased shard, which the service pushes records through (its own
//! 2 MB/s per shard instead of sharing GetRecords' five calls a second).
//! A subscription lasts at most five minutes; the reader subscribes again
//! after the last record it read, so a renewal neither skips nor repeats.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEvent,
    SubscribeToShardEventStream,
};

use crate::kinesis::{
    Batch, From, Kinesis, KinesisError, ShardInfo, StartPosition, child_of, record_of,
};

/// How long registering a consumer may take before it is an error (the
/// service says a few seconds).
const REGISTER_WAIT: Duration = Duration::from_secs(60);

impl Kinesis {
    /// Registers the consumer `name` on the stream, or finds it registered
    /// already (by another worker, or an earlier run), and waits until it
    /// is ACTIVE. Returns its ARN.
    pub async fn register_consumer(&self, name: &str) -> Result<String, KinesisError> {
        let summary = self
            .client()
            .describe_stream_summary()
            .stream_name(self.stream())
            .send()
            .await
            .map_err(|e| self.err("DescribeStreamSummary", e))?;
        let stream_arn = summary
            .stream_description_summary()
            .map(|s| s.stream_arn().to_string())
            .ok_or_else(|| self.fail("DescribeStreamSummary", "no stream ARN in the answer"))?;
        let registered = self
            .client()
            .register_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(name)
            .send()
            .await;
        if let Err(e) = registered
            && !e
                .as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception())
        {
            return Err(self.err("RegisterStreamConsumer", e));
        }
        let deadline = Instant::now() + REGISTER_WAIT;
        loop {
            let d = self
                .client()
                .describe_stream_consumer()
                .stream_arn(&stream_arn)
                .consumer_name(name)
                .send()
                .await
                .map_err(|e| self.err("DescribeStreamConsumer", e))?;
            if let Some(c) = d.consumer_description()
                && c.consumer_status() == &ConsumerStatus::Active
            {
                return Ok(c.consumer_arn().to_string());
            }
            if Instant::now() > deadline {
                return Err(self.fail(
                    "DescribeStreamConsumer",
                    &format!("consumer {name} not ACTIVE after {REGISTER_WAIT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Subscribes the consumer to `shard` from `from`.
    pub async fn subscribe(
        &self,
        consumer_arn: &str,
        shard: &str,
        from: &From,
    ) -> Result<Subscription, KinesisError> {
        let start = match from {
            From::After(seq) => StartingPosition::builder()
                .r#type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            From::Start(StartPosition::TrimHorizon) => {
                StartingPosition::builder().r#type(ShardIteratorType::TrimHorizon)
            }
            From::Start(StartPosition::Latest) => {
                StartingPosition::builder().r#type(ShardIteratorType::Latest)
            }
            From::Start(StartPosition::AtTimestamp(ms)) => StartingPosition::builder()
                .r#type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*ms)),
        }
        .build()
        .map_err(|e| self.fail("SubscribeToShard", &e.to_string()))?;
        let res = self
            .client()
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(shard)
            .starting_position(start)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Subscription {
                events: out.event_stream,
                opened: Instant::now(),
            }),
            // Another subscription to the shard is still open (ours, from
            // a reader that just stopped): the service allows one at a time.
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_resource_in_use_exception() || s.is_limit_exceeded_exception()
                }) =>
            {
                Err(KinesisError::Throttled)
            }
            Err(e) => Err(self.err("SubscribeToShard", e)),
        }
    }
}

/// One open subscription.
pub struct Subscription {
    events: aws_sdk_kinesis::primitives::event_stream::EventReceiver<
        SubscribeToShardEventStream,
        aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError,
    >,
    opened: Instant,
}

impl Subscription {
    /// How long it has been open.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// The next pushed batch; None when the service ended the subscription
    /// (its five minutes are up): subscribe again after the last record.
    /// A batch without a next position is the shard's end, its children
    /// (from the event's ChildShards) in `children`.
    pub async fn next(&mut self) -> Result<Option<Batch>, KinesisError> {
        loop {
            let event = match self.events.recv().await {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(None),
                // Another subscription to the shard is still open (the one
                // just renewed, or a stopped reader's): wait and try again.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) =>
                {
                    return Err(KinesisError::Throttled);
                }
                Err(e) => {
                    return Err(KinesisError::SubscriptionBroken(
                        aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
                    ));
                }
            };
            let SubscribeToShardEventStream::SubscribeToShardEvent(ev) = event else {
                continue; // a kind of event this pitwall does not know
            };
            return Ok(Some(batch_of(&ev)));
        }
    }
}

/// A pushed event as a batch. At a closed shard's end the event has no
/// continuation and names the children (ChildShards): the batch then has
/// no next position, and the reader ends the shard as a GetRecords end.
/// A continuation with children is not an end.
fn batch_of(ev: &SubscribeToShardEvent) -> Batch {
    let children: Vec<ShardInfo> = ev.child_shards().iter().map(child_of).collect();
    tracing::trace!(
        records = ev.records().len(),
        continuation = ev.continuation_sequence_number(),
        children = children.len(),
        millis_behind = ev.millis_behind_latest(),
        "pushed"
    );
    let next = Some(ev.continuation_sequence_number())
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Batch {
        records: ev.records().iter().map(record_of).collect(),
        next_iterator: if next.is_none() && !children.is_empty() {
            None
        } else {
            Some(next.unwrap_or_default())
        },
        millis_behind: ev.millis_behind_latest(),
        children,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::{ChildShard, HashKeyRange, Record};

    fn child(id: &str, parents: &[&str]) -> ChildShard {
        let range = HashKeyRange::builder()
            .starting_hash_key("0")
            .ending_hash_key("1")
            .build();
        ChildShard::builder()
            .shard_id(id)
            .set_parent_shards(Some(parents.iter().map(|p| p.to_string()).collect()))
            .set_hash_key_range(range.ok())
            .build()
            .unwrap_or_else(|e| panic!("child shard: {e}"))
    }

    fn event(
        continuation: &str,
        records: &[&str],
        children: Vec<ChildShard>,
    ) -> SubscribeToShardEvent {
        let records = records
            .iter()
            .map(|seq| {
                Record::builder()
                    .sequence_number(*seq)
                    .data(Blob::new(seq.as_bytes()))
                    .partition_key("k")
                    .build()
                    .unwrap_or_else(|e| panic!("record: {e}"))
            })
            .collect();
        SubscribeToShardEvent::builder()
            .continuation_sequence_number(continuation)
            .millis_behind_latest(0)
            .set_records(Some(records))
            .set_child_shards(Some(children))
            .build()
            .unwrap_or_else(|e| panic!("event: {e}"))
    }

    #[test]
    fn an_event_with_children_and_no_continuation_is_the_shards_end() {
        let b = batch_of(&event(
            "",
            &["49", "50"],
            vec![
                child("shardId-1", &["shardId-0"]),
                child("shardId-2", &["shardId-0"]),
            ],
        ));
        assert_eq!(b.next_iterator, None);
        assert_eq!(b.records.len(), 2, "the last records come with the end");
        let ids: Vec<&str> = b.children.iter().map(|c| c.shard_id.as_str()).collect();
        assert_eq!(ids, ["shardId-1", "shardId-2"]);
        assert!(
            b.children
                .iter()
                .all(|c| c.parents == ["shardId-0"] && !c.closed)
        );
    }

    #[test]
    fn a_merge_child_names_both_parents() {
        let b = batch_of(&event(
            "",
            &[],
            vec![child("shardId-3", &["shardId-1", "shardId-2"])],
        ));
        assert_eq!(b.next_iterator, None);
        assert_eq!(b.children[0].parents, ["shardId-1", "shardId-2"]);
    }

    #[test]
    fn a_continuation_is_read_on_from_even_with_children_named() {
        let b = batch_of(&event(
            "51",
            &["51"],
            vec![child("shardId-1", &["shardId-0"])],
        ));
        assert_eq!(b.next_iterator.as_deref(), Some("51"));
        let quiet = batch_of(&event("52", &[], Vec::new()));
        assert_eq!(quiet.next_iterator.as_deref(), Some("52"));
        assert!(quiet.records.is_empty() && quiet.children.is_empty());
    }
}
