//! Slack incoming webhooks: one message per alert, one when it recovers.

use serde_json::json;

use crate::{Alert, Secret, Severity};

pub async fn fire(
    client: &reqwest::Client,
    webhook: &Secret,
    a: &Alert,
) -> Result<reqwest::Response, reqwest::Error> {
    let icon = match a.severity {
        Severity::Critical => ":red_circle:",
        Severity::Warning => ":warning:",
    };
    let facts: Vec<_> = a
        .details
        .iter()
        .take(10) // Slack's limit of fields per section
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")}))
        .collect();
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("{icon} *{}*\n{}", a.summary, a.description)}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!("`{}` · {} · {:?}", a.key, a.source, a.severity)}]}),
    ];
    if !facts.is_empty() {
        blocks.insert(1, json!({"type": "section", "fields": facts}));
    }
    let body = json!({
        "text": format!("{icon} {}", a.summary),
        "blocks": blocks,
    });
    crate::post_json(client, webhook.expose(), None, &body).await
}

pub async fn resolve(
    client: &reqwest::Client,
    webhook: &Secret,
    key: &str,
    note: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    let body = json!({"text": format!(":white_check_mark: resolved `{key}`: {note}")});
    crate::post_json(client, webhook.expose(), None, &body).await
}
