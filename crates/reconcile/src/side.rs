//! One side's events of one hour: for each event id, a fingerprint of the
//! whole event and a short hash of each field, enough to say whether two
//! events agree and, when they don't, in which fields.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};

use crate::keys::{Key, Names};

/// One field's value in the form both sides can produce: the lake's Arrow
/// value, or the legacy event after the contract's validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Str(&'a str),
    Int(i64),
    Float(f64),
    Ts(i64),
    Bool(bool),
}

impl Value<'_> {
    fn hash_into(&self, h: &mut DefaultHasher) {
        match *self {
            Value::Null => 0u8.hash(h),
            Value::Str(s) => (1u8, s).hash(h),
            Value::Int(v) => (2u8, v).hash(h),
            // -0.0 and 0.0 are one value to a reader; NaN never validates.
            Value::Float(v) => (3u8, if v == 0.0 { 0 } else { v.to_bits() }).hash(h),
            Value::Ts(v) => (4u8, v).hash(h),
            Value::Bool(v) => (5u8, v).hash(h),
        }
    }
}

/// Events of one side: flat arrays, one slot per event, `fields` holding
/// `n_fields` short hashes per event.
#[derive(Debug, Default)]
pub struct Events {
    pub n_fields: usize,
    pub keys: Vec<Key>,
    pub prints: Vec<u64>,
    pub fields: Vec<u16>,
    pub names: Names,
}

impl Events {
    pub fn new(n_fields: usize) -> Events {
        Events {
            n_fields,
            ..Events::default()
        }
    }

    pub fn push<'v>(&mut self, id: &str, values: impl IntoIterator<Item = Value<'v>>) {
        let key = self.names.key(id);
        let mut whole = DefaultHasher::default();
        let start = self.fields.len();
        for v in values {
            let mut one = DefaultHasher::default();
            v.hash_into(&mut one);
            let h = one.finish();
            h.hash(&mut whole);
            self.fields.push(h as u16);
        }
        debug_assert_eq!(self.fields.len() - start, self.n_fields);
        self.keys.push(key);
        self.prints.push(whole.finish());
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    fn field_hashes(&self, i: usize) -> &[u16] {
        &self.fields[i * self.n_fields..(i + 1) * self.n_fields]
    }
}

/// The events of one side and hour, indexed by id. The first of two events
/// with one id is kept; the others are counted as duplicates.
#[derive(Debug, Default)]
pub struct Side {
    index: HashMap<Key, u32, BuildHasherDefault<KeyHasher>>,
    events: Events,
    pub duplicates: u64,
    pub duplicate_sample: Vec<Key>,
}

impl Side {
    pub fn new(n_fields: usize) -> Side {
        Side {
            events: Events::new(n_fields),
            ..Side::default()
        }
    }

    /// Takes in the events of one file (or one batch of them).
    pub fn absorb(&mut self, mut more: Events, sample: usize) {
        let base = self.events.len();
        self.index.reserve(more.len());
        for (i, &k) in more.keys.iter().enumerate() {
            match self.index.entry(k) {
                Entry::Vacant(v) => {
                    v.insert((base + i) as u32);
                }
                Entry::Occupied(_) => {
                    self.duplicates += 1;
                    if self.duplicate_sample.len() < sample {
                        self.duplicate_sample.push(k);
                    }
                }
            }
        }
        let e = &mut self.events;
        e.keys.append(&mut more.keys);
        e.prints.append(&mut more.prints);
        e.fields.append(&mut more.fields);
        e.names.absorb(more.names);
    }

    /// Distinct events.
    pub fn distinct(&self) -> usize {
        self.index.len()
    }

    pub fn contains(&self, k: Key) -> bool {
        self.index.contains_key(&k)
    }

    pub fn name(&self, k: Key) -> String {
        self.events.names.name(k)
    }

    /// Each distinct event: its key, fingerprint and field hashes.
    pub fn iter(&self) -> impl Iterator<Item = (Key, u64, &[u16])> + '_ {
        self.index.iter().map(|(&k, &i)| {
            let i = i as usize;
            (k, self.events.prints[i], self.events.field_hashes(i))
        })
    }

    pub fn get(&self, k: Key) -> Option<(u64, &[u16])> {
        let i = *self.index.get(&k)? as usize;
        Some((self.events.prints[i], self.events.field_hashes(i)))
    }
}

/// Keys are UUID bits or already hashes: spreading them again is waste.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u128(&mut self, k: u128) {
        // Mix both halves: UUID v4 keeps fixed version bits in the high one.
        self.0 =
            ((k as u64) ^ ((k >> 64) as u64).rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(rows: &[(&str, i64)]) -> Events {
        let mut e = Events::new(2);
        for &(id, v) in rows {
            e.push(id, [Value::Str(id), Value::Int(v)]);
        }
        e
    }

    #[test]
    fn duplicates_are_counted_and_the_first_is_kept() {
        let mut s = Side::new(2);
        s.absorb(events(&[("a", 1), ("b", 2)]), 5);
        s.absorb(events(&[("a", 9)]), 5);
        assert_eq!((s.distinct(), s.duplicates), (2, 1));
        let k = Names::default().key("a");
        assert_eq!(s.name(s.duplicate_sample[0]), "a");
        let (_, fields) = s.get(k).expect("a");
        let first = events(&[("a", 1)]);
        assert_eq!(fields, first.field_hashes(0));
    }

    #[test]
    fn equal_values_print_alike_and_a_changed_field_shows_where() {
        let a = events(&[("x", 1)]);
        let b = events(&[("x", 1)]);
        let c = events(&[("x", 2)]);
        assert_eq!(a.prints[0], b.prints[0]);
        assert_ne!(a.prints[0], c.prints[0]);
        assert_eq!(a.field_hashes(0)[0], c.field_hashes(0)[0]);
        assert_ne!(a.field_hashes(0)[1], c.field_hashes(0)[1]);
    }

    #[test]
    fn values_of_different_kinds_never_hash_alike() {
        let p = |v: Value<'_>| {
            let mut e = Events::new(1);
            e.push("k", [v]);
            e.prints[0]
        };
        assert_ne!(p(Value::Int(1)), p(Value::Ts(1)));
        assert_ne!(p(Value::Null), p(Value::Str("")));
        assert_eq!(p(Value::Float(0.0)), p(Value::Float(-0.0)));
    }
}
