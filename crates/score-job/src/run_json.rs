//! run.json: what a run read, rejected, decided and wrote — the machine
//! readable account an on-call engineer or a scheduler reads first.

use std::collections::BTreeMap;
use std::path::Path;

use pitwall_score::contract::{RentalRule, TelemetryRule};
use pitwall_score::gates::{self, GateInputs, GateResult};
use serde::Serialize;

use pitwall_score::Rental;

use crate::rejects::RuleReport;
use crate::rentals::RentalInput;
use crate::scoring::Scored;
use crate::telemetry::{ReadCounts, TelemetryStats};
use crate::{JobConfig, JobError, names};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    /// A quality gate failed: outputs are written but must not be published.
    Held,
}

#[derive(Debug, Serialize)]
pub struct RunJson {
    pub run_id: String,
    pub status: RunStatus,
    pub held_because: Vec<String>,
    /// What the run noticed but went on with (an input location that does
    /// not exist yet), also logged at warn.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub as_of: String,
    pub pitwall_version: &'static str,
    pub model: ModelInfo,
    pub inputs: Inputs,
    pub rejected: Rejections,
    pub rentals: RentalCounts,
    pub members: MemberCounts,
    pub gates: Vec<GateResult>,
    /// With `--state`: what the run evaluated, made final and committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<StateReport>,
    pub timings_ms: Timings,
    pub outputs: BTreeMap<&'static str, String>,
    /// With `--claims`: how the model in use ranks the results' claims.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims_review: Option<pitwall_fit_job::review::Review>,
    /// With `--claims`: why the review could not be made (the run itself stands).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims_review_error: Option<String>,
    /// With `--state`: for each rental made final, when the newest lake
    /// file holding its samples was written (ms), for a watcher's freshness.
    #[serde(skip)]
    pub made_final_landed_ms: Vec<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StateReport {
    pub location: String,
    /// The committed run this one started from (None: an empty state).
    pub parent_seq: Option<u64>,
    /// This run's seq in the run log, once committed.
    pub seq: Option<u64>,
    pub committed: bool,
    /// Why not, when the run was not committed.
    pub not_committed_because: Option<String>,
    pub forced: bool,
    pub rescore: Option<(String, String)>,
    pub model_change: Option<String>,
    pub counts: pitwall_score_state::Counts,
    /// What the run read and wrote of the state itself, beside what it
    /// read of the telemetry (`inputs.telemetry_read`).
    pub state_io: StateIo,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StateIo {
    /// State files read (tables, not the run log) and their bytes.
    pub files_read: u64,
    pub bytes_read: u64,
    /// Members' rentals read of the snapshot's rentals files (a run reads
    /// those of the members it recomputes; a compaction copies them all),
    /// and their bytes.
    pub snapshot_rentals_read: u64,
    pub snapshot_rental_bytes_read: u64,
    /// Final results loaded.
    pub final_rows_read: u64,
    /// Member snapshot rows read: the base's and the deltas'.
    pub snapshot_base_rows_read: u64,
    pub snapshot_delta_rows_read: u64,
    /// Delta files merged into the snapshot as read.
    pub deltas_merged: u64,
    /// This run wrote the member snapshot as one new base (deltas past a
    /// share of it, a model change, or a first run).
    pub compacted: bool,
    /// The snapshot was the one this process committed last (`score
    /// watch`), not read from the state.
    pub snapshot_in_memory: bool,
    /// Member records written into the state.
    pub member_rows_written: u64,
    /// The state format this run upgraded from.
    pub upgraded_from: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ModelInfo {
    pub id: String,
    pub source: String,
    pub grace: String,
    /// A rental is final only once a sample this close to end_at is in.
    pub tail_within: String,
}

#[derive(Debug, Serialize)]
pub struct Inputs {
    pub rentals: InputCounts,
    pub telemetry: InputCounts,
    /// Valid telemetry rows inside a considered rental.
    pub telemetry_in_rentals: u64,
    /// Valid telemetry rows outside every considered rental (not used).
    pub telemetry_outside_rentals: u64,
    /// Repeated (car_id, ts) samples inside rentals, counted once.
    pub telemetry_duplicates: u64,
    /// What the telemetry pass listed, opened and left out.
    pub telemetry_read: ReadCounts,
}

#[derive(Debug, Serialize)]
pub struct InputCounts {
    pub location: String,
    pub files: usize,
    pub rows: u64,
    pub valid: u64,
    pub rejected: u64,
}

#[derive(Debug, Serialize)]
pub struct Rejections {
    pub rentals: BTreeMap<&'static str, RuleReport>,
    pub telemetry: BTreeMap<&'static str, RuleReport>,
    /// Rejected rows beyond the per-file bound, counted but not kept.
    pub rows_not_kept: u64,
}

#[derive(Debug, Serialize)]
pub struct RentalCounts {
    pub valid: usize,
    pub considered: usize,
    pub not_yet_ended: usize,
    pub by_status: BTreeMap<&'static str, u64>,
    pub by_reason: BTreeMap<&'static str, u64>,
    /// How far before end_at the assessed rentals' last samples fall, to
    /// choose `completeness.tail_within` from.
    pub last_sample_before_end: crate::tail::TailGaps,
}

#[derive(Debug, Serialize)]
pub struct MemberCounts {
    pub total: usize,
    pub eligible: usize,
    pub by_status: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Timings {
    pub read_rentals_ms: u64,
    pub read_telemetry_ms: u64,
    pub score_rentals_ms: u64,
    pub score_members_ms: u64,
    pub write_ms: u64,
    pub total_ms: u64,
}

/// What run.json is built from.
pub struct Facts<'a> {
    pub cfg: &'a JobConfig,
    pub input: &'a RentalInput,
    /// The rentals assessed, and their assessments.
    pub rentals: &'a [Rental],
    pub scored: &'a Scored,
    pub telemetry: &'a TelemetryStats,
    pub members: &'a crate::members::MemberStats,
    /// The members' scores against the previous run's, for the drift gates.
    pub drift: Option<pitwall_score::gates::Drift>,
    /// With a state: the gate inputs only a state run has.
    pub state: Option<StateGates>,
}

/// Gate inputs of a state run.
#[derive(Debug, Clone, Copy)]
pub struct StateGates {
    /// (pending, assessed) among the rentals that ended over an hour
    /// before as_of: the newest are always still arriving.
    pub pending: (u64, u64),
    /// (made final, of those insufficient_coverage).
    pub made_final: (u64, u64),
}

pub fn build(f: Facts<'_>) -> RunJson {
    let Facts {
        cfg,
        input: rentals,
        telemetry,
        scored,
        members,
        ..
    } = f;
    let mut by_status = BTreeMap::new();
    let mut by_reason = BTreeMap::new();
    for a in scored.assessments.iter().flatten() {
        *by_status.entry(a.status.as_str()).or_default() += 1;
        if let Some(r) = a.reason {
            *by_reason.entry(r.as_str()).or_default() += 1;
        }
    }
    let considered = scored.assessments.iter().flatten().count();
    let (pending, judged) = f.state.map_or(
        (
            by_status.get("pending").copied().unwrap_or(0),
            considered as u64,
        ),
        |s| s.pending,
    );
    let gate_inputs = GateInputs {
        telemetry_rows: telemetry.rows,
        rejected_telemetry_rows: telemetry.rejects.total(),
        considered_rentals: judged,
        pending_rentals: pending,
        days_without_telemetry: days_without_telemetry(f.rentals, scored, &telemetry.days),
        drift: f.drift,
        made_final: f.state.map(|s| s.made_final),
    };
    let gates = gates::evaluate(&cfg.gates, &gate_inputs);
    let held_because: Vec<String> = gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| format!("{}: {}", g.gate, g.detail))
        .collect();
    RunJson {
        run_id: run_id(cfg, telemetry.read.files_listed as usize, telemetry.rows),
        status: if held_because.is_empty() {
            RunStatus::Ok
        } else {
            RunStatus::Held
        },
        held_because,
        warnings: Vec::new(),
        as_of: rfc3339(cfg.as_of),
        pitwall_version: env!("CARGO_PKG_VERSION"),
        model: ModelInfo {
            id: cfg.model.id(),
            source: cfg.model_source.clone(),
            grace: humantime_ms(cfg.grace_ms()),
            tail_within: humantime::format_duration(cfg.model.completeness.tail_within).to_string(),
        },
        inputs: Inputs {
            rentals: InputCounts {
                location: cfg.rentals.clone(),
                files: rentals.files,
                rows: rentals.rows,
                valid: rentals.rentals.len() as u64,
                rejected: rentals.rejects.total(),
            },
            telemetry: InputCounts {
                location: cfg.telemetry.clone(),
                files: telemetry.files,
                rows: telemetry.rows,
                valid: telemetry.valid,
                rejected: telemetry.rejects.total(),
            },
            telemetry_in_rentals: telemetry.in_rentals,
            telemetry_outside_rentals: telemetry.outside_rentals,
            telemetry_duplicates: scored.duplicates,
            telemetry_read: telemetry.read.clone(),
        },
        rejected: Rejections {
            rentals: rentals.rejects.report(describe_rental_rule),
            telemetry: telemetry.rejects.report(describe_telemetry_rule),
            rows_not_kept: rentals.rejects.not_kept + telemetry.rejects.not_kept,
        },
        rentals: RentalCounts {
            valid: rentals.rentals.len(),
            considered,
            not_yet_ended: rentals
                .rentals
                .iter()
                .filter(|r| !pitwall_score::rental::is_considered(r, cfg.as_of))
                .count(),
            by_status,
            by_reason,
            last_sample_before_end: crate::tail::TailGaps::of(f.rentals, scored),
        },
        members: MemberCounts {
            total: members.total,
            eligible: members.eligible,
            by_status: members.by_status.clone(),
        },
        gates,
        state: None,
        timings_ms: Timings::default(),
        outputs: BTreeMap::new(),
        claims_review: None,
        claims_review_error: None,
        made_final_landed_ms: Vec::new(),
    }
}

fn describe_rental_rule(rule: &str) -> &'static str {
    RentalRule::ALL
        .iter()
        .find(|r| r.as_str() == rule)
        .map_or("", |r| r.describe())
}

fn describe_telemetry_rule(rule: &str) -> &'static str {
    TelemetryRule::ALL
        .iter()
        .find(|r| r.as_str() == rule)
        .map_or("", |r| r.describe())
}

/// Days touched by a considered rental on which no valid telemetry arrived at all.
fn days_without_telemetry(
    rentals: &[Rental],
    scored: &Scored,
    days: &std::collections::BTreeSet<i64>,
) -> Vec<String> {
    let mut rental_days = std::collections::BTreeSet::new();
    for (r, a) in rentals.iter().zip(&scored.assessments) {
        if a.is_some() {
            rental_days.extend(r.start_at.div_euclid(DAY_MS)..=r.end_at.div_euclid(DAY_MS));
        }
    }
    rental_days
        .difference(days)
        .map(|&d| rfc3339(d * DAY_MS)[..10].to_string())
        .collect()
}

/// Stable for the same inputs, model and as_of, so a re-run of the same
/// work carries the same id (the publisher's ledger keys on it).
pub(crate) fn run_id(cfg: &JobConfig, files: usize, rows: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let key = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        cfg.rentals,
        cfg.telemetry,
        cfg.as_of,
        cfg.model.id(),
        cfg.grace_ms(),
        files,
        rows
    );
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let stamp = chrono::DateTime::from_timestamp_millis(cfg.as_of)
        .map_or_else(String::new, |t| t.format("%Y%m%dT%H%M%SZ").to_string());
    format!("score-{stamp}-{:08x}", h as u32)
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn humantime_ms(ms: i64) -> String {
    let s = ms / 1000;
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

pub fn write(out: &Path, run: &RunJson) -> Result<(), JobError> {
    let path = out.join(names::RUN_JSON);
    let text = serde_json::to_vec_pretty(run).map_err(|e| JobError::Write {
        path: path.display().to_string(),
        problem: e.to_string(),
    })?;
    pitwall_lake::write_bytes(&path, &text)?;
    Ok(())
}
