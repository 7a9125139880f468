//! What a reconciliation found, per event hour and in total; and the
//! comparison of one hour's two sides that produces it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dlq::Dlq;
use crate::read::{Refused, Unreadable};
use crate::side::Side;

#[derive(Debug, Serialize)]
pub struct Report {
    pub dataset: String,
    pub legacy: String,
    pub lake: String,
    /// First hour compared, RFC 3339.
    pub from: String,
    /// End of the range (exclusive), RFC 3339.
    pub to: String,
    /// Problems allowed per hour, as a fraction of the hour's legacy events.
    pub tolerance: f64,
    pub within_tolerance: bool,
    pub totals: Totals,
    pub hours: Vec<HourReport>,
    /// The lake's DLQ by arrival date and reason.
    pub dlq_by_date: BTreeMap<String, BTreeMap<String, u64>>,
    /// Legacy lines with no event time to place them by.
    pub legacy_unreadable: u64,
    pub legacy_unreadable_sample: Vec<Unreadable>,
    pub legacy_files: usize,
    pub legacy_lines: u64,
    pub lake_files: usize,
    pub millis: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub legacy: u64,
    pub lake: u64,
    pub matched: u64,
    pub missing: u64,
    pub extra: u64,
    pub differing: u64,
    pub legacy_refused: u64,
    pub refused_in_dlq: u64,
    pub refused_not_in_dlq: u64,
    pub legacy_duplicates: u64,
    pub lake_duplicates: u64,
    pub hours_beyond_tolerance: u64,
}

#[derive(Debug, Serialize)]
pub struct Differing {
    pub event_id: String,
    pub fields: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct HourReport {
    /// The event hour, RFC 3339.
    pub hour: String,
    /// Distinct valid events on each side.
    pub legacy: u64,
    pub lake: u64,
    pub matched: u64,
    /// In the legacy output, valid, and not in the lake.
    pub missing: u64,
    pub missing_sample: Vec<String>,
    /// In the lake and not in the legacy output.
    pub extra: u64,
    pub extra_sample: Vec<String>,
    /// In both, with fields that differ after the contract's transforms.
    pub differing: u64,
    pub differing_by_field: BTreeMap<String, u64>,
    pub differing_sample: Vec<Differing>,
    /// Legacy events the contract refuses, by reason: the new path must
    /// have put them in its DLQ.
    pub legacy_refused: BTreeMap<String, u64>,
    pub refused_in_dlq: u64,
    pub refused_not_in_dlq: u64,
    pub refused_not_in_dlq_sample: Vec<String>,
    pub legacy_duplicates: u64,
    pub lake_duplicates: u64,
    pub lake_duplicate_sample: Vec<String>,
    /// missing + extra + differing + lake duplicates + refused events the
    /// DLQ doesn't hold.
    pub problems: u64,
    pub within_tolerance: bool,
}

pub struct Compare<'a> {
    pub fields: &'a [String],
    pub dlq: &'a Dlq,
    pub sample: usize,
    pub tolerance: f64,
}

impl Compare<'_> {
    pub fn hour(&self, hour: String, legacy: &Side, lake: &Side, refused: &Refused) -> HourReport {
        let mut r = HourReport {
            hour,
            legacy: legacy.distinct() as u64,
            lake: lake.distinct() as u64,
            matched: 0,
            missing: 0,
            missing_sample: Vec::new(),
            extra: 0,
            extra_sample: Vec::new(),
            differing: 0,
            differing_by_field: BTreeMap::new(),
            differing_sample: Vec::new(),
            legacy_refused: refused
                .by_reason
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            refused_in_dlq: 0,
            refused_not_in_dlq: refused.without_id,
            refused_not_in_dlq_sample: Vec::new(),
            legacy_duplicates: legacy.duplicates,
            lake_duplicates: lake.duplicates,
            lake_duplicate_sample: lake
                .duplicate_sample
                .iter()
                .map(|&k| lake.name(k))
                .collect(),
            problems: 0,
            within_tolerance: true,
        };
        for (k, print, fields) in legacy.iter() {
            match lake.get(k) {
                None => {
                    r.missing += 1;
                    self.sample(&mut r.missing_sample, || legacy.name(k));
                }
                Some((p, _)) if p == print => r.matched += 1,
                Some((_, theirs)) => {
                    r.matched += 1;
                    r.differing += 1;
                    let names: Vec<String> = fields
                        .iter()
                        .zip(theirs)
                        .zip(self.fields)
                        .filter(|((a, b), _)| a != b)
                        .map(|(_, f)| f.clone())
                        .collect();
                    // Field hashes are short: when all agree, the fields
                    // that differ can't be told, only that some do.
                    let names = if names.is_empty() {
                        vec!["?".into()]
                    } else {
                        names
                    };
                    for f in &names {
                        *r.differing_by_field.entry(f.clone()).or_default() += 1;
                    }
                    if r.differing_sample.len() < self.sample {
                        r.differing_sample.push(Differing {
                            event_id: legacy.name(k),
                            fields: names,
                        });
                    }
                }
            }
        }
        for (k, _, _) in lake.iter() {
            if !legacy.contains(k) {
                r.extra += 1;
                self.sample(&mut r.extra_sample, || lake.name(k));
            }
        }
        for &k in &refused.keys {
            if self.dlq.keys.contains(&k) {
                r.refused_in_dlq += 1;
            } else {
                r.refused_not_in_dlq += 1;
                self.sample(&mut r.refused_not_in_dlq_sample, || refused.names.name(k));
            }
        }
        r.problems = r.missing + r.extra + r.differing + r.lake_duplicates + r.refused_not_in_dlq;
        let base = (r.legacy + refused.by_reason.values().sum::<u64>()).max(1);
        r.within_tolerance = r.problems as f64 <= self.tolerance * base as f64;
        r.missing_sample.sort();
        r.extra_sample.sort();
        r
    }

    fn sample(&self, into: &mut Vec<String>, name: impl FnOnce() -> String) {
        if into.len() < self.sample {
            into.push(name());
        }
    }
}

impl Totals {
    pub fn add(&mut self, h: &HourReport) {
        self.legacy += h.legacy;
        self.lake += h.lake;
        self.matched += h.matched;
        self.missing += h.missing;
        self.extra += h.extra;
        self.differing += h.differing;
        self.legacy_refused += h.legacy_refused.values().sum::<u64>();
        self.refused_in_dlq += h.refused_in_dlq;
        self.refused_not_in_dlq += h.refused_not_in_dlq;
        self.legacy_duplicates += h.legacy_duplicates;
        self.lake_duplicates += h.lake_duplicates;
        self.hours_beyond_tolerance += u64::from(!h.within_tolerance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::side::{Events, Value};

    fn side(rows: &[(&str, &str)]) -> Side {
        let mut e = Events::new(2);
        for &(id, v) in rows {
            e.push(id, [Value::Str(id), Value::Str(v)]);
        }
        let mut s = Side::new(2);
        s.absorb(e, 10);
        s
    }

    fn compare(legacy: &Side, lake: &Side, refused: &Refused, dlq: &Dlq, tol: f64) -> HourReport {
        let fields = ["event_id".to_string(), "service".to_string()];
        Compare {
            fields: &fields,
            dlq,
            sample: 10,
            tolerance: tol,
        }
        .hour("h".into(), legacy, lake, refused)
    }

    #[test]
    fn missing_extra_and_differing_events_are_told_apart() {
        let legacy = side(&[("a", "x"), ("b", "x"), ("c", "x")]);
        let lake = side(&[("a", "x"), ("b", "y"), ("d", "x")]);
        let r = compare(&legacy, &lake, &Refused::default(), &Dlq::default(), 0.0);
        assert_eq!((r.legacy, r.lake, r.matched), (3, 3, 2));
        assert_eq!(
            (r.missing, r.missing_sample.clone()),
            (1, vec!["c".to_string()])
        );
        assert_eq!(
            (r.extra, r.extra_sample.clone()),
            (1, vec!["d".to_string()])
        );
        assert_eq!(r.differing, 1);
        assert_eq!(r.differing_sample[0].fields, ["service"]);
        assert_eq!(r.problems, 3);
        assert!(!r.within_tolerance);
    }

    #[test]
    fn identical_sides_agree_and_empty_hours_are_within_tolerance() {
        let s = side(&[("a", "x"), ("b", "y")]);
        let r = compare(
            &s,
            &side(&[("b", "y"), ("a", "x")]),
            &Refused::default(),
            &Dlq::default(),
            0.0,
        );
        assert_eq!((r.matched, r.problems, r.within_tolerance), (2, 0, true));
        let empty = Side::new(2);
        let r = compare(&empty, &empty, &Refused::default(), &Dlq::default(), 0.0);
        assert!(r.within_tolerance);
    }

    #[test]
    fn refused_events_count_as_problems_only_when_the_dlq_lacks_them() {
        let mut refused = Refused::default();
        refused.by_reason.insert("invalid_value", 2);
        let (a, b) = (refused.names.key("r1"), refused.names.key("r2"));
        refused.keys = vec![a, b];
        let mut dlq = Dlq::default();
        dlq.keys.insert(a);
        let s = side(&[("x", "1")]);
        let r = compare(&s, &s, &refused, &dlq, 0.0);
        assert_eq!((r.refused_in_dlq, r.refused_not_in_dlq), (1, 1));
        assert_eq!(r.refused_not_in_dlq_sample, ["r2"]);
        assert_eq!(r.problems, 1);
    }

    #[test]
    fn tolerance_is_a_fraction_of_the_hours_legacy_events() {
        let legacy = side(&[("a", "x"), ("b", "x"), ("c", "x"), ("d", "x")]);
        let lake = side(&[("a", "x"), ("b", "x"), ("c", "x")]);
        let none = (Refused::default(), Dlq::default());
        assert!(!compare(&legacy, &lake, &none.0, &none.1, 0.2).within_tolerance);
        assert!(compare(&legacy, &lake, &none.0, &none.1, 0.25).within_tolerance);
    }

    #[test]
    fn duplicates_in_the_lake_are_problems_in_the_legacy_output_they_are_not() {
        let mut lake = side(&[("a", "x")]);
        let mut again = Events::new(2);
        again.push("a", [Value::Str("a"), Value::Str("x")]);
        lake.absorb(again, 10);
        let mut legacy = side(&[("a", "x")]);
        let mut again = Events::new(2);
        again.push("a", [Value::Str("a"), Value::Str("x")]);
        legacy.absorb(again, 10);
        let r = compare(&legacy, &lake, &Refused::default(), &Dlq::default(), 0.0);
        assert_eq!(
            (r.legacy_duplicates, r.lake_duplicates, r.problems),
            (1, 1, 1)
        );
        assert_eq!(r.lake_duplicate_sample, ["a"]);
    }
}
