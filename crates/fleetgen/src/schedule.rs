//! Who rents which car when: rentals spread over the months before `end`,
//! never overlapping on a car, plus the edge cases a scorer must meet.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::FleetConfig;

pub const MIN_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MIN_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// How a rental's telemetry is damaged, decided with its schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delivery {
    /// Everything arrived (gaps and jitter aside).
    Complete,
    /// A contiguous share of the samples never arrives.
    LostChunk(f64),
    /// Ends shortly before `end`: only this share of samples has arrived yet.
    StillArriving(f64),
}

#[derive(Debug, Clone)]
pub struct PlannedRental {
    pub index: usize,
    pub rental_id: String,
    pub member: usize,
    pub car: usize,
    pub start_at: i64,
    pub end_at: i64,
    pub delivery: Delivery,
}

pub fn member_id(i: usize) -> String {
    format!("M{i:06}")
}

pub fn car_id(i: usize) -> String {
    format!("C{i:05}")
}

fn duration_ms(rng: &mut ChaCha8Rng) -> i64 {
    let p: f64 = rng.random();
    let minutes = if p < 0.70 {
        rng.random_range(8.0..60.0)
    } else if p < 0.96 {
        rng.random_range(60.0..240.0)
    } else {
        rng.random_range(240.0..2880.0)
    };
    (minutes * MIN_MS as f64) as i64 + rng.random_range(0..1000)
}

/// Plans `cfg.rentals` rentals: most spread uniformly over the window, a few
/// ending in the last hours before `end` (telemetry still arriving) and a few
/// ending after it (not yet considered).
pub fn plan(cfg: &FleetConfig, rng: &mut ChaCha8Rng) -> Vec<PlannedRental> {
    let n = cfg.rentals;
    let cars = cfg.cars();
    let members = cfg.members();
    let window_start = cfg.end - i64::from(cfg.months) * 30 * DAY_MS - 5 * DAY_MS;
    // The last two days are kept for the edge cases below.
    let regular_end = cfg.end - 2 * DAY_MS;
    let recent = (n / 200).clamp(usize::from(n >= 20) * 3, n / 4);
    let future = (n / 500).clamp(usize::from(n >= 20) * 2, n / 8);
    let regular = n - recent - future;

    // Regular rentals: per car, sorted uniform starts, each cut short of the next.
    let mut by_car: Vec<Vec<i64>> = vec![Vec::new(); cars];
    for _ in 0..regular {
        let car = rng.random_range(0..cars);
        by_car[car].push(rng.random_range(window_start..regular_end - HOUR_MS));
    }
    let mut out = Vec::with_capacity(n);
    for (car, starts) in by_car.iter_mut().enumerate() {
        starts.sort_unstable();
        for (j, &start) in starts.iter().enumerate() {
            let next = starts.get(j + 1).copied().unwrap_or(regular_end);
            let room = (next - start - 10 * MIN_MS).max(5 * MIN_MS);
            let duration = duration_ms(rng).min(room);
            // Lost chunks only on short same-day rentals: losing a whole day of a
            // small fleet's telemetry would be a feed outage, not a flaw of one car.
            let same_day = start.div_euclid(DAY_MS) == (start + duration).div_euclid(DAY_MS);
            let delivery = if rng.random_bool(0.04) && same_day && duration < 4 * HOUR_MS {
                Delivery::LostChunk(rng.random_range(0.10..0.55))
            } else {
                Delivery::Complete
            };
            out.push((car, start, start + duration, delivery));
        }
    }
    // Edge cases go on cars whose regular rentals all ended two days before `end`.
    for k in 0..recent + future {
        let car = k % cars;
        let duration = rng.random_range(15 * MIN_MS..90 * MIN_MS);
        let (end_at, delivery) = if k < recent {
            let end_at = cfg.end - rng.random_range(10 * MIN_MS..4 * HOUR_MS);
            (
                end_at,
                Delivery::StillArriving(rng.random_range(0.30..0.90)),
            )
        } else {
            (
                cfg.end + rng.random_range(10 * MIN_MS..6 * HOUR_MS),
                Delivery::Complete,
            )
        };
        // Two edge rentals on the same car must not overlap: stack them back in time.
        let end_at = end_at - (k / cars) as i64 * 8 * HOUR_MS;
        out.push((car, end_at - duration, end_at, delivery));
    }
    out.sort_by_key(|&(car, start, ..)| (start, car));
    out.into_iter()
        .enumerate()
        .map(|(index, (car, start_at, end_at, delivery))| PlannedRental {
            index,
            rental_id: format!("R{index:08}"),
            member: rng.random_range(0..members),
            car,
            start_at,
            end_at,
            delivery,
        })
        .collect()
}
