//! The Glue Schema Registry backend against moto (started by
//! scripts/services.sh), through the official AWS SDK and the standard
//! AWS environment. moto accepts any new version; the compatibility check
//! is pitwall's own, before anything is registered.

mod util;

use std::time::Duration;

use pitwall_contract::schemas::MEMBER_SCORE_V1;
use pitwall_contract::wire::{self, SchemaRef};
use pitwall_publish::kafka::KafkaSettings;
use pitwall_publish::registry::{
    GlueRegistry, Outcome, Registry, RegistryError, check_and_register,
};
use pitwall_publish::{PublishRequest, publish};
use util::TestResult;

fn glue() -> Option<GlueRegistry> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        if std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() {
            panic!("AWS_ENDPOINT_URL is not set: start the services with scripts/services.sh");
        }
        eprintln!("skipped: no moto server (run scripts/test.sh)");
        return None;
    }
    Some(
        GlueRegistry::connect(&format!("pitwall-test-{}", std::process::id()))
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

#[test]
fn glue_registry_registers_checks_and_refuses() -> TestResult {
    let Some(reg) = glue() else { return Ok(()) };
    let subject = "member-score";
    // First use creates the registry and the schema.
    let Outcome::Registered(v1) = check_and_register(&reg, subject, MEMBER_SCORE_V1, None, true)?
    else {
        return Err("not registered".into());
    };
    assert_eq!(v1.version, 1);
    assert!(v1.version_id.is_some());
    assert_eq!(
        reg.compatibility(subject)?,
        Some(pitwall_contract::Compatibility::Backward)
    );
    // Idempotent.
    assert_eq!(
        check_and_register(&reg, subject, MEMBER_SCORE_V1, None, true)?,
        Outcome::AlreadyRegistered(v1.clone())
    );

    // A compatible v2 (a new optional field) becomes version 2 with its own id.
    let v2_text = MEMBER_SCORE_V1.replace(
        r#"{"name": "run_id", "type": "string"},"#,
        r#"{"name": "run_id", "type": "string"}, {"name": "region", "type": ["null", "string"], "default": null},"#,
    );
    let Outcome::Registered(v2) = check_and_register(&reg, subject, &v2_text, None, true)? else {
        return Err("v2 not registered".into());
    };
    assert_eq!(v2.version, 2);
    assert_ne!(v2.version_id, v1.version_id);
    assert_eq!(reg.versions(subject)?.len(), 2);

    // An incompatible v3 is refused here, though moto would take it.
    let v3_text = v2_text.replace(
        r#"{"name": "region", "type": ["null", "string"], "default": null}"#,
        r#"{"name": "region", "type": "string"}"#,
    );
    let err = check_and_register(&reg, subject, &v3_text, None, true)
        .err()
        .ok_or("v3 must be refused")?;
    assert!(matches!(err, RegistryError::Incompatible { .. }));
    assert!(err.to_string().contains("'region'"), "{err}");
    assert_eq!(reg.versions(subject)?.len(), 2, "nothing was registered");
    Ok(())
}

#[test]
fn glue_identity_follows_the_whole_schema_and_modes_compare_their_history() -> TestResult {
    let Some(reg) = glue() else { return Ok(()) };
    util::identity::identity_and_history(&reg, "glue")
}

#[test]
fn a_run_published_with_glue_carries_the_glue_version_id() -> TestResult {
    let Some(reg) = glue() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let (run_dir, run) = util::scored_run(dir.path(), 40, 21)?;
    let cluster = rdkafka::mocking::MockCluster::new(1)?;
    cluster.create_topic("scores", 1, 1)?;
    let mut kafka = KafkaSettings::new(&cluster.bootstrap_servers(), "scores");
    kafka.timeout = Duration::from_secs(10);
    let req = PublishRequest {
        run_dir: &run_dir,
        registry: &reg,
        subject: "scores-value",
        kafka,
        force: false,
        zlib: true,
        wire: None,
    };
    let report = publish(&req)?;
    assert_eq!(report.records, run.members.eligible as u64);
    let registered = reg.versions("scores-value")?;
    let id = registered[0].version_id.ok_or("no version id")?;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "glue-check")
        .set("auto.offset.reset", "earliest")
        .create()?;
    c.subscribe(&["scores"])?;
    let m = (0..100)
        .find_map(|_| c.poll(Duration::from_millis(200)))
        .ok_or("no record")??;
    let (schema_ref, _) = wire::unframe(m.payload().unwrap_or_default())?;
    assert_eq!(schema_ref, SchemaRef::Glue(id));
    Ok(())
}

#[test]
fn a_run_published_with_glue_is_decoded_by_aws_glue_schema_registry() -> TestResult {
    let Some(brokers) = util::broker() else {
        return Ok(());
    };
    let name = format!("pitwall-decode-{}", std::process::id());
    let Some(_) = glue() else { return Ok(()) };
    let reg = GlueRegistry::connect(&name)?;
    let dir = tempfile::tempdir()?;
    let (run_dir, _) = util::scored_run(dir.path(), 50, 32)?;
    let topic = format!("glue-{}", std::process::id());
    util::create_topic(&brokers, &topic)?;
    let mut kafka = KafkaSettings::new(&brokers, &topic);
    kafka.timeout = Duration::from_secs(15);
    kafka.transactional = false;
    publish(&PublishRequest {
        run_dir: &run_dir,
        registry: &reg,
        subject: "member-score",
        kafka,
        force: false,
        zlib: true,
        wire: None,
    })?;
    let want = util::expected_scores(&run_dir)?.len();
    let decoded = util::decode_topic(&brokers, &topic, &format!("glue:{name}"), want)?;
    util::assert_decoded_matches_run(&decoded, &run_dir)?;
    util::tail::scenario(&brokers, &topic, &reg, "member-score", &run_dir)
}
