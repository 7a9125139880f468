//! Event times in the shape every producer writes them —
//! `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` — read straight to epoch
//! milliseconds. chrono's general parser was a visible share of ingestion;
//! anything outside this shape (lowercase separators, leap seconds, years
//! before 1970) is left to chrono, so results and errors are chrono's.

/// Epoch milliseconds (UTC) of `s`, or None to let chrono decide.
pub fn fast_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let (hour, minute, second) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        // Truncated to milliseconds, as chrono's timestamp_millis does for
        // times after 1970.
        for k in 0..3 {
            millis = millis * 10
                + if k < n {
                    i64::from(b[i + 1 + k] - b'0')
                } else {
                    0
                };
        }
        i += 1 + n;
    }
    let offset_s = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2], 0, 2)?, digits(&[*m1, *m2], 0, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(secs * 1000 + millis)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    b.get(at..at + n)?.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_millis(s: &str) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    #[test]
    fn the_usual_shapes_read_as_chrono_reads_them() {
        for s in [
            "2026-11-01T10:15:30Z",
            "2026-11-01T10:15:30.250+01:00",
            "2026-11-01T10:15:30.2509999-05:30",
            "2024-02-29T23:59:59.999Z",
            "1970-01-01T00:00:00Z",
            "2000-03-01T00:00:00+14:00",
        ] {
            assert_eq!(fast_millis(s), chrono_millis(s), "{s}");
            assert!(fast_millis(s).is_some(), "{s}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_chrono() {
        for s in [
            "2026-11-01t10:15:30z",
            "2026-11-01 10:15:30Z",
            "2026-02-29T10:15:30Z",
            "2026-11-01T10:15:60Z",
            "1969-12-31T23:59:59Z",
            "2026-11-01T10:15:30",
            "2026-11-01T10:15:30.Z",
            "2026-11-01T10:15:30+0100",
            "2026-13-01T10:15:30Z",
            "yesterday",
            "",
        ] {
            assert_eq!(fast_millis(s), None, "{s}");
        }
    }

    proptest! {
        /// Where the fast path answers, it answers as chrono does.
        #[test]
        fn agrees_with_chrono(
            y in 1965i64..2500, mo in 0i64..14, d in 0i64..33, h in 0i64..25, mi in 0i64..61,
            s in 0i64..61, frac in proptest::option::of("[0-9]{1,9}"),
            off in prop_oneof![Just("Z".to_string()), (any::<bool>(), 0i64..25, 0i64..61)
                .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' }))],
        ) {
            let text = format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}{off}",
                frac.map(|f| format!(".{f}")).unwrap_or_default()
            );
            if let Some(ms) = fast_millis(&text) {
                prop_assert_eq!(Some(ms), chrono_millis(&text), "{}", text);
            }
        }
    }
}
