//! Where events lie, as the ingestion spec lays them out: the lake's hour
//! partitions and DLQ days, and the legacy Firehose output's arrival-hour
//! folders. Ingestion writes by these paths; replay and reconciliation read
//! by them, so all three go through here. Hours are counted since the epoch
//! (UTC).

use chrono::DateTime;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The hour (since the epoch) an instant in epoch ms falls in.
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS)
}

/// The first whole `unit` (ms) at or after `ms`: the exclusive end of a range.
pub fn ceil_units(ms: i64, unit: i64) -> i64 {
    ms.div_euclid(unit) + i64::from(ms.rem_euclid(unit) != 0)
}

fn format(ms: i64, fmt: &str) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.format(fmt).to_string())
}

/// `YYYY-MM-DD` of an instant, or `invalid` out of chrono's range.
pub fn date_of(ms: i64) -> String {
    format(ms, "%Y-%m-%d").unwrap_or_else(|| "invalid".into())
}

/// `DATASET/dt=YYYY-MM-DD/hour=HH`: the lake partition of an event hour.
pub fn hour_dir(dataset: &str, hour: i64) -> String {
    match format(hour.saturating_mul(HOUR_MS), "dt=%Y-%m-%d/hour=%H") {
        Some(p) => format!("{dataset}/{p}"),
        None => format!("{dataset}/dt=invalid/hour={hour}"),
    }
}

/// `_dlq/DATASET`: the DLQ of a dataset, one `dt=YYYY-MM-DD` folder per
/// arrival day.
pub fn dlq_root(dataset: &str) -> String {
    format!("_dlq/{dataset}")
}

/// `_dlq/DATASET/dt=YYYY-MM-DD` of a date as [`date_of`] writes it.
pub fn dlq_day_dir(dataset: &str, date: &str) -> String {
    format!("{}/dt={date}", dlq_root(dataset))
}

/// `YYYY/MM/DD/HH`: the legacy output's folder of an arrival hour; None out
/// of chrono's range (where no folder can exist).
pub fn firehose_hour_dir(hour: i64) -> Option<String> {
    format(hour.checked_mul(HOUR_MS)?, "%Y/%m/%d/%H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec() {
        // 2026-11-01T09:00Z
        let h = 1_793_523_600_000 / HOUR_MS;
        assert_eq!(
            hour_dir("server_log.api_request", h),
            "server_log.api_request/dt=2026-11-01/hour=09"
        );
        assert_eq!(
            dlq_day_dir("ds", &date_of(h * HOUR_MS)),
            "_dlq/ds/dt=2026-11-01"
        );
        assert_eq!(firehose_hour_dir(h).as_deref(), Some("2026/11/01/09"));
        assert_eq!(firehose_hour_dir(i64::MAX), None);
        assert_eq!(
            hour_dir("ds", i64::MAX),
            format!("ds/dt=invalid/hour={}", i64::MAX)
        );
    }

    #[test]
    fn ranges_end_at_the_next_whole_unit() {
        assert_eq!(ceil_units(0, HOUR_MS), 0);
        assert_eq!(ceil_units(1, HOUR_MS), 1);
        assert_eq!(ceil_units(HOUR_MS, HOUR_MS), 1);
        assert_eq!(ceil_units(-1, HOUR_MS), 0);
        assert_eq!(hour_of(-1), -1);
    }
}
