//! A scored run to publish, shared by the publish integration tests.

#![allow(dead_code)]

pub mod identity;
pub mod tail;

use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The fleets' "now": 2026-05-28T20:26:40Z.
pub const END: i64 = 1_780_000_000_000;

/// Generates a fleet of `rentals` under `dir` and scores it at END; returns
/// the run directory and what run.json says.
pub fn scored_run(
    dir: &Path,
    rentals: usize,
    seed: u64,
) -> Result<(PathBuf, pitwall_score_job::RunJson), Box<dyn std::error::Error>> {
    pitwall_fleetgen::generate(
        &dir.join("fleet"),
        &pitwall_fleetgen::FleetConfig::new(rentals, seed, END),
    )?;
    let mut cfg = pitwall_score_job::JobConfig::new(
        dir.join("fleet/rentals.parquet").display().to_string(),
        dir.join("fleet/telemetry").display().to_string(),
        END,
        dir.join("run"),
    );
    cfg.threads = 2;
    let run = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)?;
    Ok((cfg.out, run))
}

/// The tansu broker scripts/services.sh started, if any.
pub fn broker() -> Option<String> {
    match std::env::var("PITWALL_TEST_KAFKA") {
        Ok(b) => Some(b),
        Err(_) if std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() => {
            panic!("PITWALL_TEST_KAFKA is not set: start the services with scripts/services.sh")
        }
        Err(_) => {
            eprintln!("skipped: no Kafka broker (run scripts/test.sh, which starts tansu)");
            None
        }
    }
}

/// Creates a two-partition topic.
pub fn create_topic(brokers: &str, topic: &str) -> TestResult {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let res = rt.block_on(admin.create_topics(
        &[NewTopic::new(topic, 2, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))?;
    for r in res {
        r.map_err(|(t, e)| format!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// Consumes `topic` and decodes its values with a registry client that is not
/// ours (tests/consume_and_decode.py); `registry` is `glue:NAME` or
/// `confluent:URL`. Returns (key, value) per record.
pub fn decode_topic(
    brokers: &str,
    topic: &str,
    registry: &str,
    want: usize,
) -> Result<Vec<(String, serde_json::Value)>, Box<dyn std::error::Error>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/consume_and_decode.py");
    let out = std::process::Command::new("python3")
        .args([script, brokers, topic, registry, &want.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "consume_and_decode.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut records = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line)?;
        let key = v["key"].as_str().ok_or("no key")?.to_string();
        records.push((key, v["value"].take()));
    }
    Ok(records)
}

/// Each eligible member's (member_id, score) from the run's outputs, read by
/// pitwall's own record reader: what a decoded topic must hold.
pub fn expected_scores(
    run_dir: &Path,
) -> Result<std::collections::BTreeMap<String, Option<f64>>, Box<dyn std::error::Error>> {
    let info = pitwall_publish::record::read_run_info(run_dir)?;
    let mut out = std::collections::BTreeMap::new();
    for batch in pitwall_publish::record::member_batches(run_dir)? {
        for r in batch?.records(&info.run_id) {
            out.insert(r.member_id.to_string(), r.score);
        }
    }
    Ok(out)
}

/// Checks a decoded topic against the run: every eligible member once,
/// keyed by member_id, with its score.
pub fn assert_decoded_matches_run(
    decoded: &[(String, serde_json::Value)],
    run_dir: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let expected = expected_scores(run_dir)?;
    assert_eq!(decoded.len(), expected.len(), "each eligible member once");
    let mut got = std::collections::BTreeMap::new();
    for (key, value) in decoded {
        assert_eq!(
            value["member_id"].as_str(),
            Some(key.as_str()),
            "key = member_id"
        );
        got.insert(key.clone(), value["score"].as_f64());
    }
    assert_eq!(got, expected);
    Ok(())
}
