//! `score tail`: what was published, record by record, decoded against the
//! registry by the schema reference each frame carries (any version).
//!
//! A record that cannot be shown (an unknown magic byte, a schema version
//! the registry does not have, a value that is not its schema's) is
//! reported in its place and counted; it never ends the read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use pitwall_contract::wire::{self, SchemaRef, WireError};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::consume::{self, AuthConsumer};
use crate::kafka::{KafkaFailure, KafkaSettings, broker};
use crate::registry::{Registered, Registry, RegistryError};

/// Where in each partition to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Records published from now on.
    End,
    Beginning,
    /// The first record at or after this time (ms since the epoch).
    Since(i64),
}

pub struct TailRequest<'a> {
    pub kafka: &'a KafkaSettings,
    pub registry: &'a dyn Registry,
    /// Only this member's records (the key).
    pub member: Option<&'a str>,
    pub start: Start,
    /// Keep reading at the end instead of stopping there.
    pub follow: bool,
    /// Stop after this many records shown.
    pub max: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Kafka(#[from] KafkaFailure),
    #[error(
        "{0}; the records' schemas cannot be looked up: check --registry and that the registry is reachable"
    )]
    Registry(#[from] RegistryError),
    #[error(
        "{brokers} sent neither records nor the end of a partition for {timeout:?}; check that the brokers are up, or wait longer with --kafka-timeout"
    )]
    Silent { brokers: String, timeout: Duration },
}

/// Which schema version decoded a record.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaInfo {
    pub subject: String,
    pub version: u32,
    /// The frame's reference: `glue:UUID` or `confluent:ID`.
    pub reference: String,
}

/// Why a record could not be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Neither Glue's header byte 3 nor Confluent's magic byte 0.
    UnknownMagicByte,
    /// A frame whose schema version the registry does not hold.
    UnknownSchemaVersion,
    /// A frame, but its body is not a value of its schema (or a broken frame).
    Undecodable,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::UnknownMagicByte => "unknown_magic_byte",
            Problem::UnknownSchemaVersion => "unknown_schema_version",
            Problem::Undecodable => "undecodable",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Body {
    Value {
        schema: SchemaInfo,
        value: serde_json::Value,
    },
    /// A null value: on a compacted topic, the key's deletion.
    Tombstone {
        tombstone: bool,
    },
    Bad {
        problem: Problem,
        error: String,
    },
}

/// One record as read.
#[derive(Debug, Clone, Serialize)]
pub struct Tailed {
    pub key: Option<String>,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp, RFC 3339, when the broker gave one.
    pub timestamp: Option<String>,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TailSummary {
    pub topic: String,
    pub partitions: usize,
    /// Records read from the topic (committed ones: read_committed).
    pub read: u64,
    /// Records handed to the caller: decoded, tombstones and bad ones.
    pub shown: u64,
    pub decoded: u64,
    pub tombstones: u64,
    /// Records of other members, with `--member`.
    pub other_members: u64,
    /// Records stamped before `--since`, skipped: the broker's offset for a
    /// time may come earlier (tansu answers 0 when no record is that late),
    /// and producers' timestamps need not increase.
    pub before_since: u64,
    pub problems: BTreeMap<Problem, u64>,
    /// end (every partition read to its end), max, or interrupted.
    pub stopped: &'static str,
}

type Found = Arc<(Registered, Schema)>;
type Cached = Option<Found>;
/// A schema, or the problem to report in the record's place.
type Lookup = Result<Found, (Problem, String)>;

/// Schemas by reference, each looked up once.
struct Schemas<'a> {
    registry: &'a dyn Registry,
    known: HashMap<SchemaRef, Cached>,
}

impl Schemas<'_> {
    fn get(&mut self, r: SchemaRef) -> Result<Lookup, RegistryError> {
        if !self.known.contains_key(&r) {
            let found = match self.registry.resolve(r)? {
                Some(reg) => Schema::parse_str(&reg.schema)
                    .ok()
                    .map(|s| Arc::new((reg, s))),
                None => None,
            };
            self.known.insert(r, found);
        }
        if let Some(s) = self.known.get(&r).cloned().flatten() {
            return Ok(Ok(s));
        }
        let name = self.registry.name();
        let hint = match r {
            SchemaRef::Glue(_) if name.starts_with("confluent:") => {
                "; a Glue frame: its schema is in a Glue registry (--registry glue:NAME)"
            }
            SchemaRef::Confluent(_) if name.starts_with("glue:") => {
                "; a Confluent frame: its schema is in a Confluent registry (--registry confluent:URL)"
            }
            _ => "",
        };
        Ok(Err((
            Problem::UnknownSchemaVersion,
            format!("{r} is not in {name} (or is not a valid Avro schema there){hint}"),
        )))
    }
}

/// Reads the topic and hands each record (of `member`, if given) to
/// `show` until the end, `max`, or `stop` being set.
pub fn tail(
    req: &TailRequest<'_>,
    stop: &AtomicBool,
    mut show: impl FnMut(&Tailed),
) -> Result<TailSummary, TailError> {
    let s = req.kafka;
    let consumer = consume::consumer(s, "pitwall-score-tail", true)?;
    let parts = consume::partitions(s, &consumer)?;
    assign(s, &consumer, &parts, req.start)?;
    let mut schemas = Schemas {
        registry: req.registry,
        known: HashMap::new(),
    };
    let mut sum = TailSummary {
        topic: s.topic.clone(),
        partitions: parts.len(),
        ..TailSummary::default()
    };
    let mut at_end = HashSet::new();
    let mut heard = Instant::now();
    sum.stopped = loop {
        if stop.load(Ordering::Relaxed) {
            break "interrupted";
        }
        if req.max.is_some_and(|m| sum.shown >= m) {
            break "max";
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                heard = Instant::now();
                at_end.insert(p);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "Reading the topic: {e}"),
            Some(Ok(m)) => {
                heard = Instant::now();
                at_end.remove(&m.partition());
                sum.read += 1;
                let stamped = m.timestamp().to_millis();
                if let (Start::Since(t), Some(ts)) = (req.start, stamped)
                    && ts < t
                {
                    sum.before_since += 1;
                    continue;
                }
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                if req.member.is_some_and(|want| key.as_deref() != Some(want)) {
                    sum.other_members += 1;
                    continue;
                }
                let t = record(&m, key, &mut schemas)?;
                count(&mut sum, &t.body);
                show(&t);
            }
        }
        if !req.follow && at_end.len() == parts.len() {
            break "end";
        }
        if !req.follow && heard.elapsed() > s.timeout {
            return Err(TailError::Silent {
                brokers: s.brokers.clone(),
                timeout: s.timeout,
            });
        }
    };
    Ok(sum)
}

fn assign(
    s: &KafkaSettings,
    consumer: &AuthConsumer,
    parts: &[i32],
    start: Start,
) -> Result<(), KafkaFailure> {
    let offset = match start {
        Start::End => Offset::End,
        Start::Beginning => Offset::Beginning,
        Start::Since(ms) => Offset::Offset(ms),
    };
    let mut tpl = TopicPartitionList::new();
    for &p in parts {
        tpl.add_partition_offset(&s.topic, p, offset)
            .map_err(broker("assigning partitions"))?;
    }
    if matches!(start, Start::Since(_)) {
        // The offsets here are times; the broker answers each partition's
        // first offset at or after it (End when there is none).
        tpl = consumer
            .offsets_for_times(tpl, s.timeout)
            .map_err(broker("looking up offsets by time"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(broker("assigning partitions"))
}

fn count(sum: &mut TailSummary, body: &Body) {
    sum.shown += 1;
    match body {
        Body::Value { .. } => sum.decoded += 1,
        Body::Tombstone { .. } => sum.tombstones += 1,
        Body::Bad { problem, .. } => *sum.problems.entry(*problem).or_default() += 1,
    }
}

fn record(
    m: &BorrowedMessage<'_>,
    key: Option<String>,
    schemas: &mut Schemas<'_>,
) -> Result<Tailed, RegistryError> {
    let body = match m.payload() {
        None => Body::Tombstone { tombstone: true },
        Some(bytes) => match decode(bytes, schemas)? {
            Ok((schema, value)) => Body::Value { schema, value },
            Err((problem, error)) => Body::Bad { problem, error },
        },
    };
    Ok(Tailed {
        key,
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m
            .timestamp()
            .to_millis()
            .map(pitwall_score_state::ops::rfc3339),
        body,
    })
}

type Decoded = Result<(SchemaInfo, serde_json::Value), (Problem, String)>;

/// The value of one framed record, or why there is none.
fn decode(bytes: &[u8], schemas: &mut Schemas<'_>) -> Result<Decoded, RegistryError> {
    let (reference, datum) = match wire::unframe(bytes) {
        Ok(x) => x,
        Err(e @ WireError::UnknownHeader(_)) => {
            return Ok(Err((Problem::UnknownMagicByte, e.to_string())));
        }
        Err(e) => return Ok(Err((Problem::Undecodable, e.to_string()))),
    };
    let found = match schemas.get(reference)? {
        Ok(f) => f,
        Err(problem) => return Ok(Err(problem)),
    };
    let (registered, schema) = (&found.0, &found.1);
    let undecodable = |why: String| {
        Err((
            Problem::Undecodable,
            format!(
                "not a value of {} version {} ({reference}): {why}",
                registered.subject, registered.version
            ),
        ))
    };
    let mut rest = datum.as_slice();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema).build();
    let value = match reader.and_then(|r| r.read_value(&mut rest)) {
        Ok(v) => v,
        Err(e) => return Ok(undecodable(e.to_string())),
    };
    if !rest.is_empty() {
        return Ok(undecodable(format!(
            "{} bytes left after the value",
            rest.len()
        )));
    }
    let value = match serde_json::Value::try_from(value) {
        Ok(v) => v,
        Err(e) => return Ok(undecodable(e.to_string())),
    };
    let info = SchemaInfo {
        subject: registered.subject.clone(),
        version: registered.version,
        reference: match reference {
            SchemaRef::Glue(id) => format!("glue:{id}"),
            SchemaRef::Confluent(id) => format!("confluent:{id}"),
        },
    };
    Ok(Ok((info, value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{FileRegistry, check_and_register};
    use apache_avro::types::Value;

    const SCHEMA: &str = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"string"},{"name":"n","type":"long"}]}"#;

    fn datum(a: &str, n: i64) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).expect("schema");
        let v = Value::Record(vec![
            ("a".into(), Value::String(a.into())),
            ("n".into(), Value::Long(n)),
        ]);
        apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .and_then(|w| w.write_value_to_vec(v))
            .expect("datum")
    }

    fn registered(dir: &std::path::Path) -> (FileRegistry, Registered) {
        let reg = FileRegistry::new(dir);
        let r = match check_and_register(&reg, "s-value", SCHEMA, None, true).expect("register") {
            crate::registry::Outcome::Registered(r) => r,
            other => panic!("{other:?}"),
        };
        (reg, r)
    }

    fn decoded(reg: &FileRegistry, bytes: &[u8]) -> Decoded {
        let mut schemas = Schemas {
            registry: reg,
            known: HashMap::new(),
        };
        decode(bytes, &mut schemas).expect("registry readable")
    }

    #[test]
    fn glue_confluent_and_zlib_frames_decode_by_their_reference() {
        let dir = tempfile::tempdir().expect("dir");
        let (reg, r) = registered(dir.path());
        let (uuid, id) = (r.version_id.expect("uuid"), r.schema_id.expect("id"));
        let d = datum("x", -3);
        for frame in [
            wire::glue(uuid, &d, false),
            wire::glue(uuid, &d, true),
            wire::confluent(id, &d),
        ] {
            let (info, value) = decoded(&reg, &frame).expect("decoded");
            assert_eq!((info.subject.as_str(), info.version), ("s-value", 1));
            assert_eq!(value, serde_json::json!({"a": "x", "n": -3}));
        }
        let (info, _) = decoded(&reg, &wire::confluent(id, &d)).expect("decoded");
        assert_eq!(info.reference, format!("confluent:{id}"));
    }

    #[test]
    fn each_problem_is_named_not_raised() {
        let dir = tempfile::tempdir().expect("dir");
        let (reg, r) = registered(dir.path());
        let uuid = r.version_id.expect("uuid");
        let problem = |bytes: &[u8]| decoded(&reg, bytes).expect_err("a problem").0;
        assert_eq!(problem(b"{\"json\":1}"), Problem::UnknownMagicByte);
        assert_eq!(
            problem(&wire::confluent(999, &datum("x", 1))),
            Problem::UnknownSchemaVersion
        );
        assert_eq!(
            problem(&wire::glue(uuid::Uuid::nil(), &datum("x", 1), false)),
            Problem::UnknownSchemaVersion
        );
        let d = datum("x", 1);
        assert_eq!(
            problem(&wire::glue(uuid, &d[..1], false)),
            Problem::Undecodable
        );
        let mut long = d.clone();
        long.push(0);
        let (p, why) = decoded(&reg, &wire::glue(uuid, &long, false)).expect_err("trailing");
        assert_eq!(p, Problem::Undecodable);
        assert!(
            why.contains("1 bytes left") && why.contains("s-value version 1"),
            "{why}"
        );
        assert_eq!(problem(&[3]), Problem::Undecodable);
        assert_eq!(problem(&[]), Problem::Undecodable);
    }

    #[test]
    fn a_reference_is_looked_up_once() {
        let dir = tempfile::tempdir().expect("dir");
        let (reg, r) = registered(dir.path());
        let mut schemas = Schemas {
            registry: &reg,
            known: HashMap::new(),
        };
        let frame = wire::confluent(r.schema_id.expect("id"), &datum("x", 1));
        assert!(decode(&frame, &mut schemas).expect("ok").is_ok());
        std::fs::remove_dir_all(dir.path()).expect("rm");
        assert!(
            decode(&frame, &mut schemas).expect("ok").is_ok(),
            "served from the cache"
        );
    }
}
