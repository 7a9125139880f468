//! Reading the topic back: the offsets a publication starts from, the keys
//! a publication put there, and the consumers `score tail` reads with — all
//! with the same connection and authentication as the producer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{AuthContext, KafkaFailure, KafkaSettings, broker, topic_partitions};

pub type AuthConsumer = BaseConsumer<AuthContext>;

/// A consumer outside any group (partitions are assigned, offsets never
/// committed) reading only committed records; with `eof`, the end of each
/// partition comes as a `PartitionEOF` error from poll.
pub fn consumer(s: &KafkaSettings, name: &str, eof: bool) -> Result<AuthConsumer, KafkaFailure> {
    let mut c = s.connection_config();
    c.set("group.id", name)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", eof.to_string())
        .set("isolation.level", "read_committed");
    let consumer: AuthConsumer = s
        .with_properties(c)
        .create_with_context(AuthContext::new(s))
        .map_err(KafkaFailure::Config)?;
    if s.msk_iam.is_some() {
        // The first token is asked for on the consumer's own queue, which
        // only a poll serves: without it, the first metadata call waits.
        let _ = consumer.poll(Duration::from_millis(100));
    }
    Ok(consumer)
}

/// The topic's partitions, or the reason it cannot be read.
pub fn partitions(s: &KafkaSettings, consumer: &AuthConsumer) -> Result<Vec<i32>, KafkaFailure> {
    topic_partitions(s, &metadata(s, consumer)?)
}

/// The brokers' metadata of the topic, or the reason they did not answer.
fn metadata(
    s: &KafkaSettings,
    consumer: &AuthConsumer,
) -> Result<rdkafka::metadata::Metadata, KafkaFailure> {
    consumer
        .fetch_metadata(Some(&s.topic), s.timeout)
        .map_err(|e| {
            // The connections' errors are events on the consumer's queue:
            // serve them before asking what went wrong.
            for _ in 0..3 {
                let _ = consumer.poll(Duration::from_millis(50));
            }
            consumer.context().errors.explain(s, e)
        })
}

/// Each partition of the topic and its end offset (high watermark) now.
pub fn end_offsets(s: &KafkaSettings) -> Result<Vec<(i32, i64)>, KafkaFailure> {
    let consumer = consumer(s, "pitwall-offsets", false)?;
    let mut out = Vec::new();
    for p in partitions(s, &consumer)? {
        let (_, high) = consumer
            .fetch_watermarks(&s.topic, p, s.timeout)
            .map_err(|error| KafkaFailure::Unreachable {
                brokers: s.brokers.clone(),
                timeout: s.timeout,
                error,
            })?;
        out.push((p, high));
    }
    Ok(out)
}

/// The keys of the committed records after `start` (partition → offset)
/// whose header `name` is `value`: what of one publication is on the topic.
pub fn keys_with_header(
    s: &KafkaSettings,
    start: &[(i32, i64)],
    name: &str,
    value: &[u8],
) -> Result<HashSet<String>, KafkaFailure> {
    let consumer = consumer(s, "pitwall-publication-check", false)?;
    let end = end_offsets(s)?;
    let mut tpl = TopicPartitionList::new();
    for &(p, _) in &end {
        let from = start.iter().find(|x| x.0 == p).map_or(0, |x| x.1);
        tpl.add_partition_offset(&s.topic, p, Offset::Offset(from))
            .map_err(broker("assigning partitions"))?;
    }
    let mut found = HashSet::new();
    consumer
        .assign(&tpl)
        .map_err(broker("assigning partitions"))?;
    // Read until every partition is past the end offset seen at the start
    // and then the topic stays quiet for a second: some brokers (tansu)
    // report end offsets that lag behind what they serve.
    let deadline = Instant::now() + s.timeout;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(m) => {
                let m = m.map_err(broker("reading the topic back"))?;
                let ours = m.headers().is_some_and(|h| {
                    h.iter()
                        .any(|x| x.key == name && x.value.is_some_and(|v| v == value))
                });
                if ours {
                    found.insert(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned());
                }
                quiet_since = Instant::now();
            }
            None => {
                let past_end = consumer.position().is_ok_and(|t| {
                    end.iter().all(|(p, high)| {
                        t.find_partition(&s.topic, *p)
                            .and_then(|e| e.offset().to_raw())
                            .is_none_or(|o| o >= *high)
                    })
                });
                if past_end && quiet_since.elapsed() >= Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    Ok(found)
}

/// What `pitwall doctor` reports of the topic: its partitions and how the
/// brokers keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub partitions: usize,
    pub brokers: usize,
    /// `cleanup.policy` (`compact` keeps each member's latest record), if
    /// the brokers answer DescribeConfigs.
    pub cleanup_policy: Option<String>,
}

/// The topic as the brokers describe it: reachable, present, its cleanup
/// policy. Read-only.
pub fn describe_topic(s: &KafkaSettings) -> Result<TopicInfo, KafkaFailure> {
    let consumer = consumer(s, "pitwall-doctor", false)?;
    let md = metadata(s, &consumer)?;
    Ok(TopicInfo {
        partitions: topic_partitions(s, &md)?.len(),
        brokers: md.brokers().len(),
        cleanup_policy: cleanup_policy(s),
    })
}

/// `cleanup.policy` from DescribeConfigs; None when the brokers do not say
/// (some Kafka-compatible brokers do not implement it).
fn cleanup_policy(s: &KafkaSettings) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<crate::kafka::AuthContext> = s
        .with_properties(s.connection_config())
        .create_with_context(AuthContext::new(s))
        .ok()?;
    let opts = AdminOptions::new().request_timeout(Some(s.timeout));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let results = rt
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic(&s.topic)], &opts))
        .ok()?;
    let config = results.into_iter().next()?.ok()?;
    config.get("cleanup.policy")?.value.clone()
}
