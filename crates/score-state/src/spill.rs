//! Spill files of `score state import`: batches appended to bucket files
//! (Arrow IPC) in a temporary folder, each read back once, whole.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow_array::{RecordBatch, UInt32Array};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::SchemaRef;

use crate::StateError;
use crate::ops::now_ms;

fn table_err(e: impl std::fmt::Display) -> StateError {
    StateError::Table {
        what: "imported rental results".into(),
        problem: e.to_string(),
    }
}

/// Rows `rows` of `b`.
pub(crate) fn take(b: &RecordBatch, rows: &[u32]) -> Result<RecordBatch, StateError> {
    arrow_select::take::take_record_batch(b, &UInt32Array::from(rows.to_vec())).map_err(table_err)
}

/// A temporary folder for the spills, removed when the import ends (or fails).
pub(crate) struct SpillDir(PathBuf);

impl SpillDir {
    pub(crate) fn new() -> Result<SpillDir, StateError> {
        let dir = std::env::temp_dir().join(format!(
            "pitwall-import-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| spill_err(&dir, e))?;
        Ok(SpillDir(dir))
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spill_err(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Table {
        what: format!("import spill {}", path.display()),
        problem: format!(
            "{e} (the import spills its input to the temporary folder, $TMPDIR: it needs about \
             twice the input's uncompressed size free there)"
        ),
    }
}

/// Spill files, one per bucket, opened as rows first arrive.
pub(crate) struct Buckets {
    dir: PathBuf,
    name: String,
    writers: Vec<Option<FileWriter<BufWriter<File>>>>,
}

impl Buckets {
    pub(crate) fn new(spill: &SpillDir, name: &str, n: usize) -> Buckets {
        Buckets {
            dir: spill.0.clone(),
            name: name.to_string(),
            writers: (0..n.max(1)).map(|_| None).collect(),
        }
    }

    fn path(&self, k: usize) -> PathBuf {
        self.dir.join(format!("{}-{k}.arrow", self.name))
    }

    /// Appends each row of `b` to the bucket `key(row) % n`.
    pub(crate) fn route(
        &mut self,
        b: &RecordBatch,
        key: impl Fn(usize) -> u64,
    ) -> Result<(), StateError> {
        let n = self.writers.len();
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n];
        for i in 0..b.num_rows() {
            rows[(key(i) % n as u64) as usize].push(i as u32);
        }
        for (k, idx) in rows.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let part = take(b, &idx)?;
            let path = self.path(k);
            let w = match &mut self.writers[k] {
                Some(w) => w,
                slot => {
                    let f = File::create(&path).map_err(|e| spill_err(&path, e))?;
                    slot.insert(
                        FileWriter::try_new(BufWriter::new(f), &part.schema())
                            .map_err(|e| spill_err(&path, e))?,
                    )
                }
            };
            w.write(&part).map_err(|e| spill_err(&path, e))?;
        }
        Ok(())
    }

    /// The bucket files written, in bucket order.
    pub(crate) fn finish(self) -> Result<Vec<PathBuf>, StateError> {
        let mut out = Vec::new();
        for (k, w) in self.writers.into_iter().enumerate() {
            if let Some(mut w) = w {
                let path = self.dir.join(format!("{}-{k}.arrow", self.name));
                w.finish().map_err(|e| spill_err(&path, e))?;
                out.push(path);
            }
        }
        Ok(out)
    }
}

/// A spill file's rows as one batch (None when it holds none). The file is
/// removed once read: each is read once.
pub(crate) fn load(path: &Path) -> Result<Option<RecordBatch>, StateError> {
    let f = File::open(path).map_err(|e| spill_err(path, e))?;
    let reader =
        FileReader::try_new(std::io::BufReader::new(f), None).map_err(|e| spill_err(path, e))?;
    let schema: SchemaRef = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| spill_err(path, e))?;
    let _ = std::fs::remove_file(path);
    if batches.is_empty() {
        return Ok(None);
    }
    let one = arrow_select::concat::concat_batches(&schema, &batches).map_err(table_err)?;
    Ok(Some(one))
}
