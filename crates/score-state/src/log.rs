//! The run log: one JSON entry per committed run, `log/<seq>.json`, written
//! create-if-absent. The entry is the commit: it names every file of the
//! state as of that run, so files that no entry names were never committed.

use serde::{Deserialize, Serialize};

/// The newest state layout this build reads and writes. 2: the final
/// results by day (`Files::final_days`), the member snapshot as a base and
/// delta files (`Files::member_deltas`) with each member's final part.
/// 3: each member snapshot file keeps its members' rentals in a rentals
/// file beside it (`member_file`), read by byte ranges. A state of an
/// older format is read as it is, and its next run writes the newest,
/// recording the upgrade (`Entry::upgraded_from`).
pub const FORMAT: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A `score run --state`.
    Run,
    /// A `score state import` of rental results computed elsewhere.
    Import,
}

/// The files of the state as of an entry, relative to the state's root.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Files {
    /// Final rental results of a format-1 state, oldest first; a rental in a
    /// later file supersedes the same rental in an earlier one. Empty from
    /// format 2 on, which keeps them by day (`final_days`).
    #[serde(rename = "final", default, skip_serializing_if = "Vec::is_empty")]
    pub final_results: Vec<String>,
    /// Final rental results by UTC day of end_at, in day order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub final_days: Vec<crate::days::DayFile>,
    /// The open rentals after the run.
    pub open: Option<String>,
    /// The member snapshot's base (the whole snapshot when there are no deltas).
    pub members: Option<String>,
    /// The member records changed since the base, one file per run, oldest
    /// first; a member's newest row is its record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_deltas: Vec<String>,
    /// Telemetry files already read (for counting samples late for final rentals).
    pub seen: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Rentals the run evaluated (open, newly ended, rescored).
    pub evaluated: u64,
    /// Of those, made final by this run.
    pub made_final: u64,
    /// Final rentals in the state after the run.
    pub final_total: u64,
    /// Open rentals after the run.
    pub open: u64,
    pub members: u64,
    /// Members whose record differs from the previous snapshot, or is new.
    pub member_changes: u64,
    /// Samples read for rentals that were already final (they change nothing).
    pub late_for_final: u64,
    /// Open rentals that would be final but for their tail (scored with
    /// full coverage, or too short) whose last seconds are not in yet.
    #[serde(default)]
    pub awaiting_tail: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelChange {
    pub from: String,
    pub to: String,
}

/// One committed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub format: u32,
    pub seq: u64,
    pub kind: EntryKind,
    pub run_id: String,
    /// The run's as_of, ms since the epoch, and as RFC 3339.
    pub as_of_ms: i64,
    pub as_of: String,
    pub model: String,
    pub grace_ms: i64,
    pub pitwall_version: String,
    /// Wall-clock time of the commit (for people; never used to decide anything).
    pub committed_at: String,
    /// A held run committed with `--force`: the gates it failed.
    pub forced: bool,
    pub held_because: Vec<String>,
    /// `[from, to)` of a rescore, ms since the epoch.
    pub rescore: Option<(i64, i64)>,
    pub model_change: Option<ModelChange>,
    pub files: Files,
    pub counts: Counts,
    /// The state format of the run before, when this run upgraded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgraded_from: Option<u32>,
    /// What the run read: rentals and telemetry (files and rows listed,
    /// opened, skipped), as run.json reports it.
    #[serde(default)]
    pub inputs: serde_json::Value,
}

/// The log entry's name for a sequence number: zero-padded so names sort.
pub fn entry_name(seq: u64) -> String {
    format!("log/{seq:012}.json")
}

/// The sequence number of an entry's file name, if it is one.
pub fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_sort_by_sequence_and_parse_back() {
        assert_eq!(entry_name(7), "log/000000000007.json");
        assert!(entry_name(9) < entry_name(10));
        assert_eq!(seq_of("000000000007.json"), Some(7));
        assert_eq!(seq_of("7.json"), None);
        assert_eq!(seq_of(".000000000007.json.123.new"), None);
        assert_eq!(seq_of("00000000000x.json"), None);
    }
}
