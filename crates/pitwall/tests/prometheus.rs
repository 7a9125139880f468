//! The chart's alert rules and dashboard on a real Prometheus (Debian's,
//! started by scripts/services.sh with the rules loaded), scraping running
//! `ingest run` and `score watch` processes every second:
//!
//! - every rule evaluates without error on the live series, and every
//!   series it names is exposed by a running process (no typo, no unit
//!   mismatch between the rules and the exposition);
//! - a stuck shard fires PitwallIngestShardStuck, a watcher whose every
//!   cycle fails fires PitwallWatchNotCommitting, a watcher left waiting on
//!   the lease fires PitwallWatchLeaseNotHeld, and no rule fires for the
//!   healthy ingestion and the healthy watcher;
//! - `promtool test rules` passes the rules' unit tests, `promtool check
//!   metrics` finds nothing to say about either exposition;
//! - every query of the dashboard returns a series.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::kinesis::{fixture, free_port, http_get, ingest_command, put, unique, wait_for_within};
use common::proxy::Proxy;
use common::{Error, TestResult, pitwall_ok};

const RULES_TEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/prometheus/rules-test.yaml"
);
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/helm/pitwall/files/grafana-dashboard.json"
);

/// The Prometheus of scripts/services.sh: its port and its targets folder.
struct Prometheus {
    port: u16,
    targets: std::path::PathBuf,
}

impl Prometheus {
    fn from_env() -> Option<Prometheus> {
        let url = std::env::var("PITWALL_TEST_PROMETHEUS").ok();
        let targets = std::env::var("PITWALL_TEST_PROMETHEUS_TARGETS").ok();
        match (url, targets) {
            (Some(url), Some(targets)) => Some(Prometheus {
                port: url.rsplit(':').next()?.parse().ok()?,
                targets: targets.into(),
            }),
            _ if std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() => {
                panic!(
                    "PITWALL_TEST_PROMETHEUS is not set: start the services with scripts/services.sh"
                )
            }
            _ => None,
        }
    }

    /// Scrape `port` as job `job` (file_sd: written whole, then renamed).
    fn scrape(&self, job: &str, port: u16) -> TestResult {
        let body =
            serde_json::json!([{"targets": [format!("127.0.0.1:{port}")], "labels": {"job": job}}]);
        let tmp = self.targets.join(format!(".{job}.tmp"));
        std::fs::write(&tmp, body.to_string())?;
        std::fs::rename(&tmp, self.targets.join(format!("{job}.json")))?;
        Ok(())
    }

    fn forget(&self, job: &str) {
        let _ = std::fs::remove_file(self.targets.join(format!("{job}.json")));
    }

    fn api(&self, path: &str) -> Result<serde_json::Value, Error> {
        let (status, body) =
            http_get(self.port, path).ok_or_else(|| format!("Prometheus did not answer {path}"))?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{path}: {status} {body}").into());
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result: each series' labels.
    fn query(&self, expr: &str) -> Result<Vec<BTreeMap<String, String>>, Error> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        let series = data["result"].as_array().cloned().unwrap_or_default();
        Ok(series
            .iter()
            .map(|s| serde_json::from_value(s["metric"].clone()).unwrap_or_default())
            .collect())
    }

    /// The jobs among `jobs` for which `expr` returns a series.
    fn jobs_in(&self, expr: &str, jobs: &[&str]) -> Result<BTreeSet<String>, Error> {
        Ok(self
            .query(expr)?
            .into_iter()
            .filter_map(|l| l.get("job").cloned())
            .filter(|j| jobs.contains(&j.as_str()))
            .collect())
    }
}

/// Percent-encoding of a query parameter (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Children killed when the test ends, whatever its outcome.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A watcher of `state` whose lease is in the SQLite file `leases`, quiet.
fn watcher(
    dir: &Path,
    state: &str,
    leases: &str,
    rentals: &Path,
    port: u16,
    name: &str,
) -> Command {
    let mut cmd = common::score_watch_command(state, dir, leases, rentals, name, port);
    cmd.env("PITWALL_LOG", "error").stderr(Stdio::null());
    cmd
}

#[test]
fn alert_rules_and_dashboard_on_a_real_prometheus() -> TestResult {
    let Some(prom) = Prometheus::from_env() else {
        return Ok(());
    };
    let Some((dir, stream, lake)) = fixture("prom", 1)? else {
        return Ok(());
    };
    let Some((_stuck_dir, stuck_stream, _)) = fixture("prom-stuck", 1)? else {
        return Ok(());
    };
    let mut procs = Procs(Vec::new());
    let id = unique("p");
    let job = |what: &str| format!("{what}-{id}");
    let (healthy, stuck, w1, w2, failing) = (
        job("ingest-ok"),
        job("ingest-stuck"),
        job("watch-ok"),
        job("watch-standby"),
        job("watch-failing"),
    );
    let jobs = [
        healthy.as_str(),
        stuck.as_str(),
        w1.as_str(),
        w2.as_str(),
        failing.as_str(),
    ];

    // Ingestion, healthy: a local lake, --alert-lag 8s. A few of the
    // records (4 of 50) break the contract, under its --alert-dlq-rate.
    put(&stream, 1, 50, false)?;
    let leases = format!("sqlite:{}", dir.path().join("leases.db").display());
    let port = free_port();
    let args = ["--alert-lag", "8s", "--roll-age", "1s"];
    let healthy_args = [&args[..], &["--alert-dlq-rate", "0.2"]].concat();
    let child = ingest_command(&stream, &lake, &leases, port, &healthy_args)
        .stderr(Stdio::null())
        .spawn()?;
    procs.0.push(child);
    prom.scrape(&healthy, port)?;

    // Ingestion, stuck: every S3 PUT of its lake answered 503.
    put(&stuck_stream, 1, 50, false)?;
    let upstream = std::env::var("AWS_ENDPOINT_URL")?;
    let bucket = std::env::var("PITWALL_TEST_S3_BUCKET")?;
    let proxy = Proxy::start(&upstream, &["--rate", "1.0", "--s3", "503"])?;
    let stuck_lake = format!("s3://{bucket}/{}", unique("prom-stuck-lake"));
    let stuck_leases = format!("sqlite:{}", dir.path().join("stuck-leases.db").display());
    let port = free_port();
    let child = ingest_command(&stuck_stream, &stuck_lake, &stuck_leases, port, &args)
        .env(
            "AWS_ENDPOINT_URL_S3",
            format!("http://127.0.0.1:{}", proxy.port),
        )
        .stderr(Stdio::null())
        .spawn()?;
    procs.0.push(child);
    prom.scrape(&stuck, port)?;

    // score watch: one holding the lease, one waiting on it, one whose
    // rentals file is missing (every cycle fails).
    let d = dir.path();
    pitwall_ok(&[
        "gen",
        "fleet",
        "--out",
        &d.join("fleet").display().to_string(),
        "--rentals",
        "300",
        "--seed",
        "3",
    ])?;
    let state = d.join("state").display().to_string();
    let rentals = d.join("fleet/rentals.parquet");
    for (name, job) in [("w1", &w1), ("w2", &w2)] {
        let port = free_port();
        procs
            .0
            .push(watcher(d, &state, "leases.db", &rentals, port, name).spawn()?);
        prom.scrape(job, port)?;
        if name == "w1" {
            // w1 takes the lease first.
            wait_for_within("w1 to hold the lease", Duration::from_secs(30), || {
                http_get(port, "/readyz").is_some_and(|r| r.0 == 200)
            });
        }
    }
    let port = free_port();
    let other_state = d.join("state-f").display().to_string();
    let missing = d.join("missing.parquet");
    procs
        .0
        .push(watcher(d, &other_state, "leases-f.db", &missing, port, "f").spawn()?);
    prom.scrape(&failing, port)?;

    // Every target up, the stuck shard past its threshold, cycles on both
    // sides of a scrape.
    wait_for_within("every target scraped", Duration::from_secs(60), || {
        prom.jobs_in("up == 1", &jobs)
            .is_ok_and(|j| j.len() == jobs.len())
    });
    wait_for_within(
        "the stuck shard past --alert-lag",
        Duration::from_secs(60),
        || {
            prom.jobs_in("pitwall_ingest_stuck_seconds > 10", &jobs)
                .is_ok_and(|j| j.contains(&stuck))
        },
    );
    wait_for_within(
        "failed and committed cycles scraped",
        Duration::from_secs(60),
        || {
            let failed = prom.jobs_in(
                "increase(pitwall_watch_cycles_total{outcome=\"failed\"}[1m]) > 0",
                &jobs,
            );
            let committed = prom.jobs_in(
                "increase(pitwall_watch_cycles_total{outcome=\"committed\"}[1m]) > 0",
                &jobs,
            );
            failed.is_ok_and(|j| j.contains(&failing)) && committed.is_ok_and(|j| j.contains(&w1))
        },
    );
    wait_for_within(
        "the healthy shard checkpointed",
        Duration::from_secs(60),
        || {
            prom.jobs_in("pitwall_ingest_checkpoint_age_seconds", &jobs)
                .is_ok_and(|j| j.contains(&healthy))
        },
    );

    // Each loaded rule: healthy, its series exposed, firing where expected.
    let expected: BTreeMap<&str, BTreeSet<String>> = [
        ("PitwallIngestShardStuck", [stuck.clone()].into()),
        ("PitwallWatchNotCommitting", [failing.clone()].into()),
        ("PitwallWatchLeaseNotHeld", [w2.clone()].into()),
    ]
    .into();
    let groups = prom.api("/api/v1/rules")?;
    let mut seen = 0;
    for rule in groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
    {
        let name = rule["name"].as_str().unwrap_or_default();
        let expr = rule["query"].as_str().unwrap_or_default();
        assert_eq!(rule["health"], "ok", "{name}: {}", rule["lastError"]);
        for metric in metric_names(expr) {
            assert!(
                !prom
                    .query(&format!("{metric}{{job=~\"{}\"}}", jobs.join("|")))?
                    .is_empty(),
                "{name} uses {metric}, which no running process exposes"
            );
        }
        let firing = prom.jobs_in(expr, &jobs)?;
        for ok in [&healthy, &w1] {
            assert!(
                !firing.contains(ok),
                "{name} fires for the healthy {ok}: {expr}"
            );
        }
        if let Some(want) = expected.get(name) {
            assert_eq!(&firing, want, "{name}: {expr}");
        }
        seen += 1;
    }
    assert_eq!(seen, 10, "the rules file's rules, all loaded");

    // The dashboard: each query returns a series.
    let board: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD)?)?;
    let mut queries = 0;
    for panel in board["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            let live = expr
                .replace("$__rate_interval", "30s")
                .replace("$job", &jobs.join("|"));
            let got = prom.query(&live)?;
            assert!(
                !got.is_empty(),
                "panel {}: no series for {live}",
                panel["title"]
            );
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} dashboard queries");

    // promtool: the rules' unit tests, and both expositions linted.
    let out = Command::new("promtool")
        .args(["test", "rules", RULES_TEST])
        .output()?;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for job in [&healthy, &w1] {
        let target = &prom.query(&format!("up{{job=\"{job}\"}}"))?[0]["instance"];
        let port: u16 = target.rsplit(':').next().unwrap_or("0").parse()?;
        let (_, text) = http_get(port, "/metrics").ok_or("no /metrics")?;
        let mut lint = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        use std::io::Write;
        lint.stdin
            .take()
            .ok_or("stdin")?
            .write_all(text.as_bytes())?;
        let out = lint.wait_with_output()?;
        assert!(
            out.status.success(),
            "promtool check metrics on {job}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for job in jobs {
        prom.forget(job);
    }
    drop(proxy);
    Ok(())
}

/// The metric names an expression reads (`pitwall_…`, `process_…`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..].iter().collect();
        if (rest.starts_with("pitwall_") || rest.starts_with("process_"))
            && (i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_'))
        {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            i += name.len();
            out.insert(name);
        } else {
            i += 1;
        }
    }
    out
}
