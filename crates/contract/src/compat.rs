//! Schema evolution under a registry's compatibility mode. Checked locally
//! before registering, because emulators (and some registries) accept
//! anything.

use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility as Resolution, SchemaCompatibility};

/// The modes of AWS Glue Schema Registry (Confluent's are a subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// Any new version is accepted.
    None,
    /// No new version is accepted once one exists.
    Disabled,
    /// The new schema reads data written with the latest version.
    Backward,
    /// … with every version.
    BackwardAll,
    /// The latest version reads data written with the new schema.
    Forward,
    /// … every version does.
    ForwardAll,
    /// Backward and forward with the latest version.
    Full,
    /// Backward and forward with every version.
    FullAll,
}

impl Compatibility {
    pub const ALL: [Compatibility; 8] = [
        Compatibility::None,
        Compatibility::Disabled,
        Compatibility::Backward,
        Compatibility::BackwardAll,
        Compatibility::Forward,
        Compatibility::ForwardAll,
        Compatibility::Full,
        Compatibility::FullAll,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Disabled => "DISABLED",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardAll => "BACKWARD_ALL",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardAll => "FORWARD_ALL",
            Compatibility::Full => "FULL",
            Compatibility::FullAll => "FULL_ALL",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardAll | Compatibility::ForwardAll | Compatibility::FullAll
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardAll
                | Compatibility::Full
                | Compatibility::FullAll
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardAll
                | Compatibility::Full
                | Compatibility::FullAll
        )
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compatibility {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // Confluent spells the transitive modes *_TRANSITIVE.
        let s = s.trim().to_ascii_uppercase().replace("_TRANSITIVE", "_ALL");
        Compatibility::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown compatibility mode {s:?}; use one of NONE, DISABLED, BACKWARD, BACKWARD_ALL, FORWARD, FORWARD_ALL, FULL, FULL_ALL"))
    }
}

/// Why a new schema may not follow one registered version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    pub mode: Compatibility,
    pub version: u32,
    pub rule: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} with version {}: {}",
            self.mode, self.version, self.rule
        )
    }
}

/// Checks `new` against `registered` (version, schema), oldest first, under
/// `mode`. Returns every incompatibility found, each naming the version, the
/// direction and the Avro resolution rule (with the field) that fails.
pub fn check(
    mode: Compatibility,
    new: &Schema,
    registered: &[(u32, Schema)],
) -> Result<(), Vec<Incompatibility>> {
    let Some(latest) = registered.iter().map(|(v, _)| *v).max() else {
        return Ok(());
    };
    if mode == Compatibility::Disabled {
        return Err(vec![Incompatibility {
            mode,
            version: latest,
            rule: "the subject's compatibility is DISABLED: it accepts no new version".into(),
        }]);
    }
    let against = registered
        .iter()
        .filter(|(v, _)| mode.transitive() || *v == latest);
    let mut problems = Vec::new();
    for (version, old) in against {
        if mode.backward()
            && let Err(why) = reads(old, new)
        {
            let rule =
                format!("the new schema cannot read data written with version {version}: {why}");
            problems.push(Incompatibility {
                mode,
                version: *version,
                rule,
            });
        }
        if mode.forward()
            && let Err(why) = reads(new, old)
        {
            let rule =
                format!("version {version} cannot read data written with the new schema: {why}");
            problems.push(Incompatibility {
                mode,
                version: *version,
                rule,
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Whether `reader` reads all data written with `writer`. A partial match
/// (some union branch or enum symbol of the writer unknown to the reader)
/// fails at read time on some records, so registries refuse it; so do we.
fn reads(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Resolution::Full) => Ok(()),
        Ok(Resolution::Partial) => Err(format!(
            "{}some values the writer allows (a union branch or an enum symbol) have no counterpart in the reader",
            partial_field(writer, reader)
                .map(|f| format!("field '{f}': "))
                .unwrap_or_default()
        )),
        Err(e) => Err(chain(&e)),
    }
}

/// The dotted path of the first field whose schemas match only partially.
fn partial_field(writer: &Schema, reader: &Schema) -> Option<String> {
    let (Schema::Record(w), Schema::Record(r)) = (writer, reader) else {
        return None;
    };
    for rf in &r.fields {
        let Some(wf) = w.fields.iter().find(|f| f.name == rf.name) else {
            continue;
        };
        if let Ok(Resolution::Partial) = SchemaCompatibility::can_read(&wf.schema, &rf.schema) {
            return Some(match partial_field(&wf.schema, &rf.schema) {
                Some(inner) => format!("{}.{inner}", rf.name),
                None => rf.name.clone(),
            });
        }
    }
    None
}

/// The error and its causes in one line: "Field 'x' … : Incompatible types …"
/// (an SDK's "service error" on top, why underneath).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    const V1: &str = r#"{"name":"a","type":"string"}"#;

    fn v2_added_with_default() -> Schema {
        rec(&format!(
            r#"{V1},{{"name":"b","type":["null","int"],"default":null}}"#
        ))
    }

    fn v2_added_without_default() -> Schema {
        rec(&format!(r#"{V1},{{"name":"b","type":"int"}}"#))
    }

    fn history() -> Vec<(u32, Schema)> {
        vec![(1, rec(V1))]
    }

    #[test]
    fn modes_parse_in_glue_and_confluent_spelling() {
        assert_eq!(
            "backward_transitive".parse::<Compatibility>(),
            Ok(Compatibility::BackwardAll)
        );
        assert_eq!(
            "FULL_ALL".parse::<Compatibility>(),
            Ok(Compatibility::FullAll)
        );
        assert!("SIDEWAYS".parse::<Compatibility>().is_err());
    }

    #[test]
    fn first_version_is_always_accepted() {
        for mode in Compatibility::ALL {
            assert!(check(mode, &rec(V1), &[]).is_ok(), "{mode}");
        }
    }

    #[test]
    fn adding_a_field_with_a_default_is_fully_compatible() {
        for mode in Compatibility::ALL {
            let r = check(mode, &v2_added_with_default(), &history());
            assert_eq!(r.is_ok(), mode != Compatibility::Disabled, "{mode}: {r:?}");
        }
    }

    #[test]
    fn adding_a_field_without_default_breaks_backward_and_names_it() {
        let errs = check(
            Compatibility::Backward,
            &v2_added_without_default(),
            &history(),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.contains("'b'") && msg.contains("default") && msg.contains("version 1"),
            "{msg}"
        );
        // Old readers ignore the new field: forward compatible.
        assert!(
            check(
                Compatibility::Forward,
                &v2_added_without_default(),
                &history()
            )
            .is_ok()
        );
        assert!(check(Compatibility::Full, &v2_added_without_default(), &history()).is_err());
        assert!(check(Compatibility::None, &v2_added_without_default(), &history()).is_ok());
    }

    #[test]
    fn removing_a_field_without_default_breaks_forward() {
        let v1 = rec(&format!(r#"{V1},{{"name":"b","type":"int"}}"#));
        let v2 = rec(V1);
        let errs = check(Compatibility::Forward, &v2, &[(1, v1.clone())]).unwrap_err();
        assert!(errs[0].to_string().contains("'b'"), "{}", errs[0]);
        assert!(check(Compatibility::Backward, &v2, &[(1, v1)]).is_ok());
    }

    #[test]
    fn changing_a_type_names_the_field() {
        let v2 = rec(r#"{"name":"a","type":"int"}"#);
        let errs = check(Compatibility::Backward, &v2, &history()).unwrap_err();
        assert!(errs[0].rule.contains("'a'"), "{}", errs[0]);
    }

    #[test]
    fn promotion_int_to_long_is_backward_only() {
        let v1 = rec(r#"{"name":"n","type":"int"}"#);
        let v2 = rec(r#"{"name":"n","type":"long"}"#);
        assert!(check(Compatibility::Backward, &v2, &[(1, v1.clone())]).is_ok());
        assert!(check(Compatibility::Forward, &v2, &[(1, v1)]).is_err());
    }

    #[test]
    fn transitive_modes_check_every_version_plain_ones_only_the_latest() {
        // v1 has b:int; v2 dropped it; v3 brings b back as a string with no default.
        let v1 = rec(&format!(r#"{V1},{{"name":"b","type":"int"}}"#));
        let v2 = rec(V1);
        let v3 = rec(&format!(
            r#"{V1},{{"name":"b","type":"string","default":"x"}}"#
        ));
        let hist = vec![(1, v1), (2, v2)];
        assert!(check(Compatibility::Backward, &v3, &hist).is_ok());
        let errs = check(Compatibility::BackwardAll, &v3, &hist).unwrap_err();
        assert_eq!(errs.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn narrowing_a_union_is_refused_and_named() {
        let v1 = rec(r#"{"name":"n","type":["null","int"],"default":null}"#);
        let v2 = rec(r#"{"name":"n","type":"int"}"#);
        let errs = check(Compatibility::Backward, &v2, &[(1, v1.clone())]).unwrap_err();
        assert!(errs[0].rule.contains("field 'n'"), "{}", errs[0]);
        // Widening is fine the other way round.
        assert!(check(Compatibility::Backward, &v1, &[(1, v2)]).is_ok());
    }

    #[test]
    fn removing_an_enum_symbol_is_refused_for_backward() {
        let e = |syms: &str| {
            rec(&format!(
                r#"{{"name":"g","type":{{"type":"enum","name":"G","symbols":[{syms}]}}}}"#
            ))
        };
        let errs = check(
            Compatibility::Backward,
            &e(r#""A""#),
            &[(1, e(r#""A","B""#))],
        )
        .unwrap_err();
        assert!(errs[0].rule.contains("field 'g'"), "{}", errs[0]);
        assert!(
            check(
                Compatibility::Backward,
                &e(r#""A","B","C""#),
                &[(1, e(r#""A","B""#))]
            )
            .is_ok()
        );
    }

    #[test]
    fn disabled_refuses_any_new_version() {
        let errs = check(Compatibility::Disabled, &rec(V1), &history()).unwrap_err();
        assert!(errs[0].rule.contains("DISABLED"));
    }
}
