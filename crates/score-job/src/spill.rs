//! Telemetry bucketed by car on local disk, so a run's memory is bounded by
//! one bucket per worker, not by the input. A record is 28 bytes:
//! car index (u32), ts (i64), speed (f64), limit (f64, NaN = unknown).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pitwall_score::Sample;

const RECORD: usize = 28;
/// A worker flushes a bucket's buffer to disk once it holds this much.
const FLUSH_BYTES: usize = 256 * 1024;

pub struct Spill {
    dir: tempfile::TempDir,
    writers: Vec<Mutex<BufWriter<File>>>,
}

/// One worker's unflushed records, per bucket.
pub struct Buffers(Vec<Vec<u8>>);

impl Spill {
    /// `buckets` files in a fresh hidden directory under `parent`, removed on drop.
    pub fn new(parent: &Path, buckets: usize) -> std::io::Result<Spill> {
        let dir = tempfile::Builder::new()
            .prefix(".pitwall-spill-")
            .tempdir_in(parent)?;
        let writers = (0..buckets.max(1))
            .map(|b| {
                File::create(bucket_path(dir.path(), b)).map(|f| Mutex::new(BufWriter::new(f)))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Spill { dir, writers })
    }

    pub fn buckets(&self) -> usize {
        self.writers.len()
    }

    pub fn bucket_of(&self, car: u32) -> usize {
        car as usize % self.writers.len()
    }

    pub fn buffers(&self) -> Buffers {
        Buffers(vec![Vec::new(); self.writers.len()])
    }

    pub fn push(&self, buf: &mut Buffers, car: u32, s: Sample) -> std::io::Result<()> {
        let b = self.bucket_of(car);
        let out = &mut buf.0[b];
        out.extend_from_slice(&car.to_le_bytes());
        out.extend_from_slice(&s.ts.to_le_bytes());
        out.extend_from_slice(&s.speed_kmh.to_le_bytes());
        out.extend_from_slice(&s.limit_kmh.to_le_bytes());
        if out.len() >= FLUSH_BYTES {
            self.flush_one(b, out)?;
        }
        Ok(())
    }

    fn flush_one(&self, b: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut w = self.writers[b]
            .lock()
            .map_err(|_| std::io::Error::other("a spill writer panicked"))?;
        w.write_all(out)?;
        out.clear();
        Ok(())
    }

    /// Writes out what a worker still holds.
    pub fn flush(&self, buf: &mut Buffers) -> std::io::Result<()> {
        for (b, out) in buf.0.iter_mut().enumerate() {
            if !out.is_empty() {
                self.flush_one(b, out)?;
            }
        }
        Ok(())
    }

    /// Ends writing; call once every worker has flushed.
    pub fn seal(&self) -> std::io::Result<()> {
        for w in &self.writers {
            w.lock()
                .map_err(|_| std::io::Error::other("a spill writer panicked"))?
                .flush()?;
        }
        Ok(())
    }

    /// A bucket's samples grouped by car, in the order they were spilled.
    pub fn read(&self, bucket: usize) -> std::io::Result<BTreeMap<u32, Vec<Sample>>> {
        let bytes = std::fs::read(bucket_path(self.dir.path(), bucket))?;
        let mut by_car: BTreeMap<u32, Vec<Sample>> = BTreeMap::new();
        for rec in bytes.chunks_exact(RECORD) {
            let (car, rest) = rec.split_at(4);
            let (ts, rest) = rest.split_at(8);
            let (speed, limit) = rest.split_at(8);
            let sample = Sample {
                ts: i64::from_le_bytes(ts.try_into().unwrap_or_default()),
                speed_kmh: f64::from_le_bytes(speed.try_into().unwrap_or_default()),
                limit_kmh: f64::from_le_bytes(limit.try_into().unwrap_or_default()),
            };
            by_car
                .entry(u32::from_le_bytes(car.try_into().unwrap_or_default()))
                .or_default()
                .push(sample);
        }
        Ok(by_car)
    }
}

fn bucket_path(dir: &Path, b: usize) -> PathBuf {
    dir.join(format!("bucket-{b:05}.bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_by_car_and_keep_unknown_limits() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let spill = Spill::new(dir.path(), 3)?;
        let mut buf = spill.buffers();
        for car in 0..7u32 {
            spill.push(
                &mut buf,
                car,
                Sample::new(i64::from(car) * 10, 1.5, (car % 2 == 0).then_some(50.0)),
            )?;
        }
        spill.flush(&mut buf)?;
        spill.seal()?;
        let b1 = spill.read(1)?;
        assert_eq!(b1.keys().copied().collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!(b1[&4][0], Sample::new(40, 1.5, Some(50.0)));
        assert_eq!(b1[&1][0].limit(), None);
        Ok(())
    }
}
