//! What a member's final rentals give its record, kept between runs so that
//! a run needs none of those rentals again (`score-state.md`, "What a run
//! reads of the state"): their exact scored distance, how many ended within
//! the window, and the latest scored ones within it.
//!
//! Why that is enough: final rentals never change (but by a rescore, which
//! rebuilds the part). The record's latest rentals are the latest of the
//! final and open ones together, so the latest `latest_rentals` final ones
//! suffice. When the window moves, only the oldest rentals leave it: a kept
//! rental leaves only when every final one within the window was kept, so
//! dropping it loses none that the record needs. The distance is an exact
//! sum ([`ExactSum`]), so adding to it gives the bits of a sum over all.

use crate::exact::ExactSum;
use crate::features::Features;
use crate::member::{MemberScore, Pool, RentalOutcome, Window, choose_from, score_of};
use crate::model::Model;
use crate::rental::Status;

/// One kept final rental: what a member record shows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptRental {
    pub rental_id: String,
    pub end_at: i64,
    pub score: Option<f64>,
    pub grade: Option<String>,
    pub features: Features,
}

/// A member's final rentals, as of the as_of of the last run that updated it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FinalPart {
    /// Final rentals of any status, ever: a member with one has a record.
    pub rentals: u64,
    /// Scored distance of all final rentals, exactly.
    pub distance: ExactSum,
    /// Final rentals (any status) that ended within the window.
    pub in_window: u32,
    /// The latest scored final rentals within the window, latest first.
    pub recent: Vec<KeptRental>,
}

impl FinalPart {
    /// A rental made final by a run at `as_of`.
    pub fn add(&mut self, rental: KeptRental, status: Status, as_of: i64, model: &Model) {
        let window = Window::at(as_of, model);
        let scored = status == Status::Scored && rental.end_at <= as_of;
        self.rentals += 1;
        if scored {
            self.distance.add(rental.features.distance_km);
        }
        if !window.holds(rental.end_at) {
            return;
        }
        self.in_window += 1;
        if scored {
            let key = |r: &KeptRental| (std::cmp::Reverse(r.end_at), r.rental_id.clone());
            let at = self.recent.partition_point(|r| key(r) < key(&rental));
            self.recent.insert(at, rental);
            self.recent.truncate(model.member.latest_rentals);
        }
    }

    /// Moves the part to a later `as_of`: `left` of its final rentals ended
    /// in (the last as_of − window, as_of − window], and kept ones that
    /// left are dropped.
    pub fn advance(&mut self, left: u32, as_of: i64, model: &Model) {
        let window = Window::at(as_of, model);
        self.in_window = self.in_window.saturating_sub(left);
        self.recent.retain(|r| window.holds(r.end_at));
    }

    pub fn is_empty(&self) -> bool {
        self.rentals == 0
    }

    fn outcomes(&self) -> impl Iterator<Item = RentalOutcome<'_>> {
        self.recent.iter().map(|r| RentalOutcome {
            rental_id: &r.rental_id,
            end_at: r.end_at,
            status: Status::Scored,
            score: r.score,
            features: r.features,
        })
    }
}

/// The member score of a member's final part (at `as_of`, after
/// [`FinalPart::advance`]) and its open rentals: exactly
/// [`crate::member::member_score`] of all its rentals.
pub fn member_score_of(
    part: &FinalPart,
    open: &[RentalOutcome<'_>],
    as_of: i64,
    model: &Model,
) -> MemberScore {
    let window = Window::at(as_of, model);
    let kept: Vec<RentalOutcome<'_>> = part.outcomes().collect();
    let open_scored = || {
        open.iter()
            .filter(|r| r.status == Status::Scored && r.end_at <= as_of)
    };
    let mut distance = part.distance.clone();
    open_scored().for_each(|r| distance.add(r.features.distance_km));
    let candidates = kept
        .iter()
        .filter(|r| window.holds(r.end_at))
        .chain(open_scored().filter(|r| window.holds(r.end_at)))
        .collect();
    let open_in_window = open.iter().filter(|r| window.holds(r.end_at)).count();
    score_of(
        choose_from(
            Pool {
                candidates,
                distance_km_total: distance.value(),
                rentals_12m: part.in_window as usize + open_in_window,
            },
            model,
        ),
        model,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::member_score;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000;

    #[derive(Debug, Clone)]
    struct R {
        id: String,
        end_at: i64,
        status: Status,
        score: Option<f64>,
        km: f64,
    }

    fn outcome(r: &R) -> RentalOutcome<'_> {
        RentalOutcome {
            rental_id: &r.id,
            end_at: r.end_at,
            status: r.status,
            score: r.score,
            features: Features {
                distance_km: r.km,
                moving_s: (r.km * 60.0) as u32,
                harsh_brake_n: (r.km as u32) % 3,
                ..Features::default()
            },
        }
    }

    fn kept(r: &R) -> KeptRental {
        let o = outcome(r);
        KeptRental {
            rental_id: r.id.clone(),
            end_at: r.end_at,
            score: r.score,
            grade: None,
            features: o.features,
        }
    }

    fn rentals() -> impl Strategy<Value = Vec<R>> {
        proptest::collection::vec((0i64..900, 0u8..4, 0.0f64..100.0, 0.5f64..80.0), 0..30).prop_map(
            |v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (day, st, score, km))| {
                        let status = [
                            Status::Scored,
                            Status::Scored,
                            Status::Unscorable,
                            Status::Pending,
                        ][st as usize];
                        R {
                            id: format!("r{i:02}"),
                            // Some share an end_at: rental_id breaks the tie.
                            end_at: day / 3 * 3 * DAY,
                            status,
                            score: (status == Status::Scored)
                                .then_some((score * 10.0).round() / 10.0),
                            km,
                        }
                    })
                    .collect()
            },
        )
    }

    proptest! {
        /// A part built run by run — rentals made final at the run that
        /// first saw them ended, the window moving between runs — gives
        /// what one member score over all rentals gives, at every run.
        #[test]
        fn a_part_kept_run_by_run_scores_as_all_the_rentals_do(
            all in rentals(),
            runs in proptest::collection::vec(0i64..1000, 1..8),
            open_share in 0u8..4,
        ) {
            let model = Model::default();
            let window = model.member.window_days * DAY;
            let mut runs: Vec<i64> = runs.into_iter().map(|d| d * DAY).collect();
            runs.sort_unstable();
            runs.dedup();
            let mut part = FinalPart::default();
            let mut made_final: Vec<bool> = vec![false; all.len()];
            let mut last: Option<i64> = None;
            for &as_of in &runs {
                if let Some(prev) = last {
                    let left = all.iter().zip(&made_final)
                        .filter(|(r, f)| **f && r.end_at > prev - window && r.end_at <= as_of - window)
                        .count() as u32;
                    part.advance(left, as_of, &model);
                }
                // Pending rentals and every open_share-th ended one stay open.
                let mut open = Vec::new();
                for (i, r) in all.iter().enumerate() {
                    if made_final[i] || r.end_at > as_of {
                        continue;
                    }
                    if r.status == Status::Pending || (open_share > 0 && i % 4 < open_share as usize) {
                        open.push(outcome(r));
                    } else {
                        part.add(kept(r), r.status, as_of, &model);
                        made_final[i] = true;
                    }
                }
                let everything: Vec<RentalOutcome> = all.iter().zip(&made_final)
                    .filter(|(_, f)| **f)
                    .map(|(r, _)| outcome(r))
                    .chain(open.iter().cloned())
                    .collect();
                let want = member_score(&everything, as_of, &model);
                let got = member_score_of(&part, &open, as_of, &model);
                prop_assert_eq!(got.distance_km_total.to_bits(), want.distance_km_total.to_bits());
                prop_assert_eq!(got, want);
                last = Some(as_of);
            }
        }
    }

    #[test]
    fn the_part_keeps_the_latest_scored_rentals_within_the_window() {
        let model = Model::default();
        let as_of = 400 * DAY;
        let mut part = FinalPart::default();
        for i in 0..12 {
            let r = R {
                id: format!("r{i:02}"),
                end_at: (100 + i * 10) * DAY,
                status: Status::Scored,
                score: Some(50.0),
                km: 10.0,
            };
            part.add(kept(&r), r.status, as_of, &model);
        }
        let old = R {
            id: "old".into(),
            end_at: DAY,
            status: Status::Scored,
            score: Some(1.0),
            km: 5.0,
        };
        part.add(kept(&old), old.status, as_of, &model);
        assert_eq!(part.recent.len(), 10);
        assert_eq!(part.recent[0].rental_id, "r11");
        assert_eq!(part.in_window, 12, "the old one ended before the window");
        assert_eq!(part.distance.value(), 125.0, "all scored distance counts");
        // The window now starts at day 115: the rentals of days 100 and 110 left.
        part.advance(2, 480 * DAY, &model);
        assert_eq!(part.in_window, 10);
        assert!(part.recent.iter().all(|r| r.end_at > 115 * DAY));
    }
}
