//! `score tail` on a real publication: every member decoded to its run's
//! score, each kind of bad record reported in its place and counted, and
//! the member, max and since filters. Run for Glue frames (tests/glue.rs)
//! and Confluent frames (tests/confluent.rs) on tansu.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use pitwall_contract::wire;
use pitwall_publish::kafka::KafkaSettings;
use pitwall_publish::registry::{Registry, WireFormat};
use pitwall_publish::tail::{Body, Problem, Start, TailRequest, TailSummary, Tailed, tail};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::TestResult;

/// Appends records the publisher would never write: a JSON value, a frame
/// naming a schema the registry lacks, a frame whose body is not its
/// schema's, and a tombstone.
fn add_bad_records(brokers: &str, topic: &str, good: wire::SchemaRef) -> TestResult {
    let unknown = match good {
        wire::SchemaRef::Glue(_) => wire::glue(uuid::Uuid::from_u128(7), &[2, 0x61], false),
        wire::SchemaRef::Confluent(_) => wire::confluent(999_999, &[2, 0x61]),
    };
    let not_its_value = match good {
        wire::SchemaRef::Glue(id) => wire::glue(id, &[0xff], false),
        wire::SchemaRef::Confluent(id) => wire::confluent(id, &[0xff]),
    };
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let records: [(&str, Option<&[u8]>); 4] = [
        ("bad-magic", Some(br#"{"member_id":"m"}"#)),
        ("bad-version", Some(&unknown)),
        ("bad-value", Some(&not_its_value)),
        ("deleted", None),
    ];
    for (key, value) in records {
        let mut r = BaseRecord::<str, [u8]>::to(topic).key(key);
        if let Some(v) = value {
            r = r.payload(v);
        }
        p.send(r).map_err(|(e, _)| e)?;
    }
    p.flush(Duration::from_secs(15))?;
    Ok(())
}

fn read(
    kafka: &KafkaSettings,
    registry: &dyn Registry,
    member: Option<&str>,
    start: Start,
    max: Option<u64>,
) -> Result<(Vec<Tailed>, TailSummary), Box<dyn std::error::Error>> {
    let req = TailRequest {
        kafka,
        registry,
        member,
        start,
        follow: false,
        max,
    };
    let mut seen = Vec::new();
    let summary = tail(&req, &AtomicBool::new(false), |t| seen.push(t.clone()))?;
    Ok((seen, summary))
}

pub fn scenario(
    brokers: &str,
    topic: &str,
    registry: &dyn Registry,
    subject: &str,
    run_dir: &Path,
) -> TestResult {
    let latest = registry
        .versions(subject)?
        .pop()
        .ok_or("nothing registered")?;
    let format = registry.wire_format();
    let good = latest.wire_ref(format).ok_or("no reference")?;
    std::thread::sleep(Duration::from_millis(20));
    let between = pitwall_score_state::ops::now_ms();
    add_bad_records(brokers, topic, good)?;
    let mut kafka = KafkaSettings::new(brokers, topic);
    kafka.timeout = Duration::from_secs(15);

    let (seen, sum) = read(&kafka, registry, None, Start::Beginning, None)?;
    let mut decoded = Vec::new();
    let mut problems = Vec::new();
    for t in &seen {
        match &t.body {
            Body::Value { schema, value } => {
                assert_eq!(
                    (schema.subject.as_str(), schema.version),
                    (subject, latest.version)
                );
                let prefix = if format == WireFormat::Glue {
                    "glue:"
                } else {
                    "confluent:"
                };
                assert!(schema.reference.starts_with(prefix), "{}", schema.reference);
                assert!(t.timestamp.is_some(), "the broker's timestamp is shown");
                decoded.push((t.key.clone().unwrap_or_default(), value.clone()));
            }
            Body::Bad { problem, error } => {
                assert!(!error.is_empty());
                problems.push((t.key.clone().unwrap_or_default(), *problem));
            }
            Body::Tombstone { .. } => assert_eq!(t.key.as_deref(), Some("deleted")),
        }
    }
    super::assert_decoded_matches_run(&decoded, run_dir)?;
    problems.sort();
    assert_eq!(
        problems,
        vec![
            ("bad-magic".to_string(), Problem::UnknownMagicByte),
            ("bad-value".to_string(), Problem::Undecodable),
            ("bad-version".to_string(), Problem::UnknownSchemaVersion),
        ]
    );
    assert_eq!(
        (sum.read, sum.shown),
        (decoded.len() as u64 + 4, decoded.len() as u64 + 4)
    );
    assert_eq!(
        (sum.decoded, sum.tombstones, sum.stopped),
        (decoded.len() as u64, 1, "end")
    );
    assert_eq!(sum.problems.values().sum::<u64>(), 3);

    // One member's record, found among all of them.
    let member = decoded[decoded.len() / 2].0.clone();
    let (one, sum) = read(&kafka, registry, Some(&member), Start::Beginning, None)?;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].key.as_deref(), Some(member.as_str()));
    assert_eq!(sum.other_members, sum.read - 1);

    let (two, sum) = read(&kafka, registry, None, Start::Beginning, Some(2))?;
    assert_eq!((two.len(), sum.stopped), (2, "max"));

    // Since a time between the publication and the bad records: only those.
    let (late, sum) = read(&kafka, registry, None, Start::Since(between), None)?;
    let mut keys: Vec<_> = late.iter().filter_map(|t| t.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["bad-magic", "bad-value", "bad-version", "deleted"]);
    assert_eq!(sum.stopped, "end");
    // From a time after everything was written: nothing, and a clean end.
    let later = pitwall_score_state::ops::now_ms() + 60_000;
    let (none, sum) = read(&kafka, registry, None, Start::Since(later), None)?;
    assert_eq!((none.len(), sum.stopped), (0, "end"));
    assert_eq!(sum.before_since, sum.read);
    Ok(())
}
