//! The score state of `../shared/spec/score-state.md`: what earlier runs
//! decided, so each run evaluates only what can still change.
//!
//! - final rental results, never evaluated again (but by a rescore);
//! - open rentals, evaluated again by every run until final;
//! - the member snapshot of the last committed run;
//! - the run log, whose create-if-absent entries are the commits.
//!
//! This crate stores and commits; the run that fills a draft lives in
//! `pitwall-score-job`, the rules in `pitwall-score`.

pub mod days;
pub mod deltas;
mod import;
pub mod log;
pub mod member_file;
pub mod member_rentals;
pub mod ops;
pub mod parts;
pub mod published;
pub mod recompute;
pub mod results;
pub mod seen;
pub mod snapshot;
mod spill;
mod state;
pub mod table;

pub use deltas::{Compaction, Kept, Snapshot};
pub use log::{Counts, Entry, EntryKind, Files, ModelChange};
pub use results::{Finality, ResultRow};
pub use seen::SeenFiles;
pub use snapshot::{MemberRecord, RecentRental};
pub use state::{Draft, Reads, State};
pub use table::FinalTable;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Lake(#[from] pitwall_lake::LakeError),
    #[error("{what}: {problem}")]
    Table { what: String, problem: String },
    #[error(
        "cannot read {path}: {problem}. pitwall writes the state's files whole, so it was \
         damaged or changed by hand: restore it from a copy (or a backup of the bucket), or \
         rebuild the state with `pitwall score state import`"
    )]
    Parquet { path: String, problem: String },
    #[error(
        "run-log entry {path} cannot be used: {problem}. pitwall writes entries whole, so it was \
         changed or copied by hand: restore it from a copy, or move it aside to return the state to the run before"
    )]
    Corrupt { path: String, problem: String },
    #[error(
        "{path} was written by a newer pitwall (state format {format}; this one reads up to {supported}): \
         run the newer pitwall, or point --state elsewhere"
    )]
    Newer {
        path: String,
        format: u64,
        supported: u32,
    },
    #[error(
        "the state's last run names {path}, which is gone: the state was pruned by hand; \
         restore the file, or rebuild the state with `pitwall score state import`"
    )]
    MissingFile { path: String },
    #[error(
        "another publisher began the same publication first ({path}); nothing was sent. \
         Run `score publish --state` again: it resolves that one and publishes what is left"
    )]
    PublicationRace { path: String },
    #[error(
        "another run committed state run {seq} first: {winner} (as_of {winner_as_of}, committed \
         {committed_at}); nothing of this run was committed. Run it again: it starts from that state"
    )]
    Lost {
        seq: u64,
        winner: String,
        winner_as_of: String,
        committed_at: String,
    },
}
