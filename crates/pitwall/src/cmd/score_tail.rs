//! `pitwall score tail`: what the topic holds, decoded, one record per line.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;
use pitwall_publish::tail::{Body, Start, TailRequest, TailSummary, Tailed, tail};

use super::publish::TopicArgs;
use super::schema::open_registry;
use crate::exit;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("start").args(["from_beginning", "since"])))]
pub struct TailArgs {
    #[command(flatten)]
    pub from: TopicArgs,
    /// Only this member's records (the record key).
    #[arg(long)]
    pub member: Option<String>,
    /// Read each partition from its first record, then stop at the end.
    #[arg(long)]
    pub from_beginning: bool,
    /// Read from the first record at or after this time (RFC 3339), then stop at the end.
    #[arg(long, value_parser = super::parse_time)]
    pub since: Option<i64>,
    /// Keep reading at the end (implied without --from-beginning or --since).
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many records (those of --member only, when given).
    #[arg(long)]
    pub max: Option<u64>,
    /// One JSON object per record (key, partition, offset, timestamp, schema, value
    /// or problem and error), then one {"summary": …}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: TailArgs) -> anyhow::Result<u8> {
    let (topic, kafka) = (&a.from.topic, a.from.broker.settings(&a.from.topic)?);
    let registry = open_registry(&a.from.registry)?;
    let start = match (a.from_beginning, a.since) {
        (true, _) => Start::Beginning,
        (_, Some(t)) => Start::Since(t),
        _ => Start::End,
    };
    let follow = a.follow || start == Start::End;
    if follow && !a.json {
        say!("following {} (Ctrl-C to stop)", topic);
    }
    let req = TailRequest {
        kafka: &kafka,
        registry: registry.as_ref(),
        member: a.member.as_deref(),
        start,
        follow,
        max: a.max,
    };
    let stop = interrupt_flag();
    let mut out = std::io::stdout().lock();
    let mut failed_write = None;
    let summary = tail(&req, &stop, |t| {
        if failed_write.is_none()
            && let Err(e) = print_record(&mut out, t, a.json)
        {
            // A closed pipe (`| head`) ends the read, quietly.
            failed_write = Some(e);
            stop.store(true, Ordering::Relaxed);
        }
    })
    .with_context(|| format!("reading {} on {}", topic, kafka.brokers))?;
    if failed_write.is_some() {
        return Ok(exit::OK);
    }
    if a.json {
        writeln!(out, "{}", serde_json::json!({ "summary": summary }))?;
    } else {
        say!("{}", describe(&summary));
    }
    Ok(exit::OK)
}

fn print_record(out: &mut impl Write, t: &Tailed, json: bool) -> std::io::Result<()> {
    if json {
        let line = serde_json::to_string(t).map_err(std::io::Error::other)?;
        return writeln!(out, "{line}");
    }
    let key = t.key.as_deref().unwrap_or("(no key)");
    let at = t.timestamp.as_deref().unwrap_or("-");
    let place = format!("{}@{}", t.partition, t.offset);
    match &t.body {
        Body::Value { schema, value } => writeln!(
            out,
            "{key}  {place}  {at}  {} v{}  {value}",
            schema.subject, schema.version
        ),
        Body::Tombstone { .. } => writeln!(out, "{key}  {place}  {at}  tombstone (deleted)"),
        Body::Bad { problem, error } => writeln!(
            out,
            "{key}  {place}  {at}  NOT DECODED ({}): {error}",
            problem.as_str()
        ),
    }
}

fn describe(s: &TailSummary) -> String {
    let mut text = format!(
        "{} records read from {} partitions of {}: {} shown ({} decoded, {} tombstones",
        s.read, s.partitions, s.topic, s.shown, s.decoded, s.tombstones
    );
    for (problem, n) in &s.problems {
        text.push_str(&format!(", {n} {}", problem.as_str().replace('_', " ")));
    }
    text.push(')');
    if s.other_members > 0 {
        text.push_str(&format!(", {} of other members", s.other_members));
    }
    text.push_str(&format!("; stopped: {}", s.stopped));
    text
}

/// Set on Ctrl-C, so the summary is still printed.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            set.store(true, Ordering::Relaxed);
        }
    });
    flag
}
