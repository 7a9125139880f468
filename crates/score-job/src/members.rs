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
use pitwall_score_state::{MemberRecord, RecentRental, Snapshot};

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

    /// The snapshot with `changes` applied and `removed` left out.
    pub fn of_snapshot(
        snapshot: &Snapshot,
        changes: &[MemberRecord],
        removed: &HashSet<String>,
    ) -> Result<MemberStats, JobError> {
        let mut st = MemberStats::default();
        snapshot.for_each_with(changes, removed, |m| {
            st.add(m.eligible, m.status, m.score, m.grade)
        })?;
        Ok(st)
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
