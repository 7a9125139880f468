//! `score publish --state`: each publication sends the members whose record
//! changed since the last one, a failed one is made up by the next, and a
//! crash between the broker's commit and the state's record sends nothing
//! twice. Against librdkafka's mock cluster (transactions, injected faults)
//! and tansu (no transactions; decoded by another client).

mod util;

use std::time::{Duration, Instant};

use pitwall_publish::catchup::{self, StatePublishRequest, publish_state};
use pitwall_publish::kafka::KafkaSettings;
use pitwall_publish::registry::FileRegistry;
use pitwall_score_job::{JobConfig, NoProgress, StateOptions};
use pitwall_score_state::State;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use util::TestResult;

const TOPIC: &str = "driving-score.member.v1";
const SUBJECT: &str = "driving-score.member.v1-value";
const DAY: i64 = 86_400_000;

type Error = Box<dyn std::error::Error>;

struct Fleet {
    dir: tempfile::TempDir,
}

impl Fleet {
    fn new(rentals: usize) -> Result<Fleet, Error> {
        let dir = tempfile::tempdir()?;
        pitwall_fleetgen::generate(
            &dir.path().join("fleet"),
            &pitwall_fleetgen::FleetConfig::new(rentals, 4, util::END),
        )?;
        Ok(Fleet { dir })
    }

    fn state(&self) -> String {
        self.dir.path().join("state").display().to_string()
    }

    /// A state run at `as_of`, committed whatever the gates say.
    fn run(&self, as_of: i64) -> Result<(), Error> {
        let d = self.dir.path();
        let mut cfg = JobConfig::new(
            d.join("fleet/rentals.parquet").display().to_string(),
            d.join("fleet/telemetry").display().to_string(),
            as_of,
            d.join(format!("run-{as_of}")),
        );
        cfg.threads = 2;
        cfg.state = Some(StateOptions {
            location: self.state(),
            rescore: None,
            model_change: false,
            force: true,
            fence: None,
            write_snapshot: false,
            compaction: Default::default(),
            memory: None,
        });
        pitwall_score_job::run(&cfg, &NoProgress)?;
        Ok(())
    }

    fn registry(&self) -> FileRegistry {
        FileRegistry::new(self.dir.path().join("registry"))
    }

    fn eligible(&self) -> Result<usize, Error> {
        let s = State::open(&self.state())?;
        Ok(s.load_members()?
            .iter()
            .filter(|m| m.score.eligible)
            .count())
    }
}

fn settings(brokers: &str, transactional: bool) -> KafkaSettings {
    let mut s = KafkaSettings::new(brokers, TOPIC);
    s.timeout = Duration::from_secs(10);
    s.transactional = transactional;
    s
}

/// Keys of everything on the topic.
fn keys(brokers: &str, partitions: i32) -> Result<Vec<String>, Error> {
    keys_of(brokers, TOPIC, partitions)
}

fn keys_of(brokers: &str, topic: &str, partitions: i32) -> Result<Vec<String>, Error> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("check-{}", std::process::id()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8_lossy(m?.key().unwrap_or_default()).into_owned());
            last = Instant::now();
        }
    }
    Ok(out)
}

fn request<'a>(
    state: &'a State,
    reg: &'a FileRegistry,
    kafka: KafkaSettings,
) -> StatePublishRequest<'a> {
    StatePublishRequest {
        state,
        registry: reg,
        subject: SUBJECT,
        kafka,
        zlib: false,
        wire: None,
        chunk: 0,
    }
}

fn publish(f: &Fleet, kafka: KafkaSettings) -> Result<catchup::StatePublishReport, Error> {
    let state = State::open(&f.state())?;
    let reg = f.registry();
    Ok(publish_state(&request(&state, &reg, kafka))?)
}

#[test]
fn each_publication_sends_what_changed_and_nothing_twice() -> TestResult {
    let f = Fleet::new(120)?;
    let c = MockCluster::new(3)?;
    c.create_topic(TOPIC, 3, 3)?;
    let brokers = c.bootstrap_servers();
    f.run(util::END - 30 * DAY)?;
    let first = publish(&f, settings(&brokers, true))?;
    assert_eq!(first.records as usize, f.eligible()?);
    assert_eq!(first.pseq, Some(1));
    // Nothing changed: nothing is sent.
    let again = publish(&f, settings(&brokers, true))?;
    assert_eq!((again.pseq, again.records), (None, 0));

    let before = State::open(&f.state())?.load_members()?;
    f.run(util::END)?;
    let after = State::open(&f.state())?.load_members()?;
    let view = pitwall_score_state::published::view_of_records(&before);
    let changed = pitwall_score_state::published::changed_records(&after, &view).len();
    assert!(changed > 0);
    let second = publish(&f, settings(&brokers, true))?;
    assert_eq!(second.records as usize, changed);
    assert_eq!(keys(&brokers, 3)?.len(), first.records as usize + changed);
    Ok(())
}

/// A publication in chunks (7 members at a time here, 16 k by default)
/// sends every changed member once, in one transaction, and records them
/// all in its changes file and its view.
#[test]
fn a_publication_sent_in_chunks_sends_every_member_once() -> TestResult {
    let f = Fleet::new(120)?;
    let c = MockCluster::new(3)?;
    c.create_topic(TOPIC, 3, 3)?;
    let brokers = c.bootstrap_servers();
    f.run(util::END)?;
    let state = State::open(&f.state())?;
    let reg = f.registry();
    let mut req = request(&state, &reg, settings(&brokers, true));
    req.chunk = 7;
    let report = publish_state(&req)?;
    let eligible = f.eligible()?;
    assert!(eligible > 14, "more than two chunks: {eligible}");
    assert_eq!(report.records as usize, eligible);
    let mut sent = keys(&brokers, 3)?;
    sent.sort();
    let before = sent.len();
    sent.dedup();
    assert_eq!(
        (before, sent.len()),
        (eligible, eligible),
        "each member once"
    );
    let pubs = state.publications(TOPIC);
    let (intent, _) = pubs.last()?.ok_or("no publication")?;
    let written: Vec<String> = pubs
        .changes(&intent)?
        .into_iter()
        .map(|m| m.member_id)
        .collect();
    assert_eq!(written, sent);
    let members = state.load_members()?;
    let (_, view) = pubs.view()?;
    assert!(pitwall_score_state::published::changed_records(&members, &view).is_empty());
    Ok(())
}

#[test]
fn a_failed_publication_is_made_up_by_the_next() -> TestResult {
    let f = Fleet::new(80)?;
    let c = MockCluster::new(3)?;
    c.create_topic(TOPIC, 3, 3)?;
    let brokers = c.bootstrap_servers();
    f.run(util::END - 30 * DAY)?;
    c.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE; 6],
    );
    assert!(publish(&f, settings(&brokers, true)).is_err());
    c.clear_request_errors(RDKafkaApiKey::EndTxn);
    let (_, last) = State::open(&f.state())?
        .publications(TOPIC)
        .last()?
        .ok_or("no attempt recorded")?;
    assert!(matches!(
        last,
        Some(pitwall_score_state::published::Outcome::Aborted { .. })
    ));

    f.run(util::END)?;
    let next = publish(&f, settings(&brokers, true))?;
    // Every eligible member: nothing reached the topic's view before.
    assert_eq!(next.records as usize, f.eligible()?);
    assert_eq!(next.pseq, Some(2));
    Ok(())
}

fn crash_after_the_commit(
    f: &Fleet,
    kafka: KafkaSettings,
    brokers: &str,
    parts: i32,
) -> TestResult {
    f.run(util::END - 30 * DAY)?;
    let state = State::open(&f.state())?;
    let reg = f.registry();
    // The broker commits; the process dies before the state records it.
    let started = catchup::start(&request(&state, &reg, kafka.clone()))?;
    drop(started);
    let sent = keys(brokers, parts)?.len();
    assert_eq!(sent, f.eligible()?);

    let next = publish(f, kafka)?;
    let resolved = next.resolved.ok_or("the open attempt was not resolved")?;
    assert_eq!(
        (resolved.pseq, resolved.found, resolved.of),
        (1, sent as u64, sent as u64)
    );
    assert_eq!(next.records, 0, "nothing is sent twice");
    assert_eq!(keys(brokers, parts)?.len(), sent);
    Ok(())
}

#[test]
fn a_crash_between_the_commit_and_the_record_sends_nothing_twice() -> TestResult {
    let f = Fleet::new(80)?;
    let c = MockCluster::new(3)?;
    c.create_topic(TOPIC, 3, 3)?;
    let brokers = c.bootstrap_servers();
    crash_after_the_commit(&f, settings(&brokers, true), &brokers, 3)
}

#[test]
fn on_tansu_without_transactions_a_crash_after_delivery_sends_nothing_twice() -> TestResult {
    let Some(brokers) = util::broker() else {
        return Ok(());
    };
    let f = Fleet::new(60)?;
    // A topic of our own: other tests publish to the shared broker too.
    let topic = format!("catchup-{}", std::process::id());
    util::create_topic(&brokers, &topic)?;
    let mut kafka = settings(&brokers, false);
    kafka.topic = topic.clone();
    f.run(util::END - 30 * DAY)?;
    let state = State::open(&f.state())?;
    let reg = f.registry();
    drop(catchup::start(&request(&state, &reg, kafka.clone()))?);
    let next = publish(&f, kafka)?;
    let resolved = next.resolved.ok_or("not resolved")?;
    assert_eq!(resolved.found, resolved.of);
    assert_eq!(next.records, 0);
    let mut on_topic = keys_of(&brokers, &topic, 2)?;
    on_topic.sort();
    let n = on_topic.len();
    on_topic.dedup();
    assert_eq!(
        (n, on_topic.len()),
        (f.eligible()?, f.eligible()?),
        "every eligible member once"
    );
    Ok(())
}
