//! One event's JSON → the lake row the contract describes, or the reason it
//! breaks the contract. Values are borrowed from the record's bytes where
//! JSON allows (no escapes); what must be made (PII transforms, `_extra`)
//! goes into the row's reused scratch text, so a valid event usually costs
//! no allocation at all.

use std::borrow::Cow;
use std::fmt;

use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use smallvec::SmallVec;

use crate::contract::{Contract, FieldRule, Kind, same_text};
use crate::dlq::Reason;
use crate::pii::Pii;

/// One column's value in a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Str(Cow<'a, str>),
    /// Text made by the validator, at this range of [`Row::scratch`].
    Made(Range<u32>),
    Int(i32),
    Float(f64),
    /// Epoch milliseconds, UTC.
    Ts(i64),
    Bool(bool),
}

/// A valid event: one cell per contract field, then the unknown fields.
#[derive(Debug, Default)]
pub struct Row<'a> {
    pub cells: Vec<Cell<'a>>,
    /// Unknown fields as one JSON object (a range of `scratch`), or None
    /// when there were none.
    pub extra: Option<Range<u32>>,
    /// The event time (the contract's time field), epoch ms.
    pub event_ms: i64,
    /// Text the validator made for this row; kept between rows so that its
    /// capacity is reused.
    pub scratch: String,
}

impl Row<'_> {
    /// A cell's text, wherever it lives; None for non-text cells.
    pub fn text<'s>(&'s self, cell: &'s Cell<'_>) -> Option<&'s str> {
        match cell {
            Cell::Str(s) => Some(s),
            Cell::Made(r) => self.scratch.get(r.start as usize..r.end as usize),
            _ => None,
        }
    }

    pub fn extra(&self) -> Option<&str> {
        let r = self.extra.as_ref()?;
        self.scratch.get(r.start as usize..r.end as usize)
    }

    /// Appends to `scratch` and returns where the appended text lies.
    fn make(&mut self, write: impl FnOnce(&mut String)) -> Range<u32> {
        let start = self.scratch.len() as u32;
        write(&mut self.scratch);
        start..self.scratch.len() as u32
    }
}

/// Unknown fields an event may carry before their list needs the heap.
type Extras<'a> = SmallVec<[(Cow<'a, str>, &'a str); 8]>;

/// Contracts with up to this many fields need no allocation to sort an
/// event's keys.
const STACK_FIELDS: usize = 64;

pub struct Validator<'c> {
    contract: &'c Contract,
    pii: Pii,
}

impl<'c> Validator<'c> {
    pub fn new(contract: &'c Contract, pii: Pii) -> Self {
        Validator { contract, pii }
    }

    pub fn contract(&self) -> &'c Contract {
        self.contract
    }

    /// Checks one event and fills `row`; on error `row` holds garbage.
    pub fn validate<'a>(&self, json: &'a [u8], row: &mut Row<'a>) -> Result<(), Reason> {
        // simdutf8: every byte of every event is checked here.
        let text = simdutf8::basic::from_utf8(json).map_err(|_| Reason::NotUtf8)?;
        if !text.starts_with('{') {
            return Err(match serde_json::from_str::<de::IgnoredAny>(text) {
                Ok(_) => Reason::NotAnObject,
                Err(e) => Reason::InvalidJson(e.to_string()),
            });
        }
        let fields = &self.contract.fields;
        row.cells.clear();
        row.cells.resize(fields.len(), Cell::Null);
        row.extra = None;
        row.scratch.clear();
        // One slot per field, on the stack for any contract of a sane size:
        // this runs once per event.
        let mut on_stack = [None; STACK_FIELDS];
        let mut on_heap = Vec::new();
        let found: &mut [Option<&'a str>] = if fields.len() <= STACK_FIELDS {
            &mut on_stack[..fields.len()]
        } else {
            on_heap.resize(fields.len(), None);
            &mut on_heap
        };
        let mut extra = Extras::new();
        let mut duplicate = None;
        let mut pairs = Pairs {
            contract: self.contract,
            found,
            extra: &mut extra,
            duplicate: &mut duplicate,
            next: 0,
        };
        if crate::scan::object(text, |key, value| pairs.sort(Cow::Borrowed(key), value)).is_none() {
            // The scanner gave up: serde_json reads it again and names any error.
            pairs.reset();
            let mut de = serde_json::Deserializer::from_str(text);
            de.deserialize_map(pairs)
                .and_then(|()| de.end())
                .map_err(|e| json_error(&e))?;
        }
        if let Some(key) = duplicate {
            return Err(Reason::DuplicateField(key.into_owned()));
        }

        for (i, (rule, raw)) in fields.iter().zip(found.iter()).enumerate() {
            let cell = match raw {
                Some(raw) if *raw != "null" => self.cell(rule, raw, row)?,
                _ if rule.required => return Err(Reason::MissingField(rule.name.clone())),
                _ => Cell::Null,
            };
            row.cells[i] = cell;
        }
        row.event_ms = match row.cells[self.contract.time_field] {
            Cell::Ts(ms) => ms,
            _ => {
                return Err(Reason::MissingField(
                    fields[self.contract.time_field].name.clone(),
                ));
            }
        };
        if !extra.is_empty() {
            row.extra = Some(row.make(|s| extra_json(&extra, s)));
        }
        Ok(())
    }

    fn cell<'a>(
        &self,
        rule: &FieldRule,
        text: &'a str,
        row: &mut Row<'a>,
    ) -> Result<Cell<'a>, Reason> {
        let wrong = |expected| Reason::WrongType {
            field: rule.name.clone(),
            expected,
        };
        let invalid = |rule_text: String| Reason::InvalidValue {
            field: rule.name.clone(),
            rule: rule_text,
        };
        let cell = match rule.kind {
            Kind::String => {
                let s = json_str(text).ok_or_else(|| wrong("a string"))?;
                check_string(rule, &s).map_err(invalid)?;
                match rule.pii {
                    Some(t) => {
                        let mut why = None;
                        let made = row.make(|out| why = self.pii.apply_into(t, &s, out).err());
                        match why {
                            Some(why) => return Err(invalid(why.into())),
                            None => Cell::Made(made),
                        }
                    }
                    None => Cell::Str(s),
                }
            }
            Kind::Integer => {
                let v: i64 = text.parse().map_err(|_| wrong("an integer"))?;
                check_range(rule, v as f64).map_err(invalid)?;
                Cell::Int(i32::try_from(v).map_err(|_| invalid("does not fit in 32 bits".into()))?)
            }
            Kind::Number => {
                if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                    return Err(wrong("a number"));
                }
                let v: f64 = text.parse().map_err(|_| wrong("a number"))?;
                check_range(rule, v).map_err(invalid)?;
                Cell::Float(rule.pii.map_or(v, |t| Pii::apply_number(t, v)))
            }
            Kind::Timestamp => {
                let s = json_str(text).ok_or_else(|| wrong("an RFC 3339 string"))?;
                let ms = match crate::rfc3339::fast_millis(&s) {
                    Some(ms) => ms,
                    None => chrono::DateTime::parse_from_rfc3339(&s)
                        .map_err(|e| invalid(format!("is not RFC 3339 with an offset ({e})")))?
                        .timestamp_millis(),
                };
                Cell::Ts(ms)
            }
            Kind::Json => {
                if !text.starts_with('{') {
                    return Err(wrong("an object"));
                }
                Cell::Str(Cow::Borrowed(text))
            }
            Kind::Boolean => match text {
                "true" => Cell::Bool(true),
                "false" => Cell::Bool(false),
                _ => return Err(wrong("a boolean")),
            },
        };
        Ok(cell)
    }
}

/// A JSON string's value, borrowed when it has no escapes.
fn json_str(text: &str) -> Option<Cow<'_, str>> {
    if !text.starts_with('"') {
        return None;
    }
    // A raw JSON string holds no control characters, so the first special
    // byte is the closing quote exactly when there is no escape.
    if crate::scan::special(text.as_bytes(), 1) == Some(text.len() - 1) {
        return Some(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

fn check_string(rule: &FieldRule, s: &str) -> Result<(), String> {
    if let Some(values) = &rule.valid_values
        && !values.iter().any(|v| same_text(v, s))
    {
        return Err(format!("is {s:?}, not one of {}", values.join(", ")));
    }
    if let Some(p) = &rule.pattern
        && !p.is_match(s)
    {
        return Err(format!("does not match {}", p.as_str()));
    }
    Ok(())
}

fn check_range(rule: &FieldRule, v: f64) -> Result<(), String> {
    if let Some(min) = rule.minimum
        && v < min
    {
        return Err(format!("is {v}, below the minimum {min}"));
    }
    if let Some(max) = rule.maximum
        && v > max
    {
        return Err(format!("is {v}, above the maximum {max}"));
    }
    if v.is_nan() {
        return Err("is not a number".into());
    }
    Ok(())
}

fn extra_json(extra: &[(Cow<'_, str>, &str)], s: &mut String) {
    s.push('{');
    for (i, (k, v)) in extra.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if k.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            s.push('"');
            s.push_str(k);
            s.push('"');
        } else {
            // A str always serializes.
            s.push_str(&serde_json::to_string(k).unwrap_or_default());
        }
        s.push(':');
        s.push_str(v);
    }
    s.push('}');
}

fn json_error(e: &serde_json::Error) -> Reason {
    if e.classify() == serde_json::error::Category::Data {
        Reason::NotAnObject
    } else {
        Reason::InvalidJson(e.to_string())
    }
}

/// Sorts each member of the top-level object into a known field's slot or
/// the unknown list; values stay raw until their rule reads them. The first
/// repeated key is kept, and the whole object is still read, so that the
/// reason given is the duplicate and not the unread rest.
struct Pairs<'v, 'a> {
    contract: &'v Contract,
    found: &'v mut [Option<&'a str>],
    extra: &'v mut Extras<'a>,
    duplicate: &'v mut Option<Cow<'a, str>>,
    /// The field after the last one found: producers mostly write fields
    /// in the contract's order, so this is usually the next key.
    next: usize,
}

impl<'a> Pairs<'_, 'a> {
    fn sort(&mut self, key: Cow<'a, str>, value: &'a str) {
        let fields = &self.contract.fields;
        let index = match fields.get(self.next) {
            Some(f) if same_text(&f.name, &key) => Some(self.next),
            _ => self.contract.field_index(&key),
        };
        if let Some(i) = index {
            self.next = i + 1;
        }
        match index {
            Some(i) if self.found[i].is_some() => {
                self.duplicate.get_or_insert(key);
            }
            Some(i) => self.found[i] = Some(value),
            None if self.extra.iter().any(|(k, _)| *k == key) => {
                self.duplicate.get_or_insert(key);
            }
            None => self.extra.push((key, value)),
        }
    }

    fn reset(&mut self) {
        self.found.fill(None);
        self.extra.clear();
        *self.duplicate = None;
        self.next = 0;
    }
}

impl<'de, 'v> Visitor<'de> for Pairs<'v, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(mut self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value: &'de RawValue = map.next_value()?;
            self.sort(key, value.get());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"0b8e2f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b","ts":"2026-11-01T10:15:30.250+01:00","service":"rentals","env":"prod","level":"INFO","method":"GET","path":"/v1/cars","status":200,"latency_ms":12.5,"member_id":"M1","client_ip":"203.0.113.77","phone":"+4915112345678","user_agent":"app/1.0","attrs":{"k":[1,2]},"trace":"abc","n":1}"#;

    /// The row's cells with made text resolved, its `_extra` and its time.
    fn check(json: &str) -> Result<(Vec<Cell<'_>>, Option<String>, i64), Reason> {
        let c = Box::leak(Box::new(Contract::embedded().expect("contract")));
        let v = Validator::new(c, Pii::new(b"test-key"));
        let mut row = Row::default();
        v.validate(json.as_bytes(), &mut row)?;
        let cells = row
            .cells
            .iter()
            .map(|c| match c {
                Cell::Made(_) => Cell::Str(Cow::Owned(row.text(c).unwrap_or("?").into())),
                other => other.clone(),
            })
            .collect();
        Ok((cells, row.extra().map(String::from), row.event_ms))
    }

    fn with(field: &str, value: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(GOOD).expect("json");
        let mut m = v.as_object().expect("object").clone();
        match value {
            "<absent>" => {
                m.remove(field);
            }
            _ => {
                m.insert(field.into(), serde_json::from_str(value).expect("value"));
            }
        }
        serde_json::to_string(&m).expect("json")
    }

    #[test]
    fn a_good_event_becomes_a_row_with_pii_transformed_and_extras_kept() {
        let (cells, extra, ms) = check(GOOD).expect("valid");
        assert_eq!(ms, 1_793_524_530_250); // 09:15:30.250Z
        assert_eq!(cells[7], Cell::Int(200));
        assert_eq!(cells[8], Cell::Float(12.5));
        assert_eq!(cells[10], Cell::Str("203.0.113.0/24".into()));
        match &cells[11] {
            Cell::Str(h) => assert!(h.len() == 64 && !h.contains("4915"), "{h}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(cells[13], Cell::Str(r#"{"k":[1,2]}"#.into()));
        assert_eq!(extra.as_deref(), Some(r#"{"trace":"abc","n":1}"#));
    }

    #[test]
    fn a_telemetry_sample_lands_with_its_position_rounded_and_out_of_range_speeds_refused() {
        let c = Contract::from_yaml(crate::contract::TELEMETRY_KINEMATICS).expect("contract");
        let v = Validator::new(&c, Pii::new(b"k"));
        let mut row = Row::default();
        let sample = r#"{"car_id":"car-00042","ts":"2026-11-01T10:00:01Z","speed_kmh":48.25,"speed_limit_kmh":null,"lat":37.5665123,"lon":126.9780456,"heading":91.5}"#;
        v.validate(sample.as_bytes(), &mut row)
            .expect("valid sample");
        let at = |n: &str| row.cells[c.field_index(n).expect(n)].clone();
        assert_eq!(at("lat"), Cell::Float(37.567));
        assert_eq!(at("lon"), Cell::Float(126.978));
        assert_eq!(
            at("speed_kmh"),
            Cell::Float(48.25),
            "only positions are coarsened"
        );
        assert_eq!(at("speed_limit_kmh"), Cell::Null);
        assert_eq!(row.event_ms, 1_793_527_201_000);
        let too_fast = sample.replace("48.25", "412.0");
        let mut row = Row::default();
        assert!(matches!(
            v.validate(too_fast.as_bytes(), &mut row),
            Err(Reason::InvalidValue { field, .. }) if field == "speed_kmh"
        ));
    }

    #[test]
    fn optional_fields_may_be_absent_or_null_required_may_not() {
        assert!(check(&with("phone", "<absent>")).is_ok());
        assert!(check(&with("member_id", "null")).is_ok());
        for f in [
            "event_id",
            "ts",
            "service",
            "env",
            "level",
            "method",
            "path",
            "status",
            "latency_ms",
        ] {
            assert_eq!(
                check(&with(f, "<absent>")).err(),
                Some(Reason::MissingField(f.into())),
                "{f}"
            );
            assert_eq!(
                check(&with(f, "null")).err(),
                Some(Reason::MissingField(f.into())),
                "{f}"
            );
        }
    }

    #[test]
    fn each_rule_of_the_contract_is_enforced() {
        let code = |f: &str, v: &str| check(&with(f, v)).err().map(|r| r.code());
        assert_eq!(code("env", r#""qa""#), Some("invalid_value"));
        assert_eq!(code("level", r#""info""#), Some("invalid_value"));
        assert_eq!(code("status", "99"), Some("invalid_value"));
        assert_eq!(code("status", "600"), Some("invalid_value"));
        assert_eq!(code("status", "100"), None);
        assert_eq!(code("status", "599"), None);
        assert_eq!(code("status", "200.5"), Some("wrong_type"));
        assert_eq!(code("status", r#""200""#), Some("wrong_type"));
        assert_eq!(code("latency_ms", "-0.1"), Some("invalid_value"));
        assert_eq!(code("latency_ms", "0"), None);
        assert_eq!(code("latency_ms", r#""5""#), Some("wrong_type"));
        assert_eq!(code("path", r#""v1/cars""#), Some("invalid_value"));
        assert_eq!(code("event_id", r#""not-a-uuid""#), Some("invalid_value"));
        assert_eq!(
            code("ts", r#""2026-11-01T10:15:30""#),
            Some("invalid_value")
        );
        assert_eq!(code("ts", r#""yesterday""#), Some("invalid_value"));
        assert_eq!(code("ts", "1761988530"), Some("wrong_type"));
        assert_eq!(code("client_ip", r#""10.0.0""#), Some("invalid_value"));
        assert_eq!(code("attrs", "[1]"), Some("wrong_type"));
        assert_eq!(code("service", "5"), Some("wrong_type"));
    }

    #[test]
    fn broken_payloads_are_named() {
        let code = |s: &[u8]| {
            let c = Box::leak(Box::new(Contract::embedded().expect("contract")));
            let v = Validator::new(c, Pii::new(b"k"));
            v.validate(s, &mut Row::default()).err().map(|r| r.code())
        };
        assert_eq!(code(b"{\"a\":"), Some("invalid_json"));
        assert_eq!(code(b"[1,2]"), Some("not_an_object"));
        assert_eq!(code(b"\"text\""), Some("not_an_object"));
        assert_eq!(code(b"plain text"), Some("invalid_json"));
        assert_eq!(code(b"{\"a\":\"\xff\"}"), Some("not_utf8"));
        assert_eq!(
            code(GOOD.replace('}', "} trailing").as_bytes()),
            Some("invalid_json")
        );
        let dup = GOOD.replace(
            "\"service\":\"rentals\"",
            "\"service\":\"a\",\"service\":\"b\"",
        );
        assert_eq!(code(dup.as_bytes()), Some("duplicate_field"));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let json = with("service", r#""r\u00e9nt\"als""#);
        let (cells, _, _) = check(&json).expect("valid");
        assert_eq!(cells[2], Cell::Str("rént\"als".into()));
    }

    #[test]
    fn many_unknown_fields_are_all_kept_in_order_and_duplicates_among_them_refused() {
        let mut json = GOOD.trim_end_matches('}').to_string();
        for i in 0..12 {
            json.push_str(&format!(",\"x{i}\":{i}"));
        }
        json.push_str(",\"q\\\"k\":true}");
        let (_, extra, _) = check(&json).expect("valid");
        let extra: serde_json::Value = serde_json::from_str(&extra.expect("extra")).expect("json");
        let keys: Vec<&String> = extra.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 2 + 12 + 1, "{keys:?}");
        assert_eq!(extra["x11"], 11);
        assert_eq!(extra["q\"k"], true);
        let dup = json.replace("}", ",\"x3\":0}");
        assert_eq!(check(&dup).err(), Some(Reason::DuplicateField("x3".into())));
    }

    #[test]
    fn one_row_buffer_serves_many_events_without_leaking_text_between_them() {
        let c = Contract::embedded().expect("contract");
        let v = Validator::new(&c, Pii::new(b"k"));
        let mut row = Row::default();
        let other = with("client_ip", r#""2001:db8::1""#);
        for json in [GOOD, other.as_str(), GOOD] {
            v.validate(json.as_bytes(), &mut row).expect("valid");
            let ip = row.text(&row.cells[10]).expect("text").to_string();
            let want = if json == GOOD {
                "203.0.113.0/24"
            } else {
                "2001:db8::/48"
            };
            assert_eq!(ip, want);
            assert_eq!(row.text(&row.cells[11]).map(str::len), Some(64));
        }
    }
}
