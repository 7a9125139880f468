//! The final rental results as the state holds them in memory: the
//! columns of each file, newest last, sorted by rental_id within a file. A
//! rental found in a later file supersedes the same rental in an earlier one.
//! Rows are never turned into structs wholesale: five million of them as
//! owned strings would take gigabytes.

use std::collections::{BTreeMap, HashMap};

use arrow_array::RecordBatch;
use pitwall_score::Model;
use pitwall_score::member::{RentalOutcome, member_score};

use crate::StateError;
use crate::results::{Columns, ResultRow};
use crate::snapshot::{MemberRecord, RecentRental};

pub struct FinalTable {
    /// One batch per file, each sorted by rental_id.
    batches: Vec<RecordBatch>,
    /// Per batch and row: false where a later batch holds the same rental.
    live: Vec<Vec<bool>>,
}

impl FinalTable {
    pub fn empty() -> FinalTable {
        FinalTable {
            batches: Vec::new(),
            live: Vec::new(),
        }
    }

    /// Batches oldest first, each already sorted by rental_id.
    pub fn new(batches: Vec<RecordBatch>) -> Result<FinalTable, StateError> {
        let mut table = FinalTable::empty();
        for b in batches {
            table.push(b)?;
        }
        Ok(table)
    }

    /// Batches that share no rental (days of final results): nothing to
    /// supersede, so no batch is searched for another's rentals.
    pub fn disjoint(batches: Vec<RecordBatch>) -> Result<FinalTable, StateError> {
        Ok(FinalTable {
            live: batches.iter().map(|b| vec![true; b.num_rows()]).collect(),
            batches,
        })
    }

    /// Adds a newer file's rows (sorted by rental_id): they supersede the
    /// same rentals in the files before.
    pub fn push(&mut self, batch: RecordBatch) -> Result<(), StateError> {
        {
            let ids = Columns::of(&batch)?.rental_id;
            for i in 0..batch.num_rows() {
                for (older, live) in self.batches.iter().zip(self.live.iter_mut()) {
                    if let Some(row) = find(older, ids.value(i))? {
                        live[row] = false;
                    }
                }
            }
        }
        self.live.push(vec![true; batch.num_rows()]);
        self.batches.push(batch);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.live.iter().flatten().filter(|&&l| l).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every live row, batch by batch.
    pub fn for_each(
        &self,
        mut f: impl FnMut(&Columns<'_>, usize) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        for (b, live) in self.batches.iter().zip(&self.live) {
            let cols = Columns::of(b)?;
            for (i, _) in live.iter().enumerate().filter(|(_, l)| **l) {
                f(&cols, i)?;
            }
        }
        Ok(())
    }

    /// The final rentals that ended in `[from, to)`: a rescore's range.
    pub fn ended_in(&self, from: i64, to: i64) -> Result<Vec<ResultRow>, StateError> {
        let mut out = Vec::new();
        self.for_each(|c, i| {
            let end = c.end_at.value(i);
            if end >= from && end < to {
                out.push(c.row(i)?);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// The row of `rental_id` in a batch sorted by rental_id.
fn find(batch: &RecordBatch, rental_id: &str) -> Result<Option<usize>, StateError> {
    Ok(find_sorted(Columns::of(batch)?.rental_id, rental_id))
}

/// The position of `id` in sorted `ids`, if it is there.
pub(crate) fn find_sorted(ids: &arrow_array::StringArray, id: &str) -> Option<usize> {
    let n = arrow_array::Array::len(ids);
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ids.value(mid) < id {
            lo = mid + 1
        } else {
            hi = mid
        }
    }
    (lo < n && ids.value(lo) == id).then_some(lo)
}

/// Where one of a member's rentals lives: a final row, or an open one.
#[derive(Clone, Copy)]
enum At {
    Final(u32, u32),
    Open(u32),
}

/// Every member's record at `as_of`, by member_id, from the final results
/// and the open rentals: the spec's member rules applied afresh, so a rental
/// leaving the 365-day window changes its member without a new rental.
pub fn members(
    table: &FinalTable,
    open: &[ResultRow],
    as_of: i64,
    model: &Model,
) -> Result<Vec<MemberRecord>, StateError> {
    let cols: Vec<Columns<'_>> = table
        .batches
        .iter()
        .map(Columns::of)
        .collect::<Result<_, _>>()?;
    let mut by_member: HashMap<&str, Vec<At>> = HashMap::new();
    for (b, (c, live)) in cols.iter().zip(&table.live).enumerate() {
        for (i, _) in live.iter().enumerate().filter(|(_, l)| **l) {
            by_member
                .entry(c.member_id.value(i))
                .or_default()
                .push(At::Final(b as u32, i as u32));
        }
    }
    for (i, r) in open.iter().enumerate() {
        by_member
            .entry(r.rental.member_id.as_str())
            .or_default()
            .push(At::Open(i as u32));
    }
    let sorted: BTreeMap<&str, Vec<At>> = by_member.into_iter().collect();
    let mut out = Vec::with_capacity(sorted.len());
    for (member, places) in sorted {
        let outcomes = places
            .iter()
            .map(|&at| outcome(&cols, open, at))
            .collect::<Result<Vec<_>, _>>()?;
        let score = member_score(&outcomes, as_of, model);
        let recent = score
            .rentals_used
            .iter()
            .filter_map(|id| outcomes.iter().position(|o| o.rental_id == id))
            .map(|k| recent(&cols, open, places[k]))
            .collect();
        out.push(MemberRecord {
            member_id: member.to_string(),
            score,
            recent,
        });
    }
    Ok(out)
}

fn outcome<'a>(
    cols: &'a [Columns<'a>],
    open: &'a [ResultRow],
    at: At,
) -> Result<RentalOutcome<'a>, StateError> {
    Ok(match at {
        At::Final(b, i) => {
            let (c, i) = (&cols[b as usize], i as usize);
            RentalOutcome {
                rental_id: c.rental_id.value(i),
                end_at: c.end_at.value(i),
                status: c.status(i)?,
                score: arrow_array::Array::is_valid(c.score, i).then(|| c.score.value(i)),
                features: c.features(i)?,
            }
        }
        At::Open(k) => {
            let r = &open[k as usize];
            RentalOutcome {
                rental_id: &r.rental.rental_id,
                end_at: r.rental.end_at,
                status: r.assessment.status,
                score: r.assessment.score,
                features: r.assessment.features,
            }
        }
    })
}

fn recent(cols: &[Columns<'_>], open: &[ResultRow], at: At) -> RecentRental {
    match at {
        At::Final(b, i) => {
            let (c, i) = (&cols[b as usize], i as usize);
            let valid = |a: &dyn arrow_array::Array| a.is_valid(i);
            RecentRental {
                rental_id: c.rental_id.value(i).to_string(),
                end_at: c.end_at.value(i),
                distance_km: c.distance_km.value(i),
                score: valid(c.score).then(|| c.score.value(i)),
                grade: valid(c.grade).then(|| c.grade.value(i).to_string()),
            }
        }
        At::Open(k) => {
            let r = &open[k as usize];
            RecentRental {
                rental_id: r.rental.rental_id.clone(),
                end_at: r.rental.end_at,
                distance_km: r.assessment.features.distance_km,
                score: r.assessment.score,
                grade: r.assessment.grade.clone(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Finality, to_batch};
    use pitwall_score::{Assessment, Features, Rental, Status};

    const DAY: i64 = 86_400_000;

    fn row(id: &str, member: &str, end_at: i64, score: f64) -> ResultRow {
        ResultRow {
            rental: Rental {
                rental_id: id.into(),
                member_id: member.into(),
                car_id: "c".into(),
                start_at: end_at - 1000,
                end_at,
            },
            assessment: Assessment {
                features: Features {
                    samples: 2,
                    coverage: 1.0,
                    distance_km: 60.0,
                    moving_s: 10,
                    ..Features::default()
                },
                status: Status::Scored,
                reason: None,
                score: Some(score),
                grade: Some("GOOD".into()),
            },
            model: "m@1".into(),
            finality: Some(Finality {
                seq: 1,
                run_id: "r".into(),
                as_of: end_at,
            }),
        }
    }

    #[test]
    fn a_later_file_supersedes_an_earlier_one() -> Result<(), StateError> {
        let old = to_batch(&[row("a", "m", DAY, 50.0), row("b", "m", DAY, 60.0)], true)?;
        let new = to_batch(&[row("b", "m", DAY, 90.0)], true)?;
        let t = FinalTable::new(vec![old, new])?;
        assert_eq!(t.len(), 2);
        let rows = t.ended_in(0, 2 * DAY)?;
        let ids: Vec<&str> = rows.iter().map(|r| r.rental.rental_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b"], "each rental once, c never");
        let b = rows.iter().find(|r| r.rental.rental_id == "b");
        assert_eq!(b.and_then(|r| r.assessment.score), Some(90.0));
        Ok(())
    }

    #[test]
    fn members_leave_the_window_without_a_new_rental() -> Result<(), StateError> {
        let t = FinalTable::new(vec![to_batch(
            &[
                row("a", "m", 10 * DAY, 50.0),
                row("b", "m", 300 * DAY, 90.0),
            ],
            true,
        )?])?;
        let model = Model::default();
        let before = members(&t, &[], 370 * DAY, &model)?;
        assert_eq!(before[0].score.score, Some(70.0));
        let after = members(&t, &[], 380 * DAY, &model)?;
        assert_eq!(after[0].score.score, Some(90.0));
        assert_eq!(after[0].recent.len(), 1);
        assert_eq!(after[0].score.rentals_12m, 1);
        Ok(())
    }

    #[test]
    fn open_rentals_count_with_the_final_ones() -> Result<(), StateError> {
        let t = FinalTable::new(vec![to_batch(&[row("a", "m", DAY, 50.0)], true)?])?;
        let mut open = row("z", "m", 2 * DAY, 0.0);
        open.finality = None;
        open.assessment.status = Status::Pending;
        open.assessment.score = None;
        let other = row("y", "n", 2 * DAY, 80.0);
        let m = members(&t, &[open, other], 3 * DAY, &Model::default())?;
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].member_id.as_str(), m[0].score.rentals_12m), ("m", 2));
        assert_eq!(m[1].recent[0].rental_id, "y");
        Ok(())
    }
}
