//! Avro binary of `member_score.v1`, written by hand. apache-avro's
//! schema-aware serde serializer looks every field up by name in a hash map;
//! at a million records that was a quarter of the publisher's CPU. The schema
//! is fixed per record version, so the field order is fixed too: this writes
//! it straight, and the tests hold it byte-equal to apache-avro's output.

use crate::record::{MemberScore, RecentRental};

/// Appends the record's Avro binary datum (no container, no framing).
pub fn write_member_score(r: &MemberScore<'_>, out: &mut Vec<u8>) {
    string(r.member_id, out);
    out.push(u8::from(r.eligible));
    string(r.status, out);
    opt_double(r.score, out);
    opt_string(r.grade, out);
    long(i64::from(r.rentals_used), out);
    long(i64::from(r.rentals_12m), out);
    double(r.distance_km_total, out);
    let rates = &r.rates;
    for v in [
        rates.harsh_accel_per_100km,
        rates.harsh_brake_per_100km,
        rates.unstable_stop_per_100km,
        rates.speeding_pct,
        rates.excess_speeding_pct,
    ] {
        double(v, out);
    }
    string(r.model, out);
    long(r.as_of, out);
    string(r.run_id, out);
    array(&r.recent_rentals, out, recent_rental);
}

fn recent_rental(r: &RecentRental<'_>, out: &mut Vec<u8>) {
    string(r.rental_id, out);
    long(r.end_at, out);
    double(r.distance_km, out);
    opt_double(r.score, out);
    opt_string(r.grade, out);
}

/// Zigzag, then base-128 varint, least significant group first.
fn long(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn double(v: f64, out: &mut Vec<u8>) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn string(s: &str, out: &mut Vec<u8>) {
    long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

/// `["null", T]`: branch 0 is null, branch 1 the value.
fn opt_double(v: Option<f64>, out: &mut Vec<u8>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(2); // zigzag(1)
            double(v, out);
        }
    }
}

fn opt_string(v: Option<&str>, out: &mut Vec<u8>) {
    match v {
        None => out.push(0),
        Some(s) => {
            out.push(2);
            string(s, out);
        }
    }
}

/// One block with every item, then the empty block that ends the array.
fn array<T>(items: &[T], out: &mut Vec<u8>, item: impl Fn(&T, &mut Vec<u8>)) {
    if !items.is_empty() {
        long(items.len() as i64, out);
        for i in items {
            item(i, out);
        }
    }
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FactorRates;
    use apache_avro::schema::ResolvedSchema;
    use proptest::prelude::*;

    #[allow(deprecated)]
    fn reference(r: &MemberScore<'_>) -> Vec<u8> {
        let schema = pitwall_contract::schemas::member_score_v1().expect("embedded schema");
        let resolved = ResolvedSchema::try_from(&schema).expect("resolves");
        let mut out = Vec::new();
        apache_avro::write_avro_datum_ref(&schema, resolved.get_names(), r, &mut out)
            .expect("apache-avro encodes");
        out
    }

    fn rental(s: &(String, i64, f64, Option<f64>, Option<String>)) -> RecentRental<'_> {
        RecentRental {
            rental_id: &s.0,
            end_at: s.1,
            distance_km: s.2,
            score: s.3,
            grade: s.4.as_deref(),
        }
    }

    #[test]
    fn longs_are_zigzag_varints() {
        for (v, bytes) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
            (
                i64::MAX,
                vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            long(v, &mut out);
            assert_eq!(out, bytes, "{v}");
        }
    }

    proptest! {
        #[test]
        fn hand_encoding_equals_apache_avro(
            member in "\\PC{0,20}",
            status in "[a-z_]{0,20}",
            score in proptest::option::of(any::<f64>()),
            grade in proptest::option::of("\\PC{0,8}"),
            used in any::<i32>(),
            r12 in any::<i32>(),
            dist in any::<f64>(),
            rates in proptest::array::uniform5(any::<f64>()),
            as_of in any::<i64>(),
            rentals in proptest::collection::vec(
                ("\\PC{0,12}", any::<i64>(), any::<f64>(),
                 proptest::option::of(any::<f64>()), proptest::option::of("[A-Z]{0,9}")),
                0..12),
        ) {
            let r = MemberScore {
                member_id: &member,
                eligible: used % 2 == 0,
                status: &status,
                score,
                grade: grade.as_deref(),
                rentals_used: used,
                rentals_12m: r12,
                distance_km_total: dist,
                rates: FactorRates {
                    harsh_accel_per_100km: rates[0],
                    harsh_brake_per_100km: rates[1],
                    unstable_stop_per_100km: rates[2],
                    speeding_pct: rates[3],
                    excess_speeding_pct: rates[4],
                },
                model: "psf-v1@1",
                as_of,
                run_id: "run",
                recent_rentals: rentals.iter().map(rental).collect(),
            };
            let mut ours = Vec::new();
            write_member_score(&r, &mut ours);
            prop_assert_eq!(ours, reference(&r));
        }
    }
}
