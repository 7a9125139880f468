//! The notifier against a local HTTP server that records every request and
//! answers as Slack and Opsgenie do: what is sent, to where, with which
//! credentials — and that the secrets never show in an error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pitwall_alert::{Alert, AlertError, Notifier, Secret, Severity, Sink};

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: String,
    auth: String,
    body: serde_json::Value,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn server() -> (String, Log) {
    let log: Log = Arc::default();
    let rec = log.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let rec = rec.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let path = parts.uri.path().to_string();
            rec.lock().unwrap_or_else(|p| p.into_inner()).push(Seen {
                path: path.clone(),
                query: parts.uri.query().unwrap_or("").to_string(),
                auth: parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            });
            match path.as_str() {
                p if p.starts_with("/services/broken") => (StatusCode::NOT_FOUND, "no_service"),
                p if p.starts_with("/services/") => (StatusCode::OK, "ok"),
                p if p.starts_with("/v2/alerts") => (
                    StatusCode::ACCEPTED,
                    r#"{"result":"Request will be processed"}"#,
                ),
                _ => (StatusCode::NOT_FOUND, "?"),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log)
}

fn alert() -> Alert {
    Alert {
        key: "ingest/lag/server-logs".into(),
        summary: "Ingestion is 12 minutes behind on server-logs".into(),
        description: "Check the workers' /status page.".into(),
        severity: Severity::Critical,
        details: BTreeMap::from([("lag_ms".into(), "720000".into())]),
        source: "pitwall ingest run".into(),
    }
}

#[tokio::test]
async fn slack_and_opsgenie_receive_create_and_close() {
    let (base, log) = server().await;
    let n = Notifier::new(vec![
        Sink::Slack {
            webhook: Secret::new(format!("{base}/services/T000/B000/XXXSECRET")),
        },
        Sink::Opsgenie {
            api_key: Secret::new("og-secret-key"),
            base_url: base.clone(),
        },
    ])
    .expect("notifier");
    assert!(n.fire(&alert()).await.is_empty());
    assert!(
        n.resolve(
            "ingest/lag/server-logs",
            "lag back under 1 minute",
            "pitwall ingest run"
        )
        .await
        .is_empty()
    );
    let seen = log.lock().expect("log").clone();
    assert_eq!(seen.len(), 4, "{seen:#?}");

    let slack = &seen[0];
    assert_eq!(slack.path, "/services/T000/B000/XXXSECRET");
    assert!(
        slack.body["text"]
            .as_str()
            .is_some_and(|t| t.contains("12 minutes behind"))
    );
    assert!(slack.body["blocks"].to_string().contains("lag_ms"));

    let create = &seen[1];
    assert_eq!(create.path, "/v2/alerts");
    assert_eq!(create.auth, "GenieKey og-secret-key");
    assert_eq!(create.body["alias"], "ingest/lag/server-logs");
    assert_eq!(create.body["priority"], "P1");
    assert_eq!(create.body["details"]["lag_ms"], "720000");
    assert_eq!(create.body["source"], "pitwall ingest run");

    assert!(
        seen[2].body["text"]
            .as_str()
            .is_some_and(|t| t.contains("resolved"))
    );
    let close = &seen[3];
    // The alias is one path segment: its slashes are encoded.
    assert_eq!(close.path, "/v2/alerts/ingest%2Flag%2Fserver-logs/close");
    assert_eq!(close.query, "identifierType=alias");
    assert_eq!(close.auth, "GenieKey og-secret-key");
    assert_eq!(close.body["note"], "lag back under 1 minute");
}

#[tokio::test]
async fn a_long_summary_is_cut_to_opsgenies_limit_and_warnings_are_p3() {
    let (base, log) = server().await;
    let n = Notifier::new(vec![Sink::Opsgenie {
        api_key: Secret::new("k"),
        base_url: base,
    }])
    .expect("notifier");
    let mut a = alert();
    a.summary = "x".repeat(500);
    a.severity = Severity::Warning;
    assert!(n.fire(&a).await.is_empty());
    let seen = log.lock().expect("log").clone();
    assert_eq!(seen[0].body["message"].as_str().map(str::len), Some(130));
    assert_eq!(seen[0].body["priority"], "P3");
}

#[tokio::test]
async fn failures_are_reported_per_sink_without_the_secrets() {
    let (base, _log) = server().await;
    let n = Notifier::new(vec![
        Sink::Slack {
            webhook: Secret::new(format!("{base}/services/broken/XXXSECRET")),
        },
        // Nothing listens on port 9 here.
        Sink::Opsgenie {
            api_key: Secret::new("og-secret-key"),
            base_url: "http://127.0.0.1:9".into(),
        },
    ])
    .expect("notifier");
    let errors = n.fire(&alert()).await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        matches!(&errors[0], AlertError::Refused { sink: "slack", status: 404, body, .. } if body == "no_service")
    );
    assert!(matches!(
        &errors[1],
        AlertError::Unreachable {
            sink: "opsgenie",
            ..
        }
    ));
    for e in &errors {
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("XXXSECRET") && !text.contains("og-secret-key"),
            "{text}"
        );
    }
    assert!(!format!("{:?}", n.sinks()).contains("XXXSECRET"));
}

#[test]
fn the_environment_configures_the_sinks() {
    // One test touches these variables, so no other test races it.
    unsafe_env(|| {
        let n = Notifier::from_env().expect("notifier");
        let names: Vec<_> = n.sinks().iter().map(Sink::name).collect();
        assert_eq!(names, ["slack", "opsgenie"]);
    });
}

fn unsafe_env(f: impl FnOnce()) {
    // SAFETY-free: std::env::set_var is unsafe in edition 2024, so the
    // variables come from a child process instead.
    if std::env::var_os("PITWALL_ALERT_ENV_CHILD").is_some() {
        f();
        return;
    }
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new(exe)
        .args([
            "the_environment_configures_the_sinks",
            "--exact",
            "--nocapture",
        ])
        .env("PITWALL_ALERT_ENV_CHILD", "1")
        .env("PITWALL_SLACK_WEBHOOK_URL", "http://127.0.0.1:1/services/x")
        .env("PITWALL_OPSGENIE_API_KEY", "k")
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
