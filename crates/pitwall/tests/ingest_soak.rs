//! The fault soak of bench/ingest_soak.py in its short form: three workers
//! with DynamoDB leases and an S3 lake on moto behind tests/fault_proxy.py,
//! records arriving all along, workers killed and restarted, the stream
//! split and merged. Afterwards every valid event is in the lake exactly
//! once and every bad record in the DLQ. The 10-minute run and its figures
//! are in docs/ingestion.md.

mod common;

use common::TestResult;
use common::kinesis::have_kinesis;

#[test]
fn a_minute_of_faults_kills_and_reshards_loses_nothing_and_doubles_nothing() -> TestResult {
    if !have_kinesis() {
        return Ok(());
    }
    let (v, log) = common::soak_verdict(
        "ingest_soak.py",
        &[
            "--duration",
            "60",
            "--s3-rate",
            "0.25",
            "--disrupt-every",
            "12",
            "--reshard-every",
            "15",
            "--seed",
            "3",
        ],
    )?;
    let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(n("duplicates"), 0, "{v}\n{log}");
    assert_eq!(n("missing"), 0, "{v}\n{log}");
    assert_eq!(n("unexpected"), 0, "{v}\n{log}");
    assert_eq!(n("dlq_found"), n("dlq_expected"), "{v}\n{log}");
    assert_eq!(n("dlq_duplicates") + n("dlq_missing"), 0, "{v}\n{log}");
    assert!(
        v["drained"] == true,
        "every record checkpointed: {v}\n{log}"
    );
    assert_eq!(
        v["credential_leaks"],
        serde_json::json!([]),
        "a secret in the workers' logs"
    );
    assert!(v["passed"] == true, "{v}\n{log}");
    // The run really met what it claims to survive.
    assert!(n("events_in") > 1000, "{v}");
    assert!(n("kills") + n("terms") >= 2, "{v}");
    assert!(n("splits") >= 1 && n("merges") >= 1, "{v}");
    assert!(n("lease_moves") >= 1, "{v}");
    assert!(n("retries") >= 1, "{v}");
    for kind in ["s3_500", "s3_503", "dynamodb_throttle", "dynamodb_slow"] {
        assert!(
            v["faults"][kind].as_u64().unwrap_or(0) > 0,
            "no {kind}: {v}"
        );
    }
    Ok(())
}
