//! The state on S3 (moto, started by scripts/test.sh): the commit is a
//! conditional PUT, and a chain of runs gives what the same chain gives on
//! local disk.

use pitwall_score_state::{State, ops};

use super::sim::*;
use super::{TestResult, members, results};

/// The bucket, when the services are up; under scripts/test.sh they must be.
fn bucket() -> Option<String> {
    match std::env::var("PITWALL_TEST_S3_BUCKET") {
        Ok(b) => Some(b),
        Err(_) if std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() => {
            panic!("PITWALL_TEST_S3_BUCKET is not set: start the services with scripts/services.sh")
        }
        Err(_) => {
            eprintln!("skipped: no S3 server (run scripts/test.sh, which starts moto)");
            None
        }
    }
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{nanos:x}")
}

#[test]
fn a_state_on_s3_gives_what_a_local_state_gives() -> TestResult {
    let Some(bucket) = bucket() else {
        return Ok(());
    };
    let d = Dirs::new()?;
    let fleet = Fleet::generate(21, 24);
    fleet.write_rentals(&d.rentals())?;
    std::fs::create_dir_all(d.telemetry())?;
    let s3 = format!("s3://{bucket}/{}", unique("state"));
    // A second S3 state that never compacts: its runs read members'
    // rentals by byte range from the base and from every delta.
    let s3_deltas = format!("s3://{bucket}/{}", unique("state-deltas"));
    let local = d.state();
    for (k, h) in [6, 20, 41, 60, 90].into_iter().enumerate() {
        let as_of = BASE + h * HOUR;
        fleet.arrive(&d.telemetry(), as_of)?;
        d.run(as_of, &format!("local-{k}"), Some(&local))?;
        let run = d.run(as_of, &format!("s3-{k}"), Some(&s3))?;
        assert_eq!(run.state.and_then(|s| s.seq), Some(k as u64 + 1));
        let mut cfg = d.config(as_of, &format!("s3-deltas-{k}"), Some(&s3_deltas));
        if let Some(o) = cfg.state.as_mut() {
            o.compaction = pitwall_score_state::Compaction {
                share: 1e9,
                max_deltas: 100,
            };
        }
        let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
        let io = run.state.ok_or("no state section")?.state_io;
        assert!(k == 0 || !io.compacted, "run {k} compacted");
    }
    let head = State::open(&s3_deltas)?.head().cloned().ok_or("no head")?;
    assert!(head.files.member_deltas.len() >= 2, "{:?}", head.files);
    let exports = [
        (d.root.join("export-local"), &local),
        (d.root.join("export-s3"), &s3),
        (d.root.join("export-s3-deltas"), &s3_deltas),
    ];
    for (dir, url) in &exports {
        std::fs::create_dir_all(dir)?;
        ops::export(&State::open(url)?, dir)?;
    }
    let (a, _) = &exports[0];
    for (b, _) in &exports[1..] {
        assert_eq!(
            results(&a.join("rental_results.parquet"))?,
            results(&b.join("rental_results.parquet"))?
        );
        assert_eq!(
            members(&a.join("member_scores.parquet"))?,
            members(&b.join("member_scores.parquet"))?
        );
    }
    Ok(())
}

#[test]
fn on_s3_two_runs_from_one_state_cannot_both_commit() -> TestResult {
    let Some(bucket) = bucket() else {
        return Ok(());
    };
    let d = Dirs::new()?;
    let fleet = Fleet::generate(5, 10);
    fleet.write_rentals(&d.rentals())?;
    std::fs::create_dir_all(d.telemetry())?;
    fleet.arrive(&d.telemetry(), BASE + 90 * HOUR)?;
    let s3 = format!("s3://{bucket}/{}", unique("race"));
    d.run(BASE + 10 * HOUR, "first", Some(&s3))?;
    // Two drafts of run 2 from the same committed run 1.
    let state = State::open(&s3)?;
    let (a, b) = (state.begin(), state.begin());
    let head = state.head().cloned().ok_or("no head")?;
    let mut entry = head.clone();
    entry.run_id = "winner".into();
    a.commit(entry.clone())?;
    entry.run_id = "loser".into();
    let lost = b
        .commit(entry)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        lost.contains("winner") && lost.contains("state run 2"),
        "{lost}"
    );
    assert_eq!(
        State::open(&s3)?.head().map(|h| h.run_id.clone()),
        Some("winner".to_string())
    );
    Ok(())
}

#[test]
fn a_telemetry_prefix_nothing_has_landed_under_is_an_empty_input() -> TestResult {
    let Some(bucket) = bucket() else {
        return Ok(());
    };
    let d = Dirs::new()?;
    let fleet = Fleet::generate(8, 6);
    fleet.write_rentals(&d.rentals())?;
    let telemetry = format!("s3://{bucket}/{}", unique("no-lake-yet"));
    let mut cfg = d.config(BASE + 2 * HOUR, "run", Some(&d.state()));
    cfg.telemetry = telemetry.clone();
    let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    let s = run.state.as_ref().ok_or("no state")?;
    assert!(s.committed, "{:?}", s.not_committed_because);
    assert_eq!(
        (run.inputs.telemetry.files, run.inputs.telemetry.rows),
        (0, 0)
    );
    assert!(
        run.warnings.len() == 1 && run.warnings[0].contains(&telemetry),
        "{:?}",
        run.warnings
    );
    Ok(())
}
