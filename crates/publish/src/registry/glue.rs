//! AWS Glue Schema Registry through the official SDK, configured from the
//! standard AWS environment (region, credentials chain, AWS_ENDPOINT_URL).
//! A pitwall subject is a Glue schema name inside the named registry.

use std::time::Duration;

use aws_sdk_glue::Client;
use aws_sdk_glue::error::DisplayErrorContext;
use aws_sdk_glue::types::{
    Compatibility as GlueCompatibility, DataFormat, RegistryId, SchemaId, SchemaVersionNumber,
    SchemaVersionStatus,
};
use pitwall_contract::compat::Compatibility;
use pitwall_contract::wire::SchemaRef;
use uuid::Uuid;

use super::{Registered, Registry, RegistryError, WireFormat};

pub struct GlueRegistry {
    registry: String,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl GlueRegistry {
    pub fn connect(registry: &str) -> Result<GlueRegistry, RegistryError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Backend {
                registry: format!("glue:{registry}"),
                problem: format!("cannot start the AWS client runtime: {e}"),
            })?;
        let conf = rt.block_on(aws_config::load_from_env());
        Ok(GlueRegistry {
            registry: registry.into(),
            client: Client::new(&conf),
            rt,
        })
    }

    fn err(&self, what: &str, e: impl std::error::Error) -> RegistryError {
        RegistryError::Backend {
            registry: self.name(),
            problem: format!(
                "{what}: {}; check AWS_REGION, the credentials chain and AWS_ENDPOINT_URL, and that the registry exists or may be created",
                DisplayErrorContext(e)
            ),
        }
    }

    fn schema_id(&self, subject: &str) -> SchemaId {
        SchemaId::builder()
            .registry_name(&self.registry)
            .schema_name(subject)
            .build()
    }

    /// The subject's compatibility and latest version, or None if the schema does not exist.
    fn describe(&self, subject: &str) -> Result<Option<(Compatibility, i64)>, RegistryError> {
        let res = self.rt.block_on(
            self.client
                .get_schema()
                .schema_id(self.schema_id(subject))
                .send(),
        );
        match res {
            Ok(s) => {
                let mode = s.compatibility().map_or("NONE", |c| c.as_str());
                let mode = mode.parse().map_err(|e: String| RegistryError::Backend {
                    registry: self.name(),
                    problem: e,
                })?;
                Ok(Some((mode, s.latest_schema_version().unwrap_or(0))))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.err(&format!("reading schema {subject}"), e)),
        }
    }

    fn version(&self, subject: &str, number: i64) -> Result<Registered, RegistryError> {
        let v = self
            .rt
            .block_on(
                self.client
                    .get_schema_version()
                    .schema_id(self.schema_id(subject))
                    .schema_version_number(
                        SchemaVersionNumber::builder()
                            .version_number(number)
                            .build(),
                    )
                    .send(),
            )
            .map_err(|e| self.err(&format!("reading version {number} of {subject}"), e))?;
        Ok(Registered {
            subject: subject.into(),
            version: u32::try_from(number).unwrap_or(0),
            schema: v.schema_definition().unwrap_or_default().to_string(),
            version_id: v
                .schema_version_id()
                .and_then(|id| Uuid::parse_str(id).ok()),
            schema_id: None,
        })
    }

    fn ensure_registry(&self) -> Result<(), RegistryError> {
        let id = RegistryId::builder().registry_name(&self.registry).build();
        match self
            .rt
            .block_on(self.client.get_registry().registry_id(id).send())
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                self.rt
                    .block_on(
                        self.client
                            .create_registry()
                            .registry_name(&self.registry)
                            .send(),
                    )
                    .map(|_| ())
                    .map_err(|e| self.err("creating the registry", e))
            }
            Err(e) => Err(self.err("reading the registry", e)),
        }
    }

    /// Glue checks a new version asynchronously; wait until it is AVAILABLE.
    fn await_available(&self, subject: &str, version_id: &str) -> Result<(), RegistryError> {
        for _ in 0..60 {
            let v = self
                .rt
                .block_on(
                    self.client
                        .get_schema_version()
                        .schema_version_id(version_id)
                        .send(),
                )
                .map_err(|e| self.err("reading the new version's status", e))?;
            match v.status() {
                Some(SchemaVersionStatus::Available) | None => return Ok(()),
                Some(SchemaVersionStatus::Failure) => {
                    return Err(RegistryError::Backend {
                        registry: self.name(),
                        problem: format!(
                            "Glue refused the new version of {subject} (status FAILURE)"
                        ),
                    });
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        Err(RegistryError::Backend {
            registry: self.name(),
            problem: format!("the new version of {subject} stayed PENDING for 30 s"),
        })
    }
}

impl Registry for GlueRegistry {
    fn name(&self) -> String {
        format!("glue:{}", self.registry)
    }

    fn compatibility(&self, subject: &str) -> Result<Option<Compatibility>, RegistryError> {
        Ok(self.describe(subject)?.map(|(mode, _)| mode))
    }

    fn versions(&self, subject: &str) -> Result<Vec<Registered>, RegistryError> {
        let Some((_, latest)) = self.describe(subject)? else {
            return Ok(Vec::new());
        };
        (1..=latest).map(|n| self.version(subject, n)).collect()
    }

    fn create_version(
        &self,
        subject: &str,
        schema: &str,
        compatibility: Compatibility,
    ) -> Result<Registered, RegistryError> {
        let (version_id, number) = match self.describe(subject)? {
            None => {
                self.ensure_registry()?;
                let out = self
                    .rt
                    .block_on(
                        self.client
                            .create_schema()
                            .registry_id(
                                RegistryId::builder().registry_name(&self.registry).build(),
                            )
                            .schema_name(subject)
                            .data_format(DataFormat::Avro)
                            .compatibility(GlueCompatibility::from(compatibility.as_str()))
                            .schema_definition(schema)
                            .send(),
                    )
                    .map_err(|e| self.err(&format!("creating schema {subject}"), e))?;
                (out.schema_version_id().unwrap_or_default().to_string(), 1)
            }
            Some(_) => {
                let out = self
                    .rt
                    .block_on(
                        self.client
                            .register_schema_version()
                            .schema_id(self.schema_id(subject))
                            .schema_definition(schema)
                            .send(),
                    )
                    .map_err(|e| self.err(&format!("registering a version of {subject}"), e))?;
                (
                    out.schema_version_id().unwrap_or_default().to_string(),
                    out.version_number().unwrap_or(0),
                )
            }
        };
        self.await_available(subject, &version_id)?;
        Ok(Registered {
            subject: subject.into(),
            version: u32::try_from(number).unwrap_or(0),
            schema: schema.into(),
            version_id: Uuid::parse_str(&version_id).ok(),
            schema_id: None,
        })
    }

    fn wire_format(&self) -> WireFormat {
        WireFormat::Glue
    }

    fn resolve(&self, reference: SchemaRef) -> Result<Option<Registered>, RegistryError> {
        let SchemaRef::Glue(id) = reference else {
            return Ok(None);
        };
        let res = self.rt.block_on(
            self.client
                .get_schema_version()
                .schema_version_id(id.to_string())
                .send(),
        );
        let v = match res {
            Ok(v) => v,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(self.err(&format!("reading schema version {id}"), e)),
        };
        // arn:aws:glue:REGION:ACCOUNT:schema/REGISTRY/NAME
        let subject = v
            .schema_arn()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("?");
        Ok(Some(Registered {
            subject: subject.into(),
            version: v
                .version_number()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            schema: v.schema_definition().unwrap_or_default().to_string(),
            version_id: Some(id),
            schema_id: None,
        }))
    }
}
