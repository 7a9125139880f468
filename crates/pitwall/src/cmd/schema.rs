use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use pitwall_contract::Compatibility;
use pitwall_contract::schemas::MEMBER_SCORE_V1;
use pitwall_publish::registry::{Outcome, Registry, RegistrySpec, check_and_register};

use crate::exit;

/// The subject of the member-score record's value on the default topic.
pub const DEFAULT_SUBJECT: &str = "driving-score.member.v1-value";

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Check a schema against the subject's registered versions under its compatibility mode; writes nothing.
    Check(SchemaArgs),
    /// Check, then register the schema as the subject's next version (idempotent for a registered schema).
    Register(SchemaArgs),
    /// Print the embedded member-score schema (contracts/avro/member_score.v1.avsc).
    Show,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The registry: file:DIR (embedded, no server), glue:REGISTRY_NAME or confluent:URL.
    #[arg(long)]
    pub registry: RegistrySpec,
    /// The subject (Glue: the schema name).
    #[arg(long, default_value = DEFAULT_SUBJECT)]
    pub subject: String,
    /// The schema file (.avsc); default: the embedded member-score schema.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Check under this mode instead of the subject's (NONE, DISABLED, BACKWARD, BACKWARD_ALL,
    /// FORWARD, FORWARD_ALL, FULL, FULL_ALL); a new subject is created with it (default BACKWARD).
    #[arg(long)]
    pub compatibility: Option<Compatibility>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn open_registry(spec: &RegistrySpec) -> anyhow::Result<Box<dyn Registry>> {
    Ok(spec.open()?)
}

pub fn run(c: SchemaCommand) -> anyhow::Result<u8> {
    let (a, register) = match c {
        SchemaCommand::Show => {
            print!("{MEMBER_SCORE_V1}");
            return Ok(exit::OK);
        }
        SchemaCommand::Check(a) => (a, false),
        SchemaCommand::Register(a) => (a, true),
    };
    let text = match &a.schema {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read schema file {}", p.display()))?,
        None => MEMBER_SCORE_V1.to_string(),
    };
    let registry = open_registry(&a.registry)?;
    let outcome = check_and_register(
        registry.as_ref(),
        &a.subject,
        &text,
        a.compatibility,
        register,
    )
    .with_context(|| format!("subject {} in {}", a.subject, registry.name()))?;
    let (status, version, line) = match &outcome {
        Outcome::AlreadyRegistered(r) => (
            "already_registered",
            Some(r.version),
            format!("already registered as version {}", r.version),
        ),
        Outcome::Compatible {
            mode,
            checked_versions,
        } => (
            "compatible",
            None,
            format!("compatible under {mode} with {checked_versions} registered version(s)"),
        ),
        Outcome::Registered(r) => (
            "registered",
            Some(r.version),
            format!("registered as version {}", r.version),
        ),
    };
    if a.json {
        let ids = match &outcome {
            Outcome::AlreadyRegistered(r) | Outcome::Registered(r) => {
                serde_json::json!({"schema_id": r.schema_id, "version_id": r.version_id.map(|u| u.to_string())})
            }
            Outcome::Compatible { .. } => serde_json::Value::Null,
        };
        println!(
            "{}",
            serde_json::json!({"subject": a.subject, "registry": registry.name(), "status": status, "version": version, "ids": ids})
        );
    } else {
        println!("{}: {line}", a.subject);
    }
    Ok(exit::OK)
}
