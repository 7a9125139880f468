//! `pitwall score run`: rentals and telemetry in, scores, run.json and
//! report.html out.
//!
//! ```text
//! rentals ──read+check──► rentals ─┐
//! telemetry ──read+check──► samples inside considered rentals ──spill by car──► buckets
//! buckets ──per car: sort, dedup──► features ──► completeness ──► score ──► member score
//!        ──► quality gates ──► rental_scores.parquet, member_scores.parquet, run.json, report.html
//! ```

pub mod frames;
mod incremental;
mod members;
mod outputs;
mod plan;
mod rejects;
mod rentals;
mod report;
mod run_json;
mod scoring;
mod spill;
mod tail;
mod telemetry;

use std::path::PathBuf;
use std::time::Instant;

use pitwall_lake::Location;
use pitwall_score::Model;
use pitwall_score::gates::GateConfig;

pub use incremental::{Fence, SnapshotMemory, StateOptions};
pub use pitwall_score_state::MemberRecord;
pub use run_json::{RunJson, RunStatus};

/// Everything a score run needs; built by the binary from flags and files.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// A rentals file, or a directory of them (`.parquet` or `.csv`); local or `s3://`.
    pub rentals: String,
    /// A directory of telemetry Parquet files (hive `dt=` folders allowed); local or `s3://`.
    pub telemetry: String,
    /// The run's "now" (ms since the epoch, UTC).
    pub as_of: i64,
    /// Local directory that receives the outputs.
    pub out: PathBuf,
    pub model: Model,
    /// Where the model came from (a path, or "embedded").
    pub model_source: String,
    /// Grace period for late telemetry; overrides the model's when set.
    pub grace_ms: Option<i64>,
    pub gates: GateConfig,
    /// The previous run's output directory, for the drift gates.
    pub previous: Option<PathBuf>,
    /// Worker threads for reading and scoring.
    pub threads: usize,
    /// Target size of one spill bucket; bounds memory per worker.
    pub bucket_bytes: u64,
    /// With a score state: an incremental run (`score-state.md`).
    pub state: Option<StateOptions>,
    /// Claims (Parquet or CSV) to judge the model in use by, in the report.
    pub claims: Option<String>,
}

impl JobConfig {
    pub fn new(rentals: String, telemetry: String, as_of: i64, out: PathBuf) -> Self {
        JobConfig {
            rentals,
            telemetry,
            as_of,
            out,
            model: Model::default(),
            model_source: "embedded".into(),
            grace_ms: None,
            gates: GateConfig::default(),
            previous: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            bucket_bytes: 32 << 20,
            state: None,
            claims: None,
        }
    }

    pub fn grace_ms(&self) -> i64 {
        self.grace_ms.unwrap_or(self.model.completeness.grace_ms())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Lake(#[from] pitwall_lake::LakeError),
    #[error(transparent)]
    State(#[from] pitwall_score_state::StateError),
    #[error("{file}: {problem}")]
    BadFile { file: String, problem: String },
    #[error("no {what} found at {location}: expected {expected}")]
    NoInput {
        what: &'static str,
        location: String,
        expected: &'static str,
    },
    #[error("cannot use the spill directory for telemetry: {0}")]
    Spill(#[source] std::io::Error),
    #[error("cannot read the previous run at {path}: {problem}")]
    Previous { path: String, problem: String },
    #[error("cannot write {path}: {problem}")]
    Write { path: String, problem: String },
    #[error("cannot run on the score state at {state}: {problem}")]
    StateRefused { state: String, problem: String },
    #[error("a worker thread panicked; this is a bug in pitwall")]
    WorkerPanicked,
}

/// Progress of long stages, shown by the binary when it runs in a terminal.
pub trait Progress: Sync {
    /// A new stage with `total` units of work (bytes or buckets).
    fn stage(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// Runs the job and writes every output; returns what run.json holds.
/// A held run is a success here: the caller turns it into exit code 3.
pub fn run(cfg: &JobConfig, progress: &dyn Progress) -> Result<RunJson, JobError> {
    if let Some(state) = &cfg.state {
        return incremental::run(cfg, state, progress);
    }
    let started = Instant::now();
    let mut timings = run_json::Timings::default();
    create_out(cfg)?;

    let t = Instant::now();
    let rentals = rentals::read(&Location::parse(&cfg.rentals)?)?;
    timings.read_rentals_ms = ms(t);

    let t = Instant::now();
    let considered = |r: &pitwall_score::Rental| pitwall_score::rental::is_considered(r, cfg.as_of);
    let cars = telemetry::Cars::new(&rentals.rentals, considered);
    let files = Location::parse(&cfg.telemetry)?.list(&[".parquet"])?;
    if files.is_empty() {
        return Err(JobError::NoInput {
            what: "telemetry",
            location: cfg.telemetry.clone(),
            expected: ".parquet files",
        });
    }
    timings.read_telemetry_ms = ms(t);
    let (telemetry, scored) = read_and_score(
        cfg,
        &rentals.rentals,
        &cars,
        &files,
        &plan::ReadPlan::everything(),
        progress,
        &mut timings,
    )?;
    // The caller's span declares run_id (as incremental::run records it).
    let run_id = run_json::run_id(cfg, telemetry.read.files_listed as usize, telemetry.rows);
    tracing::Span::current().record("run_id", run_id.as_str());

    let t = Instant::now();
    let members = members::score(&rentals.rentals, &scored.assessments, cfg.as_of, &cfg.model);
    timings.score_members_ms = ms(t);

    let previous = cfg
        .previous
        .as_deref()
        .map(members::read_previous)
        .transpose()?;
    let stats = members::MemberStats::of_records(&members);
    let mut run = run_json::build(run_json::Facts {
        cfg,
        input: &rentals,
        rentals: &rentals.rentals,
        scored: &scored,
        telemetry: &telemetry,
        members: &stats,
        drift: previous.map(|p| {
            let cur = members
                .iter()
                .filter_map(|m| m.score.score.map(|s| (m.member_id.clone(), s)))
                .collect();
            pitwall_score::gates::Drift::between(&p, &cur)
        }),
        state: None,
    });

    let t = Instant::now();
    let outputs = outputs::Outputs {
        input: &rentals,
        rentals: &rentals.rentals,
        scored: &scored,
        members: Some(&members),
    };
    outputs::write_all(cfg, &outputs, &telemetry, &mut run)?;
    timings.write_ms = ms(t);
    timings.total_ms = ms(started);
    run.timings_ms = timings;
    review_claims(cfg, &mut run);
    run_json::write(&cfg.out, &run)?;
    report::write(
        &cfg.out,
        &run,
        &rentals.rentals,
        &scored,
        &stats,
        &cfg.model,
    )?;
    Ok(run)
}

/// The telemetry pass and the scoring pass, shared by the full and the
/// incremental run: files are read (as `plan` allows) into a spill sized by
/// the files that can hold evaluated rentals, then each bucket is scored.
fn read_and_score(
    cfg: &JobConfig,
    rentals: &[pitwall_score::Rental],
    cars: &telemetry::Cars,
    files: &[pitwall_lake::FileRef],
    plan: &plan::ReadPlan<'_>,
    progress: &dyn Progress,
    timings: &mut run_json::Timings,
) -> Result<(telemetry::TelemetryStats, scoring::Scored), JobError> {
    let t = Instant::now();
    let spill_bytes: u64 = files
        .iter()
        .filter(|f| plan.wanted.meets_partition(f.span))
        .map(|f| f.size)
        .sum();
    let spill = spill::Spill::new(&cfg.out, bucket_count(spill_bytes, cfg.bucket_bytes))
        .map_err(JobError::Spill)?;
    progress.stage("reading telemetry", files.iter().map(|f| f.size).sum());
    let stats = telemetry::read_all(files, cars, plan, &spill, cfg.threads, progress)?;
    progress.finish();
    timings.read_telemetry_ms += ms(t);

    let t = Instant::now();
    progress.stage("scoring rentals", spill.buckets() as u64);
    let scoring = scoring::Scoring {
        rentals,
        cars,
        as_of: cfg.as_of,
        grace_ms: cfg.grace_ms(),
        model: &cfg.model,
    };
    let scored = scoring.run(&spill, cfg.threads, progress)?;
    progress.finish();
    timings.score_rentals_ms = ms(t);
    Ok((stats, scored))
}

/// `--claims`: the model in use judged on the run's results (a state's
/// final results, or this run's rental_scores.parquet). A review that
/// cannot be made is reported, and the run stands: scores do not wait for
/// an accident extract.
pub(crate) fn review_claims(cfg: &JobConfig, run: &mut RunJson) {
    let Some(claims) = &cfg.claims else { return };
    let results = match &cfg.state {
        Some(s) => s.location.clone(),
        None => cfg.out.join(names::RENTAL_SCORES).display().to_string(),
    };
    match pitwall_fit_job::review::review(&results, claims, &cfg.model, cfg.as_of, cfg.threads) {
        Ok(r) => run.claims_review = Some(r),
        Err(e) => run.claims_review_error = Some(format!("claims review of {claims}: {e}")),
    }
}

fn create_out(cfg: &JobConfig) -> Result<(), JobError> {
    std::fs::create_dir_all(&cfg.out).map_err(|e| JobError::Write {
        path: cfg.out.display().to_string(),
        problem: e.to_string(),
    })
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Spilled records take ~28 bytes per row, and Parquet holds a row in
/// roughly 4 bytes or more, so ~7× the input size bounds the spill.
fn bucket_count(input_bytes: u64, bucket_bytes: u64) -> usize {
    let spill = input_bytes.saturating_mul(7);
    (spill / bucket_bytes.max(1) + 1).clamp(1, 4096) as usize
}

/// The file names a run writes into its output directory.
pub mod names {
    pub const RENTAL_SCORES: &str = "rental_scores.parquet";
    pub const MEMBER_SCORES: &str = "member_scores.parquet";
    /// With a state: the members whose record changed in this run, or is new.
    pub const MEMBER_CHANGES: &str = "member_changes.parquet";
    pub const REJECTED_RENTALS: &str = "rejected_rentals.parquet";
    pub const REJECTED_TELEMETRY: &str = "rejected_telemetry.parquet";
    pub const RUN_JSON: &str = "run.json";
    pub const REPORT: &str = "report.html";
}
