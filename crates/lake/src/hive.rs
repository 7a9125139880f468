//! Hive time partitions (`dt=YYYY-MM-DD/`, optionally `hour=HH/` below it)
//! read as the span of time they can hold, so a reader can leave out whole
//! folders without listing them.

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A half-open span of time `[start, end)` in ms since the epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
}

impl Span {
    /// Everything: what a path without time partitions can hold.
    pub const ALL: Span = Span {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// Whether an instant in `[from, to]` (both inclusive) can fall inside.
    pub fn meets(&self, from: i64, to: i64) -> bool {
        from < self.end && to >= self.start
    }
}

/// The span a folder name narrows `outer` to: `dt=YYYY-MM-DD` is a day,
/// `hour=HH` an hour of the day around it. Anything else, and values that do
/// not parse, narrow nothing: such a folder is listed like any other, never
/// skipped on a guess.
pub fn narrow(outer: Span, name: &str) -> Span {
    let Some((key, value)) = name.split_once('=') else {
        return outer;
    };
    match key {
        "dt" | "date" => match day_number(value) {
            Some(day) => Span {
                start: day * DAY_MS,
                end: (day + 1) * DAY_MS,
            },
            None => outer,
        },
        "hour" => match value.parse::<i64>() {
            Ok(h) if (0..24).contains(&h) && outer.end.checked_sub(outer.start) == Some(DAY_MS) => {
                Span {
                    start: outer.start + h * HOUR_MS,
                    end: outer.start + (h + 1) * HOUR_MS,
                }
            }
            _ => outer,
        },
        _ => outer,
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian).
fn day_number(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > days_in[(m - 1) as usize] {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_count_from_the_epoch() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2000-03-01"), Some(11_017));
        assert_eq!(day_number("2024-02-29"), Some(19_782));
        assert_eq!(day_number("2023-02-29"), None);
        assert_eq!(day_number("2026-13-01"), None);
        assert_eq!(day_number("2026-1-01"), None);
    }

    #[test]
    fn a_day_then_an_hour_narrow_the_span() {
        let day = narrow(Span::ALL, "dt=1970-01-02");
        assert_eq!(
            day,
            Span {
                start: DAY_MS,
                end: 2 * DAY_MS
            }
        );
        let hour = narrow(day, "hour=05");
        assert_eq!(hour.start, DAY_MS + 5 * HOUR_MS);
        assert_eq!(hour.end, DAY_MS + 6 * HOUR_MS);
    }

    #[test]
    fn unknown_or_broken_names_narrow_nothing() {
        assert_eq!(narrow(Span::ALL, "region=eu"), Span::ALL);
        assert_eq!(narrow(Span::ALL, "dt=yesterday"), Span::ALL);
        assert_eq!(narrow(Span::ALL, "hour=05"), Span::ALL);
        let day = narrow(Span::ALL, "dt=2026-01-01");
        assert_eq!(narrow(day, "hour=24"), day);
        assert_eq!(narrow(Span::ALL, "telemetry"), Span::ALL);
    }

    #[test]
    fn meets_is_inclusive_of_instants_and_exclusive_of_the_end() {
        let s = Span { start: 10, end: 20 };
        assert!(s.meets(0, 10));
        assert!(s.meets(19, 30));
        assert!(!s.meets(20, 30));
        assert!(!s.meets(0, 9));
    }
}
