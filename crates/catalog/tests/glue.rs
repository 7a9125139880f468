//! The Glue Data Catalog tables against moto (started by scripts/services.sh),
//! read back through the official SDK: types, partition keys, projection,
//! formats; a compatible contract change updates, a breaking one is refused.

use pitwall_catalog::glue::CatalogError;
use pitwall_catalog::table::{Format, TableDef};
use pitwall_catalog::{GlueCatalog, dlq_table, lake_table};
use pitwall_logs::Contract;
use pitwall_logs::contract::SERVER_LOG_API_REQUEST;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const LAKE: &str = "s3://pitwall-test/lake";

fn moto() -> bool {
    let up = std::env::var_os("AWS_ENDPOINT_URL").is_some();
    if !up && std::env::var_os("PITWALL_REQUIRE_SERVICES").is_some() {
        panic!("AWS_ENDPOINT_URL is not set: start the services with scripts/services.sh");
    }
    if !up {
        eprintln!("skipped: no moto server (run scripts/test.sh)");
    }
    up
}

fn contract(edit: impl Fn(String) -> String) -> Result<Contract, Box<dyn std::error::Error>> {
    Ok(Contract::from_yaml(&edit(
        SERVER_LOG_API_REQUEST.to_string(),
    ))?)
}

fn lake(c: &Contract) -> Result<TableDef, Box<dyn std::error::Error>> {
    Ok(lake_table(c, LAKE, "2026-01-01")?)
}

/// The table as the SDK reads it back: serde library and partition key names.
fn formats(db: &str, table: &str) -> Result<(String, Vec<String>), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = aws_sdk_glue::Client::new(&rt.block_on(aws_config::load_from_env()));
    let t = rt
        .block_on(client.get_table().database_name(db).name(table).send())?
        .table
        .ok_or("no table")?;
    let serde = t
        .storage_descriptor()
        .and_then(|sd| sd.serde_info())
        .and_then(|s| s.serialization_library())
        .unwrap_or_default()
        .to_string();
    let keys = t
        .partition_keys()
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    Ok((serde, keys))
}

#[test]
fn tables_are_created_read_back_and_updated_only_when_readers_survive() -> TestResult {
    if !moto() {
        return Ok(());
    }
    let db = format!("pitwall_catalog_{}", std::process::id());
    let cat = GlueCatalog::connect(&db)?;
    let base = contract(|s| s)?;
    let def = lake(&base)?;
    assert_eq!(cat.register(&def)?.action, "created");
    let (cols, params) = cat.current(&def.name)?.ok_or("table missing")?;
    assert_eq!(cols, def.columns, "columns and Hive types as declared");
    assert_eq!(
        params, def.parameters,
        "projection and provenance as declared"
    );
    let (serde, keys) = formats(&db, &def.name)?;
    assert_eq!(serde, Format::Parquet.classes().2);
    assert_eq!(keys, ["dt", "hour"]);
    assert_eq!(cat.register(&def)?.action, "unchanged");

    // A new optional field: old files read it as null.
    let added = contract(|s| {
        s.replace(
            "      - name: member_id\n",
            "      - name: region\n        logicalType: string\n        physicalType: string\n        required: false\n      - name: member_id\n",
        )
    })?;
    let r = cat.register(&lake(&added)?)?;
    assert_eq!(
        (r.action, r.added.clone()),
        ("updated", vec!["region".to_string()])
    );
    let (cols, _) = cat.current(&def.name)?.ok_or("table missing")?;
    assert_eq!(
        cols.last().map(|c| c.name.as_str()),
        Some("region"),
        "new columns go last"
    );

    // Removing or retyping a column is refused, and the table stays as it was.
    let removed = contract(|s| {
        s.replace("      - name: member_id\n        logicalType: string\n        physicalType: string\n        required: false\n", "")
    })?;
    let retyped = contract(|s| {
        s.replace(
            "      - name: status\n        logicalType: integer\n        physicalType: int32",
            "      - name: status\n        logicalType: string\n        physicalType: string",
        )
    })?;
    for (c, needle) in [
        (&removed, "'member_id'"),
        (&retyped, "'status' changes from int to string"),
    ] {
        match cat.register(&lake(c)?) {
            Err(e @ CatalogError::Breaks { .. }) => {
                let text = e.to_string();
                assert!(text.contains(needle) && text.contains(&def.name), "{text}");
            }
            other => return Err(format!("not refused: {other:?}").into()),
        }
    }
    let (after, _) = cat.current(&def.name)?.ok_or("table missing")?;
    assert_eq!(after, cols);

    let dlq = dlq_table(&base, LAKE, "2026-01-01")?;
    assert_eq!(cat.register(&dlq)?.action, "created");
    let (serde, keys) = formats(&db, &dlq.name)?;
    assert_eq!(serde, "org.openx.data.jsonserde.JsonSerDe");
    assert_eq!(keys, ["dt"]);
    Ok(())
}
