//! The event contract, read from an ODCS v3 YAML file: fields, their types,
//! the rules each value must meet, and which fields are PII and how they are
//! transformed. The lake's columns follow from it, so adding a field is an
//! edit of the contract, not of the code.

use std::sync::Arc;

use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use crate::pattern::Pattern;

/// The contract that ships with pitwall: `contracts/server_log.api_request.odcs.yaml`.
pub const SERVER_LOG_API_REQUEST: &str =
    include_str!("../../../contracts/server_log.api_request.odcs.yaml");

/// The cars' telemetry contract: `contracts/telemetry.kinematics.odcs.yaml`.
pub const TELEMETRY_KINEMATICS: &str =
    include_str!("../../../contracts/telemetry.kinematics.odcs.yaml");

/// Columns every lake file has after the contract's own.
pub const EXTRA: &str = "_extra";
pub const SHARD_ID: &str = "_shard_id";
pub const SEQUENCE_NUMBER: &str = "_sequence_number";
pub const SUB_SEQUENCE_NUMBER: &str = "_sub_sequence_number";
pub const ARRIVAL_TS: &str = "_arrival_ts";

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("the contract is not valid ODCS YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("the contract has no schema object; it needs one `schema:` entry with `properties`")]
    NoSchema,
    #[error("contract field {field}: {problem}")]
    Field { field: String, problem: String },
}

/// How a field's JSON value is read and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    /// JSON integer, stored as int32 (the contract's ranges bound it).
    Integer,
    /// JSON number, stored as float64.
    Number,
    /// RFC 3339 string with offset, stored as timestamp[ms, UTC].
    Timestamp,
    /// Any JSON object, kept as its JSON text.
    Json,
    Boolean,
}

/// How a PII field is made safe before it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiTransform {
    /// HMAC-SHA256 with the key from `PITWALL_PII_KEY`, lowercase hex.
    HmacSha256,
    /// The address's /24 (IPv4) or /48 (IPv6) network.
    IpNetwork,
    /// A number rounded to this many decimals (half away from zero): for
    /// positions, 3 decimals of a degree is about 100 m.
    Round(u8),
}

impl PiiTransform {
    /// Whether the transform applies to numbers (else to strings).
    pub fn is_numeric(self) -> bool {
        matches!(self, PiiTransform::Round(_))
    }
}

#[derive(Debug, Clone)]
pub struct FieldRule {
    pub name: String,
    pub kind: Kind,
    pub required: bool,
    /// Unique per event (ODCS `unique`).
    pub unique: bool,
    pub valid_values: Option<Vec<String>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub pattern: Option<Pattern>,
    pub pii: Option<PiiTransform>,
}

#[derive(Debug, Clone)]
pub struct Contract {
    /// The dataset name: the lake directory under LAKE/.
    pub dataset: String,
    pub version: String,
    pub fields: Vec<FieldRule>,
    /// The field whose value partitions the lake (the event time).
    pub time_field: usize,
    /// (length, first byte) of each field name: every key of every event
    /// is looked up, and these two reject almost every wrong field before
    /// any string comparison.
    name_keys: Vec<(usize, u8)>,
}

// The subset of ODCS v3 pitwall reads; everything else in the file is
// documentation for people and is ignored here.
#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    version: String,
    #[serde(default)]
    schema: Vec<SchemaObject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaObject {
    name: String,
    physical_name: Option<String>,
    #[serde(default)]
    properties: Vec<Property>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Property {
    name: String,
    logical_type: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    unique: bool,
    classification: Option<String>,
    #[serde(default)]
    logical_type_options: Options,
    #[serde(default)]
    quality: Vec<Quality>,
    #[serde(default)]
    custom_properties: Vec<CustomProperty>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Options {
    format: Option<String>,
    pattern: Option<String>,
    minimum: Option<f64>,
    maximum: Option<f64>,
}

#[derive(Deserialize)]
struct Quality {
    metric: Option<String>,
    arguments: Option<QualityArgs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QualityArgs {
    valid_values: Option<Vec<serde_norway::Value>>,
}

#[derive(Deserialize)]
struct CustomProperty {
    property: String,
    value: serde_norway::Value,
}

impl Contract {
    /// The contract that ships with pitwall.
    pub fn embedded() -> Result<Contract, ContractError> {
        Contract::from_yaml(SERVER_LOG_API_REQUEST)
    }

    pub fn from_yaml(text: &str) -> Result<Contract, ContractError> {
        let doc: Doc = serde_norway::from_str(text)?;
        let object = doc
            .schema
            .into_iter()
            .next()
            .ok_or(ContractError::NoSchema)?;
        let fields = object
            .properties
            .into_iter()
            .map(field_rule)
            .collect::<Result<Vec<_>, _>>()?;
        let time_field = fields
            .iter()
            .position(|f| f.kind == Kind::Timestamp && f.required)
            .ok_or_else(|| ContractError::Field {
                field: "-".into(),
                problem: "no required date-time field to partition the lake by".into(),
            })?;
        let mut names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ContractError::Field {
                field: w[0].to_string(),
                problem: "is defined twice".into(),
            });
        }
        let name_keys = fields
            .iter()
            .map(|f| (f.name.len(), f.name.bytes().next().unwrap_or(0)))
            .collect();
        Ok(Contract {
            dataset: object.physical_name.unwrap_or(object.name),
            version: doc.version,
            fields,
            time_field,
            name_keys,
        })
    }

    /// Whether a field is hashed, so that ingestion needs the HMAC key.
    pub fn needs_key(&self) -> bool {
        self.fields
            .iter()
            .any(|f| f.pii == Some(PiiTransform::HmacSha256))
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        let key = (name.len(), name.bytes().next().unwrap_or(0));
        self.name_keys
            .iter()
            .enumerate()
            .find(|&(i, k)| *k == key && same_text(&self.fields[i].name, name))
            .map(|(i, _)| i)
    }

    /// Columns whose values are (nearly) unique per event: unique fields,
    /// times and numbers, hashed PII, free-form JSON, and the position
    /// columns. Parquet writes them without a dictionary.
    pub fn high_cardinality_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = self
            .fields
            .iter()
            .filter(|f| {
                f.unique
                    || matches!(f.kind, Kind::Timestamp | Kind::Number | Kind::Json)
                    || f.pii == Some(PiiTransform::HmacSha256)
            })
            .map(|f| f.name.clone())
            .collect();
        cols.extend([EXTRA, SEQUENCE_NUMBER, SUB_SEQUENCE_NUMBER, ARRIVAL_TS].map(String::from));
        cols
    }

    /// Columns of random-looking text: unique string fields (random ids)
    /// and hashed PII. zstd finds no repeats in them, only entropy to
    /// code, so a higher level than 1 costs time and saves nothing.
    pub fn random_text_columns(&self) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| {
                (f.unique && f.kind == Kind::String) || f.pii == Some(PiiTransform::HmacSha256)
            })
            .map(|f| f.name.clone())
            .collect()
    }

    /// Times and positions, which rise within a file: delta-encoded.
    pub fn delta_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = self
            .fields
            .iter()
            .filter(|f| f.kind == Kind::Timestamp)
            .map(|f| f.name.clone())
            .collect();
        cols.extend([SUB_SEQUENCE_NUMBER, ARRIVAL_TS].map(String::from));
        cols
    }

    /// Columns no query prunes by min/max: random text and free-form JSON.
    pub fn unprunable_columns(&self) -> Vec<String> {
        let mut cols = self.random_text_columns();
        cols.extend(
            self.fields
                .iter()
                .filter(|f| f.kind == Kind::Json)
                .map(|f| f.name.clone()),
        );
        cols.push(EXTRA.to_string());
        cols
    }

    /// The lake's columns: the contract's fields, then `_extra` and the
    /// stream position columns.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut cols: Vec<ArrowField> = self
            .fields
            .iter()
            .map(|f| ArrowField::new(&f.name, arrow_type(f.kind), !f.required))
            .collect();
        cols.push(ArrowField::new(EXTRA, DataType::Utf8, true));
        cols.push(ArrowField::new(SHARD_ID, DataType::Utf8, false));
        cols.push(ArrowField::new(SEQUENCE_NUMBER, DataType::Utf8, false));
        cols.push(ArrowField::new(SUB_SEQUENCE_NUMBER, DataType::Int64, false));
        cols.push(ArrowField::new(ARRIVAL_TS, utc_millis(), false));
        Arc::new(Schema::new(cols))
    }
}

pub fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn arrow_type(k: Kind) -> DataType {
    match k {
        Kind::String | Kind::Json => DataType::Utf8,
        Kind::Integer => DataType::Int32,
        Kind::Number => DataType::Float64,
        Kind::Timestamp => utc_millis(),
        Kind::Boolean => DataType::Boolean,
    }
}

fn field_rule(p: Property) -> Result<FieldRule, ContractError> {
    let bad = |problem: String| ContractError::Field {
        field: p.name.clone(),
        problem,
    };
    let opts = &p.logical_type_options;
    let kind = match (p.logical_type.as_str(), opts.format.as_deref()) {
        ("string", _) => Kind::String,
        ("integer", _) => Kind::Integer,
        ("number", _) => Kind::Number,
        ("boolean", _) => Kind::Boolean,
        ("date" | "timestamp", Some("date-time") | None) => Kind::Timestamp,
        ("object", _) => Kind::Json,
        (other, _) => return Err(bad(format!("logicalType {other:?} is not supported"))),
    };
    let pattern = opts
        .pattern
        .as_deref()
        .map(Pattern::new)
        .transpose()
        .map_err(|e| bad(format!("pattern does not compile: {e}")))?;
    let mut valid_values = None;
    for q in &p.quality {
        if q.metric.as_deref() == Some("invalidValues")
            && let Some(values) = q.arguments.as_ref().and_then(|a| a.valid_values.as_ref())
        {
            let values = values
                .iter()
                .map(|v| match v {
                    serde_norway::Value::String(s) => Ok(s.clone()),
                    other => Err(bad(format!("validValues holds a non-string {other:?}"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            valid_values = Some(values);
        }
    }
    let pii = pii_transform(&p).map_err(bad)?;
    match pii {
        Some(t) if t.is_numeric() && kind != Kind::Number => {
            return Err(bad(format!(
                "pii_transform {t:?} rounds numbers; this field is not a number"
            )));
        }
        Some(t) if !t.is_numeric() && kind != Kind::String => {
            return Err(bad(format!(
                "pii_transform {t:?} transforms strings; this field is not a string"
            )));
        }
        _ => {}
    }
    Ok(FieldRule {
        kind,
        required: p.required,
        unique: p.unique,
        valid_values,
        minimum: opts.minimum,
        maximum: opts.maximum,
        pattern,
        pii,
        name: p.name,
    })
}

/// A PII field must say how it is transformed: landing it in clear is not
/// an option the contract can leave open.
fn pii_transform(p: &Property) -> Result<Option<PiiTransform>, String> {
    let declared = p
        .custom_properties
        .iter()
        .find(|c| c.property == "pii_transform")
        .map(|c| c.value.as_str().unwrap_or_default());
    let is_pii = p.classification.as_deref() == Some("pii");
    const KNOWN: &str = "hmac_sha256, ip_network or round:N (N decimals, 0 to 9)";
    let round = |s: &str| {
        s.strip_prefix("round:")
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|n| *n <= 9)
    };
    match (is_pii, declared) {
        (false, None) => Ok(None),
        (_, Some("hmac_sha256")) => Ok(Some(PiiTransform::HmacSha256)),
        (_, Some("ip_network")) => Ok(Some(PiiTransform::IpNetwork)),
        (_, Some(other)) => match round(other) {
            Some(n) => Ok(Some(PiiTransform::Round(n))),
            None => Err(format!("pii_transform {other:?} is unknown; use {KNOWN}")),
        },
        (true, None) => Err(format!(
            "classified pii but has no customProperties pii_transform ({KNOWN})"
        )),
    }
}

/// `a == b` for the short texts of field names and enum values, compared
/// as two overlapping 8-byte words where they fit: every key of every event
/// is compared at least once, and a call into `memcmp` costs more than the
/// comparison itself.
#[inline]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_le_bytes)
    };
    match a.len() {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        n @ 8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_is_equality_at_every_length() {
        let long = "abcdefghijklmnopqrstuvwxyz";
        for n in 0..=long.len() {
            let a = &long[..n];
            assert!(same_text(a, a), "{a}");
            let mut b = a.to_string();
            for i in 0..n {
                b.replace_range(i..i + 1, "_");
                assert!(!same_text(a, &b), "{a} vs {b}");
                b.replace_range(i..i + 1, &a[i..i + 1]);
            }
            assert!(!same_text(a, &long[..(n + 1).min(long.len())]) || n == long.len());
        }
    }

    #[test]
    fn random_text_and_unprunable_columns_come_from_the_rules() {
        let c = Contract::embedded().expect("contract");
        assert_eq!(c.random_text_columns(), ["event_id", "phone"]);
        let unprunable = c.unprunable_columns();
        for col in ["event_id", "phone", "attrs", EXTRA] {
            assert!(unprunable.iter().any(|c| c == col), "{col}: {unprunable:?}");
        }
        assert!(!unprunable.iter().any(|c| c == "ts" || c == "service"));
    }

    #[test]
    fn the_telemetry_contract_lands_what_the_score_job_reads_with_positions_coarsened() {
        let c = Contract::from_yaml(TELEMETRY_KINEMATICS).expect("telemetry contract");
        assert_eq!(c.dataset, "telemetry.kinematics");
        assert_eq!(c.fields[c.time_field].name, "ts");
        let f = |n: &str| &c.fields[c.field_index(n).expect(n)];
        let schema = c.arrow_schema();
        // The score job's telemetry columns and types (driving-score.md).
        for (name, ty, nullable) in [
            ("car_id", DataType::Utf8, false),
            ("ts", utc_millis(), false),
            ("speed_kmh", DataType::Float64, false),
            ("speed_limit_kmh", DataType::Float64, true),
        ] {
            let field = schema.field_with_name(name).expect(name);
            assert_eq!(
                (field.data_type(), field.is_nullable()),
                (&ty, nullable),
                "{name}"
            );
        }
        assert_eq!(
            (f("speed_kmh").minimum, f("speed_kmh").maximum),
            (Some(0.0), Some(300.0))
        );
        for pos in ["lat", "lon"] {
            assert_eq!(f(pos).pii, Some(PiiTransform::Round(3)), "{pos}");
        }
        assert_eq!(f("heading").pii, None);
    }

    #[test]
    fn transforms_must_fit_the_field_and_be_known() {
        let on = |ty: &str, transform: &str| {
            let text = format!(
                "schema:\n  - name: x\n    properties:\n      - {{name: ts, logicalType: date, required: true}}\n      \
                 - name: v\n        logicalType: {ty}\n        classification: pii\n        \
                 customProperties: [{{property: pii_transform, value: \"{transform}\"}}]\n"
            );
            Contract::from_yaml(&text)
                .map(|c| c.fields[1].pii)
                .map_err(|e| e.to_string())
        };
        assert_eq!(on("number", "round:3"), Ok(Some(PiiTransform::Round(3))));
        assert_eq!(on("number", "round:0"), Ok(Some(PiiTransform::Round(0))));
        for (ty, t, says) in [
            ("string", "round:3", "not a number"),
            ("number", "hmac_sha256", "not a string"),
            ("number", "round:10", "unknown"),
            ("number", "round:x", "unknown"),
            ("number", "round", "unknown"),
        ] {
            let err = on(ty, t).expect_err(t);
            assert!(err.contains(says), "{ty} {t}: {err}");
        }
    }

    #[test]
    fn the_embedded_contract_reads_as_the_spec_says() {
        let c = Contract::embedded().expect("embedded contract");
        assert_eq!(c.dataset, "server_log.api_request");
        let f = |n: &str| &c.fields[c.field_index(n).expect(n)];
        assert_eq!(c.fields[c.time_field].name, "ts");
        assert_eq!(f("status").kind, Kind::Integer);
        assert_eq!(
            (f("status").minimum, f("status").maximum),
            (Some(100.0), Some(599.0))
        );
        assert_eq!(f("latency_ms").minimum, Some(0.0));
        assert_eq!(
            f("env").valid_values.as_deref(),
            Some(&["prod".to_string(), "stage".into(), "dev".into()][..])
        );
        assert_eq!(f("phone").pii, Some(PiiTransform::HmacSha256));
        assert_eq!(f("client_ip").pii, Some(PiiTransform::IpNetwork));
        assert_eq!(f("attrs").kind, Kind::Json);
        assert!(!f("member_id").required && f("event_id").required);
        assert!(
            f("path")
                .pattern
                .as_ref()
                .is_some_and(|p| p.is_match("/v1"))
        );
        let schema = c.arrow_schema();
        assert_eq!(schema.fields().len(), c.fields.len() + 5);
        assert_eq!(
            schema
                .field_with_name("ts")
                .map(|f| f.data_type().clone())
                .ok(),
            Some(utc_millis())
        );
    }

    #[test]
    fn a_pii_field_without_a_transform_is_refused() {
        let text = SERVER_LOG_API_REQUEST.replace(
            "        customProperties:\n          - property: pii_transform\n            value: hmac_sha256\n",
            "",
        );
        assert_ne!(text, SERVER_LOG_API_REQUEST);
        let err = Contract::from_yaml(&text)
            .expect_err("must refuse")
            .to_string();
        assert!(
            err.contains("phone") && err.contains("pii_transform"),
            "{err}"
        );
    }

    #[test]
    fn a_new_field_is_a_contract_change_only() {
        let text = SERVER_LOG_API_REQUEST.replace(
            "      - name: user_agent\n",
            "      - name: region\n        logicalType: string\n        required: false\n      - name: user_agent\n",
        );
        let c = Contract::from_yaml(&text).expect("valid");
        assert!(c.field_index("region").is_some());
        assert!(c.arrow_schema().field_with_name("region").is_ok());
    }

    #[test]
    fn bad_contracts_say_what_is_wrong() {
        assert!(matches!(
            Contract::from_yaml("kind: DataContract\n"),
            Err(ContractError::NoSchema)
        ));
        let text = SERVER_LOG_API_REQUEST.replace("pattern: \"^/\"", "pattern: \"^(/\"");
        let err = Contract::from_yaml(&text)
            .expect_err("bad regex")
            .to_string();
        assert!(err.contains("path") && err.contains("pattern"), "{err}");
        let twice = SERVER_LOG_API_REQUEST.replace(
            "      - name: user_agent\n",
            "      - name: service\n        logicalType: string\n      - name: user_agent\n",
        );
        let err = Contract::from_yaml(&twice)
            .expect_err("duplicate")
            .to_string();
        assert!(err.contains("service") && err.contains("twice"), "{err}");
    }
}
