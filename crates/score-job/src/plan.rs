//! What a run needs to read of the telemetry: the time spans of the rentals
//! it evaluates, and (with a state) of the recently final rentals whose late
//! samples it counts. Folders, files and row groups that cannot meet them
//! are left out; a full run reads everything.

use arrow_schema::{DataType, TimeUnit};
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::statistics::Statistics;
use pitwall_lake::{FileRef, Span};
use pitwall_score_state::SeenFiles;

use crate::telemetry::Cars;

/// Merged, sorted, inclusive `[start, end]` spans.
#[derive(Debug, Clone, Default)]
pub struct Spans {
    merged: Vec<(i64, i64)>,
    all: bool,
}

impl Spans {
    pub fn all() -> Spans {
        Spans {
            merged: Vec::new(),
            all: true,
        }
    }

    pub fn new(mut spans: Vec<(i64, i64)>) -> Spans {
        spans.sort_unstable();
        Spans {
            merged: merge(spans),
            all: false,
        }
    }

    /// Whether an instant in `[from, to]` falls in a span.
    pub fn meets(&self, from: i64, to: i64) -> bool {
        if self.all {
            return true;
        }
        let i = self.merged.partition_point(|&(_, e)| e < from);
        self.merged.get(i).is_some_and(|&(s, _)| s <= to)
    }

    /// Whether a partition's half-open span can hold an instant of a span.
    pub fn meets_partition(&self, p: Span) -> bool {
        (p.end == i64::MAX && p.start == i64::MIN) || self.meets(p.start, p.end.saturating_sub(1))
    }
}

/// Spans sorted by start, with the overlapping ones joined.
pub fn merge(sorted: impl IntoIterator<Item = (i64, i64)>) -> Vec<(i64, i64)> {
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (s, e) in sorted {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// The run's reading plan.
pub struct ReadPlan<'a> {
    /// Spans of the rentals evaluated.
    pub wanted: Spans,
    /// Recently final rentals: samples for them in files new to the state
    /// are counted as late, and never used.
    pub late: Option<(&'a Cars, Spans)>,
    /// Files committed runs have read; None when unknown (no late counting).
    pub seen: Option<&'a SeenFiles>,
}

impl ReadPlan<'_> {
    /// A full run: every file and row group.
    pub fn everything() -> ReadPlan<'static> {
        ReadPlan {
            wanted: Spans::all(),
            late: None,
            seen: None,
        }
    }

    /// Whether a file is new to the state; never when the state does not
    /// know which files it has read.
    pub fn is_new(&self, file: &FileRef) -> bool {
        self.seen
            .is_some_and(|s| !s.contains(&file.display, file.size))
    }

    /// Whether a folder of this span must be listed.
    pub fn lists(&self, p: Span) -> bool {
        self.wanted.meets_partition(p)
            || self
                .late
                .as_ref()
                .is_some_and(|(_, s)| s.meets_partition(p))
    }

    /// Whether a file is needed at all: its partition holds evaluated
    /// rentals, or it is new and may hold late samples.
    pub fn opens(&self, file: &FileRef, new: bool) -> bool {
        self.wanted.meets_partition(file.span)
            || new
                && self
                    .late
                    .as_ref()
                    .is_some_and(|(_, s)| s.meets_partition(file.span))
    }

    /// The row groups whose `ts` (and `car_id`) statistics can meet the plan.
    pub fn row_groups(
        &self,
        meta: &ParquetMetaData,
        unit: TimeUnit,
        cars: &Cars,
        new: bool,
    ) -> Vec<usize> {
        let schema = meta.file_metadata().schema_descr();
        let column =
            |name: &str| (0..schema.num_columns()).find(|&i| schema.column(i).name() == name);
        let (ts_col, car_col) = (column("ts"), column("car_id"));
        (0..meta.num_row_groups())
            .filter(|&i| {
                let rg = meta.row_group(i);
                let ts = ts_col.and_then(|c| ts_range(rg, c, unit));
                let car = car_col.and_then(|c| text_range(rg, c));
                let meets = |spans: &Spans, cars: &Cars| {
                    ts.is_none_or(|(lo, hi)| spans.meets(lo, hi))
                        && car.as_ref().is_none_or(|(lo, hi)| cars.any_between(lo, hi))
                };
                meets(&self.wanted, cars)
                    || new && self.late.as_ref().is_some_and(|(late, s)| meets(s, late))
            })
            .collect()
    }
}

/// The latest instant a file can hold: the end of its partition, else the
/// largest `ts` its statistics know of, else forever.
pub fn latest_in(file: &FileRef, meta: Option<(&ParquetMetaData, TimeUnit)>) -> i64 {
    if file.span.end != i64::MAX {
        return file.span.end - 1;
    }
    let Some((meta, unit)) = meta else {
        return i64::MAX;
    };
    let schema = meta.file_metadata().schema_descr();
    let Some(c) = (0..schema.num_columns()).find(|&i| schema.column(i).name() == "ts") else {
        return i64::MAX;
    };
    meta.row_groups()
        .iter()
        .map(|rg| ts_range(rg, c, unit).map_or(i64::MAX, |r| r.1))
        .max()
        .unwrap_or(i64::MIN)
}

/// The unit of a file's `ts` column as Arrow reads it.
pub fn ts_unit(t: &DataType) -> Option<TimeUnit> {
    match t {
        DataType::Timestamp(u, _) => Some(*u),
        _ => None,
    }
}

/// A row group's `ts` range in ms, rounded outwards.
fn ts_range(rg: &RowGroupMetaData, col: usize, unit: TimeUnit) -> Option<(i64, i64)> {
    let Some(Statistics::Int64(s)) = rg.column(col).statistics() else {
        return None;
    };
    let (lo, hi) = (*s.min_opt()?, *s.max_opt()?);
    let per_ms = match unit {
        TimeUnit::Second => return Some((lo.saturating_mul(1000), hi.saturating_mul(1000))),
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 1000,
        TimeUnit::Nanosecond => 1_000_000,
    };
    Some((lo.div_euclid(per_ms), hi.div_euclid(per_ms)))
}

fn text_range(rg: &RowGroupMetaData, col: usize) -> Option<(String, String)> {
    let Some(Statistics::ByteArray(s)) = rg.column(col).statistics() else {
        return None;
    };
    let text =
        |b: &parquet::data_type::ByteArray| std::str::from_utf8(b.data()).ok().map(str::to_string);
    Some((text(s.min_opt()?)?, text(s.max_opt()?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_merge_and_meet_inclusively() {
        let s = Spans::new(vec![(50, 60), (10, 20), (15, 30)]);
        assert!(s.meets(30, 40));
        assert!(!s.meets(31, 49));
        assert!(s.meets(0, 10));
        assert!(s.meets(55, 55));
        assert!(!s.meets(61, 100));
        assert!(Spans::all().meets(1, 2));
        assert!(!Spans::new(Vec::new()).meets(i64::MIN, i64::MAX));
    }

    #[test]
    fn a_partition_meets_when_an_instant_of_it_does() {
        let s = Spans::new(vec![(100, 200)]);
        assert!(s.meets_partition(Span {
            start: 200,
            end: 300
        }));
        assert!(!s.meets_partition(Span {
            start: 201,
            end: 300
        }));
        assert!(!s.meets_partition(Span { start: 0, end: 100 }));
        assert!(s.meets_partition(Span { start: 0, end: 101 }));
        assert!(s.meets_partition(Span::ALL));
    }
}
