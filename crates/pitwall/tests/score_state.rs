//! `pitwall score run --state` as a process: killed with SIGKILL at random
//! points and run again, a chain ends in the state an uninterrupted chain
//! reaches; and the state commands' output and exit codes.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_score_state::results::Columns;
use pitwall_score_state::snapshot;

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Error = Box<dyn std::error::Error>;

/// The chain: eleven months of history first, then a month, then days;
/// with the share past which each run compacts the member snapshot, so
/// that runs write deltas (a share no delta passes) and compact (0).
const AS_OFS: [&str; 5] = [
    "2026-09-01T00:00:00Z",
    "2026-10-01T06:00:00Z",
    "2026-10-20T00:00:00Z",
    "2026-10-25T00:00:00Z",
    "2026-11-01T00:00:00Z",
];
const COMPACT_PAST: [&str; 5] = ["0.1", "1000", "1000", "0", "1000"];
/// Kills per run of the chain before it is let finish.
const KILLS: usize = 4;

fn pitwall(args: &[&str]) -> Result<Output, Error> {
    Ok(Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(args)
        .output()?)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn fleet(dir: &Path) -> Result<(), Error> {
    let d = dir.display().to_string();
    let o = pitwall(&[
        "gen",
        "fleet",
        "--out",
        &d,
        "--rentals",
        "400",
        "--seed",
        "3",
    ])?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Gates that hold nothing: this test is about crashes, not policy.
    std::fs::write(
        dir.join("gates.toml"),
        "max_rejected_telemetry_ratio = 1.0\nmax_pending_ratio = 1.0\nmax_days_without_telemetry = 10000\n\
         max_member_score_shift = 1000.0\nmax_member_score_psi = 1000.0\n",
    )?;
    Ok(())
}

fn run_args(dir: &Path, state: &str, as_of: &str, out: &str) -> Vec<String> {
    let d = dir.display().to_string();
    [
        "score",
        "run",
        "--rentals",
        &format!("{d}/rentals.parquet"),
        "--telemetry",
        &format!("{d}/telemetry"),
        "--gates",
        &format!("{d}/gates.toml"),
        "--as-of",
        as_of,
        "--state",
        state,
        "--out",
        &format!("{d}/{out}"),
        "--threads",
        "1",
        "--json",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Rental results and members of an exported state, without the run ids
/// (a run repeated after a crash that had committed gets another seq).
fn exported(dir: &Path, state: &str) -> Result<(Vec<String>, Vec<String>), Error> {
    let out = dir.join(format!("export-{}", state.len()));
    let o = pitwall(&[
        "score",
        "state",
        "export",
        "--state",
        state,
        "--out",
        &out.display().to_string(),
    ])?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let read = |name: &str| -> Result<Vec<arrow_array::RecordBatch>, Error> {
        let f = std::fs::File::open(out.join(name))?;
        Ok(ParquetRecordBatchReaderBuilder::try_new(f)?
            .build()?
            .collect::<Result<Vec<_>, _>>()?)
    };
    let mut rentals = Vec::new();
    for b in read("rental_results.parquet")? {
        let c = Columns::of(&b)?;
        for i in 0..b.num_rows() {
            let mut r = c.row(i)?;
            let is_final = r.finality.take().is_some();
            rentals.push(format!("{r:?} final={is_final}"));
        }
    }
    let members = snapshot::from_batches(&read("member_scores.parquet")?)?
        .iter()
        .map(|m| format!("{m:?}"))
        .collect();
    Ok((rentals, members))
}

#[test]
fn kill_9_at_random_points_then_the_same_run_reaches_the_uninterrupted_state() -> TestResult {
    let dir = tempfile::tempdir()?;
    fleet(dir.path())?;
    let calm = dir.path().join("calm").display().to_string();
    let chain_args = |state: &str, k: usize, name: &str| {
        let mut a = run_args(dir.path(), state, AS_OFS[k], &format!("{name}-{k}"));
        a.extend([
            "--compact-members-past".to_string(),
            COMPACT_PAST[k].to_string(),
        ]);
        a
    };
    let mut took = Vec::new();
    let (mut deltas, mut compactions) = (0, 0);
    for k in 0..AS_OFS.len() {
        let t = Instant::now();
        let o = pitwall(
            &chain_args(&calm, k, "calm")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        took.push(t.elapsed());
        let run: serde_json::Value = serde_json::from_slice(&o.stdout)?;
        let io = &run["state"]["state_io"];
        if io["compacted"] == true {
            compactions += 1;
        } else if io["member_rows_written"].as_u64() > Some(0) {
            deltas += 1;
        }
    }
    assert!(
        deltas >= 2 && compactions >= 2,
        "{deltas} delta runs, {compactions} compactions"
    );

    let crashed = dir.path().join("crashed").display().to_string();
    let mut kills = 0;
    // A fixed sequence of kill points, spread over a run's length.
    let mut point = 0x9e37_79b9_u64;
    for (k, took) in took.iter().enumerate() {
        let args = chain_args(&crashed, k, "crashed");
        for _ in 0..KILLS {
            point = point
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let wait = Duration::from_millis((point >> 33) % (took.as_millis() as u64 + 1));
            let mut child = Command::new(env!("CARGO_BIN_EXE_pitwall"))
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            std::thread::sleep(wait);
            if child.try_wait()?.is_none() {
                child.kill()?;
                kills += 1;
            }
            child.wait()?;
            // The state is readable after every kill.
            let o = pitwall(&["score", "state", "show", "--state", &crashed, "--json"])?;
            assert_eq!(o.status.code(), Some(0), "after a kill: {}", text(&o));
        }
        // Then the same run again, to the end.
        let o = pitwall(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    assert!(kills >= 3, "only {kills} kills landed");
    assert_eq!(
        exported(dir.path(), &calm)?,
        exported(dir.path(), &crashed)?
    );
    Ok(())
}

#[test]
fn state_commands_print_json_and_exit_codes() -> TestResult {
    let dir = tempfile::tempdir()?;
    fleet(dir.path())?;
    let state = dir.path().join("state").display().to_string();
    let args = run_args(dir.path(), &state, AS_OFS[0], "run-0");
    let o = pitwall(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let run: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(run["state"]["committed"], true);
    assert_eq!(run["state"]["seq"], 1);
    assert!(run["inputs"]["telemetry_read"]["files_opened"].as_u64() > Some(0));

    let o = pitwall(&["score", "state", "show", "--state", &state, "--json"])?;
    let show: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(show["last_run"]["seq"], 1);
    assert!(show["final_rentals"].as_u64() > Some(0));
    let o = pitwall(&["score", "state", "show", "--state", &state])?;
    assert!(text(&o).contains("last run"), "{}", text(&o));

    // An as_of before the state's last run: exit 1, naming the state.
    let args = run_args(dir.path(), &state, "2026-08-01T00:00:00Z", "back");
    let o = pitwall(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&state) && text(&o).contains("moves forward only"));

    // A rescore needs both ends: a usage error.
    let mut args = run_args(dir.path(), &state, AS_OFS[1], "x");
    args.extend(["--rescore-from".into(), "2026-10-01T00:00:00Z".into()]);
    let o = pitwall(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // A compaction share is a number >= 0.
    let mut args = run_args(dir.path(), &state, AS_OFS[1], "x");
    args.push("--compact-members-past=-0.5".into());
    let o = pitwall(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not a share"), "{}", text(&o));

    // A publication needs a run or a state to publish.
    let o = pitwall(&["score", "publish", "--brokers", "127.0.0.1:1"])?;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // An empty state has nothing to publish: exit 1, saying what to run first.
    let empty = dir.path().join("empty").display().to_string();
    let o = pitwall(&[
        "score",
        "publish",
        "--state",
        &empty,
        "--brokers",
        "127.0.0.1:1",
    ])?;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no committed run"), "{}", text(&o));

    // Import refuses a state that holds runs, and seeds an empty one.
    let results = dir
        .path()
        .join("run-0/rental_scores.parquet")
        .display()
        .to_string();
    let o = pitwall(&[
        "score",
        "state",
        "import",
        "--state",
        &state,
        "--rental-results",
        &results,
    ])?;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("empty state only"));
    let fresh = dir.path().join("fresh").display().to_string();
    let o = pitwall(&[
        "score",
        "state",
        "import",
        "--state",
        &fresh,
        "--rental-results",
        &results,
        "--json",
    ])?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let imported: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(imported["seq"], 1);
    assert_eq!(
        imported["final_rentals"]
            .as_u64()
            .map(|n| n + imported["left_open"].as_u64().unwrap_or(0)),
        run["rentals"]["considered"].as_u64()
    );
    Ok(())
}

/// Found by bench/score_soak.py's `after500` fault: S3 may answer a write
/// with a 500 after it took effect, and the client's retry of the log
/// entry's create-if-absent PUT then finds the entry there. The run took
/// that for a lost race, with its own run as the "winner", and removed its
/// own files, which the committed entry names. Now an entry holding exactly
/// the bytes the run wrote is the run's own commit.
#[test]
fn a_commit_answered_500_after_it_took_effect_is_still_the_runs_own() -> TestResult {
    let Some(bucket) = common::s3_bucket() else {
        return Ok(());
    };
    let upstream = std::env::var("AWS_ENDPOINT_URL")?;
    let proxy = common::proxy::Proxy::start(
        &upstream,
        &[
            "--rate",
            "1",
            "--s3",
            "after500_create",
            "--dynamodb-rate",
            "0",
        ],
    )?;
    let dir = tempfile::tempdir()?;
    fleet(dir.path())?;
    let state = format!(
        "s3://{bucket}/{}/state",
        common::kinesis::unique("lost-answer")
    );
    let via = format!("http://127.0.0.1:{}", proxy.port);
    for (as_of, out) in [(AS_OFS[0], "a"), (AS_OFS[1], "b")] {
        let o = Command::new(env!("CARGO_BIN_EXE_pitwall"))
            .args(run_args(dir.path(), &state, as_of, out))
            .env("AWS_ENDPOINT_URL_S3", &via)
            .output()?;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    assert!(proxy.count("s3_after500")? >= 2, "{}", proxy.faults()?);
    // Both commits stand, with every file they name: the chain reads back
    // and equals the same two runs on a local state.
    let local = dir.path().join("local").display().to_string();
    for (as_of, out) in [(AS_OFS[0], "la"), (AS_OFS[1], "lb")] {
        let o = pitwall(
            &run_args(dir.path(), &local, as_of, out)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    assert!(exported(dir.path(), &state)? == exported(dir.path(), &local)?);
    Ok(())
}

/// Found by bench/score_soak.py: a GET of the state cut off half-way
/// through its answer (a connection reset) failed the run, since
/// object_store retries a request but not a body that breaks off as it
/// arrives; a watcher's cycle failed and alerted on it. Reads are now
/// tried again.
#[test]
fn a_state_read_cut_off_mid_answer_is_read_again() -> TestResult {
    let Some(bucket) = common::s3_bucket() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    fleet(dir.path())?;
    let state = format!(
        "s3://{bucket}/{}/state",
        common::kinesis::unique("reset-once")
    );
    let o = pitwall(
        &run_args(dir.path(), &state, AS_OFS[0], "a")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let proxy = common::proxy::Proxy::start(
        &std::env::var("AWS_ENDPOINT_URL")?,
        &["--rate", "1", "--s3", "reset_once", "--dynamodb-rate", "0"],
    )?;
    let via = format!("http://127.0.0.1:{}", proxy.port);
    let o = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(run_args(dir.path(), &state, AS_OFS[1], "b"))
        .env("AWS_ENDPOINT_URL_S3", &via)
        .output()?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(proxy.count("s3_reset")? >= 3, "{}", proxy.faults()?);
    Ok(())
}
