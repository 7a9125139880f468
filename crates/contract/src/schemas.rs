//! The schemas pitwall publishes, embedded from `contracts/avro/`.

use apache_avro::Schema;

/// The member-score record, version 1: key member_id, topic `driving-score.member.v1`.
pub const MEMBER_SCORE_V1: &str = include_str!("../../../contracts/avro/member_score.v1.avsc");

#[derive(Debug, thiserror::Error)]
#[error("not a valid Avro schema: {0}")]
pub struct SchemaError(#[from] pub apache_avro::Error);

pub fn parse(text: &str) -> Result<Schema, SchemaError> {
    Ok(Schema::parse_str(text)?)
}

/// The Parsing Canonical Form: the schema as data is written with it, with
/// defaults, aliases and docs stripped. Two schemas with the same canonical
/// form write the same bytes, but they are not the same schema version.
pub fn canonical(schema: &Schema) -> String {
    schema.canonical_form()
}

/// A schema's identity as registries judge "already registered": the
/// whole JSON text with whitespace and the order of object keys normalised,
/// everything else kept. Confluent compares such a normalised form, where
/// defaults, aliases, doc and field order all count; Glue compares the
/// definition. A copy differing only in layout is the same version; one
/// that differs only in a default is a new one.
pub fn identity(text: &str) -> Result<String, SchemaError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        SchemaError(apache_avro::Error::new(
            apache_avro::error::Details::ParseSchemaJson(e),
        ))
    })?;
    Ok(sorted(&value).to_string())
}

/// The value with every object's keys in order (whatever serde_json's map
/// keeps), arrays as they are: field order is part of a record.
fn sorted(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

pub fn member_score_v1() -> Result<Schema, SchemaError> {
    parse(MEMBER_SCORE_V1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_member_score_schema_parses() {
        let s = member_score_v1().unwrap();
        let c = canonical(&s);
        assert!(c.contains("\"name\":\"com.pitwall.driving_score.MemberScore\""));
        assert!(c.contains("recent_rentals"));
        // Canonical form drops docs: the same bytes on the wire.
        assert!(!c.contains("doc"));
    }

    const WITH_DEFAULT: &str = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"string"},{"name":"b","type":"string","default":"x"}]}"#;

    #[test]
    fn identity_ignores_layout_and_keeps_defaults_aliases_docs_and_field_order() {
        let spaced = r#"{ "name": "r", "type": "record",
            "fields": [ {"type": "string", "name": "a"}, {"default": "x", "name": "b", "type": "string"} ] }"#;
        let id = identity(WITH_DEFAULT).unwrap();
        assert_eq!(identity(spaced).unwrap(), id);
        let differ = [
            WITH_DEFAULT.replace(r#","default":"x""#, ""),
            WITH_DEFAULT.replace(r#""default":"x""#, r#""default":"y""#),
            WITH_DEFAULT.replace(r#""name":"a","type":"string""#, r#""name":"a","type":"string","aliases":["a0"]"#),
            WITH_DEFAULT.replace(r#""name":"r","#, r#""name":"r","doc":"a record","#),
            r#"{"type":"record","name":"r","fields":[{"name":"b","type":"string","default":"x"},{"name":"a","type":"string"}]}"#.to_string(),
        ];
        for d in &differ {
            assert_ne!(identity(d).unwrap(), id, "{d}");
        }
        // The first three write the same bytes: the canonical form cannot tell.
        let c = |t: &str| canonical(&parse(t).unwrap());
        assert_eq!(c(&differ[0]), c(WITH_DEFAULT));
        assert!(identity("{not json").is_err());
    }
}
