//! `score publish --state`: catch-up publication. One transaction sends
//! every eligible member whose record differs from the one last published
//! to the topic, so a failed or skipped publication is made up by the next
//! and an unchanged member is never sent again.
//!
//! Two phases, so a crash between them is never guessed at:
//! 1. [`start`]: resolve an earlier attempt left without an outcome, compute
//!    the changes, write the intent (create-if-absent), send, commit;
//! 2. [`Started::record`]: write the outcome.
//!
//! A process that dies after the broker's commit and before the outcome
//! leaves an intent alone. The next publisher fences the transactional id
//! (finishing whatever the coordinator still held open), then reads the
//! topic back from the intent's start offsets with read_committed and counts
//! the records carrying the intent's publication-id header: all of them
//! means it committed (nothing is sent again), none means it did not (its
//! members are still in the difference and are sent now).

use std::collections::HashSet;
use std::time::Instant;

use pitwall_contract::schemas;
use pitwall_contract::wire;
use pitwall_score_state::ops::now_ms;
use pitwall_score_state::published::{self, Intent, Outcome, Publications};
use pitwall_score_state::{MemberRecord, State, StateError};

use crate::PublishError;
use crate::consume;
use crate::kafka::{self, KafkaSettings, Session};
use crate::publish::{frame_all, register};
use crate::record::{Encoder, FactorRates, MemberScore, RecentRental};
use crate::registry::{Registry, RegistryError, WireFormat};

/// The header that names a publication on each of its records.
pub const PUBLICATION_HEADER: &str = "pitwall-publication";

pub struct StatePublishRequest<'a> {
    pub state: &'a State,
    pub registry: &'a dyn Registry,
    pub subject: &'a str,
    pub kafka: KafkaSettings,
    pub zlib: bool,
    pub wire: Option<WireFormat>,
    /// Members decoded, written and sent at a time (0: [`SEND_CHUNK`]): a
    /// first publication sends every member, and a pod holds a chunk.
    pub chunk: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Resolution {
    pub pseq: u64,
    /// Records of that attempt found on the topic, of how many it sent.
    pub found: u64,
    pub of: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatePublishReport {
    pub topic: String,
    /// The committed state run whose snapshot was published.
    pub state_seq: u64,
    pub run_id: String,
    /// This publication's number, None when there was nothing to send.
    pub pseq: Option<u64>,
    pub records: u64,
    pub bytes: u64,
    /// An earlier attempt left without an outcome, and what the topic said of it.
    pub resolved: Option<Resolution>,
    pub transactional: bool,
    pub millis: u64,
}

/// Sent and committed; the outcome is not recorded yet.
pub struct Started<'a> {
    pubs: Publications<'a>,
    report: StatePublishReport,
}

impl Started<'_> {
    /// Records the outcome: the publication is part of the topic's view.
    pub fn record(self) -> Result<StatePublishReport, PublishError> {
        if let Some(pseq) = self.report.pseq {
            let outcome = Outcome::Committed {
                at: pitwall_score_state::ops::rfc3339(now_ms()),
                millis: self.report.millis,
            };
            self.pubs.finish(pseq, &outcome)?;
        }
        Ok(self.report)
    }
}

pub fn publish_state(req: &StatePublishRequest<'_>) -> Result<StatePublishReport, PublishError> {
    start(req)?.record()
}

/// Phase one: everything up to the broker's commit.
pub fn start<'a>(req: &StatePublishRequest<'a>) -> Result<Started<'a>, PublishError> {
    let t = Instant::now();
    let head = req.state.head().cloned().ok_or(PublishError::EmptyState {
        state: req.state.url().to_string(),
    })?;
    let topic = req.kafka.topic.clone();
    let pubs = req.state.publications(&topic);
    let resolved = resolve_last(&pubs, &req.kafka)?;
    let (base, view) = pubs.view()?;
    let snapshot = req.state.load_snapshot()?;
    let changed = published::changed(&snapshot, &view)?;
    let mut report = StatePublishReport {
        topic: topic.clone(),
        state_seq: head.seq,
        run_id: head.run_id.clone(),
        pseq: None,
        records: 0,
        bytes: 0,
        resolved,
        transactional: req.kafka.transactional,
        millis: 0,
    };
    if changed.is_empty() {
        report.millis = t.elapsed().as_millis() as u64;
        return Ok(Started { pubs, report });
    }
    let (_, schema_ref) = register(req.registry, req.subject, req.wire)?;
    let pseq = pubs.last()?.map_or(1, |(i, _)| i.pseq + 1);
    let intent = Intent {
        pseq,
        topic: topic.clone(),
        state_seq: head.seq,
        run_id: head.run_id.clone(),
        base_pseq: base,
        publication_id: format!("{}-{pseq}-{:x}", head.run_id, now_ms()),
        records: changed.len() as u64,
        start_offsets: consume::end_offsets(&req.kafka)?,
        transactional: req.kafka.transactional,
        transactional_id: req.kafka.transactional_id.clone(),
        started_at: pitwall_score_state::ops::rfc3339(now_ms()),
    };
    let ids: Vec<String> = changed.iter().map(|c| c.0.clone()).collect();
    // A chunk of members decoded at a time, for the changes file and again
    // for sending: a first publication sends every member.
    let chunks = || {
        let chunk = if req.chunk == 0 {
            SEND_CHUNK
        } else {
            req.chunk
        };
        ids.chunks(chunk)
            .map(|c| published::records_of(&snapshot, c))
    };
    pubs.write_changes(pseq, &mut chunks())?;
    pubs.begin_written(&intent, &published::overlay_digests(&view, &changed))?;
    drop(view);
    match send(req, &intent, &mut chunks(), &head, schema_ref) {
        Ok(bytes) => {
            report.pseq = Some(pseq);
            report.records = changed.len() as u64;
            report.bytes = bytes;
        }
        Err(e) => {
            let outcome = Outcome::Aborted {
                at: pitwall_score_state::ops::rfc3339(now_ms()),
                reason: e.to_string(),
            };
            // Without a transaction some records may have landed: leave the
            // intent open, so the next publisher counts them on the topic.
            if req.kafka.transactional {
                pubs.finish(pseq, &outcome)?;
            }
            return Err(e);
        }
    }
    report.millis = t.elapsed().as_millis() as u64;
    Ok(Started { pubs, report })
}

/// An attempt without an outcome: what does the topic hold of it?
fn resolve_last(
    pubs: &Publications<'_>,
    settings: &KafkaSettings,
) -> Result<Option<Resolution>, PublishError> {
    let Some((intent, None)) = pubs.last()? else {
        return Ok(None);
    };
    let mut s = settings.clone();
    s.transactional_id = intent.transactional_id.clone();
    s.transactional = intent.transactional;
    kafka::fence(&s)?;
    let found: HashSet<String> = consume::keys_with_header(
        &s,
        &intent.start_offsets,
        PUBLICATION_HEADER,
        intent.publication_id.as_bytes(),
    )?;
    tracing::warn!(
        pseq = intent.pseq,
        found = found.len(),
        of = intent.records,
        "resolved a publication left without an outcome"
    );
    let outcome = pubs.resolve(&intent, &found)?;
    pubs.finish(intent.pseq, &outcome)?;
    Ok(Some(Resolution {
        pseq: intent.pseq,
        found: found.len() as u64,
        of: intent.records,
    }))
}

/// Members decoded, written and sent at a time by a catch-up publication.
pub const SEND_CHUNK: usize = 16 * 1024;

/// Sends the changes, a chunk at a time, in one transaction; returns the
/// framed bytes sent.
fn send(
    req: &StatePublishRequest<'_>,
    intent: &Intent,
    chunks: &mut dyn Iterator<Item = Result<Vec<MemberRecord>, StateError>>,
    head: &pitwall_score_state::Entry,
    schema_ref: wire::SchemaRef,
) -> Result<u64, PublishError> {
    let schema = schemas::member_score_v1().map_err(RegistryError::from)?;
    let encoder = Encoder::new(&schema)?;
    let mut session = Session::open(&req.kafka)?;
    session.set_header(PUBLICATION_HEADER, intent.publication_id.as_bytes());
    let (mut bytes, mut count) = (0u64, 0u64);
    let sent = (|| -> Result<(), PublishError> {
        for chunk in chunks {
            let changes = chunk?;
            let records: Vec<MemberScore<'_>> = changes.iter().map(|m| record(m, head)).collect();
            for framed in frame_all(&encoder, schema_ref, req.zlib, &records)? {
                bytes += framed.bytes();
                session.send(framed.iter())?;
            }
            count += changes.len() as u64;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        session.abort();
        return Err(e);
    }
    session.finish(count)?;
    Ok(bytes)
}

/// A member record as the Avro record of `member_score.v1`.
fn record<'a>(m: &'a MemberRecord, head: &'a pitwall_score_state::Entry) -> MemberScore<'a> {
    let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    let r = &m.score.rates;
    MemberScore {
        member_id: &m.member_id,
        eligible: m.score.eligible,
        status: m.score.status.as_str(),
        score: m.score.score,
        grade: m.score.grade.as_deref(),
        rentals_used: int(m.score.rentals_used.len()),
        rentals_12m: i32::try_from(m.score.rentals_12m).unwrap_or(i32::MAX),
        distance_km_total: m.score.distance_km_total,
        rates: FactorRates {
            harsh_accel_per_100km: r.harsh_accel_per_100km,
            harsh_brake_per_100km: r.harsh_brake_per_100km,
            unstable_stop_per_100km: r.unstable_stop_per_100km,
            speeding_pct: r.speeding_pct,
            excess_speeding_pct: r.excess_speeding_pct,
        },
        model: &head.model,
        as_of: head.as_of_ms,
        run_id: &head.run_id,
        recent_rentals: m
            .recent
            .iter()
            .map(|x| RecentRental {
                rental_id: &x.rental_id,
                end_at: x.end_at,
                distance_km: x.distance_km,
                score: x.score,
                grade: x.grade.as_deref(),
            })
            .collect(),
    }
}
