//! The rentals file beside a member snapshot file (state format 3): each
//! member's rentals (the record's latest ones and its part's kept final
//! ones) as one checksummed entry, addressed by the snapshot's
//! `rentals_at`/`rentals_len` columns.
//!
//! Why a file of its own: a run reads every member's summary columns (the
//! gates and counts need them) but the rentals of only the members it
//! recomputes, a few percent of them. Nested Parquet columns cannot be read
//! for a scattered few percent of rows without decoding nearly all of them;
//! byte ranges can. A compaction copies entries as bytes, never decoding.
//!
//! Layout: the 8-byte magic `PWMRNT01`, then entries back to back. An entry
//! is its payload and the payload's CRC-32 (little-endian). The payload:
//! the kept rentals (a count, then each in full), then the record's rentals
//! (a count, then each either `k` > 0, the k-th kept rental, which is how a
//! record shows most of its rentals, or 0 and the rental inline). Counts and
//! lengths are LEB128 varints; times and floats 8 bytes little-endian.

use pitwall_score::Features;
use pitwall_score::member_part::KeptRental;

use crate::snapshot::RecentRental;

pub const MAGIC: &[u8; 8] = b"PWMRNT01";

/// One member's rentals as the snapshot keeps them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberRentals {
    /// The record's rentals, latest first.
    pub recent: Vec<RecentRental>,
    /// The final part's kept rentals (empty when the file has no parts).
    pub kept: Vec<KeptRental>,
}

/// Appends one member's entry to `out` and returns its length.
pub fn encode(recent: &[RecentRental], kept: &[KeptRental], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    varint(out, kept.len() as u64);
    for k in kept {
        text(out, &k.rental_id);
        out.extend_from_slice(&k.end_at.to_le_bytes());
        float_opt(out, k.score);
        text_opt(out, k.grade.as_deref());
        let f = &k.features;
        out.extend_from_slice(&f.coverage.to_le_bytes());
        out.extend_from_slice(&f.distance_km.to_le_bytes());
        for v in f.counts() {
            varint(out, u64::from(v));
        }
    }
    varint(out, recent.len() as u64);
    for r in recent {
        match kept.iter().position(|k| shows(k, r)) {
            Some(i) => varint(out, i as u64 + 1),
            None => {
                varint(out, 0);
                text(out, &r.rental_id);
                out.extend_from_slice(&r.end_at.to_le_bytes());
                out.extend_from_slice(&r.distance_km.to_le_bytes());
                float_opt(out, r.score);
                text_opt(out, r.grade.as_deref());
            }
        }
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// One entry back, checked against its checksum.
pub fn decode(entry: &[u8]) -> Result<MemberRentals, String> {
    let split = entry
        .len()
        .checked_sub(4)
        .ok_or("an entry shorter than its checksum")?;
    let (payload, crc) = entry.split_at(split);
    let want = u32::from_le_bytes(crc.try_into().map_err(|_| "checksum")?);
    if crc32fast::hash(payload) != want {
        return Err("an entry's checksum does not match its bytes".into());
    }
    let mut r = Reader(payload);
    let kept = (0..r.count()?)
        .map(|_| r.kept())
        .collect::<Result<Vec<_>, _>>()?;
    let recent = (0..r.count()?)
        .map(|_| match r.varint()? {
            0 => r.inline(),
            i => kept
                .get(usize::try_from(i - 1).unwrap_or(usize::MAX))
                .map(shown)
                .ok_or_else(|| format!("a record rental names kept rental {i} of {}", kept.len())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the entry's rentals", r.0.len()));
    }
    Ok(MemberRentals { recent, kept })
}

/// Whether a record's rental is what its kept rental shows, bit for bit.
fn shows(k: &KeptRental, r: &RecentRental) -> bool {
    let bits = |x: Option<f64>| x.map(f64::to_bits);
    k.rental_id == r.rental_id
        && k.end_at == r.end_at
        && k.features.distance_km.to_bits() == r.distance_km.to_bits()
        && bits(k.score) == bits(r.score)
        && k.grade == r.grade
}

fn shown(k: &KeptRental) -> RecentRental {
    RecentRental {
        rental_id: k.rental_id.clone(),
        end_at: k.end_at,
        distance_km: k.features.distance_km,
        score: k.score,
        grade: k.grade.clone(),
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn text(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn text_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => varint(out, 0),
        Some(s) => {
            varint(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn float_opt(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.0.len() {
            return Err(format!("an entry ends {} bytes early", n - self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("a varint longer than 64 bits".into())
    }

    /// A count of items, each at least one byte: never more than remain.
    fn count(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.0.len())
            .ok_or_else(|| format!("a count of {n} items in {} bytes", self.0.len()))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| format!("{v} does not fit a count of 32 bits"))
    }

    fn eight(&mut self) -> Result<[u8; 8], String> {
        self.take(8)?
            .try_into()
            .map_err(|_| "eight bytes".to_string())
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.eight()?))
    }

    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.eight()?))
    }

    fn text(&mut self) -> Result<String, String> {
        let n = self.count()?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a rental text not UTF-8".into())
    }

    fn text_opt(&mut self) -> Result<Option<String>, String> {
        match self.varint()? {
            0 => Ok(None),
            n => String::from_utf8(
                self.take(usize::try_from(n - 1).unwrap_or(usize::MAX))?
                    .to_vec(),
            )
            .map(Some)
            .map_err(|_| "a rental text not UTF-8".into()),
        }
    }

    fn float_opt(&mut self) -> Result<Option<f64>, String> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => self.f64().map(Some),
            t => Err(format!("an optional number tagged {t}")),
        }
    }

    fn kept(&mut self) -> Result<KeptRental, String> {
        let rental_id = self.text()?;
        let end_at = self.i64()?;
        let score = self.float_opt()?;
        let grade = self.text_opt()?;
        let coverage = self.f64()?;
        let distance_km = self.f64()?;
        let mut counts = [0u32; 7];
        for v in &mut counts {
            *v = self.u32()?;
        }
        Ok(KeptRental {
            rental_id,
            end_at,
            score,
            grade,
            features: Features::from_counts(counts, coverage, distance_km),
        })
    }

    fn inline(&mut self) -> Result<RecentRental, String> {
        Ok(RecentRental {
            rental_id: self.text()?,
            end_at: self.i64()?,
            distance_km: self.f64()?,
            score: self.float_opt()?,
            grade: self.text_opt()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kept_strategy() -> impl Strategy<Value = KeptRental> {
        (
            "[a-z0-9-]{0,40}",
            any::<i64>(),
            proptest::option::of(any::<f64>()),
            proptest::option::of("[A-Z]{0,12}"),
            (any::<f64>(), any::<f64>()),
            proptest::array::uniform7(any::<u32>()),
        )
            .prop_map(|(id, end_at, score, grade, (coverage, distance_km), n)| {
                KeptRental {
                    rental_id: id,
                    end_at,
                    score,
                    grade,
                    features: Features {
                        samples: n[0],
                        coverage,
                        distance_km,
                        moving_s: n[1],
                        speeding_s: n[2],
                        excess_speeding_s: n[3],
                        harsh_accel_n: n[4],
                        harsh_brake_n: n[5],
                        unstable_stop_n: n[6],
                    },
                }
            })
    }

    /// Floats compared by their bits, so NaN and -0.0 count too.
    fn bits(m: &MemberRentals) -> String {
        format!(
            "{:?}",
            (
                m.recent
                    .iter()
                    .map(|r| (
                        &r.rental_id,
                        r.end_at,
                        r.distance_km.to_bits(),
                        r.score.map(f64::to_bits),
                        &r.grade
                    ))
                    .collect::<Vec<_>>(),
                m.kept
                    .iter()
                    .map(|k| (
                        &k.rental_id,
                        k.end_at,
                        k.score.map(f64::to_bits),
                        &k.grade,
                        k.features.coverage.to_bits(),
                        k.features.distance_km.to_bits(),
                        k.features.counts()
                    ))
                    .collect::<Vec<_>>()
            )
        )
    }

    proptest! {
        #[test]
        fn entries_give_back_every_bit(
            kept in proptest::collection::vec(kept_strategy(), 0..12),
            open in proptest::collection::vec(kept_strategy(), 0..4),
            pick in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            // A record shows kept rentals and open ones, in any mix.
            let pool: Vec<&KeptRental> = kept.iter().chain(&open).collect();
            let recent: Vec<RecentRental> = if pool.is_empty() {
                Vec::new()
            } else {
                pick.iter().map(|i| shown(pool[i.index(pool.len())])).collect()
            };
            let m = MemberRentals { recent, kept };
            let mut out = vec![7u8; 3];
            let n = encode(&m.recent, &m.kept, &mut out);
            prop_assert_eq!(n, out.len() - 3);
            let back = decode(&out[3..]).map_err(TestCaseError::fail)?;
            prop_assert_eq!(bits(&back), bits(&m));
        }
    }

    #[test]
    fn a_damaged_or_cut_entry_is_refused_not_misread() {
        let k = KeptRental {
            rental_id: "r1".into(),
            end_at: 5,
            score: Some(90.0),
            grade: Some("GOOD".into()),
            features: Features::default(),
        };
        let mut out = Vec::new();
        encode(&[shown(&k)], std::slice::from_ref(&k), &mut out);
        assert!(decode(&out).is_ok());
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flipped byte {i}");
        }
    }
}
