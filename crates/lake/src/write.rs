use std::fs::File;
use std::io::Write;
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, compute_leaves,
};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::{LakeError, Result};

#[derive(Debug, Clone)]
pub struct ParquetOptions {
    pub zstd_level: i32,
    pub max_row_group_rows: usize,
    /// Columns written without dictionary encoding: ids, hashes, times and
    /// other near-unique values, where a dictionary only costs hashing
    /// before the writer gives up on it.
    pub no_dictionary: Vec<String>,
    /// Columns compressed at zstd level 1 whatever `zstd_level` says:
    /// random ids and hashes, where higher levels only cost time.
    pub fast_columns: Vec<String>,
    /// Columns written without min/max statistics: values no query prunes
    /// by (hashes, random ids, free-form JSON), where comparing every value
    /// is pure cost.
    pub no_statistics: Vec<String>,
    /// Integer and timestamp columns written DELTA_BINARY_PACKED (no
    /// dictionary): event and arrival times rise almost monotonically
    /// within a file, so each value takes a few bits before zstd sees it.
    pub delta_columns: Vec<String>,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            zstd_level: 3,
            max_row_group_rows: 128 * 1024,
            no_dictionary: Vec::new(),
            fast_columns: Vec::new(),
            no_statistics: Vec::new(),
            delta_columns: Vec::new(),
        }
    }
}

impl ParquetOptions {
    pub fn properties(&self) -> WriterProperties {
        let level = ZstdLevel::try_new(self.zstd_level).unwrap_or_default();
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.max_row_group_rows));
        for col in &self.no_dictionary {
            b = b.set_column_dictionary_enabled(ColumnPath::from(col.as_str()), false);
        }
        for col in &self.no_statistics {
            b = b.set_column_statistics_enabled(
                ColumnPath::from(col.as_str()),
                EnabledStatistics::None,
            );
        }
        for col in &self.delta_columns {
            let path = ColumnPath::from(col.as_str());
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        }
        for col in &self.fast_columns {
            b = b.set_column_compression(
                ColumnPath::from(col.as_str()),
                Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
            );
        }
        b.build()
    }
}

/// Writes `path` so that readers see the old file or the whole new one,
/// never a part: write to a hidden sibling, fsync, rename, fsync the dir.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let io = |source| LakeError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io)?;
        write(&mut f)?;
        f.flush().map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        // The rename is durable only once the directory is.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` as the whole content of `path`, atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |f| {
        f.write_all(bytes).map_err(|source| LakeError::Io {
            path: path.display().to_string(),
            source,
        })
    })
}

/// Writes record batches as one zstd Parquet file, atomically.
pub fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    opts: &ParquetOptions,
) -> Result<()> {
    let pq = |source| LakeError::Parquet {
        path: path.display().to_string(),
        source,
    };
    write_atomic(path, |f| {
        let mut w = ArrowWriter::try_new(f, schema, Some(opts.properties())).map_err(pq)?;
        for b in batches {
            w.write(b).map_err(pq)?;
        }
        w.close().map_err(pq)?;
        Ok(())
    })
}

/// Encodes record batches as one zstd Parquet file in memory, for [`crate::Location::put`].
pub fn parquet_bytes(
    schema: SchemaRef,
    batches: &[RecordBatch],
    opts: &ParquetOptions,
) -> Result<Vec<u8>> {
    let pq = |source| LakeError::Parquet {
        path: "(in memory)".into(),
        source,
    };
    let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(opts.properties())).map_err(pq)?;
    for b in batches {
        w.write(b).map_err(pq)?;
    }
    w.into_inner().map_err(pq)
}

/// [`parquet_bytes`] for one large batch, its columns encoded on up to
/// `threads` threads at once (encoding, not I/O, is what a snapshot of
/// millions of values costs). The file is the one [`parquet_bytes`] writes:
/// same row groups, same encodings, the Arrow schema embedded.
pub fn parquet_bytes_parallel(
    batch: &RecordBatch,
    opts: &ParquetOptions,
    threads: usize,
) -> Result<Vec<u8>> {
    let pq = |source| LakeError::Parquet {
        path: "(in memory)".into(),
        source,
    };
    let schema = batch.schema();
    let w =
        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(opts.properties())).map_err(pq)?;
    let (mut file, factory) = w.into_serialized_writer().map_err(pq)?;
    let rows = opts.max_row_group_rows.max(1);
    for group in 0..batch.num_rows().div_ceil(rows) {
        let start = group * rows;
        let part = batch.slice(start, rows.min(batch.num_rows() - start));
        let mut leaves = Vec::new();
        for (field, column) in schema.fields().iter().zip(part.columns()) {
            leaves.extend(compute_leaves(field, column).map_err(pq)?);
        }
        let writers = factory.create_column_writers(group).map_err(pq)?;
        let chunks =
            encode_columns(writers.into_iter().zip(leaves).collect(), threads).map_err(pq)?;
        let mut rg = file.next_row_group().map_err(pq)?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut rg).map_err(pq)?;
        }
        rg.close().map_err(pq)?;
    }
    file.into_inner().map_err(pq)
}

/// Encodes each column with its writer, `threads` at a time (column k on
/// thread k mod threads), and returns the chunks in column order.
fn encode_columns(
    work: Vec<(ArrowColumnWriter, ArrowLeafColumn)>,
    threads: usize,
) -> parquet::errors::Result<Vec<ArrowColumnChunk>> {
    let threads = threads.clamp(1, work.len().max(1));
    let mut lanes: Vec<Vec<(usize, ArrowColumnWriter, ArrowLeafColumn)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (k, (w, leaf)) in work.into_iter().enumerate() {
        lanes[k % threads].push((k, w, leaf));
    }
    let encode = |lane: Vec<(usize, ArrowColumnWriter, ArrowLeafColumn)>| {
        lane.into_iter()
            .map(|(k, mut w, leaf)| {
                w.write(&leaf)?;
                Ok((k, w.close()?))
            })
            .collect::<parquet::errors::Result<Vec<_>>>()
    };
    let mut done: Vec<(usize, ArrowColumnChunk)> = std::thread::scope(|s| {
        let handles: Vec<_> = lanes
            .into_iter()
            .map(|lane| s.spawn(move || encode(lane)))
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let part = h.join().map_err(|_| {
                parquet::errors::ParquetError::General("an encoding thread panicked".into())
            })??;
            all.extend(part);
        }
        Ok::<_, parquet::errors::ParquetError>(all)
    })?;
    done.sort_by_key(|(k, _)| *k);
    Ok(done.into_iter().map(|(_, c)| c).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, StringArray};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    #[test]
    fn columns_encoded_in_parallel_read_back_as_the_serial_file() {
        use arrow_array::types::Int64Type;
        use arrow_array::{Int64Array, ListArray};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let n = 1000;
        let ids: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("m{i:05}")),
        ));
        let v: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 7)));
        let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
            (0..n).map(|i| (i % 3 != 0).then(|| (0..i % 5).map(Some).collect::<Vec<_>>())),
        ));
        let batch =
            RecordBatch::try_from_iter([("id", ids), ("v", v), ("recent", lists)]).expect("batch");
        let opts = ParquetOptions {
            max_row_group_rows: 300,
            no_dictionary: vec!["id".into()],
            ..ParquetOptions::default()
        };
        let read = |bytes: Vec<u8>| {
            let r = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .expect("reader");
            assert_eq!(r.metadata().num_row_groups(), 4);
            let mut out: Vec<RecordBatch> = r
                .with_batch_size(10 * n as usize)
                .build()
                .expect("build")
                .map(|b| b.expect("batch"))
                .collect();
            assert_eq!(out.len(), 1);
            out.remove(0)
        };
        let serial = read(
            parquet_bytes(batch.schema(), std::slice::from_ref(&batch), &opts).expect("serial"),
        );
        for threads in [1, 2, 3] {
            let parallel = read(parquet_bytes_parallel(&batch, &opts, threads).expect("parallel"));
            assert_eq!(parallel, serial, "{threads} threads");
            assert_eq!(parallel, batch);
        }
        let empty = batch.slice(0, 0);
        let bytes = parquet_bytes_parallel(&empty, &opts, 2).expect("empty");
        let r =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).expect("reader");
        assert_eq!(r.schema(), &batch.schema());
    }

    #[test]
    fn per_column_options_reach_the_file() {
        let col = |v: &[&str]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("hash", col(&["9f", "0a", "c3"])),
            ("service", col(&["rentals", "fleet", "rentals"])),
        ])
        .expect("batch");
        let opts = ParquetOptions {
            no_dictionary: vec!["hash".into()],
            fast_columns: vec!["hash".into()],
            no_statistics: vec!["hash".into()],
            ..ParquetOptions::default()
        };
        let bytes = parquet_bytes(batch.schema(), &[batch], &opts).expect("parquet");
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).expect("reader");
        let rg = reader.metadata().row_group(0);
        let (hash, service) = (rg.column(0), rg.column(1));
        assert!(hash.statistics().is_none());
        assert!(service.statistics().is_some());
        assert!(hash.dictionary_page_offset().is_none());
        assert!(service.dictionary_page_offset().is_some());
        assert_eq!(hash.compression(), Compression::ZSTD(ZstdLevel::default()));
    }

    #[test]
    fn delta_columns_are_delta_encoded_without_a_dictionary() {
        let ts = Arc::new(arrow_array::Int64Array::from(vec![1_000, 1_005, 1_010])) as ArrayRef;
        let batch = RecordBatch::try_from_iter([("ts", ts)]).expect("batch");
        let opts = ParquetOptions {
            delta_columns: vec!["ts".into()],
            ..ParquetOptions::default()
        };
        let bytes = parquet_bytes(batch.schema(), &[batch], &opts).expect("parquet");
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).expect("reader");
        let col = reader.metadata().row_group(0).column(0).clone();
        assert!(
            col.encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED),
            "{:?}",
            col.encodings().collect::<Vec<_>>()
        );
        assert!(col.dictionary_page_offset().is_none());
    }
}
