//! Member scores under a model, as the score job computes them
//! (`pitwall-score::member`), with each rental's score recomputed by the
//! model from its features: the member view and the stability figures.

use pitwall_score::member::{MemberScore, RentalOutcome, member_score};
use pitwall_score::{Model, Status};

use crate::data::{RentalRow, Results};

/// Row indices of each member's rentals, members in id order.
pub struct ByMember {
    pub members: Vec<Vec<usize>>,
}

impl ByMember {
    pub fn new(results: &Results) -> ByMember {
        let mut by: Vec<Vec<usize>> = vec![Vec::new(); results.members.len()];
        for (i, r) in results.rows.iter().enumerate() {
            by[r.member as usize].push(i);
        }
        let mut order: Vec<usize> = (0..by.len()).collect();
        order.sort_by(|&a, &b| results.members[a].cmp(&results.members[b]));
        let mut by: Vec<Option<Vec<usize>>> = by.into_iter().map(Some).collect();
        ByMember {
            members: order.iter().filter_map(|&m| by[m].take()).collect(),
        }
    }
}

/// Every member's score at `as_of` under `model`, in [`ByMember`] order,
/// computed on `threads` threads.
pub fn scores(
    rows: &[RentalRow],
    by: &ByMember,
    model: &Model,
    as_of: i64,
    threads: usize,
) -> Vec<MemberScore> {
    let chunk = by.members.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let jobs: Vec<_> = by
            .members
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|idx| one(rows, idx, model, as_of))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| j.join().unwrap_or_default())
            .collect()
    })
}

fn one(rows: &[RentalRow], idx: &[usize], model: &Model, as_of: i64) -> MemberScore {
    let outcomes: Vec<RentalOutcome> = idx
        .iter()
        .map(|&i| &rows[i])
        .filter(|r| r.end_at <= as_of)
        .map(|r| RentalOutcome {
            rental_id: &r.rental_id,
            end_at: r.end_at,
            status: r.status,
            score: (r.status == Status::Scored).then(|| model.rental_score(&r.features)),
            features: r.features,
        })
        .collect();
    member_score(&outcomes, as_of, model)
}
