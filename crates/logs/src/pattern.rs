//! A contract field's `pattern`. Data contracts mostly write patterns of one
//! shape — anchored, a row of ASCII classes or literals, each repeated a
//! fixed or bounded number of times (`^[0-9a-f]{8}-…$`, `^[A-Z]+$`, `^/`) —
//! and the regex engine's setup costs more than such a match itself, on
//! every event. Those patterns are checked here by one forward pass; any
//! other pattern goes to the regex crate. The fast path is taken only where
//! a greedy pass cannot disagree with the regex (see [`Row::parse`]), and a
//! property test checks that it never does.

use regex::Regex;

#[derive(Debug, Clone)]
pub struct Pattern {
    regex: Regex,
    row: Option<Row>,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        Ok(Pattern {
            regex: Regex::new(source)?,
            row: Row::parse(source),
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        match &self.row {
            Some(row) => row.is_match(s.as_bytes()),
            None => self.regex.is_match(s),
        }
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether the fast path serves this pattern.
    #[cfg(test)]
    fn is_simple(&self) -> bool {
        self.row.is_some()
    }
}

/// A set of ASCII bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Set(u128);

impl Set {
    fn of(b: u8) -> Set {
        Set(1 << b)
    }

    fn range(lo: u8, hi: u8) -> Set {
        Set((lo..=hi).fold(0, |s, b| s | 1 << b))
    }

    fn contains(self, b: u8) -> bool {
        b < 128 && self.0 & (1 << b) != 0
    }
}

/// One class or literal and how often it repeats.
#[derive(Debug, Clone)]
struct Atom {
    set: Set,
    min: usize,
    max: usize,
}

/// An anchored row of atoms, optionally anchored at the end too.
#[derive(Debug, Clone)]
struct Row {
    atoms: Vec<Atom>,
    to_end: bool,
}

impl Row {
    /// The row a pattern is, or None when it is not of the supported shape
    /// or a greedy pass could differ from the regex: an atom of varying
    /// length must be the last one, or be followed by one that must match
    /// at least once and shares no byte with it, so that where it stops is
    /// never a choice.
    fn parse(src: &str) -> Option<Row> {
        let b = src.as_bytes();
        let mut i = usize::from(*b.first()? == b'^');
        if i == 0 {
            return None;
        }
        let mut atoms: Vec<Atom> = Vec::new();
        let mut to_end = false;
        while i < b.len() {
            if b[i] == b'$' {
                if i + 1 != b.len() {
                    return None;
                }
                to_end = true;
                break;
            }
            let (set, next) = atom(b, i)?;
            let (min, max, next) = quantifier(b, next)?;
            atoms.push(Atom { set, min, max });
            i = next;
        }
        let greedy_is_safe = atoms
            .windows(2)
            .all(|w| w[0].min == w[0].max || (w[1].min >= 1 && w[0].set.0 & w[1].set.0 == 0));
        greedy_is_safe.then_some(Row { atoms, to_end })
    }

    fn is_match(&self, s: &[u8]) -> bool {
        let mut at = 0;
        for a in &self.atoms {
            let run = s[at..]
                .iter()
                .take(a.max)
                .take_while(|&&c| a.set.contains(c))
                .count();
            if run < a.min {
                return false;
            }
            at += run;
        }
        !self.to_end || at == s.len()
    }
}

/// Characters that mean something to the regex outside a class.
const META: &[u8] = b"\\.+*?()|[]{}^$";

/// The class or literal at `i` and where it ends.
fn atom(b: &[u8], i: usize) -> Option<(Set, usize)> {
    match b[i] {
        b'[' => class(b, i + 1),
        b'\\' => escaped(b, i + 1).map(|c| (Set::of(c), i + 2)),
        c if c.is_ascii_graphic() && !META.contains(&c) || c == b' ' => Some((Set::of(c), i + 1)),
        _ => None,
    }
}

/// An escaped punctuation character: `\.`, `\-`, `\/` … (letters after a
/// backslash are classes like `\d`, Unicode-wide in the regex crate).
fn escaped(b: &[u8], i: usize) -> Option<u8> {
    b.get(i).copied().filter(u8::is_ascii_punctuation)
}

/// `[…]` of ASCII characters, ranges and escaped punctuation, not negated.
fn class(b: &[u8], mut i: usize) -> Option<(Set, usize)> {
    let mut set = Set(0);
    if matches!(b.get(i), Some(b'^' | b']')) {
        return None;
    }
    loop {
        let lo = match *b.get(i)? {
            b']' => return (set.0 != 0).then_some((set, i + 1)),
            b'\\' => {
                i += 1;
                escaped(b, i)?
            }
            b'[' | b'&' | b'~' => return None, // nested classes, set operations
            c if c.is_ascii_graphic() || c == b' ' => c,
            _ => return None,
        };
        i += 1;
        if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(|&c| c != b']') {
            let (hi, width) = match b[i + 1] {
                b'\\' => (escaped(b, i + 2)?, 2),
                // `--` is set difference in the regex crate.
                b'-' | b'[' => return None,
                c if c.is_ascii_graphic() => (c, 1),
                _ => return None,
            };
            if hi < lo {
                return None;
            }
            set.0 |= Set::range(lo, hi).0;
            i += 1 + width;
        } else {
            set.0 |= Set::of(lo).0;
        }
    }
}

/// The repetition after an atom (`?`, `*`, `+`, `{n}`, `{n,}`, `{n,m}`, or
/// none) as (min, max, end); lazy or unusual forms are not supported.
fn quantifier(b: &[u8], i: usize) -> Option<(usize, usize, usize)> {
    let (min, max, end) = match b.get(i) {
        Some(b'?') => (0, 1, i + 1),
        Some(b'*') => (0, usize::MAX, i + 1),
        Some(b'+') => (1, usize::MAX, i + 1),
        Some(b'{') => {
            let close = i + b[i..].iter().position(|&c| c == b'}')?;
            let inner = std::str::from_utf8(&b[i + 1..close]).ok()?;
            let num = |s: &str| -> Option<usize> {
                (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                    .then(|| s.parse().ok())
                    .flatten()
            };
            let (min, max) = match inner.split_once(',') {
                None => (num(inner)?, num(inner)?),
                Some((lo, "")) => (num(lo)?, usize::MAX),
                Some((lo, hi)) => (num(lo)?, num(hi)?),
            };
            (min <= max).then_some((min, max, close + 1))?
        }
        _ => (1, 1, i),
    };
    if matches!(b.get(end), Some(b'?' | b'+' | b'*' | b'{')) {
        return None;
    }
    Some((min, max, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UUID: &str =
        "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

    /// Patterns of the supported shape, and ones that must go to the regex.
    const SIMPLE: &[&str] = &[
        UUID,
        "^[A-Z]+$",
        "^/",
        "^",
        "^v[0-9]+\\.[0-9]+$",
        "^[a-z_]{2,5}-[0-9]*$",
        "^[!-/a]{1,3}x$",
        "^a{2,}b$",
        "^ab?c$",
        "^[-a]x$",
        "^[a-]x$",
        "^[\\]\\-]+$",
    ];
    const GIVEN_TO_REGEX: &[&str] = &[
        "[A-Z]+",        // not anchored at the start
        "^(GET|POST)$",  // groups, alternation
        "^\\d+$",        // \d is Unicode-wide
        "^.+$",          // any character
        "^[^a]+$",       // negated class
        "^[a-z]+[a-c]$", // where the first run stops is a choice
        "^a*a$",
        "^a+?$",         // lazy
        "^é$",           // not ASCII
        "^a$b",          // $ before the end
        "^[a-z]*b?c$",   // followed by an optional atom
        "^(?i)abc$",     // flags
        "^[[:alpha:]]$", // POSIX class
    ];

    #[test]
    fn the_shapes_of_contract_patterns_take_the_fast_path() {
        for p in SIMPLE {
            assert!(Pattern::new(p).expect(p).is_simple(), "{p}");
        }
        for p in GIVEN_TO_REGEX {
            assert!(!Pattern::new(p).expect(p).is_simple(), "{p}");
        }
    }

    #[test]
    fn uuids_and_methods_match_as_the_regex_does() {
        let uuid = Pattern::new(UUID).expect("uuid");
        assert!(uuid.is_match("0b8e2f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"));
        assert!(!uuid.is_match("0b8e2f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5"));
        assert!(!uuid.is_match("0b8e2f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5bb"));
        assert!(!uuid.is_match("0b8e2f7a_1c2d-4e5f-8a9b-0c1d2e3f4a5b"));
        assert!(!uuid.is_match(""));
        let method = Pattern::new("^[A-Z]+$").expect("method");
        assert!(method.is_match("GET") && !method.is_match("") && !method.is_match("get"));
        assert!(!method.is_match("GETé"));
        let path = Pattern::new("^/").expect("path");
        assert!(path.is_match("/v1") && path.is_match("/") && !path.is_match("v1/"));
    }

    /// Text made of the characters the patterns talk about, and some others.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec![
                'a', 'b', 'c', 'x', 'z', 'A', 'F', 'G', 'Z', '0', '5', '9', '-', '.', '/', '_',
                ']', 'v', 'é', ' ', '\n',
            ]),
            0..14,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_the_regex(s in text(), which in 0..SIMPLE.len()) {
            let p = Pattern::new(SIMPLE[which]).expect("pattern");
            let regex = Regex::new(SIMPLE[which]).expect("regex");
            prop_assert_eq!(p.is_match(&s), regex.is_match(&s), "{:?} on {:?}", SIMPLE[which], s);
        }

        #[test]
        fn uuid_shaped_text_agrees_with_the_regex(s in "[0-9a-gA-G-]{7,9}-[0-9a-f]{4}-[0-9a-f-]{4,5}-[0-9a-f]{4}-[0-9a-fx]{11,13}") {
            let p = Pattern::new(UUID).expect("pattern");
            prop_assert_eq!(p.is_match(&s), Regex::new(UUID).expect("regex").is_match(&s));
        }
    }
}
