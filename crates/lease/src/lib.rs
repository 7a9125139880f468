//! Leases and checkpoints with the Kinesis Client Library's semantics: one
//! lease per shard with an owner, a counter the owner bumps to renew it, the
//! checkpoint (sequence and sub-sequence number, or SHARD_END) and the parent
//! shards. Every change is conditional on what the writer last saw, so
//! several workers can share one table. Expiry is judged the KCL way: a lease
//! whose counter has not moved for the failover time, as seen by the
//! observer's own clock, so no two machines' clocks are ever compared.
//!
//! The ingestion holds one lease per shard; a score watcher holds one lease
//! named after its state, with the same stores and the same rules.

pub mod dynamodb;
pub mod sqlite;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where reading a shard resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Checkpoint {
    /// Nothing read yet: start where `--start-position` says.
    Start,
    /// Everything up to and including this record is in the lake.
    Sequence {
        sequence_number: String,
        sub_sequence: u64,
    },
    /// The shard was closed by a reshard and read to its end.
    ShardEnd,
}

impl Checkpoint {
    /// As stored: `START`, `SHARD_END` or `SEQ:<number>:<sub>`.
    pub fn encode(&self) -> String {
        match self {
            Checkpoint::Start => "START".into(),
            Checkpoint::ShardEnd => "SHARD_END".into(),
            Checkpoint::Sequence {
                sequence_number,
                sub_sequence,
            } => format!("SEQ:{sequence_number}:{sub_sequence}"),
        }
    }

    pub fn decode(s: &str) -> Option<Checkpoint> {
        match s {
            "START" => Some(Checkpoint::Start),
            "SHARD_END" => Some(Checkpoint::ShardEnd),
            _ => {
                let rest = s.strip_prefix("SEQ:")?;
                let (seq, sub) = rest.rsplit_once(':')?;
                Some(Checkpoint::Sequence {
                    sequence_number: seq.to_string(),
                    sub_sequence: sub.parse().ok()?,
                })
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub shard_id: String,
    pub owner: Option<String>,
    pub counter: u64,
    pub checkpoint: Checkpoint,
    pub parents: Vec<String>,
    pub owner_switches: u64,
    /// The bytes per second its owner last reported reading (0: not known
    /// yet): what load-aware balancing weighs a lease by.
    pub throughput: u64,
    /// A worker that asked for this lease: its owner commits, checkpoints
    /// and hands it over instead of losing it mid-buffer.
    pub pending_owner: Option<String>,
}

impl Lease {
    pub fn new(shard_id: &str, parents: Vec<String>) -> Lease {
        Lease {
            shard_id: shard_id.to_string(),
            owner: None,
            counter: 0,
            checkpoint: Checkpoint::Start,
            parents,
            owner_switches: 0,
            throughput: 0,
            pending_owner: None,
        }
    }

    pub fn finished(&self) -> bool {
        self.checkpoint == Checkpoint::ShardEnd
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease store {store}: {problem}")]
    Store { store: String, problem: String },
}

/// Timings of the lease protocol.
#[derive(Debug, Clone)]
pub struct LeaseTimings {
    /// A lease whose counter has not moved for this long may be taken.
    pub failover: Duration,
    /// How often held leases are renewed (a third of the failover time by default).
    pub renew_every: Duration,
    /// How often leases are listed to take expired ones and balance.
    pub take_every: Duration,
}

impl LeaseTimings {
    pub fn new(failover: Duration) -> LeaseTimings {
        LeaseTimings {
            failover,
            renew_every: failover / 3,
            take_every: failover / 2,
        }
    }
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings::new(Duration::from_secs(10))
    }
}

/// Where leases live. Every write is conditional on the counter the writer
/// last saw, so concurrent workers cannot both win.
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync {
    /// How the store is named in messages: `sqlite:PATH` or `dynamodb:TABLE`.
    fn name(&self) -> String;
    /// Creates the table if it does not exist.
    async fn prepare(&self) -> Result<(), LeaseError>;
    async fn list(&self) -> Result<Vec<Lease>, LeaseError>;
    /// Creates the lease unless the shard has one; true if it was created.
    async fn create(&self, lease: &Lease) -> Result<bool, LeaseError>;
    /// Sets the owner and bumps the counter, if the counter is still
    /// `seen_counter`. Renewing and taking (`take`: counted as an owner
    /// switch) are the same write. Returns the new counter, or None if
    /// someone else wrote first.
    async fn claim(
        &self,
        shard: &str,
        owner: &str,
        seen_counter: u64,
        take: bool,
    ) -> Result<Option<u64>, LeaseError>;
    /// Renews a held lease (a claim that is not a take) and records the
    /// shard's recent throughput with it, in the same write.
    async fn renew(
        &self,
        shard: &str,
        owner: &str,
        seen_counter: u64,
        throughput: u64,
    ) -> Result<Option<u64>, LeaseError>;
    /// Asks for a lease held by a live worker: sets its pending owner if
    /// the counter is still `seen_counter` and nobody asked first (the
    /// counter does not move, so the owner's renewals still succeed).
    async fn request_handoff(
        &self,
        shard: &str,
        requester: &str,
        seen_counter: u64,
    ) -> Result<bool, LeaseError>;
    /// Gives the lease to its pending owner, if `owner` still holds it and
    /// `to` is still the one who asked (its checkpoint written first).
    async fn hand_over(&self, shard: &str, owner: &str, to: &str) -> Result<bool, LeaseError>;
    /// Records the checkpoint, if `owner` still holds the lease.
    async fn checkpoint(
        &self,
        shard: &str,
        owner: &str,
        cp: &Checkpoint,
    ) -> Result<bool, LeaseError>;
    /// Gives the lease up (owner cleared, counter bumped so others see it
    /// change), if `owner` still holds it.
    async fn release(&self, shard: &str, owner: &str) -> Result<bool, LeaseError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_through_their_stored_form() {
        for cp in [
            Checkpoint::Start,
            Checkpoint::ShardEnd,
            Checkpoint::Sequence {
                sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
                sub_sequence: 3,
            },
        ] {
            assert_eq!(Checkpoint::decode(&cp.encode()), Some(cp));
        }
        assert_eq!(Checkpoint::decode("SEQ:12"), None);
        assert_eq!(Checkpoint::decode("TRIM"), None);
    }
}
