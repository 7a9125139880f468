//! The input contracts of the score job: the rule each row must keep, and
//! the name under which a broken one is counted and reported.

use std::fmt;

use serde::Serialize;

/// The longest a rental may last.
pub const MAX_RENTAL_MS: i64 = 7 * 86_400_000;
pub const MAX_SPEED_KMH: f64 = 300.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TelemetryRule {
    CarIdEmpty,
    TsNull,
    SpeedNull,
    SpeedOutOfRange,
    SpeedLimitInvalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RentalRule {
    RentalIdEmpty,
    RentalIdDuplicate,
    DuplicateRow,
    MemberIdEmpty,
    CarIdEmpty,
    StartAtNull,
    EndAtNull,
    TimestampUnparseable,
    EndNotAfterStart,
    LongerThan7Days,
}

impl TelemetryRule {
    pub const ALL: [TelemetryRule; 5] = [
        TelemetryRule::CarIdEmpty,
        TelemetryRule::TsNull,
        TelemetryRule::SpeedNull,
        TelemetryRule::SpeedOutOfRange,
        TelemetryRule::SpeedLimitInvalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TelemetryRule::CarIdEmpty => "car_id_empty",
            TelemetryRule::TsNull => "ts_null",
            TelemetryRule::SpeedNull => "speed_null",
            TelemetryRule::SpeedOutOfRange => "speed_out_of_range",
            TelemetryRule::SpeedLimitInvalid => "speed_limit_invalid",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            TelemetryRule::CarIdEmpty => "car_id is null or empty",
            TelemetryRule::TsNull => "ts is null",
            TelemetryRule::SpeedNull => "speed_kmh is null",
            TelemetryRule::SpeedOutOfRange => "speed_kmh is outside 0..=300 or not a number",
            TelemetryRule::SpeedLimitInvalid => {
                "speed_limit_kmh is negative or not a number (null means unknown)"
            }
        }
    }
}

impl RentalRule {
    pub const ALL: [RentalRule; 10] = [
        RentalRule::RentalIdEmpty,
        RentalRule::RentalIdDuplicate,
        RentalRule::DuplicateRow,
        RentalRule::MemberIdEmpty,
        RentalRule::CarIdEmpty,
        RentalRule::StartAtNull,
        RentalRule::EndAtNull,
        RentalRule::TimestampUnparseable,
        RentalRule::EndNotAfterStart,
        RentalRule::LongerThan7Days,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RentalRule::RentalIdEmpty => "rental_id_empty",
            RentalRule::RentalIdDuplicate => "rental_id_duplicate",
            RentalRule::DuplicateRow => "duplicate_row",
            RentalRule::MemberIdEmpty => "member_id_empty",
            RentalRule::CarIdEmpty => "car_id_empty",
            RentalRule::StartAtNull => "start_at_null",
            RentalRule::EndAtNull => "end_at_null",
            RentalRule::TimestampUnparseable => "timestamp_unparseable",
            RentalRule::EndNotAfterStart => "end_not_after_start",
            RentalRule::LongerThan7Days => "longer_than_7_days",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            RentalRule::RentalIdEmpty => "rental_id is null or empty",
            RentalRule::RentalIdDuplicate => {
                "rental_id appears on rows that differ; all of them are left out"
            }
            RentalRule::DuplicateRow => "an identical copy of another row; one copy is kept",
            RentalRule::MemberIdEmpty => "member_id is null or empty",
            RentalRule::CarIdEmpty => "car_id is null or empty",
            RentalRule::StartAtNull => "start_at is null",
            RentalRule::EndAtNull => "end_at is null",
            RentalRule::TimestampUnparseable => "a timestamp is not RFC 3339 / ISO 8601",
            RentalRule::EndNotAfterStart => "end_at is not after start_at",
            RentalRule::LongerThan7Days => "end_at is more than 7 days after start_at",
        }
    }
}

impl fmt::Display for TelemetryRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RentalRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks one telemetry row. The first broken rule is the one reported.
#[inline]
pub fn check_telemetry(
    car_id: Option<&str>,
    ts: Option<i64>,
    speed_kmh: Option<f64>,
    limit_kmh: Option<f64>,
) -> Result<(), TelemetryRule> {
    if car_id.is_none_or(str::is_empty) {
        return Err(TelemetryRule::CarIdEmpty);
    }
    if ts.is_none() {
        return Err(TelemetryRule::TsNull);
    }
    match speed_kmh {
        None => return Err(TelemetryRule::SpeedNull),
        // NaN fails the range check too.
        Some(v) if !(0.0..=MAX_SPEED_KMH).contains(&v) => {
            return Err(TelemetryRule::SpeedOutOfRange);
        }
        Some(_) => {}
    }
    match limit_kmh {
        Some(l) if !(l >= 0.0 && l.is_finite()) => Err(TelemetryRule::SpeedLimitInvalid),
        _ => Ok(()),
    }
}

/// A rental row as read, before its rules are checked.
#[derive(Debug, Clone, Default)]
pub struct RawRental<'a> {
    pub rental_id: Option<&'a str>,
    pub member_id: Option<&'a str>,
    pub car_id: Option<&'a str>,
    pub start_at: Option<i64>,
    pub end_at: Option<i64>,
}

/// Checks the per-row rules of a rental (uniqueness is checked across rows by the reader).
pub fn check_rental(r: &RawRental<'_>) -> Result<(), RentalRule> {
    if r.rental_id.is_none_or(str::is_empty) {
        return Err(RentalRule::RentalIdEmpty);
    }
    if r.member_id.is_none_or(str::is_empty) {
        return Err(RentalRule::MemberIdEmpty);
    }
    if r.car_id.is_none_or(str::is_empty) {
        return Err(RentalRule::CarIdEmpty);
    }
    let start = r.start_at.ok_or(RentalRule::StartAtNull)?;
    let end = r.end_at.ok_or(RentalRule::EndAtNull)?;
    if end <= start {
        return Err(RentalRule::EndNotAfterStart);
    }
    if end - start > MAX_RENTAL_MS {
        return Err(RentalRule::LongerThan7Days);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_rules() {
        let ok = check_telemetry(Some("c"), Some(0), Some(0.0), None);
        assert_eq!(ok, Ok(()));
        assert_eq!(
            check_telemetry(Some("c"), Some(0), Some(300.0), Some(0.0)),
            Ok(())
        );
        use TelemetryRule::*;
        assert_eq!(
            check_telemetry(None, Some(0), Some(1.0), None),
            Err(CarIdEmpty)
        );
        assert_eq!(
            check_telemetry(Some(""), Some(0), Some(1.0), None),
            Err(CarIdEmpty)
        );
        assert_eq!(
            check_telemetry(Some("c"), None, Some(1.0), None),
            Err(TsNull)
        );
        assert_eq!(
            check_telemetry(Some("c"), Some(0), None, None),
            Err(SpeedNull)
        );
        assert_eq!(
            check_telemetry(Some("c"), Some(0), Some(-0.1), None),
            Err(SpeedOutOfRange)
        );
        assert_eq!(
            check_telemetry(Some("c"), Some(0), Some(300.1), None),
            Err(SpeedOutOfRange)
        );
        assert_eq!(
            check_telemetry(Some("c"), Some(0), Some(f64::NAN), None),
            Err(SpeedOutOfRange)
        );
        assert_eq!(
            check_telemetry(Some("c"), Some(0), Some(1.0), Some(-5.0)),
            Err(SpeedLimitInvalid)
        );
        assert_eq!(
            check_telemetry(Some("c"), Some(0), Some(1.0), Some(f64::NAN)),
            Err(SpeedLimitInvalid)
        );
    }

    #[test]
    fn rental_rules() {
        let good = RawRental {
            rental_id: Some("r"),
            member_id: Some("m"),
            car_id: Some("c"),
            start_at: Some(0),
            end_at: Some(1),
        };
        assert_eq!(check_rental(&good), Ok(()));
        use RentalRule::*;
        let with = |f: &dyn Fn(&mut RawRental<'static>)| {
            let mut r = good.clone();
            f(&mut r);
            check_rental(&r)
        };
        assert_eq!(with(&|r| r.rental_id = Some("")), Err(RentalIdEmpty));
        assert_eq!(with(&|r| r.member_id = None), Err(MemberIdEmpty));
        assert_eq!(with(&|r| r.car_id = Some("")), Err(CarIdEmpty));
        assert_eq!(with(&|r| r.start_at = None), Err(StartAtNull));
        assert_eq!(with(&|r| r.end_at = None), Err(EndAtNull));
        assert_eq!(with(&|r| r.end_at = Some(0)), Err(EndNotAfterStart));
        assert_eq!(with(&|r| r.end_at = Some(MAX_RENTAL_MS)), Ok(()));
        assert_eq!(
            with(&|r| r.end_at = Some(MAX_RENTAL_MS + 1)),
            Err(LongerThan7Days)
        );
    }
}
