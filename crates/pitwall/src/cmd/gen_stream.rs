//! `pitwall gen stream`: the live car simulator. Cars drive rentals on a
//! simulated clock (`--speedup` times the wall clock) and put their samples
//! on a Kinesis stream as devices upload them; each rental is added to the
//! rentals file when the car is returned.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use pitwall_fleetgen::live::{Event, Live, LiveConfig, record_data};
use pitwall_fleetgen::{RentalRow, write_rentals};
use pitwall_ingest::kinesis::Kinesis;

use crate::exit;

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The Kinesis data stream to put telemetry on (AWS_REGION, AWS_ENDPOINT_URL apply).
    #[arg(long)]
    pub stream: String,
    /// Cars in the fleet.
    #[arg(long, default_value_t = 100)]
    pub cars: usize,
    /// Members renting them (default: 3 per car).
    #[arg(long)]
    pub members: Option<usize>,
    /// Simulated seconds per wall-clock second (1: real time).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// How long to simulate (simulated time), e.g. 10m or 2h.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The rentals file (Parquet), rewritten atomically with every rental returned so far.
    #[arg(long)]
    pub rentals: PathBuf,
    /// The simulated clock's start (default: now).
    #[arg(long, value_parser = super::parse_time)]
    pub start: Option<i64>,
    /// Seed: the same seed, start and flags put the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How often a connected car uploads what it holds.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub upload_every: Duration,
    /// Chance per upload that the car then goes offline for 1 to 10 minutes.
    #[arg(long, default_value_t = 0.01)]
    pub offline_chance: f64,
    /// Chance per upload that it is sent twice (a retried upload).
    #[arg(long, default_value_t = 0.02)]
    pub resend_chance: f64,
    /// Time a car stands between rentals, in minutes, MIN..MAX.
    #[arg(long, default_value = "0.5..15", value_parser = parse_range)]
    pub idle_minutes: (f64, f64),
    /// Chance per sample that it is garbage (a negative speed), for the DLQ.
    #[arg(long, default_value_t = 0.0005)]
    pub bad_chance: f64,
    /// Rental length range in minutes, MIN..MAX.
    #[arg(long, default_value = "5..30", value_parser = parse_range)]
    pub rental_minutes: (f64, f64),
    /// Append a JSON line per returned rental when the upload carrying its last sample was put:
    /// {"rental_id", "member_id", "put_ms"} (wall clock), for freshness measurements.
    #[arg(long)]
    pub put_log: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_range(s: &str) -> Result<(f64, f64), String> {
    let bad = || format!("{s:?}: use MIN..MAX in minutes, e.g. 5..30 or 0.5..15");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let (a, b): (f64, f64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if !(a > 0.0 && b > a) {
        return Err(bad());
    }
    Ok((a, b))
}

pub fn run(a: StreamArgs) -> anyhow::Result<u8> {
    if !(a.speedup > 0.0 && a.speedup.is_finite()) {
        anyhow::bail!("--speedup must be a positive number, not {}", a.speedup);
    }
    for (flag, p) in [
        ("--offline-chance", a.offline_chance),
        ("--resend-chance", a.resend_chance),
        ("--bad-chance", a.bad_chance),
    ] {
        if !(0.0..=1.0).contains(&p) {
            anyhow::bail!("{flag} must be between 0 and 1, not {p}");
        }
    }
    let start = a
        .start
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let cfg = LiveConfig {
        members: a.members.unwrap_or(a.cars * 3).max(1),
        upload_every_ms: a.upload_every.as_millis().max(1000) as i64,
        offline_chance: a.offline_chance,
        resend_chance: a.resend_chance,
        bad_chance: a.bad_chance,
        rental_minutes: a.rental_minutes,
        idle_minutes: a.idle_minutes,
        ..LiveConfig::new(a.cars, a.seed, start)
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let summary = rt.block_on(simulate(&a, cfg))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        say!(
            "{} cars drove {} rentals ({} returned): {} samples in {} uploads ({} sent twice), {} offline stretches; {} PutRecords calls",
            a.cars,
            summary.counts.rentals_started,
            summary.counts.rentals_ended,
            summary.counts.samples,
            summary.counts.uploads,
            summary.counts.resends,
            summary.counts.offline_stretches,
            summary.put_calls
        );
    }
    Ok(exit::OK)
}

#[derive(Debug, serde::Serialize)]
struct Summary {
    stream: String,
    rentals_file: String,
    #[serde(flatten)]
    counts: pitwall_fleetgen::live::LiveCounts,
    records_put: u64,
    put_calls: u64,
}

async fn simulate(a: &StreamArgs, cfg: LiveConfig) -> anyhow::Result<Summary> {
    let kinesis = Kinesis::from_env(&a.stream).await;
    let (start, end) = (cfg.start_ms, cfg.start_ms + a.duration.as_millis() as i64);
    let mut live = Live::new(cfg);
    let mut rentals: Vec<RentalRow> = Vec::new();
    let (mut records_put, mut put_calls) = (0, 0);
    let began = Instant::now();
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    while live.now_ms() < end {
        let sim_now = start + (began.elapsed().as_secs_f64() * a.speedup * 1000.0) as i64;
        let events = live.advance(sim_now.min(end));
        let (n, calls) = deliver(&kinesis, events, &mut rentals, a).await?;
        (records_put, put_calls) = (records_put + n, put_calls + calls);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut stop => break,
        }
    }
    let (n, calls) = deliver(&kinesis, live.flush(), &mut rentals, a).await?;
    Ok(Summary {
        stream: a.stream.clone(),
        rentals_file: a.rentals.display().to_string(),
        counts: live.counts.clone(),
        records_put: records_put + n,
        put_calls: put_calls + calls,
    })
}

/// Puts the uploads on the stream, then adds the returned rentals to the
/// file: a rental is never listed before the samples uploaded with it.
async fn deliver(
    kinesis: &Kinesis,
    events: Vec<Event>,
    rentals: &mut Vec<RentalRow>,
    a: &StreamArgs,
) -> anyhow::Result<(u64, u64)> {
    let path = &a.rentals;
    let mut records = Vec::new();
    let mut completed = Vec::new();
    let before = rentals.len();
    for e in events {
        match e {
            Event::Upload {
                car_id,
                samples,
                completes,
                ..
            } => {
                records.push((car_id, record_data(&samples)));
                completed.extend(completes);
            }
            Event::Ended { rental, .. } => rentals.push(rental),
        }
    }
    let calls = kinesis
        .put_records(&records)
        .await
        .with_context(|| format!("putting telemetry on {}", kinesis.stream()))?;
    if let Some(log) = &a.put_log {
        log_puts(log, &completed, rentals)?;
    }
    if rentals.len() > before || !path.exists() {
        write_rentals(path, rentals)
            .with_context(|| format!("writing the rentals file {}", path.display()))?;
    }
    Ok((records.len() as u64, calls))
}

fn log_puts(
    log: &std::path::Path,
    completed: &[String],
    rentals: &[RentalRow],
) -> anyhow::Result<()> {
    use std::io::Write as _;
    if completed.is_empty() {
        return Ok(());
    }
    let put_ms = chrono::Utc::now().timestamp_millis();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("--put-log {}", log.display()))?;
    for id in completed {
        let member = rentals
            .iter()
            .rev()
            .find(|r| r.0.as_deref() == Some(id))
            .and_then(|r| r.1.clone());
        let line = serde_json::json!({ "rental_id": id, "member_id": member, "put_ms": put_ms });
        writeln!(f, "{line}").with_context(|| format!("--put-log {}", log.display()))?;
    }
    Ok(())
}
