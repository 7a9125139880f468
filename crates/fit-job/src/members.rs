//! Member scores under a model, as the score job computes them
//! (`pitwall-score::member`), with each rental's score recomputed by the
//! model from its features: the member view and the stability figures.

use std::collections::HashMap;

use pitwall_score::member::{MemberScore, RentalOutcome, member_score};
use pitwall_score::{Model, Status};

use crate::data::RentalRow;

/// Row indices of each member's rentals, members in id order.
pub struct ByMember<'a> {
    pub members: Vec<(&'a str, Vec<usize>)>,
}

impl<'a> ByMember<'a> {
    pub fn new(rows: &'a [RentalRow]) -> ByMember<'a> {
        let mut map: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            map.entry(r.member_id.as_str()).or_default().push(i);
        }
        let mut members: Vec<(&str, Vec<usize>)> = map.into_iter().collect();
        members.sort_by(|a, b| a.0.cmp(b.0));
        ByMember { members }
    }
}

/// Every member's score at `as_of` under `model`, in [`ByMember`] order,
/// computed on `threads` threads.
pub fn scores(
    rows: &[RentalRow],
    by: &ByMember<'_>,
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
                        .map(|(_, idx)| one(rows, idx, model, as_of))
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
            rental_id: r.rental_id.clone(),
            end_at: r.end_at,
            status: r.status,
            score: (r.status == Status::Scored).then(|| model.rental_score(&r.features)),
            features: r.features,
        })
        .collect();
    member_score(&outcomes, as_of, model)
}
