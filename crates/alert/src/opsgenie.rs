//! The Opsgenie Alert API v2: create with an alias (Opsgenie de-duplicates
//! open alerts by it), close by that alias on recovery.

use serde_json::json;

use crate::{Alert, Secret, Severity};

pub async fn create(
    client: &reqwest::Client,
    base: &str,
    key: &Secret,
    a: &Alert,
) -> Result<reqwest::Response, reqwest::Error> {
    let body = json!({
        // Opsgenie's limits: message 130 characters, alias 512.
        "message": truncate(&a.summary, 130),
        "alias": truncate(&a.key, 512),
        "description": truncate(&a.description, 15_000),
        "priority": match a.severity {
            Severity::Critical => "P1",
            Severity::Warning => "P3",
        },
        "details": a.details,
        "source": a.source,
        "tags": ["pitwall"],
    });
    let url = format!("{base}/v2/alerts");
    crate::post_json(client, &url, Some(genie(key)), &body).await
}

pub async fn close(
    client: &reqwest::Client,
    base: &str,
    key: &Secret,
    alias: &str,
    note: &str,
    source: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    let alias = encode(&truncate(alias, 512));
    let url = format!("{base}/v2/alerts/{alias}/close?identifierType=alias");
    let body = json!({"source": source, "note": note});
    crate::post_json(client, &url, Some(genie(key)), &body).await
}

fn genie(key: &Secret) -> String {
    format!("GenieKey {}", key.expose())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Percent-encodes a path segment: aliases hold `/`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_encoded_as_one_path_segment() {
        assert_eq!(encode("ingest/lag/s 1"), "ingest%2Flag%2Fs%201");
    }
}
