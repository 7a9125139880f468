//! Contract-breaking rows: counted per rule, a few shown in run.json, and
//! (up to a bound per file) kept in a Parquet file a person can open.

use std::collections::BTreeMap;

use serde::Serialize;

/// Rows kept per input file; past this only counts grow, and run.json says so.
pub const KEPT_PER_FILE: usize = 10_000;
const EXAMPLES_PER_RULE: usize = 5;

/// One rejected row: where it was, which rule it broke, what it held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub file: String,
    /// 0-based row number within the file.
    pub row: u64,
    pub rule: &'static str,
    /// The row's values as text, by column name.
    pub values: BTreeMap<&'static str, Option<String>>,
}

#[derive(Debug, Default, Clone)]
pub struct RejectLog {
    pub counts: BTreeMap<&'static str, u64>,
    pub kept: Vec<Rejected>,
    pub not_kept: u64,
    /// Keep every rejected row: data a caller holds in memory (a
    /// DataFrame) is no larger in rejects than it already is.
    pub unbounded: bool,
}

#[derive(Debug, Serialize)]
pub struct RuleReport {
    pub count: u64,
    pub description: &'static str,
    pub examples: Vec<Rejected>,
}

impl RejectLog {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Records a rejection; `kept_in_file` is how many this file has kept so far.
    pub fn push(&mut self, r: Rejected, kept_in_file: &mut usize) {
        *self.counts.entry(r.rule).or_default() += 1;
        if self.unbounded || *kept_in_file < KEPT_PER_FILE {
            *kept_in_file += 1;
            self.kept.push(r);
        } else {
            self.not_kept += 1;
        }
    }

    pub fn merge(&mut self, other: RejectLog) {
        for (rule, n) in other.counts {
            *self.counts.entry(rule).or_default() += n;
        }
        self.kept.extend(other.kept);
        self.not_kept += other.not_kept;
    }

    /// Kept rows in file and row order, so reports never depend on which
    /// worker read which file first.
    pub fn sort(&mut self) {
        self.kept
            .sort_by(|a, b| a.file.cmp(&b.file).then(a.row.cmp(&b.row)));
    }

    pub fn report(
        &self,
        describe: impl Fn(&str) -> &'static str,
    ) -> BTreeMap<&'static str, RuleReport> {
        self.counts
            .iter()
            .map(|(&rule, &count)| {
                let examples = self
                    .kept
                    .iter()
                    .filter(|r| r.rule == rule)
                    .take(EXAMPLES_PER_RULE)
                    .cloned()
                    .collect();
                (
                    rule,
                    RuleReport {
                        count,
                        description: describe(rule),
                        examples,
                    },
                )
            })
            .collect()
    }
}
