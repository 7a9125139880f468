//! The lake's DLQ for the dates in range: counts by reason, and the ids of
//! the events it holds, so that a legacy event the contract refuses can be
//! shown to have reached the DLQ rather than been lost.

use std::collections::{BTreeMap, HashSet};

use base64::Engine;
use pitwall_lake::Location;

use crate::Result;
use crate::keys::{Key, Names};

#[derive(Debug, Default)]
pub struct Dlq {
    /// dt → reason → entries.
    pub by_date: BTreeMap<String, BTreeMap<String, u64>>,
    pub keys: HashSet<Key>,
    /// Lines that are not DLQ entries (corrupt files): counted, not trusted.
    pub unreadable: u64,
}

#[derive(serde::Deserialize)]
struct Entry {
    reason: String,
    data_base64: String,
}

/// Reads `LAKE/_dlq/<dataset>/dt=D/*.jsonl` for each date in `dates`.
pub fn read_dlq(lake: &Location, dataset: &str, dates: &[String], key: &str) -> Result<Dlq> {
    let mut dlq = Dlq::default();
    let mut names = Names::default();
    for dt in dates {
        let dir = lake.join(&pitwall_logs::layout::dlq_day_dir(dataset, dt));
        for file in dir.list_if_exists(&[".jsonl"])? {
            let bytes = Location::read_all(&file)?;
            for line in pitwall_logs::decode::lines(&bytes) {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                let Ok(e) = serde_json::from_slice::<Entry>(line) else {
                    dlq.unreadable += 1;
                    continue;
                };
                *dlq.by_date
                    .entry(dt.clone())
                    .or_default()
                    .entry(e.reason)
                    .or_default() += 1;
                if let Some(id) = event_id(&e.data_base64, key) {
                    dlq.keys.insert(names.key(&id));
                }
            }
        }
    }
    Ok(dlq)
}

/// The id of the event a DLQ entry holds, when its bytes are a JSON object
/// with one.
fn event_id(data_base64: &str, key: &str) -> Option<String> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(data_base64)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
    v.get(key)?.as_str().map(String::from)
}
