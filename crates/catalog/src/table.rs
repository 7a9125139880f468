//! What the catalog tables of a dataset are, from its contract and the
//! lake's layout (`pitwall_logs::layout`), without I/O.

use std::collections::BTreeMap;
use std::fmt;

use arrow_schema::{DataType, TimeUnit};
use pitwall_logs::Contract;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(
        "{0:?} is not an S3 location: catalog tables point at data in S3 (s3://bucket/prefix, the --lake of `pitwall ingest`)"
    )]
    NotS3(String),
    #[error("column {column}: arrow type {arrow} has no Hive type here")]
    Unsupported { column: String, arrow: String },
    #[error("--from {0:?} is not a date (YYYY-MM-DD)")]
    BadDate(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// Hive's name of the type (`string`, `int`, `timestamp` …), as Glue stores it.
    pub hive_type: String,
}

impl Column {
    fn new(name: &str, hive_type: &str) -> Column {
        Column {
            name: name.into(),
            hive_type: hive_type.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    JsonLines,
}

impl Format {
    /// Input format, output format and SerDe, as Athena expects them.
    pub fn classes(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Format::Parquet => (
                "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
            ),
            Format::JsonLines => (
                "org.apache.hadoop.mapred.TextInputFormat",
                "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                "org.openx.data.jsonserde.JsonSerDe",
            ),
        }
    }

    pub fn classification(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::JsonLines => "json",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub name: String,
    pub description: String,
    /// The dataset's folder, ending in `/`.
    pub location: String,
    pub columns: Vec<Column>,
    pub partition_keys: Vec<Column>,
    pub format: Format,
    /// Table parameters: classification, partition projection, provenance.
    pub parameters: BTreeMap<String, String>,
}

/// A table name Athena and Glue accept: lower case, `_` for anything else.
pub fn table_name(dataset: &str) -> String {
    dataset
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect()
}

fn hive_type(column: &str, t: &DataType) -> Result<&'static str, TableError> {
    Ok(match t {
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Int32 => "int",
        DataType::Int64 => "bigint",
        DataType::Float64 => "double",
        DataType::Boolean => "boolean",
        DataType::Timestamp(TimeUnit::Millisecond, _) => "timestamp",
        other => {
            return Err(TableError::Unsupported {
                column: column.into(),
                arrow: other.to_string(),
            });
        }
    })
}

fn s3_root(lake: &str) -> Result<String, TableError> {
    match lake.strip_prefix("s3://") {
        Some(rest) if !rest.is_empty() => Ok(format!("s3://{}", rest.trim_end_matches('/'))),
        _ => Err(TableError::NotS3(lake.into())),
    }
}

fn check_date(d: &str) -> Result<(), TableError> {
    let b = d.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10);
    if ok {
        Ok(())
    } else {
        Err(TableError::BadDate(d.into()))
    }
}

/// Parameters every table of ours carries: what wrote it and from which contract.
fn provenance(contract: &Contract, format: Format) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("EXTERNAL".into(), "TRUE".into()),
        ("classification".into(), format.classification().into()),
        ("projection.enabled".into(), "true".into()),
        ("projection.dt.type".into(), "date".into()),
        ("projection.dt.format".into(), "yyyy-MM-dd".into()),
        ("projection.dt.interval".into(), "1".into()),
        ("projection.dt.interval.unit".into(), "DAYS".into()),
        ("pitwall.dataset".into(), contract.dataset.clone()),
        ("pitwall.contract_version".into(), contract.version.clone()),
    ])
}

/// The dataset's Parquet table: the contract's columns (and the lake's own:
/// `_extra` and the stream position), partitioned by `dt` and `hour` with
/// projection from `from` (YYYY-MM-DD) to now.
pub fn lake_table(contract: &Contract, lake: &str, from: &str) -> Result<TableDef, TableError> {
    check_date(from)?;
    let location = format!("{}/{}/", s3_root(lake)?, contract.dataset);
    let schema = contract.arrow_schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| hive_type(f.name(), f.data_type()).map(|t| Column::new(f.name(), t)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut parameters = provenance(contract, Format::Parquet);
    parameters.insert("projection.dt.range".into(), format!("{from},NOW"));
    parameters.insert("projection.hour.type".into(), "integer".into());
    parameters.insert("projection.hour.range".into(), "0,23".into());
    parameters.insert("projection.hour.digits".into(), "2".into());
    parameters.insert(
        "storage.location.template".into(),
        format!("{location}dt=${{dt}}/hour=${{hour}}/"),
    );
    Ok(TableDef {
        name: table_name(&contract.dataset),
        description: format!(
            "{} events, contract version {}; written by pitwall ingest",
            contract.dataset, contract.version
        ),
        location,
        columns,
        partition_keys: vec![Column::new("dt", "string"), Column::new("hour", "string")],
        format: Format::Parquet,
        parameters,
    })
}

/// The columns of a DLQ line (`pitwall_logs::DlqEntry`).
pub fn dlq_columns() -> Vec<Column> {
    [
        ("dataset", "string"),
        ("shard_id", "string"),
        ("sequence_number", "string"),
        ("sub_sequence_number", "bigint"),
        ("line", "int"),
        ("arrival_ts_ms", "bigint"),
        ("reason", "string"),
        ("field", "string"),
        ("detail", "string"),
        ("data_base64", "string"),
    ]
    .into_iter()
    .map(|(n, t)| Column::new(n, t))
    .collect()
}

/// The dataset's DLQ: JSON lines under `_dlq/DATASET/dt=…`, by arrival day.
pub fn dlq_table(contract: &Contract, lake: &str, from: &str) -> Result<TableDef, TableError> {
    check_date(from)?;
    let location = format!(
        "{}/{}/",
        s3_root(lake)?,
        pitwall_logs::layout::dlq_root(&contract.dataset)
    );
    let mut parameters = provenance(contract, Format::JsonLines);
    parameters.insert("projection.dt.range".into(), format!("{from},NOW"));
    parameters.insert(
        "storage.location.template".into(),
        format!("{location}dt=${{dt}}/"),
    );
    Ok(TableDef {
        name: format!("{}_dlq", table_name(&contract.dataset)),
        description: format!(
            "events of {} refused by its contract, with the reason and the original bytes (base64)",
            contract.dataset
        ),
        location,
        columns: dlq_columns(),
        partition_keys: vec![Column::new("dt", "string")],
        format: Format::JsonLines,
        parameters,
    })
}

/// A change a reader of the table would trip over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    Removed {
        column: String,
        was: String,
    },
    Retyped {
        column: String,
        was: String,
        now: String,
    },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Break::Removed { column, was } => {
                write!(
                    f,
                    "column '{column}' ({was}) is gone: queries that name it fail"
                )
            }
            Break::Retyped { column, was, now } => write!(
                f,
                "column '{column}' changes from {was} to {now}: files already written hold {was}"
            ),
        }
    }
}

/// Types a Parquet reader widens by itself.
fn widens(was: &str, now: &str) -> bool {
    matches!((was, now), ("int", "bigint") | ("float", "double"))
}

/// What replacing `old` columns by `new` breaks for the table's readers:
/// a removed or retyped column (added columns are fine: old files read them
/// as null).
pub fn check_readers(old: &[Column], new: &[Column]) -> Vec<Break> {
    let mut breaks = Vec::new();
    for o in old {
        match new.iter().find(|n| n.name == o.name) {
            None => breaks.push(Break::Removed {
                column: o.name.clone(),
                was: o.hive_type.clone(),
            }),
            Some(n) if n.hive_type != o.hive_type && !widens(&o.hive_type, &n.hive_type) => breaks
                .push(Break::Retyped {
                    column: o.name.clone(),
                    was: o.hive_type.clone(),
                    now: n.hive_type.clone(),
                }),
            Some(_) => {}
        }
    }
    breaks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> Contract {
        Contract::embedded().expect("embedded contract")
    }

    #[test]
    fn the_lake_table_has_the_contract_columns_hive_types_and_projection() {
        let t = lake_table(&contract(), "s3://lake/prod/", "2026-01-01").expect("table");
        assert_eq!(t.name, "server_log_api_request");
        assert_eq!(t.location, "s3://lake/prod/server_log.api_request/");
        let ty = |n: &str| {
            t.columns
                .iter()
                .find(|c| c.name == n)
                .map(|c| c.hive_type.as_str())
        };
        assert_eq!(ty("event_id"), Some("string"));
        assert_eq!(ty("ts"), Some("timestamp"));
        assert_eq!(ty("status"), Some("int"));
        assert_eq!(ty("_sub_sequence_number"), Some("bigint"));
        assert_eq!(ty("_arrival_ts"), Some("timestamp"));
        let names: Vec<_> = t.partition_keys.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["dt", "hour"]);
        let p = |k: &str| t.parameters.get(k).map(String::as_str);
        assert_eq!(p("projection.enabled"), Some("true"));
        assert_eq!(p("projection.dt.range"), Some("2026-01-01,NOW"));
        assert_eq!(p("projection.hour.digits"), Some("2"));
        assert_eq!(
            p("storage.location.template"),
            Some("s3://lake/prod/server_log.api_request/dt=${dt}/hour=${hour}/")
        );
        assert_eq!(
            t.format.classes().2,
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
        );
    }

    #[test]
    fn the_dlq_table_reads_the_dlq_lines_by_arrival_day() {
        let t = dlq_table(&contract(), "s3://lake", "2026-01-01").expect("table");
        assert_eq!(t.name, "server_log_api_request_dlq");
        assert_eq!(t.location, "s3://lake/_dlq/server_log.api_request/");
        assert_eq!(t.format, Format::JsonLines);
        // The columns are exactly the keys of a DLQ line.
        let pos = pitwall_logs::Position {
            shard_id: "s",
            sequence_number: "1",
            sub_sequence: 0,
            line: 1,
            arrival_ms: 0,
        };
        let reason = pitwall_logs::Reason::MissingField("status".into());
        let line = pitwall_logs::DlqEntry::new("ds", &pos, &reason, b"{}").to_line();
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        let mut keys: Vec<_> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mut cols: Vec<_> = t.columns.iter().map(|c| c.name.clone()).collect();
        keys.sort();
        cols.sort();
        assert_eq!(keys, cols);
    }

    #[test]
    fn only_s3_locations_and_real_dates_are_accepted() {
        assert!(matches!(
            lake_table(&contract(), "/tmp/lake", "2026-01-01"),
            Err(TableError::NotS3(_))
        ));
        assert!(matches!(
            lake_table(&contract(), "s3://", "2026-01-01"),
            Err(TableError::NotS3(_))
        ));
        assert!(matches!(
            lake_table(&contract(), "s3://b", "26-01-01"),
            Err(TableError::BadDate(_))
        ));
    }

    #[test]
    fn removed_and_retyped_columns_break_readers_added_and_widened_do_not() {
        let c = |n: &str, t: &str| Column::new(n, t);
        let old = [c("a", "string"), c("b", "int"), c("x", "float")];
        let fine = [
            c("a", "string"),
            c("b", "bigint"),
            c("x", "double"),
            c("new", "string"),
        ];
        assert!(check_readers(&old, &fine).is_empty());
        let broken = [c("a", "int"), c("x", "double")];
        let b = check_readers(&old, &broken);
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(b[0].to_string().contains("'a'") && b[0].to_string().contains("string to int"));
        assert!(b[1].to_string().contains("'b'") && b[1].to_string().contains("is gone"));
    }

    #[test]
    fn table_names_are_what_athena_accepts() {
        assert_eq!(table_name("telemetry.kinematics"), "telemetry_kinematics");
        assert_eq!(table_name("Server-Log.v2"), "server_log_v2");
    }
}
