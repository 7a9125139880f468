//! The reconciliation run: legacy arrival hours in order, each event hour
//! compared with the lake once every arrival hour that can hold its events
//! has been read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use pitwall_lake::{FileRef, Location};
use pitwall_logs::layout::{ceil_units, date_of, firehose_hour_dir, hour_dir, hour_of};
use pitwall_logs::{Contract, Pii, Validator};

use crate::dlq::{Dlq, read_dlq};
use crate::read::{LegacyFile, LegacyReader, Refused, read_lake_file};
use crate::report::{Compare, HourReport, Report, Totals};
use crate::side::Side;
use crate::{HOUR_MS, ReconcileError, Result};

pub struct Job<'a> {
    /// The legacy prefix: `PREFIX/YYYY/MM/DD/HH/*` by arrival hour.
    pub legacy: &'a Location,
    pub lake: &'a Location,
    pub contract: &'a Contract,
    /// The key the ingestion hashed PII with, so hashes compare equal.
    pub pii: Pii,
    /// The contract field events are matched by.
    pub key: &'a str,
    /// The range, epoch ms; widened to whole hours.
    pub from_ms: i64,
    pub to_ms: i64,
    /// How many hours after (and before) its event hour an event may have
    /// arrived: the legacy hours read beyond the range on each side.
    pub arrival_slack_hours: i64,
    pub tolerance: f64,
    /// Ids listed per kind of problem and hour.
    pub sample: usize,
    pub threads: usize,
}

/// Compares the range hour by hour; `on_hour` sees each hour as it is done.
pub fn reconcile(job: &Job<'_>, on_hour: &(dyn Fn(&HourReport) + Sync)) -> Result<Report> {
    let started = Instant::now();
    let (from_h, to_h) = (hour_of(job.from_ms), ceil_units(job.to_ms, HOUR_MS));
    if to_h <= from_h {
        return Err(ReconcileError::EmptyRange {
            from: hour_text(from_h),
            to: hour_text(to_h),
        });
    }
    let key_field = job
        .contract
        .field_index(job.key)
        .ok_or_else(|| ReconcileError::NoKey(job.key.to_string()))?;
    let slack = job.arrival_slack_hours.max(0);
    let dataset = &job.contract.dataset;
    let dates: BTreeSet<String> = (from_h - slack..to_h + slack).map(date_text).collect();
    let dlq = read_dlq(job.lake, dataset, &Vec::from_iter(dates), job.key)?;
    let validator = Validator::new(job.contract, job.pii.clone());
    let fields: Vec<String> = job.contract.fields.iter().map(|f| f.name.clone()).collect();
    let mut run = Run {
        job,
        key_field,
        dlq: &dlq,
        fields: &fields,
        pending: BTreeMap::new(),
        report: empty_report(job, from_h, to_h),
    };
    let reader = LegacyReader {
        validator: &validator,
        key_field,
        hours: from_h..to_h,
        sample: job.sample,
    };
    let mut next = from_h;
    for arrival in from_h - slack..to_h + slack {
        let files = match firehose_hour_dir(arrival) {
            Some(rel) => job.legacy.join(&rel).list_if_exists(&[""])?,
            None => Vec::new(),
        };
        run.report.legacy_files += files.len();
        for file in parallel(&files, job.threads, |f| reader.read(f))? {
            run.take_legacy(file);
        }
        // Every arrival hour that can hold hour `next`'s events is read.
        while next < to_h && next + slack <= arrival {
            run.compare(next, on_hour)?;
            next += 1;
        }
    }
    while next < to_h {
        run.compare(next, on_hour)?;
        next += 1;
    }
    let mut report = run.report;
    report.dlq_by_date = dlq.by_date.clone();
    report.within_tolerance = report.hours.iter().all(|h| h.within_tolerance);
    report.millis = started.elapsed().as_millis() as u64;
    Ok(report)
}

struct Run<'a> {
    job: &'a Job<'a>,
    key_field: usize,
    dlq: &'a Dlq,
    fields: &'a [String],
    /// Legacy events of hours not compared yet.
    pending: BTreeMap<i64, (Side, Refused)>,
    report: Report,
}

impl Run<'_> {
    fn take_legacy(&mut self, file: LegacyFile) {
        let n = self.fields.len();
        let r = &mut self.report;
        r.legacy_lines += file.lines;
        r.legacy_unreadable += file.unreadable;
        let room = self
            .job
            .sample
            .saturating_sub(r.legacy_unreadable_sample.len());
        r.legacy_unreadable_sample
            .extend(file.unreadable_sample.into_iter().take(room));
        for (h, events) in file.by_hour {
            let (side, _) = self.pending.entry(h).or_insert_with(|| empty(n));
            side.absorb(events, self.job.sample);
        }
        for (h, more) in file.refused {
            let (_, refused) = self.pending.entry(h).or_insert_with(|| empty(n));
            for (reason, c) in more.by_reason {
                *refused.by_reason.entry(reason).or_default() += c;
            }
            refused.keys.extend(more.keys);
            refused.names.absorb(more.names);
            refused.without_id += more.without_id;
        }
    }

    fn compare(&mut self, hour: i64, on_hour: &(dyn Fn(&HourReport) + Sync)) -> Result<()> {
        let n = self.fields.len();
        let (legacy, refused) = self.pending.remove(&hour).unwrap_or_else(|| empty(n));
        let dir = self
            .job
            .lake
            .join(&hour_dir(&self.job.contract.dataset, hour));
        let files = dir.list_if_exists(&[".parquet"])?;
        self.report.lake_files += files.len();
        let (contract, key) = (self.job.contract, self.key_field);
        let mut lake = Side::new(n);
        for events in parallel(&files, self.job.threads, |f| {
            read_lake_file(f, contract, key)
        })? {
            lake.absorb(events, self.job.sample);
        }
        let cmp = Compare {
            fields: self.fields,
            dlq: self.dlq,
            sample: self.job.sample,
            tolerance: self.job.tolerance,
        };
        let h = cmp.hour(hour_text(hour), &legacy, &lake, &refused);
        on_hour(&h);
        self.report.totals.add(&h);
        self.report.hours.push(h);
        Ok(())
    }
}

/// An hour with nothing read yet.
fn empty(n_fields: usize) -> (Side, Refused) {
    (Side::new(n_fields), Refused::default())
}

fn empty_report(job: &Job<'_>, from_h: i64, to_h: i64) -> Report {
    Report {
        dataset: job.contract.dataset.clone(),
        legacy: job.legacy.to_string(),
        lake: job.lake.to_string(),
        from: hour_text(from_h),
        to: hour_text(to_h),
        tolerance: job.tolerance,
        within_tolerance: true,
        totals: Totals::default(),
        hours: Vec::new(),
        dlq_by_date: BTreeMap::new(),
        legacy_unreadable: 0,
        legacy_unreadable_sample: Vec::new(),
        legacy_files: 0,
        legacy_lines: 0,
        lake_files: 0,
        millis: 0,
    }
}

/// `f` over `files` on `threads` threads, results in file order (so that
/// which of two duplicates counts as first doesn't depend on timing).
fn parallel<T: Send>(
    files: &[FileRef],
    threads: usize,
    f: impl Fn(&FileRef) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..files.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, files.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(file) = files.get(i) else { break };
                    let r = f(file);
                    out.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

fn hour_text(hour: i64) -> String {
    chrono::DateTime::from_timestamp_millis(hour * HOUR_MS)
        .map(|t| t.format("%Y-%m-%dT%H:00:00Z").to_string())
        .unwrap_or_default()
}

fn date_text(hour: i64) -> String {
    date_of(hour * HOUR_MS)
}
