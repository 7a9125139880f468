//! Confluent Schema Registry through its REST API (subjects, versions,
//! global ids). Works with Confluent Platform, Confluent Cloud (basic auth
//! with an API key) and the registries that copy its API (Karapace,
//! Redpanda, Apicurio's ccompat). Credentials come from the environment,
//! never from flags, so they stay out of shell history and logs.

use std::time::Duration;

use pitwall_contract::compat::Compatibility;
use pitwall_contract::wire::SchemaRef;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::{Registered, Registry, RegistryError, WireFormat};

/// Basic-auth user (Confluent Cloud: the API key).
pub const USER_ENV: &str = "PITWALL_SCHEMA_REGISTRY_USER";
/// Basic-auth password (Confluent Cloud: the API secret).
pub const PASSWORD_ENV: &str = "PITWALL_SCHEMA_REGISTRY_PASSWORD";

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Confluent's error codes for "no such subject" and "no such version".
const SUBJECT_NOT_FOUND: i64 = 40401;
const VERSION_NOT_FOUND: i64 = 40402;
/// "No schema with this global id".
const SCHEMA_NOT_FOUND: i64 = 40403;
/// "Subject has no compatibility of its own": the global one applies.
const SUBJECT_LEVEL_COMPAT_NOT_CONFIGURED: i64 = 40408;

pub struct ConfluentRegistry {
    url: String,
    auth: Option<(String, String)>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

#[derive(Deserialize)]
struct ApiError {
    error_code: i64,
    message: String,
}

#[derive(Deserialize)]
struct Config {
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    level: String,
}

#[derive(Deserialize)]
struct Version {
    version: u32,
    id: u32,
    schema: String,
}

#[derive(Deserialize)]
struct ById {
    schema: String,
}

#[derive(Deserialize)]
struct SubjectVersion {
    subject: String,
    version: u32,
}

#[derive(Deserialize)]
struct Created {
    id: u32,
}

/// A failed call: the registry's own error, or no answer at all.
enum CallError {
    Api(StatusCode, ApiError),
    Other(String),
}

impl ConfluentRegistry {
    /// Connects with basic auth from the environment when both variables are set.
    pub fn connect(url: &str) -> Result<ConfluentRegistry, RegistryError> {
        let auth = match (std::env::var(USER_ENV), std::env::var(PASSWORD_ENV)) {
            (Ok(u), Ok(p)) => Some((u, p)),
            _ => None,
        };
        Self::with_auth(url, auth)
    }

    pub fn with_auth(
        url: &str,
        auth: Option<(String, String)>,
    ) -> Result<ConfluentRegistry, RegistryError> {
        let name = format!("confluent:{url}");
        let backend = |problem: String| RegistryError::Backend {
            registry: name.clone(),
            problem,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| backend(format!("cannot start the HTTP client runtime: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| backend(format!("cannot build the HTTP client: {e}")))?;
        Ok(ConfluentRegistry {
            url: url.trim_end_matches('/').to_string(),
            auth,
            client,
            rt,
        })
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, CallError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body);
        }
        self.rt.block_on(async {
            let res = req.send().await.map_err(|e| {
                CallError::Other(format!(
                    "no answer ({e}); check the URL and that the registry is running"
                ))
            })?;
            let status = res.status();
            let text = res
                .text()
                .await
                .map_err(|e| CallError::Other(format!("reading the answer: {e}")))?;
            if status.is_success() {
                serde_json::from_str(&text)
                    .map_err(|e| CallError::Other(format!("unexpected answer {text:?}: {e}")))
            } else {
                Err(match serde_json::from_str::<ApiError>(&text) {
                    Ok(api) => CallError::Api(status, api),
                    Err(_) => CallError::Other(format!("HTTP {status}: {text}")),
                })
            }
        })
    }

    fn err(&self, what: &str, e: CallError) -> RegistryError {
        let problem = match e {
            CallError::Api(status, api)
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN =>
            {
                format!(
                    "{what}: HTTP {status} ({}); set {USER_ENV} and {PASSWORD_ENV} to credentials allowed on this registry",
                    api.message
                )
            }
            CallError::Api(status, api) => {
                format!(
                    "{what}: HTTP {status}, error {} ({})",
                    api.error_code, api.message
                )
            }
            CallError::Other(m) => format!("{what}: {m}"),
        };
        RegistryError::Backend {
            registry: self.name(),
            problem,
        }
    }

    /// The subject's version numbers; none if the subject does not exist.
    fn version_numbers(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let path = format!("/subjects/{}/versions", path_segment(subject));
        match self.call(Method::GET, &path, None) {
            Ok(n) => Ok(n),
            Err(e) if not_found(&e, &[SUBJECT_NOT_FOUND]) => Ok(Vec::new()),
            Err(e) => Err(self.err(&format!("listing the versions of {subject}"), e)),
        }
    }

    fn global_compatibility(&self) -> Result<Compatibility, RegistryError> {
        let c: Config = self
            .call(Method::GET, "/config", None)
            .map_err(|e| self.err("reading the global compatibility", e))?;
        self.parse_level(&c.level)
    }

    fn parse_level(&self, level: &str) -> Result<Compatibility, RegistryError> {
        from_confluent(level).ok_or_else(|| RegistryError::Backend {
            registry: self.name(),
            problem: format!("unknown compatibility level {level:?}"),
        })
    }
}

/// Confluent calls the "all versions" modes *_TRANSITIVE and has no DISABLED.
fn to_confluent(c: Compatibility) -> &'static str {
    match c {
        Compatibility::None | Compatibility::Disabled => "NONE",
        Compatibility::Backward => "BACKWARD",
        Compatibility::BackwardAll => "BACKWARD_TRANSITIVE",
        Compatibility::Forward => "FORWARD",
        Compatibility::ForwardAll => "FORWARD_TRANSITIVE",
        Compatibility::Full => "FULL",
        Compatibility::FullAll => "FULL_TRANSITIVE",
    }
}

fn from_confluent(level: &str) -> Option<Compatibility> {
    Some(match level {
        "NONE" => Compatibility::None,
        "BACKWARD" => Compatibility::Backward,
        "BACKWARD_TRANSITIVE" => Compatibility::BackwardAll,
        "FORWARD" => Compatibility::Forward,
        "FORWARD_TRANSITIVE" => Compatibility::ForwardAll,
        "FULL" => Compatibility::Full,
        "FULL_TRANSITIVE" => Compatibility::FullAll,
        _ => return None,
    })
}

/// Subjects go into URL paths; escape everything but the unreserved set.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn not_found(e: &CallError, codes: &[i64]) -> bool {
    matches!(e, CallError::Api(StatusCode::NOT_FOUND, api) if codes.contains(&api.error_code))
}

impl Registry for ConfluentRegistry {
    fn name(&self) -> String {
        format!("confluent:{}", self.url)
    }

    fn compatibility(&self, subject: &str) -> Result<Option<Compatibility>, RegistryError> {
        let path = format!("/config/{}", path_segment(subject));
        match self.call::<Config>(Method::GET, &path, None) {
            Ok(c) => self.parse_level(&c.level).map(Some),
            Err(e)
                if not_found(
                    &e,
                    &[SUBJECT_NOT_FOUND, SUBJECT_LEVEL_COMPAT_NOT_CONFIGURED],
                ) =>
            {
                self.global_compatibility().map(Some)
            }
            Err(e) => Err(self.err(&format!("reading the compatibility of {subject}"), e)),
        }
    }

    fn versions(&self, subject: &str) -> Result<Vec<Registered>, RegistryError> {
        let base = format!("/subjects/{}/versions", path_segment(subject));
        let numbers = self.version_numbers(subject)?;
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            let v: Version = match self.call(Method::GET, &format!("{base}/{n}"), None) {
                Ok(v) => v,
                // Soft-deleted between the listing and the read.
                Err(e) if not_found(&e, &[VERSION_NOT_FOUND]) => continue,
                Err(e) => return Err(self.err(&format!("reading version {n} of {subject}"), e)),
            };
            out.push(Registered {
                subject: subject.into(),
                version: v.version,
                schema: v.schema,
                version_id: None,
                schema_id: Some(v.id),
            });
        }
        out.sort_by_key(|r| r.version);
        Ok(out)
    }

    fn create_version(
        &self,
        subject: &str,
        schema: &str,
        compatibility: Compatibility,
    ) -> Result<Registered, RegistryError> {
        let seg = path_segment(subject);
        // A new subject: the listing alone says so, no version need be read.
        if self.version_numbers(subject)?.is_empty() {
            if compatibility == Compatibility::Disabled {
                return Err(RegistryError::Backend {
                    registry: self.name(),
                    problem: "Confluent has no DISABLED mode; choose another with --compatibility"
                        .into(),
                });
            }
            let body = serde_json::json!({ "compatibility": to_confluent(compatibility) });
            self.call::<serde_json::Value>(
                Method::PUT,
                &format!("/config/{seg}"),
                Some(body.to_string()),
            )
            .map_err(|e| self.err(&format!("setting the compatibility of {subject}"), e))?;
        }
        let body = serde_json::json!({ "schemaType": "AVRO", "schema": schema }).to_string();
        let created: Created = self
            .call(
                Method::POST,
                &format!("/subjects/{seg}/versions"),
                Some(body.clone()),
            )
            .map_err(|e| self.err(&format!("registering a version of {subject}"), e))?;
        // The POST answers only the global id; the lookup gives the version.
        let v: Version = self
            .call(Method::POST, &format!("/subjects/{seg}"), Some(body))
            .map_err(|e| self.err(&format!("looking up the new version of {subject}"), e))?;
        Ok(Registered {
            subject: subject.into(),
            version: v.version,
            schema: schema.into(),
            version_id: None,
            schema_id: Some(created.id),
        })
    }

    fn wire_format(&self) -> WireFormat {
        WireFormat::Confluent
    }

    fn resolve(&self, reference: SchemaRef) -> Result<Option<Registered>, RegistryError> {
        let SchemaRef::Confluent(id) = reference else {
            return Ok(None);
        };
        let what = format!("reading schema id {id}");
        let by_id: ById = match self.call(Method::GET, &format!("/schemas/ids/{id}"), None) {
            Ok(s) => s,
            Err(e) if not_found(&e, &[SCHEMA_NOT_FOUND]) => return Ok(None),
            Err(e) => return Err(self.err(&what, e)),
        };
        // One global id may be registered under several subjects: the first names it.
        let under: Vec<SubjectVersion> = self
            .call(Method::GET, &format!("/schemas/ids/{id}/versions"), None)
            .map_err(|e| self.err(&what, e))?;
        let (subject, version) = under
            .into_iter()
            .next()
            .map_or((String::from("?"), 0), |sv| (sv.subject, sv.version));
        Ok(Some(Registered {
            subject,
            version,
            schema: by_id.schema,
            version_id: None,
            schema_id: Some(id),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_confluent_names() {
        for c in Compatibility::ALL {
            if c == Compatibility::Disabled {
                continue;
            }
            assert_eq!(from_confluent(to_confluent(c)), Some(c));
        }
        assert_eq!(from_confluent("DISABLED"), None);
    }

    #[test]
    fn subjects_are_escaped_in_paths() {
        assert_eq!(
            path_segment("driving-score.member.v1-value"),
            "driving-score.member.v1-value"
        );
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
