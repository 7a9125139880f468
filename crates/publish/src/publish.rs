//! Publishing one score run: the policies that keep scores correct, in the
//! order they are checked — a held run is not published, a run is published
//! once per topic, the records must be exactly the eligible members the run
//! computed, the schema must be compatible — then one transaction.

use std::path::Path;

use pitwall_contract::schemas::{self, MEMBER_SCORE_V1};
use pitwall_contract::wire::{self, SchemaRef};

use crate::kafka::{KafkaFailure, KafkaSettings, Session};
use crate::ledger::{Entry, Event, Ledger};
use crate::record::{Encoder, MemberScore, RecordError, member_batches, read_run_info};
use crate::registry::{
    Outcome, Registered, Registry, RegistryError, WireFormat, check_and_register,
};

pub struct PublishRequest<'a> {
    pub run_dir: &'a Path,
    pub registry: &'a dyn Registry,
    pub subject: &'a str,
    pub kafka: KafkaSettings,
    /// Publish a held run, or a run already published to this topic; recorded in the ledger.
    pub force: bool,
    /// zlib-compress Glue frames (compression byte 5).
    pub zlib: bool,
    /// Wire format; default: what the registry's consumers expect.
    pub wire: Option<WireFormat>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PublishReport {
    pub run_id: String,
    pub topic: String,
    pub records: u64,
    /// Framed value bytes sent (keys excluded).
    pub bytes: u64,
    pub schema_subject: String,
    pub schema_version: u32,
    pub forced: bool,
    pub transactional: bool,
    pub millis: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(
        "run {run_id} is held by a quality gate (see its run.json); it is not published unless --force is given, which the ledger records"
    )]
    Held { run_id: String },
    #[error(
        "run {run_id} was already published to {topic} ({records} records); publishing it again needs --force"
    )]
    AlreadyPublished {
        run_id: String,
        topic: String,
        records: u64,
    },
    #[error(
        "delivery accounting: run.json counts {expected} eligible members but {found} records were built; the run's outputs are inconsistent, nothing was sent"
    )]
    Accounting { expected: u64, found: u64 },
    #[error(
        "registry {registry} gave no {format:?} id for the schema; choose the other --wire format"
    )]
    NoSchemaId {
        registry: String,
        format: WireFormat,
    },
    #[error("cannot write the publication ledger {path}: {source}")]
    Ledger {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Kafka(#[from] KafkaFailure),
    #[error(transparent)]
    State(#[from] pitwall_score_state::StateError),
    #[error(
        "the score state {state} has no committed run: run `pitwall score run --state {state}` first"
    )]
    EmptyState { state: String },
}

pub fn publish(req: &PublishRequest<'_>) -> Result<PublishReport, PublishError> {
    let run = read_run_info(req.run_dir)?;
    let topic = req.kafka.topic.clone();
    if run.status == "held" && !req.force {
        return Err(PublishError::Held { run_id: run.run_id });
    }
    let ledger = Ledger::at(req.run_dir);
    let ledger_err = |source| PublishError::Ledger {
        path: ledger.path().display().to_string(),
        source,
    };
    if let Some(done) = ledger.committed(&run.run_id, &topic).map_err(ledger_err)?
        && !req.force
    {
        return Err(PublishError::AlreadyPublished {
            run_id: run.run_id,
            topic,
            records: done.records,
        });
    }
    if run.eligible_rows != run.eligible_in_run {
        return Err(PublishError::Accounting {
            expected: run.eligible_in_run,
            found: run.eligible_rows,
        });
    }

    let (registered, schema_ref) = register(req.registry, req.subject, req.wire)?;
    let schema = schemas::member_score_v1().map_err(RegistryError::from)?;
    let encoder = Encoder::new(&schema)?;

    let entry = |event, detail: Option<String>| Entry {
        run_id: run.run_id.clone(),
        topic: topic.clone(),
        brokers: req.kafka.brokers.clone(),
        event,
        records: run.eligible_rows,
        forced: req.force,
        transactional: req.kafka.transactional,
        at_ms: now_ms(),
        schema: Some(format!("{}@{}", registered.subject, registered.version)),
        detail,
    };
    ledger
        .append(&entry(Event::Started, None))
        .map_err(ledger_err)?;
    let failed = |e: PublishError| {
        let event = if req.kafka.transactional {
            Event::Aborted
        } else {
            Event::Failed
        };
        match ledger.append(&entry(event, Some(e.to_string()))) {
            Ok(()) => e,
            Err(source) => PublishError::Ledger {
                path: ledger.path().display().to_string(),
                source,
            },
        }
    };
    let session = Session::open(&req.kafka).map_err(|e| failed(e.into()))?;
    // Read, encode and send batch by batch: librdkafka sends one batch while the next is encoded.
    let mut bytes = 0u64;
    let sent = (|| -> Result<(), PublishError> {
        for batch in member_batches(req.run_dir)? {
            let batch = batch?;
            let records = batch.records(&run.run_id);
            for framed in frame_all(&encoder, schema_ref, req.zlib, &records)? {
                bytes += framed.bytes();
                session.send(framed.iter())?;
            }
        }
        Ok(())
    })();
    if let Err(e) = sent {
        session.abort();
        return Err(failed(e));
    }
    let produced = session
        .finish(run.eligible_rows)
        .map_err(|e| failed(e.into()))?;
    ledger
        .append(&entry(Event::Committed, None))
        .map_err(ledger_err)?;
    Ok(PublishReport {
        run_id: run.run_id.clone(),
        topic,
        records: produced.records,
        bytes,
        schema_subject: registered.subject,
        schema_version: registered.version,
        forced: req.force,
        transactional: req.kafka.transactional,
        millis: produced.millis,
    })
}

/// Checks the member-score schema against the subject, registers it when
/// new, and gives the id its frames carry in `wire` (default: the registry's).
pub(crate) fn register(
    registry: &dyn Registry,
    subject: &str,
    wire: Option<WireFormat>,
) -> Result<(Registered, SchemaRef), PublishError> {
    let registered = match check_and_register(registry, subject, MEMBER_SCORE_V1, None, true)? {
        Outcome::AlreadyRegistered(r) | Outcome::Registered(r) => r,
        Outcome::Compatible { .. } => {
            let problem = "answered 'compatible' to a registration without registering".to_string();
            return Err(RegistryError::Backend {
                registry: registry.name(),
                problem,
            }
            .into());
        }
    };
    let format = wire.unwrap_or_else(|| registry.wire_format());
    let schema_ref = registered
        .wire_ref(format)
        .ok_or(PublishError::NoSchemaId {
            registry: registry.name(),
            format,
        })?;
    Ok((registered, schema_ref))
}

/// Framed records in one buffer; keys borrow from the batch. One buffer per
/// chunk instead of two allocations per record.
pub(crate) struct Framed<'a> {
    keys: Vec<&'a str>,
    ends: Vec<usize>,
    buf: Vec<u8>,
}

impl<'a> Framed<'a> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'a str, &[u8])> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.keys
            .iter()
            .zip(starts.zip(self.ends.iter().copied()))
            .map(|(k, (s, e))| (*k, &self.buf[s..e]))
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.buf.len() as u64
    }
}

/// Encodes and frames records, one chunk per core: encoding is CPU-bound
/// and independent per record.
pub(crate) fn frame_all<'a>(
    encoder: &Encoder,
    schema_ref: SchemaRef,
    zlib: bool,
    records: &[MemberScore<'a>],
) -> Result<Vec<Framed<'a>>, PublishError> {
    let frame_chunk = |part: &[MemberScore<'a>]| -> Result<Framed<'a>, RecordError> {
        let mut out = Framed {
            keys: Vec::with_capacity(part.len()),
            ends: Vec::with_capacity(part.len()),
            buf: Vec::with_capacity(part.len() * 600),
        };
        let mut datum = Vec::with_capacity(1024);
        for r in part {
            datum.clear();
            encoder.encode(r, &mut datum)?;
            match schema_ref {
                SchemaRef::Glue(id) => wire::glue_into(id, &datum, zlib, &mut out.buf),
                SchemaRef::Confluent(id) => wire::confluent_into(id, &datum, &mut out.buf),
            }
            out.keys.push(r.member_id);
            out.ends.push(out.buf.len());
        }
        Ok(out)
    };
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1);
    let chunk = records.len().div_ceil(workers).max(1);
    let parts: Vec<Result<Framed<'a>, RecordError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || frame_chunk(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(RecordError::Encode {
                        member: "-".into(),
                        problem: "an encoding thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    Ok(parts.into_iter().collect::<Result<_, _>>()?)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
