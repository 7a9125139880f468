//! What the lake already holds, by event key and hour: the check that keeps
//! a replay from adding a second copy of an event the stream path (or an
//! earlier replay of other files) already landed. And what its DLQ holds,
//! by the original bytes and arrival day: the same check for events the
//! contract refuses.
//!
//! A replay's own earlier output is left out of the index on purpose: its
//! files are rewritten under the same names, so counting them as "landed"
//! would make a second replay write them empty.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_lake::{FileRef, Location};
use pitwall_logs::keys::{Key, key_of, key_of_bytes};
use pitwall_logs::layout::{DAY_MS, date_of, dlq_day_dir, hour_dir};

use crate::files::dlq_record;
use crate::sink::{InDlq, Landed, SinkError, shard_of_file};

/// Keys loaded once per partition of the lake (an hour of events, a day of
/// the DLQ) from the files other writers put there: a replay's own earlier
/// files are left out (see the module docs).
struct KeyCache {
    /// Shards whose files are not counted (the replay's own).
    own: HashSet<String>,
    /// By hour or day number, whichever the index partitions by.
    loaded: Mutex<HashMap<i64, Arc<HashSet<Key>>>>,
}

impl KeyCache {
    fn new(own: HashSet<String>) -> Self {
        KeyCache {
            own,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The keys of partition `n` (directory `dir`), reading each of its
    /// `suffix` files with `read` the first time it is asked for.
    fn get(
        &self,
        n: i64,
        dir: impl FnOnce() -> Location,
        suffix: &str,
        read: impl Fn(&FileRef, &mut HashSet<Key>) -> Result<(), SinkError>,
    ) -> Result<Arc<HashSet<Key>>, SinkError> {
        // Held while loading: threads replaying the same partition wait for
        // one load instead of each reading it.
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = loaded.get(&n) {
            return Ok(keys.clone());
        }
        let mut keys = HashSet::new();
        for file in dir().list_if_exists(&[suffix])? {
            if !shard_of_file(&file.display).is_some_and(|s| self.own.contains(s)) {
                read(&file, &mut keys)?;
            }
        }
        let keys = Arc::new(keys);
        loaded.insert(n, keys.clone());
        Ok(keys)
    }
}

/// The lake's event keys, loaded one hour partition at a time as events of
/// that hour turn up (so memory follows the hours a replay touches).
pub struct LakeIndex<'a> {
    lake: &'a Location,
    dataset: String,
    key_column: String,
    hours: KeyCache,
}

impl<'a> LakeIndex<'a> {
    pub fn new(lake: &'a Location, dataset: &str, key_column: &str, own: HashSet<String>) -> Self {
        LakeIndex {
            lake,
            dataset: dataset.to_string(),
            key_column: key_column.to_string(),
            hours: KeyCache::new(own),
        }
    }
}

impl Landed for LakeIndex<'_> {
    fn contains(&self, hour: i64, key: &str) -> Result<bool, SinkError> {
        let dir = || self.lake.join(&hour_dir(&self.dataset, hour));
        let keys = self.hours.get(hour, dir, ".parquet", |file, keys| {
            read_keys(file, &self.key_column, keys)
        })?;
        Ok(keys.contains(&key_of(key)))
    }
}

/// The DLQ's entries, as keys of their original bytes, loaded one arrival
/// day at a time as refused events turn up.
pub struct DlqIndex<'a> {
    lake: &'a Location,
    dataset: String,
    days: KeyCache,
}

impl<'a> DlqIndex<'a> {
    pub fn new(lake: &'a Location, dataset: &str, own: HashSet<String>) -> Self {
        DlqIndex {
            lake,
            dataset: dataset.to_string(),
            days: KeyCache::new(own),
        }
    }
}

impl InDlq for DlqIndex<'_> {
    /// The legacy path's arrival hour and the stream's arrival time can
    /// fall on either side of midnight: the days around are asked too.
    fn holds(&self, arrival_ms: i64, bytes: &[u8]) -> Result<bool, SinkError> {
        let key = key_of_bytes(bytes);
        let today = arrival_ms.div_euclid(DAY_MS);
        for day in [today, today - 1, today + 1] {
            let dir = || {
                self.lake
                    .join(&dlq_day_dir(&self.dataset, &date_of(day * DAY_MS)))
            };
            if self
                .days
                .get(day, dir, ".jsonl", read_dlq_keys)?
                .contains(&key)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Adds the keys of one DLQ file's entries. A line that holds no entry holds
/// nothing to match: replaying the DLQ reports such lines; here they are
/// passed over.
fn read_dlq_keys(file: &FileRef, keys: &mut HashSet<Key>) -> Result<(), SinkError> {
    let text = Location::read_all(file)?;
    keys.extend(
        text.split(|&b| b == b'\n')
            .filter_map(|line| dlq_record(line).ok())
            .map(|(data, _)| key_of_bytes(&data)),
    );
    Ok(())
}

/// Adds one lake file's keys (only that column is read).
fn read_keys(file: &FileRef, column: &str, keys: &mut HashSet<Key>) -> Result<(), SinkError> {
    let pq = |source| SinkError::Parquet {
        path: file.display.clone(),
        source,
    };
    let no_column = || SinkError::Column {
        path: file.display.clone(),
        column: column.to_string(),
    };
    let bytes = Location::read_all(file)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(pq)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), [column]);
    for batch in builder.with_projection(mask).build().map_err(pq)? {
        let batch = batch.map_err(|e| pq(e.into()))?;
        let ids = batch
            .column_by_name(column)
            .and_then(|a| a.as_string_opt::<i32>())
            .ok_or_else(no_column)?;
        keys.extend(
            (0..ids.len())
                .filter(|&i| ids.is_valid(i))
                .map(|i| key_of(ids.value(i))),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_logs::{DlqEntry, Position, Reason};

    const DAY1: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    fn dlq_file(lake: &Location, shard: &str, arrival_ms: i64, data: &[u8]) {
        let pos = Position {
            shard_id: shard,
            sequence_number: "7",
            sub_sequence: 0,
            line: 0,
            arrival_ms,
        };
        let line = DlqEntry::new("ds", &pos, &Reason::NotAnObject, data).to_line();
        let rel = format!(
            "{}/{shard}-7-0-0.jsonl",
            dlq_day_dir("ds", &date_of(arrival_ms))
        );
        lake.put(&rel, bytes::Bytes::from(line + "not an entry\n"))
            .expect("put");
    }

    #[test]
    fn the_dlq_index_finds_entries_by_bytes_on_the_days_around_arrival() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Location::Local(dir.path().to_path_buf());
        // The stream's entry arrived just before midnight.
        dlq_file(&lake, "shardId-1", DAY1 - 60_000, b"[1]");
        dlq_file(&lake, "file-2026110100-legacy", DAY1, b"[2]");
        let own = HashSet::from(["file-2026110100-legacy".to_string()]);
        let index = DlqIndex::new(&lake, "ds", own);
        let holds = |ms, b: &[u8]| index.holds(ms, b).expect("holds");
        assert!(holds(DAY1 + 30 * 60_000, b"[1]"), "the day before is asked");
        assert!(!holds(DAY1 + 3 * 86_400_000, b"[1]"), "days later are not");
        assert!(!holds(DAY1, b"[3]"));
        assert!(!holds(DAY1, b"[2]"), "the replay's own files do not count");
    }
}
