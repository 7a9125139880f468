//! Each member's final part (`pitwall_score::member_part`) as columns of
//! the state's member snapshot, beside the record: what the next run
//! extends instead of reading the member's final rentals again. Exports
//! and `--out` leave these columns out.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use pitwall_score::exact::ExactSum;
use pitwall_score::member_part::{FinalPart, KeptRental};

use crate::StateError;
use crate::results::{INT_COLUMNS, features_at};

const RENTALS: &str = "final_rentals";
const DISTANCE: &str = "final_distance_partials";
const IN_WINDOW: &str = "final_in_window";
const RECENT: &str = "final_recent";

fn err(problem: impl ToString) -> StateError {
    StateError::Table {
        what: "member snapshot (final parts)".into(),
        problem: problem.to_string(),
    }
}

/// The part columns of `parts`, one row per part. The kept rentals go to
/// the rentals file ([`crate::member_rentals`]).
pub fn columns(parts: &[FinalPart]) -> Vec<(Field, ArrayRef)> {
    let mut distance = ListBuilder::new(Float64Builder::new());
    let mut in_window = Int64Builder::new();
    let mut rentals = Int64Builder::new();
    for p in parts {
        distance.values().append_slice(p.distance.partials());
        distance.append(true);
        in_window.append_value(i64::from(p.in_window));
        rentals.append_value(i64::try_from(p.rentals).unwrap_or(i64::MAX));
    }
    let distance: ArrayRef = Arc::new(distance.finish());
    vec![
        (
            Field::new(RENTALS, DataType::Int64, false),
            Arc::new(rentals.finish()),
        ),
        (
            Field::new(DISTANCE, distance.data_type().clone(), false),
            distance,
        ),
        (
            Field::new(IN_WINDOW, DataType::Int64, false),
            Arc::new(in_window.finish()),
        ),
    ]
}

/// Whether a snapshot batch carries the parts (a snapshot written before
/// they existed does not: its first run rebuilds them from the rentals).
/// Their kept rentals are inline (format 2) or in the rentals file.
pub fn present(b: &RecordBatch) -> bool {
    [RENTALS, DISTANCE, IN_WINDOW]
        .iter()
        .all(|c| b.column_by_name(c).is_some())
}

/// The part of row `row` of a snapshot batch that [`present`] holds; its
/// kept rentals only when they are inline (else the caller fills them in
/// from the rentals file).
pub fn read(b: &RecordBatch, row: usize) -> Result<FinalPart, StateError> {
    let col = |n: &str| {
        b.column_by_name(n)
            .ok_or_else(|| err(format!("no column {n}")))
    };
    let partials = col(DISTANCE)?
        .as_list_opt::<i32>()
        .ok_or_else(|| err(DISTANCE))?
        .value(row);
    let partials = partials
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| err(DISTANCE))?;
    let in_window = col(IN_WINDOW)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| err(IN_WINDOW))?
        .value(row);
    let recent = match b.column_by_name(RECENT) {
        Some(c) => kept_of(
            &c.as_list_opt::<i32>()
                .ok_or_else(|| err(RECENT))?
                .value(row),
        )?,
        None => Vec::new(),
    };
    let rentals = col(RENTALS)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| err(RENTALS))?
        .value(row);
    Ok(FinalPart {
        rentals: u64::try_from(rentals).map_err(|_| err(format!("{RENTALS} {rentals}")))?,
        distance: ExactSum::from_partials(partials.values().to_vec()),
        in_window: u32::try_from(in_window).map_err(|_| err(format!("{IN_WINDOW} {in_window}")))?,
        recent,
    })
}

fn kept_of(list: &ArrayRef) -> Result<Vec<KeptRental>, StateError> {
    let s = list.as_struct_opt().ok_or_else(|| err(RECENT))?;
    let c = |k: usize| s.column(k);
    let ids = c(0)
        .as_string_opt::<i32>()
        .ok_or_else(|| err("rental_id"))?;
    let end = c(1)
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| err("end_at"))?;
    let score = c(2)
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| err("score"))?;
    let grade = c(3).as_string_opt::<i32>().ok_or_else(|| err("grade"))?;
    let coverage = c(4)
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| err("coverage"))?;
    let distance = c(5)
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| err("distance"))?;
    let ints: Vec<_> = (6..6 + INT_COLUMNS.len())
        .map(|k| {
            c(k).as_primitive_opt::<Int64Type>()
                .ok_or_else(|| err(INT_COLUMNS[k - 6]))
        })
        .collect::<Result<_, _>>()?;
    let ints: [&arrow_array::Int64Array; 7] = ints
        .try_into()
        .map_err(|_| err("the kept rentals' count columns"))?;
    (0..s.len())
        .map(|i| {
            Ok(KeptRental {
                rental_id: ids.value(i).to_string(),
                end_at: end.value(i),
                score: score.is_valid(i).then(|| score.value(i)),
                grade: grade.is_valid(i).then(|| grade.value(i).to_string()),
                features: features_at(&ints, coverage, distance, i)
                    .map_err(|e| err(format!("kept rental {}: {e}", ids.value(i))))?,
            })
        })
        .collect()
}

/// The kept rentals inline, as state format 2 wrote them: tests write
/// such files.
#[cfg(test)]
pub(crate) mod inline {
    use super::*;
    use arrow_array::builder::{StringBuilder, StructBuilder, TimestampMillisecondBuilder};
    use arrow_schema::Fields;

    fn kept_fields() -> Fields {
        let mut f = vec![
            Field::new("rental_id", DataType::Utf8, false),
            Field::new("end_at", crate::results::ts_type(), false),
            Field::new("score", DataType::Float64, true),
            Field::new("grade", DataType::Utf8, true),
            Field::new("coverage", DataType::Float64, false),
            Field::new("distance_km", DataType::Float64, false),
        ];
        f.extend(
            INT_COLUMNS
                .iter()
                .map(|n| Field::new(*n, DataType::Int64, false)),
        );
        Fields::from(f)
    }

    fn kept_builder() -> StructBuilder {
        StructBuilder::from_fields(kept_fields(), 0)
    }

    fn append_kept(s: &mut StructBuilder, k: &KeptRental) -> Result<(), StateError> {
        let f = &k.features;
        macro_rules! field {
            ($i:expr, $t:ty) => {
                s.field_builder::<$t>($i)
                    .ok_or_else(|| err(format!("builder field {}", $i)))?
            };
        }
        field!(0, StringBuilder).append_value(&k.rental_id);
        field!(1, TimestampMillisecondBuilder).append_value(k.end_at);
        field!(2, Float64Builder).append_option(k.score);
        field!(3, StringBuilder).append_option(k.grade.as_deref());
        field!(4, Float64Builder).append_value(f.coverage);
        field!(5, Float64Builder).append_value(f.distance_km);
        let ints = f.counts();
        for (j, v) in ints.into_iter().enumerate() {
            field!(6 + j, Int64Builder).append_value(i64::from(v));
        }
        s.append(true);
        Ok(())
    }

    /// The kept rentals as a list column, as state format 2 kept them inline
    /// (tests write such files).
    pub(crate) fn recent_column(parts: &[FinalPart]) -> Result<(Field, ArrayRef), StateError> {
        let mut recent = ListBuilder::new(kept_builder());
        for p in parts {
            let s = recent.values();
            for k in &p.recent {
                append_kept(s, k)?;
            }
            recent.append(true);
        }
        let recent: ArrayRef = Arc::new(recent.finish());
        Ok((
            Field::new(RECENT, recent.data_type().clone(), false),
            recent,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_score::Features;

    #[test]
    fn parts_survive_their_columns() -> Result<(), StateError> {
        let mut a = FinalPart::default();
        a.distance.add(12.5);
        a.distance.add(1e-17);
        a.in_window = 3;
        a.rentals = 4;
        a.recent.push(KeptRental {
            rental_id: "r1".into(),
            end_at: 42,
            score: Some(88.8),
            grade: Some("GOOD".into()),
            features: Features {
                samples: 601,
                coverage: 0.99,
                distance_km: 12.5,
                moving_s: 500,
                harsh_brake_n: 2,
                ..Features::default()
            },
        });
        let parts = vec![a, FinalPart::default()];
        let mut both = columns(&parts);
        both.push(inline::recent_column(&parts)?);
        let (fields, cols): (Vec<Field>, Vec<ArrayRef>) = both.into_iter().unzip();
        let b =
            RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols).map_err(err)?;
        assert!(present(&b));
        assert_eq!(read(&b, 0)?, parts[0]);
        assert_eq!(read(&b, 1)?, parts[1]);
        Ok(())
    }
}
