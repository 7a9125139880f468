//! `score run --state`: a chain of incremental runs equals one full run,
//! late samples change nothing, and a run the state cannot take leaves it
//! as it was.

mod s3;
mod sim;

use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_score_job::{JobError, NoProgress, RunStatus};
use pitwall_score_state::results::Columns;
use pitwall_score_state::{Compaction, MemberRecord, ResultRow, State, ops, snapshot};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::*;

type TestResult = Result<(), Error>;

fn batches(path: &Path) -> Result<Vec<arrow_array::RecordBatch>, Error> {
    let f = std::fs::File::open(path)?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(f)?
        .build()?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Rental results of a file, finality left out, by rental_id.
fn results(path: &Path) -> Result<Vec<ResultRow>, Error> {
    let mut rows = Vec::new();
    for b in batches(path)? {
        let c = Columns::of(&b)?;
        for i in 0..b.num_rows() {
            let mut r = c.row(i)?;
            r.finality = None;
            rows.push(r);
        }
    }
    rows.sort_by(|a, b| a.rental.rental_id.cmp(&b.rental.rental_id));
    Ok(rows)
}

fn members(path: &Path) -> Result<Vec<MemberRecord>, Error> {
    Ok(snapshot::from_batches(&batches(path)?)?)
}

/// Runs the chain at `as_ofs` with uploads arriving in between, then one
/// full run at the last as_of, and compares them value for value.
fn chain_equals_full_run(seed: u64, n: usize, as_ofs: &[i64]) -> TestResult {
    chain_with(seed, n, as_ofs, Compaction::default()).map(|_| ())
}

/// [`chain_equals_full_run`] with the member snapshot compacted by
/// `policy`; returns (runs that wrote a delta, runs that compacted).
fn chain_with(
    seed: u64,
    n: usize,
    as_ofs: &[i64],
    policy: Compaction,
) -> Result<(u32, u32), Error> {
    let mut kinds = (0, 0);
    let d = Dirs::new()?;
    let fleet = Fleet::generate(seed, n);
    fleet.write_rentals(&d.rentals())?;
    std::fs::create_dir_all(d.telemetry())?;
    let state = d.state();
    // A full run needs some telemetry: the chain ends once some has arrived.
    let first = fleet
        .uploads
        .iter()
        .map(|u| u.arrival)
        .min()
        .ok_or("no uploads")?;
    let mut as_ofs = as_ofs.to_vec();
    if as_ofs.last().is_some_and(|&l| l < first) {
        as_ofs.push(first);
    }
    for (k, &as_of) in as_ofs.iter().enumerate() {
        fleet.arrive(&d.telemetry(), as_of)?;
        let mut cfg = d.config(as_of, &format!("run-{k}"), Some(&state));
        // The whole snapshot in --out only when asked: here, of the last run.
        if let Some(o) = cfg.state.as_mut() {
            o.write_snapshot = k + 1 == as_ofs.len();
            o.compaction = policy;
        }
        let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
        let io = &run.state.as_ref().ok_or("no state section")?.state_io;
        if io.compacted {
            kinds.1 += 1;
        } else if io.member_rows_written > 0 {
            kinds.0 += 1;
        }
        let out = d.root.join(format!("run-{k}"));
        assert!(out.join("member_changes.parquet").exists());
        assert_eq!(
            out.join("member_scores.parquet").exists(),
            k + 1 == as_ofs.len()
        );
        let s = run.state.ok_or("no state section")?;
        assert!(
            s.committed,
            "run {k} not committed: {:?}",
            s.not_committed_because
        );
        assert_eq!(s.seq, Some(k as u64 + 1));
    }
    let last = *as_ofs.last().ok_or("no runs")?;
    let full = d.run(last, "full", None)?;
    assert!(full.state.is_none());
    let export = d.root.join("export");
    std::fs::create_dir_all(&export)?;
    ops::export(&State::open(&state)?, &export)?;

    let chained = results(&export.join("rental_results.parquet"))?;
    let once = results(&d.root.join("full/rental_scores.parquet"))?;
    assert_eq!(chained.len(), once.len(), "considered rentals differ");
    for (a, b) in chained.iter().zip(&once) {
        assert_eq!(a, b, "rental {} differs", a.rental.rental_id);
    }
    let chained = members(&export.join("member_scores.parquet"))?;
    let once = members(&d.root.join("full/member_scores.parquet"))?;
    assert_eq!(chained, once);
    // The last run's snapshot in --out is the same snapshot.
    let out = d
        .root
        .join(format!("run-{}/member_scores.parquet", as_ofs.len() - 1));
    assert_eq!(members(&out)?, once);
    Ok(kinds)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn a_chain_of_state_runs_equals_one_full_run(seed in any::<u64>(), n in 6usize..28, runs in 2usize..6) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let mut as_ofs: Vec<i64> = (0..runs)
            .map(|_| BASE + rng.random_range(0..84 * HOUR))
            .collect();
        as_ofs.sort_unstable();
        // Compacting every run, by a share of the base, never by size.
        let share = [0.0, 0.1, 0.5, 1e9][rng.random_range(0..4)];
        let policy = Compaction { share, max_deltas: rng.random_range(2..6) };
        let r = chain_with(seed, n, &as_ofs, policy);
        prop_assert!(r.is_ok(), "{:?}", r.err().map(|e| e.to_string()));
    }
}

#[test]
fn a_chain_with_member_deltas_and_compactions_equals_one_full_run() -> TestResult {
    let as_ofs: Vec<i64> = (1..=90).step_by(3).map(|h| BASE + h * HOUR).collect();
    let never_by_share = Compaction {
        share: 1e9,
        max_deltas: 4,
    };
    let (deltas, compactions) = chain_with(7, 40, &as_ofs, never_by_share)?;
    assert!(
        deltas >= 5 && compactions >= 2,
        "{deltas} deltas, {compactions} compactions"
    );
    Ok(())
}

#[test]
fn a_chain_of_hourly_runs_equals_one_full_run() -> TestResult {
    let as_ofs: Vec<i64> = (1..=90).step_by(3).map(|h| BASE + h * HOUR).collect();
    chain_equals_full_run(7, 40, &as_ofs)
}

#[test]
fn members_whose_rentals_leave_the_365_day_window_change_without_a_new_rental() -> TestResult {
    let year = 365 * 24 * HOUR;
    let as_ofs = [
        BASE + 90 * HOUR,
        BASE + year + 10 * HOUR,
        BASE + year + 30 * HOUR,
        BASE + year + 31 * HOUR,
        BASE + year + 80 * HOUR,
    ];
    chain_equals_full_run(11, 30, &as_ofs)
}

/// One 10-minute drive of `car` from `start`, arriving whole.
fn one_drive(d: &Dirs, id: &str, car: &str, start: i64, speed: f64) -> TestResult {
    let rows: Vec<pitwall_fleetgen::Row> = (0..=600)
        .map(|k| pitwall_fleetgen::Row::new(car, start + k * 1000, speed, Some(50.0)))
        .collect();
    let t = chrono::DateTime::from_timestamp_millis(start).ok_or("time")?;
    let path = d
        .telemetry()
        .join(t.format("dt=%Y-%m-%d/hour=%H").to_string())
        .join(format!("{id}.parquet"));
    std::fs::create_dir_all(path.parent().ok_or("parent")?)?;
    pitwall_fleetgen::write_telemetry(&path, &rows)?;
    Ok(())
}

fn two_rentals(d: &Dirs) -> TestResult {
    let rentals = vec![
        (
            "a".to_string(),
            "m".to_string(),
            "c1".to_string(),
            BASE,
            BASE + 600_000,
        ),
        (
            "b".to_string(),
            "m".to_string(),
            "c2".to_string(),
            BASE + 2 * HOUR,
            BASE + 2 * HOUR + 600_000,
        ),
    ];
    Fleet {
        rentals,
        uploads: Vec::new(),
    }
    .write_rentals(&d.rentals())?;
    one_drive(d, "a", "c1", BASE, 40.0)?;
    one_drive(d, "b", "c2", BASE + 2 * HOUR, 45.0)
}

/// `rows` of car `car` as one file named `name` in the hour of `hour_of`.
fn write_piece(d: &Dirs, name: &str, hour_of: i64, rows: &[pitwall_fleetgen::Row]) -> TestResult {
    let t = chrono::DateTime::from_timestamp_millis(hour_of).ok_or("time")?;
    let path = d
        .telemetry()
        .join(t.format("dt=%Y-%m-%d/hour=%H").to_string())
        .join(format!("{name}.parquet"));
    std::fs::create_dir_all(path.parent().ok_or("parent")?)?;
    pitwall_fleetgen::write_telemetry(&path, rows)?;
    Ok(())
}

/// Rental "a" of car c1, 10 minutes from BASE, its samples at 40 km/h but
/// for a harsh stop in the last 5 seconds; and the rentals file.
fn drive_with_a_harsh_end(d: &Dirs) -> Result<Vec<pitwall_fleetgen::Row>, Error> {
    let rentals = vec![(
        "a".to_string(),
        "m".to_string(),
        "c1".to_string(),
        BASE,
        BASE + 600_000,
    )];
    Fleet {
        rentals,
        uploads: Vec::new(),
    }
    .write_rentals(&d.rentals())?;
    Ok((0..=600)
        .map(|k| {
            let speed = if k > 595 { 0.0 } else { 40.0 };
            pitwall_fleetgen::Row::new("c1", BASE + k * 1000, speed, Some(50.0))
        })
        .collect())
}

#[test]
fn a_rental_at_full_coverage_waits_for_its_tail() -> TestResult {
    let d = Dirs::new()?;
    let rows = drive_with_a_harsh_end(&d)?;
    let state = d.state();
    // 590 of 601 seconds (98 %): scored, but the last upload is in flight.
    write_piece(&d, "a-p0", BASE, &rows[..590])?;
    let first = d.run(BASE + 15 * MIN, "run-1", Some(&state))?;
    let s = first.state.as_ref().ok_or("no state")?;
    assert_eq!(
        (s.counts.made_final, s.counts.open, s.counts.awaiting_tail),
        (0, 1, 1)
    );
    assert_eq!(first.rentals.by_status.get("scored"), Some(&1));
    let gaps = &first.rentals.last_sample_before_end;
    assert_eq!((gaps.rentals_with_samples, gaps.max_s), (1, Some(11.0)));
    assert_eq!(first.model.tail_within, "1s 500ms");

    write_piece(&d, "a-p1", BASE, &rows[590..])?;
    let second = d.run(BASE + 20 * MIN, "run-2", Some(&state))?;
    let s = second.state.as_ref().ok_or("no state")?;
    assert_eq!(
        (
            s.counts.made_final,
            s.counts.awaiting_tail,
            s.counts.late_for_final
        ),
        (1, 0, 0)
    );
    let full = d.run(BASE + 20 * MIN, "full", None)?;
    assert!(full.state.is_none());
    assert_eq!(
        results(&d.root.join("run-2/rental_scores.parquet"))?,
        results(&d.root.join("full/rental_scores.parquet"))?,
        "final with its harsh end, as a full run over all of it"
    );
    let report = std::fs::read_to_string(d.root.join("run-1/report.html"))?;
    assert!(report.contains("wait only for their tail"), "{report}");
    Ok(())
}

#[test]
fn a_later_sample_of_the_car_brings_the_tail_in_and_the_grace_ends_the_wait() -> TestResult {
    let d = Dirs::new()?;
    let rows = drive_with_a_harsh_end(&d)?;
    write_piece(&d, "a-p0", BASE, &rows[..590])?;
    let state = d.state();
    let first = d.run(BASE + 15 * MIN, "run-1", Some(&state))?;
    assert_eq!(first.state.map(|s| s.counts.awaiting_tail), Some(1));
    // The car parked and sent one more sample after the rental: nothing
    // of the rental is still on its way, so its end stays a gap.
    let parked = [pitwall_fleetgen::Row::new(
        "c1",
        BASE + 601_000,
        0.0,
        Some(50.0),
    )];
    write_piece(&d, "c1-after", BASE, &parked)?;
    let second = d.run(BASE + 16 * MIN, "run-2", Some(&state))?;
    let s = second.state.ok_or("no state")?;
    assert_eq!((s.counts.made_final, s.counts.awaiting_tail), (1, 0));

    // Without any such sample, the grace ends the wait.
    let d = Dirs::new()?;
    let rows = drive_with_a_harsh_end(&d)?;
    write_piece(&d, "a-p0", BASE, &rows[..590])?;
    let state = d.state();
    let before_grace = d.run(BASE + 10 * MIN + 4 * HOUR - 1, "run-1", Some(&state))?;
    assert_eq!(
        before_grace
            .state
            .map(|s| (s.counts.made_final, s.counts.awaiting_tail)),
        Some((0, 1))
    );
    let at_grace = d.run(BASE + 10 * MIN + 4 * HOUR, "run-2", Some(&state))?;
    assert_eq!(
        at_grace
            .state
            .map(|s| (s.counts.made_final, s.counts.awaiting_tail)),
        Some((1, 0))
    );
    Ok(())
}

#[test]
fn a_telemetry_location_that_does_not_exist_yet_is_an_empty_input() -> TestResult {
    let d = Dirs::new()?;
    drive_with_a_harsh_end(&d)?;
    assert!(!d.telemetry().exists());
    let state = d.state();
    let run = d.run(BASE + 15 * MIN, "run-1", Some(&state))?;
    let s = run.state.as_ref().ok_or("no state")?;
    assert!(s.committed, "{:?}", s.not_committed_because);
    assert_eq!(
        (run.inputs.telemetry.files, run.inputs.telemetry.rows),
        (0, 0)
    );
    assert_eq!((s.counts.evaluated, s.counts.open), (1, 1));
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    assert!(
        run.warnings[0].contains(&d.telemetry().display().to_string()),
        "{:?}",
        run.warnings
    );
    // A rentals input that does not exist is still an error.
    let mut cfg = d.config(BASE + 16 * MIN, "run-2", Some(&state));
    cfg.rentals = d.root.join("no-rentals").display().to_string();
    let e =
        pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress).expect_err("missing rentals");
    assert!(e.to_string().contains("no-rentals"), "{e}");
    Ok(())
}

#[test]
fn samples_after_finality_are_counted_and_change_nothing() -> TestResult {
    let d = Dirs::new()?;
    two_rentals(&d)?;
    let state = d.state();
    let first = d.run(BASE + HOUR, "run-1", Some(&state))?;
    assert_eq!(first.state.as_ref().map(|s| s.counts.made_final), Some(1));
    let before = results(&d.root.join("run-1/rental_scores.parquet"))?;

    // A late upload for the final rental "a": harsh braking it never had.
    let late: Vec<pitwall_fleetgen::Row> = (0..100)
        .map(|k| pitwall_fleetgen::Row::new("c1", BASE + 500 + k * 1000, 0.0, Some(50.0)))
        .collect();
    let t = chrono::DateTime::from_timestamp_millis(BASE).ok_or("time")?;
    let path = d
        .telemetry()
        .join(t.format("dt=%Y-%m-%d/hour=%H").to_string())
        .join("a-late.parquet");
    pitwall_fleetgen::write_telemetry(&path, &late)?;

    let second = d.run(BASE + 3 * HOUR, "run-2", Some(&state))?;
    let s = second.state.ok_or("no state")?;
    assert_eq!(s.counts.late_for_final, 100);
    assert_eq!(s.counts.evaluated, 1, "only b is evaluated");
    let export = d.root.join("export");
    std::fs::create_dir_all(&export)?;
    ops::export(&State::open(&state)?, &export)?;
    let after = results(&export.join("rental_results.parquet"))?;
    assert_eq!(
        after.iter().find(|r| r.rental.rental_id == "a"),
        before.first()
    );
    // The file read once is not late again in the next run.
    let third = d.run(BASE + 4 * HOUR, "run-3", Some(&state))?;
    assert_eq!(third.state.map(|s| s.counts.late_for_final), Some(0));
    assert_eq!(third.inputs.telemetry_read.files_opened, 0);
    Ok(())
}

#[test]
fn a_run_reads_only_the_partitions_of_what_it_evaluates() -> TestResult {
    let d = Dirs::new()?;
    // Twenty days of one drive a day, then a new one.
    let mut rentals = Vec::new();
    for day in 0..21i64 {
        let start = BASE + day * 24 * HOUR;
        let id = format!("r{day:02}");
        rentals.push((
            id.clone(),
            "m".to_string(),
            "c".to_string(),
            start,
            start + 600_000,
        ));
        one_drive(&d, &id, "c", start, 30.0 + day as f64)?;
    }
    let last = rentals.pop().ok_or("none")?;
    Fleet {
        rentals: rentals.clone(),
        uploads: Vec::new(),
    }
    .write_rentals(&d.rentals())?;
    let state = d.state();
    let first = d.run(BASE + 20 * 24 * HOUR - HOUR, "run-1", Some(&state))?;
    assert_eq!(first.inputs.telemetry_read.files_opened, 20);
    rentals.push(last);
    Fleet {
        rentals,
        uploads: Vec::new(),
    }
    .write_rentals(&d.rentals())?;
    let second = d.run(BASE + 20 * 24 * HOUR + HOUR, "run-2", Some(&state))?;
    let read = &second.inputs.telemetry_read;
    assert_eq!(read.files_opened, 1, "{read:?}");
    // Days beyond the late-sample lookback are not even listed.
    assert!(read.partitions_skipped >= 11, "{read:?}");
    assert!(read.files_skipped_by_partition >= 1, "{read:?}");
    assert_eq!(second.state.map(|s| s.counts.evaluated), Some(1));
    Ok(())
}

#[test]
fn row_group_statistics_skip_what_an_unpartitioned_file_cannot_hold() -> TestResult {
    use std::sync::Arc;
    let d = Dirs::new()?;
    two_rentals(&d)?;
    // One flat file of both drives, sorted by ts, in row groups of 100 rows.
    std::fs::remove_dir_all(d.telemetry())?;
    let mut rows = Vec::new();
    for (car, start, speed) in [("c1", BASE, 40.0), ("c2", BASE + 2 * HOUR, 45.0)] {
        for k in 0..=600 {
            rows.push((car, start + k * 1000, speed));
        }
    }
    let cols: Vec<arrow_array::ArrayRef> = vec![
        Arc::new(arrow_array::StringArray::from_iter_values(
            rows.iter().map(|r| r.0),
        )),
        Arc::new(
            arrow_array::TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1))
                .with_timezone("UTC"),
        ),
        Arc::new(arrow_array::Float64Array::from_iter_values(
            rows.iter().map(|r| r.2),
        )),
        Arc::new(arrow_array::Float64Array::from_iter_values(
            rows.iter().map(|_| 50.0),
        )),
    ];
    let batch = arrow_array::RecordBatch::try_from_iter(
        ["car_id", "ts", "speed_kmh", "speed_limit_kmh"]
            .into_iter()
            .zip(cols),
    )?;
    let opts = pitwall_lake::ParquetOptions {
        max_row_group_rows: 100,
        ..Default::default()
    };
    let flat = d.telemetry().join("all.parquet");
    pitwall_lake::write_parquet(&flat, batch.schema(), &[batch], &opts)?;
    let state = d.state();
    let first = d.run(BASE + HOUR, "run-1", Some(&state))?;
    let read = &first.inputs.telemetry_read;
    // "a" is in the first 601 rows: 7 row groups of 100; the 6 of "b" only are skipped.
    assert_eq!((read.row_groups, read.row_groups_read), (13, 7), "{read:?}");
    assert_eq!(read.rows_skipped_by_statistics, 502, "{read:?}");
    let rows = results(&d.root.join("run-1/rental_scores.parquet"))?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].assessment.features.samples, 601);
    Ok(())
}

fn head_seq(state: &str) -> Result<Option<u64>, Error> {
    Ok(State::open(state)?.head().map(|h| h.seq))
}

#[test]
fn a_held_run_does_not_commit_and_force_commits_it_on_record() -> TestResult {
    let d = Dirs::new()?;
    two_rentals(&d)?;
    // "b" has no telemetry yet: pending, and over an hour old at as_of.
    std::fs::remove_dir_all(d.telemetry().join("dt=2026-06-01/hour=02"))?;
    let state = d.state();
    let mut cfg = d.config(BASE + 4 * HOUR, "held", Some(&state));
    cfg.gates = pitwall_score::gates::GateConfig::default();
    let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    assert_eq!(run.status, RunStatus::Held);
    let s = run.state.ok_or("no state")?;
    assert!(!s.committed && s.not_committed_because.is_some());
    assert_eq!(head_seq(&state)?, None);

    if let Some(o) = cfg.state.as_mut() {
        o.force = true;
    }
    cfg.out = d.root.join("forced");
    let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    assert_eq!(run.status, RunStatus::Held);
    let s = run.state.ok_or("no state")?;
    assert!(s.committed && s.forced);
    let head = State::open(&state)?.head().cloned().ok_or("no head")?;
    assert!(head.forced && !head.held_because.is_empty());
    Ok(())
}

#[test]
fn a_run_whose_fence_says_no_at_the_commit_commits_nothing() -> TestResult {
    let d = Dirs::new()?;
    two_rentals(&d)?;
    let state = d.state();
    d.run(BASE + 3 * HOUR, "first", Some(&state))?;
    let before = head_seq(&state)?;
    let mut cfg = d.config(BASE + 9 * HOUR, "fenced", Some(&state));
    // A watcher whose lease is no longer provably its own.
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = asked.clone();
    if let Some(o) = cfg.state.as_mut() {
        o.fence = Some(pitwall_score_job::Fence(std::sync::Arc::new(move || {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            false
        })));
    }
    let err = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)
        .expect_err("a fenced run must not commit");
    assert!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        "the fence is asked"
    );
    assert!(matches!(err, JobError::StateRefused { .. }), "{err}");
    assert!(err.to_string().contains("lease"), "{err}");
    assert_eq!(
        head_seq(&state)?,
        before,
        "the state is as after the last committed run"
    );
    Ok(())
}

#[test]
fn the_pending_gate_leaves_out_the_rentals_of_the_last_hour() -> TestResult {
    let d = Dirs::new()?;
    two_rentals(&d)?;
    std::fs::remove_dir_all(d.telemetry().join("dt=2026-06-01/hour=02"))?;
    let state = d.state();
    // "b" ended 30 minutes ago and is pending: it is still arriving.
    let mut cfg = d.config(BASE + 2 * HOUR + 40 * MIN, "run", Some(&state));
    cfg.gates = pitwall_score::gates::GateConfig::default();
    let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    assert_eq!(run.status, RunStatus::Ok, "{:?}", run.held_because);
    assert_eq!(run.rentals.by_status.get("pending"), Some(&1));
    Ok(())
}

#[test]
fn a_run_the_state_cannot_take_leaves_it_untouched() -> TestResult {
    let d = Dirs::new()?;
    two_rentals(&d)?;
    let state = d.state();
    d.run(BASE + HOUR, "run-1", Some(&state))?;
    let refused = |e: &JobError, words: &[&str]| {
        let msg = e.to_string();
        words.iter().all(|w| msg.contains(w)) || panic!("{msg}")
    };

    // An as_of before the last run.
    let back = pitwall_score_job::run(
        &d.config(BASE, "back", Some(&state)),
        &pitwall_score_job::NoProgress,
    );
    assert!(back.is_err_and(|e| refused(&e, &["before the state's last run", &state])));

    // Another model, without --model-change.
    let mut cfg = d.config(BASE + 3 * HOUR, "model", Some(&state));
    cfg.model.version = "2".into();
    let other = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress);
    assert!(other.is_err_and(|e| refused(&e, &["--model-change", "psf-v1@1"])));
    assert_eq!(head_seq(&state)?, Some(1));

    // An unreadable telemetry file in a partition the run needs.
    let bad = d.telemetry().join("dt=2026-06-01/hour=02/broken.parquet");
    std::fs::write(&bad, b"not parquet")?;
    let broken = pitwall_score_job::run(
        &d.config(BASE + 3 * HOUR, "broken", Some(&state)),
        &pitwall_score_job::NoProgress,
    );
    assert!(broken.is_err_and(|e| refused(&e, &["broken.parquet"])));
    assert_eq!(head_seq(&state)?, Some(1));
    std::fs::remove_file(&bad)?;

    // With --model-change the run goes on, and the log says so.
    if let Some(o) = cfg.state.as_mut() {
        o.model_change = true;
    }
    pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    let head = State::open(&state)?.head().cloned().ok_or("no head")?;
    assert_eq!(head.seq, 2);
    assert!(head.model_change.is_some_and(|c| c.to.ends_with("@2")));
    Ok(())
}

#[test]
fn damaged_or_newer_run_log_entries_are_refused_by_path() -> TestResult {
    let d = Dirs::new()?;
    two_rentals(&d)?;
    let state = d.state();
    d.run(BASE + HOUR, "run-1", Some(&state))?;
    let entry = d.root.join("state/log/000000000001.json");
    let text = std::fs::read_to_string(&entry)?;

    assert!(text.contains("\"format\": 3"), "{text}");
    std::fs::write(&entry, text.replace("\"format\": 3", "\"format\": 99"))?;
    let newer = State::open(&state)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        newer.contains("newer pitwall") && newer.contains("000000000001.json"),
        "{newer}"
    );

    std::fs::write(&entry, &text[..text.len() / 2])?;
    let run = pitwall_score_job::run(
        &d.config(BASE + 2 * HOUR, "x", Some(&state)),
        &pitwall_score_job::NoProgress,
    );
    let msg = run.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("000000000001.json") && msg.contains("move it aside"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn import_seeds_a_state_that_the_next_run_continues() -> TestResult {
    let d = Dirs::new()?;
    let fleet = Fleet::generate(3, 20);
    fleet.write_rentals(&d.rentals())?;
    std::fs::create_dir_all(d.telemetry())?;
    let mid = BASE + 40 * HOUR;
    let end = BASE + 84 * HOUR;
    fleet.arrive(&d.telemetry(), mid)?;
    d.run(mid, "old-job", None)?;
    let state = d.state();
    let model = pitwall_score::Model::default();
    let done = ops::import(
        &state,
        &d.root.join("old-job/rental_scores.parquet"),
        Some(mid),
        &model,
    )?;
    assert_eq!(done.seq, 1);
    assert!(
        ops::import(
            &state,
            &d.root.join("old-job/rental_scores.parquet"),
            None,
            &model
        )
        .is_err()
    );
    // The state holds every final row of the import, as it was.
    let seeded = d.root.join("seeded");
    std::fs::create_dir_all(&seeded)?;
    ops::export(&State::open(&state)?, &seeded)?;
    let mut old_final = results(&d.root.join("old-job/rental_scores.parquet"))?;
    old_final.retain(|r| r.assessment.status != pitwall_score::Status::Pending);
    assert!(!old_final.is_empty());
    assert_eq!(done.final_rentals, old_final.len() as u64);
    let held = results(&seeded.join("rental_results.parquet"))?;
    assert_eq!(held.len(), old_final.len());
    for (a, b) in held.iter().zip(&old_final) {
        assert_eq!((&a.rental, &a.assessment), (&b.rental, &b.assessment));
    }

    fleet.arrive(&d.telemetry(), end)?;
    let next = d.run(end, "next", Some(&state))?;
    let s = next.state.as_ref().ok_or("no state section")?;
    assert_eq!(s.seq, Some(2));
    // Rentals final at the import are not evaluated again, and the chain
    // import + run gives what one full run at `end` gives.
    assert_eq!(
        s.counts.final_total,
        old_final.len() as u64 + s.counts.made_final,
        "{:?}",
        s.counts
    );
    d.run(end, "full", None)?;
    let export = d.root.join("export");
    std::fs::create_dir_all(&export)?;
    ops::export(&State::open(&state)?, &export)?;
    assert_eq!(
        members(&export.join("member_scores.parquet"))?,
        members(&d.root.join("full/member_scores.parquet"))?
    );
    Ok(())
}

#[test]
fn a_rescore_after_a_source_fix_evaluates_final_rentals_again() -> TestResult {
    let d = Dirs::new()?;
    two_rentals(&d)?;
    // "a" lost its second half at the source.
    let hour = d.telemetry().join("dt=2026-06-01/hour=00");
    let half: Vec<pitwall_fleetgen::Row> = (0..=300)
        .map(|k| pitwall_fleetgen::Row::new("c1", BASE + k * 1000, 40.0, Some(50.0)))
        .collect();
    pitwall_fleetgen::write_telemetry(&hour.join("a.parquet"), &half)?;
    let state = d.state();
    let first = d.run(BASE + 5 * HOUR, "run-1", Some(&state))?;
    assert_eq!(first.state.map(|s| s.counts.made_final), Some(2));
    let lost = results(&d.root.join("run-1/rental_scores.parquet"))?;
    assert_eq!(
        lost[0].assessment.reason,
        Some(pitwall_score::Reason::InsufficientCoverage)
    );

    // The source is repaired: the missing half arrives.
    let rest: Vec<pitwall_fleetgen::Row> = (301..=600)
        .map(|k| pitwall_fleetgen::Row::new("c1", BASE + k * 1000, 40.0, Some(50.0)))
        .collect();
    pitwall_fleetgen::write_telemetry(&hour.join("a-repaired.parquet"), &rest)?;
    let plain = d.run(BASE + 6 * HOUR, "run-2", Some(&state))?;
    assert_eq!(
        plain
            .state
            .map(|s| (s.counts.evaluated, s.counts.late_for_final)),
        Some((0, 300))
    );

    let mut cfg = d.config(BASE + 7 * HOUR, "rescore", Some(&state));
    if let Some(o) = cfg.state.as_mut() {
        o.rescore = Some((BASE, BASE + HOUR));
    }
    let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    let s = run.state.ok_or("no state")?;
    assert_eq!((s.counts.evaluated, s.counts.made_final), (1, 1));
    assert!(s.rescore.is_some());
    let again = results(&d.root.join("rescore/rental_scores.parquet"))?;
    assert_eq!(again[0].rental.rental_id, "a");
    assert_eq!(again[0].assessment.status, pitwall_score::Status::Scored);
    assert_eq!(again[0].assessment.features.samples, 601);
    // "b" kept its result; the member now counts "a".
    assert_eq!(s.counts.final_total, 2);
    assert_eq!(s.counts.member_changes, 1);
    let head = State::open(&state)?.head().cloned().ok_or("no head")?;
    assert_eq!(head.rescore, Some((BASE, BASE + HOUR)));
    // Both rentals ended on 2026-06-01: one day file, rewritten by the
    // rescore; nothing in the layout of format 1.
    assert!(head.files.final_results.is_empty());
    assert_eq!(head.files.final_days.len(), 1);
    assert_eq!(head.files.final_days[0].rows, 2);
    assert!(
        head.files.final_days[0]
            .file
            .ends_with("final-2026-06-01.parquet")
    );
    assert!(
        head.files.final_days[0]
            .file
            .starts_with(&format!("runs/{:012}-", head.seq))
    );
    Ok(())
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) -> TestResult {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// `format1/` and `format2/` are states earlier pitwalls wrote with two
/// runs over `pitwall gen fleet --rentals 16 --seed 9` (end 2026-11-01), at
/// 2026-03-01 and 2026-09-09T12:00Z: format 1 with the member snapshot one
/// whole file per run, format 2 with a base and a delta whose members keep
/// their rentals inline. This build reads each as it is, writes format 3
/// from its first run on, and says so in the log and run.json.
#[test]
fn a_state_of_a_previous_format_is_upgraded_by_the_next_run_on_record() -> TestResult {
    for format in [1, 2] {
        upgraded_from(format).map_err(|e| format!("format {format}: {e}"))?;
    }
    Ok(())
}

fn upgraded_from(format: u32) -> TestResult {
    let d = Dirs::new()?;
    let end = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    pitwall_fleetgen::generate(
        &d.root.join("fleet"),
        &pitwall_fleetgen::FleetConfig::new(16, 9, end),
    )?;
    let state = d.root.join("state");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/state/format{format}")),
        &state,
    )?;
    let state = state.display().to_string();
    let before = State::open(&state)?;
    assert_eq!(before.head().map(|h| (h.seq, h.format)), Some((2, format)));
    let previous_members = before.load_members()?;
    assert_eq!(previous_members.len(), 2);
    assert!(previous_members.iter().all(|m| !m.recent.is_empty()));

    let config = |as_of: i64, out: &str, state: Option<&str>| {
        let mut cfg = d.config(as_of, out, state);
        cfg.rentals = d.root.join("fleet/rentals.parquet").display().to_string();
        cfg.telemetry = d.root.join("fleet/telemetry").display().to_string();
        cfg
    };
    let run = pitwall_score_job::run(&config(end, "run-3", Some(&state)), &NoProgress)?;
    let s = run.state.as_ref().ok_or("no state section")?;
    assert!(s.committed && s.seq == Some(3), "{s:?}");
    assert_eq!(s.state_io.upgraded_from, Some(format));
    assert!(s.state_io.compacted, "the upgrading run writes one base");
    let head = State::open(&state)?.head().cloned().ok_or("no head")?;
    assert_eq!((head.format, head.upgraded_from), (3, Some(format)));
    assert!(head.files.member_deltas.is_empty());

    pitwall_score_job::run(&config(end, "full", None), &NoProgress)?;
    let export = d.root.join("export");
    std::fs::create_dir_all(&export)?;
    ops::export(&State::open(&state)?, &export)?;
    assert_eq!(
        results(&export.join("rental_results.parquet"))?,
        results(&d.root.join("full/rental_scores.parquet"))?
    );
    assert_eq!(
        members(&export.join("member_scores.parquet"))?,
        members(&d.root.join("full/member_scores.parquet"))?
    );
    Ok(())
}

#[test]
fn a_member_delta_that_is_missing_or_damaged_stops_the_run_naming_it() -> TestResult {
    let d = Dirs::new()?;
    let fleet = Fleet::generate(3, 20);
    fleet.write_rentals(&d.rentals())?;
    std::fs::create_dir_all(d.telemetry())?;
    let state = d.state();
    let deltas_only = Compaction {
        share: 1e9,
        max_deltas: 100,
    };
    let run_at = |k: i64| -> Result<Result<pitwall_score_job::RunJson, JobError>, Error> {
        let as_of = BASE + k * 6 * HOUR;
        fleet.arrive(&d.telemetry(), as_of)?;
        let mut cfg = d.config(as_of, &format!("run-{k}"), Some(&state));
        if let Some(o) = cfg.state.as_mut() {
            o.compaction = deltas_only;
        }
        Ok(pitwall_score_job::run(&cfg, &NoProgress))
    };
    for k in 1..=6 {
        run_at(k)??;
    }
    let head = State::open(&state)?.head().cloned().ok_or("no head")?;
    let delta = head.files.member_deltas.last().ok_or("no member delta")?;
    let path = d.root.join("state").join(delta);
    let bytes = std::fs::read(&path)?;

    std::fs::write(&path, b"not parquet")?;
    let damaged = run_at(7)?.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        damaged.contains(delta.as_str()) && damaged.contains("restore it"),
        "{damaged}"
    );
    std::fs::remove_file(&path)?;
    let missing = run_at(7)?.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        missing.contains(delta.as_str()) && missing.contains("is gone"),
        "{missing}"
    );
    assert_eq!(
        State::open(&state)?.head(),
        Some(&head),
        "the state is untouched"
    );
    std::fs::write(&path, bytes)?;

    // Its rentals file: gone, or not one pitwall wrote.
    let rentals = path.with_extension("rentals");
    let rentals_name = delta.replace(".parquet", ".rentals");
    let rentals_bytes = std::fs::read(&rentals)?;
    std::fs::remove_file(&rentals)?;
    let missing = run_at(7)?.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        missing.contains(&rentals_name) && missing.contains("is gone"),
        "{missing}"
    );
    std::fs::write(&rentals, b"not a rentals file")?;
    let damaged = run_at(7)?.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        damaged.contains(&rentals_name) && damaged.contains("restore it"),
        "{damaged}"
    );
    assert_eq!(State::open(&state)?.head(), Some(&head));
    std::fs::write(&rentals, rentals_bytes)?;
    assert!(run_at(7)??.state.is_some_and(|s| s.committed));
    Ok(())
}

fn rentals_file(d: &Dirs, rentals: &[(&str, &str, i64)]) -> TestResult {
    let rows = rentals
        .iter()
        .map(|(id, car, start)| {
            (
                id.to_string(),
                "m".to_string(),
                car.to_string(),
                *start,
                start + 600_000,
            )
        })
        .collect();
    Fleet {
        rentals: rows,
        uploads: Vec::new(),
    }
    .write_rentals(&d.rentals())
}

/// A member's earlier rentals are not read again: the run that scores its
/// new rental a month later reads no final result (its days are neither
/// the input's, nor the lookback, nor leaving the window), and the member's
/// record still equals a full run's over all three rentals.
#[test]
fn a_run_reads_only_the_days_of_final_results_it_needs() -> TestResult {
    let d = Dirs::new()?;
    let month = 30 * 24 * HOUR;
    rentals_file(&d, &[("a", "c1", BASE), ("b", "c2", BASE + HOUR)])?;
    one_drive(&d, "a", "c1", BASE, 40.0)?;
    one_drive(&d, "b", "c2", BASE + HOUR, 55.0)?;
    let state = d.state();
    let first = d.run(BASE + 5 * HOUR, "run-1", Some(&state))?;
    assert_eq!(first.state.map(|s| s.counts.made_final), Some(2));

    // The rentals input is a recent extract: only the new rental.
    rentals_file(&d, &[("c", "c1", BASE + month)])?;
    one_drive(&d, "c", "c1", BASE + month, 70.0)?;
    let second = d.run(BASE + month + HOUR, "run-2", Some(&state))?;
    let s = second.state.ok_or("no state")?;
    assert_eq!((s.counts.made_final, s.counts.final_total), (1, 3));
    assert_eq!(s.state_io.final_rows_read, 0, "{:?}", s.state_io);

    rentals_file(
        &d,
        &[
            ("a", "c1", BASE),
            ("b", "c2", BASE + HOUR),
            ("c", "c1", BASE + month),
        ],
    )?;
    d.run(BASE + month + HOUR, "full", None)?;
    let export = d.root.join("export");
    std::fs::create_dir_all(&export)?;
    ops::export(&State::open(&state)?, &export)?;
    let from_state = members(&export.join("member_scores.parquet"))?;
    assert_eq!(
        from_state,
        members(&d.root.join("full/member_scores.parquet"))?
    );
    assert_eq!(from_state[0].score.rentals_12m, 3);
    Ok(())
}

/// A state run judges drift from the snapshot and its changes, without a
/// map of every member: the same shift and PSI as two whole snapshots give.
#[test]
fn drift_from_the_changes_is_drift_between_the_whole_snapshots() -> TestResult {
    use pitwall_score::gates::{Drift, evaluate};
    let d = Dirs::new()?;
    let fleet = Fleet::generate(17, 40);
    fleet.write_rentals(&d.rentals())?;
    std::fs::create_dir_all(d.telemetry())?;
    let state = d.state();
    let scores = || -> Result<std::collections::HashMap<String, f64>, Error> {
        Ok(State::open(&state)?
            .load_members()?
            .into_iter()
            .filter_map(|m| m.score.score.map(|s| (m.member_id, s)))
            .collect())
    };
    let mut judged = 0;
    for (k, h) in [20, 40, 60, 80].into_iter().enumerate() {
        fleet.arrive(&d.telemetry(), BASE + h * HOUR)?;
        let before = scores()?;
        let mut cfg = d.config(BASE + h * HOUR, &format!("run-{k}"), Some(&state));
        cfg.gates.min_members_for_drift = 1;
        // Every member with a rental is eligible, so most have a score.
        cfg.model.member.eligible_min_distance_km = 1.0;
        let run = pitwall_score_job::run(&cfg, &NoProgress)?;
        if k == 0 {
            continue;
        }
        let want = evaluate(
            &cfg.gates,
            &pitwall_score::gates::GateInputs {
                drift: Some(Drift::between(&before, &scores()?)),
                ..Default::default()
            },
        );
        for name in ["member_score_shift", "member_score_psi"] {
            let got = run.gates.iter().find(|g| g.gate == name).ok_or(name)?;
            let want = want.iter().find(|g| g.gate == name).ok_or(name)?;
            assert_eq!(got.evaluated, want.evaluated, "{name} run {k}");
            let (g, w) = (got.observed.unwrap_or(0.0), want.observed.unwrap_or(0.0));
            assert!((g - w).abs() < 1e-9, "{name} run {k}: {g} against {w}");
            judged += usize::from(got.evaluated && g != 0.0);
        }
    }
    assert!(judged >= 3, "drift judged {judged} times");
    Ok(())
}

/// A watcher keeps the snapshot it committed and starts its next run from
/// it: the chain still equals one full run, the snapshot is read from the
/// state only when another writer moved the head, and what is kept is what
/// the state holds.
#[test]
fn a_snapshot_kept_in_memory_between_runs_is_the_one_the_state_holds() -> TestResult {
    let d = Dirs::new()?;
    let fleet = Fleet::generate(29, 40);
    fleet.write_rentals(&d.rentals())?;
    std::fs::create_dir_all(d.telemetry())?;
    let state = d.state();
    let memory = pitwall_score_job::SnapshotMemory::default();
    let deltas_too = Compaction {
        share: 1e9,
        max_deltas: 3,
    };
    let mut from_memory = 0;
    let hours: Vec<i64> = (2..=88).step_by(6).collect();
    for (k, &h) in hours.iter().enumerate() {
        let as_of = BASE + h * HOUR;
        fleet.arrive(&d.telemetry(), as_of)?;
        // Every fourth run is another writer's: the kept snapshot is stale.
        let other = k % 4 == 3;
        let mut cfg = d.config(as_of, &format!("run-{k}"), Some(&state));
        if let Some(o) = cfg.state.as_mut() {
            o.compaction = deltas_too;
            o.memory = (!other).then(|| memory.clone());
        }
        let run = pitwall_score_job::run(&cfg, &NoProgress)?;
        let io = &run.state.as_ref().ok_or("no state")?.state_io;
        let after_other = k > 0 && (k - 1) % 4 == 3;
        assert_eq!(
            io.snapshot_in_memory,
            k > 0 && !other && !after_other,
            "run {k}"
        );
        from_memory += usize::from(io.snapshot_in_memory);
    }
    assert!(from_memory >= 8, "{from_memory} runs from memory");
    let last = BASE + hours[hours.len() - 1] * HOUR;
    d.run(last, "full", None)?;
    let export = d.root.join("export");
    std::fs::create_dir_all(&export)?;
    ops::export(&State::open(&state)?, &export)?;
    assert_eq!(
        members(&export.join("member_scores.parquet"))?,
        members(&d.root.join("full/member_scores.parquet"))?
    );
    Ok(())
}
