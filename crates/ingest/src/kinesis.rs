//! The Kinesis calls the worker makes, through the official AWS SDK with
//! its standard configuration (region, credentials chain, and endpoints
//! from `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_KINESIS`).

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{DisplayErrorContext, SdkError};
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;

/// Where reading starts on a shard that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    /// Epoch milliseconds.
    AtTimestamp(i64),
}

impl std::str::FromStr for StartPosition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "TRIM_HORIZON" => Ok(StartPosition::TrimHorizon),
            "LATEST" => Ok(StartPosition::Latest),
            _ => match s
                .strip_prefix("AT_TIMESTAMP=")
                .or_else(|| s.strip_prefix("AT_TIMESTAMP:"))
            {
                Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| StartPosition::AtTimestamp(t.timestamp_millis()))
                    .map_err(|e| format!("{t:?} is not an RFC 3339 time: {e}")),
                None => Err(format!(
                    "{s:?}: use TRIM_HORIZON, LATEST or AT_TIMESTAMP=2026-11-01T00:00:00Z"
                )),
            },
        }
    }
}

/// Where to get a shard iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    Start(StartPosition),
    After(String),
}

/// A shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    pub parents: Vec<String>,
    /// Closed by a reshard: it has an ending sequence number.
    pub closed: bool,
}

pub struct Record {
    pub sequence_number: String,
    pub arrival_ms: i64,
    pub data: Vec<u8>,
}

pub struct Batch {
    pub records: Vec<Record>,
    /// None: the shard is closed and was read to its end (SHARD_END).
    pub next_iterator: Option<String>,
    pub millis_behind: i64,
    /// At the shard's end, the shards that continue it (ChildShards).
    pub children: Vec<ShardInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    #[error(
        "stream {stream} was not found: check --stream, AWS_REGION and AWS_ENDPOINT_URL(_KINESIS) ({detail})"
    )]
    NoStream { stream: String, detail: String },
    #[error("Kinesis throttled the read (ProvisionedThroughputExceeded)")]
    Throttled,
    #[error("the shard iterator expired")]
    ExpiredIterator,
    #[error("the enhanced fan-out subscription broke: {0}")]
    SubscriptionBroken(String),
    #[error("Kinesis {call} on {stream}: {detail}; check the endpoint, region and credentials")]
    Call {
        call: &'static str,
        stream: String,
        detail: String,
    },
}

#[derive(Clone)]
pub struct Kinesis {
    client: Client,
    stream: String,
}

impl Kinesis {
    pub async fn from_env(stream: &str) -> Kinesis {
        let conf = aws_config::load_from_env().await;
        let kconf = aws_sdk_kinesis::config::Builder::from(&conf)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .build();
        Kinesis {
            client: Client::from_conf(kconf),
            stream: stream.to_string(),
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn err<E, R>(&self, call: &'static str, e: SdkError<E, R>) -> KinesisError
    where
        E: std::error::Error + aws_sdk_kinesis::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        if e.as_service_error().and_then(|s| s.code()) == Some("ResourceNotFoundException") {
            return KinesisError::NoStream {
                stream: self.stream.clone(),
                detail: e
                    .as_service_error()
                    .and_then(|s| s.message())
                    .unwrap_or("not found")
                    .to_string(),
            };
        }
        KinesisError::Call {
            call,
            stream: self.stream.clone(),
            detail: DisplayErrorContext(e).to_string(),
        }
    }

    /// A call that answered, but not with what it must.
    pub(crate) fn fail(&self, call: &'static str, detail: &str) -> KinesisError {
        KinesisError::Call {
            call,
            stream: self.stream.clone(),
            detail: detail.to_string(),
        }
    }

    /// Every shard of the stream, open and closed, with its parents.
    pub async fn list_shards(&self) -> Result<Vec<ShardInfo>, KinesisError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let res = req.send().await.map_err(|e| self.err("ListShards", e))?;
            for s in res.shards() {
                out.push(ShardInfo {
                    shard_id: s.shard_id().to_string(),
                    parents: s
                        .parent_shard_id()
                        .into_iter()
                        .chain(s.adjacent_parent_shard_id())
                        .map(str::to_string)
                        .collect(),
                    closed: s
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .is_some(),
                });
            }
            match res.next_token() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    pub async fn iterator(&self, shard: &str, from: &From) -> Result<String, KinesisError> {
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard);
        req = match from {
            From::After(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            From::Start(StartPosition::TrimHorizon) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            From::Start(StartPosition::Latest) => {
                req.shard_iterator_type(ShardIteratorType::Latest)
            }
            From::Start(StartPosition::AtTimestamp(ms)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(*ms)),
        };
        let res = req
            .send()
            .await
            .map_err(|e| self.err("GetShardIterator", e))?;
        res.shard_iterator()
            .map(str::to_string)
            .ok_or_else(|| KinesisError::Call {
                call: "GetShardIterator",
                stream: self.stream.clone(),
                detail: format!("no iterator returned for {shard}"),
            })
    }

    pub async fn get_records(&self, iterator: &str, limit: i32) -> Result<Batch, KinesisError> {
        let res = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            Err(e) => {
                let svc = e.as_service_error();
                if svc.is_some_and(|s| s.is_provisioned_throughput_exceeded_exception()) {
                    return Err(KinesisError::Throttled);
                }
                if svc.is_some_and(|s| s.is_expired_iterator_exception()) {
                    return Err(KinesisError::ExpiredIterator);
                }
                return Err(self.err("GetRecords", e));
            }
        };
        Ok(Batch {
            records: res.records().iter().map(record_of).collect(),
            next_iterator: res.next_shard_iterator().map(str::to_string),
            millis_behind: res.millis_behind_latest().unwrap_or(0),
            children: res.child_shards().iter().map(child_of).collect(),
        })
    }
}

/// A shard named in ChildShards (at a parent's end): open, with its parents.
pub(crate) fn child_of(c: &aws_sdk_kinesis::types::ChildShard) -> ShardInfo {
    ShardInfo {
        shard_id: c.shard_id().to_string(),
        parents: c.parent_shards().to_vec(),
        closed: false,
    }
}

pub(crate) fn record_of(r: &aws_sdk_kinesis::types::Record) -> Record {
    Record {
        sequence_number: r.sequence_number().to_string(),
        arrival_ms: r
            .approximate_arrival_timestamp()
            .and_then(|t| t.to_millis().ok())
            .unwrap_or(0),
        data: r.data().as_ref().to_vec(),
    }
}

/// PutRecords takes at most this many records and bytes per call.
const PUT_MAX_RECORDS: usize = 500;
const PUT_MAX_BYTES: usize = 5 << 20;
/// Calls per chunk before failing entries are an error, not a retry.
const PUT_ATTEMPTS: u32 = 8;

impl Kinesis {
    /// Puts (partition key, data) records with PutRecords, in calls of at
    /// most 500 records / 5 MiB. Entries the stream refused (throttled, or
    /// an internal failure) are sent again with backoff, so a record may
    /// arrive twice but is never silently left out: after the last attempt
    /// the error says how many are unsent. Returns the calls made.
    pub async fn put_records(&self, records: &[(String, Vec<u8>)]) -> Result<u64, KinesisError> {
        let mut calls = 0;
        let mut start = 0;
        while start < records.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < records.len()
                && end - start < PUT_MAX_RECORDS
                && (end == start
                    || bytes + records[end].1.len() + records[end].0.len() <= PUT_MAX_BYTES)
            {
                bytes += records[end].1.len() + records[end].0.len();
                end += 1;
            }
            calls += self.put_chunk(&records[start..end]).await?;
            start = end;
        }
        Ok(calls)
    }

    async fn put_chunk(&self, chunk: &[(String, Vec<u8>)]) -> Result<u64, KinesisError> {
        use aws_sdk_kinesis::primitives::Blob;
        use aws_sdk_kinesis::types::PutRecordsRequestEntry;
        let mut left: Vec<&(String, Vec<u8>)> = chunk.iter().collect();
        let mut calls = 0;
        for attempt in 0..PUT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
            }
            let entries = left
                .iter()
                .map(|(key, data)| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(key)
                        .data(Blob::new(data.clone()))
                        .build()
                        .map_err(|e| KinesisError::Call {
                            call: "PutRecords",
                            stream: self.stream.clone(),
                            detail: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            calls += 1;
            let res = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(entries))
                .send()
                .await;
            let res = match res {
                Ok(r) => r,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_provisioned_throughput_exceeded_exception()) =>
                {
                    continue;
                }
                Err(e) => return Err(self.err("PutRecords", e)),
            };
            if res.failed_record_count().unwrap_or(0) == 0 {
                return Ok(calls);
            }
            // Results come in request order; an error code marks a refused entry.
            left = left
                .into_iter()
                .zip(res.records())
                .filter(|(_, r)| r.error_code().is_some())
                .map(|(entry, _)| entry)
                .collect();
        }
        Err(KinesisError::Call {
            call: "PutRecords",
            stream: self.stream.clone(),
            detail: format!(
                "{} records still refused after {PUT_ATTEMPTS} attempts (throttled: add shards or slow down)",
                left.len()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!("TRIM_HORIZON".parse(), Ok(StartPosition::TrimHorizon));
        assert_eq!("LATEST".parse(), Ok(StartPosition::Latest));
        assert_eq!(
            "AT_TIMESTAMP=2026-11-01T00:00:00Z".parse(),
            Ok(StartPosition::AtTimestamp(1_793_491_200_000))
        );
        assert!("EARLIEST".parse::<StartPosition>().is_err());
    }
}
