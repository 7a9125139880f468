//! The Kafka producer: idempotent, acks=all, compressed, and by default one
//! transaction per run so a read_committed consumer sees all of a run's
//! records or none. Delivery is counted per record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::msk_iam::MskIamSigner;

/// How to reach and write to the brokers. Secrets come from the environment.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers, host:port[,host:port].
    pub brokers: String,
    pub topic: String,
    /// One transaction per run (default). Off for brokers without transactions.
    pub transactional: bool,
    /// Stable per topic, so a re-run fences a crashed predecessor and aborts its open transaction.
    pub transactional_id: String,
    /// none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// plaintext, ssl, sasl_plaintext or sasl_ssl.
    pub security_protocol: String,
    /// SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN; for MSK IAM set `msk_iam` instead.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// From PITWALL_KAFKA_PASSWORD, never from flags or files.
    pub sasl_password: Option<String>,
    pub ssl_ca_location: Option<String>,
    /// MSK IAM: SASL/OAUTHBEARER with tokens from this signer, refreshed by librdkafka.
    pub msk_iam: Option<Arc<MskIamSigner>>,
    /// Extra librdkafka properties (`--kafka-property key=value`), applied last.
    pub properties: Vec<(String, String)>,
    /// Bound on each broker interaction (metadata, transaction calls, flush).
    pub timeout: Duration,
}

impl KafkaSettings {
    pub fn new(brokers: &str, topic: &str) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            topic: topic.into(),
            transactional: true,
            transactional_id: format!("pitwall-score-publish-{topic}"),
            compression: "lz4".into(),
            security_protocol: "plaintext".into(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            msk_iam: None,
            properties: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The producer's configuration.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = self.connection_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &self.compression)
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            .set("message.timeout.ms", self.timeout.as_millis().to_string());
        if self.transactional {
            c.set("transactional.id", &self.transactional_id).set(
                "transaction.timeout.ms",
                (self.timeout.as_millis() * 4).max(60_000).to_string(),
            );
        }
        self.with_properties(c)
    }

    /// How to reach and authenticate to the brokers, for producers and
    /// consumers alike; [`Self::with_properties`] must come last.
    pub(crate) fn connection_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set(
                "socket.connection.setup.timeout.ms",
                self.timeout.as_millis().min(30_000).to_string(),
            )
            .set("allow.auto.create.topics", "false")
            .set("security.protocol", &self.security_protocol);
        let oauth = self.msk_iam.is_some().then(|| "OAUTHBEARER".to_string());
        for (k, v) in [
            (
                "sasl.mechanism",
                oauth.as_ref().or(self.sasl_mechanism.as_ref()),
            ),
            ("sasl.username", self.sasl_username.as_ref()),
            ("sasl.password", self.sasl_password.as_ref()),
            ("ssl.ca.location", self.ssl_ca_location.as_ref()),
        ] {
            if let Some(v) = v {
                c.set(k, v);
            }
        }
        c
    }

    /// The user's `--kafka-property` values, which override ours.
    pub(crate) fn with_properties(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaFailure {
    #[error(
        "cannot create the Kafka client: {0}; check --brokers, --security-protocol, the SASL flags and --kafka-property values"
    )]
    Config(KafkaError),
    #[error(
        "cannot reach the brokers {brokers} within {timeout:?}: {error}; check the address, the network path and the security settings"
    )]
    Unreachable {
        brokers: String,
        timeout: Duration,
        error: KafkaError,
    },
    #[error(
        "topic {topic} does not exist on {brokers}; create it (cleanup.policy=compact) or name another with --topic"
    )]
    MissingTopic { topic: String, brokers: String },
    #[error(
        "the brokers refused transactions ({0}); this broker may not support them: publish with --transactional=false (the run ledger still prevents a second publication)"
    )]
    TransactionsUnsupported(String),
    #[error(
        "the brokers refused our credentials: {0}; check --sasl-username, PITWALL_KAFKA_PASSWORD and --sasl-mechanism"
    )]
    Auth(KafkaError),
    #[error(
        "cannot authenticate with MSK IAM: {0}; the brokers were not asked (check the role's kafka-cluster:Connect permission once they are)"
    )]
    MskIam(String),
    #[error(
        "the brokers did not accept our authentication: {0}; check --security-protocol, --sasl-mechanism, --sasl-username and PITWALL_KAFKA_PASSWORD (for AWS_MSK_IAM: the IAM listener's port and the role)"
    )]
    Refused(String),
    #[error("{stage} failed: {error}")]
    Broker {
        stage: &'static str,
        error: KafkaError,
    },
    #[error(
        "the commit failed and the transaction was aborted: {0}; nothing of this run is visible, re-run the publication"
    )]
    CommitAborted(KafkaError),
    #[error(
        "the commit failed with a fatal error: {0}; the coordinator aborts the open transaction after transaction.timeout.ms, so nothing of this run becomes visible; re-run the publication"
    )]
    CommitFatal(KafkaError),
    #[error(
        "delivered {delivered} of {expected} records ({failed} failed, first error: {first_error}); the transaction was aborted, nothing is visible"
    )]
    Incomplete {
        expected: u64,
        delivered: u64,
        failed: u64,
        first_error: String,
    },
    #[error(
        "delivered {delivered} of {expected} records ({failed} failed, first error: {first_error}); without a transaction some records may be visible: re-run the publication, keys make it idempotent on a compacted topic"
    )]
    IncompleteNonTransactional {
        expected: u64,
        delivered: u64,
        failed: u64,
        first_error: String,
    },
}

/// What librdkafka said about its connections: a failed SASL exchange is
/// reported only there, while the metadata call just times out.
#[derive(Default)]
pub struct ConnectionErrors {
    sasl: Mutex<Option<String>>,
}

impl ConnectionErrors {
    pub(crate) fn record(&self, error: &KafkaError, reason: &str) {
        // The end of a partition is news to a reader (poll returns it
        // too), not an error.
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            tracing::debug!("{reason}");
            return;
        }
        let sasl = reason.contains("SASL")
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication);
        if sasl && let Ok(mut last) = self.sasl.lock() {
            // librdkafka retries every second: say it once.
            if last.as_deref() == Some(reason) {
                tracing::debug!("Kafka client: {reason}");
                return;
            }
            *last = Some(reason.to_string());
        }
        tracing::warn!(error = %error, "Kafka client: {reason}");
    }

    /// The failure to report for a metadata call that failed.
    pub(crate) fn explain(&self, s: &KafkaSettings, error: KafkaError) -> KafkaFailure {
        if let Some(why) = s.msk_iam.as_ref().and_then(|m| m.last_error()) {
            KafkaFailure::MskIam(why)
        } else if let Some(why) = self.sasl.lock().ok().and_then(|w| w.clone()) {
            KafkaFailure::Refused(why)
        } else if is_auth(&error) {
            KafkaFailure::Auth(error)
        } else {
            KafkaFailure::Unreachable {
                brokers: s.brokers.clone(),
                timeout: s.timeout,
                error,
            }
        }
    }
}

/// What every client of ours carries: MSK IAM tokens when configured, and
/// what its connections reported. The consumers' context as it is.
#[derive(Default)]
pub struct AuthContext {
    pub(crate) msk_iam: Option<Arc<MskIamSigner>>,
    pub(crate) errors: ConnectionErrors,
}

impl AuthContext {
    pub fn new(s: &KafkaSettings) -> AuthContext {
        AuthContext {
            msk_iam: s.msk_iam.clone(),
            errors: ConnectionErrors::default(),
        }
    }
}

impl ClientContext for AuthContext {
    // librdkafka asks only when sasl.mechanism is OAUTHBEARER.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        crate::msk_iam::oauth_token(self.msk_iam.as_deref())
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.record(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for AuthContext {}

/// Counts deliveries as librdkafka reports them.
#[derive(Default)]
pub struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    auth: AuthContext,
}

impl DeliveryCounter {
    fn new(s: &KafkaSettings) -> DeliveryCounter {
        DeliveryCounter {
            auth: AuthContext::new(s),
            ..DeliveryCounter::default()
        }
    }
}

impl ClientContext for DeliveryCounter {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.auth.generate_oauth_token(config)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.auth.error(error, reason);
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub records: u64,
    pub millis: u64,
}

pub(crate) fn is_auth(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        )
    )
}

/// One publication on the wire: opened (topic checked, transaction begun),
/// fed batch by batch, then finished (flushed, counted, committed) or aborted.
pub struct Session {
    producer: ThreadedProducer<DeliveryCounter>,
    settings: KafkaSettings,
    started: Instant,
    /// A header every record carries (a publication's id), when set.
    header: Option<(String, Vec<u8>)>,
}

impl Session {
    pub fn open(s: &KafkaSettings) -> Result<Session, KafkaFailure> {
        let started = Instant::now();
        let producer: ThreadedProducer<DeliveryCounter> = s
            .client_config()
            .create_with_context(DeliveryCounter::new(s))
            .map_err(KafkaFailure::Config)?;
        check_topic(s, &producer).map_err(|e| {
            match s.msk_iam.as_ref().and_then(|m| m.last_error()) {
                Some(why) => KafkaFailure::MskIam(why),
                None => e,
            }
        })?;
        if s.transactional
            && crate::api_versions::brokers_support_transactions(&s.brokers, s.timeout)
                == Some(false)
        {
            let why = format!("{} does not implement EndTxn (KIP-98)", s.brokers);
            return Err(KafkaFailure::TransactionsUnsupported(why));
        }
        if s.transactional {
            producer.init_transactions(s.timeout).map_err(|e| {
                if is_auth(&e) {
                    KafkaFailure::Auth(e)
                } else if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::UnsupportedVersion
                            | RDKafkaErrorCode::InvalidRequest
                            | RDKafkaErrorCode::BrokerTransportFailure
                            | RDKafkaErrorCode::CoordinatorNotAvailable
                    )
                ) || e.to_string().contains("ransaction")
                {
                    KafkaFailure::TransactionsUnsupported(e.to_string())
                } else {
                    KafkaFailure::Broker {
                        stage: "initialising transactions",
                        error: e,
                    }
                }
            })?;
            producer
                .begin_transaction()
                .map_err(broker("beginning the transaction"))?;
        }
        Ok(Session {
            producer,
            settings: s.clone(),
            started,
            header: None,
        })
    }

    /// Every record sent from now on carries the header `name: value`.
    pub fn set_header(&mut self, name: &str, value: &[u8]) {
        self.header = Some((name.to_string(), value.to_vec()));
    }

    /// Queues records; librdkafka's threads send them while the caller encodes the next batch.
    pub fn send<'r>(
        &self,
        records: impl IntoIterator<Item = (&'r str, &'r [u8])>,
    ) -> Result<(), KafkaFailure> {
        send_all(
            &self.settings,
            &self.producer,
            self.header.as_ref(),
            records,
        )
    }

    /// Flushes, checks that exactly `expected` records were acknowledged, and
    /// commits; anything short of that aborts (or, without a transaction, fails loudly).
    pub fn finish(self, expected: u64) -> Result<Produced, KafkaFailure> {
        let s = &self.settings;
        let flushed = self.producer.flush(s.timeout).map_err(broker("flushing"));
        let ctx = self.producer.context();
        let (delivered, failed) = (
            ctx.delivered.load(Ordering::Relaxed),
            ctx.failed.load(Ordering::Relaxed),
        );
        let first_error = ctx
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| "none reported".into());
        let complete = flushed.is_ok() && delivered == expected && failed == 0;
        if s.transactional {
            if !complete {
                // Best effort: the coordinator aborts it on timeout or when a successor fences us.
                let _ = self.producer.abort_transaction(s.timeout);
                flushed?;
                return Err(KafkaFailure::Incomplete {
                    expected,
                    delivered,
                    failed,
                    first_error,
                });
            }
            commit(s, &self.producer)?;
        } else if !complete {
            flushed?;
            return Err(KafkaFailure::IncompleteNonTransactional {
                expected,
                delivered,
                failed,
                first_error,
            });
        }
        Ok(Produced {
            records: delivered,
            millis: self.started.elapsed().as_millis() as u64,
        })
    }

    /// Gives up: aborts the open transaction (best effort).
    pub fn abort(self) {
        if self.settings.transactional {
            let _ = self.producer.abort_transaction(self.settings.timeout);
        }
    }
}

/// Commits by librdkafka's error classes: a retriable error (coordinator
/// moving, a timeout) is retried, since giving up then could leave the
/// commit to land after we reported failure; an abortable one is aborted; a
/// fatal one leaves the transaction to the coordinator's timeout.
fn commit(
    s: &KafkaSettings,
    producer: &ThreadedProducer<DeliveryCounter>,
) -> Result<(), KafkaFailure> {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        match producer.commit_transaction(s.timeout) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e)) if e.is_retriable() && attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "Commit failed with a retriable error; retrying.");
            }
            Err(e) => {
                let abortable = matches!(&e, KafkaError::Transaction(t) if t.txn_requires_abort());
                if abortable {
                    let _ = producer.abort_transaction(s.timeout);
                    return Err(KafkaFailure::CommitAborted(e));
                }
                return Err(KafkaFailure::CommitFatal(e));
            }
        }
    }
    Err(KafkaFailure::Broker {
        stage: "committing the transaction",
        error: KafkaError::Canceled,
    })
}

fn check_topic(
    s: &KafkaSettings,
    producer: &ThreadedProducer<DeliveryCounter>,
) -> Result<(), KafkaFailure> {
    let md = producer
        .client()
        .fetch_metadata(Some(&s.topic), s.timeout)
        .map_err(|e| producer.context().auth.errors.explain(s, e))?;
    topic_partitions(s, &md).map(|_| ())
}

/// The topic's partitions in the metadata, sorted, or MissingTopic.
pub(crate) fn topic_partitions(
    s: &KafkaSettings,
    md: &rdkafka::metadata::Metadata,
) -> Result<Vec<i32>, KafkaFailure> {
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == s.topic && t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| KafkaFailure::MissingTopic {
            topic: s.topic.clone(),
            brokers: s.brokers.clone(),
        })?;
    let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The failure of a broker call at `stage`, for `map_err`.
pub(crate) fn broker(stage: &'static str) -> impl Fn(KafkaError) -> KafkaFailure {
    move |error| KafkaFailure::Broker { stage, error }
}

fn send_all<'r>(
    s: &KafkaSettings,
    producer: &ThreadedProducer<DeliveryCounter>,
    header: Option<&(String, Vec<u8>)>,
    records: impl IntoIterator<Item = (&'r str, &'r [u8])>,
) -> Result<(), KafkaFailure> {
    for (key, value) in records {
        let mut record = BaseRecord::to(&s.topic).key(key).payload(value);
        if let Some((name, v)) = header {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: name,
                value: Some(v.as_slice()),
            }));
        }
        let deadline = Instant::now() + s.timeout;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                // The local queue is full: let the background thread drain it.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    return Err(KafkaFailure::Broker {
                        stage: "queueing a record",
                        error: e,
                    });
                }
            }
        }
    }
    Ok(())
}

/// With transactions: a producer of our transactional id, initialised and
/// dropped, so a transaction a crashed predecessor left open is finished
/// (committed if its commit reached the coordinator, else aborted) before
/// anyone reads what it wrote.
pub fn fence(s: &KafkaSettings) -> Result<(), KafkaFailure> {
    if !s.transactional {
        return Ok(());
    }
    let producer: ThreadedProducer<DeliveryCounter> = s
        .client_config()
        .create_with_context(DeliveryCounter::new(s))
        .map_err(KafkaFailure::Config)?;
    producer
        .init_transactions(s.timeout)
        .map_err(broker("fencing the previous publisher"))
}
