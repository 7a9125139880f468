//! Member scores under a model, as the score job computes them
//! (`pitwall-score::member`), with each rental's score recomputed by the
//! model from its features: the member view and the stability figures.

use pitwall_score::member::{MemberStatus, RentalOutcome, member_value};
use pitwall_score::{Features, Model, Status};

use crate::data::{Results, ordered_key};
use crate::par::each;

/// Every member's rentals side by side, members in id order: built once,
/// then each member score under each model reads one contiguous stretch
/// instead of millions of rows scattered over the results. Built and read
/// in parts, one per thread, each a range of members.
pub struct ByMember<'r> {
    parts: Vec<Part<'r>>,
}

struct Part<'r> {
    /// Its m-th member's rentals are `entries[starts[m]..starts[m + 1]]`.
    starts: Vec<usize>,
    entries: Vec<Entry<'r>>,
}

/// What a member score and the member view read of a rental.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'r> {
    pub rental_id: &'r str,
    pub end_at: i64,
    pub status: Status,
    pub claims: u32,
    pub features: Features,
}

impl<'r> ByMember<'r> {
    pub fn new(results: &'r Results, threads: usize) -> ByMember<'r> {
        let order = id_order(&results.members);
        let mut place = vec![0usize; order.len()];
        for (k, &m) in order.iter().enumerate() {
            place[m] = k;
        }
        // A counting sort by member place: rows stay in rental id order
        // within a member.
        let mut starts = vec![0usize; order.len() + 1];
        for r in &results.rows {
            starts[place[r.member as usize] + 1] += 1;
        }
        for k in 1..starts.len() {
            starts[k] += starts[k - 1];
        }
        let mut next = starts.clone();
        let mut rows = vec![0u32; results.rows.len()];
        for (i, r) in results.rows.iter().enumerate() {
            let k = &mut next[place[r.member as usize]];
            rows[*k] = u32::try_from(i).unwrap_or(u32::MAX);
            *k += 1;
        }
        // The copy reads rows at random: the threads share it.
        let members = order.len();
        let chunk = members.div_ceil(threads.max(1)).max(1);
        let ranges: Vec<(usize, usize)> = (0..members)
            .step_by(chunk)
            .map(|first| (first, (first + chunk).min(members)))
            .collect();
        let parts = each(&ranges, |&(first, last)| {
            let (from, to) = (starts[first], starts[last]);
            let entries = rows[from..to]
                .iter()
                .map(|&i| {
                    let r = &results.rows[i as usize];
                    Entry {
                        rental_id: results.rental_id(i as usize),
                        end_at: r.end_at,
                        status: r.status,
                        claims: r.claims,
                        features: r.features,
                    }
                })
                .collect();
            Part {
                starts: starts[first..=last].iter().map(|s| s - from).collect(),
                entries,
            }
        });
        ByMember { parts }
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.starts.len() - 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every member's rentals, in member id order.
    pub fn members(&self) -> impl Iterator<Item = &[Entry<'r>]> {
        self.parts.iter().flat_map(|p| p.members())
    }
}

impl<'r> Part<'r> {
    fn members(&self) -> impl Iterator<Item = &[Entry<'r>]> {
        self.starts.windows(2).map(|w| &self.entries[w[0]..w[1]])
    }
}

/// Member indices in member id order. Ids of at most 15 bytes are sorted
/// by their [`ordered_key`]s, integers that order as the ids do, without a
/// comparison that follows a pointer.
fn id_order(ids: &[String]) -> Vec<usize> {
    let keyed: Option<Vec<(u128, usize)>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| ordered_key(id).map(|k| (k, i)))
        .collect();
    match keyed {
        Some(mut keyed) => {
            keyed.sort_unstable();
            keyed.into_iter().map(|(_, i)| i).collect()
        }
        None => {
            let mut order: Vec<usize> = (0..ids.len()).collect();
            order.sort_unstable_by(|&a, &b| ids[a].cmp(&ids[b]));
            order
        }
    }
}

/// A member's score under a model and the grade it falls in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member<'m> {
    pub status: MemberStatus,
    pub score: Option<f64>,
    pub grade: Option<&'m str>,
}

/// Every member's score at `as_of` under `model`, in [`ByMember`] order,
/// each part of the members on a thread of its own.
pub fn scores<'m>(by: &ByMember<'_>, model: &'m Model, as_of: i64) -> Vec<Member<'m>> {
    let parts = each(&by.parts, |part| {
        let mut outcomes = Vec::new();
        part.members()
            .map(|m| one(m, model, as_of, &mut outcomes))
            .collect::<Vec<_>>()
    });
    parts.into_iter().flatten().collect()
}

fn one<'r, 'm>(
    entries: &[Entry<'r>],
    model: &'m Model,
    as_of: i64,
    outcomes: &mut Vec<RentalOutcome<'r>>,
) -> Member<'m> {
    outcomes.clear();
    outcomes.extend(
        entries
            .iter()
            .filter(|e| e.end_at <= as_of)
            .map(|e| RentalOutcome {
                rental_id: e.rental_id,
                end_at: e.end_at,
                status: e.status,
                score: (e.status == Status::Scored).then(|| model.rental_score(&e.features)),
                features: e.features,
            }),
    );
    let (status, score) = member_value(outcomes, as_of, model);
    Member {
        status,
        score,
        grade: score.map(|s| model.grade(s).grade.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_ordered_as_their_ids_are() {
        let ids: Vec<String> = [
            "m2",
            "m10",
            "m1",
            "m1\0",
            "",
            "zz",
            "a",
            "m09999999999999",
            "m0999999999999",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut want: Vec<usize> = (0..ids.len()).collect();
        want.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
        assert_eq!(id_order(&ids), want);
        // An id longer than 15 bytes: the strings themselves are compared.
        let mut long = ids.clone();
        long.push("m".repeat(16));
        let mut want: Vec<usize> = (0..long.len()).collect();
        want.sort_by(|&a, &b| long[a].cmp(&long[b]));
        assert_eq!(id_order(&long), want);
    }
}
