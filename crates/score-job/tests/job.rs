//! The score job on real files: end to end with the fleet generator, bad
//! input of every kind, quality gates, and file-order independence.

mod util;

use std::path::Path;

use pitwall_score_job::RunStatus;
use proptest::prelude::*;
use util::*;

fn rule_count(run: &pitwall_score_job::RunJson, section: &str, rule: &str) -> u64 {
    let v = serde_json::to_value(run).unwrap_or_default();
    v["rejected"][section][rule]["count"].as_u64().unwrap_or(0)
}

#[test]
fn generated_fleet_end_to_end() -> TestResult {
    let dir = tempfile::tempdir()?;
    let end = T0;
    let cfg = pitwall_fleetgen::FleetConfig::new(120, 42, end);
    let fleet = pitwall_fleetgen::generate(dir.path(), &cfg)?;
    let run = run(dir.path(), end)?;
    let out = dir.path().join("out");

    // Every row the generator broke is rejected, and nothing else.
    assert_eq!(run.inputs.telemetry.rows, fleet.telemetry_rows);
    assert_eq!(run.inputs.telemetry.rejected, fleet.bad_telemetry_rows);
    assert_eq!(run.inputs.rentals.rejected as usize, fleet.bad_rental_rows);
    assert_eq!(run.inputs.rentals.valid as usize, fleet.rentals);
    assert!(run.inputs.telemetry_outside_rentals > 0);
    assert!(run.inputs.telemetry_duplicates > 0);

    // Rentals ending after as_of are not considered; the rest all get a row.
    let rows = rental_rows(&out)?;
    assert_eq!(rows.len(), run.rentals.considered);
    assert!(run.rentals.not_yet_ended >= 2, "{:?}", run.rentals);
    assert!(
        run.rentals.by_status.get("pending").copied().unwrap_or(0) >= 3,
        "{:?}",
        run.rentals.by_status
    );
    assert!(
        rows.iter()
            .all(|r| (r.status == "scored") == r.score.is_some())
    );
    assert!(
        rows.iter()
            .filter_map(|r| r.score)
            .all(|s| (0.0..=100.0).contains(&s))
    );
    assert_eq!(run.status, RunStatus::Ok, "held: {:?}", run.held_because);

    for f in [
        "member_scores.parquet",
        "rejected_rentals.parquet",
        "rejected_telemetry.parquet",
        "run.json",
        "report.html",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let html = std::fs::read_to_string(out.join("report.html"))?;
    assert!(
        html.contains("<svg")
            && html.contains("Quality gates")
            && html.contains("speed_out_of_range")
    );
    // Self-contained: nothing is fetched from the network.
    assert!(
        !html.contains("src=\"http")
            && !html.contains("href=\"http")
            && !html.contains("<script src")
    );
    let rejected = read_batches(&out.join("rejected_telemetry.parquet"))?;
    assert_eq!(
        rejected.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
        fleet.bad_telemetry_rows
    );
    Ok(())
}

/// A rental with one harsh-brake run into a stop, one steady rental, one
/// short one, one poorly covered, and one that has not ended.
fn hand_built(dir: &Path) -> TestResult {
    write_rentals(
        &dir.join("rentals.parquet"),
        &[
            ("brake", "m1", "A", T0, T0 + 600_000),
            ("steady", "m1", "B", T0, T0 + 600_000),
            ("short", "m2", "C", T0, T0 + 60_000),
            ("sparse", "m2", "D", T0, T0 + 600_000),
            ("future", "m2", "A", T0 + 5 * H, T0 + 6 * H),
        ],
    )?;
    let mut brake = drive("A", T0, 590, 60.0);
    // Brake 60 → 40 → 20 → 0 over the last three seconds, then stand.
    for (k, v) in [
        (591, 40.0),
        (592, 20.0),
        (593, 0.0),
        (594, 0.0),
        (595, 0.0),
        (596, 0.0),
        (597, 0.0),
        (598, 0.0),
        (599, 0.0),
        (600, 0.0),
    ] {
        brake.push((Some("A"), Some(T0 + k * 1000), Some(v), Some(50.0)));
    }
    let steady = drive("B", T0, 600, 60.0);
    let short = drive("C", T0, 60, 30.0);
    let sparse: Vec<Row> = drive("D", T0, 600, 60.0).into_iter().step_by(3).collect();
    std::fs::create_dir_all(dir.join("telemetry/dt=2026-05-28"))?;
    write_telemetry(
        &dir.join("telemetry/dt=2026-05-28/a.parquet"),
        &[brake, short].concat(),
    )?;
    write_telemetry(
        &dir.join("telemetry/dt=2026-05-28/b.parquet"),
        &[steady, sparse].concat(),
    )?;
    Ok(())
}

#[test]
fn hand_built_rentals_get_the_spec_verdicts() -> TestResult {
    let dir = tempfile::tempdir()?;
    hand_built(dir.path())?;
    let as_of = T0 + 600_000 + 4 * H; // exactly end + grace: past the grace
    let run = run(dir.path(), as_of)?;
    let rows = rental_rows(&dir.path().join("out"))?;
    assert_eq!(rows.len(), 4, "the future rental is not considered");
    assert_eq!(run.rentals.not_yet_ended, 1);

    let brake = find(&rows, "brake");
    assert_eq!(
        (
            brake.status.as_str(),
            brake.harsh_brake_n,
            brake.unstable_stop_n
        ),
        ("scored", 1, 1)
    );
    assert_eq!(brake.samples, 601);
    let steady = find(&rows, "steady");
    assert_eq!(
        (steady.score, steady.grade.as_deref()),
        (Some(100.0), Some("EXCELLENT"))
    );
    assert!((steady.distance_km - 10.0).abs() < 1e-9);
    let short = find(&rows, "short");
    assert_eq!(
        (short.status.as_str(), short.reason.as_deref()),
        ("unscorable", Some("too_short"))
    );
    let sparse = find(&rows, "sparse");
    assert_eq!(
        (sparse.status.as_str(), sparse.reason.as_deref()),
        ("unscorable", Some("insufficient_coverage"))
    );
    Ok(())
}

#[test]
fn poor_coverage_is_pending_until_the_grace_ends() -> TestResult {
    let dir = tempfile::tempdir()?;
    hand_built(dir.path())?;
    let end = T0 + 600_000;
    run(dir.path(), end + 4 * H - 1)?;
    let rows = rental_rows(&dir.path().join("out"))?;
    let sparse = find(&rows, "sparse");
    assert_eq!(
        (sparse.status.as_str(), sparse.reason.as_deref()),
        ("pending", Some("awaiting_telemetry"))
    );
    // 1 of 4 considered rentals pending: 25 % > 20 %, so the run is held.
    let run = run(dir.path(), end + 4 * H - 1)?;
    assert_eq!(run.status, RunStatus::Held);
    assert!(
        run.held_because
            .iter()
            .any(|r| r.starts_with("pending_rentals")),
        "{:?}",
        run.held_because
    );
    Ok(())
}

#[test]
fn rejected_telemetry_above_1_percent_holds_the_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    hand_built(dir.path())?;
    let bad: Vec<Row> = (0..40)
        .map(|i| (Some("B"), Some(T0 + i), Some(999.0), None))
        .collect();
    write_telemetry(&dir.path().join("telemetry/dt=2026-05-28/c.parquet"), &bad)?;
    let run = run(dir.path(), T0 + 5 * H)?;
    assert_eq!(rule_count(&run, "telemetry", "speed_out_of_range"), 40);
    assert_eq!(run.status, RunStatus::Held);
    assert!(
        run.held_because[0].starts_with("rejected_telemetry_rows"),
        "{:?}",
        run.held_because
    );
    Ok(())
}

#[test]
fn a_day_with_rentals_and_no_telemetry_holds_the_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    hand_built(dir.path())?;
    let day_later = T0 + 30 * H;
    write_rentals(
        &dir.path().join("rentals.parquet"),
        &[
            ("steady", "m1", "B", T0, T0 + 600_000),
            ("dark", "m1", "B", day_later, day_later + 600_000),
        ],
    )?;
    let run = run(dir.path(), day_later + 5 * H)?;
    assert_eq!(run.status, RunStatus::Held);
    assert!(
        run.held_because
            .iter()
            .any(|r| r.contains("days_without_telemetry") && r.contains("2026-05-30")),
        "{:?}",
        run.held_because
    );
    Ok(())
}

#[test]
fn drift_against_the_previous_run_is_gated() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = pitwall_fleetgen::FleetConfig::new(80, 3, T0);
    pitwall_fleetgen::generate(dir.path(), &cfg)?;
    let first = config(dir.path(), T0);
    pitwall_score_job::run(&first, &pitwall_score_job::NoProgress)?;

    // Same inputs: no drift.
    let mut same = config(dir.path(), T0);
    same.out = dir.path().join("out2");
    same.previous = Some(first.out.clone());
    // A small fleet: judge drift on the few members it has.
    same.gates.min_members_for_drift = 1;
    let run = pitwall_score_job::run(&same, &pitwall_score_job::NoProgress)?;
    let shift = run
        .gates
        .iter()
        .find(|g| g.gate == "member_score_shift")
        .ok_or("no shift gate")?;
    assert_eq!(
        (shift.evaluated, shift.passed, shift.observed),
        (true, true, Some(0.0))
    );

    // A model that punishes harder moves every score: held.
    let mut harsh = config(dir.path(), T0);
    harsh.out = dir.path().join("out3");
    harsh.previous = Some(first.out.clone());
    harsh.model.score.slope = 60.0;
    harsh.gates.min_members_for_drift = 1;
    let run = pitwall_score_job::run(&harsh, &pitwall_score_job::NoProgress)?;
    assert_eq!(run.status, RunStatus::Held);
    assert!(
        run.held_because
            .iter()
            .any(|r| r.starts_with("member_score_shift")),
        "{:?}",
        run.held_because
    );
    Ok(())
}

#[test]
fn every_rental_rule_is_counted_from_a_csv() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("telemetry"))?;
    write_telemetry(
        &dir.path().join("telemetry/t.parquet"),
        &drive("A", T0, 10, 10.0),
    )?;
    let csv = "rental_id,member_id,car_id,start_at,end_at\n\
        ok,m,A,2026-05-28T20:26:40Z,2026-05-28T20:30:00Z\n\
        ,m,A,2026-05-28T20:26:40Z,2026-05-28T20:30:00Z\n\
        e1,,A,2026-05-28T20:26:40Z,2026-05-28T20:30:00Z\n\
        e2,m,,2026-05-28T20:26:40Z,2026-05-28T20:30:00Z\n\
        e3,m,A,,2026-05-28T20:30:00Z\n\
        e4,m,A,2026-05-28T20:26:40Z,\n\
        e5,m,A,yesterday,2026-05-28T20:30:00Z\n\
        e6,m,A,2026-05-28T20:30:00Z,2026-05-28T20:30:00Z\n\
        e7,m,A,2026-05-01T00:00:00Z,2026-05-28T20:30:00Z\n\
        twin,m,A,2026-05-28 20:26:40,2026-05-28 20:30:00\n\
        twin,m,A,2026-05-28T20:26:40Z,2026-05-28T20:30:00Z\n\
        dup,m,A,2026-05-28T20:26:40Z,2026-05-28T20:30:00Z\n\
        dup,m2,A,2026-05-28T20:26:40Z,2026-05-28T20:30:00Z\n";
    std::fs::write(dir.path().join("rentals.csv"), csv)?;
    let mut cfg = config(dir.path(), T0 + H);
    cfg.rentals = dir.path().join("rentals.csv").display().to_string();
    let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    for (rule, n) in [
        ("rental_id_empty", 1),
        ("member_id_empty", 1),
        ("car_id_empty", 1),
        ("start_at_null", 1),
        ("end_at_null", 1),
        ("timestamp_unparseable", 1),
        ("end_not_after_start", 1),
        ("longer_than_7_days", 1),
        ("duplicate_row", 1),
        ("rental_id_duplicate", 2),
    ] {
        assert_eq!(rule_count(&run, "rentals", rule), n, "{rule}");
    }
    // "ok" and one copy of the identical "twin" (naive time = UTC) survive.
    assert_eq!(run.inputs.rentals.valid, 2);
    Ok(())
}

#[test]
fn every_telemetry_rule_is_counted_and_kept() -> TestResult {
    let dir = tempfile::tempdir()?;
    hand_built(dir.path())?;
    let bad: Vec<Row> = vec![
        (None, Some(T0), Some(1.0), None),
        (Some(""), Some(T0), Some(1.0), None),
        (Some("A"), None, Some(1.0), None),
        (Some("A"), Some(T0), None, None),
        (Some("A"), Some(T0), Some(-1.0), None),
        (Some("A"), Some(T0), Some(f64::NAN), None),
        (Some("A"), Some(T0), Some(1.0), Some(-3.0)),
    ];
    write_telemetry(
        &dir.path().join("telemetry/dt=2026-05-28/bad.parquet"),
        &bad,
    )?;
    let run = run(dir.path(), T0 + 5 * H)?;
    for (rule, n) in [
        ("car_id_empty", 2),
        ("ts_null", 1),
        ("speed_null", 1),
        ("speed_out_of_range", 2),
        ("speed_limit_invalid", 1),
    ] {
        assert_eq!(rule_count(&run, "telemetry", rule), n, "{rule}");
    }
    let kept = read_batches(&dir.path().join("out/rejected_telemetry.parquet"))?;
    assert_eq!(kept.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
    Ok(())
}

#[test]
fn a_malformed_file_is_an_error_naming_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    hand_built(dir.path())?;
    let bad = dir.path().join("telemetry/dt=2026-05-28/broken.parquet");
    std::fs::write(&bad, b"this is not parquet")?;
    let err = run(dir.path(), T0 + 5 * H)
        .err()
        .ok_or("a broken file must fail the run")?;
    assert!(err.to_string().contains("broken.parquet"), "{err}");
    Ok(())
}

#[test]
fn a_file_without_a_contract_column_is_an_error_naming_both() -> TestResult {
    let dir = tempfile::tempdir()?;
    hand_built(dir.path())?;
    // A rentals file where telemetry is expected.
    write_rentals(
        &dir.path().join("telemetry/dt=2026-05-28/wrong.parquet"),
        &[("r", "m", "A", T0, T0 + 1)],
    )?;
    let err = run(dir.path(), T0 + 5 * H)
        .err()
        .ok_or("must fail")?
        .to_string();
    assert!(
        err.contains("wrong.parquet") && err.contains("speed_kmh"),
        "{err}"
    );
    Ok(())
}

#[test]
fn missing_inputs_are_clear_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = run(dir.path(), T0).err().ok_or("must fail")?.to_string();
    assert!(err.contains("rentals.parquet"), "{err}");
    hand_built(dir.path())?;
    std::fs::remove_dir_all(dir.path().join("telemetry"))?;
    std::fs::create_dir_all(dir.path().join("telemetry"))?;
    let err = run(dir.path(), T0).err().ok_or("must fail")?.to_string();
    assert!(err.contains("no telemetry found"), "{err}");
    Ok(())
}

/// Telemetry rows with duplicates whose values differ, for the property test.
fn shuffled_fixture() -> Vec<Row> {
    let mut rows = Vec::new();
    for (car, base) in [("A", 0.0), ("B", 20.0), ("C", 40.0)] {
        for i in 0..400i64 {
            let v = base + ((i * 37) % 23) as f64 * 2.0;
            rows.push((
                Some(car),
                Some(T0 + i * 1000),
                Some(v),
                if i % 7 == 0 { None } else { Some(50.0) },
            ));
            if i % 11 == 0 {
                // A redelivery with another speed: the lower one must win.
                rows.push((Some(car), Some(T0 + i * 1000), Some(v + 30.0), Some(50.0)));
            }
        }
    }
    rows.push((Some("A"), None, Some(1.0), None));
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Same rows, any split into files, any order: identical outputs.
    #[test]
    fn file_and_row_order_do_not_change_results(seed in any::<u64>(), files in 1usize..5) {
        let rows = shuffled_fixture();
        let reference = order_run(&rows, 1, 0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let shuffled = order_run(&rows, files, seed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(reference, shuffled);
    }
}

fn order_run(
    rows: &[Row],
    files: usize,
    seed: u64,
) -> Result<(Vec<RentalRow>, String), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    write_rentals(
        &dir.path().join("rentals.parquet"),
        &[
            ("a", "m1", "A", T0, T0 + 399_000),
            ("b", "m1", "B", T0, T0 + 399_000),
            ("c", "m2", "C", T0 + 100_000, T0 + 399_000),
        ],
    )?;
    // A cheap deterministic shuffle from the seed.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut x = seed | 1;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    std::fs::create_dir_all(dir.path().join("telemetry"))?;
    for f in 0..files {
        let part: Vec<Row> = order
            .iter()
            .skip(f)
            .step_by(files)
            .map(|&i| rows[i])
            .collect();
        write_telemetry(
            &dir.path().join(format!("telemetry/part-{f}.parquet")),
            &part,
        )?;
    }
    run(dir.path(), T0 + 5 * H)?;
    let batches = read_batches(&dir.path().join("out/member_scores.parquet"))?;
    Ok((
        rental_rows(&dir.path().join("out"))?,
        format!("{batches:?}"),
    ))
}
