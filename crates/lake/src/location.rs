use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::file::reader::{ChunkReader, Length};

use crate::hive::Span;
use crate::{LakeError, Result};

/// A directory (or a single file) on local disk or in an object store.
#[derive(Clone)]
pub enum Location {
    Local(PathBuf),
    Store {
        url: String,
        store: Arc<dyn ObjectStore>,
        prefix: StorePath,
    },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Store { url, .. } => f.write_str(url),
        }
    }
}

/// One file found under a location.
#[derive(Debug, Clone)]
pub struct FileRef {
    /// How the file is named to people: a local path or a full URL.
    pub display: String,
    pub size: u64,
    /// The time its hive partition folders (`dt=`, `hour=`) can hold; all
    /// time outside such folders (and for object-store [`Location::list`]).
    pub span: Span,
    /// When the file was last written (ms since the epoch), where the
    /// store says: the time its data reached the lake.
    pub modified_ms: Option<i64>,
    pub(crate) source: Source,
}

/// What [`Location::list_pruned`] found, and what it left out unlisted.
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<FileRef>,
    /// Folders listed (the root included).
    pub folders_listed: u64,
    /// Time-partition folders left out because `keep` refused their span.
    pub partitions_skipped: u64,
}

impl Listing {
    /// Nothing was found and nothing was pruned: the location is missing or
    /// holds no file of the kind asked for.
    pub fn is_empty_location(&self) -> bool {
        self.files.is_empty() && self.partitions_skipped == 0
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Local(PathBuf),
    Store(Arc<dyn ObjectStore>, StorePath),
}

/// An opened file that Parquet can read: a local file is read in place, an
/// object is fetched whole (telemetry files are per day, so this bounds memory
/// per file read at once).
pub enum Input {
    Local(File),
    Remote(Bytes),
}

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pitwall-lake-io")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the I/O runtime: {e}"))
    })
}

/// Runs a read on the I/O runtime, and again (three tries in all) when it
/// fails on the way. object_store retries a request, but not a body cut
/// off mid-way or a connection reset as the answer arrives, which S3 does
/// now and then; a read has no side effect, so trying it again is safe,
/// and one reset no longer fails a whole run (a watcher's cycle, with its
/// alert).
pub(crate) fn read_retrying<T, F, Fut>(what: &str, read: F) -> object_store::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    runtime().block_on(retrying(what, read))
}

/// [`read_retrying`] inside async code (a listing's walk).
pub(crate) async fn retrying<T, F, Fut>(what: &str, read: F) -> object_store::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let mut tries = 1;
    loop {
        match read().await {
            Err(e @ object_store::Error::Generic { .. }) if tries < 3 => {
                tracing::info!(read = what, error = %e, "reading again after a transport error");
                tokio::time::sleep(Duration::from_millis(100 << (2 * tries))).await;
                tries += 1;
            }
            done => return done,
        }
    }
}

impl Location {
    /// Parses a local path or an `s3://bucket/prefix` URL. S3 access uses the
    /// standard AWS environment: region, credentials chain, `AWS_ENDPOINT_URL`
    /// or `AWS_ENDPOINT_URL_S3` for emulators.
    pub fn parse(s: &str) -> Result<Location> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::UnsupportedUrl(s.to_string()));
            }
            let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok();
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(
                    endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                )
                .build()
                .map_err(|source| LakeError::ObjectStore {
                    url: s.to_string(),
                    source,
                })?;
            return Ok(Location::Store {
                url: s.trim_end_matches('/').to_string(),
                store: Arc::new(store),
                prefix: StorePath::from(prefix.trim_end_matches('/')),
            });
        }
        if s.contains("://") {
            return Err(LakeError::UnsupportedUrl(s.to_string()));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// The location `rel` (a `/`-separated path) below this one.
    pub fn join(&self, rel: &str) -> Location {
        let rel = rel.trim_matches('/');
        match self {
            Location::Local(root) => Location::Local(root.join(rel)),
            Location::Store { url, store, prefix } => Location::Store {
                url: format!("{url}/{rel}"),
                store: store.clone(),
                prefix: StorePath::from(format!("{prefix}/{rel}").trim_start_matches('/')),
            },
        }
    }

    /// Every file under this location (recursively) whose name ends with one
    /// of `suffixes`, sorted by name so runs list files in a stable order.
    /// A location that is itself a file lists as that file.
    pub fn list(&self, suffixes: &[&str]) -> Result<Vec<FileRef>> {
        let wanted = |name: &str| suffixes.iter().any(|s| name.ends_with(s));
        let mut files = match self {
            Location::Local(root) => crate::prune::walk_local(root, &wanted, &|_| true)?.files,
            Location::Store { url, store, prefix } => {
                // A URL naming one object is that file, as a local file path is.
                let objects: Vec<_> = match runtime().block_on(store.head(prefix)) {
                    Ok(meta) if !prefix.as_ref().is_empty() => vec![meta],
                    _ => read_retrying(url, || store.list(Some(prefix)).try_collect::<Vec<_>>())
                        .map_err(|source| LakeError::ObjectStore {
                            url: url.clone(),
                            source,
                        })?,
                };
                let base = url
                    .split_once("://")
                    .map_or("", |(_, r)| r.split('/').next().unwrap_or(""));
                objects
                    .into_iter()
                    .filter(|o| wanted(o.location.as_ref()))
                    .map(|o| FileRef {
                        display: format!("s3://{base}/{}", o.location),
                        size: o.size,
                        span: Span::ALL,
                        modified_ms: Some(o.last_modified.timestamp_millis()),
                        source: Source::Store(store.clone(), o.location),
                    })
                    .collect()
            }
        };
        files.sort_by(|a, b| a.display.cmp(&b.display));
        Ok(files)
    }

    /// Like [`list`](Self::list), but a local directory that does not exist
    /// holds no files (an hour nothing was written for) instead of an error.
    pub fn list_if_exists(&self, suffixes: &[&str]) -> Result<Vec<FileRef>> {
        match self {
            Location::Local(p) if !p.exists() => Ok(Vec::new()),
            _ => self.list(suffixes),
        }
    }

    /// Deletes a file found by [`list`](Self::list); one already gone is fine.
    pub fn remove(file: &FileRef) -> Result<()> {
        match &file.source {
            Source::Local(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LakeError::Io {
                    path: file.display.clone(),
                    source: e,
                }),
                _ => Ok(()),
            },
            Source::Store(store, path) => match runtime().block_on(store.delete(path)) {
                Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
                Err(source) => Err(LakeError::ObjectStore {
                    url: file.display.clone(),
                    source,
                }),
            },
        }
    }

    /// Writes `bytes` as `rel` (a `/`-separated path) under this location,
    /// whole or not at all: a local file is written aside, fsynced and
    /// renamed into place; an object is one PUT, visible only once complete.
    /// Returns how the file is named to people.
    pub fn put(&self, rel: &str, bytes: Bytes) -> Result<String> {
        self.put_while(rel, bytes, &|| true)
    }

    /// [`put`](Self::put), abandoned as soon as `allowed` turns false: the
    /// check runs before the write and every 50 ms while an object's PUT
    /// (with the store's own retries) is under way, and dropping the request
    /// closes its connection. A writer whose right to write lapses (a lease
    /// gone stale) then stops writing at once instead of retrying for
    /// minutes and landing after the next writer. Returns
    /// [`LakeError::Abandoned`] when it gave up.
    pub fn put_while(&self, rel: &str, bytes: Bytes, allowed: &dyn Fn() -> bool) -> Result<String> {
        let abandoned = |display: String| LakeError::Abandoned { path: display };
        match self {
            Location::Local(root) => {
                let path = root.join(rel);
                if !allowed() {
                    return Err(abandoned(path.display().to_string()));
                }
                crate::write_bytes(&path, &bytes)?;
                Ok(path.display().to_string())
            }
            Location::Store { url, store, prefix } => {
                let key = StorePath::from(format!("{prefix}/{rel}").trim_start_matches('/'));
                let display = format!("{url}/{rel}");
                if !allowed() {
                    return Err(abandoned(display));
                }
                let put = runtime().block_on(async {
                    let mut put = std::pin::pin!(store.put(&key, bytes.into()));
                    let mut check = tokio::time::interval(Duration::from_millis(50));
                    loop {
                        tokio::select! {
                            done = &mut put => return Some(done),
                            _ = check.tick() => if !allowed() { return None },
                        }
                    }
                });
                match put {
                    None => Err(abandoned(display)),
                    Some(Err(source)) => Err(LakeError::ObjectStore {
                        url: display,
                        source,
                    }),
                    Some(Ok(_)) => Ok(display),
                }
            }
        }
    }

    /// Whether this location takes writes: a small object is written under
    /// `_pitwall_doctor/` and deleted again. Returns how it was named.
    pub fn probe_write(&self) -> Result<String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let rel = format!("_pitwall_doctor/{}-{nanos}", std::process::id());
        let shown = self.put(&rel, Bytes::from_static(b"pitwall doctor\n"))?;
        match self {
            Location::Local(root) => {
                let path = root.join(&rel);
                std::fs::remove_file(&path).map_err(|source| LakeError::Io {
                    path: shown.clone(),
                    source,
                })?;
                // The probe's folder too, if nothing else is in it.
                let _ = std::fs::remove_dir(root.join("_pitwall_doctor"));
            }
            Location::Store { store, prefix, .. } => {
                let key = StorePath::from(format!("{prefix}/{rel}").trim_start_matches('/'));
                runtime().block_on(store.delete(&key)).map_err(|source| {
                    LakeError::ObjectStore {
                        url: shown.clone(),
                        source,
                    }
                })?;
            }
        }
        Ok(shown)
    }

    /// Reads a whole small file (e.g. a rentals CSV) into memory.
    pub fn read_all(file: &FileRef) -> Result<Bytes> {
        match Self::open(file)? {
            Input::Remote(b) => Ok(b),
            Input::Local(f) => {
                let mut buf = Vec::new();
                read_local(f, file, &mut buf)?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Reads a whole file into `buf` (cleared first). A worker that reads
    /// many large files through one buffer maps its pages once, instead of
    /// faulting in fresh zeroed pages for every file.
    pub fn read_into(file: &FileRef, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        match Self::open(file)? {
            Input::Remote(b) => buf.extend_from_slice(&b),
            Input::Local(f) => read_local(f, file, buf)?,
        }
        Ok(())
    }

    pub fn open(file: &FileRef) -> Result<Input> {
        match &file.source {
            Source::Local(p) => File::open(p)
                .map(Input::Local)
                .map_err(|source| LakeError::Io {
                    path: file.display.clone(),
                    source,
                }),
            Source::Store(store, path) => read_retrying(&file.display, || async {
                store.get(path).await?.bytes().await
            })
            .map(Input::Remote)
            .map_err(|source| LakeError::ObjectStore {
                url: file.display.clone(),
                source,
            }),
        }
    }
}

/// Appends a local file to `buf`, sized up front: growing by doubling
/// copied each input about once more and faulted in twice the pages.
fn read_local(mut f: File, file: &FileRef, buf: &mut Vec<u8>) -> Result<()> {
    let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
    buf.reserve(len.saturating_add(1));
    f.read_to_end(buf).map_err(|source| LakeError::Io {
        path: file.display.clone(),
        source,
    })?;
    Ok(())
}

impl Input {
    /// A second handle on the same file or bytes, for another reader.
    pub fn try_clone(&self) -> std::io::Result<Input> {
        Ok(match self {
            Input::Local(f) => Input::Local(f.try_clone()?),
            Input::Remote(b) => Input::Remote(b.clone()),
        })
    }
}

impl Length for Input {
    fn len(&self) -> u64 {
        match self {
            Input::Local(f) => f.len(),
            Input::Remote(b) => b.len() as u64,
        }
    }
}

impl ChunkReader for Input {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(match self {
            Input::Local(f) => Box::new(f.get_read(start)?),
            Input::Remote(b) => Box::new(b.get_read(start)?),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            Input::Local(f) => f.get_bytes(start, length),
            Input::Remote(b) => b.get_bytes(start, length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_no_longer_allowed_is_abandoned_and_leaves_nothing() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| LakeError::Io {
            path: "tmp".into(),
            source,
        })?;
        let loc = Location::Local(dir.path().to_path_buf());
        let res = loc.put_while("dt=x/a.parquet", Bytes::from_static(b"1"), &|| false);
        assert!(matches!(res, Err(LakeError::Abandoned { .. })), "{res:?}");
        assert!(!dir.path().join("dt=x/a.parquet").exists());
        loc.put_while("dt=x/a.parquet", Bytes::from_static(b"1"), &|| true)?;
        assert!(dir.path().join("dt=x/a.parquet").exists());
        Ok(())
    }

    #[test]
    fn lists_recursively_sorted_and_skips_hidden_files() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| LakeError::Io {
            path: "tmp".into(),
            source,
        })?;
        let d = dir.path();
        for p in [
            "dt=2026-01-02/b.parquet",
            "dt=2026-01-01/a.parquet",
            "dt=2026-01-01/.a.parquet.tmp",
            "_SUCCESS",
            "x.csv",
        ] {
            let path = d.join(p);
            std::fs::create_dir_all(path.parent().unwrap_or(d)).map_err(|source| {
                LakeError::Io {
                    path: p.into(),
                    source,
                }
            })?;
            std::fs::write(&path, b"x").map_err(|source| LakeError::Io {
                path: p.into(),
                source,
            })?;
        }
        let loc = Location::parse(&d.display().to_string())?;
        let names: Vec<String> = loc
            .list(&[".parquet"])?
            .into_iter()
            .map(|f| f.display)
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names[0].ends_with("dt=2026-01-01/a.parquet"));
        assert!(names[1].ends_with("dt=2026-01-02/b.parquet"));
        Ok(())
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let err = Location::Local(PathBuf::from("/no/such/dir"))
            .list(&[".parquet"])
            .err();
        assert!(err.is_some_and(|e| e.to_string().contains("/no/such/dir")));
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(matches!(
            Location::parse("gs://b/x"),
            Err(LakeError::UnsupportedUrl(_))
        ));
        assert!(matches!(
            Location::parse("s3://"),
            Err(LakeError::UnsupportedUrl(_))
        ));
    }
}
