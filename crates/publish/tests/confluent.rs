//! The Confluent Schema Registry backend over real HTTP, against the REST
//! emulator in scripts/confluent_registry.py (no Confluent-compatible server
//! can be installed here), and a publication to tansu decoded by
//! confluent-kafka's own AvroDeserializer through that registry.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pitwall_contract::Compatibility;
use pitwall_contract::schemas::MEMBER_SCORE_V1;
use pitwall_publish::kafka::KafkaSettings;
use pitwall_publish::registry::{
    ConfluentRegistry, Outcome, Registry, RegistryError, check_and_register,
};
use pitwall_publish::{PublishRequest, publish};
use util::{TestResult, broker, create_topic};

/// A registry process on a free port, stopped on drop.
struct Emulator {
    child: Child,
    url: String,
}

impl Emulator {
    fn start(user: Option<&str>) -> Result<Emulator, Box<dyn std::error::Error>> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/confluent_registry.py"
        );
        let mut cmd = Command::new("python3");
        cmd.arg(script).stdout(Stdio::piped());
        if let Some(u) = user {
            cmd.args(["--user", u]);
        }
        let mut child = cmd.spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("unexpected start-up line {line:?}"))?;
        Ok(Emulator {
            url: format!("http://127.0.0.1:{port}"),
            child,
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn v2_text() -> String {
    MEMBER_SCORE_V1.replace(
        r#"{"name": "run_id", "type": "string"},"#,
        r#"{"name": "run_id", "type": "string"}, {"name": "region", "type": ["null", "string"], "default": null},"#,
    )
}

#[test]
fn confluent_registry_registers_checks_and_refuses() -> TestResult {
    let emu = Emulator::start(None)?;
    let reg = ConfluentRegistry::connect(&emu.url)?;
    let subject = "driving-score.member.v1-value";
    assert!(reg.versions(subject)?.is_empty());
    // A new subject falls back to the global level.
    assert_eq!(reg.compatibility(subject)?, Some(Compatibility::Backward));

    let Outcome::Registered(v1) = check_and_register(
        &reg,
        subject,
        MEMBER_SCORE_V1,
        Some(Compatibility::FullAll),
        true,
    )?
    else {
        return Err("not registered".into());
    };
    assert_eq!((v1.version, v1.schema_id), (1, Some(1)));
    // The subject was created with the asked mode, in Confluent's name for it.
    assert_eq!(reg.compatibility(subject)?, Some(Compatibility::FullAll));
    assert_eq!(
        check_and_register(&reg, subject, MEMBER_SCORE_V1, None, true)?,
        Outcome::AlreadyRegistered(v1.clone())
    );

    let Outcome::Registered(v2) = check_and_register(&reg, subject, &v2_text(), None, true)? else {
        return Err("v2 not registered".into());
    };
    assert_eq!((v2.version, v2.schema_id), (2, Some(2)));

    // Dropping the default from the new field breaks FULL_ALL: refused
    // here, although the emulator (like most) would accept it.
    let v3 = v2_text().replace(
        r#"{"name": "region", "type": ["null", "string"], "default": null}"#,
        r#"{"name": "region", "type": "string"}"#,
    );
    let err = check_and_register(&reg, subject, &v3, None, true)
        .err()
        .ok_or("v3 must be refused")?;
    assert!(matches!(err, RegistryError::Incompatible { .. }), "{err}");
    assert!(err.to_string().contains("'region'"), "{err}");
    assert_eq!(reg.versions(subject)?.len(), 2, "nothing was registered");
    Ok(())
}

#[test]
fn confluent_identity_follows_the_whole_schema_and_modes_compare_their_history() -> TestResult {
    let emu = Emulator::start(None)?;
    let reg = ConfluentRegistry::connect(&emu.url)?;
    util::identity::identity_and_history(&reg, "confluent")
}

#[test]
fn confluent_registry_errors_say_what_to_check() -> TestResult {
    let emu = Emulator::start(Some("key:secret"))?;
    let anonymous = ConfluentRegistry::connect(&emu.url)?;
    let err = anonymous
        .versions("s")
        .err()
        .ok_or("must need auth")?
        .to_string();
    assert!(
        err.contains("401") && err.contains("PITWALL_SCHEMA_REGISTRY_USER"),
        "{err}"
    );

    let authed = ConfluentRegistry::with_auth(&emu.url, Some(("key".into(), "secret".into())))?;
    assert!(authed.versions("s")?.is_empty());

    let gone = ConfluentRegistry::connect("http://127.0.0.1:9")?;
    let err = gone
        .versions("s")
        .err()
        .ok_or("nothing listens there")?
        .to_string();
    assert!(err.contains("check the URL"), "{err}");
    Ok(())
}

#[test]
fn a_run_published_with_confluent_is_decoded_by_confluent_kafka() -> TestResult {
    let Some(brokers) = broker() else {
        return Ok(());
    };
    let emu = Emulator::start(None)?;
    let reg = ConfluentRegistry::connect(&emu.url)?;
    let dir = tempfile::tempdir()?;
    let (run_dir, _) = util::scored_run(dir.path(), 50, 31)?;
    let topic = format!("confluent-{}", std::process::id());
    create_topic(&brokers, &topic)?;
    let mut kafka = KafkaSettings::new(&brokers, &topic);
    kafka.timeout = Duration::from_secs(15);
    kafka.transactional = false;
    let subject = format!("{topic}-value");
    publish(&PublishRequest {
        run_dir: &run_dir,
        registry: &reg,
        subject: &subject,
        kafka,
        force: false,
        zlib: false,
        wire: None,
    })?;
    let want = util::expected_scores(&run_dir)?.len();
    let decoded = util::decode_topic(&brokers, &topic, &format!("confluent:{}", emu.url), want)?;
    util::assert_decoded_matches_run(&decoded, &run_dir)?;
    util::tail::scenario(&brokers, &topic, &reg, &subject, &run_dir)
}
