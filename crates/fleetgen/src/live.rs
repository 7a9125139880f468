//! A live fleet for `pitwall gen stream`: cars that drive rentals second by
//! second of a simulated clock and upload their 1 Hz samples the way
//! devices do — in batches every few seconds, late after an offline
//! stretch (a tunnel, an underground car park), and sometimes twice (a
//! retried upload). Everything follows from the seed and the start time:
//! the wall clock only decides when an event is handed out, never what it
//! holds, so a replay at another speed-up sends the same records.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::drive::{Driver, Style, Tick};
use crate::schedule::{car_id, member_id};
use crate::write::RentalRow;

const SECOND_MS: i64 = 1000;

#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub cars: usize,
    pub members: usize,
    pub seed: u64,
    /// The simulated clock's start (ms since the epoch, a whole second).
    pub start_ms: i64,
    /// How often a connected device uploads what it holds.
    pub upload_every_ms: i64,
    /// Chance, at each upload, that the car goes offline for 1 to 10 minutes.
    pub offline_chance: f64,
    /// Chance that an upload is sent again a few seconds later.
    pub resend_chance: f64,
    /// Chance that a sample is garbage (a negative speed: a sensor fault),
    /// which the contract refuses to the DLQ.
    pub bad_chance: f64,
    /// Rental lengths, minutes: uniform in this range.
    pub rental_minutes: (f64, f64),
    /// Time a car stands between rentals, minutes: uniform in this range.
    pub idle_minutes: (f64, f64),
}

impl LiveConfig {
    pub fn new(cars: usize, seed: u64, start_ms: i64) -> LiveConfig {
        LiveConfig {
            cars,
            members: (cars * 3).max(1),
            seed,
            start_ms: start_ms - start_ms.rem_euclid(SECOND_MS),
            upload_every_ms: 10 * SECOND_MS,
            offline_chance: 0.01,
            resend_chance: 0.02,
            bad_chance: 0.0005,
            rental_minutes: (5.0, 30.0),
            idle_minutes: (0.5, 15.0),
        }
    }
}

/// One sample as the device sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub car_id: String,
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    pub speed_kmh: f64,
    pub speed_limit_kmh: Option<f64>,
    pub lat: f64,
    pub lon: f64,
    pub heading: f64,
    pub odometer_km: f64,
}

/// What the fleet does, in the order it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A device upload at `at_ms`: its samples in time order, as one
    /// Kinesis record of newline-separated JSON objects.
    Upload {
        at_ms: i64,
        car_id: String,
        samples: Vec<Sample>,
        resend: bool,
        /// Rentals whose last sample this upload carries for the first time.
        completes: Vec<String>,
    },
    /// A car was returned at `at_ms`: the rental, as the rentals table
    /// gets it then.
    Ended { at_ms: i64, rental: RentalRow },
}

impl Event {
    pub fn at_ms(&self) -> i64 {
        match self {
            Event::Upload { at_ms, .. } | Event::Ended { at_ms, .. } => *at_ms,
        }
    }
}

/// Counts of what the fleet did, for the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveCounts {
    pub rentals_started: u64,
    pub rentals_ended: u64,
    pub samples: u64,
    pub bad_samples: u64,
    pub uploads: u64,
    pub resends: u64,
    pub offline_stretches: u64,
}

struct Driving {
    rental_id: String,
    member: usize,
    start_ms: i64,
    ticks: Vec<Tick>,
    k: usize,
}

struct Car {
    id: String,
    rng: ChaCha8Rng,
    driving: Option<Driving>,
    idle_until: i64,
    rentals: u64,
    held: Vec<Sample>,
    /// Ended rentals whose last sample is still held.
    ending: Vec<String>,
    next_upload: i64,
    offline_until: i64,
    pos: Position,
}

#[derive(Debug, Clone, Copy)]
struct Position {
    lat: f64,
    lon: f64,
    heading: f64,
    odometer_km: f64,
}

pub struct Live {
    cfg: LiveConfig,
    cars: Vec<Car>,
    styles: Vec<Style>,
    /// The next simulated second to run.
    now: i64,
    /// Resends waiting for their time, oldest first.
    resends: Vec<Event>,
    pub counts: LiveCounts,
}

impl Live {
    pub fn new(cfg: LiveConfig) -> Live {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let styles = (0..cfg.members.max(1))
            .map(|_| Style::random(&mut rng))
            .collect();
        let cars = (0..cfg.cars)
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    cfg.seed ^ (i as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93),
                );
                // Cars start spread over the first idle stretch, so rentals
                // do not all end in the same minute.
                let idle = rng.random_range(0.0..cfg.idle_minutes.1.max(0.1)) * 60_000.0;
                Car {
                    id: car_id(i),
                    idle_until: cfg.start_ms + idle as i64,
                    next_upload: cfg.start_ms + rng.random_range(0..cfg.upload_every_ms.max(1)),
                    pos: Position {
                        lat: 37.45 + rng.random_range(0.0..0.2),
                        lon: 126.85 + rng.random_range(0.0..0.3),
                        heading: rng.random_range(0.0..360.0),
                        odometer_km: rng.random_range(1_000.0..90_000.0),
                    },
                    rng,
                    driving: None,
                    rentals: 0,
                    held: Vec::new(),
                    ending: Vec::new(),
                    offline_until: i64::MIN,
                }
            })
            .collect();
        Live {
            now: cfg.start_ms,
            cfg,
            cars,
            styles,
            resends: Vec::new(),
            counts: LiveCounts::default(),
        }
    }

    /// The simulated time up to which events have been handed out.
    pub fn now_ms(&self) -> i64 {
        self.now
    }

    /// Runs the simulated seconds before `until_ms` and returns what
    /// happened in them, in time order.
    pub fn advance(&mut self, until_ms: i64) -> Vec<Event> {
        let mut out = Vec::new();
        while self.now < until_ms {
            let t = self.now;
            self.due_resends(t, &mut out);
            for c in 0..self.cars.len() {
                self.step(c, t, &mut out);
            }
            self.now += SECOND_MS;
        }
        out
    }

    /// Every car uploads what it still holds (the end of a simulation:
    /// nothing a car took is left unsent), and pending resends go out.
    pub fn flush(&mut self) -> Vec<Event> {
        let t = self.now;
        let mut out = Vec::new();
        self.due_resends(i64::MAX, &mut out);
        for car in &mut self.cars {
            if !car.held.is_empty() {
                self.counts.uploads += 1;
                out.push(Event::Upload {
                    at_ms: t,
                    car_id: car.id.clone(),
                    samples: std::mem::take(&mut car.held),
                    resend: false,
                    completes: std::mem::take(&mut car.ending),
                });
            }
        }
        out
    }

    fn due_resends(&mut self, t: i64, out: &mut Vec<Event>) {
        let due = self.resends.partition_point(|e| e.at_ms() <= t);
        out.extend(self.resends.drain(..due));
    }

    fn step(&mut self, c: usize, t: i64, out: &mut Vec<Event>) {
        let cfg = &self.cfg;
        let car = &mut self.cars[c];
        if car.driving.is_none() && t >= car.idle_until {
            car.driving = Some(start_rental(car, cfg, &self.styles, t));
            self.counts.rentals_started += 1;
        }
        if let Some(d) = car.driving.as_mut() {
            let (speed, limit) = d.ticks[d.k];
            d.k += 1;
            let at = drive_on(&mut car.pos, &mut car.rng, speed);
            let mut s = sample(at, &car.id, t, speed, limit);
            if car.rng.random_bool(cfg.bad_chance) {
                s.speed_kmh = -1.0;
                self.counts.bad_samples += 1;
            }
            car.held.push(s);
            self.counts.samples += 1;
            if d.k == d.ticks.len() {
                if let Some(d) = car.driving.take() {
                    car.ending.push(d.rental_id.clone());
                    out.push(Event::Ended {
                        at_ms: t,
                        rental: (
                            Some(d.rental_id),
                            Some(member_id(d.member)),
                            Some(car.id.clone()),
                            Some(d.start_ms),
                            Some(t),
                        ),
                    });
                }
                self.counts.rentals_ended += 1;
                let idle = car.rng.random_range(cfg.idle_minutes.0..cfg.idle_minutes.1);
                car.idle_until = t + (idle * 60_000.0) as i64;
            }
        }
        if t < car.next_upload {
            return;
        }
        car.next_upload = t + cfg.upload_every_ms;
        if t < car.offline_until || car.held.is_empty() {
            return;
        }
        let samples = std::mem::take(&mut car.held);
        self.counts.uploads += 1;
        if car.rng.random_bool(cfg.resend_chance) {
            self.counts.resends += 1;
            let at = t + car.rng.random_range(1..6) * SECOND_MS;
            let at_pos = self.resends.partition_point(|e| e.at_ms() <= at);
            self.resends.insert(
                at_pos,
                Event::Upload {
                    at_ms: at,
                    car_id: car.id.clone(),
                    samples: samples.clone(),
                    resend: true,
                    completes: Vec::new(),
                },
            );
        }
        out.push(Event::Upload {
            at_ms: t,
            car_id: car.id.clone(),
            samples,
            resend: false,
            completes: std::mem::take(&mut car.ending),
        });
        if car.rng.random_bool(cfg.offline_chance) {
            self.counts.offline_stretches += 1;
            car.offline_until = t + car.rng.random_range(60..600) * SECOND_MS;
        }
    }
}

fn start_rental(car: &mut Car, cfg: &LiveConfig, styles: &[Style], t: i64) -> Driving {
    car.rentals += 1;
    let member = car.rng.random_range(0..styles.len());
    let (lo, hi) = cfg.rental_minutes;
    let seconds = (car.rng.random_range(lo..hi.max(lo + 0.01)) * 60.0) as u32;
    // The rental's own stream, so one rental's driving never shifts the
    // car's later choices.
    let mut rng = ChaCha8Rng::seed_from_u64(car.rng.random());
    let mut driver = Driver::new(&mut rng, styles[member], seconds);
    Driving {
        rental_id: format!("L{}-{:05}", &car.id, car.rentals),
        member,
        start_ms: t,
        ticks: (0..=seconds).map(|_| driver.tick()).collect(),
        k: 0,
    }
}

/// Moves the car one second along its heading; returns where it is.
fn drive_on(p: &mut Position, rng: &mut ChaCha8Rng, speed_kmh: f64) -> Position {
    let km = speed_kmh / 3600.0;
    p.heading = (p.heading + rng.random_range(-3.0..3.0)).rem_euclid(360.0);
    let rad = p.heading.to_radians();
    p.lat += km * rad.cos() / 111.0;
    p.lon += km * rad.sin() / (111.0 * p.lat.to_radians().cos().max(0.1));
    p.odometer_km += km;
    *p
}

fn sample(
    Position {
        lat,
        lon,
        heading,
        odometer_km,
    }: Position,
    car: &str,
    t: i64,
    speed: f64,
    limit: Option<f64>,
) -> Sample {
    let round = |v: f64, d: f64| (v * d).round() / d;
    Sample {
        car_id: car.to_string(),
        ts: chrono::DateTime::from_timestamp_millis(t)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default(),
        speed_kmh: speed,
        speed_limit_kmh: limit,
        // A device's GPS precision: 6 decimals (the lake keeps 3).
        lat: round(lat, 1e6),
        lon: round(lon, 1e6),
        heading: round(heading, 10.0),
        odometer_km: round(odometer_km, 1000.0),
    }
}

/// An upload as the Kinesis record's data: one JSON object per line.
pub fn record_data(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 160);
    for s in samples {
        // Serializing plain fields cannot fail.
        if serde_json::to_writer(&mut out, s).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_793_527_200_000; // 2026-11-01T10:00Z

    fn run(cfg: &LiveConfig, minutes: i64, step_s: i64) -> (Vec<Event>, LiveCounts) {
        let mut live = Live::new(cfg.clone());
        let mut events = Vec::new();
        let end = cfg.start_ms + minutes * 60_000;
        while live.now_ms() < end {
            events.extend(live.advance((live.now_ms() + step_s * SECOND_MS).min(end)));
        }
        events.extend(live.flush());
        (events, live.counts)
    }

    #[test]
    fn a_seed_gives_the_same_events_whatever_the_pace_they_are_asked_for() {
        let cfg = LiveConfig::new(20, 7, START);
        let (a, _) = run(&cfg, 90, 1);
        let (b, _) = run(&cfg, 90, 37);
        assert_eq!(a, b);
        let (c, _) = run(&LiveConfig { seed: 8, ..cfg }, 90, 1);
        assert_ne!(a, c);
    }

    #[test]
    fn every_sample_of_an_ended_rental_is_uploaded_in_order_some_late_some_twice() {
        let cfg = LiveConfig {
            offline_chance: 0.05,
            resend_chance: 0.1,
            ..LiveConfig::new(30, 3, START)
        };
        let (events, counts) = run(&cfg, 120, 10);
        assert!(counts.rentals_ended > 30 && counts.offline_stretches > 0 && counts.resends > 0);
        assert!(events.windows(2).all(|w| w[0].at_ms() <= w[1].at_ms()));
        let mut sent = std::collections::HashMap::<(String, String), u32>::new();
        let mut late = 0;
        for e in &events {
            if let Event::Upload { at_ms, samples, .. } = e {
                assert!(samples.windows(2).all(|w| w[0].ts < w[1].ts));
                for s in samples {
                    *sent.entry((s.car_id.clone(), s.ts.clone())).or_default() += 1;
                }
                let first = chrono::DateTime::parse_from_rfc3339(&samples[0].ts)
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(0);
                late += u32::from(at_ms - first > 60_000);
            }
        }
        assert!(late > 0, "no upload arrived late after an offline stretch");
        let ended: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Ended { rental, .. } => rental.0.clone(),
                _ => None,
            })
            .collect();
        let mut completed: Vec<String> = events
            .iter()
            .flat_map(|e| match e {
                Event::Upload { completes, .. } => completes.clone(),
                _ => Vec::new(),
            })
            .collect();
        completed.sort();
        let mut want = ended.clone();
        want.sort();
        assert_eq!(
            completed, want,
            "each rental's last sample is marked on one upload"
        );
        assert!(sent.values().any(|&n| n == 2), "no sample was sent twice");
        assert_eq!(
            sent.len() as u64,
            counts.samples,
            "every sample sent at least once"
        );
        for e in &events {
            if let Event::Ended { at_ms, rental } = e {
                let (start, end) = (rental.3.unwrap_or(0), rental.4.unwrap_or(0));
                assert_eq!(end, *at_ms);
                let car = rental.2.clone().unwrap_or_default();
                let n = sent
                    .keys()
                    .filter(|(c, ts)| {
                        *c == car && {
                            let t = chrono::DateTime::parse_from_rfc3339(ts)
                                .map(|t| t.timestamp_millis())
                                .unwrap_or(-1);
                            (start..=end).contains(&t)
                        }
                    })
                    .count() as i64;
                assert_eq!(
                    n,
                    (end - start) / 1000 + 1,
                    "a rental's samples: one per second"
                );
            }
        }
    }

    #[test]
    fn upload_data_is_one_json_object_per_line() {
        let (events, _) = run(&LiveConfig::new(3, 1, START), 20, 5);
        let Some(Event::Upload { samples, .. }) =
            events.iter().find(|e| matches!(e, Event::Upload { .. }))
        else {
            panic!("no upload in 20 minutes");
        };
        let data = String::from_utf8(record_data(samples)).expect("utf-8");
        assert_eq!(data.lines().count(), samples.len());
        let first: serde_json::Value =
            serde_json::from_str(data.lines().next().unwrap_or("")).expect("json");
        for key in ["car_id", "ts", "speed_kmh", "speed_limit_kmh", "lat", "lon"] {
            assert!(first.get(key).is_some(), "{key} in {first}");
        }
    }
}
