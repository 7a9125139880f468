//! `pitwall doctor` against the local services: with every dependency a
//! deployment names present it passes (exit 0, every check ok or a
//! warning); with each missing in turn exactly that check fails, saying
//! what to do (exit 1); an endpoint that accepts connections and never
//! answers fails its check within --timeout, saying so.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::kinesis::{fixture, unique};
use common::{Error, TestResult, create_topic};

const CONTRACT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../contracts/server_log.api_request.odcs.yaml"
);

type Flags = Vec<(String, String)>;
/// Variables set (Some) or removed (None) for one run.
type Env<'a> = Vec<(&'a str, Option<&'a str>)>;

/// The flags of a deployment whose every dependency exists.
struct Deployment {
    flags: Vec<(String, String)>,
}

impl Deployment {
    fn with(&self, flag: &str, value: &str) -> Vec<(String, String)> {
        self.flags
            .iter()
            .map(|(f, v)| {
                (
                    f.clone(),
                    if f == flag {
                        value.to_string()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    }
}

/// Runs doctor with `flags` and the environment changes; its JSON, by check.
fn doctor(
    flags: &[(String, String)],
    env: &[(&str, Option<&str>)],
) -> Result<(i32, BTreeMap<String, serde_json::Value>, Duration), Error> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pitwall"));
    cmd.args([
        "doctor",
        "--json",
        "--timeout",
        "5s",
        "--kafka-timeout",
        "5s",
    ]);
    for (f, v) in flags {
        cmd.arg(format!("--{f}={v}"));
    }
    cmd.env("PITWALL_PII_KEY", "doctor-test")
        .env("PITWALL_LOG", "error");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let t = Instant::now();
    let out = cmd.output()?;
    let took = t.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "doctor printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let by_check = v["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["check"].as_str().unwrap_or("?").to_string(), c.clone()))
        .collect();
    Ok((out.status.code().unwrap_or(-1), by_check, took))
}

fn failed(checks: &BTreeMap<String, serde_json::Value>) -> Vec<&str> {
    checks
        .iter()
        .filter(|(_, c)| c["status"] == "fail")
        .map(|(k, _)| k.as_str())
        .collect()
}

#[test]
fn doctor_passes_a_whole_deployment_and_names_each_missing_dependency() -> TestResult {
    let Some((_dir, stream, _)) = fixture("doctor", 2)? else {
        return Ok(());
    };
    let bucket = std::env::var("PITWALL_TEST_S3_BUCKET")?;
    let brokers = std::env::var("PITWALL_TEST_KAFKA")?;
    let topic = unique("doctor-topic");
    create_topic(&brokers, &topic)?;
    let base = format!("s3://{bucket}/{}", unique("doctor"));
    let d = Deployment {
        flags: [
            ("stream", stream.clone()),
            ("leases", format!("dynamodb:{}", unique("doctor-leases"))),
            ("lake", format!("{base}/lake")),
            ("contract", CONTRACT.to_string()),
            ("state", format!("{base}/state")),
            ("brokers", brokers.clone()),
            ("topic", topic.clone()),
            ("registry", format!("glue:{}", unique("doctor"))),
        ]
        .into_iter()
        .map(|(f, v)| (f.to_string(), v))
        .collect(),
    };

    let (code, checks, _) = doctor(&d.flags, &[])?;
    assert_eq!(code, 0, "{checks:?}");
    for c in [
        "credentials",
        "stream",
        "leases",
        "lake",
        "state",
        "pii key",
        "topic",
        "registry",
    ] {
        assert!(checks.contains_key(c), "no {c} check: {checks:?}");
    }
    assert!(failed(&checks).is_empty(), "{checks:?}");
    assert!(
        checks["stream"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("2 shards")),
        "{:?}",
        checks["stream"]
    );
    // The lease table does not exist yet: the service would create it.
    assert_eq!(checks["leases"]["status"], "warn", "{:?}", checks["leases"]);
    // The probe objects are gone again.
    assert!(
        pitwall_lake_files(&format!("{base}/lake"))?.is_empty(),
        "the probe object was left behind"
    );

    // Each dependency missing in turn: exactly its check fails, with a fix.
    let missing: [(&str, Flags, Env); 7] = [
        ("stream", d.with("stream", "no-such-stream"), vec![]),
        ("lake", d.with("lake", "s3://no-such-bucket/lake"), vec![]),
        ("topic", d.with("topic", "no-such-topic"), vec![]),
        ("topic", d.with("brokers", "127.0.0.1:1"), vec![]),
        (
            "registry",
            d.with("registry", "confluent:http://127.0.0.1:1"),
            vec![],
        ),
        ("pii key", d.flags.clone(), vec![("PITWALL_PII_KEY", None)]),
        (
            "credentials",
            d.with("registry", "file:registry"),
            vec![
                ("AWS_ACCESS_KEY_ID", None),
                ("AWS_SECRET_ACCESS_KEY", None),
                ("AWS_PROFILE", None),
                ("AWS_CONFIG_FILE", Some("/nonexistent")),
                ("AWS_SHARED_CREDENTIALS_FILE", Some("/nonexistent")),
                ("AWS_EC2_METADATA_DISABLED", Some("true")),
            ],
        ),
    ];
    for (check, flags, env) in missing {
        let (code, checks, _) = doctor(&flags, &env)?;
        assert_eq!(code, 1, "{check}: {checks:?}");
        let f = failed(&checks);
        assert!(f.contains(&check), "{check} did not fail: {checks:?}");
        if check != "credentials" {
            // Without credentials every AWS check fails; otherwise only the missing one.
            assert_eq!(f, vec![check], "{checks:?}");
        }
        assert!(
            checks[check]["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{check}: no fix given: {:?}",
            checks[check]
        );
    }
    Ok(())
}

/// An endpoint that takes the connection and never answers: the check
/// fails within its --timeout and says so; the others still run.
#[test]
fn a_check_of_an_endpoint_that_never_answers_fails_within_its_timeout() -> TestResult {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        return Ok(());
    }
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    // Accepts, keeps every connection open, never writes.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let flags = vec![("stream".to_string(), "any".to_string())];
    let endpoint = format!("http://127.0.0.1:{port}");
    let (code, checks, took) = doctor(
        &flags,
        &[
            ("AWS_ENDPOINT_URL_KINESIS", Some(&endpoint)),
            ("AWS_ENDPOINT_URL_STS", Some(&endpoint)),
        ],
    )?;
    assert_eq!(code, 1, "{checks:?}");
    for check in ["credentials", "stream"] {
        let c = &checks[check];
        assert_eq!(c["status"], "fail", "{c:?}");
        assert!(
            c["detail"]
                .as_str()
                .is_some_and(|d| d.contains("no answer within 5s")),
            "{c:?}"
        );
    }
    // Two checks of 5 s each, and the time to start.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    Ok(())
}

/// The objects under an s3:// location, listed with boto3.
fn pitwall_lake_files(url: &str) -> Result<Vec<String>, Error> {
    let (bucket, prefix) = url
        .trim_start_matches("s3://")
        .split_once('/')
        .ok_or("not an s3 URL")?;
    let out = Command::new("python3")
        .args([
            "-c",
            "import boto3,os,sys; s3=boto3.client('s3',endpoint_url=os.environ['AWS_ENDPOINT_URL']); \
             print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[1],Prefix=sys.argv[2]).get('Contents',[])))",
            bucket,
            prefix,
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}
