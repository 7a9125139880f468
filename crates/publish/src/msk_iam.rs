//! MSK IAM authentication: the SASL/OAUTHBEARER token Amazon MSK accepts on
//! its IAM listener, a SigV4-presigned `kafka-cluster:Connect` URL,
//! base64url-encoded without padding, as AWS's own signers build it.
//!
//! The URL's parameters are written in the order AWS's signers write them
//! (operation, then `X-Amz-*` with the security token before the signature,
//! then `User-Agent`), so the token is byte-identical to theirs for the same
//! credentials, region and time; `tests/msk_iam.rs` checks that against
//! `aws-msk-iam-sasl-signer-python`. The signature itself is aws-sigv4's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What MSK's signers presign for: one token is good for 15 minutes.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
const SERVICE: &str = "kafka-cluster";
const ACTION: &str = "kafka-cluster:Connect";
/// How long one credentials lookup (IRSA: an STS call) may take.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(20);

/// RFC 3986 unreserved characters stay; everything else is escaped, as SigV4 requires.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, thiserror::Error)]
pub enum MskIamError {
    #[error(
        "no AWS region for MSK IAM: pass --msk-region or set AWS_REGION (the region of the MSK cluster)"
    )]
    NoRegion,
    #[error(
        "cannot get AWS credentials for MSK IAM: {0}; in a pod check the service account's IRSA role (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE), elsewhere AWS_PROFILE or AWS_ACCESS_KEY_ID"
    )]
    Credentials(String),
    #[error("cannot sign the MSK IAM token: {0}")]
    Signing(String),
    #[error("cannot start the credentials runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// A token and when librdkafka must have replaced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MskToken {
    pub token: String,
    /// Milliseconds since the epoch: the token's own expiry, or the
    /// credentials' when they expire first (IRSA sessions do), since a token
    /// signed with expired credentials is refused.
    pub expires_at_ms: i64,
}

/// The token for `credentials` in `region` signed at `at`.
pub fn token(
    credentials: &Credentials,
    region: &str,
    at: SystemTime,
    user_agent: &str,
) -> Result<MskToken, MskIamError> {
    let endpoint = format!("https://kafka.{region}.amazonaws.com/");
    let action = format!("Action={}", encode(ACTION));
    let unsigned = format!("{endpoint}?{action}");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| MskIamError::Signing(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "GET",
        &unsigned,
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| MskIamError::Signing(e.to_string()))?;
    let (instructions, _) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|e| MskIamError::Signing(e.to_string()))?
        .into_parts();
    let signed = instructions.params();
    let param = |name: &str| {
        signed
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(k, v)| format!("&{k}={}", encode(v)))
            .unwrap_or_default()
    };
    let mut url = unsigned;
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ] {
        url.push_str(&param(name));
    }
    url.push_str(&format!("&User-Agent={}", encode(user_agent)));
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url.as_bytes());
    let signed_at = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    // SigV4 dates have whole seconds: expiry counts from the signed second.
    let mut expires_at_ms = (signed_at.as_secs() + TOKEN_LIFETIME.as_secs()) as i64 * 1000;
    if let Some(until) = credentials.expiry() {
        let until = until.duration_since(UNIX_EPOCH).unwrap_or_default();
        expires_at_ms = expires_at_ms.min(until.as_millis() as i64);
    }
    Ok(MskToken {
        token,
        expires_at_ms,
    })
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Makes tokens on demand from a credentials provider (the standard chain
/// by default), on a runtime of its own because librdkafka asks from its
/// own threads, inside or outside the caller's runtime.
pub struct MskIamSigner {
    region: String,
    credentials: SharedCredentialsProvider,
    runtime: tokio::runtime::Runtime,
    user_agent: String,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for MskIamSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIamSigner")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MskIamSigner {
    /// The standard chain: environment, profile, IRSA web identity, ECS, IMDS.
    pub fn from_env(region: Option<&str>) -> Result<Arc<MskIamSigner>, MskIamError> {
        let runtime = runtime()?;
        let conf = runtime.block_on(aws_config::load_from_env());
        let region = match region {
            Some(r) => r.to_string(),
            None => conf
                .region()
                .map(|r| r.to_string())
                .ok_or(MskIamError::NoRegion)?,
        };
        let credentials = conf.credentials_provider().ok_or_else(|| {
            MskIamError::Credentials("no credentials provider is configured".into())
        })?;
        Ok(Arc::new(Self::build(region, credentials, runtime)))
    }

    /// A signer with credentials of the caller's choosing.
    pub fn with_provider(
        region: &str,
        credentials: impl ProvideCredentials + 'static,
    ) -> Result<Arc<MskIamSigner>, MskIamError> {
        let credentials = SharedCredentialsProvider::new(credentials);
        Ok(Arc::new(Self::build(
            region.into(),
            credentials,
            runtime()?,
        )))
    }

    fn build(
        region: String,
        credentials: SharedCredentialsProvider,
        runtime: tokio::runtime::Runtime,
    ) -> MskIamSigner {
        MskIamSigner {
            region,
            credentials,
            runtime,
            user_agent: format!("pitwall/{}", env!("CARGO_PKG_VERSION")),
            last_error: Mutex::new(None),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// A fresh token signed now; a failure is kept for [`Self::last_error`].
    pub fn generate(&self) -> Result<MskToken, MskIamError> {
        let result = self
            .credentials_now()
            .and_then(|c| token(&c, &self.region, SystemTime::now(), &self.user_agent));
        if let Ok(mut last) = self.last_error.lock() {
            *last = result.as_ref().err().map(|e| e.to_string());
        }
        result
    }

    /// Why the latest token could not be made, if it could not: librdkafka
    /// reports only that the broker connection failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn credentials_now(&self) -> Result<Credentials, MskIamError> {
        let provider = self.credentials.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(provider.provide_credentials().await);
        });
        match rx.recv_timeout(CREDENTIALS_TIMEOUT) {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(MskIamError::Credentials(pitwall_contract::compat::chain(
                &e,
            ))),
            Err(_) => Err(MskIamError::Credentials(format!(
                "no answer within {CREDENTIALS_TIMEOUT:?}"
            ))),
        }
    }
}

/// What librdkafka's token refresh gets: a token, or why there is none
/// (it then retries, and reports the reason on the connection).
pub fn oauth_token(
    signer: Option<&MskIamSigner>,
) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
    let signer = signer.ok_or("OAUTHBEARER is configured without an MSK IAM signer")?;
    let t = signer.generate()?;
    tracing::debug!(expires_at_ms = t.expires_at_ms, "MSK IAM token refreshed");
    Ok(rdkafka::client::OAuthToken {
        token: t.token,
        // MSK takes the principal from the signature; librdkafka wants a name.
        principal_name: "pitwall".into(),
        lifetime_ms: t.expires_at_ms,
    })
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("msk-iam-credentials")
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(t: &MskToken) -> String {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&t.token)
            .unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn token_is_an_unpadded_base64url_presigned_connect_url() {
        let creds = Credentials::new("AKID", "secret/+=", None, None, "test");
        let t = token(&creds, "eu-west-1", at(1_796_146_205), "pitwall/0").expect("token");
        assert!(!t.token.contains('=') && !t.token.contains('+') && !t.token.contains('/'));
        let url = decoded(&t);
        assert!(url.starts_with(
            "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261201%2Feu-west-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20261201T173005Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature="
        ), "{url}");
        assert!(url.ends_with("&User-Agent=pitwall%2F0"), "{url}");
        assert!(
            !url.contains("Security-Token"),
            "no session token, no parameter"
        );
        assert_eq!(t.expires_at_ms, 1_796_147_105_000);
    }

    #[test]
    fn a_session_token_is_signed_and_escaped_before_the_signature() {
        let creds = Credentials::new("AKID", "s", Some("a+b/c=".into()), None, "test");
        let url = decoded(&token(&creds, "us-east-1", at(0), "ua").expect("token"));
        let tok = url
            .find("&X-Amz-Security-Token=a%2Bb%2Fc%3D&")
            .expect("token param");
        assert!(tok < url.find("&X-Amz-Signature=").expect("signature"));
    }

    #[test]
    fn expiry_is_the_credentials_when_they_expire_first() {
        let soon = at(1_000 + 60);
        let creds = Credentials::new("AKID", "s", None, Some(soon), "test");
        let t = token(&creds, "us-east-1", at(1_000), "ua").expect("token");
        assert_eq!(t.expires_at_ms, 1_060_000);
        let later = Credentials::new("AKID", "s", None, Some(at(1_000_000)), "test");
        let t = token(&later, "us-east-1", at(1_000), "ua").expect("token");
        assert_eq!(t.expires_at_ms, 1_900_000);
    }

    #[test]
    fn the_signature_changes_with_time_and_secret() {
        let a = Credentials::new("AKID", "one", None, None, "test");
        let b = Credentials::new("AKID", "two", None, None, "test");
        let t = |c: &Credentials, s| token(c, "us-east-1", at(s), "ua").expect("token").token;
        assert_ne!(t(&a, 10), t(&a, 11));
        assert_ne!(t(&a, 10), t(&b, 10));
        assert_eq!(t(&a, 10), t(&a, 10));
    }
}
