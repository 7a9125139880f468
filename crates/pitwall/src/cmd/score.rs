use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use pitwall_score::Model;
use pitwall_score::gates::GateConfig;
use pitwall_score_job::{JobConfig, RunJson, RunStatus};

use crate::exit;
use crate::progress::TermProgress;

#[derive(Debug, Subcommand)]
pub enum ScoreCommand {
    /// Score rentals at an as_of time: rental_scores.parquet, member_scores.parquet, run.json, report.html.
    ///
    /// Exits 3 when a quality gate holds the run (outputs are still written; run.json says why).
    Run(Box<RunArgs>),
    /// Publish a run's member scores to Kafka: one transaction per run, once per topic (see the ledger).
    Publish(Box<PublishCmd>),
    /// Score continuously: every --every, `run --state` at as_of = now and the state's catch-up
    /// publication, by the one watcher holding the state's lease; /healthz, /readyz, /metrics, status page.
    Watch(Box<super::score_watch::WatchArgs>),
    /// Fit the model's multipliers to claims (Poisson GLM with distance offset) and validate the
    /// candidate against the current model on the later period: model.toml, validation.json, report.html.
    Fit(Box<super::score_fit::FitArgs>),
    /// Validate any model on a period without fitting: lift, Gini, calibration, the member view.
    Validate(Box<super::score_fit::ValidateArgs>),
    /// Show what was published: read the topic (read_committed), decode each record against the
    /// registry by its frame's schema reference, print one per line (--json: JSON lines).
    ///
    /// Records that cannot be decoded are shown with the reason and counted, never fatal.
    Tail(Box<super::score_tail::TailArgs>),
    /// Print the embedded default model file (TOML), a starting point for --model.
    Model,
    /// Look into a score state, export it, or seed one from earlier results.
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Write DIR/rental_results.parquet (final and open rentals, a `final` column) and DIR/member_scores.parquet.
    Export {
        /// The state: a local directory or s3://bucket/prefix.
        #[arg(long)]
        state: String,
        /// Output directory (local).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the last committed run, final rentals by status, open rentals and members.
    Show {
        #[arg(long)]
        state: String,
        #[arg(long)]
        json: bool,
    },
    /// Seed an empty state from rental results computed elsewhere (a full run's rental_scores.parquet).
    ///
    /// Scored and unscorable rows become final; pending rows are left for the next run.
    Import {
        #[arg(long)]
        state: String,
        /// A rental_scores.parquet (or a directory of files in its columns).
        #[arg(long)]
        rental_results: PathBuf,
        /// The as_of of the seeded member snapshot (default: the latest end_at).
        #[arg(long, value_parser = super::parse_time)]
        as_of: Option<i64>,
        /// The model the results were made with (default: the embedded model).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["run", "state"])))]
pub struct PublishCmd {
    /// The run's output directory (the --out of `score run`): its whole snapshot, once.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A score state: the members whose record differs from the one last published to the topic (catch-up).
    #[arg(long)]
    pub state: Option<String>,
    #[command(flatten)]
    pub publish: super::publish::PublishArgs,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Rentals: a Parquet or CSV file, or a directory of them; local path or s3://bucket/prefix.
    #[arg(long)]
    pub rentals: String,
    /// Telemetry: a directory of Parquet files (dt=YYYY-MM-DD/ folders allowed); local path or s3://.
    #[arg(long)]
    pub telemetry: String,
    /// The run's "now" (RFC 3339): rentals ended by then are considered. `now` is the
    /// moment the run starts (with --leases: once it holds the lease).
    #[arg(long, value_parser = parse_as_of)]
    pub as_of: AsOf,
    /// Output directory (local).
    #[arg(long)]
    pub out: PathBuf,
    /// Model file (TOML); default: the embedded model (see `pitwall score model`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Grace period for late telemetry, e.g. 4h or 90m; overrides the model's.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub grace: Option<Duration>,
    /// Quality-gate thresholds (TOML); unspecified ones keep their defaults.
    #[arg(long)]
    pub gates: Option<PathBuf>,
    /// Claims (Parquet or CSV, the claims contract of `score fit`): the report and run.json then show
    /// how the model in use ranks them (lift by decile, members ≥ 90 against ≤ 50).
    #[arg(long)]
    pub claims: Option<String>,
    /// The previous run's output directory, to check member-score drift (a state run compares with its snapshot).
    #[arg(long, conflicts_with = "state")]
    pub previous: Option<PathBuf>,
    /// Score state (local directory or s3://bucket/prefix): evaluate only the open rentals, those ended
    /// since the last run and a rescore's range, read only their telemetry, and commit to the state.
    #[arg(long)]
    pub state: Option<String>,
    /// With --state: evaluate again the final rentals that ended in [FROM, TO), after a source fix.
    #[arg(long, value_parser = super::parse_time, requires_all = ["state", "rescore_to"])]
    pub rescore_from: Option<i64>,
    /// End (exclusive) of the rescore range.
    #[arg(long, value_parser = super::parse_time, requires_all = ["state", "rescore_from"])]
    pub rescore_to: Option<i64>,
    /// With --state: go on with a model other than the state's (recorded in the run log).
    #[arg(long, requires = "state")]
    pub model_change: bool,
    /// With --state: hold the state's lease (sqlite:PATH or dynamodb:TABLE, as `score watch
    /// --leases`) while this run goes on; a watcher holding it hands it over between two cycles
    /// and takes it back after. Use it for a rescore or a model change beside a running watcher.
    #[arg(long, requires = "state")]
    pub leases: Option<String>,
    /// This run's name in the lease table (default: score-run-$HOSTNAME-PID).
    #[arg(long, requires = "leases")]
    pub worker_id: Option<String>,
    /// The watcher's --failover: renewals come three times within it.
    #[arg(long, requires = "leases", default_value = "30s", value_parser = humantime::parse_duration)]
    pub failover: Duration,
    /// How long to wait for the lease before giving up (nothing run).
    #[arg(long, requires = "leases", default_value = "5m", value_parser = humantime::parse_duration)]
    pub lease_wait: Duration,
    /// With --state: also write the whole member snapshot (member_scores.parquet)
    /// into --out; by default --out holds member_changes.parquet, and
    /// `score state export` writes the snapshot on demand.
    #[arg(long, requires = "state")]
    pub out_snapshot: bool,
    /// With --state: write the member snapshot as one new base once its
    /// delta files hold more rows than this share of the base (0: every run).
    #[arg(long, requires = "state", default_value_t = 0.1, value_parser = parse_share)]
    pub compact_members_past: f64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print run.json on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Publish the member scores when the run is not held (see `score publish` for the flags).
    #[arg(long)]
    pub publish: bool,
    #[command(flatten)]
    pub publish_args: super::publish::PublishArgs,
}

pub fn run(c: ScoreCommand) -> anyhow::Result<u8> {
    match c {
        ScoreCommand::Model => {
            print!("{}", pitwall_score::model::DEFAULT_MODEL_TOML);
            Ok(exit::OK)
        }
        ScoreCommand::Publish(p) => match (&p.state, &p.run) {
            (Some(state), _) => {
                let result = super::publish::run_publish_state(state, &p.publish);
                alert_publication(&result, ("state", state.clone()));
                let report = result?;
                if p.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    super::publish::print_state_report(&report);
                }
                Ok(exit::OK)
            }
            (None, run) => {
                let run = run.clone().unwrap_or_default();
                let result = super::publish::run_publish(&run, &p.publish);
                alert_publication(&result, ("run", run.display().to_string()));
                let report = result?;
                if p.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    super::publish::print_report(&report);
                }
                Ok(exit::OK)
            }
        },
        ScoreCommand::State(c) => state_command(c),
        ScoreCommand::Watch(a) => super::score_watch::run(*a),
        ScoreCommand::Tail(a) => super::score_tail::run(*a),
        ScoreCommand::Fit(a) => super::score_fit::fit(*a),
        ScoreCommand::Validate(a) => super::score_fit::validate(*a),
        ScoreCommand::Run(a) => {
            let result = score_run(&a);
            alert_on(&a, &result);
            result
        }
    }
}

/// A failed publication raises `score/publish`; a successful one clears it.
fn alert_publication<T>(result: &anyhow::Result<T>, what: (&str, String)) {
    let source = "pitwall score publish";
    let problem = result.as_ref().err().map(|e| pitwall_alert::Alert {
        key: "score/publish".into(),
        summary: "driving-score publication failed: the app sees stale scores until one succeeds"
            .into(),
        description: crate::errors::describe(e),
        severity: pitwall_alert::Severity::Critical,
        details: [(what.0.to_string(), what.1)].into(),
        source: source.into(),
    });
    crate::alerts::outcome("score/publish", source, problem, "published");
}

/// A held or failed run, or a failed publication, raises `score/run`; a
/// clean run clears it.
fn alert_on(a: &RunArgs, result: &anyhow::Result<u8>) {
    let source = "pitwall score run";
    let problem = match result {
        Ok(code) if *code == exit::HELD => Some((
            "driving-score run held by a quality gate: nothing was published".to_string(),
            format!(
                "Outputs are in {}; its report.json says which gate held it.",
                a.out.display()
            ),
        )),
        Ok(_) => None,
        Err(e) => Some((
            "driving-score run failed".to_string(),
            crate::errors::describe(e),
        )),
    };
    let problem = problem.map(|(summary, description)| pitwall_alert::Alert {
        key: "score/run".into(),
        summary,
        description,
        severity: pitwall_alert::Severity::Critical,
        details: [("out".to_string(), a.out.display().to_string())].into(),
        source: source.into(),
    });
    crate::alerts::outcome("score/run", source, problem, "the score run passed");
}

fn score_run(a: &RunArgs) -> anyhow::Result<u8> {
    if a.publish && a.publish_args.to.broker.brokers.is_none() {
        say_error!("--publish needs --brokers");
        return Ok(exit::USAGE);
    }
    let mut cfg = job_config(a)?;
    // Held until this function returns: the publication below is covered too.
    let lease = match (&a.leases, &a.state) {
        (Some(leases), Some(state)) => Some(super::state_lease::StateLease::take(
            super::state_lease::LeaseArgs {
                leases,
                state,
                owner: a.worker_id.clone().unwrap_or_else(|| {
                    format!(
                        "score-run-{}-{}",
                        super::ingest_run::default_worker_id(),
                        std::process::id()
                    )
                }),
                failover: a.failover,
                wait: a.lease_wait,
            },
        )?),
        _ => None,
    };
    if let (Some(lease), Some(state)) = (&lease, cfg.state.as_mut()) {
        state.fence = Some(lease.fence());
        // Waiting for the lease let the watcher commit later runs.
        if let AsOf::Now = a.as_of {
            cfg.as_of = a.as_of.at_ms();
        }
    }
    let span = tracing::info_span!("score_run", run_id = tracing::field::Empty);
    let run = span
        .in_scope(|| pitwall_score_job::run(&cfg, &TermProgress::new()))
        .with_context(|| format!("score run into {}", cfg.out.display()))?;
    let _in_run = span.enter();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        print_summary(&run);
    }
    let forced = run.state.as_ref().is_some_and(|s| s.committed);
    let held = run.status == RunStatus::Held && !forced;
    if a.publish && (!held || a.publish_args.force) {
        match (&a.state, run.state.as_ref().is_some_and(|s| s.committed)) {
            (Some(state), true) => {
                let report = super::publish::run_publish_state(state, &a.publish_args)?;
                super::publish::print_state_report(&report);
            }
            (Some(_), false) => say!("not publishing: the run was not committed to the state"),
            (None, _) => {
                let report = super::publish::run_publish(&cfg.out, &a.publish_args)?;
                super::publish::print_report(&report);
            }
        }
    } else if a.publish {
        say!("not publishing: the run is held (use --force to publish anyway)");
    }
    Ok(if held { exit::HELD } else { exit::OK })
}

/// `--as-of`: a time, or the moment the run starts.
#[derive(Debug, Clone, Copy)]
pub enum AsOf {
    Now,
    At(i64),
}

impl AsOf {
    pub fn at_ms(self) -> i64 {
        match self {
            AsOf::At(ms) => ms,
            AsOf::Now => chrono::Utc::now().timestamp_millis(),
        }
    }
}

fn parse_as_of(s: &str) -> Result<AsOf, String> {
    if s == "now" {
        return Ok(AsOf::Now);
    }
    super::parse_time(s).map(AsOf::At)
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a share: give a number >= 0, such as 0.1"
        )),
    }
}

pub fn job_config(a: &RunArgs) -> anyhow::Result<JobConfig> {
    let mut cfg = JobConfig::new(
        a.rentals.clone(),
        a.telemetry.clone(),
        a.as_of.at_ms(),
        a.out.clone(),
    );
    apply_model_and_gates(&mut cfg, a.model.as_deref(), a.gates.as_deref())?;
    cfg.grace_ms = a.grace.map(|g| g.as_millis() as i64);
    if let Some(g) = a.grace.filter(|g| *g < cfg.model.completeness.tail_within) {
        anyhow::bail!(
            "--grace {} is shorter than the model's `completeness.tail_within` ({}): a rental \
             waits for its tail at most until the grace ends; give a longer --grace, or lower \
             tail_within in the model file",
            humantime::format_duration(g),
            humantime::format_duration(cfg.model.completeness.tail_within)
        );
    }
    cfg.previous = a.previous.clone();
    cfg.claims = a.claims.clone();
    if let Some(location) = &a.state {
        if let (Some(from), Some(to)) = (a.rescore_from, a.rescore_to)
            && from >= to
        {
            anyhow::bail!("--rescore-from must be before --rescore-to");
        }
        cfg.state = Some(pitwall_score_job::StateOptions {
            location: location.clone(),
            rescore: a.rescore_from.zip(a.rescore_to),
            model_change: a.model_change,
            force: a.publish_args.force,
            fence: None,
            write_snapshot: a.out_snapshot,
            compaction: pitwall_score_state::Compaction {
                share: a.compact_members_past,
                ..Default::default()
            },
            memory: None,
        });
    }
    if let Some(t) = a.threads {
        cfg.threads = t.max(1);
    }
    Ok(cfg)
}

/// `--model` and `--gates` files into the job's config (shared with `score watch`).
pub fn apply_model_and_gates(
    cfg: &mut JobConfig,
    model: Option<&Path>,
    gates: Option<&Path>,
) -> anyhow::Result<()> {
    if let Some(path) = model {
        cfg.model = load_model(path)?;
        cfg.model_source = path.display().to_string();
    }
    if let Some(path) = gates {
        let text = read(path, "gates file")?;
        cfg.gates = toml::from_str::<GateConfig>(&text).with_context(|| {
            format!(
                "gates file {} is not valid; keys are those of `GateConfig` in docs/scoring.md (Quality gates)",
                path.display()
            )
        })?;
    }
    Ok(())
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn load_model(path: &Path) -> anyhow::Result<Model> {
    let text = read(path, "model file")?;
    Model::from_toml(&text).with_context(|| format!("model file {}", path.display()))
}

pub fn print_summary(run: &RunJson) {
    let status = match run.status {
        RunStatus::Ok => "ok",
        RunStatus::Held => "HELD",
    };
    fn by<K: std::fmt::Display>(m: &std::collections::BTreeMap<K, u64>) -> String {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    println!("score run {} — {status}", run.run_id);
    println!(
        "  telemetry: {} rows in {} files, {} rejected, {} duplicates removed",
        run.inputs.telemetry.rows,
        run.inputs.telemetry.files,
        run.inputs.telemetry.rejected,
        run.inputs.telemetry_duplicates
    );
    println!(
        "  rentals:   {} considered: {}",
        run.rentals.considered,
        by(&run.rentals.by_status)
    );
    println!(
        "  members:   {} ({} eligible): {}",
        run.members.total,
        run.members.eligible,
        by(&run.members.by_status)
    );
    if let Some(r) = &run.claims_review {
        let num = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.2}"));
        println!(
            "  claims:    {} at-fault claims on {} scored rentals: worst/best decile {}, members ≥ 90 vs ≤ 50 rate ratio {}",
            r.claims,
            r.rentals,
            num(r.lift.worst_over_best),
            num(r.member_view.rate_ratio)
        );
    }
    if let Some(e) = &run.claims_review_error {
        say_warn!("{e}");
    }
    if let Some(st) = &run.state {
        let c = &st.counts;
        println!(
            "  state:     evaluated {}, made final {}, open {}, member changes {}, late samples for final rentals {}",
            c.evaluated, c.made_final, c.open, c.member_changes, c.late_for_final
        );
        let r = &run.inputs.telemetry_read;
        println!(
            "  read:      {} of {} listed files opened, {} partitions and {} files skipped by partition, {} files and {} rows by statistics",
            r.files_opened,
            r.files_listed,
            r.partitions_skipped,
            r.files_skipped_by_partition,
            r.files_skipped_by_statistics,
            r.rows_skipped_by_statistics
        );
        match (st.seq, &st.not_committed_because) {
            (Some(seq), _) => println!(
                "  committed: {} run {seq}{}",
                st.location,
                if st.forced {
                    " (FORCED past held gates)"
                } else {
                    ""
                }
            ),
            (None, Some(why)) => println!("  not committed: {why}"),
            (None, None) => {}
        }
    }
    for reason in &run.held_because {
        println!("  held: {reason}");
    }
    println!("  took {:.1} s", run.timings_ms.total_ms as f64 / 1000.0);
    if let Some(report) = run.outputs.get("report") {
        println!("  report: {report}");
    }
}

fn state_command(c: StateCommand) -> anyhow::Result<u8> {
    use pitwall_score_state::{State, ops};
    match c {
        StateCommand::Export { state, out, json } => {
            let s = State::open(&state)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let done = ops::export(&s, &out).with_context(|| format!("export of {state}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                println!(
                    "exported {} final and {} open rentals to {}, {} members to {}",
                    done.final_rentals,
                    done.open_rentals,
                    done.rental_results,
                    done.members,
                    done.member_scores
                );
            }
        }
        StateCommand::Show { state, json } => {
            let s = State::open(&state)?;
            let summary = ops::summary(&s).with_context(|| format!("state {state}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print_state(&summary);
            }
        }
        StateCommand::Import {
            state,
            rental_results,
            as_of,
            model,
            json,
        } => {
            let model = match &model {
                Some(p) => load_model(p)?,
                None => Model::default(),
            };
            let done = ops::import(&state, &rental_results, as_of, &model)
                .with_context(|| format!("import of {} into {state}", rental_results.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                println!(
                    "seeded {state}: {} final rentals ({} pending rows left for the next run), {} members at {} with {}",
                    done.final_rentals, done.left_open, done.members, done.as_of, done.model
                );
            }
        }
    }
    Ok(exit::OK)
}

fn print_state(s: &pitwall_score_state::ops::Summary) {
    println!("score state {}", s.state);
    match &s.last_run {
        None => println!("  empty: no run committed yet"),
        Some(e) => {
            println!(
                "  last run: {} (seq {}, {:?}) as_of {} with {}, committed {}{}",
                e.run_id,
                e.seq,
                e.kind,
                e.as_of,
                e.model,
                e.committed_at,
                if e.forced {
                    ", FORCED past held gates"
                } else {
                    ""
                }
            );
            let c = &e.counts;
            println!(
                "    evaluated {}, made final {}, awaiting their tail {}, late samples for final rentals {}, member changes {}",
                c.evaluated, c.made_final, c.awaiting_tail, c.late_for_final, c.member_changes
            );
        }
    }
    let by: Vec<String> = s
        .final_by_status
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("  final rentals: {} ({})", s.final_rentals, by.join(", "));
    println!("  open rentals:  {}", s.open_rentals);
    println!(
        "  members:       {} ({} with a score)",
        s.members, s.members_scored
    );
}
