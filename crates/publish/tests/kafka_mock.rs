//! Publication semantics against librdkafka's mock cluster, which speaks the
//! transaction protocol and injects faults.
//!
//! What the mock cannot show: it does not enforce read_committed isolation
//! (a probe saw aborted and still-open transactional records returned to a
//! read_committed consumer). So these tests check what the producer does —
//! which path it takes on each fault, what the ledger says, that nothing is
//! duplicated and that a failed run can be re-run — while invisibility of
//! aborted records is the broker's guarantee.

mod util;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pitwall_contract::wire::{self, SchemaRef};
use pitwall_publish::kafka::KafkaSettings;
use pitwall_publish::ledger::{Event, Ledger};
use pitwall_publish::registry::FileRegistry;
use pitwall_publish::{PublishError, PublishRequest, publish};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use util::TestResult;

const TOPIC: &str = "driving-score.member.v1";
const SUBJECT: &str = "driving-score.member.v1-value";

struct Fixture {
    _dir: tempfile::TempDir,
    run: PathBuf,
    registry: PathBuf,
    eligible: u64,
}

fn fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (run_dir, run) = util::scored_run(dir.path(), 50, 8)?;
    assert!(run.members.eligible > 0);
    Ok(Fixture {
        run: run_dir,
        registry: dir.path().join("registry"),
        eligible: run.members.eligible as u64,
        _dir: dir,
    })
}

fn settings(brokers: &str) -> KafkaSettings {
    let mut s = KafkaSettings::new(brokers, TOPIC);
    s.timeout = Duration::from_secs(10);
    s
}

fn request<'a>(
    f: &'a Fixture,
    reg: &'a FileRegistry,
    kafka: KafkaSettings,
    force: bool,
) -> PublishRequest<'a> {
    PublishRequest {
        run_dir: &f.run,
        registry: reg,
        subject: SUBJECT,
        kafka,
        force,
        zlib: false,
        wire: None,
    }
}

fn cluster() -> Result<
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    Box<dyn std::error::Error>,
> {
    let c = MockCluster::new(3)?;
    c.create_topic(TOPIC, 3, 3)?;
    Ok(c)
}

/// (key, payload) of one consumed record.
type Consumed = Vec<(String, Vec<u8>)>;

/// Everything a read_committed consumer sees on the topic.
fn read_committed(brokers: &str) -> Result<Consumed, Box<dyn std::error::Error>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("check-{}", std::process::id()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
            ));
            last = Instant::now();
        }
    }
    Ok(out)
}

fn assert_exactly_once(records: &[(String, Vec<u8>)], eligible: u64) -> TestResult {
    assert_eq!(
        records.len() as u64,
        eligible,
        "every eligible member exactly once"
    );
    let keys: HashSet<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), records.len(), "no duplicates");
    let schema = pitwall_contract::schemas::member_score_v1()?;
    for (key, payload) in records {
        let (schema_ref, datum) = wire::unframe(payload)?;
        assert!(matches!(schema_ref, SchemaRef::Glue(_)));
        #[allow(deprecated)] // GenericDatumReader is not public in apache-avro 0.22.
        let value = apache_avro::from_avro_datum(&schema, &mut datum.as_slice(), None)?;
        let apache_avro::types::Value::Record(fields) = value else {
            return Err("not a record".into());
        };
        assert_eq!(fields[0].1, apache_avro::types::Value::String(key.clone()));
    }
    Ok(())
}

fn last_event(run: &Path) -> Option<Event> {
    Ledger::at(run).entries().ok()?.last().map(|e| e.event)
}

#[test]
fn a_run_is_published_once_in_one_transaction() -> TestResult {
    let f = fixture()?;
    let c = cluster()?;
    let reg = FileRegistry::new(&f.registry);
    let report = publish(&request(&f, &reg, settings(&c.bootstrap_servers()), false))?;
    assert_eq!(report.records, f.eligible);
    assert_exactly_once(&read_committed(&c.bootstrap_servers())?, f.eligible)?;
    assert_eq!(last_event(&f.run), Some(Event::Committed));

    // The same run again is refused: nothing more is sent.
    let again = publish(&request(&f, &reg, settings(&c.bootstrap_servers()), false));
    assert!(
        matches!(again, Err(PublishError::AlreadyPublished { .. })),
        "{again:?}"
    );
    assert_eq!(
        read_committed(&c.bootstrap_servers())?.len() as u64,
        f.eligible
    );

    // --force publishes again and says so in the ledger.
    publish(&request(&f, &reg, settings(&c.bootstrap_servers()), true))?;
    let entries = Ledger::at(&f.run).entries()?;
    assert!(
        entries
            .last()
            .is_some_and(|e| e.forced && e.event == Event::Committed)
    );
    Ok(())
}

#[test]
fn a_held_run_is_not_published_without_force() -> TestResult {
    let f = fixture()?;
    let c = cluster()?;
    let path = f.run.join("run.json");
    let mut run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    run["status"] = "held".into();
    std::fs::write(&path, serde_json::to_string(&run)?)?;
    let reg = FileRegistry::new(&f.registry);
    let err = publish(&request(&f, &reg, settings(&c.bootstrap_servers()), false));
    assert!(matches!(err, Err(PublishError::Held { .. })), "{err:?}");
    assert_eq!(read_committed(&c.bootstrap_servers())?.len(), 0);
    publish(&request(&f, &reg, settings(&c.bootstrap_servers()), true))?;
    assert!(Ledger::at(&f.run).entries()?.iter().any(|e| e.forced));
    Ok(())
}

#[test]
fn records_must_equal_eligible_members() -> TestResult {
    let f = fixture()?;
    let c = cluster()?;
    let path = f.run.join("run.json");
    let mut run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    run["members"]["eligible"] = (f.eligible + 1).into();
    std::fs::write(&path, serde_json::to_string(&run)?)?;
    let reg = FileRegistry::new(&f.registry);
    let err = publish(&request(&f, &reg, settings(&c.bootstrap_servers()), false));
    assert!(
        matches!(err, Err(PublishError::Accounting { .. })),
        "{err:?}"
    );
    assert!(
        Ledger::at(&f.run).entries()?.is_empty(),
        "nothing was started"
    );
    Ok(())
}

#[test]
fn retriable_produce_errors_do_not_duplicate() -> TestResult {
    let f = fixture()?;
    let c = cluster()?;
    c.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    let reg = FileRegistry::new(&f.registry);
    publish(&request(&f, &reg, settings(&c.bootstrap_servers()), false))?;
    assert_exactly_once(&read_committed(&c.bootstrap_servers())?, f.eligible)
}

#[test]
fn a_transient_coordinator_error_at_commit_is_retried_not_reported() -> TestResult {
    let f = fixture()?;
    let c = cluster()?;
    c.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 3],
    );
    let reg = FileRegistry::new(&f.registry);
    publish(&request(&f, &reg, settings(&c.bootstrap_servers()), false))?;
    assert_eq!(last_event(&f.run), Some(Event::Committed));
    assert_exactly_once(&read_committed(&c.bootstrap_servers())?, f.eligible)
}

#[test]
fn a_refused_commit_fails_loudly_and_the_run_can_be_rerun() -> TestResult {
    let f = fixture()?;
    let c = cluster()?;
    c.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE; 6],
    );
    let reg = FileRegistry::new(&f.registry);
    let err = publish(&request(&f, &reg, settings(&c.bootstrap_servers()), false))
        .err()
        .ok_or("the commit must fail")?;
    assert!(err.to_string().contains("commit failed"), "{err}");
    assert_eq!(last_event(&f.run), Some(Event::Aborted));

    // A new producer with the same transactional.id fences the failed one; the re-run commits.
    c.clear_request_errors(RDKafkaApiKey::EndTxn);
    publish(&request(&f, &reg, settings(&c.bootstrap_servers()), false))?;
    assert_eq!(last_event(&f.run), Some(Event::Committed));
    let ledger = Ledger::at(&f.run).entries()?;
    assert_eq!(
        ledger
            .iter()
            .filter(|e| e.event == Event::Committed)
            .count(),
        1
    );
    Ok(())
}

#[test]
fn all_brokers_down_mid_transaction_fails_and_the_run_can_be_rerun() -> TestResult {
    let f = fixture()?;
    let c = cluster()?;
    let brokers = c.bootstrap_servers();
    // Slow brokers, so the transaction is still open when they go down.
    for b in 1..=3 {
        c.broker_round_trip_time(b, Duration::from_millis(300))?;
    }
    let (run, registry) = (f.run.clone(), f.registry.clone());
    let b2 = brokers.clone();
    let publisher = std::thread::spawn(move || {
        let reg = FileRegistry::new(&registry);
        let mut s = settings(&b2);
        s.timeout = Duration::from_secs(4);
        let req = PublishRequest {
            run_dir: &run,
            registry: &reg,
            subject: SUBJECT,
            kafka: s,
            force: false,
            zlib: false,
            wire: None,
        };
        publish(&req).map(|r| r.records).map_err(|e| e.to_string())
    });
    std::thread::sleep(Duration::from_millis(1200));
    for b in 1..=3 {
        c.broker_down(b)?;
    }
    let outcome = publisher.join().map_err(|_| "publisher panicked")?;
    assert!(
        outcome.is_err(),
        "publication must fail with every broker down: {outcome:?}"
    );
    assert_eq!(last_event(&f.run), Some(Event::Aborted));
    for b in 1..=3 {
        c.broker_up(b)?;
        c.broker_round_trip_time(b, Duration::ZERO)?;
    }
    let reg = FileRegistry::new(&f.registry);
    publish(&request(&f, &reg, settings(&brokers), false))?;
    assert_eq!(last_event(&f.run), Some(Event::Committed));
    Ok(())
}

#[test]
fn a_missing_topic_is_a_clear_error() -> TestResult {
    let f = fixture()?;
    let c = MockCluster::new(1)?;
    let reg = FileRegistry::new(&f.registry);
    let mut s = settings(&c.bootstrap_servers());
    s.topic = "no-such-topic".into();
    let err = publish(&request(&f, &reg, s, false))
        .err()
        .ok_or("must fail")?
        .to_string();
    assert!(
        err.contains("no-such-topic") && err.contains("does not exist"),
        "{err}"
    );
    Ok(())
}

#[test]
fn unreachable_brokers_are_a_clear_error() -> TestResult {
    let f = fixture()?;
    let reg = FileRegistry::new(&f.registry);
    let mut s = settings("127.0.0.1:1");
    s.timeout = Duration::from_secs(2);
    let err = publish(&request(&f, &reg, s, false))
        .err()
        .ok_or("must fail")?
        .to_string();
    assert!(
        err.contains("cannot reach the brokers 127.0.0.1:1"),
        "{err}"
    );
    assert!(
        Ledger::at(&f.run)
            .entries()?
            .last()
            .is_some_and(|e| e.event == Event::Aborted)
    );
    Ok(())
}
