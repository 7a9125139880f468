//! The embedded registry: a directory of versioned schemas, for laptops and
//! for teams without a registry server.
//!
//! ```text
//! DIR/<subject>/compatibility        the mode, e.g. BACKWARD
//! DIR/<subject>/v0001.avsc           the schema as registered
//! DIR/<subject>/v0001.json           {"version":1,"schema_id":1,"version_id":"<uuid>"}
//! ```
//! Schema ids are global across subjects (as Confluent's are); version ids
//! are UUIDs derived from subject, version and schema, so the same history
//! always yields the same ids.

use std::path::{Path, PathBuf};

use pitwall_contract::compat::Compatibility;
use pitwall_contract::wire::SchemaRef;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Registered, Registry, RegistryError, WireFormat};

pub struct FileRegistry {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    version: u32,
    schema_id: u32,
    version_id: Uuid,
}

impl FileRegistry {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileRegistry { dir: dir.into() }
    }

    fn err(&self, problem: impl std::fmt::Display) -> RegistryError {
        RegistryError::Backend {
            registry: self.name(),
            problem: problem.to_string(),
        }
    }

    fn subject_dir(&self, subject: &str) -> Result<PathBuf, RegistryError> {
        let ok = !subject.is_empty()
            && subject
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok || subject.starts_with('.') {
            return Err(self.err(format!(
                "subject {subject:?} may hold only letters, digits, '.', '_' and '-'"
            )));
        }
        Ok(self.dir.join(subject))
    }

    fn read(&self, path: &Path) -> Result<String, RegistryError> {
        std::fs::read_to_string(path)
            .map_err(|e| self.err(format!("cannot read {}: {e}", path.display())))
    }

    fn write(&self, path: &Path, text: &str) -> Result<(), RegistryError> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| self.err(format!("cannot write {}: {e}", path.display())))
    }

    /// The next global schema id: one past the highest of any subject.
    fn next_schema_id(&self) -> Result<u32, RegistryError> {
        let mut max = 0;
        let Ok(subjects) = std::fs::read_dir(&self.dir) else {
            return Ok(1);
        };
        for s in subjects.flatten() {
            let Ok(files) = std::fs::read_dir(s.path()) else {
                continue;
            };
            for f in files.flatten() {
                if f.path().extension().is_some_and(|e| e == "json") {
                    let meta: Meta = serde_json::from_str(&self.read(&f.path())?)
                        .map_err(|e| self.err(format!("{}: {e}", f.path().display())))?;
                    max = max.max(meta.schema_id);
                }
            }
        }
        Ok(max + 1)
    }
}

impl Registry for FileRegistry {
    fn name(&self) -> String {
        format!("file:{}", self.dir.display())
    }

    fn compatibility(&self, subject: &str) -> Result<Option<Compatibility>, RegistryError> {
        let path = self.subject_dir(subject)?.join("compatibility");
        if !path.exists() {
            return Ok(None);
        }
        self.read(&path)?
            .parse()
            .map(Some)
            .map_err(|e: String| self.err(format!("{}: {e}", path.display())))
    }

    fn versions(&self, subject: &str) -> Result<Vec<Registered>, RegistryError> {
        let dir = self.subject_dir(subject)?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let meta: Meta = serde_json::from_str(&self.read(&path)?)
                .map_err(|e| self.err(format!("{}: {e}", path.display())))?;
            out.push(Registered {
                subject: subject.into(),
                version: meta.version,
                schema: self.read(&path.with_extension("avsc"))?,
                version_id: Some(meta.version_id),
                schema_id: Some(meta.schema_id),
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
        let dir = self.subject_dir(subject)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| self.err(format!("cannot create {}: {e}", dir.display())))?;
        if !dir.join("compatibility").exists() {
            self.write(&dir.join("compatibility"), compatibility.as_str())?;
        }
        let version = self.versions(subject)?.last().map_or(1, |r| r.version + 1);
        let schema_id = self.next_schema_id()?;
        let version_id = Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{subject}\n{version}\n{schema}").as_bytes(),
        );
        let stem = dir.join(format!("v{version:04}"));
        // The schema first, the metadata last: a version exists once its .json does.
        self.write(&stem.with_extension("avsc"), schema)?;
        let meta = serde_json::to_string_pretty(&Meta {
            version,
            schema_id,
            version_id,
        })
        .map_err(|e| self.err(e))?;
        self.write(&stem.with_extension("json"), &meta)?;
        Ok(Registered {
            subject: subject.into(),
            version,
            schema: schema.into(),
            version_id: Some(version_id),
            schema_id: Some(schema_id),
        })
    }

    fn wire_format(&self) -> WireFormat {
        WireFormat::Glue
    }

    fn resolve(&self, reference: SchemaRef) -> Result<Option<Registered>, RegistryError> {
        let Ok(subjects) = std::fs::read_dir(&self.dir) else {
            return Ok(None);
        };
        for s in subjects.flatten() {
            let Some(subject) = s.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !s.path().is_dir() || subject.starts_with('.') {
                continue;
            }
            let found = self
                .versions(&subject)?
                .into_iter()
                .find(|v| match reference {
                    SchemaRef::Glue(id) => v.version_id == Some(id),
                    SchemaRef::Confluent(id) => v.schema_id == Some(id),
                });
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Outcome, RegistryError, check_and_register};
    use super::*;

    const V1: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":["null","int"],"default":null}]}"#;
    const BAD: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;

    #[test]
    fn registers_checks_and_refuses_incompatible_versions() {
        let dir = tempfile::tempdir().unwrap();
        let reg = FileRegistry::new(dir.path());
        let Outcome::Registered(v1) = check_and_register(&reg, "s", V1, None, true).unwrap() else {
            panic!()
        };
        assert_eq!((v1.version, v1.schema_id), (1, Some(1)));
        // The same schema again, even reformatted, is the same version.
        let again = check_and_register(&reg, "s", &V1.replace(':', ": "), None, true).unwrap();
        assert_eq!(again, Outcome::AlreadyRegistered(v1.clone()));
        // A check writes nothing.
        assert!(matches!(
            check_and_register(&reg, "s", V2, None, false).unwrap(),
            Outcome::Compatible { .. }
        ));
        assert_eq!(reg.versions("s").unwrap().len(), 1);
        let Outcome::Registered(v2) = check_and_register(&reg, "s", V2, None, true).unwrap() else {
            panic!()
        };
        assert_eq!((v2.version, v2.schema_id), (2, Some(2)));
        assert_ne!(v1.version_id, v2.version_id);
        // BACKWARD is the default: a new field without default is refused, naming it.
        let err = check_and_register(&reg, "s", BAD, None, true).unwrap_err();
        assert!(matches!(err, RegistryError::Incompatible { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("'b'") && msg.contains("BACKWARD with version 2"),
            "{msg}"
        );
        // Global ids continue across subjects.
        let Outcome::Registered(o) = check_and_register(&reg, "other", V1, None, true).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.schema_id, Some(3));
        assert_eq!(
            reg.compatibility("s").unwrap(),
            Some(Compatibility::Backward)
        );
    }

    #[test]
    fn the_subject_mode_is_kept_and_can_be_overridden_for_a_check() {
        let dir = tempfile::tempdir().unwrap();
        let reg = FileRegistry::new(dir.path());
        check_and_register(&reg, "s", BAD, Some(Compatibility::None), true).unwrap();
        assert_eq!(reg.compatibility("s").unwrap(), Some(Compatibility::None));
        // Under NONE anything goes; under FORWARD dropping b (no default) breaks old readers.
        assert!(check_and_register(&reg, "s", V1, None, false).is_ok());
        assert!(check_and_register(&reg, "s", V1, Some(Compatibility::Forward), false).is_err());
    }

    #[test]
    fn subjects_cannot_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let reg = FileRegistry::new(dir.path());
        for bad in ["../x", "", ".hidden", "a/b"] {
            assert!(reg.versions(bad).is_err(), "{bad}");
        }
    }
}
