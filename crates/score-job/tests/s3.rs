//! `score run` reading rentals and telemetry from S3 (the moto server that
//! scripts/test.sh starts), compared with the same run on local files.

mod util;

use std::path::Path;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use util::*;

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

fn upload(store: &dyn ObjectStore, root: &Path, prefix: &str) -> TestResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
            let bytes = std::fs::read(&p)?;
            rt.block_on(store.put(
                &StorePath::from(format!("{prefix}/{rel}")),
                PutPayload::from(bytes),
            ))?;
        }
    }
    Ok(())
}

#[test]
fn scores_from_s3_equal_scores_from_local_files() -> TestResult {
    let Some(bucket) = bucket() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let fleet = dir.path().join("fleet");
    pitwall_fleetgen::generate(&fleet, &pitwall_fleetgen::FleetConfig::new(40, 9, T0))?;
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(&bucket)
        .with_allow_http(true)
        .build()?;
    let prefix = format!("score-test-{}", std::process::id());
    upload(&store, &fleet, &prefix)?;

    let mut local = config(&fleet, T0);
    local.out = dir.path().join("local");
    let local_run = pitwall_score_job::run(&local, &pitwall_score_job::NoProgress)?;

    let mut remote = local.clone();
    remote.rentals = format!("s3://{bucket}/{prefix}/rentals.parquet");
    remote.telemetry = format!("s3://{bucket}/{prefix}/telemetry/");
    remote.out = dir.path().join("remote");
    let remote_run = pitwall_score_job::run(&remote, &pitwall_score_job::NoProgress)?;

    assert_eq!(
        remote_run.inputs.telemetry.files,
        local_run.inputs.telemetry.files
    );
    assert_eq!(
        remote_run.inputs.telemetry.rows,
        local_run.inputs.telemetry.rows
    );
    assert_eq!(rental_rows(&remote.out)?, rental_rows(&local.out)?);
    let rejected = serde_json::to_value(&remote_run.rejected)?;
    let example = rejected["telemetry"]
        .as_object()
        .and_then(|m| m.values().next())
        .ok_or("no rejects")?;
    assert!(
        example["examples"][0]["file"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("s3://{bucket}/{prefix}/telemetry/"))
    );
    Ok(())
}

#[test]
fn a_missing_bucket_is_a_clear_error() -> TestResult {
    if bucket().is_none() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path(), T0);
    cfg.rentals = "s3://no-such-bucket-pitwall/rentals.parquet".into();
    let err = pitwall_score_job::run(&cfg, &pitwall_score_job::NoProgress)
        .err()
        .ok_or("must fail")?;
    assert!(
        err.to_string().contains("s3://no-such-bucket-pitwall"),
        "{err}"
    );
    Ok(())
}
