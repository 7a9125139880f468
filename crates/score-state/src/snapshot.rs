//! Member records as rows and as Arrow: the schema of `member_scores.parquet`
//! (a full run's, and a state's snapshot) and of `member_changes.parquet`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMillisecondArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use pitwall_score::member::{FactorRates, MemberScore, MemberStatus};

use crate::StateError;
use crate::results::ts_type;

/// A rental used for a member's score, as the record shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentRental {
    pub rental_id: String,
    pub end_at: i64,
    pub distance_km: f64,
    pub score: Option<f64>,
    pub grade: Option<String>,
}

/// One member's record at an as_of.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub member_id: String,
    pub score: MemberScore,
    /// The rentals used, latest first (the rentals of `score.rentals_used`).
    pub recent: Vec<RecentRental>,
}

/// A record's content as 16 bytes: what publication compares instead of
/// the records themselves, so it needs neither the published records nor
/// the rentals of members that did not change.
pub type Digest = [u8; 16];

/// The digest of everything a record shows (SHA-256 of its fields in a
/// fixed order, floats by their bits, truncated to 128 bits: a collision
/// would have to be found, not met).
pub fn digest(m: &MemberRecord) -> Digest {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let text = |h: &mut sha2::Sha256, s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    let opt_f = |h: &mut sha2::Sha256, v: Option<f64>| match v {
        None => h.update([0u8]),
        Some(v) => {
            h.update([1u8]);
            h.update(v.to_bits().to_le_bytes());
        }
    };
    let opt_t = |h: &mut sha2::Sha256, v: Option<&str>| match v {
        None => h.update([0u8]),
        Some(v) => {
            h.update([1u8]);
            text(h, v);
        }
    };
    let s = &m.score;
    text(&mut h, &m.member_id);
    h.update([u8::from(s.eligible)]);
    text(&mut h, s.status.as_str());
    opt_f(&mut h, s.score);
    opt_t(&mut h, s.grade.as_deref());
    h.update((s.rentals_used.len() as u64).to_le_bytes());
    for id in &s.rentals_used {
        text(&mut h, id);
    }
    h.update(s.rentals_12m.to_le_bytes());
    let r = &s.rates;
    for v in [
        s.distance_km_total,
        r.harsh_accel_per_100km,
        r.harsh_brake_per_100km,
        r.unstable_stop_per_100km,
        r.speeding_pct,
        r.excess_speeding_pct,
    ] {
        h.update(v.to_bits().to_le_bytes());
    }
    h.update((m.recent.len() as u64).to_le_bytes());
    for r in &m.recent {
        text(&mut h, &r.rental_id);
        h.update(r.end_at.to_le_bytes());
        h.update(r.distance_km.to_bits().to_le_bytes());
        opt_f(&mut h, r.score);
        opt_t(&mut h, r.grade.as_deref());
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The records of `now` that differ from the record of the same member in
/// `before`, or have none there.
pub fn differing<'a>(now: &'a [MemberRecord], before: &[MemberRecord]) -> Vec<&'a MemberRecord> {
    let before: std::collections::HashMap<&str, &MemberRecord> =
        before.iter().map(|m| (m.member_id.as_str(), m)).collect();
    now.iter()
        .filter(|m| before.get(m.member_id.as_str()) != Some(m))
        .collect()
}

fn recent_fields() -> Fields {
    Fields::from(vec![
        Field::new("rental_id", DataType::Utf8, false),
        Field::new("end_at", ts_type(), false),
        Field::new("distance_km", DataType::Float64, false),
        Field::new("score", DataType::Float64, true),
        Field::new("grade", DataType::Utf8, true),
    ])
}

fn err(problem: impl ToString) -> StateError {
    StateError::Table {
        what: "member scores".into(),
        problem: problem.to_string(),
    }
}

/// Each member's used rentals inline, as a list of structs: a publisher
/// reads one file and needs no join against the rental results.
fn recent_column(records: &[&MemberRecord]) -> Result<ArrayRef, StateError> {
    let flat: Vec<&RecentRental> = records.iter().flat_map(|m| &m.recent).collect();
    let children: Vec<ArrayRef> = vec![
        Arc::new(
            flat.iter()
                .map(|r| Some(r.rental_id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            flat.iter()
                .map(|r| Some(r.end_at))
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(
            flat.iter()
                .map(|r| Some(r.distance_km))
                .collect::<Float64Array>(),
        ),
        Arc::new(flat.iter().map(|r| r.score).collect::<Float64Array>()),
        Arc::new(
            flat.iter()
                .map(|r| r.grade.as_deref())
                .collect::<StringArray>(),
        ),
    ];
    let structs = StructArray::try_new(recent_fields(), children, None).map_err(err)?;
    let offsets = OffsetBuffer::from_lengths(records.iter().map(|m| m.recent.len()));
    let item = Arc::new(Field::new("item", DataType::Struct(recent_fields()), false));
    Ok(Arc::new(
        ListArray::try_new(item, offsets, Arc::new(structs), None).map_err(err)?,
    ))
}

/// Records as one batch, with the model id and as_of on every row.
pub fn to_batch(
    records: &[MemberRecord],
    model: &str,
    as_of: i64,
) -> Result<RecordBatch, StateError> {
    record_batch(records, model, as_of, true)
}

/// [`to_batch`], with the `recent_rentals` column only when `with_recent`
/// (a state file keeps them in its rentals file).
pub(crate) fn record_batch<R: std::borrow::Borrow<MemberRecord>>(
    records: &[R],
    model: &str,
    as_of: i64,
    with_recent: bool,
) -> Result<RecordBatch, StateError> {
    let records: Vec<&MemberRecord> = records.iter().map(|r| r.borrow()).collect();
    let records = &records[..];
    let floats = |f: &dyn Fn(&MemberRecord) -> Option<f64>| -> ArrayRef {
        Arc::new(records.iter().map(|m| f(m)).collect::<Float64Array>())
    };
    let rate =
        |g: fn(&FactorRates) -> f64| floats(&move |m: &MemberRecord| Some(g(&m.score.rates)));
    let ints = |f: &dyn Fn(&MemberRecord) -> i64| -> ArrayRef {
        Arc::new(records.iter().map(|m| Some(f(m))).collect::<Int64Array>())
    };
    let text = |f: &dyn Fn(&MemberRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(|m| f(m)).collect::<StringArray>())
    };
    let mut fields = vec![
        Field::new("member_id", DataType::Utf8, false),
        Field::new("eligible", DataType::Boolean, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("score", DataType::Float64, true),
        Field::new("grade", DataType::Utf8, true),
        Field::new("rentals_used", DataType::Int64, false),
        Field::new("rentals_12m", DataType::Int64, false),
        Field::new("distance_km_total", DataType::Float64, false),
        Field::new("harsh_accel_per_100km", DataType::Float64, false),
        Field::new("harsh_brake_per_100km", DataType::Float64, false),
        Field::new("unstable_stop_per_100km", DataType::Float64, false),
        Field::new("speeding_pct", DataType::Float64, false),
        Field::new("excess_speeding_pct", DataType::Float64, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("as_of", ts_type(), false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        text(&|m| Some(&m.member_id)),
        Arc::new(
            records
                .iter()
                .map(|m| Some(m.score.eligible))
                .collect::<BooleanArray>(),
        ),
        text(&|m| Some(m.score.status.as_str())),
        floats(&|m| m.score.score),
        text(&|m| m.score.grade.as_deref()),
        ints(&|m| m.score.rentals_used.len() as i64),
        ints(&|m| i64::from(m.score.rentals_12m)),
        floats(&|m| Some(m.score.distance_km_total)),
        rate(|r| r.harsh_accel_per_100km),
        rate(|r| r.harsh_brake_per_100km),
        rate(|r| r.unstable_stop_per_100km),
        rate(|r| r.speeding_pct),
        rate(|r| r.excess_speeding_pct),
        Arc::new(records.iter().map(|_| Some(model)).collect::<StringArray>()),
        Arc::new(
            records
                .iter()
                .map(|_| Some(as_of))
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        ),
    ];
    if with_recent {
        let recent = recent_column(records)?;
        fields.insert(
            6,
            Field::new("recent_rentals", recent.data_type().clone(), false),
        );
        cols.insert(6, recent);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(err)
}

fn member_status(s: &str) -> Result<MemberStatus, StateError> {
    match s {
        "scored" => Ok(MemberStatus::Scored),
        "insufficient_distance" => Ok(MemberStatus::InsufficientDistance),
        "no_recent_rentals" => Ok(MemberStatus::NoRecentRentals),
        other => Err(err(format!("unknown member status {other:?}"))),
    }
}

/// Reads records back from batches of [`to_batch`]'s schema.
pub fn from_batches(batches: &[RecordBatch]) -> Result<Vec<MemberRecord>, StateError> {
    let mut out = Vec::new();
    for b in batches {
        read_batch(b, &mut out)?;
    }
    Ok(out)
}

fn read_batch(b: &RecordBatch, out: &mut Vec<MemberRecord>) -> Result<(), StateError> {
    let col = |n: &str| {
        b.column_by_name(n)
            .ok_or_else(|| err(format!("no column {n:?}")))
    };
    let s = |n: &str| col(n)?.as_string_opt::<i32>().ok_or_else(|| err(n));
    let f = |n: &str| {
        col(n)?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| err(n))
    };
    let i = |n: &str| {
        col(n)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| err(n))
    };
    let (ids, status, grade) = (s("member_id")?, s("status")?, s("grade")?);
    let eligible = col("eligible")?
        .as_boolean_opt()
        .ok_or_else(|| err("eligible"))?;
    let (score, dist) = (f("score")?, f("distance_km_total")?);
    let rates = [
        f("harsh_accel_per_100km")?,
        f("harsh_brake_per_100km")?,
        f("unstable_stop_per_100km")?,
        f("speeding_pct")?,
        f("excess_speeding_pct")?,
    ];
    let rentals_12m = i("rentals_12m")?;
    // A state file of format 3 keeps the rentals in its rentals file: the
    // caller fills them in.
    let recent = match b.column_by_name("recent_rentals") {
        Some(c) => Some(
            c.as_list_opt::<i32>()
                .ok_or_else(|| err("recent_rentals"))?,
        ),
        None => None,
    };
    for row in 0..b.num_rows() {
        let used = match recent {
            Some(list) => recent_of(&list.value(row))?,
            None => Vec::new(),
        };
        out.push(MemberRecord {
            member_id: ids.value(row).to_string(),
            score: MemberScore {
                eligible: eligible.value(row),
                status: member_status(status.value(row))?,
                score: score.is_valid(row).then(|| score.value(row)),
                grade: grade.is_valid(row).then(|| grade.value(row).to_string()),
                rentals_used: used.iter().map(|r| r.rental_id.clone()).collect(),
                rentals_12m: u32::try_from(rentals_12m.value(row)).unwrap_or(u32::MAX),
                distance_km_total: dist.value(row),
                rates: FactorRates {
                    harsh_accel_per_100km: rates[0].value(row),
                    harsh_brake_per_100km: rates[1].value(row),
                    unstable_stop_per_100km: rates[2].value(row),
                    speeding_pct: rates[3].value(row),
                    excess_speeding_pct: rates[4].value(row),
                },
            },
            recent: used,
        });
    }
    Ok(())
}

fn recent_of(list: &ArrayRef) -> Result<Vec<RecentRental>, StateError> {
    let s = list.as_struct_opt().ok_or_else(|| err("recent_rentals"))?;
    let c = |k: usize| s.column(k);
    let ids = c(0)
        .as_string_opt::<i32>()
        .ok_or_else(|| err("rental_id"))?;
    let end = c(1)
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| err("end_at"))?;
    let dist = c(2)
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| err("distance_km"))?;
    let score = c(3)
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| err("score"))?;
    let grade = c(4).as_string_opt::<i32>().ok_or_else(|| err("grade"))?;
    Ok((0..s.len())
        .map(|i| RecentRental {
            rental_id: ids.value(i).to_string(),
            end_at: end.value(i),
            distance_km: dist.value(i),
            score: score.is_valid(i).then(|| score.value(i)),
            grade: grade.is_valid(i).then(|| grade.value(i).to_string()),
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(id: &str, score: Option<f64>) -> MemberRecord {
        MemberRecord {
            member_id: id.into(),
            score: MemberScore {
                eligible: true,
                status: MemberStatus::Scored,
                score,
                grade: score.map(|_| "GOOD".to_string()),
                rentals_used: vec!["r1".into()],
                rentals_12m: 2,
                distance_km_total: 123.5,
                rates: FactorRates {
                    harsh_brake_per_100km: 1.5,
                    ..FactorRates::default()
                },
            },
            recent: vec![RecentRental {
                rental_id: "r1".into(),
                end_at: 42,
                distance_km: 12.0,
                score,
                grade: score.map(|_| "GOOD".to_string()),
            }],
        }
    }

    #[test]
    fn records_survive_a_round_trip() -> Result<(), StateError> {
        let records = vec![record("a", Some(77.0)), record("b", None)];
        let batch = to_batch(&records, "psf@1", 1_000)?;
        assert_eq!(from_batches(&[batch])?, records);
        Ok(())
    }
}
