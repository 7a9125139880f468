//! One notifier for every command: an [`Alert`] fires (or resolves) on each
//! configured sink — Slack incoming webhooks and the Opsgenie Alert API v2.
//!
//! Configured once, from the environment (the secrets live nowhere else):
//!
//! | variable | meaning |
//! |---|---|
//! | `PITWALL_SLACK_WEBHOOK_URL` | a Slack incoming-webhook URL |
//! | `PITWALL_OPSGENIE_API_KEY` | an Opsgenie API integration key |
//! | `PITWALL_OPSGENIE_URL` | the API base, default `https://api.opsgenie.com` (EU: `https://api.eu.opsgenie.com`) |
//!
//! A sink that fails is reported and the others still run: an alert that
//! can't be delivered must not also stop the job that raised it. Neither the
//! webhook URL nor the key ever reaches a log line or an error message.

mod opsgenie;
mod slack;

use std::collections::BTreeMap;
use std::time::Duration;

pub const SLACK_ENV: &str = "PITWALL_SLACK_WEBHOOK_URL";
pub const OPSGENIE_KEY_ENV: &str = "PITWALL_OPSGENIE_API_KEY";
pub const OPSGENIE_URL_ENV: &str = "PITWALL_OPSGENIE_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Wake someone: data is being lost or held.
    Critical,
    /// Look at it today.
    Warning,
}

/// Something the engineer on call must know.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Alert {
    /// Stable identity of the condition (e.g. `ingest/lag/server-logs`):
    /// Opsgenie de-duplicates by it, and a recovery closes by it.
    pub key: String,
    /// One line: what is wrong.
    pub summary: String,
    /// What to look at and what to do, a few lines.
    pub description: String,
    pub severity: Severity,
    /// Facts: counts, paths, thresholds.
    pub details: BTreeMap<String, String>,
    /// The command that raised it (`pitwall score run`, …).
    pub source: String,
}

/// A secret that prints as `<redacted>`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub enum Sink {
    Slack { webhook: Secret },
    Opsgenie { api_key: Secret, base_url: String },
}

impl Sink {
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Slack { .. } => "slack",
            Sink::Opsgenie { .. } => "opsgenie",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The sink answered with an error status; `body` is its explanation.
    #[error("{sink} refused the alert {key:?}: HTTP {status}: {body}")]
    Refused {
        sink: &'static str,
        key: String,
        status: u16,
        body: String,
    },
    /// No answer. The request URL is left out: it may hold the secret.
    #[error("{sink} could not be reached for the alert {key:?}: {reason}")]
    Unreachable {
        sink: &'static str,
        key: String,
        reason: String,
    },
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

/// Delivers alerts to every configured sink.
#[derive(Debug, Clone)]
pub struct Notifier {
    sinks: Vec<Sink>,
    client: reqwest::Client,
}

impl Notifier {
    pub fn new(sinks: Vec<Sink>) -> Result<Notifier, AlertError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AlertError::Client(e.without_url().to_string()))?;
        Ok(Notifier { sinks, client })
    }

    /// The sinks the environment configures; none is a valid setup (alerts
    /// are then only logged).
    pub fn from_env() -> Result<Notifier, AlertError> {
        let var = |k| {
            std::env::var(k)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        let mut sinks = Vec::new();
        if let Some(url) = var(SLACK_ENV) {
            sinks.push(Sink::Slack {
                webhook: Secret::new(url.trim()),
            });
        }
        if let Some(key) = var(OPSGENIE_KEY_ENV) {
            sinks.push(Sink::Opsgenie {
                api_key: Secret::new(key.trim()),
                base_url: var(OPSGENIE_URL_ENV)
                    .unwrap_or_else(|| "https://api.opsgenie.com".into())
                    .trim_end_matches('/')
                    .to_string(),
            });
        }
        Notifier::new(sinks)
    }

    pub fn sinks(&self) -> &[Sink] {
        &self.sinks
    }

    /// Raises `alert` on every sink; returns the failures (also logged).
    pub async fn fire(&self, alert: &Alert) -> Vec<AlertError> {
        tracing::warn!(key = %alert.key, severity = ?alert.severity, summary = %alert.summary, "alert");
        let mut errors = Vec::new();
        for sink in &self.sinks {
            let r = match sink {
                Sink::Slack { webhook } => slack::fire(&self.client, webhook, alert).await,
                Sink::Opsgenie { api_key, base_url } => {
                    opsgenie::create(&self.client, base_url, api_key, alert).await
                }
            };
            errors.extend(outcome(sink, &alert.key, r).await);
        }
        errors
    }

    /// The condition behind `key` is over: Opsgenie closes the alert, Slack
    /// is told it recovered.
    pub async fn resolve(&self, key: &str, note: &str, source: &str) -> Vec<AlertError> {
        tracing::info!(key, note, "alert resolved");
        let mut errors = Vec::new();
        for sink in &self.sinks {
            let r = match sink {
                Sink::Slack { webhook } => slack::resolve(&self.client, webhook, key, note).await,
                Sink::Opsgenie { api_key, base_url } => {
                    opsgenie::close(&self.client, base_url, api_key, key, note, source).await
                }
            };
            errors.extend(outcome(sink, key, r).await);
        }
        errors
    }

    /// For commands without a runtime of their own.
    pub fn fire_blocking(&self, alert: &Alert) -> Vec<AlertError> {
        block_on(self.fire(alert))
    }

    pub fn resolve_blocking(&self, key: &str, note: &str, source: &str) -> Vec<AlertError> {
        block_on(self.resolve(key, note, source))
    }
}

/// POSTs `body` as JSON; `auth` is the Authorization header, when the sink
/// takes one.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    auth: Option<String>,
    body: &serde_json::Value,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut req = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await
}

fn block_on(f: impl std::future::Future<Output = Vec<AlertError>>) -> Vec<AlertError> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => vec![AlertError::Client(e.to_string())],
    }
}

/// A sink's answer as an error, if it is one (and logged).
async fn outcome(
    sink: &Sink,
    key: &str,
    r: Result<reqwest::Response, reqwest::Error>,
) -> Option<AlertError> {
    let e = match r {
        Ok(resp) if resp.status().is_success() => return None,
        // The body is the sink's own explanation; it never echoes the secret.
        Ok(resp) => AlertError::Refused {
            sink: sink.name(),
            key: key.to_string(),
            status: resp.status().as_u16(),
            body: resp
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect(),
        },
        Err(e) => AlertError::Unreachable {
            sink: sink.name(),
            key: key.to_string(),
            reason: e.without_url().to_string(),
        },
    };
    tracing::error!(error = %e, "alert not delivered");
    Some(e)
}
