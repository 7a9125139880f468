//! `score run --state`: one incremental step of `score-state.md`. The run
//! evaluates the open rentals, those that ended since, and a rescore's
//! range; reads only the telemetry that can hold their samples; merges what
//! became final into the state; recomputes every member from the final
//! results; and commits by one create-if-absent log entry.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::RecordBatch;

use pitwall_lake::Location;
use pitwall_score::rental::{self as rental, is_considered};
use pitwall_score::{Reason, Rental, Status};
use pitwall_score_state::{
    Counts, Entry, EntryKind, FinalTable, Finality, MemberRecord, ModelChange, ResultRow, Snapshot,
    State,
};

use pitwall_score::member_part::FinalPart;
use pitwall_score_state::days::{FinalDays, day_of, days_between};
use pitwall_score_state::member_file::{self, Rentals};
use pitwall_score_state::{Kept, recompute, snapshot};

use pitwall_score::gates::Drift;

use crate::members::MemberStats;

use crate::plan::{ReadPlan, Spans};
use crate::run_json::{self, RunJson, RunStatus, StateGates, StateReport, rfc3339};
use crate::scoring::Scored;
use crate::telemetry::Cars;
use crate::{JobConfig, JobError, Progress, names, outputs, rentals, report};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// How far back a run looks for samples arriving for final rentals: a
/// rental lasts at most 7 days, and the grace period is hours.
const LATE_LOOKBACK_MS: i64 = 8 * DAY_MS;
/// How far past an evaluated rental's end the run reads its car's samples:
/// a later sample (the car parked, its next trip) brings the rental's tail
/// in when its own last seconds never come. Later evidence is not looked
/// for: such a rental waits for the grace, as the spec allows.
const TAIL_LOOKAHEAD_MS: i64 = HOUR_MS;

/// What `--state` and its companions ask for.
#[derive(Debug, Clone)]
pub struct StateOptions {
    pub location: String,
    /// `[from, to)`: final rentals that ended then are evaluated again.
    pub rescore: Option<(i64, i64)>,
    /// Accept a model other than the state's, and record the change.
    pub model_change: bool,
    /// Commit a run the quality gates held, and record that.
    pub force: bool,
    /// Asked right before the commit: false stops it (a watcher whose
    /// lease is no longer provably its own must not commit).
    pub fence: Option<Fence>,
    /// Also write the whole member snapshot, `member_scores.parquet`, into
    /// `--out` (the state always holds it; `score state export` writes it).
    pub write_snapshot: bool,
    /// When the member snapshot's deltas are written as one new base.
    pub compaction: pitwall_score_state::Compaction,
    /// The snapshot a long-running caller keeps between its runs.
    pub memory: Option<SnapshotMemory>,
}

/// The member snapshot as the last run of a long-running caller committed
/// it. `score watch` holds the state's lease, so nobody else commits: its
/// next cycle starts from this instead of reading the snapshot again, and
/// reads it again only when the state's head is not the run it committed.
#[derive(Clone, Default)]
pub struct SnapshotMemory(Arc<Mutex<Option<Remembered>>>);

/// The seq of the run that committed a snapshot, and the snapshot.
type Remembered = (u64, Arc<Snapshot>);

impl std::fmt::Debug for SnapshotMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotMemory")
    }
}

impl SnapshotMemory {
    /// The snapshot, when the state's head is the run that left it.
    fn get(&self, head: Option<u64>) -> Option<Arc<Snapshot>> {
        let held = self.0.lock().ok()?;
        match (&*held, head) {
            (Some((seq, s)), Some(h)) if *seq == h => Some(s.clone()),
            _ => None,
        }
    }

    fn set(&self, seq: u64, snapshot: Arc<Snapshot>) {
        if let Ok(mut held) = self.0.lock() {
            *held = Some((seq, snapshot));
        }
    }
}

/// The snapshot the state holds once this run committed: the new base it
/// wrote, the previous one and the delta it wrote, or the previous one.
fn after_commit(
    previous: &Arc<Snapshot>,
    written: Option<(RecordBatch, Rentals)>,
    compact: bool,
) -> Result<Arc<Snapshot>, JobError> {
    Ok(match written {
        Some((base, rentals)) if compact => {
            Arc::new(Snapshot::new((vec![base], rentals), Vec::new())?)
        }
        Some((delta, rentals)) => Arc::new(previous.with_delta(delta, rentals)?),
        None => previous.clone(),
    })
}

/// A check the run makes before it commits.
#[derive(Clone)]
pub struct Fence(pub std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

/// The rentals a run evaluates, and the final ones it watches for late samples.
struct Work {
    evaluated: Vec<Rental>,
    rescored: HashSet<String>,
    /// The days of the rescored rentals' final results.
    rescored_days: BTreeSet<i64>,
    recently_final: Vec<Rental>,
}

pub fn run(
    cfg: &JobConfig,
    opts: &StateOptions,
    progress: &dyn Progress,
) -> Result<RunJson, JobError> {
    let started = Instant::now();
    let mut timings = run_json::Timings::default();
    crate::create_out(cfg)?;
    let state = State::open(&opts.location)?.with_threads(cfg.threads);
    let head = state.head().cloned();
    // A state an older pitwall wrote is read as it is and written in this
    // format from this run on; the log entry records the upgrade.
    let upgraded_from = head
        .as_ref()
        .map(|h| h.format)
        .filter(|&f| f < pitwall_score_state::log::FORMAT);
    let seen = state.load_seen()?;
    let remembered = opts
        .memory
        .as_ref()
        .and_then(|m| m.get(head.as_ref().map(|h| h.seq)));
    let snapshot_in_memory = remembered.is_some();
    let previous = match remembered {
        Some(s) => s,
        None => Arc::new(state.load_snapshot()?),
    };
    // A kept snapshot has counted earlier cycles' reads too.
    let fetched_before = previous.fetched();
    let t = Instant::now();
    let input = rentals::read(&Location::parse(&cfg.rentals)?)?;
    timings.read_rentals_ms = crate::ms(t);

    // Of the final results, a run reads the days it can need; one that
    // rebuilds every member's final part reads them all.
    let rebuild = opts.rescore.is_some()
        || head.as_ref().is_some_and(|h| h.model != cfg.model.id())
        || previous.is_empty()
        || !previous.has_parts();
    let wanted = needed_days(cfg, &input.rentals, head.as_ref());
    let mut days = state.load_final_days(&|d| rebuild || wanted.contains(&d))?;
    let mut table = days.table()?;
    let final_rows_read = days.rows();
    let model_change = check(cfg, opts, head.as_ref(), &table)?;
    let work = work(cfg, opts, &input.rentals, &days, &table)?;

    let cars = Cars::new(&work.evaluated, |_| true);
    let late = Cars::new(&work.recently_final, |_| true);
    let plan = ReadPlan {
        wanted: Spans::new(
            cars.spans()
                .into_iter()
                .map(|(s, e)| (s, e.saturating_add(TAIL_LOOKAHEAD_MS)))
                .collect(),
        ),
        late: Some((&late, Spans::new(late.spans()))),
        seen: seen.as_ref(),
    };
    let t = Instant::now();
    let listing = Location::parse(&cfg.telemetry)?
        .list_pruned_if_exists(&[".parquet"], &|p| plan.lists(p))?;
    let mut warnings = Vec::new();
    if listing.is_empty_location() {
        // A fresh deployment scores before ingestion lands its first file:
        // that is an empty input, not a failed run.
        let w = format!(
            "no telemetry at {}: it does not exist yet or holds no .parquet file \
             (a lake nothing has landed in); the run reads 0 samples, and rentals \
             wait for their telemetry as usual",
            cfg.telemetry
        );
        tracing::warn!("{w}");
        warnings.push(w);
    }
    timings.read_telemetry_ms = crate::ms(t);
    let (mut telemetry, scored) = crate::read_and_score(
        cfg,
        &work.evaluated,
        &cars,
        &listing.files,
        &plan,
        progress,
        &mut timings,
    )?;
    telemetry.read.folders_listed = listing.folders_listed;
    telemetry.read.partitions_skipped = listing.partitions_skipped;

    let t = Instant::now();
    let draft = state.begin();
    let seq = draft.seq();
    let run_id = run_json::run_id(cfg, telemetry.read.files_listed as usize, telemetry.rows);
    // The caller's span (a watch cycle, a `score run`) declares run_id; from
    // here on its lines carry it.
    tracing::Span::current().record("run_id", run_id.as_str());
    let finality = Finality {
        seq,
        run_id: run_id.clone(),
        as_of: cfg.as_of,
    };
    let tail_in = |r: &Rental| rental::tail_is_in(cars.latest(&telemetry, r), r.end_at, &cfg.model);
    let Split {
        mut made_final,
        mut open,
        awaiting_tail,
    } = split(cfg, &work.evaluated, &scored, &finality, &tail_in);
    made_final.sort_by(|a, b| a.rental.rental_id.cmp(&b.rental.rental_id));
    let touched = days.apply(&made_final, &work.rescored, &work.rescored_days)?;
    table = days.table()?;
    let before_days = head.as_ref().map_or(&[][..], |h| &h.files.final_days[..]);
    let final_total = days.total_after(&touched, before_days);
    let prior_open = state.load_open()?;
    let members = recompute(
        cfg,
        &Recompute {
            table: &table,
            made_final: &made_final,
            seq,
            rebuild,
            open: &open,
            evaluated: &work.evaluated,
            prior_open: &prior_open,
            previous_as_of: head.as_ref().map_or(cfg.as_of, |h| h.as_of_ms),
        },
        &previous,
    )?;
    let (previous_scores, stats) =
        MemberStats::before_and_after(&previous, &members.rows, &members.removed)?;
    timings.score_members_ms = crate::ms(t);

    let counts = Counts {
        evaluated: work.evaluated.len() as u64,
        made_final: made_final.len() as u64,
        final_total,
        open: open.len() as u64,
        members: stats.total as u64,
        member_changes: members.changes.len() as u64,
        late_for_final: telemetry.late_for_final,
        awaiting_tail,
    };
    let mut run = run_json::build(run_json::Facts {
        cfg,
        input: &input,
        rentals: &work.evaluated,
        scored: &scored,
        telemetry: &telemetry,
        members: &stats,
        drift: head
            .as_ref()
            .map(|_| Drift::moved(previous_scores, &members.moves)),
        state: Some(gates(cfg, &work.evaluated, &scored, &made_final)),
    });
    run.warnings = warnings;
    run.made_final_landed_ms = made_final
        .iter()
        .filter_map(|r| cars.landed(&telemetry, &r.rental))
        .collect();
    run.state = Some(StateReport {
        location: state.url().to_string(),
        parent_seq: head.as_ref().map(|h| h.seq),
        seq: None,
        committed: false,
        not_committed_because: None,
        forced: false,
        rescore: opts.rescore.map(|(a, b)| (rfc3339(a), rfc3339(b))),
        model_change: model_change
            .as_ref()
            .map(|c| format!("{} -> {}", c.from, c.to)),
        counts: counts.clone(),
        state_io: run_json::StateIo::default(),
    });

    let t = Instant::now();
    // The whole snapshot is written out only when asked: every member every
    // run would make the run cost the membership, not the new data. A state
    // of an older format is compacted, so the run leaves it all in this one.
    let compact = members.compact
        || upgraded_from.is_some()
        || previous.should_compact(members.rows.len(), opts.compaction);
    let snapshot_records: Option<Vec<MemberRecord>> = if opts.write_snapshot {
        let all = previous.all_with(&members.rows, &members.removed)?;
        Some(all.into_iter().map(|k| k.record).collect())
    } else {
        None
    };
    let o = outputs::Outputs {
        input: &input,
        rentals: &work.evaluated,
        scored: &scored,
        members: snapshot_records.as_deref(),
    };
    outputs::write_all(cfg, &o, &telemetry, &mut run)?;
    if let Some(s) = run.state.as_mut() {
        let reads = state.reads();
        let (base_rows, delta_rows, deltas) = previous.sizes();
        let (entries, bytes) = previous.fetched();
        s.state_io = run_json::StateIo {
            files_read: reads.files,
            bytes_read: reads.bytes,
            snapshot_rentals_read: entries - fetched_before.0,
            snapshot_rental_bytes_read: bytes - fetched_before.1,
            final_rows_read: final_rows_read as u64,
            snapshot_base_rows_read: base_rows as u64,
            snapshot_delta_rows_read: delta_rows as u64,
            deltas_merged: deltas as u64,
            compacted: compact,
            snapshot_in_memory,
            member_rows_written: if compact {
                stats.total as u64
            } else {
                members.rows.len() as u64
            },
            upgraded_from,
        };
    }
    let change_batch = snapshot::to_batch(&members.changes, &cfg.model.id(), cfg.as_of)?;
    outputs::write(&cfg.out, names::MEMBER_CHANGES, change_batch, &mut run)?;
    run_json::write(&cfg.out, &run)?;

    let held = run.status == RunStatus::Held;
    if held && !opts.force {
        if let Some(s) = run.state.as_mut() {
            s.not_committed_because = Some(format!(
                "held by a quality gate: the state stays at run {}; fix the cause and run again, or commit it with --force",
                head.as_ref()
                    .map_or_else(|| "none (empty)".to_string(), |h| h.seq.to_string())
            ));
        }
    } else {
        let mut seen = seen.unwrap_or_default();
        for (name, size, latest) in &telemetry.files_seen {
            seen.insert(name.clone(), *size, *latest);
        }
        seen.forget_before(cfg.as_of - LATE_LOOKBACK_MS - 7 * DAY_MS);
        let mut files = head.as_ref().map(|h| h.files.clone()).unwrap_or_default();
        files.final_days = draft.write_final_days(&days, &touched, before_days)?;
        // A state of the previous layout is upgraded: its files by day now.
        files.final_results.clear();
        files.open = Some(draft.write_results("open.parquet", &mut open)?);
        // Encoded once: the same batch goes into the state and, for a
        // watcher, into the snapshot it keeps.
        let model_id = cfg.model.id();
        let changes = member_file::encode(&members.rows, &model_id, cfg.as_of)?;
        let file = if compact {
            Some(previous.compacted(
                &changes,
                &members.rows,
                &members.removed,
                &model_id,
                cfg.as_of,
            )?)
        } else {
            (!members.rows.is_empty()).then_some(changes)
        };
        let mut written = None;
        if let Some(file) = file {
            let batch = file.batch.clone();
            let (rel, rentals) = draft.write_members(file, compact)?;
            if compact {
                files.members = Some(rel);
                files.member_deltas.clear();
            } else {
                files.member_deltas.push(rel);
            }
            written = Some((batch, rentals));
        }
        files.seen = Some(draft.write_seen(&seen)?);
        let entry = Entry {
            format: 0,
            seq: 0,
            kind: EntryKind::Run,
            run_id: run_id.clone(),
            as_of_ms: cfg.as_of,
            as_of: rfc3339(cfg.as_of),
            model: cfg.model.id(),
            grace_ms: cfg.grace_ms(),
            pitwall_version: env!("CARGO_PKG_VERSION").to_string(),
            committed_at: rfc3339(pitwall_score_state::ops::now_ms()),
            forced: held,
            held_because: run.held_because.clone(),
            rescore: opts.rescore,
            model_change,
            files,
            counts,
            upgraded_from,
            inputs: serde_json::to_value(&run.inputs).unwrap_or_default(),
        };
        if opts.fence.as_ref().is_some_and(|f| !(f.0)()) {
            return Err(refused(
                opts,
                "this watcher's lease was not provably its own at the commit, so it did not \
                 commit (another watcher may hold the state now); the next cycle starts from \
                 the last committed run"
                    .into(),
            ));
        }
        let committed = draft.commit(entry)?;
        if let Some(memory) = &opts.memory {
            memory.set(committed.seq, after_commit(&previous, written, compact)?);
        }
        if let Some(s) = run.state.as_mut() {
            s.committed = true;
            s.seq = Some(committed.seq);
            s.forced = committed.forced;
        }
    }
    timings.write_ms = crate::ms(t);
    timings.total_ms = crate::ms(started);
    run.timings_ms = timings;
    crate::review_claims(cfg, &mut run);
    run_json::write(&cfg.out, &run)?;
    report::write(&cfg.out, &run, &work.evaluated, &scored, &stats, &cfg.model)?;
    Ok(run)
}

fn refused(opts: &StateOptions, problem: String) -> JobError {
    JobError::StateRefused {
        state: opts.location.clone(),
        problem,
    }
}

/// Refuses a run the state cannot take: an as_of before its last run, or
/// another model without a rescore of everything or `--model-change`.
fn check(
    cfg: &JobConfig,
    opts: &StateOptions,
    head: Option<&Entry>,
    table: &FinalTable,
) -> Result<Option<ModelChange>, JobError> {
    let Some(head) = head else { return Ok(None) };
    if cfg.as_of < head.as_of_ms {
        return Err(refused(
            opts,
            format!(
                "--as-of {} is before the state's last run ({}, as_of {}): a state moves forward only; \
                 use a later --as-of, or --rescore-from/--rescore-to to evaluate the past again",
                rfc3339(cfg.as_of),
                head.run_id,
                head.as_of
            ),
        ));
    }
    let model = cfg.model.id();
    if model == head.model {
        return Ok(None);
    }
    let change = ModelChange {
        from: head.model.clone(),
        to: model.clone(),
    };
    if opts.model_change || rescores_everything(opts.rescore, table)? {
        return Ok(Some(change));
    }
    Err(refused(
        opts,
        format!(
            "its final results were made with model {} and this run uses {model}: mixing them would \
             rank members by two formulas. Pass --model-change to go on with the new model for new \
             rentals (recorded in the run log), or rescore everything (--rescore-from/--rescore-to \
             around all final rentals), or use --model with the state's model",
            head.model
        ),
    ))
}

fn rescores_everything(rescore: Option<(i64, i64)>, table: &FinalTable) -> Result<bool, JobError> {
    let Some((from, to)) = rescore else {
        return Ok(false);
    };
    let mut all = true;
    table.for_each(|c, i| {
        let end = c.end_at.value(i);
        all &= end >= from && end < to;
        Ok(())
    })?;
    Ok(all)
}

/// The days of final results a run can need: those of the rentals it is
/// given (to know which are final), the late-sample lookback, and those
/// whose rentals leave the 365-day window since the last run.
fn needed_days(cfg: &JobConfig, input: &[Rental], head: Option<&Entry>) -> BTreeSet<i64> {
    let mut wanted: BTreeSet<i64> = input
        .iter()
        .filter(|r| is_considered(r, cfg.as_of))
        .map(|r| day_of(r.end_at))
        .collect();
    wanted.extend(days_between(cfg.as_of - LATE_LOOKBACK_MS, cfg.as_of));
    if let Some(h) = head {
        let window = cfg.model.member.window_days * DAY_MS;
        // (previous as_of − window, as_of − window]
        wanted.extend(days_between(h.as_of_ms - window, cfg.as_of - window));
    }
    wanted
}

/// The rentals to evaluate and the recently final ones to watch.
fn work(
    cfg: &JobConfig,
    opts: &StateOptions,
    input: &[Rental],
    days: &FinalDays,
    table: &FinalTable,
) -> Result<Work, JobError> {
    let mut evaluated = Vec::new();
    for r in input.iter().filter(|r| is_considered(r, cfg.as_of)) {
        if !days.contains(&r.rental_id, r.end_at)? {
            evaluated.push(r.clone());
        }
    }
    let rescored_rows = match opts.rescore {
        Some((from, to)) => table.ended_in(from, to)?,
        None => Vec::new(),
    };
    let rescored: HashSet<String> = rescored_rows
        .iter()
        .map(|r| r.rental.rental_id.clone())
        .collect();
    let rescored_days = rescored_rows
        .iter()
        .map(|r| day_of(r.rental.end_at))
        .collect();
    evaluated.extend(rescored_rows.into_iter().map(|r| r.rental));
    evaluated.sort_by(|a, b| a.rental_id.cmp(&b.rental_id));
    let horizon = cfg.as_of - LATE_LOOKBACK_MS;
    let mut recently_final = Vec::new();
    table.for_each(|c, i| {
        if c.end_at.value(i) >= horizon && !rescored.contains(c.rental_id.value(i)) {
            recently_final.push(c.row(i)?.rental);
        }
        Ok(())
    })?;
    Ok(Work {
        evaluated,
        rescored,
        rescored_days,
        recently_final,
    })
}

/// Evaluated rentals as rows, by where the finality rules leave them.
struct Split {
    made_final: Vec<ResultRow>,
    open: Vec<ResultRow>,
    /// Of the open, those final but for their tail.
    awaiting_tail: u64,
}

fn split(
    cfg: &JobConfig,
    evaluated: &[Rental],
    scored: &Scored,
    finality: &Finality,
    tail_in: &dyn Fn(&Rental) -> bool,
) -> Split {
    let model = cfg.model.id();
    let mut out = Split {
        made_final: Vec::new(),
        open: Vec::new(),
        awaiting_tail: 0,
    };
    for (r, a) in evaluated.iter().zip(&scored.assessments) {
        let Some(a) = a else { continue };
        let verdict = rental::finality(
            a,
            r.end_at,
            cfg.as_of,
            cfg.grace_ms(),
            tail_in(r),
            &cfg.model,
        );
        let is = verdict == rental::Finality::Final;
        let row = ResultRow {
            rental: r.clone(),
            assessment: a.clone(),
            model: model.clone(),
            finality: is.then(|| finality.clone()),
        };
        out.awaiting_tail += u64::from(verdict == rental::Finality::AwaitingTail);
        if is {
            out.made_final.push(row)
        } else {
            out.open.push(row)
        }
    }
    out
}

/// What the member snapshot is recomputed from.
struct Recompute<'a> {
    /// The final results, with the rentals made final by this run.
    table: &'a FinalTable,
    made_final: &'a [ResultRow],
    open: &'a [ResultRow],
    evaluated: &'a [Rental],
    prior_open: &'a [ResultRow],
    previous_as_of: i64,
    /// This run's seq: the rentals it made final are not leaving the window.
    seq: u64,
    /// Every part is built from every day of final results (a model
    /// change, a rescore, an empty snapshot or one without parts).
    rebuild: bool,
}

/// What a run changes of the member snapshot.
struct MemberChanges {
    /// Records that differ from the previous snapshot's, or are new, by
    /// member_id: `member_changes.parquet`, the counts and the gates.
    changes: Vec<MemberRecord>,
    /// Members whose record or kept final part changed: the state's delta.
    rows: Vec<Kept>,
    /// Members with a previous record and no rental left (their open
    /// rentals vanished from the input).
    removed: HashSet<String>,
    /// Every member was recomputed: the snapshot is written as a new base.
    compact: bool,
    /// (previous, current) score of each member whose record changed or
    /// that was removed: the drift gates' view of the run.
    moves: Vec<(Option<f64>, Option<f64>)>,
}

/// The member records that change at as_of. A member's record is its kept
/// final part (`pitwall_score::member_part`) and its open rentals. Unless
/// `rebuild`, only the members whose record can have changed are recomputed:
/// those with a rental evaluated now or open before, and those with a
/// final rental leaving the 365-day window since the previous run; their
/// parts are extended by the rentals made final now, so no member's final
/// rentals are read again. Every other member stays as the snapshot holds
/// it (the equivalence test holds the two ways equal). On a rebuild (a
/// model change, a rescore, an empty snapshot or one without parts), every
/// part is built from all the final results.
fn recompute(
    cfg: &JobConfig,
    r: &Recompute<'_>,
    previous: &Snapshot,
) -> Result<MemberChanges, JobError> {
    let (model, as_of) = (&cfg.model, cfg.as_of);
    let open_by = recompute::open_by_member(r.open);
    if r.rebuild {
        let parts = recompute::parts_of_all(r.table, as_of, model)?;
        let mut ids: Vec<&str> = parts.keys().map(String::as_str).collect();
        ids.extend(open_by.keys().copied());
        ids.sort_unstable();
        ids.dedup();
        let before: HashMap<String, Kept> = previous
            .all_with(&[], &HashSet::new())?
            .into_iter()
            .map(|k| (k.record.member_id.clone(), k))
            .collect();
        let empty = FinalPart::default();
        let mut out = MemberChanges {
            changes: Vec::new(),
            rows: Vec::new(),
            removed: HashSet::new(),
            compact: true,
            moves: Vec::new(),
        };
        for id in ids {
            let part = parts.get(id).unwrap_or(&empty);
            let open = open_by.get(id).map_or(&[][..], Vec::as_slice);
            if let Some(record) = recompute::record_of(id, part, open, as_of, model) {
                let old = before.get(id).map(|k| &k.record);
                if old != Some(&record) {
                    out.moves
                        .push((old.and_then(|r| r.score.score), record.score.score));
                    out.changes.push(record.clone());
                }
                out.rows.push(Kept {
                    record,
                    part: Some(part.clone()),
                });
            }
        }
        let now: HashSet<&str> = out
            .rows
            .iter()
            .map(|k| k.record.member_id.as_str())
            .collect();
        out.removed = before
            .keys()
            .filter(|id| !now.contains(id.as_str()))
            .cloned()
            .collect();
        out.moves.extend(
            out.removed
                .iter()
                .filter_map(|id| before.get(id))
                .map(|k| (k.record.score.score, None)),
        );
        return Ok(out);
    }
    let leaving = recompute::leaving(
        r.table,
        r.previous_as_of,
        as_of,
        model.member.window_days,
        r.seq,
    )?;
    let mut affected: HashSet<String> = leaving.keys().cloned().collect();
    affected.extend(r.evaluated.iter().map(|x| x.member_id.clone()));
    affected.extend(r.prior_open.iter().map(|x| x.rental.member_id.clone()));
    let before: HashMap<String, Kept> = previous
        .kept_of(&affected)?
        .into_iter()
        .map(|k| (k.record.member_id.clone(), k))
        .collect();
    let mut made: HashMap<&str, Vec<&ResultRow>> = HashMap::new();
    for row in r.made_final {
        made.entry(row.rental.member_id.as_str())
            .or_default()
            .push(row);
    }
    let mut ids: Vec<&String> = affected.iter().collect();
    ids.sort_unstable();
    let mut out = MemberChanges {
        changes: Vec::new(),
        rows: Vec::new(),
        removed: HashSet::new(),
        compact: false,
        moves: Vec::new(),
    };
    for id in ids {
        let prev = before.get(id);
        let mut part = prev.and_then(|k| k.part.clone()).unwrap_or_default();
        part.advance(leaving.get(id).copied().unwrap_or(0), as_of, model);
        for row in made.get(id.as_str()).into_iter().flatten() {
            part.add(
                recompute::kept_of_row(row),
                row.assessment.status,
                as_of,
                model,
            );
        }
        let open = open_by.get(id.as_str()).map_or(&[][..], Vec::as_slice);
        match recompute::record_of(id, &part, open, as_of, model) {
            None => {
                if let Some(k) = prev {
                    out.removed.insert(id.clone());
                    out.moves.push((k.record.score.score, None));
                }
            }
            Some(record) => {
                if prev.is_none_or(|k| k.record != record) {
                    out.moves
                        .push((prev.and_then(|k| k.record.score.score), record.score.score));
                    out.changes.push(record.clone());
                }
                if prev.is_none_or(|k| k.record != record || k.part.as_ref() != Some(&part)) {
                    out.rows.push(Kept {
                        record,
                        part: Some(part),
                    });
                }
            }
        }
    }
    // A delta holds records, not their absence: a removal rewrites the base.
    out.compact = !out.removed.is_empty();
    Ok(out)
}

/// The pending gate judges rentals that ended over an hour ago; the
/// coverage gate, the rentals this run made final.
fn gates(
    cfg: &JobConfig,
    evaluated: &[Rental],
    scored: &Scored,
    made_final: &[ResultRow],
) -> StateGates {
    let (mut pending, mut judged) = (0, 0);
    for (r, a) in evaluated.iter().zip(&scored.assessments) {
        if let Some(a) = a.as_ref().filter(|_| r.end_at <= cfg.as_of - HOUR_MS) {
            judged += 1;
            pending += u64::from(a.status == Status::Pending);
        }
    }
    let lost = made_final
        .iter()
        .filter(|r| r.assessment.reason == Some(Reason::InsufficientCoverage))
        .count();
    StateGates {
        pending: (pending, judged),
        made_final: (made_final.len() as u64, lost as u64),
    }
}
