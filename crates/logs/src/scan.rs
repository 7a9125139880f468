//! The fast path of validation: one pass over an event's top-level JSON
//! object that hands each key and raw value to the caller, checking the
//! JSON grammar of everything on the way (nested values included) without
//! building anything.
//!
//! It gives up (`None`) on whatever it does not handle itself — a key with
//! an escape, a `\u` escape anywhere, nesting deeper than serde_json
//! allows — and on any malformed input. The caller then reads the event
//! with serde_json, which also names the error. So the rule that keeps the
//! two paths equal is one-sided: whatever this accepts, serde_json accepts
//! with the same pairs (a property test checks it).

/// serde_json's recursion limit.
const MAX_DEPTH: usize = 128;

/// Calls `pair(key, raw_value)` for each member of the object `text`, in
/// order; None when the scanner gives up (see the module docs).
pub fn object<'a>(text: &'a str, mut pair: impl FnMut(&'a str, &'a str)) -> Option<()> {
    let b = text.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (ws(b, i + 1) == b.len()).then_some(());
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = plain_string(b, i)?;
        let key = text.get(i + 1..key_end - 1)?;
        i = ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = ws(b, i + 1);
        let end = value(b, start, 1)?;
        pair(key, text.get(start..end)?);
        i = ws(b, end);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return (ws(b, i + 1) == b.len()).then_some(()),
            _ => return None,
        }
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (past the closing quote) of a string without escapes at `i`.
fn plain_string(b: &[u8], i: usize) -> Option<usize> {
    let stop = special(b, i + 1)?;
    (b[stop] == b'"').then_some(stop + 1)
}

/// The end of a string at `i`; simple escapes are fine, `\u` gives up.
fn string(b: &[u8], i: usize) -> Option<usize> {
    let mut at = i + 1;
    loop {
        let stop = special(b, at)?;
        match b[stop] {
            b'"' => return Some(stop + 1),
            b'\\' => match b.get(stop + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at = stop + 2,
                _ => return None,
            },
            _ => return None, // a control character
        }
    }
}

/// The first byte from `i` on that ends or interrupts a string's plain
/// text: a quote, a backslash or a control character. Eight bytes at a
/// time: a string's bytes are read once (not by `memchr` for the quote and
/// again for control characters), and the short strings of log events end
/// before a vector search would have paid for its setup.
pub(crate) fn special(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `x` below `n` (n <= 0x80): exact for the
    // lowest such byte, which is all that is read of it.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    while let Some(word) = b.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        let x = u64::from_le_bytes(word);
        let hits = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if hits != 0 {
            return Some(i + hits.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    let rest = b.get(i..)?;
    rest.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

/// The end of the JSON value at `i`.
fn value(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string(b, i),
        b'{' => container(b, i, depth, b'}', true),
        b'[' => container(b, i, depth, b']', false),
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'n' => literal(b, i, b"null"),
        b'-' | b'0'..=b'9' => number(b, i),
        _ => None,
    }
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b.get(i..i + word.len())
        .filter(|w| *w == word)
        .map(|_| i + word.len())
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |from: usize| {
        let n = b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        (n > 0).then_some(from + n)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i)?,
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

/// An object (members `"key": value`) or an array, nested `depth` deep.
fn container(b: &[u8], i: usize, depth: usize, close: u8, object: bool) -> Option<usize> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let mut at = ws(b, i + 1);
    if b.get(at) == Some(&close) {
        return Some(at + 1);
    }
    loop {
        if object {
            if b.get(at) != Some(&b'"') {
                return None;
            }
            at = ws(b, string(b, at)?);
            if b.get(at) != Some(&b':') {
                return None;
            }
            at = ws(b, at + 1);
        }
        at = ws(b, value(b, at, depth + 1)?);
        match b.get(at) {
            Some(b',') => at = ws(b, at + 1),
            Some(&c) if c == close => return Some(at + 1),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        object(text, |k, v| out.push((k.to_string(), v.to_string())))?;
        Some(out)
    }

    /// What [`special`] finds, one byte at a time.
    fn naive(b: &[u8], from: usize) -> Option<usize> {
        b[from..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .map(|p| from + p)
    }

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_byte() {
        let texts: [&[u8]; 7] = [
            b"abcdefghijklmnop\"",
            b"abc\\def\"",
            b"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\x7f\x1f",
            b"\x00abcdefgh",
            b"abcdefg\x1f\"",
            b"no end at all, only text",
            b"!#\x21\x23 \x5b\x5d\xa2\xdc\x9f\"",
        ];
        for t in texts {
            for i in 0..t.len() {
                assert_eq!(special(t, i), naive(t, i), "{t:?} from {i}");
            }
        }
    }

    proptest! {
        #[test]
        fn special_agrees_with_a_byte_loop(b in proptest::collection::vec(any::<u8>(), 0..40), from in 0usize..40) {
            let from = from.min(b.len());
            prop_assert_eq!(special(&b, from), naive(&b, from));
        }
    }

    #[test]
    fn objects_are_split_into_raw_pairs() {
        assert_eq!(
            pairs(r#" { "a" : 1 , "b":{"c":[true,null,-0.5e3,"x\"y"]}, "d":"" } "#),
            Some(vec![
                ("a".into(), "1".into()),
                ("b".into(), r#"{"c":[true,null,-0.5e3,"x\"y"]}"#.into()),
                ("d".into(), r#""""#.into()),
            ])
        );
        assert_eq!(pairs("{}"), Some(vec![]));
    }

    #[test]
    fn anything_malformed_or_unusual_gives_up() {
        for bad in [
            "",
            "[]",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1}x",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":[1,]}",
            "{\"a\":{\"b\"}}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\\n\":1}",
            "{\"a\":\"\\u0041\"}",
            "{a:1}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":'x'}",
        ] {
            assert_eq!(pairs(bad), None, "{bad:?}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(pairs(&deep), None, "deeper than serde_json goes");
    }

    fn mutate(base: &str, edits: &[(usize, u8, u8)]) -> String {
        const ALPHABET: &[u8] = b"{}[]\",:\\ 0123456789.eE+-tfnulrsa\n\x01u";
        let mut b = base.as_bytes().to_vec();
        for &(at, kind, ch) in edits {
            let at = at % (b.len() + 1);
            let c = ALPHABET[ch as usize % ALPHABET.len()];
            match kind % 3 {
                0 => b.insert(at, c),
                1 if at < b.len() => {
                    b.remove(at);
                }
                _ if at < b.len() => b[at] = c,
                _ => {}
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    const BASE: &str = r#"{"event_id":"0b8e2f7a","ts":"2026-11-01T10:15:30Z","status":200,"latency_ms":-12.5e-1,"attrs":{"k":[1,{"z":null}],"q":"a\"b"},"ok":true,"n":[]}"#;

    proptest! {
        /// Whatever the scanner accepts, serde_json accepts, with the same
        /// keys and the same raw values.
        #[test]
        fn accepted_means_serde_json_agrees(edits in proptest::collection::vec((0usize..200, 0u8..3, 0u8..64), 0..6)) {
            let text = mutate(BASE, &edits);
            if let Some(ours) = pairs(&text) {
                prop_assert_eq!(Some(ours), serde_raw_pairs(&text), "{}", text);
            }
        }
    }

    /// Any JSON value whose strings need at most simple escapes.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z \"\\/\n\t]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Objects serde_json writes (compact or pretty) are scanned, not
        /// handed back, and split exactly as serde_json splits them.
        #[test]
        fn what_serde_json_writes_is_scanned_the_same(
            members in proptest::collection::btree_map("[a-z_]{1,8}", json_value(), 0..8),
            pretty in any::<bool>(),
        ) {
            let obj = serde_json::Value::Object(members.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&obj)
            } else {
                serde_json::to_string(&obj)
            }.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ours = pairs(&text);
            prop_assert!(ours.is_some(), "gave up on {}", text);
            prop_assert_eq!(ours, serde_raw_pairs(&text));
        }
    }

    /// serde_json's pairs of a top-level object, each value raw.
    fn serde_raw_pairs(text: &str) -> Option<Vec<(String, String)>> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    let v: &'de serde_json::value::RawValue = m.next_value()?;
                    out.push((k, v.get().to_string()));
                }
                Ok(out)
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let out = serde::Deserializer::deserialize_map(&mut de, V).ok()?;
        de.end().ok()?;
        Some(out)
    }

    #[test]
    fn the_unmutated_base_agrees_with_serde_json() {
        assert!(pairs(BASE).is_some());
        assert_eq!(pairs(BASE), serde_raw_pairs(BASE));
    }
}
