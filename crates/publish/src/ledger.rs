//! The per-run publication ledger: an append-only JSON-lines file next to a
//! run's outputs. A run counts as published to a topic once a `committed`
//! line names both; a crash leaves only `started`, so the run can be re-run.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LEDGER_FILE: &str = "publish_ledger.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Started,
    Committed,
    Aborted,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub run_id: String,
    pub topic: String,
    pub brokers: String,
    pub event: Event,
    pub records: u64,
    /// Published despite a held run or an earlier publication (`--force`).
    pub forced: bool,
    pub transactional: bool,
    /// Unix ms; informational only.
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    pub fn at(run_dir: &Path) -> Ledger {
        Ledger {
            path: run_dir.join(LEDGER_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        // A torn last line (crash mid-write) is skipped, not fatal.
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// The committed publication of this run to this topic, if any.
    pub fn committed(&self, run_id: &str, topic: &str) -> std::io::Result<Option<Entry>> {
        Ok(self
            .entries()?
            .into_iter()
            .rev()
            .find(|e| e.run_id == run_id && e.topic == topic && e.event == Event::Committed))
    }

    /// Appends one entry durably (fsync) before returning.
    pub fn append(&self, e: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_string(e).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(event: Event, topic: &str) -> Entry {
        Entry {
            run_id: "r1".into(),
            topic: topic.into(),
            brokers: "b".into(),
            event,
            records: 3,
            forced: false,
            transactional: true,
            at_ms: 0,
            schema: None,
            detail: None,
        }
    }

    #[test]
    fn only_a_committed_line_counts_as_published() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::at(dir.path());
        assert_eq!(l.committed("r1", "t").unwrap(), None);
        l.append(&entry(Event::Started, "t")).unwrap();
        l.append(&entry(Event::Aborted, "t")).unwrap();
        assert_eq!(l.committed("r1", "t").unwrap(), None);
        l.append(&entry(Event::Committed, "t")).unwrap();
        assert!(l.committed("r1", "t").unwrap().is_some());
        assert_eq!(l.committed("r1", "other").unwrap(), None);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::at(dir.path());
        l.append(&entry(Event::Committed, "t")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(l.path())
            .unwrap()
            .write_all(b"{\"run_id\":\"r")
            .unwrap();
        assert_eq!(l.entries().unwrap().len(), 1);
    }
}
