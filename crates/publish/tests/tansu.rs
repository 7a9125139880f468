//! Publication to a real Kafka-protocol broker (tansu, started by
//! scripts/services.sh). tansu has no transactions: the default
//! (transactional) publication must say so and name the flag, and
//! `--transactional=false` must deliver every eligible member exactly once.

mod util;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pitwall_publish::kafka::KafkaSettings;
use pitwall_publish::registry::FileRegistry;
use pitwall_publish::{PublishRequest, publish};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use util::{TestResult, broker, create_topic};

fn consume_keys(
    brokers: &str,
    topic: &str,
    want: usize,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("pitwall-test-{topic}"))
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet = Instant::now();
    while Instant::now() < deadline
        && (keys.len() < want || quiet.elapsed() < Duration::from_secs(2))
    {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m?;
            keys.push(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned());
            pitwall_contract::wire::unframe(m.payload().unwrap_or_default())?;
            quiet = Instant::now();
        }
    }
    Ok(keys)
}

#[test]
fn non_transactional_publication_to_a_real_broker_delivers_each_member_once() -> TestResult {
    let Some(brokers) = broker() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (run_dir, run) = util::scored_run(dir.path(), 60, 12)?;
    let topic = format!("scores-{}", std::process::id());
    create_topic(&brokers, &topic)?;
    let reg = FileRegistry::new(dir.path().join("registry"));
    let mut kafka = KafkaSettings::new(&brokers, &topic);
    kafka.timeout = Duration::from_secs(15);

    // Transactions are refused, and the error says what to do.
    let req = PublishRequest {
        run_dir: &run_dir,
        registry: &reg,
        subject: "scores-value",
        kafka: kafka.clone(),
        force: false,
        zlib: true,
        wire: None,
    };
    let err = publish(&req)
        .err()
        .ok_or("tansu has no transactions")?
        .to_string();
    assert!(err.contains("--transactional=false"), "{err}");

    kafka.transactional = false;
    let req = PublishRequest { kafka, ..req };
    let report = publish(&req)?;
    assert_eq!(report.records, run.members.eligible as u64);
    let keys = consume_keys(&brokers, &topic, run.members.eligible)?;
    assert_eq!(
        keys.len(),
        run.members.eligible,
        "each eligible member once"
    );
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len(),
        keys.len(),
        "no duplicates"
    );
    Ok(())
}

/// tansu (without `--authentication`) refuses every SASL mechanism at the
/// handshake: a real broker refusing us, for the publisher and for tail.
#[test]
fn a_refused_sasl_handshake_names_the_flags_to_check() -> TestResult {
    let Some(brokers) = broker() else {
        return Ok(());
    };
    let mut s = KafkaSettings::new(&brokers, "driving-score.member.v1");
    s.security_protocol = "sasl_plaintext".into();
    s.sasl_mechanism = Some("SCRAM-SHA-512".into());
    s.sasl_username = Some("app".into());
    s.sasl_password = Some("secret".into());
    s.transactional = false;
    s.timeout = Duration::from_secs(3);
    let publish_err = match pitwall_publish::kafka::Session::open(&s) {
        Ok(_) => return Err("tansu accepted SCRAM without users".into()),
        Err(e) => e.to_string(),
    };
    let reg = FileRegistry::new(tempfile::tempdir()?.path());
    let req = pitwall_publish::tail::TailRequest {
        kafka: &s,
        registry: &reg,
        member: None,
        start: pitwall_publish::tail::Start::Beginning,
        follow: false,
        max: None,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let tail_err = match pitwall_publish::tail::tail(&req, &stop, |_| {}) {
        Ok(_) => return Err("tail read without authenticating".into()),
        Err(e) => e.to_string(),
    };
    for err in [publish_err, tail_err] {
        assert!(err.contains("did not accept our authentication"), "{err}");
        assert!(
            err.contains("SCRAM-SHA-512") && err.contains("--sasl-mechanism"),
            "{err}"
        );
        assert!(
            !err.contains("secret"),
            "the password stays out of messages: {err}"
        );
    }
    Ok(())
}
