//! What the lake already holds, by event key and hour: the check that keeps
//! a replay from adding a second copy of an event the stream path (or an
//! earlier replay of other files) already landed.
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
use pitwall_logs::keys::{Key, key_of};

use pitwall_logs::layout::hour_dir;

use crate::sink::{Landed, SinkError, shard_of_file};

/// The lake's event keys, loaded one hour partition at a time as events of
/// that hour turn up (so memory follows the hours a replay touches).
pub struct LakeIndex<'a> {
    lake: &'a Location,
    dataset: String,
    key_column: String,
    /// Shards whose files are not counted (the replay's own).
    own: HashSet<String>,
    hours: Mutex<HashMap<i64, Arc<HashSet<Key>>>>,
}

impl<'a> LakeIndex<'a> {
    pub fn new(lake: &'a Location, dataset: &str, key_column: &str, own: HashSet<String>) -> Self {
        LakeIndex {
            lake,
            dataset: dataset.to_string(),
            key_column: key_column.to_string(),
            own,
            hours: Mutex::new(HashMap::new()),
        }
    }

    fn hour(&self, hour: i64) -> Result<Arc<HashSet<Key>>, SinkError> {
        // Held while loading: threads replaying the same hour wait for one
        // load instead of each reading the partition.
        let mut hours = self.hours.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = hours.get(&hour) {
            return Ok(keys.clone());
        }
        let dir = self.lake.join(&hour_dir(&self.dataset, hour));
        let mut keys = HashSet::new();
        for file in dir.list_if_exists(&[".parquet"])? {
            if shard_of_file(&file.display).is_some_and(|s| self.own.contains(s)) {
                continue;
            }
            read_keys(&file, &self.key_column, &mut keys)?;
        }
        let keys = Arc::new(keys);
        hours.insert(hour, keys.clone());
        Ok(keys)
    }
}

impl Landed for LakeIndex<'_> {
    fn contains(&self, hour: i64, key: &str) -> Result<bool, SinkError> {
        Ok(self.hour(hour)?.contains(&key_of(key)))
    }
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
