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
