//! Why an event or a record was refused, and the DLQ line that keeps it:
//! the original bytes (base64), where they were read from, and the reason.

use base64::Engine;
use serde::Serialize;

/// Why something went to the DLQ. `code()` is stable: metrics and
/// dashboards count by it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// A record (or KPL user record) with no event in it.
    Empty,
    NotUtf8,
    InvalidJson(String),
    NotAnObject,
    DuplicateField(String),
    KplMd5Mismatch,
    KplMalformed(&'static str),
    Gzip(String),
    CloudWatch(String),
    MissingField(String),
    WrongType {
        field: String,
        expected: &'static str,
    },
    /// A value that breaks a rule of the contract (enum, range, pattern, format).
    InvalidValue {
        field: String,
        rule: String,
    },
}

impl Reason {
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Empty => "empty",
            Reason::NotUtf8 => "not_utf8",
            Reason::InvalidJson(_) => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::DuplicateField(_) => "duplicate_field",
            Reason::KplMd5Mismatch => "kpl_md5_mismatch",
            Reason::KplMalformed(_) => "kpl_malformed",
            Reason::Gzip(_) => "gzip_invalid",
            Reason::CloudWatch(_) => "cloudwatch_invalid",
            Reason::MissingField(_) => "missing_field",
            Reason::WrongType { .. } => "wrong_type",
            Reason::InvalidValue { .. } => "invalid_value",
        }
    }

    /// The field concerned, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Reason::DuplicateField(f)
            | Reason::MissingField(f)
            | Reason::WrongType { field: f, .. }
            | Reason::InvalidValue { field: f, .. } => Some(f),
            _ => None,
        }
    }

    pub const ALL_CODES: [&'static str; 12] = [
        "empty",
        "not_utf8",
        "invalid_json",
        "not_an_object",
        "duplicate_field",
        "kpl_md5_mismatch",
        "kpl_malformed",
        "gzip_invalid",
        "cloudwatch_invalid",
        "missing_field",
        "wrong_type",
        "invalid_value",
    ];
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Empty => write!(f, "the record holds no event"),
            Reason::NotUtf8 => write!(f, "the payload is not UTF-8"),
            Reason::InvalidJson(e) => write!(f, "not JSON: {e}"),
            Reason::NotAnObject => write!(f, "the event is not a JSON object"),
            Reason::DuplicateField(n) => write!(f, "field {n:?} appears twice"),
            Reason::KplMd5Mismatch => write!(f, "KPL aggregate fails its MD5 check"),
            Reason::KplMalformed(why) => write!(f, "KPL aggregate is malformed: {why}"),
            Reason::Gzip(e) => write!(f, "gzip payload does not decompress: {e}"),
            Reason::CloudWatch(e) => write!(f, "not a CloudWatch Logs payload: {e}"),
            Reason::MissingField(n) => write!(f, "required field {n:?} is missing or null"),
            Reason::WrongType { field, expected } => {
                write!(f, "field {field:?} is not {expected}")
            }
            Reason::InvalidValue { field, rule } => write!(f, "field {field:?} {rule}"),
        }
    }
}

/// Where something was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub sub_sequence: u64,
    pub line: u32,
    /// The record's approximate arrival time, epoch ms.
    pub arrival_ms: i64,
}

/// One DLQ line (JSON).
#[derive(Debug, Serialize)]
pub struct DlqEntry<'a> {
    pub dataset: &'a str,
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub sub_sequence_number: u64,
    pub line: u32,
    pub arrival_ts_ms: i64,
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    pub detail: String,
    pub data_base64: String,
}

impl<'a> DlqEntry<'a> {
    pub fn new(dataset: &'a str, pos: &Position<'a>, reason: &'a Reason, bytes: &[u8]) -> Self {
        DlqEntry {
            dataset,
            shard_id: pos.shard_id,
            sequence_number: pos.sequence_number,
            sub_sequence_number: pos.sub_sequence,
            line: pos.line,
            arrival_ts_ms: pos.arrival_ms,
            reason: reason.code(),
            field: reason.field(),
            detail: reason.to_string(),
            data_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// The entry as one JSON line, newline included.
    pub fn to_line(&self) -> String {
        // Serializing plain strings and numbers cannot fail.
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_the_bytes_and_say_why() {
        let pos = Position {
            shard_id: "shardId-000000000001",
            sequence_number: "4959",
            sub_sequence: 2,
            line: 1,
            arrival_ms: 1_700_000_000_000,
        };
        let reason = Reason::MissingField("status".into());
        let line = DlqEntry::new("ds", &pos, &reason, b"{\"a\":1}").to_line();
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["reason"], "missing_field");
        assert_eq!(v["field"], "status");
        assert_eq!(v["sub_sequence_number"], 2);
        assert_eq!(v["data_base64"], "eyJhIjoxfQ==");
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn every_reason_has_a_listed_code() {
        let all = [
            Reason::Empty,
            Reason::NotUtf8,
            Reason::InvalidJson(String::new()),
            Reason::NotAnObject,
            Reason::DuplicateField(String::new()),
            Reason::KplMd5Mismatch,
            Reason::KplMalformed(""),
            Reason::Gzip(String::new()),
            Reason::CloudWatch(String::new()),
            Reason::MissingField(String::new()),
            Reason::WrongType {
                field: String::new(),
                expected: "",
            },
            Reason::InvalidValue {
                field: String::new(),
                rule: String::new(),
            },
        ];
        let codes: Vec<_> = all.iter().map(Reason::code).collect();
        assert_eq!(codes, Reason::ALL_CODES);
    }
}
