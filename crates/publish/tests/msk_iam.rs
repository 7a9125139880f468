//! MSK IAM: the token against AWS's own signer, and librdkafka asking for it
//! and refreshing it before it expires.
//!
//! No broker here validates an MSK token: librdkafka's mock cluster (2.12)
//! has no SaslHandshake/SaslAuthenticate handlers, and tansu 0.6 offers PLAIN
//! and SCRAM only (OAUTHBEARER is refused at the handshake). So the token's
//! correctness is shown byte for byte against `aws-msk-iam-sasl-signer-python`,
//! and the callback wiring against the mock cluster, where a producer
//! configured for OAUTHBEARER asks for tokens before it connects.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use pitwall_publish::kafka::{KafkaFailure, KafkaSettings, Session};
use pitwall_publish::msk_iam::{MskIamSigner, token};
use rdkafka::mocking::MockCluster;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/msk_iam_token.py");

fn have_signer() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aws_msk_iam_sasl_signer"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() {
        panic!("python3 with aws-msk-iam-sasl-signer-python is required under scripts/test.sh");
    }
    ok
}

/// AWS's token, its expiry and its User-Agent for these inputs.
fn aws_token(
    key: &str,
    secret: &str,
    session: &str,
    region: &str,
    epoch: u64,
) -> Result<(String, i64, String), Box<dyn std::error::Error>> {
    let out = Command::new("python3")
        .args([SCRIPT, key, secret, session, region, &epoch.to_string()])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut lines = text.lines();
    let mut next = || lines.next().map(str::to_string).ok_or("short output");
    Ok((next()?, next()?.parse()?, next()?))
}

#[test]
fn the_token_is_byte_identical_to_aws_msk_iam_sasl_signer_python() -> TestResult {
    if !have_signer() {
        eprintln!("skipped: python3 -c 'import aws_msk_iam_sasl_signer' failed");
        return Ok(());
    }
    let cases = [
        (
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "",
            "us-east-1",
            1_796_146_205,
        ),
        // IRSA's credentials carry a session token full of characters to escape.
        (
            "ASIAEXAMPLE",
            "se/cr+et=",
            "FwoGZXIvYXdzE+/=Ab~_.-",
            "eu-west-1",
            1_767_225_599,
        ),
        ("ASIA2", "k", "t", "ap-southeast-2", 946_684_800),
    ];
    for (key, secret, session, region, epoch) in cases {
        let (theirs, expiry, user_agent) = aws_token(key, secret, session, region, epoch)?;
        let creds = Credentials::new(
            key,
            secret,
            (!session.is_empty()).then(|| session.into()),
            None,
            "test",
        );
        let at = UNIX_EPOCH + Duration::from_secs(epoch);
        let ours = token(&creds, region, at, &user_agent)?;
        assert_eq!(ours.token, theirs, "{region} at {epoch}");
        assert_eq!(ours.expires_at_ms, expiry);
    }
    Ok(())
}

/// Credentials that expire `lifetime` after each lookup, with the lookups' times.
#[derive(Debug, Clone)]
struct ShortLived {
    lifetime: Duration,
    calls: Arc<Mutex<Vec<SystemTime>>>,
    fail: bool,
}

impl ProvideCredentials for ShortLived {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let now = SystemTime::now();
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(now);
        }
        if self.fail {
            return future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "no web identity token file",
            )));
        }
        let creds = Credentials::new(
            "ASIA",
            "s",
            Some("t".into()),
            Some(now + self.lifetime),
            "test",
        );
        future::ProvideCredentials::ready(Ok(creds))
    }
}

fn settings(brokers: &str, signer: Arc<MskIamSigner>, timeout: Duration) -> KafkaSettings {
    let mut s = KafkaSettings::new(brokers, "driving-score.member.v1");
    s.security_protocol = "sasl_plaintext".into();
    s.msk_iam = Some(signer);
    s.transactional = false;
    s.timeout = timeout;
    s
}

#[test]
fn a_producer_asks_for_tokens_and_refreshes_each_before_it_expires() -> TestResult {
    let cluster = MockCluster::new(1)?;
    let provider = ShortLived {
        lifetime: Duration::from_secs(10),
        calls: Arc::default(),
        fail: false,
    };
    let signer = MskIamSigner::with_provider("eu-west-1", provider.clone())?;
    // The mock broker cannot authenticate anyone, so opening waits out the
    // timeout while librdkafka keeps its token fresh.
    let opened = Session::open(&settings(
        &cluster.bootstrap_servers(),
        signer,
        Duration::from_secs(19),
    ));
    assert!(opened.is_err(), "no broker here accepts OAUTHBEARER");
    let calls = provider.calls.lock().map_err(|_| "poisoned")?.clone();
    assert!(
        calls.len() >= 3,
        "asked {} times in 19 s of 10 s tokens",
        calls.len()
    );
    for pair in calls.windows(2) {
        let expired = pair[0] + provider.lifetime;
        assert!(
            pair[1] < expired,
            "a token was refreshed only after it expired: {calls:?}"
        );
        let gap = pair[1].duration_since(pair[0])?;
        assert!(
            gap >= Duration::from_secs(5),
            "refreshed too eagerly: {calls:?}"
        );
    }
    Ok(())
}

#[test]
fn missing_credentials_fail_the_open_naming_what_to_check() -> TestResult {
    let cluster = MockCluster::new(1)?;
    let provider = ShortLived {
        lifetime: Duration::from_secs(10),
        calls: Arc::default(),
        fail: true,
    };
    let signer = MskIamSigner::with_provider("eu-west-1", provider.clone())?;
    let err = match Session::open(&settings(
        &cluster.bootstrap_servers(),
        signer,
        Duration::from_secs(3),
    )) {
        Ok(_) => return Err("opened without credentials".into()),
        Err(e) => e,
    };
    assert!(matches!(err, KafkaFailure::MskIam(_)), "{err}");
    let text = err.to_string();
    for needle in [
        "MSK IAM",
        "no web identity token file",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert!(!provider.calls.lock().map_err(|_| "poisoned")?.is_empty());
    Ok(())
}
