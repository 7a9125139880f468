//! Member records from kept final parts and open rentals: how a run
//! recomputes a member without reading its final rentals again
//! (`pitwall_score::member_part`), and how the parts are built from the
//! final results when nothing was kept (a first run, a model change, a
//! rescore, a state from before parts).

use std::collections::{BTreeMap, HashMap};

use pitwall_score::member::RentalOutcome;
use pitwall_score::member_part::{FinalPart, KeptRental, member_score_of};
use pitwall_score::{Model, Status};

use crate::StateError;
use crate::results::{Columns, ResultRow};
use crate::snapshot::{MemberRecord, RecentRental};
use crate::table::FinalTable;

/// A final row as its member's part keeps it.
pub fn kept_of_row(r: &ResultRow) -> KeptRental {
    KeptRental {
        rental_id: r.rental.rental_id.clone(),
        end_at: r.rental.end_at,
        score: r.assessment.score,
        grade: r.assessment.grade.clone(),
        features: r.assessment.features,
    }
}

fn kept_of_columns(c: &Columns<'_>, i: usize) -> Result<(KeptRental, Status), StateError> {
    let valid = |a: &dyn arrow_array::Array| a.is_valid(i);
    Ok((
        KeptRental {
            rental_id: c.rental_id.value(i).to_string(),
            end_at: c.end_at.value(i),
            score: valid(c.score).then(|| c.score.value(i)),
            grade: valid(c.grade).then(|| c.grade.value(i).to_string()),
            features: c.features(i)?,
        },
        c.status(i)?,
    ))
}

/// Every member's part from all the final results, at `as_of`.
pub fn parts_of_all(
    table: &FinalTable,
    as_of: i64,
    model: &Model,
) -> Result<HashMap<String, FinalPart>, StateError> {
    let mut parts: HashMap<String, FinalPart> = HashMap::new();
    table.for_each(|c, i| {
        let (kept, status) = kept_of_columns(c, i)?;
        parts
            .entry(c.member_id.value(i).to_string())
            .or_default()
            .add(kept, status, as_of, model);
        Ok(())
    })?;
    Ok(parts)
}

/// Per member: its final rentals (made final before run `seq`) that ended
/// in (from − window, to − window]: those that left the window between two
/// runs at as_of `from` and `to`.
pub fn leaving(
    table: &FinalTable,
    from: i64,
    to: i64,
    window_days: i64,
    seq: u64,
) -> Result<HashMap<String, u32>, StateError> {
    let window = window_days.saturating_mul(86_400_000);
    let (lo, hi) = (from.saturating_sub(window), to.saturating_sub(window));
    let mut out: HashMap<String, u32> = HashMap::new();
    table.for_each(|c, i| {
        let end = c.end_at.value(i);
        let earlier = c
            .finality
            .as_ref()
            .is_none_or(|f| u64::try_from(f.seq.value(i)).is_ok_and(|s| s < seq));
        if end > lo && end <= hi && earlier {
            *out.entry(c.member_id.value(i).to_string()).or_default() += 1;
        }
        Ok(())
    })?;
    Ok(out)
}

/// A member's record from its part (at `as_of`) and its open rentals, or
/// None when it has no rental at all.
pub fn record_of(
    member_id: &str,
    part: &FinalPart,
    open: &[&ResultRow],
    as_of: i64,
    model: &Model,
) -> Option<MemberRecord> {
    if part.is_empty() && open.is_empty() {
        return None;
    }
    let outcomes: Vec<RentalOutcome<'_>> = open
        .iter()
        .map(|r| RentalOutcome {
            rental_id: &r.rental.rental_id,
            end_at: r.rental.end_at,
            status: r.assessment.status,
            score: r.assessment.score,
            features: r.assessment.features,
        })
        .collect();
    let score = member_score_of(part, &outcomes, as_of, model);
    let recent = score
        .rentals_used
        .iter()
        .filter_map(|id| {
            if let Some(k) = part.recent.iter().find(|k| &k.rental_id == id) {
                return Some(RecentRental {
                    rental_id: k.rental_id.clone(),
                    end_at: k.end_at,
                    distance_km: k.features.distance_km,
                    score: k.score,
                    grade: k.grade.clone(),
                });
            }
            open.iter()
                .find(|r| &r.rental.rental_id == id)
                .map(|r| RecentRental {
                    rental_id: r.rental.rental_id.clone(),
                    end_at: r.rental.end_at,
                    distance_km: r.assessment.features.distance_km,
                    score: r.assessment.score,
                    grade: r.assessment.grade.clone(),
                })
        })
        .collect();
    Some(MemberRecord {
        member_id: member_id.to_string(),
        score,
        recent,
    })
}

/// Open rows by member.
pub fn open_by_member(open: &[ResultRow]) -> BTreeMap<&str, Vec<&ResultRow>> {
    let mut by: BTreeMap<&str, Vec<&ResultRow>> = BTreeMap::new();
    for r in open {
        by.entry(r.rental.member_id.as_str()).or_default().push(r);
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::row;
    use crate::results::to_batch;
    use crate::table;

    const DAY: i64 = 86_400_000;

    #[test]
    fn records_from_parts_are_the_records_from_all_the_rentals() -> Result<(), StateError> {
        let model = Model::default();
        let mut finals: Vec<ResultRow> = (0..14)
            .map(|i| {
                row(
                    &format!("r{i:02}"),
                    if i % 3 == 0 { "a" } else { "b" },
                    (i * 40 + 1) * DAY,
                    true,
                )
            })
            .collect();
        finals.sort_by(|x, y| x.rental.rental_id.cmp(&y.rental.rental_id));
        let t = FinalTable::new(vec![to_batch(&finals, true)?])?;
        let open = vec![
            row("z1", "a", 600 * DAY, false),
            row("z2", "c", 601 * DAY, false),
        ];
        let as_of = 602 * DAY;
        let want = table::members(&t, &open, as_of, &model)?;
        let parts = parts_of_all(&t, as_of, &model)?;
        let by = open_by_member(&open);
        let mut got = Vec::new();
        for id in ["a", "b", "c"] {
            let empty = FinalPart::default();
            let part = parts.get(id).unwrap_or(&empty);
            let o = by.get(id).cloned().unwrap_or_default();
            got.extend(record_of(id, part, &o, as_of, &model));
        }
        assert_eq!(got, want);
        assert!(record_of("nobody", &FinalPart::default(), &[], as_of, &model).is_none());
        let left = leaving(&t, as_of, as_of + 100 * DAY, 365, 99)?;
        assert!(left.values().sum::<u32>() > 0);
        assert!(
            leaving(&t, as_of, as_of + 100 * DAY, 365, 3)?.is_empty(),
            "made final by run 3 itself"
        );
        Ok(())
    }
}
