//! Small files addressed by name under a location: read whole if present,
//! and created only if absent. A create that loses a race reports it instead
//! of overwriting, which is what a commit log needs: locally an exclusive
//! link of a fully written file, on S3 a conditional PUT (`If-None-Match`).

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

use crate::location::{read_retrying, runtime};
use crate::{LakeError, Location, Result};

/// What a create-if-absent write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The file is ours, whole.
    Yes,
    /// Someone else's file was already there; ours was not written.
    AlreadyExists,
}

impl Location {
    /// The bytes of `rel` below this location, or None when there is no such file.
    pub fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        match self {
            Location::Local(root) => {
                let path = root.join(rel);
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some(Bytes::from(b))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(LakeError::Io {
                        path: path.display().to_string(),
                        source,
                    }),
                }
            }
            Location::Store { url, store, prefix } => {
                let key = key(prefix, rel);
                let got = read_retrying(rel, || async { store.get(&key).await?.bytes().await });
                found(got, url, rel)
            }
        }
    }

    /// The bytes of `ranges` of `rel`, in the order asked, or None when
    /// there is no such file. An object store gets one request per run of
    /// nearby ranges (object_store coalesces them), a local file one `pread`
    /// per range: a reader pays for the bytes it needs, not the file.
    pub fn get_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Option<Vec<Bytes>>> {
        match self {
            Location::Local(root) => {
                let path = root.join(rel);
                let io = |source| LakeError::Io {
                    path: path.display().to_string(),
                    source,
                };
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io(e)),
                };
                ranges
                    .iter()
                    .map(|r| {
                        let len = usize::try_from(r.end.saturating_sub(r.start)).unwrap_or(0);
                        let mut buf = vec![0u8; len];
                        file.read_exact_at(&mut buf, r.start).map_err(io)?;
                        Ok(Bytes::from(buf))
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
            Location::Store { url, store, prefix } => {
                let key = key(prefix, rel);
                let got = read_retrying(rel, || store.get_ranges(&key, ranges));
                found(got, url, rel)
            }
        }
    }

    /// The bytes of one range of `rel`, or None when there is no such file.
    pub fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        Ok(self
            .get_ranges(rel, std::slice::from_ref(&range))?
            .and_then(|v| v.into_iter().next()))
    }

    /// Writes `bytes` as `rel` only if no file of that name exists, whole or
    /// not at all. Readers never see a part of it. A file already there with
    /// exactly these bytes counts as written here: a retry after an answer
    /// lost past the write.
    pub fn put_if_absent(&self, rel: &str, bytes: Bytes) -> Result<Created> {
        match self {
            Location::Local(root) => create_local(&root.join(rel), &bytes),
            Location::Store { url, store, prefix } => {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                let put = runtime().block_on(store.put_opts(
                    &key(prefix, rel),
                    bytes.clone().into(),
                    opts,
                ));
                match put {
                    Ok(_) => Ok(Created::Yes),
                    Err(object_store::Error::AlreadyExists { .. })
                    | Err(object_store::Error::Precondition { .. }) => {
                        // A PUT can take effect and still be answered with an
                        // error (S3 says a 500 may follow a write); the client's
                        // retry then finds the object. If it holds exactly these
                        // bytes, it is this writer's own: nobody else writes them.
                        if self.get(rel)?.is_some_and(|there| there == bytes) {
                            Ok(Created::Yes)
                        } else {
                            Ok(Created::AlreadyExists)
                        }
                    }
                    Err(source) => Err(LakeError::ObjectStore {
                        url: format!("{url}/{rel}"),
                        source,
                    }),
                }
            }
        }
    }

    /// The names (last path part) directly below `rel`, files and folders,
    /// sorted; an absent folder has none.
    pub fn names(&self, rel: &str) -> Result<Vec<String>> {
        let mut names = match self {
            Location::Local(root) => {
                let dir = root.join(rel);
                match std::fs::read_dir(&dir) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(source) => {
                        return Err(LakeError::Io {
                            path: dir.display().to_string(),
                            source,
                        });
                    }
                    Ok(entries) => entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect(),
                }
            }
            Location::Store { url, store, prefix } => {
                let dir = key(prefix, rel);
                let found = read_retrying(rel, || store.list_with_delimiter(Some(&dir))).map_err(
                    |source| LakeError::ObjectStore {
                        url: format!("{url}/{rel}"),
                        source,
                    },
                )?;
                let last = |p: &StorePath| p.as_ref().rsplit('/').next().unwrap_or("").to_string();
                found
                    .common_prefixes
                    .iter()
                    .map(last)
                    .chain(found.objects.iter().map(|o| last(&o.location)))
                    .collect()
            }
        };
        names.sort();
        Ok(names)
    }

    /// Deletes `rel` and everything below it; absent is fine.
    pub fn remove_tree(&self, rel: &str) -> Result<()> {
        match self {
            Location::Local(root) => {
                let path = root.join(rel);
                match std::fs::remove_dir_all(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LakeError::Io {
                        path: path.display().to_string(),
                        source: e,
                    }),
                    _ => Ok(()),
                }
            }
            Location::Store { .. } => {
                for f in self.join(rel).list_if_exists(&[""])? {
                    Location::remove(&f)?;
                }
                Ok(())
            }
        }
    }
}

/// An object store's answer for `rel`: None when it has no such object.
fn found<T>(got: object_store::Result<T>, url: &str, rel: &str) -> Result<Option<T>> {
    match got {
        Ok(v) => Ok(Some(v)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(LakeError::ObjectStore {
            url: format!("{url}/{rel}"),
            source,
        }),
    }
}

fn key(prefix: &StorePath, rel: &str) -> StorePath {
    StorePath::from(format!("{prefix}/{}", rel.trim_matches('/')).trim_start_matches('/'))
}

/// Writes a hidden sibling whole and fsynced, then hard-links it to the
/// name: the link fails if the name exists, so the file appears complete or
/// not at all, and never replaces another.
fn create_local(path: &Path, bytes: &[u8]) -> Result<Created> {
    let io = |source| LakeError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.new", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(Created::AlreadyExists);
            }
            Err(e) => return Err(io(e)),
        }
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(Created::Yes)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_create_finds_the_first_and_leaves_it() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| LakeError::Io {
            path: "tmp".into(),
            source,
        })?;
        let loc = Location::Local(dir.path().to_path_buf());
        assert_eq!(loc.get("log/1.json")?, None);
        assert_eq!(
            loc.put_if_absent("log/1.json", Bytes::from_static(b"first"))?,
            Created::Yes
        );
        assert_eq!(
            loc.put_if_absent("log/1.json", Bytes::from_static(b"second"))?,
            Created::AlreadyExists
        );
        assert_eq!(loc.get("log/1.json")?, Some(Bytes::from_static(b"first")));
        assert_eq!(loc.names("log")?, vec!["1.json".to_string()]);
        assert!(loc.names("nothing")?.is_empty());
        Ok(())
    }
}
