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

/// The Parsing Canonical Form: what registries compare to find an already
/// registered schema, whatever its whitespace or doc strings.
pub fn canonical(schema: &Schema) -> String {
    schema.canonical_form()
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
        // Canonical form drops docs: registries see the same schema.
        assert!(!c.contains("doc"));
    }
}
