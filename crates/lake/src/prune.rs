//! Listing that leaves out hive time partitions a reader cannot need: the
//! folders whose span `keep` refuses are never listed, so a run over one new
//! hour lists that hour, not the year beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;

use crate::hive::{self, Span};
use crate::location::{FileRef, Listing, Source, runtime};
use crate::{LakeError, Location, Result};

/// Object-store folders listed at once: one hour folder is one request, and
/// a week of them should not take a week of round trips.
const CONCURRENT_LISTS: usize = 16;

type Keep<'a> = &'a (dyn Fn(Span) -> bool + Sync);

impl Location {
    /// Like [`list`](Self::list), but a time-partition folder (`dt=`,
    /// `hour=`) whose span `keep` refuses is skipped without being listed.
    /// Each file carries the span of the folders above it.
    pub fn list_pruned(&self, suffixes: &[&str], keep: Keep<'_>) -> Result<Listing> {
        let wanted = |name: &str| {
            !name.starts_with('.')
                && !name.starts_with('_')
                && suffixes.iter().any(|s| name.ends_with(s))
        };
        let mut listing = match self {
            Location::Local(root) => walk_local(root, &wanted, keep)?,
            Location::Store { url, store, prefix } => {
                runtime().block_on(walk_store(url, store, prefix, &wanted, keep))?
            }
        };
        listing.files.sort_by(|a, b| a.display.cmp(&b.display));
        Ok(listing)
    }
}

impl Location {
    /// [`list_pruned`](Self::list_pruned), but a local directory that does
    /// not exist lists as empty, as a missing S3 prefix does: a lake that
    /// nothing has landed in yet. [`Listing::is_empty_location`] tells it
    /// from a listing whose every partition was pruned.
    pub fn list_pruned_if_exists(&self, suffixes: &[&str], keep: Keep<'_>) -> Result<Listing> {
        match self {
            Location::Local(p) if !p.exists() => Ok(Listing::default()),
            _ => self.list_pruned(suffixes, keep),
        }
    }
}

/// The local walk of both listings; `list` keeps every folder.
pub(crate) fn walk_local(
    root: &Path,
    wanted: &dyn Fn(&str) -> bool,
    keep: Keep<'_>,
) -> Result<Listing> {
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| LakeError::Io { path, source }
    };
    let mut listing = Listing::default();
    let meta = std::fs::metadata(root).map_err(io_err(root))?;
    if meta.is_file() {
        listing
            .files
            .push(local_file(root.to_path_buf(), &meta, Span::ALL));
        return Ok(listing);
    }
    let mut stack: Vec<(PathBuf, Span)> = vec![(root.to_path_buf(), Span::ALL)];
    while let Some((dir, span)) = stack.pop() {
        listing.folders_listed += 1;
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Hidden and in-progress files (".x", "_tmp") are not data.
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let meta = entry.metadata().map_err(io_err(&path))?;
            if meta.is_dir() {
                match child(span, &name, keep) {
                    Some(s) => stack.push((path, s)),
                    None => listing.partitions_skipped += 1,
                }
            } else if wanted(&name) {
                listing.files.push(local_file(path, &meta, span));
            }
        }
    }
    Ok(listing)
}

/// The span of a sub-folder, or None when it is a partition `keep` refuses.
fn child(span: Span, name: &str, keep: Keep<'_>) -> Option<Span> {
    let narrowed = hive::narrow(span, name);
    (narrowed == span || keep(narrowed)).then_some(narrowed)
}

fn local_file(path: PathBuf, meta: &std::fs::Metadata, span: Span) -> FileRef {
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64);
    FileRef {
        display: path.display().to_string(),
        size: meta.len(),
        span,
        modified_ms,
        source: Source::Local(path),
    }
}

async fn walk_store(
    url: &str,
    store: &Arc<dyn ObjectStore>,
    prefix: &StorePath,
    wanted: &dyn Fn(&str) -> bool,
    keep: Keep<'_>,
) -> Result<Listing> {
    let err = |source| LakeError::ObjectStore {
        url: url.to_string(),
        source,
    };
    let bucket = url
        .split_once("://")
        .map_or("", |(_, r)| r.split('/').next().unwrap_or(""));
    let mut listing = Listing::default();
    let mut level: Vec<(StorePath, Span)> = vec![(prefix.clone(), Span::ALL)];
    while !level.is_empty() {
        let results: Vec<_> = futures::stream::iter(level.drain(..))
            .map(|(dir, span)| async move {
                let p = (!dir.as_ref().is_empty()).then_some(&dir);
                crate::location::retrying(dir.as_ref(), || store.list_with_delimiter(p))
                    .await
                    .map(|r| (r, span))
            })
            .buffer_unordered(CONCURRENT_LISTS)
            .collect()
            .await;
        let mut next = Vec::new();
        for result in results {
            let (found, span) = result.map_err(err)?;
            listing.folders_listed += 1;
            for dir in found.common_prefixes {
                let name = last_part(&dir);
                if name.starts_with('.') || name.starts_with('_') {
                    continue;
                }
                match child(span, name, keep) {
                    Some(s) => next.push((dir, s)),
                    None => listing.partitions_skipped += 1,
                }
            }
            for o in found.objects {
                if wanted(last_part(&o.location)) {
                    listing.files.push(FileRef {
                        display: format!("s3://{bucket}/{}", o.location),
                        size: o.size,
                        span,
                        modified_ms: Some(o.last_modified.timestamp_millis()),
                        source: Source::Store(store.clone(), o.location),
                    });
                }
            }
        }
        level = next;
    }
    Ok(listing)
}

fn last_part(p: &StorePath) -> &str {
    p.as_ref().rsplit('/').next().unwrap_or("")
}
