//! The final results as the state keeps them: one file per UTC day of the
//! rentals' end_at, each sorted by rental_id. What a run needs of them is
//! a range of end times (the late-sample lookback, the rentals leaving the
//! 365-day window, the days of the rentals it is given, a rescore's range),
//! so it reads those days alone; a run that makes rentals final rewrites
//! only their days (today's, mostly).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use arrow_array::{BooleanArray, RecordBatch, UInt32Array};
use serde::{Deserialize, Serialize};

use crate::StateError;
use crate::results::{self, Columns, ResultRow};
use crate::table::FinalTable;

pub const DAY_MS: i64 = 86_400_000;

/// One day's file of final results, as the run log names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayFile {
    /// Days since the epoch (UTC) of the rentals' end_at.
    pub day: i64,
    pub file: String,
    pub rows: u64,
}

/// The UTC day of an instant.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// The days of an instant range [from, to], inclusive.
pub fn days_between(from: i64, to: i64) -> impl Iterator<Item = i64> {
    day_of(from)..=day_of(to.max(from))
}

fn err(problem: impl ToString) -> StateError {
    StateError::Table {
        what: "final results by day".into(),
        problem: problem.to_string(),
    }
}

/// Loaded days of final results.
#[derive(Default)]
pub struct FinalDays {
    pub days: BTreeMap<i64, RecordBatch>,
    /// Every day the state holds, loaded or not.
    pub known: BTreeSet<i64>,
    /// Read from a state of the previous layout (files of any days): every
    /// day is written anew by the next commit.
    pub from_legacy: bool,
}

impl FinalDays {
    /// Splits rows of any days (a legacy table) into day batches.
    pub fn split(table: &FinalTable) -> Result<FinalDays, StateError> {
        let mut by_day: BTreeMap<i64, Vec<ResultRow>> = BTreeMap::new();
        table.for_each(|c, i| {
            by_day
                .entry(day_of(c.end_at.value(i)))
                .or_default()
                .push(c.row(i)?);
            Ok(())
        })?;
        let mut days = BTreeMap::new();
        for (day, mut rows) in by_day {
            rows.sort_by(|a, b| a.rental.rental_id.cmp(&b.rental.rental_id));
            days.insert(day, results::to_batch(&rows, true)?);
        }
        Ok(FinalDays {
            known: days.keys().copied().collect(),
            days,
            from_legacy: true,
        })
    }

    /// The loaded days as one table (days hold disjoint rentals).
    pub fn table(&self) -> Result<FinalTable, StateError> {
        FinalTable::disjoint(self.days.values().cloned().collect())
    }

    pub fn rows(&self) -> usize {
        self.days.values().map(RecordBatch::num_rows).sum()
    }

    /// Whether `rental_id`, which ended at `end_at`, is final: looked up in
    /// its day alone, which must be loaded if the state has it.
    pub fn contains(&self, rental_id: &str, end_at: i64) -> Result<bool, StateError> {
        let Some(batch) = self.days.get(&day_of(end_at)) else {
            return Ok(false);
        };
        Ok(crate::table::find_sorted(Columns::of(batch)?.rental_id, rental_id).is_some())
    }

    /// Final results after [`apply`](Self::apply) changed `touched`: the
    /// untouched days of `before` and the loaded touched ones.
    pub fn total_after(&self, touched: &BTreeSet<i64>, before: &[DayFile]) -> u64 {
        if self.from_legacy {
            return self.rows() as u64;
        }
        let untouched: u64 = before
            .iter()
            .filter(|d| !touched.contains(&d.day))
            .map(|d| d.rows)
            .sum();
        let changed: usize = touched
            .iter()
            .filter_map(|d| self.days.get(d))
            .map(RecordBatch::num_rows)
            .sum();
        untouched + changed as u64
    }

    /// Puts `made_final` into their days, and takes the rentals of
    /// `dropped` (rescored, and not final again) out of theirs; returns the
    /// days changed. Every day touched must be loaded.
    pub fn apply(
        &mut self,
        made_final: &[ResultRow],
        dropped: &HashSet<String>,
        dropped_days: &BTreeSet<i64>,
    ) -> Result<BTreeSet<i64>, StateError> {
        let mut new: BTreeMap<i64, Vec<ResultRow>> = BTreeMap::new();
        for r in made_final {
            new.entry(day_of(r.rental.end_at))
                .or_default()
                .push(r.clone());
        }
        let touched: BTreeSet<i64> = new.keys().chain(dropped_days).copied().collect();
        // A day the state has but the run did not read would be written
        // with only the new rows: the rest of it lost.
        if let Some(day) = touched
            .iter()
            .find(|d| self.known.contains(d) && !self.days.contains_key(d))
        {
            return Err(err(format!(
                "day {day} of the final results was not read but changes; this is a bug in \
                 pitwall, and nothing was committed"
            )));
        }
        for &day in &touched {
            let mut rows = new.remove(&day).unwrap_or_default();
            rows.sort_by(|a, b| a.rental.rental_id.cmp(&b.rental.rental_id));
            let replaced: HashSet<&str> = rows
                .iter()
                .map(|r| r.rental.rental_id.as_str())
                .chain(dropped.iter().map(String::as_str))
                .collect();
            let added = results::to_batch(&rows, true)?;
            let merged = match self.days.get(&day) {
                Some(old) => merge(old, &replaced, &added)?,
                None => added,
            };
            if merged.num_rows() == 0 {
                self.days.remove(&day);
                self.known.remove(&day);
            } else {
                self.days.insert(day, merged);
                self.known.insert(day);
            }
        }
        Ok(touched)
    }
}

/// `old` without the rentals in `replaced`, with `added`, sorted by rental_id.
fn merge(
    old: &RecordBatch,
    replaced: &HashSet<&str>,
    added: &RecordBatch,
) -> Result<RecordBatch, StateError> {
    let ids = Columns::of(old)?.rental_id;
    let keep: BooleanArray = (0..old.num_rows())
        .map(|i| Some(!replaced.contains(ids.value(i))))
        .collect();
    let kept = arrow_select::filter::filter_record_batch(old, &keep).map_err(err)?;
    let both = arrow_select::concat::concat_batches(&old.schema(), [&kept, added]).map_err(err)?;
    let ids = Columns::of(&both)?.rental_id;
    let mut order: Vec<u32> = (0..both.num_rows() as u32).collect();
    order.sort_by(|&a, &b| ids.value(a as usize).cmp(ids.value(b as usize)));
    arrow_select::take::take_record_batch(&both, &UInt32Array::from(order)).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::row;

    #[test]
    fn rentals_go_to_the_day_they_ended_and_replace_their_older_rows() -> Result<(), StateError> {
        let legacy = FinalTable::new(vec![results::to_batch(
            &[
                row("a", "m", DAY_MS + 5, true),
                row("b", "m", 3 * DAY_MS + 1, true),
                row("c", "n", DAY_MS + 9, true),
            ],
            true,
        )?])?;
        let mut days = FinalDays::split(&legacy)?;
        assert_eq!(days.days.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        let mut again = row("a", "m", DAY_MS + 5, true);
        again.assessment.score = Some(12.0);
        let fresh = row("d", "n", 2 * DAY_MS, true);
        let dropped: HashSet<String> = ["b".to_string()].into();
        let touched = days.apply(&[again, fresh], &dropped, &[3].into())?;
        assert_eq!(touched, [1, 2, 3].into());
        assert!(!days.days.contains_key(&3), "a day left empty is gone");
        let t = days.table()?;
        assert_eq!(t.len(), 3);
        let a = t.ended_in(0, 2 * DAY_MS)?;
        let ids: Vec<&str> = a.iter().map(|r| r.rental.rental_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "c"], "sorted by rental_id within the day");
        assert_eq!(a[0].assessment.score, Some(12.0));
        assert_eq!(
            days_between(DAY_MS - 1, 2 * DAY_MS).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        Ok(())
    }

    #[test]
    fn a_day_the_state_has_but_the_run_did_not_read_is_never_overwritten() {
        let mut days = FinalDays {
            days: BTreeMap::new(),
            known: [5].into(),
            from_legacy: false,
        };
        let late = row("x", "m", 5 * DAY_MS + 1, true);
        let e = days.apply(&[late], &HashSet::new(), &BTreeSet::new());
        assert!(e.is_err_and(|e| e.to_string().contains("day 5")));
        assert!(days.days.is_empty(), "nothing changed");
    }
}
