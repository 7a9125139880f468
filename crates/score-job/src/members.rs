//! Member scores from the assessed rentals, and the previous run's scores
//! for the drift gates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_score::member::{RentalOutcome, member_score};
use pitwall_score::{Assessment, Model, Rental};
use pitwall_score_state::{Kept, MemberRecord, RecentRental, Snapshot};

use crate::{JobError, names};

/// What run.json, the gates and the report need of the whole member
/// snapshot after a run: counts and every member's score and grade, not
/// the records (a state run holds only the records it changed).
#[derive(Debug, Default)]
pub struct MemberStats {
    pub total: usize,
    pub eligible: usize,
    pub by_status: BTreeMap<String, u64>,
    /// Every scored member's score (any order).
    pub scores: Vec<f64>,
    pub grades: BTreeMap<String, u64>,
}

impl MemberStats {
    fn add(&mut self, eligible: bool, status: &str, score: Option<f64>, grade: Option<&str>) {
        self.total += 1;
        self.eligible += usize::from(eligible);
        // Counted in place: no String per member once the key is there.
        for (map, key) in [
            (&mut self.by_status, Some(status)),
            (&mut self.grades, grade),
        ] {
            let Some(key) = key else { continue };
            match map.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    map.insert(key.to_string(), 1);
                }
            }
        }
        self.scores.extend(score);
    }

    pub fn of_records(records: &[MemberRecord]) -> MemberStats {
        let mut st = MemberStats::default();
        for m in records {
            let s = &m.score;
            st.add(s.eligible, s.status.as_str(), s.score, s.grade.as_deref());
        }
        st
    }

    /// One pass over the snapshot: every previous score (for the drift
    /// gates), and the stats of the snapshot with `changes` in place of
    /// their members' rows and `removed` left out.
    pub fn before_and_after(
        snapshot: &Snapshot,
        changes: &[Kept],
        removed: &HashSet<String>,
    ) -> Result<(Vec<f64>, MemberStats), JobError> {
        let changed: HashSet<&str> = changes
            .iter()
            .map(|k| k.record.member_id.as_str())
            .collect();
        let (mut previous, mut after) = (Vec::new(), MemberStats::default());
        snapshot.for_each(|m| {
            previous.extend(m.score);
            if !changed.contains(m.member_id) && !removed.contains(m.member_id) {
                after.add(m.eligible, m.status, m.score, m.grade);
            }
        })?;
        for k in changes {
            let s = &k.record.score;
            after.add(s.eligible, s.status.as_str(), s.score, s.grade.as_deref());
        }
        Ok((previous, after))
    }
}

/// One record per member with at least one considered rental, by member_id.
pub fn score(
    rentals: &[Rental],
    assessments: &[Option<Assessment>],
    as_of: i64,
    model: &Model,
) -> Vec<MemberRecord> {
    let mut by_member: BTreeMap<&str, Vec<(&Rental, &Assessment)>> = BTreeMap::new();
    for (r, a) in rentals.iter().zip(assessments) {
        if let Some(a) = a {
            by_member.entry(&r.member_id).or_default().push((r, a));
        }
    }
    by_member
        .into_iter()
        .map(|(m, list)| {
            let outcomes: Vec<RentalOutcome> = list
                .iter()
                .map(|(r, a)| RentalOutcome {
                    rental_id: &r.rental_id,
                    end_at: r.end_at,
                    status: a.status,
                    score: a.score,
                    features: a.features,
                })
                .collect();
            let score = member_score(&outcomes, as_of, model);
            let recent = score
                .rentals_used
                .iter()
                .filter_map(|id| list.iter().find(|(r, _)| &r.rental_id == id))
                .map(|(r, a)| RecentRental {
                    rental_id: r.rental_id.clone(),
                    end_at: r.end_at,
                    distance_km: a.features.distance_km,
                    score: a.score,
                    grade: a.grade.clone(),
                })
                .collect();
            MemberRecord {
                member_id: m.to_string(),
                score,
                recent,
            }
        })
        .collect()
}

/// The scores of the previous run's scored members, by member_id.
pub fn read_previous(dir: &Path) -> Result<HashMap<String, f64>, JobError> {
    let path = dir.join(names::MEMBER_SCORES);
    let err = |problem: String| JobError::Previous {
        path: path.display().to_string(),
        problem,
    };
    let file = std::fs::File::open(&path).map_err(|e| {
        err(format!(
            "{e}; --previous must be the output directory of an earlier `pitwall score run`"
        ))
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| err(e.to_string()))?;
    let mut out = HashMap::new();
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| err(e.to_string()))?;
        let (Some(ids), Some(scores)) = (
            batch.column_by_name("member_id"),
            batch.column_by_name("score"),
        ) else {
            return Err(err("it has no member_id or score column".into()));
        };
        let ids = arrow_cast::cast(ids, &DataType::Utf8).map_err(|e| err(e.to_string()))?;
        let scores =
            arrow_cast::cast(scores, &DataType::Float64).map_err(|e| err(e.to_string()))?;
        let (ids, scores) = (ids.as_string::<i32>(), scores.as_primitive::<Float64Type>());
        for i in 0..batch.num_rows() {
            if ids.is_valid(i) && scores.is_valid(i) {
                out.insert(ids.value(i).to_string(), scores.value(i));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_score::member::{FactorRates, MemberScore, MemberStatus};

    fn record(id: &str, score: Option<f64>) -> MemberRecord {
        MemberRecord {
            member_id: id.into(),
            score: MemberScore {
                eligible: score.is_some(),
                status: if score.is_some() {
                    MemberStatus::Scored
                } else {
                    MemberStatus::InsufficientDistance
                },
                score,
                grade: score.map(|_| "GOOD".to_string()),
                rentals_used: Vec::new(),
                rentals_12m: 1,
                distance_km_total: 1.0,
                rates: FactorRates::default(),
            },
            recent: Vec::new(),
        }
    }

    #[test]
    fn one_pass_gives_the_previous_scores_and_the_stats_after_the_changes() -> Result<(), JobError>
    {
        let before = [
            record("a", Some(50.0)),
            record("b", Some(60.0)),
            record("c", None),
        ];
        let base = pitwall_score_state::snapshot::to_batch(&before, "m@1", 1)?;
        let snapshot = Snapshot::new(
            (
                vec![base],
                pitwall_score_state::member_file::Rentals::Inline,
            ),
            Vec::new(),
        )?;
        let changes = [
            Kept {
                record: record("a", Some(70.0)),
                part: None,
            },
            Kept {
                record: record("d", None),
                part: None,
            },
        ];
        let removed: HashSet<String> = ["b".to_string()].into();
        let (mut previous, after) = MemberStats::before_and_after(&snapshot, &changes, &removed)?;
        previous.sort_by(f64::total_cmp);
        assert_eq!(previous, vec![50.0, 60.0]);
        assert_eq!((after.total, after.eligible), (3, 1));
        assert_eq!(after.scores, vec![70.0]);
        assert_eq!(after.by_status.get("insufficient_distance"), Some(&2));
        assert_eq!(after.grades.get("GOOD"), Some(&1));
        Ok(())
    }
}
