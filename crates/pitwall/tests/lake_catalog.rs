//! `pitwall lake register` end to end: a lake written by `pitwall ingest
//! files`, its tables registered in Glue (moto), and DuckDB reading the same
//! files under the schema the catalog declares (tests/lake_catalog_check.py).

mod common;

use std::process::Command;

use common::{TestResult, pitwall};

fn moto() -> bool {
    let up = std::env::var_os("AWS_ENDPOINT_URL").is_some();
    if !up && std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() {
        panic!("AWS_ENDPOINT_URL is not set: start the services with scripts/services.sh");
    }
    up
}

#[test]
fn duckdb_reads_the_lake_under_the_schema_the_catalog_declares() -> TestResult {
    if !moto() {
        eprintln!("skipped: no moto server (run scripts/test.sh)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("legacy/2026/11/01/09");
    std::fs::create_dir_all(&input)?;
    let ev = |n: u32| {
        format!(
            r#"{{"event_id":"00000000-0000-4000-8000-{n:012}","ts":"2026-11-01T{:02}:{:02}:00Z","service":"s","env":"prod","level":"INFO","method":"GET","path":"/p","status":200,"latency_ms":1.5,"phone":"+49151"}}"#,
            8 + n % 3,
            n % 60
        )
    };
    let lines: String = (1..=60).map(|n| ev(n) + "\n").collect::<String>() + "{broken\n";
    std::fs::write(input.join("a.jsonl"), lines)?;
    let lake = dir.path().join("lake");
    let o = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(["ingest", "files", "--input"])
        .arg(dir.path().join("legacy"))
        .arg("--lake")
        .arg(&lake)
        .env("PITWALL_PII_KEY", "k")
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let db = format!("pitwall_lake_{}", std::process::id());
    let register = [
        "lake",
        "register",
        "--catalog",
        &format!("glue:{db}"),
        "--lake",
        "s3://pitwall-test/lake",
        "--from",
        "2026-11-01",
        "--json",
    ];
    let o = pitwall(&register)?;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(done[0]["action"], "created");
    assert_eq!(done[1]["table"], "server_log_api_request_dlq");
    let o = pitwall(&register)?;
    let again: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(
        (&again[0]["action"], &again[1]["action"]),
        (&"unchanged".into(), &"unchanged".into())
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lake_catalog_check.py");
    let o = Command::new("python3")
        .args([
            script,
            &db,
            "server_log_api_request",
            "server_log_api_request_dlq",
        ])
        .arg(&lake)
        .arg("server_log.api_request")
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let check: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(check["type_mismatches"], serde_json::json!([]), "{check}");
    assert_eq!(
        check["undeclared_file_columns"],
        serde_json::json!([]),
        "{check}"
    );
    assert_eq!(check["rows"], 60);
    assert_eq!(check["partitions"], 3);
    assert_eq!(check["partitions_fit_projection"], true);
    assert_eq!(check["partition_keys"], serde_json::json!(["dt", "hour"]));
    assert_eq!(
        check["template"],
        "s3://pitwall-test/lake/server_log.api_request/dt=${dt}/hour=${hour}/"
    );
    assert_eq!(check["dlq_rows"], 1);
    assert_eq!(
        check["dlq_undeclared_keys"],
        serde_json::json!([]),
        "{check}"
    );

    // A contract that drops a column is refused, naming it; exit 1.
    let text = pitwall_logs::contract::SERVER_LOG_API_REQUEST.replace(
        "      - name: member_id\n        logicalType: string\n        physicalType: string\n        required: false\n",
        "",
    );
    let path = dir.path().join("narrower.odcs.yaml");
    std::fs::write(&path, text)?;
    let o = pitwall(&[&register[..], &["--contract", &path.display().to_string()]].concat())?;
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("'member_id'") && err.contains("breaks its readers"),
        "{err}"
    );
    Ok(())
}
