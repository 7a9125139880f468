use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args, ValueEnum};
use pitwall_publish::catchup::{StatePublishReport, StatePublishRequest, publish_state};
use pitwall_publish::kafka::KafkaSettings;
use pitwall_publish::registry::{RegistrySpec, WireFormat};
use pitwall_publish::{PublishReport, PublishRequest, publish};

use super::schema::{DEFAULT_SUBJECT, open_registry};

/// How to reach the brokers: shared by publishing and `score tail`.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Kafka bootstrap servers, host:port[,host:port] (required to publish).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Kafka security.protocol: plaintext, ssl, sasl_plaintext, sasl_ssl
    /// (AWS_MSK_IAM turns plaintext and ssl into sasl_ssl: MSK's IAM listener is TLS).
    #[arg(long, default_value = "plaintext")]
    pub security_protocol: String,
    /// SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (the password comes
    /// from PITWALL_KAFKA_PASSWORD), or AWS_MSK_IAM (OAUTHBEARER tokens signed
    /// with the standard AWS credentials chain, IRSA in a pod, refreshed before
    /// they expire).
    #[arg(long)]
    pub sasl_mechanism: Option<String>,
    #[arg(long)]
    pub sasl_username: Option<String>,
    /// Region of the MSK cluster for AWS_MSK_IAM; default: AWS_REGION / the profile's.
    #[arg(long)]
    pub msk_region: Option<String>,
    /// CA bundle for TLS.
    #[arg(long)]
    pub ssl_ca_location: Option<String>,
    /// Extra librdkafka property, key=value; repeatable.
    #[arg(long = "kafka-property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// Time limit for each broker interaction.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub kafka_timeout: Duration,
}

impl BrokerArgs {
    /// The settings to reach `topic` with; --brokers is required here.
    pub fn settings(&self, topic: &str) -> anyhow::Result<KafkaSettings> {
        let Some(brokers) = self.brokers.as_deref() else {
            anyhow::bail!(
                "--brokers is required to publish (host:port of the Kafka bootstrap servers)"
            );
        };
        let mut kafka = KafkaSettings::new(brokers, topic);
        kafka.security_protocol = self.security_protocol.clone();
        kafka.ssl_ca_location = self.ssl_ca_location.clone();
        kafka.properties = self.properties.clone();
        kafka.timeout = self.kafka_timeout;
        let msk_iam = self
            .sasl_mechanism
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("AWS_MSK_IAM"));
        if !msk_iam {
            kafka.sasl_mechanism = self.sasl_mechanism.clone();
            kafka.sasl_username = self.sasl_username.clone();
            kafka.sasl_password = std::env::var("PITWALL_KAFKA_PASSWORD").ok();
            return Ok(kafka);
        }
        if self.sasl_username.is_some() {
            anyhow::bail!(
                "--sasl-username does not apply to AWS_MSK_IAM: the identity is the AWS role the credentials belong to"
            );
        }
        if !kafka.security_protocol.starts_with("sasl_") {
            kafka.security_protocol = "sasl_ssl".into();
        }
        kafka.msk_iam = Some(
            pitwall_publish::msk_iam::MskIamSigner::from_env(self.msk_region.as_deref())
                .context("setting up MSK IAM authentication")?,
        );
        Ok(kafka)
    }
}

/// The topic of the member scores and the registry of their schemas:
/// shared by publishing and `score tail`.
#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The compacted topic, one per record version.
    #[arg(long, default_value = "driving-score.member.v1")]
    pub topic: String,
    /// Schema registry: file:DIR (embedded), glue:REGISTRY_NAME or confluent:URL.
    #[arg(long, default_value = "file:registry")]
    pub registry: RegistrySpec,
}

/// Where and how to publish member scores. Shared by `score publish` and `score run --publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub to: TopicArgs,
    /// Registry subject of the record value (Glue: the schema name).
    #[arg(long, default_value = DEFAULT_SUBJECT)]
    pub subject: String,
    /// One transaction per run (a read_committed consumer sees all or nothing).
    /// Use --transactional=false for brokers without transactions.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub transactional: bool,
    /// Accept a held run: publish it (or one already published; the ledger records it),
    /// and with `score run --state`, commit it to the state (the run log records it).
    #[arg(long)]
    pub force: bool,
    /// Wire format of the records; default: the registry's (Glue for file: and glue:).
    #[arg(long, value_enum)]
    pub wire: Option<Wire>,
    /// zlib-compress Glue-framed records (compression byte 5).
    #[arg(long)]
    pub zlib: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Wire {
    Glue,
    Confluent,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn kafka_settings(a: &PublishArgs) -> anyhow::Result<KafkaSettings> {
    let mut kafka = a.to.broker.settings(&a.to.topic)?;
    kafka.transactional = a.transactional;
    Ok(kafka)
}

fn wire(a: &PublishArgs) -> Option<WireFormat> {
    a.wire.map(|w| match w {
        Wire::Glue => WireFormat::Glue,
        Wire::Confluent => WireFormat::Confluent,
    })
}

pub fn run_publish(run_dir: &Path, a: &PublishArgs) -> anyhow::Result<PublishReport> {
    let kafka = kafka_settings(a)?;
    let brokers = kafka.brokers.clone();
    let registry = open_registry(&a.to.registry)?;
    let req = PublishRequest {
        run_dir,
        registry: registry.as_ref(),
        subject: &a.subject,
        kafka,
        force: a.force,
        zlib: a.zlib,
        wire: wire(a),
    };
    publish(&req).with_context(|| {
        format!(
            "publishing {} to {} on {brokers}",
            run_dir.display(),
            a.to.topic
        )
    })
}

pub fn print_report(r: &PublishReport) {
    println!(
        "published run {} to {}: {} records, schema {}@{}{}{} in {:.1} s",
        r.run_id,
        r.topic,
        r.records,
        r.schema_subject,
        r.schema_version,
        if r.transactional {
            ", one transaction"
        } else {
            ", no transaction"
        },
        if r.forced { ", FORCED" } else { "" },
        r.millis as f64 / 1000.0
    );
}

/// `score publish --state`: the members whose record differs from the one
/// last published to the topic, in one transaction.
pub fn run_publish_state(state: &str, a: &PublishArgs) -> anyhow::Result<StatePublishReport> {
    let kafka = kafka_settings(a)?;
    let brokers = kafka.brokers.clone();
    let registry = open_registry(&a.to.registry)?;
    let state_ = pitwall_score_state::State::open(state)?;
    let req = StatePublishRequest {
        state: &state_,
        registry: registry.as_ref(),
        subject: &a.subject,
        kafka,
        zlib: a.zlib,
        wire: wire(a),
        chunk: 0,
    };
    publish_state(&req).with_context(|| {
        format!(
            "publishing the state {state} to {} on {brokers}",
            a.to.topic
        )
    })
}

pub fn print_state_report(r: &StatePublishReport) {
    if let Some(x) = &r.resolved {
        println!(
            "resolved publication {} left without an outcome: {} of its {} records were on the topic{}",
            x.pseq,
            x.found,
            x.of,
            if x.found == x.of {
                " (committed: not sent again)"
            } else {
                " (the rest are sent now)"
            }
        );
    }
    match r.pseq {
        None => println!(
            "{} is up to date with state run {} ({}): no member's record changed",
            r.topic, r.state_seq, r.run_id
        ),
        Some(p) => println!(
            "published {} changed members of state run {} ({}) to {} as publication {p}{} in {:.1} s",
            r.records,
            r.state_seq,
            r.run_id,
            r.topic,
            if r.transactional {
                ", one transaction"
            } else {
                ", no transaction"
            },
            r.millis as f64 / 1000.0
        ),
    }
}
