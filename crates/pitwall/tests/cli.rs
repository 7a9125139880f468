//! The binary as a user meets it: help, exit codes, errors that say what,
//! where and what to do.

use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn pitwall(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(args)
        .env("PITWALL_LOG", "error")
        .output()
        .unwrap_or_else(|e| panic!("cannot start pitwall: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The subcommands a `--help` lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // Names sit at a two-space indent; wrapped descriptions further in.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_command_has_help() {
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let o = pitwall(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        let help = text(&o);
        assert!(help.contains("Usage"), "{args:?}");
        for c in subcommands(&help) {
            todo.push([path.clone(), vec![c]].concat());
        }
        seen += 1;
    }
    assert!(seen >= 25, "walked only {seen} commands");
    let o = pitwall(&["score", "--help"]);
    assert!(subcommands(&text(&o)).contains(&"tail".to_string()));
    let o = pitwall(&["--help"]);
    assert!(text(&o).contains("3 run held"), "exit codes are in --help");
}

#[test]
fn usage_errors_exit_2() {
    let o = pitwall(&["score", "run", "--rentals", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = pitwall(&[
        "score",
        "run",
        "--rentals",
        "r",
        "--telemetry",
        "t",
        "--out",
        "o",
        "--as-of",
        "yesterday",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("RFC 3339"), "{}", text(&o));
}

#[test]
fn missing_input_exits_1_naming_the_path() {
    let o = pitwall(&[
        "score",
        "run",
        "--rentals",
        "/no/such/rentals.parquet",
        "--telemetry",
        "/no/such/telemetry",
        "--as-of",
        "2026-11-01T00:00:00Z",
        "--out",
        "/tmp/pitwall-cli-missing",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.starts_with("error:") && t.contains("/no/such/rentals.parquet"),
        "{t}"
    );
}

#[test]
fn model_prints_the_embedded_model() {
    let o = pitwall(&["score", "model"]);
    assert_eq!(o.status.code(), Some(0));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("name = \"psf-v1\"") && t.contains("[[grades]]"));
}

/// `score run` on the fleet in `d`, at the fleet's "now", without --out.
fn score_run_args(d: &str) -> Vec<String> {
    [
        "score",
        "run",
        "--rentals",
        &format!("{d}/rentals.parquet"),
        "--telemetry",
        &format!("{d}/telemetry"),
    ]
    .into_iter()
    .map(String::from)
    .chain(["--as-of".into(), "2026-11-01T00:00:00Z".into()])
    .collect()
}

fn gen_fleet(dir: &Path, rentals: &str) -> TestResult {
    let o = pitwall(&[
        "gen",
        "fleet",
        "--out",
        &dir.display().to_string(),
        "--rentals",
        rentals,
        "--seed",
        "5",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert!(summary["telemetry_rows"].as_u64().unwrap_or(0) > 0);
    Ok(())
}

#[test]
fn gen_is_deterministic_for_a_seed() -> TestResult {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    gen_fleet(a.path(), "30")?;
    gen_fleet(b.path(), "30")?;
    assert_eq!(
        std::fs::read(a.path().join("rentals.parquet"))?,
        std::fs::read(b.path().join("rentals.parquet"))?
    );
    let day = std::fs::read_dir(a.path().join("telemetry"))?
        .next()
        .ok_or("no day")??
        .file_name();
    let part = Path::new("telemetry").join(day).join("part-00000.parquet");
    assert_eq!(
        std::fs::read(a.path().join(&part))?,
        std::fs::read(b.path().join(&part))?
    );
    Ok(())
}

#[test]
fn score_run_json_and_held_exit_code() -> TestResult {
    let dir = tempfile::tempdir()?;
    gen_fleet(dir.path(), "60")?;
    let d = dir.path().display().to_string();
    let base = score_run_args(&d);
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    let out = format!("{d}/out");
    let o = pitwall(&[&base[..], &["--out", &out, "--json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let run: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(run["status"], "ok");

    // A gate at zero tolerance for pending rentals holds the run: exit 3, outputs written.
    let gates = format!("{d}/gates.toml");
    std::fs::write(&gates, "max_pending_ratio = 0.0\n")?;
    let held = format!("{d}/held");
    let o = pitwall(&[&base[..], &["--out", &held, "--gates", &gates]].concat());
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("held: pending_rentals"), "{}", text(&o));
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{held}/run.json"))?)?;
    assert_eq!(run["status"], "held");

    // An unknown key in the gates file is refused, naming the file.
    std::fs::write(&gates, "max_pending = 0.0\n")?;
    let o = pitwall(&[&base[..], &["--out", &held, "--gates", &gates]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("gates.toml"), "{}", text(&o));
    Ok(())
}

#[test]
fn demo_runs_on_embedded_defaults() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("demo").display().to_string();
    let o = pitwall(&["demo", "--out", &out, "--rentals", "40"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("report:"));
    assert!(dir.path().join("demo/run/report.html").exists());
    Ok(())
}

#[test]
fn schema_register_then_refuse_an_incompatible_change() -> TestResult {
    let dir = tempfile::tempdir()?;
    let reg = format!("file:{}", dir.path().join("registry").display());
    let o = pitwall(&["schema", "register", "--registry", &reg, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(
        (out["status"].as_str(), out["version"].as_u64()),
        (Some("registered"), Some(1))
    );
    // Registering the same schema again is a no-op.
    let o = pitwall(&["schema", "register", "--registry", &reg]);
    assert!(
        text(&o).contains("already registered as version 1"),
        "{}",
        text(&o)
    );

    // A v2 that adds a required field breaks BACKWARD: refused, naming the field.
    let show = pitwall(&["schema", "show"]);
    let v2 = String::from_utf8(show.stdout)?.replace(
        r#"{"name": "run_id", "type": "string"},"#,
        r#"{"name": "run_id", "type": "string"}, {"name": "region", "type": "string"},"#,
    );
    assert!(v2.contains("region"));
    let path = dir.path().join("v2.avsc");
    std::fs::write(&path, v2)?;
    let o = pitwall(&[
        "schema",
        "check",
        "--registry",
        &reg,
        "--schema",
        &path.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("'region'") && t.contains("BACKWARD with version 1"),
        "{t}"
    );
    Ok(())
}

#[test]
fn score_run_publish_then_refuse_a_second_publication() -> TestResult {
    let cluster = rdkafka::mocking::MockCluster::new(1)?;
    cluster.create_topic("driving-score.member.v1", 2, 1)?;
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir()?;
    gen_fleet(dir.path(), "40")?;
    let d = dir.path().display().to_string();
    let reg = format!("file:{d}/registry");
    let run = score_run_args(&d);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let o = pitwall(
        &[
            &run[..],
            &[
                "--out",
                &format!("{d}/out"),
                "--publish",
                "--brokers",
                &brokers,
                "--registry",
                &reg,
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("published run score-"), "{}", text(&o));

    let again = [
        "score",
        "publish",
        "--run",
        &format!("{d}/out"),
        "--brokers",
        &brokers,
        "--registry",
        &reg,
    ];
    let o = pitwall(&again);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("already published") && text(&o).contains("--force"),
        "{}",
        text(&o)
    );
    let o = pitwall(&[&again[..], &["--force", "--json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(report["forced"], true);

    // score tail: both publications, decoded against the registry, as JSON lines.
    let tail = ["score", "tail", "--brokers", &brokers, "--from-beginning"];
    let o = pitwall(&[&tail[..], &["--registry", &reg, "--json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout.clone())?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let (summary, records) = lines.split_last().ok_or("no output")?;
    let eligible = report["records"].as_u64().ok_or("records")?;
    assert_eq!(records.len() as u64, 2 * eligible, "published twice");
    assert_eq!(summary["summary"]["decoded"].as_u64(), Some(2 * eligible));
    assert_eq!(summary["summary"]["stopped"], "end");
    for r in records {
        assert_eq!(r["value"]["member_id"], r["key"], "{r}");
        assert_eq!(r["schema"]["version"], 1);
    }
    let member = records[0]["key"].as_str().ok_or("key")?;
    let o = pitwall(&[&tail[..], &["--registry", &reg, "--member", member]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let shown = String::from_utf8(o.stdout.clone())?;
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(shown.lines().all(|l| l.starts_with(member)), "{shown}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("2 shown (2 decoded"),
        "{}",
        text(&o)
    );
    let o = pitwall(
        &[
            &tail[..],
            &["--topic", "no-such-topic", "--kafka-timeout", "5s"],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("does not exist"), "{}", text(&o));
    // Glue frames looked up in a Glue registry that does not answer.
    let o = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args([&tail[..], &["--registry", "glue:scores", "--max", "1"]].concat())
        .env("PITWALL_LOG", "error")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()?;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("check --registry"), "{}", text(&o));
    // In a registry that cannot hold them: each record says so, the read goes on.
    let o = pitwall(&[&tail[..], &["--registry", "confluent:http://127.0.0.1:1"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("NOT DECODED (unknown_schema_version)") && t.contains("--registry glue:"),
        "{t}"
    );
    assert!(
        t.contains(&format!("{} unknown schema version", 2 * eligible)),
        "{t}"
    );
    let o = pitwall(&[
        "score",
        "tail",
        "--brokers",
        "127.0.0.1:1",
        "--from-beginning",
        "--kafka-timeout",
        "2s",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("cannot reach the brokers 127.0.0.1:1"),
        "{}",
        text(&o)
    );

    // MSK IAM without any AWS credentials: exit 1, the reason and what to check.
    let iam = [
        "--force",
        "--sasl-mechanism",
        "AWS_MSK_IAM",
        "--msk-region",
        "eu-west-1",
        "--security-protocol",
        "sasl_plaintext",
        "--kafka-timeout",
        "3s",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args([&again[..], &iam[..]].concat())
        .env("PITWALL_LOG", "error")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ROLE_ARN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()?;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("MSK IAM") && t.contains("AWS_ROLE_ARN"), "{t}");

    // --publish without --brokers is a usage error.
    let o = pitwall(&[
        "score",
        "run",
        "--rentals",
        "r",
        "--telemetry",
        "t",
        "--as-of",
        "2026-11-01T00:00:00Z",
        "--out",
        "o",
        "--publish",
    ]);
    assert_eq!(o.status.code(), Some(2));
    Ok(())
}

#[test]
fn ingest_files_lands_events_and_a_second_run_rewrites_the_same_files() -> TestResult {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("legacy/2026/11/01/09");
    std::fs::create_dir_all(&input)?;
    let ev = |n: u32, status: u32| {
        format!(
            r#"{{"event_id":"00000000-0000-4000-8000-{n:012}","ts":"2026-11-01T09:{:02}:00Z","service":"s","env":"prod","level":"INFO","method":"GET","path":"/p","status":{status},"latency_ms":1,"phone":"+49151"}}"#,
            n % 60
        )
    };
    let plain: String = (1..=50).map(|n| ev(n, 200) + "\n").collect::<String>() + "{broken\n";
    std::fs::write(input.join("a.jsonl"), plain)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for n in 51..=80 {
        gz.write_all((ev(n, if n == 60 { 700 } else { 200 }) + "\n").as_bytes())?;
    }
    std::fs::write(input.join("b.gz"), gz.finish()?)?;
    let lake = dir.path().join("lake");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_pitwall"))
            .args(["ingest", "files", "--json", "--input"])
            .arg(dir.path().join("legacy"))
            .arg("--lake")
            .arg(&lake)
            .env("PITWALL_PII_KEY", "k")
            .output()
    };
    let listing = || -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let mut files: Vec<String> = pitwall_lake::Location::Local(lake.clone())
            .list(&[".parquet"])?
            .into_iter()
            .map(|f| f.display)
            .collect();
        files.extend(
            pitwall_lake::Location::Local(lake.join("_dlq"))
                .list(&[".jsonl"])?
                .into_iter()
                .map(|f| f.display),
        );
        Ok(files)
    };
    let o = run()?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(report["counts"]["events"], 79);
    assert_eq!(report["counts"]["dlq"]["invalid_json"], 1);
    assert_eq!(report["counts"]["dlq"]["invalid_value"], 1);
    let first = listing()?;
    // The DLQ is dated by the arrival hour in the Firehose-style path.
    assert!(
        first
            .iter()
            .any(|f| f.contains("_dlq/server_log.api_request/dt=2026-11-01/")),
        "{first:?}"
    );
    let o = run()?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(listing()?, first, "the same files, rewritten, none added");

    // Without the PII key nothing runs, and the message says what to set.
    let o = Command::new(env!("CARGO_BIN_EXE_pitwall"))
        .args(["ingest", "files", "--input"])
        .arg(dir.path().join("legacy"))
        .arg("--lake")
        .arg(&lake)
        .env_remove("PITWALL_PII_KEY")
        .output()?;
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("PITWALL_PII_KEY"), "{}", text(&o));
    Ok(())
}
