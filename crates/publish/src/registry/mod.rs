//! Schema registries behind one interface: an embedded file registry (the
//! default, no server), AWS Glue Schema Registry and Confluent's. The
//! compatibility check runs here, locally, before anything is registered:
//! emulators and some registries accept whatever they are sent.

mod confluent;
mod file;
mod glue;

use std::fmt;

use pitwall_contract::compat::{self, Compatibility, Incompatibility};
use pitwall_contract::schemas;
use pitwall_contract::wire::SchemaRef;
use uuid::Uuid;

pub use confluent::ConfluentRegistry;
pub use file::FileRegistry;
pub use glue::GlueRegistry;

/// The compatibility a new subject gets when none is configured.
pub const DEFAULT_COMPATIBILITY: Compatibility = Compatibility::Backward;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry}: {problem}")]
    Backend { registry: String, problem: String },
    #[error("{0:?} is not a registry: use file:DIR, glue:REGISTRY_NAME or confluent:URL")]
    BadSpec(String),
    #[error("the schema to register is invalid: {0}")]
    BadSchema(#[from] schemas::SchemaError),
    #[error("registered version {version} of {subject} is not a valid schema: {problem}")]
    CorruptVersion {
        subject: String,
        version: u32,
        problem: String,
    },
    #[error("the schema is incompatible with {subject}:\n  {}\nKeep the old fields' types, give new fields defaults, or register under a new subject (a new topic version).", list(.problems))]
    Incompatible {
        subject: String,
        problems: Vec<Incompatibility>,
    },
}

fn list(p: &[Incompatibility]) -> String {
    p.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// One registered schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub subject: String,
    pub version: u32,
    /// The schema's text as registered.
    pub schema: String,
    /// Glue's schema version id (the file registry has one too).
    pub version_id: Option<Uuid>,
    /// Confluent's global schema id (the file registry has one too).
    pub schema_id: Option<u32>,
}

impl Registered {
    /// The reference a framed record carries, in the wire format asked for.
    pub fn wire_ref(&self, format: WireFormat) -> Option<SchemaRef> {
        match format {
            WireFormat::Glue => self.version_id.map(SchemaRef::Glue),
            WireFormat::Confluent => self.schema_id.map(SchemaRef::Confluent),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    Glue,
    Confluent,
}

/// What a registry must offer pitwall.
pub trait Registry {
    /// How the registry is named in messages.
    fn name(&self) -> String;
    /// The subject's configured compatibility, if the subject exists.
    fn compatibility(&self, subject: &str) -> Result<Option<Compatibility>, RegistryError>;
    /// Every registered version of the subject, oldest first.
    fn versions(&self, subject: &str) -> Result<Vec<Registered>, RegistryError>;
    /// Registers a schema the caller has already checked; creates the subject
    /// with `compatibility` when it is new.
    fn create_version(
        &self,
        subject: &str,
        schema: &str,
        compatibility: Compatibility,
    ) -> Result<Registered, RegistryError>;
    /// The wire format its consumers expect.
    fn wire_format(&self) -> WireFormat;
    /// The version a framed record's reference names, in any subject;
    /// None when the registry has no such version.
    fn resolve(&self, reference: SchemaRef) -> Result<Option<Registered>, RegistryError>;
}

/// What `check` or `register` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The same schema ([`schemas::identity`]: layout aside, defaults,
    /// aliases and docs included) is already registered.
    AlreadyRegistered(Registered),
    /// Compatible; nothing written (a check, or registration not allowed).
    Compatible {
        mode: Compatibility,
        checked_versions: usize,
    },
    /// Registered as a new version.
    Registered(Registered),
}

/// Checks `schema` against the subject's versions under its mode (or
/// `mode`, which overrides it), and registers it when `register` is set.
pub fn check_and_register(
    reg: &dyn Registry,
    subject: &str,
    schema: &str,
    mode: Option<Compatibility>,
    register: bool,
) -> Result<Outcome, RegistryError> {
    let new = schemas::parse(schema)?;
    let identity = schemas::identity(schema)?;
    let versions = reg.versions(subject)?;
    let mut parsed = Vec::with_capacity(versions.len());
    for v in &versions {
        let s = schemas::parse(&v.schema).map_err(|e| RegistryError::CorruptVersion {
            subject: subject.into(),
            version: v.version,
            problem: e.to_string(),
        })?;
        if schemas::identity(&v.schema).is_ok_and(|id| id == identity) {
            return Ok(Outcome::AlreadyRegistered(v.clone()));
        }
        parsed.push((v.version, s));
    }
    let mode = match mode {
        Some(m) => m,
        None => reg.compatibility(subject)?.unwrap_or(DEFAULT_COMPATIBILITY),
    };
    compat::check(mode, &new, &parsed).map_err(|problems| RegistryError::Incompatible {
        subject: subject.into(),
        problems,
    })?;
    if !register {
        return Ok(Outcome::Compatible {
            mode,
            checked_versions: parsed.len(),
        });
    }
    Ok(Outcome::Registered(
        reg.create_version(subject, schema, mode)?,
    ))
}

/// Which registry a `--registry` flag names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrySpec {
    File(std::path::PathBuf),
    Glue(String),
    Confluent(String),
}

impl std::str::FromStr for RegistrySpec {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, RegistryError> {
        match s.split_once(':') {
            Some(("file", dir)) if !dir.is_empty() => Ok(RegistrySpec::File(dir.into())),
            Some(("glue", name)) if !name.is_empty() => Ok(RegistrySpec::Glue(name.into())),
            Some(("confluent", url)) if url.starts_with("http") => {
                Ok(RegistrySpec::Confluent(url.into()))
            }
            _ => Err(RegistryError::BadSpec(s.into())),
        }
    }
}

impl RegistrySpec {
    /// Connects to the registry the spec names (no network call yet).
    pub fn open(&self) -> Result<Box<dyn Registry>, RegistryError> {
        Ok(match self {
            RegistrySpec::File(dir) => Box::new(FileRegistry::new(dir)),
            RegistrySpec::Glue(name) => Box::new(GlueRegistry::connect(name)?),
            RegistrySpec::Confluent(url) => Box::new(ConfluentRegistry::connect(url)?),
        })
    }
}

impl fmt::Display for RegistrySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrySpec::File(d) => write!(f, "file:{}", d.display()),
            RegistrySpec::Glue(n) => write!(f, "glue:{n}"),
            RegistrySpec::Confluent(u) => write!(f, "confluent:{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_specs_parse() {
        assert_eq!(
            "file:/tmp/r".parse::<RegistrySpec>().unwrap(),
            RegistrySpec::File("/tmp/r".into())
        );
        assert_eq!(
            "glue:scores".parse::<RegistrySpec>().unwrap(),
            RegistrySpec::Glue("scores".into())
        );
        assert_eq!(
            "confluent:http://localhost:8081"
                .parse::<RegistrySpec>()
                .unwrap(),
            RegistrySpec::Confluent("http://localhost:8081".into())
        );
        for bad in ["file:", "kafka:x", "confluent:localhost", "nothing"] {
            assert!(bad.parse::<RegistrySpec>().is_err(), "{bad}");
        }
    }
}
