//! Enhanced fan-out: a registered stream consumer and one SubscribeToShard
//! per leased shard, which the service pushes records through (its own
//! 2 MB/s per shard instead of sharing GetRecords' five calls a second).
//! A subscription lasts at most five minutes; the reader subscribes again
//! after the last record it read, so a renewal neither skips nor repeats.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
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
            return Ok(Some(Batch {
                records: ev.records().iter().map(record_of).collect(),
                // At the end there is no continuation and the children are
                // named; a continuation with children is not an end.
                next_iterator: if next.is_none() && !children.is_empty() {
                    None
                } else {
                    Some(next.unwrap_or_default())
                },
                millis_behind: ev.millis_behind_latest(),
                children,
            }));
        }
    }
}
