//! `pitwall lake register`: the lake's dataset and its DLQ as catalog tables.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use pitwall_catalog::{GlueCatalog, Registration, dlq_table, lake_table};
use pitwall_logs::Contract;

use crate::exit;

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Create or update the catalog tables of a contract's dataset and of its DLQ: columns and
    /// Hive types from the contract, dt/hour partition projection (Athena needs no crawler and
    /// no MSCK REPAIR). A change that removes or retypes a column is refused (exit 1).
    Register(RegisterArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The catalog: glue:DATABASE (created when missing), through the standard AWS environment.
    #[arg(long)]
    pub catalog: String,
    /// The lake the tables point at: s3://bucket/prefix (the --lake of `pitwall ingest`).
    #[arg(long)]
    pub lake: String,
    /// The dataset's data contract (ODCS YAML); default: the embedded server-log contract.
    #[arg(long)]
    pub contract: Option<PathBuf>,
    /// First day of the partition projection (YYYY-MM-DD); it runs to NOW.
    #[arg(long, default_value = "2024-01-01")]
    pub from: String,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(c: LakeCommand) -> anyhow::Result<u8> {
    let LakeCommand::Register(a) = c;
    let Some(database) = a.catalog.strip_prefix("glue:").filter(|d| !d.is_empty()) else {
        anyhow::bail!(
            "--catalog {:?}: name the catalog as glue:DATABASE (the AWS Glue Data Catalog)",
            a.catalog
        );
    };
    let contract = match &a.contract {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the contract {}", p.display()))?;
            Contract::from_yaml(&text).with_context(|| format!("contract {}", p.display()))?
        }
        None => Contract::embedded()?,
    };
    let tables = [
        lake_table(&contract, &a.lake, &a.from)?,
        dlq_table(&contract, &a.lake, &a.from)?,
    ];
    let catalog = GlueCatalog::connect(database)?;
    let mut done: Vec<Registration> = Vec::new();
    for t in &tables {
        done.push(catalog.register(t)?);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        for r in &done {
            let added = match r.added.is_empty() {
                true => String::new(),
                false => format!(", added {}", r.added.join(", ")),
            };
            println!(
                "{} {}.{}: {} columns at {}{added}",
                r.action, r.database, r.table, r.columns, r.location
            );
        }
    }
    Ok(exit::OK)
}
