//! `pitwall score fit`, `score validate`, `gen results --claims` and
//! `gen fleet --claims` through the binary: the outputs a data scientist
//! reads, the claims contract's refusals, and every refusal of a fit that
//! cannot be made (each a message and exit 1, never a NaN in a model file).
//! The report is opened in headless Chromium.

use std::path::Path;
use std::process::Command;

mod common;

use common::kinesis::script;
use common::{Error, TestResult, have_chromium, pitwall, pitwall_ok};
use pitwall_score::Model;

const SPLIT: &str = "2026-08-01T00:00:00Z";

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn planted_truth() -> String {
    format!(
        "{}/../../models/planted-claims.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `score validate` of `model` on the period from SPLIT.
fn validate_args<'a>(
    model: &'a str,
    results: &'a str,
    claims: &'a str,
    out: &'a str,
    resamples: &'a str,
) -> Vec<&'a str> {
    vec![
        "score",
        "validate",
        "--model",
        model,
        "--results",
        results,
        "--claims",
        claims,
        "--from",
        SPLIT,
        "--out",
        out,
        "--resamples",
        resamples,
    ]
}

fn gen_results(dir: &Path, rentals: usize) -> Result<(), Error> {
    pitwall_ok(&[
        "gen",
        "results",
        "--out",
        &s(dir),
        "--rentals",
        &rentals.to_string(),
        "--claims",
        &planted_truth(),
        "--json",
    ])?;
    Ok(())
}

fn fit_args<'a>(results: &'a str, claims: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "score",
        "fit",
        "--results",
        results,
        "--claims",
        claims,
        "--split",
        SPLIT,
        "--out",
        out,
        "--resamples",
        "200",
        "--threads",
        "2",
    ]
}

fn json(path: &Path) -> Result<serde_json::Value, Error> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_fit_writes_a_model_validation_and_report_and_validate_judges_any_model() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    gen_results(&data, 60_000)?;
    let (results, claims) = (
        s(&data.join("rental_scores.parquet")),
        s(&data.join("claims.parquet")),
    );
    let out = dir.path().join("fit");
    let printed = pitwall_ok(&fit_args(&results, &claims, &s(&out)))?;
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(
        text.contains("harsh_brake") && text.contains("Gini"),
        "{text}"
    );

    // The model file: the psf-v1 shape with fitted multipliers and its provenance.
    let model = Model::from_toml(&std::fs::read_to_string(out.join("model.toml"))?)?;
    let fit = model.fit.as_ref().ok_or("no [fit] section")?;
    let training = fit.training.as_ref().ok_or("no training provenance")?;
    assert_eq!(training.split, SPLIT);
    assert_eq!(training.fingerprint.len(), 64);
    assert_eq!(fit.coefficients.len(), 6);
    assert_eq!(model.score.base, 0.6);
    assert_eq!(fit.from_model.as_deref(), Some("psf-v1@1"));
    let planted = Model::from_toml(include_str!("../../../models/planted-claims.toml"))?;
    for ((name, f), (_, truth)) in model.factors().iter().zip(planted.factors()) {
        assert!(
            (f.multiplier.ln() - truth.multiplier.ln()).abs() < 0.05,
            "{name}: fitted {} planted {}",
            f.multiplier,
            truth.multiplier
        );
    }

    let v = json(&out.join("validation.json"))?;
    let val = &v["validation"];
    assert!(
        val["candidate"]["gini"]["ci_low"].as_f64().ok_or("gini")? > 0.0,
        "{val}"
    );
    assert_eq!(
        val["candidate"]["lift"]["deciles"].as_array().map(Vec::len),
        Some(10)
    );
    assert_eq!(val["double_lift"].as_array().map(Vec::len), Some(10));
    assert!(val["stability"]["psi"].as_f64().is_some());
    assert!(
        val["candidate"]["member_view"]["rate_ratio"]
            .as_f64()
            .is_some(),
        "{val}"
    );
    let checks: Vec<&str> = val["checks"]
        .as_array()
        .ok_or("checks")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        checks.contains(&"gini_at_least_current") && checks.contains(&"deciles_rise_with_risk")
    );
    assert!(v["fit"]["deviance"].as_f64().is_some() && v["fit"]["aic"].as_f64().is_some());
    // gen results adds one row breaking each rule; the conflicting
    // duplicate takes its original down with it.
    let rejected = &v["claims"]["rejected"];
    for rule in [
        "rental_unknown",
        "occurred_outside_rental",
        "severity_invalid",
    ] {
        assert_eq!(rejected[rule]["count"], 1, "{rule}: {rejected}");
    }
    assert_eq!(rejected["claim_id_duplicate"]["count"], 2, "{rejected}");
    assert!(out.join("rejected_claims.parquet").exists());
    let html = std::fs::read_to_string(out.join("report.html"))?;
    for part in [
        "Lorenz",
        "Double lift",
        "Calibration",
        "<svg",
        "harsh_brake",
    ] {
        assert!(html.contains(part), "report.html lacks {part}");
    }

    // --calibrate moves the mapping's slope, keeping 100 at zero events.
    let cal = dir.path().join("calibrated");
    let cal_s = s(&cal);
    let mut args = fit_args(&results, &claims, &cal_s);
    args.push("--calibrate");
    pitwall_ok(&args)?;
    let calibrated = Model::from_toml(&std::fs::read_to_string(cal.join("model.toml"))?)?;
    let sc = &calibrated.score;
    assert!(
        (sc.intercept - (100.0 + sc.slope * sc.base)).abs() < 1e-9,
        "{sc:?}"
    );
    assert!(
        (sc.slope - model.score.slope).abs() > 1e-6,
        "the slope was chosen: {sc:?}"
    );
    assert!(
        calibrated
            .fit
            .as_ref()
            .and_then(|f| f.training.as_ref())
            .is_some_and(|t| t.calibrated)
    );

    // The fitted model validates like any other, and psf-v1 itself too.
    let psf = dir.path().join("psf-v1.toml");
    std::fs::write(&psf, pitwall_score::model::DEFAULT_MODEL_TOML)?;
    let vout = dir.path().join("validate");
    let (psf_s, vout_s) = (s(&psf), s(&vout));
    let mut args = validate_args(&psf_s, &results, &claims, &vout_s, "100");
    args.push("--json");
    let printed = pitwall_ok(&args)?;
    let doc: serde_json::Value = serde_json::from_slice(&printed.stdout)?;
    assert_eq!(doc["model"], "psf-v1@1");
    assert!(
        doc["current"].is_null(),
        "psf-v1 is not compared with itself"
    );
    assert_eq!(doc["validation"]["candidate"]["scale"], "before");
    assert!(doc["validation"]["candidate"]["member_view"]["high_members"].as_u64() > Some(0));
    assert!(vout.join("report.html").exists());
    let fitted = s(&out.join("model.toml"));
    pitwall_ok(&validate_args(&fitted, &results, &claims, &vout_s, "50"))?;
    let doc = json(&vout.join("validation.json"))?;
    assert_eq!(doc["validation"]["candidate"]["scale"], "fit");
    assert_eq!(doc["current"], "psf-v1@1");

    // And scores a run.
    let fleet = dir.path().join("fleet");
    pitwall_ok(&["gen", "fleet", "--out", &s(&fleet), "--rentals", "40"])?;
    pitwall_ok(&[
        "score",
        "run",
        "--rentals",
        &s(&fleet.join("rentals.parquet")),
        "--telemetry",
        &s(&fleet.join("telemetry")),
        "--as-of",
        "2026-11-01T00:00:00Z",
        "--out",
        &s(&dir.path().join("run")),
        "--model",
        &s(&out.join("model.toml")),
    ])?;
    browse_report(&out.join("report.html"), &dir.path().join("report.png"))
}

/// The report in headless Chromium: its four charts drawn, no console error.
fn browse_report(report: &Path, shot: &Path) -> TestResult {
    if !have_chromium() {
        return Ok(());
    }
    let url = format!("file://{}", report.display());
    let out = Command::new("python3")
        .args([
            &script("browser.py"),
            &url,
            "--until",
            "document.readyState === 'complete'",
        ])
        .args([
            "--eval",
            "document.querySelectorAll('svg[role=img]').length",
        ])
        .args(["--screenshot", &s(shot), "--timeout", "60"])
        .output()?;
    assert!(out.status.success(), "browser.py: {}", stderr(&out));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        seen["value"], 4,
        "lift, Lorenz, calibration, double lift: {seen}"
    );
    assert_eq!(seen["errors"].as_array().map(Vec::len), Some(0), "{seen}");
    Ok(())
}

#[test]
fn claims_breaking_the_contract_are_counted_per_rule_and_kept() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    gen_results(&data, 20_000)?;
    let results = s(&data.join("rental_scores.parquet"));
    // A CSV of one good claim and one row per rule, on real rentals.
    let all = pitwall_fit_job::data::load_results(&results, 2)?;
    // Row groups read on threads join as one reader reads them.
    let one = pitwall_fit_job::data::load_results(&results, 1)?;
    assert_eq!(one.rows, all.rows);
    assert_eq!(one.members, all.members);
    let r = &all.rows[..3];
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    let (id, inside, late) = (
        |k: usize| all.rental_id(k).to_string(),
        |k: usize| at(r[k].start_at + 1000),
        at(r[1].end_at + 2 * 3_600_000),
    );
    let csv = dir.path().join("claims.csv");
    std::fs::write(
        &csv,
        [
            "claim_id,rental_id,occurred_at,at_fault,severity".to_string(),
            format!("a,{},{},true,minor", id(0), inside(0)),
            format!(",{},{},true,minor", id(0), inside(0)),
            format!("b,,{},true,minor", inside(0)),
            format!("c,nope,{},true,minor", inside(0)),
            format!("d,{},,true,minor", id(1)),
            format!("e,{},yesterday,true,minor", id(1)),
            format!("f,{},{late},true,minor", id(1)),
            format!("g,{},{},,minor", id(1), inside(1)),
            format!("h,{},{},true,dented", id(1), inside(1)),
            format!("i,{},{},true,minor", id(2), inside(2)),
            format!("i,{},{},false,minor", id(2), inside(2)),
        ]
        .join("\n"),
    )?;
    let out = dir.path().join("bad");
    let (truth, csv_s, out_s) = (planted_truth(), s(&csv), s(&out));
    let mut args = validate_args(&truth, &results, &csv_s, &out_s, "0");
    args.push("--json");
    let run = pitwall(&args)?;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout)?;
    let r = &doc["claims"]["rejected"];
    for (rule, n) in [
        ("claim_id_missing", 1),
        ("rental_id_missing", 1),
        ("rental_unknown", 1),
        ("occurred_at_missing", 1),
        ("occurred_at_unparseable", 1),
        ("at_fault_missing", 1),
        ("severity_invalid", 1),
        ("occurred_outside_rental", 1),
        ("claim_id_duplicate", 2),
    ] {
        assert_eq!(r[rule]["count"], n, "{rule}: {r}");
        assert!(
            r[rule]["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    assert_eq!(
        (
            doc["claims"]["rows"].as_u64(),
            doc["claims"]["valid"].as_u64()
        ),
        (Some(11), Some(1))
    );
    let kept = std::fs::metadata(out.join("rejected_claims.parquet"))?.len();
    assert!(kept > 0);
    Ok(())
}

#[test]
fn fits_that_cannot_be_made_are_refused_with_the_reason_and_exit_1() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    gen_results(&data, 20_000)?;
    let (results, claims) = (
        s(&data.join("rental_scores.parquet")),
        s(&data.join("claims.parquet")),
    );
    let out = s(&dir.path().join("out"));
    let refused = |args: Vec<&str>, says: &str| -> TestResult {
        let run = pitwall(&args)?;
        assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
        assert!(
            stderr(&run).contains(says),
            "{says:?} not in: {}",
            stderr(&run)
        );
        assert!(
            !Path::new(&out).join("model.toml").exists(),
            "no model file for a refused fit"
        );
        Ok(())
    };
    let mut early = fit_args(&results, &claims, &out);
    early[7] = "2020-01-01T00:00:00Z";
    refused(early, "leaves 0 scored rentals before it")?;
    let mut late = fit_args(&results, &claims, &out);
    late[7] = "2030-01-01T00:00:00Z";
    refused(late, "and 0 on or after it")?;

    // Too few claims: only the first 50 claims of the file.
    let few = dir.path().join("few.csv");
    let mut lines = vec!["claim_id,rental_id,occurred_at,at_fault,severity".to_string()];
    let all = pitwall_fit_job::data::load_results(&results, 2)?;
    for (i, r) in all
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.fits())
        .take(50)
    {
        let t = chrono::DateTime::from_timestamp_millis(r.end_at)
            .ok_or("time")?
            .to_rfc3339();
        let id = all.rental_id(i);
        lines.push(format!("c{id},{id},{t},true,minor"));
    }
    std::fs::write(&few, lines.join("\n"))?;
    refused(fit_args(&results, &s(&few), &out), "needs at least 60")?;

    // A factor never observed: excess speeding zeroed everywhere.
    let rows = pitwall_fit_job::synth::results(
        &pitwall_fit_job::synth::SynthConfig::new(20_000, 1, 1_793_491_200_000),
        &Model::default(),
    );
    let rows: Vec<_> = rows
        .into_iter()
        .map(|mut r| {
            r.assessment.features.excess_speeding_s = 0;
            r
        })
        .collect();
    let flat = dir.path().join("flat.parquet");
    let batch = pitwall_score_state::results::to_batch(&rows, false)?;
    pitwall_lake::write_parquet(
        &flat,
        batch.schema(),
        &[batch],
        &pitwall_lake::ParquetOptions::default(),
    )?;
    let flat = s(&flat);
    refused(
        fit_args(&flat, &claims, &out),
        "factor excess_speeding is 0 in every training rental",
    )?;
    // With a ridge it fits, and the unobserved factor keeps multiplier 1.
    let mut ridge = fit_args(&flat, &claims, &out);
    ridge.extend(["--ridge", "10"]);
    pitwall_ok(&ridge)?;
    let model = Model::from_toml(&std::fs::read_to_string(
        Path::new(&out).join("model.toml"),
    )?)?;
    assert_eq!(model.score.excess_speeding.multiplier, 1.0);
    assert!(model.to_toml()?.find("nan").is_none());

    // Results whose counts are no counts: a negative harsh-braking count
    // in one row is refused with the file, the row and the column, not
    // read as 4294967295 braking events. Row groups of 4,000 rows: the
    // row is numbered in the file, not in its group.
    let batch = pitwall_score_state::results::to_batch(&rows, false)?;
    let at = batch
        .schema_ref()
        .index_of("harsh_brake_n")
        .map_err(|e| e.to_string())?;
    let mut cols = batch.columns().to_vec();
    let brakes: Vec<i64> = (0..batch.num_rows())
        .map(|i| if i == 12_345 { -3 } else { 1 })
        .collect();
    cols[at] = std::sync::Arc::new(arrow_array::Int64Array::from(brakes));
    let negative = dir.path().join("negative.parquet");
    let bad = arrow_array::RecordBatch::try_new(batch.schema(), cols)?;
    let groups = pitwall_lake::ParquetOptions {
        max_row_group_rows: 4_000,
        ..pitwall_lake::ParquetOptions::default()
    };
    pitwall_lake::write_parquet(&negative, bad.schema(), &[bad], &groups)?;
    let elsewhere = s(&dir.path().join("negative-out"));
    let run = pitwall(&fit_args(&s(&negative), &claims, &elsewhere))?;
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    for says in ["negative.parquet", "row 12345: harsh_brake_n is -3"] {
        assert!(
            stderr(&run).contains(says),
            "{says:?} not in {}",
            stderr(&run)
        );
    }
    assert!(!Path::new(&elsewhere).join("model.toml").exists());

    // Results that are not results.
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"not parquet")?;
    let run = pitwall(&fit_args(&s(&junk), &claims, &out))?;
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("junk.parquet"), "{}", stderr(&run));
    Ok(())
}

#[test]
fn a_fleet_with_planted_claims_is_enough_to_fit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fleet = dir.path().join("fleet");
    let out = pitwall_ok(&[
        "gen",
        "fleet",
        "--out",
        &s(&fleet),
        "--rentals",
        "600",
        "--claims",
        &planted_truth(),
        "--json",
    ])?;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(
        summary["claims"]["at_fault"].as_u64() > Some(60),
        "{summary}"
    );
    pitwall_ok(&[
        "score",
        "fit",
        "--results",
        &s(&fleet.join("scored/rental_scores.parquet")),
        "--claims",
        &s(&fleet.join("claims.parquet")),
        "--split",
        SPLIT,
        "--out",
        &s(&dir.path().join("fit")),
        "--resamples",
        "100",
        "--ridge",
        "1",
    ])?;
    Ok(())
}
