//! The whole live path, each part a real process against a real server:
//! `gen stream` → kinesalite → `ingest run` (telemetry contract) → lake →
//! `score watch` (SQLite lease) → tansu, with the schema in Glue (moto); a
//! read_committed consumer that is not pitwall's (confluent-kafka with AWS's
//! Glue deserializer) must find every eligible member with the score a full
//! `score run` over the same lake gives.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use arrow_array::Array as _;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

mod common;

use common::kinesis::{fixture, free_port, ingest_telemetry, metric, unique, wait_for};
use common::{Error, TestResult, create_topic, pitwall, pitwall_ok};

const DECODER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../publish/tests/consume_and_decode.py"
);

fn services() -> Option<String> {
    let kafka = std::env::var("PITWALL_TEST_KAFKA").ok();
    let s3 = std::env::var("PITWALL_TEST_S3_BUCKET").ok();
    match (kafka, s3) {
        (Some(k), Some(_)) => Some(k),
        _ if std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() => {
            panic!(
                "PITWALL_TEST_KAFKA / moto are not set: start the services with scripts/services.sh"
            )
        }
        _ => {
            eprintln!("skipped: no Kafka broker or moto (run scripts/test.sh)");
            None
        }
    }
}

/// The default model with a low eligibility bar: an hour of simulated
/// driving makes members eligible.
fn model(dir: &Path) -> Result<String, Error> {
    let out = pitwall(&["score", "model"])?;
    let text = String::from_utf8(out.stdout)?.replace(
        "eligible_min_distance_km = 100.0",
        "eligible_min_distance_km = 2.0",
    );
    let path = dir.join("model.toml");
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

/// Eligible members' scores from a full run's member_scores.parquet.
fn eligible_scores(run: &Path) -> Result<BTreeMap<String, Option<f64>>, Error> {
    let file = std::fs::File::open(run.join("member_scores.parquet"))?;
    let mut out = BTreeMap::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
        let b = b?;
        let ids = b
            .column_by_name("member_id")
            .ok_or("member_id")?
            .as_string::<i32>();
        let eligible = b.column_by_name("eligible").ok_or("eligible")?.as_boolean();
        let scores = b
            .column_by_name("score")
            .ok_or("score")?
            .as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            if eligible.value(i) {
                out.insert(
                    ids.value(i).to_string(),
                    (!scores.is_null(i)).then(|| scores.value(i)),
                );
            }
        }
    }
    Ok(out)
}

#[test]
fn simulated_cars_reach_the_topic_through_ingest_and_watch_with_a_full_runs_scores() -> TestResult {
    let Some(brokers) = services() else {
        return Ok(());
    };
    let Some((dir, stream, lake)) = fixture("live", 2)? else {
        return Ok(());
    };
    let d = dir.path();
    let rentals = d.join("rentals.parquet");
    pitwall_ok(&[
        "gen",
        "stream",
        "--stream",
        &stream,
        "--rentals",
        &rentals.display().to_string(),
        "--cars",
        "10",
        "--members",
        "6",
        "--speedup",
        "900",
        "--duration",
        "75m",
        "--start",
        "2026-11-01T09:00:00Z",
        "--seed",
        "11",
        "--rental-minutes",
        "8..25",
        "--json",
    ])?;
    ingest_telemetry(&stream, &lake, &d.join("ingest-leases.db"))?;

    let telemetry = format!("{lake}/telemetry.kinematics");
    let model = model(d)?;
    let topic = unique("live-scores");
    create_topic(&brokers, &topic)?;
    let registry = format!("glue:{}", unique("live"));
    let port = free_port();
    let watch = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(["score", "watch", "--state"])
        .arg(d.join("state"))
        .arg("--rentals")
        .arg(&rentals)
        .args([
            "--telemetry",
            &telemetry,
            "--model",
            &model,
            "--every",
            "2s",
            "--cycles",
            "3",
        ])
        .arg("--leases")
        .arg(format!("sqlite:{}", d.join("watch-leases.db").display()))
        .arg("--out")
        .arg(d.join("cycles"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--registry",
            &registry,
        ])
        .arg("--transactional=false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut freshness = None;
    wait_for("the watcher's freshness of the first publication", || {
        freshness = metric(port, "pitwall_watch_freshness_seconds_count").filter(|n| *n > 0.0);
        freshness.is_some()
    });
    let published = metric(port, "pitwall_watch_members_published_total").unwrap_or(0.0);
    let watch = watch.wait_with_output()?;
    assert!(
        watch.status.success(),
        "{}",
        String::from_utf8_lossy(&watch.stderr)
    );

    // The reference: one full run over the same lake, as of now.
    let as_of = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let full = d.join("full");
    pitwall_ok(&[
        "score",
        "run",
        "--rentals",
        &rentals.display().to_string(),
        "--telemetry",
        &telemetry,
        "--model",
        &model,
        "--as-of",
        &as_of,
        "--out",
        &full.display().to_string(),
    ])?;
    let want = eligible_scores(&full)?;
    assert!(
        want.len() >= 3,
        "the fleet must make members eligible: {want:?}"
    );

    let decoded = Command::new("python3")
        .args([
            DECODER,
            &brokers,
            &topic,
            &registry,
            &want.len().to_string(),
        ])
        .output()?;
    assert!(
        decoded.status.success(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let mut got = BTreeMap::new();
    for line in String::from_utf8(decoded.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let key = v["key"].as_str().ok_or("key")?.to_string();
        assert_eq!(v["value"]["member_id"].as_str(), Some(key.as_str()));
        assert!(
            got.insert(key, v["value"]["score"].as_f64()).is_none(),
            "a member sent twice"
        );
    }
    assert_eq!(
        got, want,
        "every eligible member once, with the full run's score"
    );
    assert!(
        published >= want.len() as f64,
        "{published} members published by the metric"
    );
    let rentals_final = freshness.unwrap_or(0.0);
    assert!(
        rentals_final >= want.len() as f64,
        "a freshness per published rental: {rentals_final}"
    );
    Ok(())
}

/// Per rental: (status, score, coverage, samples) from a results file.
type Outcomes = BTreeMap<String, (String, Option<f64>, f64, i64)>;

fn outcomes(file: &Path, only_final: bool) -> Result<Outcomes, Error> {
    use arrow_array::types::Int64Type;
    let mut out = BTreeMap::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file)?)?.build()? {
        let b = b?;
        let col = |n: &str| b.column_by_name(n).ok_or(format!("no column {n}"));
        let ids = col("rental_id")?.as_string::<i32>();
        let status = col("status")?.as_string::<i32>();
        let score = col("score")?.as_primitive::<Float64Type>();
        let coverage = col("coverage")?.as_primitive::<Float64Type>();
        let samples = col("samples")?.as_primitive::<Int64Type>();
        let finals = b.column_by_name("final").map(|c| c.as_boolean().clone());
        for i in 0..b.num_rows() {
            if only_final && !finals.as_ref().is_some_and(|f| f.value(i)) {
                continue;
            }
            out.insert(
                ids.value(i).to_string(),
                (
                    status.value(i).to_string(),
                    (!score.is_null(i)).then(|| score.value(i)),
                    coverage.value(i),
                    samples.value(i),
                ),
            );
        }
    }
    Ok(out)
}

/// The last record of each member on a topic, decoded by AWS's Glue
/// deserializer: what the app shows.
fn latest_on_topic(
    brokers: &str,
    topic: &str,
    registry: &str,
) -> Result<BTreeMap<String, Option<f64>>, Error> {
    let decoded = Command::new("python3")
        .args([DECODER, brokers, topic, registry, "1"])
        .output()?;
    assert!(
        decoded.status.success(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let mut latest = BTreeMap::new();
    for line in String::from_utf8(decoded.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let key = v["key"].as_str().ok_or("key")?.to_string();
        latest.insert(key, v["value"]["score"].as_f64());
    }
    Ok(latest)
}

/// The race of a live fleet: the rentals file says a car is back while its
/// last upload is still on its way through Kinesis and ingestion. With the
/// three running at once, rentals reach 95 % coverage before their tail
/// lands; none may become final before it, so once the stream has drained
/// every final rental and every published member equals a full run over
/// the complete lake.
#[test]
fn while_the_fleet_streams_no_rental_is_final_before_its_tail_lands() -> TestResult {
    let Some(brokers) = services() else {
        return Ok(());
    };
    let Some((dir, stream, lake)) = fixture("live-tail", 2)? else {
        return Ok(());
    };
    let d = dir.path();
    let rentals = d.join("rentals.parquet");
    // 30 simulated minutes at 20x, ending about now: every returned rental
    // is considered at once and none reaches the 4 h grace.
    let start = chrono::Utc::now() - chrono::Duration::minutes(31);
    let mut gen_stream = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(["gen", "stream", "--stream", &stream, "--rentals"])
        .arg(&rentals)
        .args([
            "--cars",
            "20",
            "--members",
            "8",
            "--speedup",
            "20",
            "--duration",
            "30m",
            "--start",
            &start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "--seed",
            "5",
            "--rental-minutes",
            "10..20",
            "--idle-minutes",
            "0.5..3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    common::kinesis::drain(&mut gen_stream);
    wait_for("the first rental returned", || rentals.exists());
    let ingest = common::kinesis::ingest(
        &stream,
        &lake,
        &d.join("ingest-leases.db"),
        &[
            "--contract",
            common::kinesis::TELEMETRY_CONTRACT,
            "--stop-when-idle",
            "3s",
            "--roll-age",
            "1s",
        ],
    )?;

    let telemetry = format!("{lake}/telemetry.kinematics");
    let model = model(d)?;
    let topic = unique("live-tail");
    create_topic(&brokers, &topic)?;
    let registry = format!("glue:{}", unique("tail"));
    let port = free_port();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(["score", "watch", "--state"])
        .arg(d.join("state"))
        .arg("--rentals")
        .arg(&rentals)
        .args([
            "--telemetry",
            &telemetry,
            "--model",
            &model,
            "--every",
            "1s",
        ])
        .arg("--leases")
        .arg(format!("sqlite:{}", d.join("watch-leases.db").display()))
        .arg("--out")
        .arg(d.join("cycles"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--registry",
            &registry,
        ])
        .arg("--transactional=false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    common::kinesis::drain(&mut watch);

    // While the fleet streams: some cycle sees a rental final but for its tail.
    let mut most_awaiting = 0.0_f64;
    while gen_stream.try_wait()?.is_none() {
        let n = metric(port, "pitwall_watch_rentals_awaiting_tail").unwrap_or(0.0);
        most_awaiting = most_awaiting.max(n);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(gen_stream.wait()?.success(), "gen stream failed");
    common::kinesis::wait_ok(ingest, std::time::Duration::from_secs(120))?;
    // Two whole cycles over the drained lake.
    let cycles = |p| metric(p, "pitwall_watch_cycles_total{outcome=\"committed\"}").unwrap_or(0.0);
    let drained_at = cycles(port);
    wait_for("two cycles after the drain", || {
        cycles(port) >= drained_at + 2.0
    });
    let _ = Command::new("kill")
        .args(["-TERM", &watch.id().to_string()])
        .status()?;
    assert!(watch.wait()?.success(), "score watch failed");
    assert!(
        most_awaiting > 0.0,
        "no cycle saw a rental wait for its tail: the race was not exercised"
    );

    // The reference: a full run over the complete lake at the state's last as_of.
    let show = pitwall_ok(&[
        "score",
        "state",
        "show",
        "--state",
        &d.join("state").display().to_string(),
        "--json",
    ])?;
    let show: serde_json::Value = serde_json::from_slice(&show.stdout)?;
    let as_of = show["last_run"]["as_of"]
        .as_str()
        .ok_or(format!("no last run's as_of in {show}"))?
        .to_string();
    let full = d.join("full");
    pitwall_ok(&[
        "score",
        "run",
        "--rentals",
        &rentals.display().to_string(),
        "--telemetry",
        &telemetry,
        "--model",
        &model,
        "--as-of",
        &as_of,
        "--out",
        &full.display().to_string(),
    ])?;
    let export = d.join("export");
    pitwall_ok(&[
        "score",
        "state",
        "export",
        "--state",
        &d.join("state").display().to_string(),
        "--out",
        &export.display().to_string(),
    ])?;
    let finals = outcomes(&export.join("rental_results.parquet"), true)?;
    let complete = outcomes(&full.join("rental_scores.parquet"), false)?;
    assert!(finals.len() >= 10, "too few final rentals: {finals:?}");
    let early: Vec<&String> = finals
        .iter()
        .filter(|(id, v)| complete.get(*id) != Some(*v))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        early.len(),
        0,
        "final before their tail landed: {early:?} (of {} final)",
        finals.len()
    );
    let want = eligible_scores(&full)?;
    assert!(want.len() >= 3, "members must be eligible: {want:?}");
    let got = latest_on_topic(&brokers, &topic, &registry)?;
    let got: BTreeMap<String, Option<f64>> = got
        .into_iter()
        .filter(|(k, _)| want.contains_key(k))
        .collect();
    assert_eq!(
        got, want,
        "every eligible member's last record is the full run's"
    );
    Ok(())
}
