//! The score path's fault soak, bench/score_soak.py, in its short form: two
//! `score watch` processes on an S3 state with a DynamoDB lease, both on
//! moto behind tests/fault_proxy.py, publishing to tansu, while a fleet's
//! telemetry and rentals land all along, watchers are killed and
//! restarted, a rescore and a model change run beside them, and bad input
//! arrives. Afterwards the state equals the same chain replayed without
//! faults, and the topic holds every change once, in order. The 10-minute
//! run and its figures are in docs/scoring.md.

mod common;

use common::TestResult;

/// The two forms share moto and two cores: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_minute_of_faults_kills_and_bad_input_leaves_the_state_and_topic_of_a_calm_chain() -> TestResult
{
    soak("tansu")
}

/// The second form: librdkafka's mock cluster, where transactions are
/// real and produce and commit errors are pushed every 7 s.
#[test]
fn the_same_on_a_broker_with_transactions_and_produce_and_commit_errors() -> TestResult {
    soak("mock")
}

fn soak(broker: &str) -> TestResult {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if std::env::var_os("PITWALL_TEST_KAFKA").is_none() || common::s3_bucket().is_none() {
        return Ok(());
    }
    let (v, log) = common::soak_verdict(
        "score_soak.py",
        &[
            "--duration",
            "60",
            "--cars",
            "30",
            "--disrupt-every",
            "15",
            "--seed",
            "3",
            "--broker",
            broker,
        ],
    )?;
    let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(v["one_chain"], true, "{v}\n{log}");
    assert_eq!(v["settled"], true, "{v}\n{log}");
    let none = serde_json::json!([0, 0]);
    assert_eq!(v["rental_results_differ"], none, "{v}\n{log}");
    assert_eq!(v["member_snapshot_differs"], none, "{v}\n{log}");
    for k in [
        "as_of_backwards",
        "sent_twice",
        "from_uncommitted_runs",
        "differs_from_chain",
        "changes_lost",
        "never_published",
        "stale_at_end",
    ] {
        assert_eq!(n(k), 0, "{k}: {v}\n{log}");
    }
    assert_eq!(v["commits_after_lease_lost"], serde_json::json!([]), "{v}");
    assert_eq!(v["credential_leaks"], serde_json::json!([]), "{v}");
    for bad in ["not_parquet", "truncated_rentals"] {
        assert_eq!(v["bad_input"][bad]["named_in_an_error"], true, "{bad}: {v}");
    }
    assert_eq!(v["bad_input"]["nan_model"]["refused"], true, "{v}");
    assert_eq!(v["events"]["rescore"]["exit"], 0, "{v}");
    assert_eq!(v["events"]["model_change"]["exit"], 0, "{v}");
    assert!(v["passed"] == true, "{v}\n{log}");
    // The run really met what it claims to survive.
    assert!(n("committed_runs") >= 4 && n("records_on_topic") > 0, "{v}");
    assert!(
        n("kills") + n("terms") >= 2 && n("lease_handovers") >= 2,
        "{v}"
    );
    assert!(n("retries") >= 1 && n("changes_made") > 0, "{v}");
    if broker == "mock" {
        assert!(
            v["kafka_faults"].as_object().is_some_and(|f| !f.is_empty()),
            "no broker errors pushed: {v}"
        );
    }
    Ok(())
}
