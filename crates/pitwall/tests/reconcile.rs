//! `pitwall reconcile` on a legacy output and a lake built from it by
//! `pitwall ingest files`: agreement exits 0; a lake missing, adding and
//! changing events exits 4 and names them; locally and on S3 (moto).

use std::path::Path;
use std::process::Command;

mod common;

use common::{
    Error, KEY, T0, TestResult, event, id, pitwall, reconcile, recorder, s3_bucket, upload,
    write_legacy,
};

fn ingest(input: &str, lake: &str) -> TestResult {
    let out = pitwall(&["ingest", "files", "--input", input, "--lake", lake])?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into());
    }
    Ok(())
}

#[test]
fn a_lake_built_from_the_legacy_output_agrees_with_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let legacy = dir.path().join("legacy");
    let good = write_legacy(&legacy, &|_, _| {})?;
    let lake = dir.path().join("lake");
    let (legacy, lake) = (legacy.display().to_string(), lake.display().to_string());
    ingest(&legacy, &lake)?;
    let html = dir.path().join("report");
    let (code, r) = reconcile(&legacy, &lake, &["--out", &html.display().to_string()])?;
    assert_eq!(code, 0, "{r:#}");
    let t = &r["totals"];
    assert_eq!(t["legacy"], good.len());
    assert_eq!(t["matched"], good.len());
    assert_eq!(
        (
            t["missing"].as_u64(),
            t["extra"].as_u64(),
            t["differing"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    // The refused events are in the DLQ, found there by id.
    assert_eq!(t["legacy_refused"], 300 - good.len());
    assert_eq!(t["refused_in_dlq"], 300 - good.len());
    assert_eq!(r["hours"].as_array().map(Vec::len), Some(3));
    let page = std::fs::read_to_string(html.join("reconcile.html"))?;
    assert!(page.contains("Within tolerance") && !page.contains("src=\"http"));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(html.join("reconcile.json"))?)?;
    assert_eq!(saved["totals"], r["totals"]);
    Ok(())
}

#[test]
fn missing_extra_and_changed_events_are_named_and_exit_4() -> TestResult {
    let dir = tempfile::tempdir()?;
    let legacy = dir.path().join("legacy");
    write_legacy(&legacy, &|_, _| {})?;
    // The "new path" saw a different stream: event 7 lost, event 9 changed,
    // an event the legacy path never had, and event 40 (refused) not in its DLQ.
    let new = dir.path().join("new");
    write_legacy(&new, &|n, lines| match n {
        7 | 40 => lines.clear(),
        9 => lines[0] = event(9, T0 + 9 * 36, "fleet").to_string(),
        11 => lines.push(event(999, T0 + 60, "rentals").to_string()),
        _ => {}
    })?;
    let lake = dir.path().join("lake");
    let (legacy, lake) = (legacy.display().to_string(), lake.display().to_string());
    ingest(&new.display().to_string(), &lake)?;
    let html = dir.path().join("report");
    let (code, r) = reconcile(&legacy, &lake, &["--out", &html.display().to_string()])?;
    assert_eq!(code, 4, "{r:#}");
    let h = &r["hours"][0];
    assert_eq!(h["hour"], "2026-11-01T10:00:00Z");
    assert_eq!(h["missing_sample"], serde_json::json!([id(7)]));
    assert_eq!(h["extra_sample"], serde_json::json!([id(999)]));
    assert_eq!(h["differing_sample"][0]["event_id"], id(9));
    assert_eq!(
        h["differing_sample"][0]["fields"],
        serde_json::json!(["service"])
    );
    assert_eq!(h["refused_not_in_dlq_sample"], serde_json::json!([id(40)]));
    assert_eq!(h["within_tolerance"], false);
    assert_eq!(
        r["hours"][1]["within_tolerance"], true,
        "{:#}",
        r["hours"][1]
    );
    assert_eq!(r["totals"]["hours_beyond_tolerance"], 1);
    let page = std::fs::read_to_string(html.join("reconcile.html"))?;
    assert!(page.contains("Beyond tolerance") && page.contains(&id(7)));
    // 4 problems out of ~100 events in the hour: a 5 % tolerance passes it.
    let (code, _) = reconcile(&legacy, &lake, &["--tolerance", "0.05"])?;
    assert_eq!(code, 0);
    Ok(())
}

#[test]
fn legacy_and_lake_on_s3_reconcile() -> TestResult {
    let Some(bucket) = s3_bucket() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("legacy");
    let good = write_legacy(&local, &|_, _| {})?;
    let prefix = format!("reconcile-{}", std::process::id());
    upload(&local, &bucket, &format!("{prefix}/legacy"))?;
    let legacy = format!("s3://{bucket}/{prefix}/legacy");
    let lake = format!("s3://{bucket}/{prefix}/lake");
    ingest(&legacy, &lake)?;
    let (code, r) = reconcile(&legacy, &lake, &[])?;
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["totals"]["matched"], good.len());
    Ok(())
}

#[test]
fn a_mismatch_alerts_slack_and_opsgenie_and_agreement_closes_the_alert() -> TestResult {
    let dir = tempfile::tempdir()?;
    let legacy = dir.path().join("legacy");
    write_legacy(&legacy, &|_, _| {})?;
    let new = dir.path().join("new");
    write_legacy(&new, &|n, lines| {
        if n == 7 {
            lines.clear()
        }
    })?;
    let (bad_lake, good_lake) = (dir.path().join("bad"), dir.path().join("good"));
    let legacy = legacy.display().to_string();
    ingest(&new.display().to_string(), &bad_lake.display().to_string())?;
    ingest(&legacy, &good_lake.display().to_string())?;
    let (base, rx) = recorder()?;
    let run = |lake: &Path| -> Result<i32, Error> {
        let out = Command::new(env!("CARGO_BIN_EXE_pitwall"))
            .args([
                "reconcile",
                "--legacy",
                &legacy,
                "--lake",
                &lake.display().to_string(),
            ])
            .args([
                "--from",
                "2026-11-01T10:00:00Z",
                "--to",
                "2026-11-01T13:00:00Z",
            ])
            .env("PITWALL_PII_KEY", KEY)
            .env(
                "PITWALL_SLACK_WEBHOOK_URL",
                format!("{base}/services/T1/B1/SECRETHOOK"),
            )
            .env("PITWALL_OPSGENIE_API_KEY", "SECRETKEY")
            .env("PITWALL_OPSGENIE_URL", &base)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("SECRET"), "{stderr}");
        Ok(out.status.code().ok_or("killed")?)
    };
    let recv = || rx.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(run(&bad_lake)?, 4);
    let (slack, opsgenie) = (recv()?, recv()?);
    assert_eq!(slack.0, "POST /services/T1/B1/SECRETHOOK HTTP/1.1");
    assert!(slack.1.contains("1 missing"), "{}", slack.1);
    assert_eq!(opsgenie.0, "POST /v2/alerts HTTP/1.1");
    let body: serde_json::Value = serde_json::from_str(&opsgenie.1)?;
    assert_eq!(body["alias"], "reconcile/server_log.api_request");
    assert_eq!(body["details"]["missing"], "1");
    assert_eq!(run(&good_lake)?, 0);
    let (slack, opsgenie) = (recv()?, recv()?);
    assert!(slack.1.contains("resolved"));
    assert_eq!(
        opsgenie.0,
        "POST /v2/alerts/reconcile%2Fserver_log.api_request/close?identifierType=alias HTTP/1.1"
    );
    Ok(())
}
