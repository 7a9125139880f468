//! Event ids as 128-bit keys (for reconciliation and replays): a UUID is its own 128 bits (and prints back
//! exactly), anything else is hashed and its text kept for the report. Tens
//! of millions of ids fit in memory this way, where strings would not.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

pub type Key = u128;

/// Ids that are not UUIDs, by key, so that samples can name them.
#[derive(Debug, Default)]
pub struct Names(HashMap<Key, Box<str>>);

impl Names {
    pub fn key(&mut self, id: &str) -> Key {
        if let Some(k) = uuid_bits(id) {
            return k;
        }
        let k = hash128(id.as_bytes());
        self.0.entry(k).or_insert_with(|| id.into());
        k
    }

    pub fn name(&self, k: Key) -> String {
        match self.0.get(&k) {
            Some(n) => n.to_string(),
            None => uuid_text(k),
        }
    }

    pub fn absorb(&mut self, other: Names) {
        self.0.extend(other.0);
    }
}

/// An id's key, when its text need not be kept.
pub fn key_of(id: &str) -> Key {
    uuid_bits(id).unwrap_or_else(|| hash128(id.as_bytes()))
}

/// The key of a record's bytes (a DLQ entry's original data).
pub fn key_of_bytes(b: &[u8]) -> Key {
    hash128(b)
}

/// Two seeded 64-bit hashes: a collision with another id, or with a UUID's
/// own bits, is a 2^-128 event per pair.
fn hash128(b: &[u8]) -> Key {
    let h = |seed: u8| BuildHasherDefault::<DefaultHasher>::default().hash_one((seed, b));
    (u128::from(h(1)) << 64) | u128::from(h(2))
}

/// The 128 bits of a canonical UUID (either case).
fn uuid_bits(s: &str) -> Option<Key> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut v: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        if !matches!(i, 8 | 13 | 18 | 23) {
            v = (v << 4) | u128::from((c as char).to_digit(16)?);
        }
    }
    Some(v)
}

fn uuid_text(k: Key) -> String {
    let h = format!("{k:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_print_back_as_themselves_and_other_ids_by_name() {
        let mut n = Names::default();
        let u = "0b8e2f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
        let k = n.key(u);
        assert_eq!(n.name(k), u);
        let upper = u.to_uppercase();
        assert_eq!(n.key(&upper), n.key(u));
        let k = n.key("req-42");
        assert_eq!(n.name(k), "req-42");
        assert_ne!(n.key("req-43"), k);
        assert_eq!(uuid_bits("0b8e2f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5g"), None);
    }
}
