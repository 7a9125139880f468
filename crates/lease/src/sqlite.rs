//! The embedded lease store: one SQLite file, for a single worker (or
//! several processes on one machine). Conditional updates are plain
//! `UPDATE … WHERE counter = ?` statements.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Checkpoint, Lease, LeaseError, LeaseStore};

pub struct SqliteLeases {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteLeases {
    pub fn open(path: &Path) -> Result<SqliteLeases, LeaseError> {
        let err = |e: rusqlite::Error| LeaseError::Store {
            store: format!("sqlite:{}", path.display()),
            problem: format!("{e}; check that the directory exists and is writable"),
        };
        let conn = Connection::open(path).map_err(err)?;
        // WAL lets a status reader look while the worker writes; a busy
        // timeout rides over another process's short write.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        Ok(SqliteLeases {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LeaseError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| LeaseError::Store {
            store: self.name(),
            problem: e.to_string(),
        })
    }
}

/// An owner write's new counter; when the write found the counter moved on,
/// whether it moved by this owner's own write of `seen + 1` (the contract
/// DynamoDB's store keeps for a retried call: see its `landed_anyway`).
fn already_held(
    c: &Connection,
    done: Option<i64>,
    shard: &str,
    owner: &str,
    seen: u64,
) -> rusqlite::Result<Option<u64>> {
    if let Some(n) = done {
        return Ok(Some(n as u64));
    }
    let now: Option<(Option<String>, i64)> = c
        .query_row(
            "SELECT owner, counter FROM leases WHERE shard_id = ?1",
            params![shard],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(now
        .filter(|(o, n)| o.as_deref() == Some(owner) && *n as u64 == seen + 1)
        .map(|_| seen + 1))
}

/// A stored lease, or None (logged) when its checkpoint is unreadable:
/// restarting that shard from the start position could write its events
/// twice, so it is left alone until someone fixes the row.
fn row_to_lease(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Lease>> {
    let shard_id: String = r.get(0)?;
    let cp: String = r.get(3)?;
    let Some(checkpoint) = Checkpoint::decode(&cp) else {
        tracing::error!(
            shard = %shard_id,
            checkpoint = %cp,
            "unreadable checkpoint in the lease table: the shard is not read until the row holds START, SHARD_END or SEQ:<sequence>:<sub>"
        );
        return Ok(None);
    };
    let parents: String = r.get(4)?;
    Ok(Some(Lease {
        shard_id,
        owner: r.get(1)?,
        counter: r.get::<_, i64>(2)? as u64,
        checkpoint,
        parents: parents
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        owner_switches: r.get::<_, i64>(5)? as u64,
        throughput: r.get::<_, i64>(6)?.max(0) as u64,
        pending_owner: r.get(7)?,
    }))
}

#[async_trait::async_trait]
impl LeaseStore for SqliteLeases {
    fn name(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn prepare(&self) -> Result<(), LeaseError> {
        self.with(|c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS leases (
                   shard_id TEXT PRIMARY KEY,
                   owner TEXT,
                   counter INTEGER NOT NULL,
                   checkpoint TEXT NOT NULL,
                   parents TEXT NOT NULL,
                   owner_switches INTEGER NOT NULL,
                   throughput INTEGER NOT NULL DEFAULT 0,
                   pending_owner TEXT
                 )",
            )?;
            // Tables made by earlier versions gain the newer columns.
            for (column, decl) in [
                ("throughput", "INTEGER NOT NULL DEFAULT 0"),
                ("pending_owner", "TEXT"),
            ] {
                let has: bool = c
                    .prepare("SELECT 1 FROM pragma_table_info('leases') WHERE name = ?1")?
                    .exists([column])?;
                if !has {
                    c.execute_batch(&format!("ALTER TABLE leases ADD COLUMN {column} {decl}"))?;
                }
            }
            Ok(())
        })
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT shard_id, owner, counter, checkpoint, parents, owner_switches, throughput,
                   pending_owner
                 FROM leases ORDER BY shard_id",
            )?;
            let rows: Vec<Option<Lease>> =
                st.query_map([], row_to_lease)?.collect::<Result<_, _>>()?;
            Ok(rows.into_iter().flatten().collect())
        })
    }

    async fn create(&self, l: &Lease) -> Result<bool, LeaseError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO leases
                   (shard_id, owner, counter, checkpoint, parents, owner_switches)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    l.shard_id,
                    l.owner,
                    l.counter as i64,
                    l.checkpoint.encode(),
                    l.parents.join(","),
                    l.owner_switches as i64
                ],
            )
            .map(|n| n == 1)
        })
    }

    async fn claim(
        &self,
        shard: &str,
        owner: &str,
        seen_counter: u64,
        take: bool,
    ) -> Result<Option<u64>, LeaseError> {
        self.with(|c| {
            c.query_row(
                "UPDATE leases SET
                   owner_switches = owner_switches + ?4,
                   owner = ?2, counter = counter + 1,
                   pending_owner = CASE WHEN ?4 = 1 THEN NULL ELSE pending_owner END
                 WHERE shard_id = ?1 AND counter = ?3
                 RETURNING counter",
                params![shard, owner, seen_counter as i64, i64::from(take)],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .and_then(|done| already_held(c, done, shard, owner, seen_counter))
        })
    }

    async fn renew(
        &self,
        shard: &str,
        owner: &str,
        seen_counter: u64,
        throughput: u64,
    ) -> Result<Option<u64>, LeaseError> {
        self.with(|c| {
            c.query_row(
                "UPDATE leases SET owner = ?2, counter = counter + 1, throughput = ?4
                 WHERE shard_id = ?1 AND counter = ?3
                 RETURNING counter",
                params![
                    shard,
                    owner,
                    seen_counter as i64,
                    throughput.min(i64::MAX as u64) as i64
                ],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .and_then(|done| already_held(c, done, shard, owner, seen_counter))
        })
    }

    async fn request_handoff(
        &self,
        shard: &str,
        requester: &str,
        seen_counter: u64,
    ) -> Result<bool, LeaseError> {
        self.with(|c| {
            c.execute(
                "UPDATE leases SET pending_owner = ?2
                 WHERE shard_id = ?1 AND counter = ?3 AND pending_owner IS NULL
                   AND owner IS NOT NULL AND owner <> ?2",
                params![shard, requester, seen_counter as i64],
            )
            .map(|n| n == 1)
        })
    }

    async fn hand_over(&self, shard: &str, owner: &str, to: &str) -> Result<bool, LeaseError> {
        self.with(|c| {
            c.execute(
                "UPDATE leases SET owner = ?3, pending_owner = NULL, counter = counter + 1,
                   owner_switches = owner_switches + 1
                 WHERE shard_id = ?1 AND owner = ?2 AND pending_owner = ?3",
                params![shard, owner, to],
            )
            .map(|n| n == 1)
        })
    }

    async fn checkpoint(
        &self,
        shard: &str,
        owner: &str,
        cp: &Checkpoint,
    ) -> Result<bool, LeaseError> {
        self.with(|c| {
            c.execute(
                "UPDATE leases SET checkpoint = ?3 WHERE shard_id = ?1 AND owner = ?2",
                params![shard, owner, cp.encode()],
            )
            .map(|n| n == 1)
        })
    }

    async fn release(&self, shard: &str, owner: &str) -> Result<bool, LeaseError> {
        self.with(|c| {
            c.execute(
                "UPDATE leases SET owner = NULL, counter = counter + 1, pending_owner = NULL
                 WHERE shard_id = ?1 AND owner = ?2",
                params![shard, owner],
            )
            .map(|n| n == 1)
        })
    }
}
