//! A small driving simulation: road segments with limits, a driver style
//! that sets how fast they go and how hard they accelerate and brake, stops
//! at junctions, and parked phases on long rentals.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// How a member drives: 0 is calm, 1 is aggressive.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub aggression: f64,
    pub speeding: f64,
}

impl Style {
    pub fn random(rng: &mut ChaCha8Rng) -> Style {
        // Most members are calm; a few are not.
        Style {
            aggression: rng.random::<f64>().powi(2),
            speeding: rng.random::<f64>().powi(3),
        }
    }
}

const LIMITS: [f64; 10] = [30.0, 50.0, 50.0, 50.0, 60.0, 60.0, 80.0, 80.0, 100.0, 110.0];

/// One second of driving: speed and the road's limit (None where unknown).
pub type Tick = (f64, Option<f64>);

pub struct Driver<'a> {
    rng: &'a mut ChaCha8Rng,
    style: Style,
    speed: f64,
    limit: Option<f64>,
    nominal_limit: f64,
    segment_left: u32,
    /// Forced rate (km/h per s) and seconds left of a harsh manoeuvre.
    burst: Option<(f64, u32)>,
    /// Seconds left standing at a junction.
    stopped: u32,
    /// Seconds left in the current parked phase, or of driving before parking.
    phase_left: u32,
    parked: bool,
    long_rental: bool,
}

impl<'a> Driver<'a> {
    pub fn new(rng: &'a mut ChaCha8Rng, style: Style, duration_s: u32) -> Self {
        let long_rental = duration_s > 4 * 3600;
        let mut d = Driver {
            rng,
            style,
            speed: 0.0,
            limit: None,
            nominal_limit: 50.0,
            segment_left: 0,
            burst: None,
            stopped: 0,
            phase_left: 0,
            parked: false,
            long_rental,
        };
        d.phase_left = d.drive_phase();
        d
    }

    fn drive_phase(&mut self) -> u32 {
        if self.long_rental {
            self.rng.random_range(1200..5400)
        } else {
            u32::MAX
        }
    }

    fn new_segment(&mut self) {
        self.nominal_limit = LIMITS[self.rng.random_range(0..LIMITS.len())];
        self.limit = (!self.rng.random_bool(0.07)).then_some(self.nominal_limit);
        self.segment_left = self.rng.random_range(20..400);
        // Junction at the end of a town segment: stand a while.
        if self.nominal_limit <= 60.0 && self.rng.random_bool(0.5) {
            self.stopped = self.rng.random_range(5..60);
        }
    }

    fn target(&mut self) -> f64 {
        let over = 0.85 + 0.30 * self.style.speeding + self.rng.random_range(-0.04..0.04);
        let t = self.nominal_limit * over;
        // A rare very fast stretch for the boldest speeders.
        if self.style.speeding > 0.6 && self.rng.random_bool(0.002) {
            t + 45.0
        } else {
            t
        }
    }

    pub fn tick(&mut self) -> Tick {
        if self.phase_left == 0 {
            self.parked = !self.parked;
            self.phase_left = if self.parked {
                self.rng.random_range(3600..8 * 3600)
            } else {
                self.drive_phase()
            };
        }
        self.phase_left = self.phase_left.saturating_sub(1);
        if self.parked {
            self.speed = (self.speed - 4.0).max(0.0);
            return (self.speed, self.limit);
        }
        if self.segment_left == 0 {
            self.new_segment();
        }
        self.segment_left -= 1;
        let rate = self.rate();
        self.speed = (self.speed + rate).clamp(0.0, 250.0);
        // Sensors report to 0.1 km/h.
        ((self.speed * 10.0).round() / 10.0, self.limit)
    }

    fn rate(&mut self) -> f64 {
        let a = self.style.aggression;
        if let Some((rate, left)) = self.burst {
            self.burst = (left > 1).then_some((rate, left - 1));
            return rate;
        }
        if self.stopped > 0 {
            // Brake to the stop line, then wait.
            if self.speed > 0.0 {
                return -(self.speed.min(2.5 + 4.5 * a));
            }
            self.stopped -= 1;
            return 0.0;
        }
        if self.rng.random_bool(0.00004 + 0.0012 * a) {
            let (rate, secs) = if self.rng.random_bool(0.5) && self.speed < 90.0 {
                (
                    self.rng.random_range(10.5..15.0),
                    self.rng.random_range(1..4),
                )
            } else {
                (
                    -self.rng.random_range(10.5..20.0),
                    self.rng.random_range(1..4),
                )
            };
            self.burst = Some((rate, secs));
            return rate;
        }
        let target = self.target();
        let (up, down) = (1.5 + 4.0 * a, 2.5 + 4.5 * a);
        (target - self.speed).clamp(-down, up) + self.rng.random_range(-0.5..0.5)
    }
}
