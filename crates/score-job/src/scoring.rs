//! The scoring pass: one spill bucket at a time per worker, samples grouped
//! by car, sorted and deduplicated, then every considered rental of the car
//! gets its features and assessment.

use std::sync::atomic::{AtomicUsize, Ordering};

use pitwall_score::{
    Assessment, Model, Rental, Sample, assess, rental_features, rental_slice, sort_dedup,
};

use crate::spill::Spill;
use crate::telemetry::Cars;
use crate::{JobError, Progress};

pub struct Scored {
    /// Per rental index: its assessment, for considered rentals.
    pub assessments: Vec<Option<Assessment>>,
    /// Duplicate samples (same car and ts) removed within rentals.
    pub duplicates: u64,
    /// Per rental index: its last sample's ts, for considered rentals that have one.
    pub last_sample: Vec<Option<i64>>,
}

impl Scored {
    /// Nothing assessed yet, of `rentals` rentals.
    pub fn of(rentals: usize) -> Scored {
        Scored {
            assessments: vec![None; rentals],
            duplicates: 0,
            last_sample: vec![None; rentals],
        }
    }

    pub fn add(&mut self, outcomes: Vec<Outcome>, duplicates: u64) {
        self.duplicates += duplicates;
        for (i, a, last) in outcomes {
            self.assessments[i] = Some(a);
            self.last_sample[i] = last;
        }
    }
}

/// One rental's outcome from a bucket: its index, assessment and last sample.
pub type Outcome = (usize, Assessment, Option<i64>);

pub struct Scoring<'a> {
    pub rentals: &'a [Rental],
    pub cars: &'a Cars,
    pub as_of: i64,
    pub grace_ms: i64,
    pub model: &'a Model,
}

type BucketResult = Result<(Vec<Outcome>, u64), JobError>;

impl Scoring<'_> {
    pub fn run(
        &self,
        spill: &Spill,
        threads: usize,
        progress: &dyn Progress,
    ) -> Result<Scored, JobError> {
        let next = AtomicUsize::new(0);
        let results: Vec<BucketResult> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        let mut dups = 0;
                        loop {
                            let b = next.fetch_add(1, Ordering::Relaxed);
                            if b >= spill.buckets() {
                                break;
                            }
                            dups += self.bucket(spill, b, &mut out)?;
                            progress.advance(1);
                        }
                        Ok((out, dups))
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| Err(JobError::WorkerPanicked)))
                .collect()
        });
        let mut scored = Scored::of(self.rentals.len());
        for r in results {
            let (list, dups) = r?;
            scored.add(list, dups);
        }
        Ok(scored)
    }

    fn bucket(&self, spill: &Spill, b: usize, out: &mut Vec<Outcome>) -> Result<u64, JobError> {
        let mut by_car = spill.read(b).map_err(JobError::Spill)?;
        let mut dups = 0;
        // Every car of the bucket, including those without a single sample:
        // their rentals still need a verdict.
        for car in (b..self.cars.ids.len()).step_by(spill.buckets()) {
            let mut samples = by_car.remove(&(car as u32)).unwrap_or_default();
            dups += self.car(car, &mut samples, out);
        }
        Ok(dups)
    }

    /// Every considered rental of one car (by index among the cars), from
    /// all of its samples in any order; returns the duplicates removed.
    pub fn car(&self, car: usize, samples: &mut Vec<Sample>, out: &mut Vec<Outcome>) -> u64 {
        let dups = sort_dedup(samples) as u64;
        for &i in &self.cars.rentals[car] {
            let r = &self.rentals[i];
            let slice = rental_slice(samples, r.start_at, r.end_at);
            let f = rental_features(slice, r.start_at, r.end_at, &self.model.events);
            out.push((
                i,
                assess(f, r.end_at, self.as_of, self.grace_ms, self.model),
                slice.last().map(|s| s.ts),
            ));
        }
        dups
    }
}
