//! A small fleet whose telemetry arrives over time, as uploads do: each
//! rental's samples land in event-hour partitions (`dt=/hour=`) as files
//! that appear at their arrival time, in one piece, in two (the first too
//! thin to be final, or full enough but without its last seconds), with a
//! lost tail, or twice (a redelivery). A car's pieces arrive in the order
//! it drove them, as devices upload; only redeliveries come out of order.

use std::path::{Path, PathBuf};

use pitwall_fleetgen::Row;
use pitwall_score::gates::GateConfig;
use pitwall_score_job::{JobConfig, NoProgress, RunJson, StateOptions};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub type Error = Box<dyn std::error::Error>;

/// 2026-06-01T00:00:00Z: partitions start on whole hours.
pub const BASE: i64 = 1_780_272_000_000;
pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 60 * MIN;
const GRACE: i64 = 4 * HOUR;

pub struct Upload {
    pub arrival: i64,
    pub rows: Vec<Row>,
    pub name: String,
}

pub struct Fleet {
    pub rentals: Vec<(String, String, String, i64, i64)>,
    pub uploads: Vec<Upload>,
}

fn samples(rng: &mut ChaCha8Rng, car: &str, start: i64, end: i64) -> Vec<Row> {
    let mut speed: f64 = 0.0;
    let limit = [Some(50.0), Some(100.0), None][rng.random_range(0..3)];
    (0..=(end - start) / 1000)
        .map(|k| {
            // Mostly smooth driving, now and then a harsh change: scores spread out.
            let step = if rng.random_bool(0.01) { 14.0 } else { 2.5 };
            speed = (speed + rng.random_range(-step..step)).clamp(0.0, 140.0);
            Row::new(car, start + k * 1000, (speed * 10.0).round() / 10.0, limit)
        })
        .collect()
}

impl Fleet {
    pub fn generate(seed: u64, rentals: usize) -> Fleet {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut fleet = Fleet {
            rentals: Vec::new(),
            uploads: Vec::new(),
        };
        // A car is in one rental at a time: rentals of a car never overlap.
        let mut free_at = [BASE; 5];
        // When each car's last piece (redeliveries aside) arrived.
        let mut arrived_by = [BASE; 5];
        for i in 0..rentals {
            let c = rng.random_range(0..5);
            let car = format!("car-{c}");
            let member = format!("m-{}", rng.random_range(0..6));
            let wanted = BASE + rng.random_range(0..72 * HOUR) / 1000 * 1000;
            let start = wanted.max(free_at[c] + MIN);
            let end = start + rng.random_range(3 * MIN..40 * MIN) / 1000 * 1000;
            free_at[c] = end;
            let id = format!("r-{i:03}");
            fleet
                .rentals
                .push((id.clone(), member, car.clone(), start, end));
            let rows = samples(&mut rng, &car, start, end);
            let first = (end + rng.random_range(0..GRACE - 30 * MIN)).max(arrived_by[c]);
            // A second piece lands before the grace ends (2 minutes to
            // spare), so no sample comes after its rental is final.
            let room = (end + GRACE - 2 * MIN - first).clamp(MIN + 1, 25 * MIN);
            let second = first + rng.random_range(MIN..room);
            arrived_by[c] = first;
            match rng.random_range(0..5) {
                0 => fleet.add(&id, 0, first, rows),
                1 => {
                    // The first piece is too thin to be final: the rest follows within grace.
                    let cut = rows.len() * rng.random_range(30..85) / 100;
                    fleet.add(&id, 0, first, rows[..cut].to_vec());
                    fleet.add(&id, 1, second, rows[cut..].to_vec());
                    arrived_by[c] = second;
                }
                2 => {
                    let keep = rows.len() * rng.random_range(40..99) / 100;
                    fleet.add(&id, 0, first, rows[..keep].to_vec());
                }
                3 => {
                    let again = first + rng.random_range(0..2 * GRACE);
                    fleet.add(&id, 0, first, rows.clone());
                    fleet.add(&id, 9, again, rows);
                }
                _ => {
                    // Full coverage without the last seconds (at least two
                    // samples, so the first piece ends before end_at - 1.5 s):
                    // the last upload still in flight.
                    let cut = (rows.len() * rng.random_range(95..100) / 100).min(rows.len() - 2);
                    fleet.add(&id, 0, first, rows[..cut].to_vec());
                    fleet.add(&id, 1, second, rows[cut..].to_vec());
                    arrived_by[c] = second;
                }
            }
        }
        fleet
    }

    /// An upload's rows, split into files by event hour as the lake writes them.
    fn add(&mut self, rental: &str, piece: u32, arrival: i64, rows: Vec<Row>) {
        let mut by_hour: std::collections::BTreeMap<i64, Vec<Row>> = Default::default();
        for r in rows {
            by_hour
                .entry(r.ts.unwrap_or(0).div_euclid(HOUR))
                .or_default()
                .push(r);
        }
        for (hour, rows) in by_hour {
            let t = chrono::DateTime::from_timestamp_millis(hour * HOUR).unwrap_or_default();
            self.uploads.push(Upload {
                arrival,
                rows,
                name: format!(
                    "{}/{rental}-p{piece}.parquet",
                    t.format("dt=%Y-%m-%d/hour=%H")
                ),
            });
        }
    }

    pub fn write_rentals(&self, path: &Path) -> Result<(), Error> {
        let rows: Vec<pitwall_fleetgen::RentalRow> = self
            .rentals
            .iter()
            .map(|(r, m, c, s, e)| {
                (
                    Some(r.clone()),
                    Some(m.clone()),
                    Some(c.clone()),
                    Some(*s),
                    Some(*e),
                )
            })
            .collect();
        pitwall_fleetgen::write_rentals(path, &rows)?;
        Ok(())
    }

    /// Writes the uploads that have arrived by `as_of` and are not there yet.
    pub fn arrive(&self, telemetry: &Path, as_of: i64) -> Result<(), Error> {
        for u in self.uploads.iter().filter(|u| u.arrival <= as_of) {
            let path = telemetry.join(&u.name);
            if !path.exists() {
                std::fs::create_dir_all(path.parent().ok_or("no parent")?)?;
                pitwall_fleetgen::write_telemetry(&path, &u.rows)?;
            }
        }
        Ok(())
    }
}

/// Gates that hold nothing: these tests are about equivalence, not policy.
pub fn open_gates() -> GateConfig {
    GateConfig {
        max_rejected_telemetry_ratio: 1.0,
        max_pending_ratio: 1.0,
        max_days_without_telemetry: 10_000,
        max_member_score_shift: 1000.0,
        max_member_score_psi: 1000.0,
        max_final_insufficient_coverage_ratio: 1.0,
        ..GateConfig::default()
    }
}

pub struct Dirs {
    pub root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Dirs {
    /// A fresh temporary directory, removed when dropped.
    pub fn new() -> Result<Dirs, Error> {
        let tmp = tempfile::tempdir()?;
        Ok(Dirs {
            root: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
        })
    }

    pub fn rentals(&self) -> PathBuf {
        self.root.join("rentals.parquet")
    }
    pub fn telemetry(&self) -> PathBuf {
        self.root.join("telemetry")
    }
    pub fn state(&self) -> String {
        self.root.join("state").display().to_string()
    }
    pub fn config(&self, as_of: i64, out: &str, state: Option<&str>) -> JobConfig {
        let mut cfg = JobConfig::new(
            self.rentals().display().to_string(),
            self.telemetry().display().to_string(),
            as_of,
            self.root.join(out),
        );
        cfg.threads = 2;
        cfg.gates = open_gates();
        cfg.state = state.map(|s| StateOptions {
            location: s.to_string(),
            rescore: None,
            model_change: false,
            force: false,
            fence: None,
            write_snapshot: false,
            compaction: Default::default(),
            memory: None,
        });
        cfg
    }
    pub fn run(&self, as_of: i64, out: &str, state: Option<&str>) -> Result<RunJson, Error> {
        Ok(pitwall_score_job::run(
            &self.config(as_of, out, state),
            &NoProgress,
        )?)
    }
}
