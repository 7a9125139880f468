//! A deterministic synthetic car-sharing fleet for demos, tests and
//! benchmarks: `rentals.parquet` and 1 Hz telemetry under
//! `telemetry/dt=YYYY-MM-DD/`, with the flaws real feeds have — clock
//! jitter, gaps, at-least-once duplicates (some with differing values),
//! samples outside any rental, telemetry still arriving at the end, lost
//! chunks, bad rows and bad rentals — and a spread of driving styles.

mod drive;
pub mod live;
mod schedule;
mod write;

use std::collections::BTreeMap;
use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use drive::{Driver, Style};
use schedule::{DAY_MS, Delivery, MIN_MS, PlannedRental};
pub use write::{RentalRow, Row, write_rentals, write_telemetry};

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Number of valid rentals; a few contract-breaking rental rows are added on top.
    pub rentals: usize,
    pub seed: u64,
    /// The fleet's "now" (ms since epoch): rentals run up to shortly after it,
    /// so scoring `as_of = end` meets pending and not-yet-ended rentals.
    pub end: i64,
    /// Months of history before `end`.
    pub months: u32,
    /// Share of telemetry rows made contract-breaking.
    pub bad_row_ratio: f64,
}

impl FleetConfig {
    pub fn new(rentals: usize, seed: u64, end: i64) -> Self {
        FleetConfig {
            rentals,
            seed,
            end,
            months: 13,
            bad_row_ratio: 0.001,
        }
    }
    fn cars(&self) -> usize {
        (self.rentals / 8).max(1)
    }
    fn members(&self) -> usize {
        (self.rentals / 6).max(1)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetSummary {
    pub rentals: usize,
    pub bad_rental_rows: usize,
    pub members: usize,
    pub cars: usize,
    pub telemetry_rows: u64,
    pub telemetry_files: usize,
    pub duplicate_rows: u64,
    pub bad_telemetry_rows: u64,
    pub outside_rental_rows: u64,
    pub days: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("cannot write the fleet: {0}")]
    Lake(#[from] pitwall_lake::LakeError),
    #[error("cannot build Arrow batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("--rentals must be at least 1")]
    NoRentals,
}

/// Generates the fleet under `out`. The same config writes the same bytes.
pub fn generate(out: &Path, cfg: &FleetConfig) -> Result<FleetSummary, GenError> {
    if cfg.rentals == 0 {
        return Err(GenError::NoRentals);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let styles: Vec<Style> = (0..cfg.members())
        .map(|_| Style::random(&mut rng))
        .collect();
    let plan = schedule::plan(cfg, &mut rng);
    let mut summary = FleetSummary {
        rentals: plan.len(),
        members: cfg.members(),
        cars: cfg.cars(),
        ..FleetSummary::default()
    };
    summary.bad_rental_rows = write::rentals(&out.join("rentals.parquet"), &plan, &mut rng)?;

    let mut days = write::DayWriter::new(out.join("telemetry"));
    // Rentals come in start order; a day is complete once no rental still to
    // come can reach back into it (staff moves start at most an hour early).
    let mut pending: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
    for r in &plan {
        let rows = rental_rows(r, styles[r.member], cfg, &mut summary);
        for row in rows {
            let day = row.ts.unwrap_or(r.start_at).div_euclid(DAY_MS);
            pending.entry(day).or_default().push(row);
        }
        let safe = (r.start_at - 2 * DAY_MS).div_euclid(DAY_MS);
        while let Some(entry) = pending.first_entry() {
            if *entry.key() >= safe {
                break;
            }
            let (day, rows) = entry.remove_entry();
            days.write_day(day, rows, &mut summary)?;
        }
    }
    while let Some((day, rows)) = pending.pop_first() {
        days.write_day(day, rows, &mut summary)?;
    }
    Ok(summary)
}

/// The telemetry rows one rental produces, flaws included. Each rental has
/// its own RNG stream, so one rental's flaws never shift another's.
fn rental_rows(
    r: &PlannedRental,
    style: Style,
    cfg: &FleetConfig,
    summary: &mut FleetSummary,
) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(
        cfg.seed ^ (r.index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let car = schedule::car_id(r.car);
    let seconds = ((r.end_at - r.start_at) / 1000) as u32;
    let mut rows = Vec::with_capacity(seconds as usize + 64);

    // A staff move shortly before the rental: telemetry outside any rental.
    if rng.random_bool(0.3) {
        let len = rng.random_range(60..600);
        let start = r.start_at - rng.random_range(5 * MIN_MS..50 * MIN_MS) - len * 1000;
        let mut driver = Driver::new(
            &mut rng,
            Style {
                aggression: 0.2,
                speeding: 0.0,
            },
            len as u32,
        );
        let ticks: Vec<_> = (0..len).map(|_| driver.tick()).collect();
        for (i, (speed, limit)) in ticks.into_iter().enumerate() {
            rows.push(Row::new(&car, start + i as i64 * 1000, speed, limit));
        }
        summary.outside_rental_rows += len as u64;
    }

    let kept = kept_range(r, seconds, &mut rng);
    // Tunnels and dead spots: up to three gaps of 2 s to a minute.
    let mut gaps: Vec<(u32, u32)> = Vec::new();
    for _ in 0..3 {
        if rng.random_bool(0.12) {
            let at = rng.random_range(0..seconds.max(1));
            gaps.push((at, at + rng.random_range(2..60)));
        }
    }
    let mut driver = Driver::new(&mut rng, style, seconds);
    let ticks: Vec<_> = (0..=seconds).map(|_| driver.tick()).collect();
    for (k, (speed, limit)) in ticks.into_iter().enumerate() {
        let k = k as u32;
        if !kept.contains(&k) || gaps.iter().any(|&(a, b)| (a..b).contains(&k)) {
            continue;
        }
        // Clock jitter of up to ±40 ms, kept inside the rental.
        let jitter = if k == 0 || k == seconds {
            0
        } else {
            rng.random_range(-40..=40)
        };
        let ts = (r.start_at + i64::from(k) * 1000 + jitter).min(r.end_at);
        rows.push(Row::new(&car, ts, speed, limit));
    }
    write::add_flaws(&mut rows, cfg.bad_row_ratio, &mut rng, summary);
    rows
}

/// The sample indices that arrive: all, all but a lost chunk, or a prefix.
fn kept_range(
    r: &PlannedRental,
    seconds: u32,
    rng: &mut ChaCha8Rng,
) -> std::ops::RangeInclusive<u32> {
    let s = f64::from(seconds);
    match r.delivery {
        Delivery::Complete => 0..=seconds,
        Delivery::StillArriving(share) => 0..=(s * share) as u32,
        Delivery::LostChunk(share) => {
            // Lose the head or the tail: a car that buffered and never uploaded.
            let lost = (s * share) as u32;
            if rng.random_bool(0.5) {
                lost..=seconds
            } else {
                0..=seconds - lost
            }
        }
    }
}
