//! The AWS Glue Data Catalog through the official SDK, configured from the
//! standard AWS environment (region, credentials chain, AWS_ENDPOINT_URL).

use std::collections::BTreeMap;

use aws_sdk_glue::Client;
use aws_sdk_glue::error::DisplayErrorContext;
use aws_sdk_glue::types::{
    Column as GlueColumn, DatabaseInput, SerDeInfo, StorageDescriptor, TableInput,
};
use serde::Serialize;

use crate::table::{Break, Column, TableDef, TableError, check_readers};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Table(#[from] TableError),
    #[error(
        "Glue catalog: {what}: {problem}; check AWS_REGION, the credentials chain (glue:GetDatabase, CreateDatabase, GetTable, CreateTable, UpdateTable) and AWS_ENDPOINT_URL"
    )]
    Backend { what: String, problem: String },
    #[error(
        "refusing to change {table}: the new contract breaks its readers:\n  {}\nKeep the column and its type (add new columns instead), or register the new contract as a new dataset.",
        list(.breaks)
    )]
    Breaks { table: String, breaks: Vec<Break> },
}

fn list(b: &[Break]) -> String {
    b.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// What registering one table did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    pub database: String,
    pub table: String,
    /// created, updated or unchanged.
    pub action: &'static str,
    /// Columns the update added.
    pub added: Vec<String>,
    pub columns: usize,
    pub location: String,
}

/// A table's columns and parameters as the catalog holds them.
pub type Held = (Vec<Column>, BTreeMap<String, String>);

pub struct GlueCatalog {
    database: String,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl GlueCatalog {
    pub fn connect(database: &str) -> Result<GlueCatalog, CatalogError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CatalogError::Backend {
                what: "starting the AWS client runtime".into(),
                problem: e.to_string(),
            })?;
        let conf = rt.block_on(aws_config::load_from_env());
        Ok(GlueCatalog {
            database: database.into(),
            client: Client::new(&conf),
            rt,
        })
    }

    fn err(what: &str, e: impl std::error::Error) -> CatalogError {
        CatalogError::Backend {
            what: what.into(),
            problem: DisplayErrorContext(e).to_string(),
        }
    }

    fn ensure_database(&self) -> Result<(), CatalogError> {
        let got = self
            .rt
            .block_on(self.client.get_database().name(&self.database).send());
        match got {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                let input = DatabaseInput::builder()
                    .name(&self.database)
                    .description("the pitwall lake")
                    .build()
                    .map_err(|e| Self::err("describing the database", e))?;
                self.rt
                    .block_on(self.client.create_database().database_input(input).send())
                    .map(|_| ())
                    .map_err(|e| Self::err(&format!("creating database {}", self.database), e))
            }
            Err(e) => Err(Self::err(&format!("reading database {}", self.database), e)),
        }
    }

    /// The table's columns and parameters as the catalog holds them, if it exists.
    pub fn current(&self, table: &str) -> Result<Option<Held>, CatalogError> {
        let got = self.rt.block_on(
            self.client
                .get_table()
                .database_name(&self.database)
                .name(table)
                .send(),
        );
        let t = match got {
            Ok(out) => out.table,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(Self::err(
                    &format!("reading table {}.{table}", self.database),
                    e,
                ));
            }
        };
        let Some(t) = t else { return Ok(None) };
        let columns = t
            .storage_descriptor()
            .map(|sd| sd.columns())
            .unwrap_or_default()
            .iter()
            .map(|c| Column {
                name: c.name().to_string(),
                hive_type: c.r#type().unwrap_or_default().to_string(),
            })
            .collect();
        let params = t
            .parameters()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Some((columns, params)))
    }

    /// Creates the table, or updates it when its definition changed and no
    /// reader breaks; the catalog's column order is kept, new columns last.
    pub fn register(&self, def: &TableDef) -> Result<Registration, CatalogError> {
        self.ensure_database()?;
        let current = self.current(&def.name)?;
        let mut reg = Registration {
            database: self.database.clone(),
            table: def.name.clone(),
            action: "created",
            added: Vec::new(),
            columns: def.columns.len(),
            location: def.location.clone(),
        };
        let Some((old, params)) = current else {
            let input = table_input(def, &def.columns)?;
            self.rt
                .block_on(
                    self.client
                        .create_table()
                        .database_name(&self.database)
                        .table_input(input)
                        .send(),
                )
                .map_err(|e| {
                    Self::err(&format!("creating table {}.{}", self.database, def.name), e)
                })?;
            return Ok(reg);
        };
        let breaks = check_readers(&old, &def.columns);
        if !breaks.is_empty() {
            return Err(CatalogError::Breaks {
                table: format!("{}.{}", self.database, def.name),
                breaks,
            });
        }
        let mut columns: Vec<Column> = old
            .iter()
            .filter_map(|o| def.columns.iter().find(|n| n.name == o.name).cloned())
            .collect();
        for n in &def.columns {
            if !old.iter().any(|o| o.name == n.name) {
                reg.added.push(n.name.clone());
                columns.push(n.clone());
            }
        }
        reg.columns = columns.len();
        if columns == old && params == def.parameters {
            reg.action = "unchanged";
            return Ok(reg);
        }
        let input = table_input(def, &columns)?;
        self.rt
            .block_on(
                self.client
                    .update_table()
                    .database_name(&self.database)
                    .table_input(input)
                    .send(),
            )
            .map_err(|e| Self::err(&format!("updating table {}.{}", self.database, def.name), e))?;
        reg.action = "updated";
        Ok(reg)
    }
}

fn glue_columns(cols: &[Column]) -> Result<Vec<GlueColumn>, CatalogError> {
    cols.iter()
        .map(|c| {
            GlueColumn::builder()
                .name(&c.name)
                .r#type(&c.hive_type)
                .build()
                .map_err(|e| GlueCatalog::err("describing a column", e))
        })
        .collect()
}

fn table_input(def: &TableDef, columns: &[Column]) -> Result<TableInput, CatalogError> {
    let (input, output, serde) = def.format.classes();
    let sd = StorageDescriptor::builder()
        .set_columns(Some(glue_columns(columns)?))
        .location(&def.location)
        .input_format(input)
        .output_format(output)
        .serde_info(SerDeInfo::builder().serialization_library(serde).build())
        .build();
    TableInput::builder()
        .name(&def.name)
        .description(&def.description)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(def.parameters.clone().into_iter().collect()))
        .set_partition_keys(Some(glue_columns(&def.partition_keys)?))
        .storage_descriptor(sd)
        .build()
        .map_err(|e| GlueCatalog::err("describing the table", e))
}
