//! The services' `/metrics` (`ingest run`, `score watch`): one
//! prometheus-client registry holding `pitwall_build_info`, the standard
//! `process_*` series and what the service registers (`pitwall_ingest_…`,
//! `pitwall_watch_…`), encoded as OpenMetrics when the scraper asks for it
//! (Prometheus does) and as the classic text format otherwise.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry with the build and process series; the service adds its own
/// under the `pitwall` prefix.
pub fn registry(add: impl FnOnce(&mut Registry)) -> Registry {
    let mut root = Registry::default();
    root.register_collector(Box::new(Process));
    let ours = root.sub_registry_with_prefix("pitwall");
    ours.register(
        "build",
        "The version and commit of this pitwall binary.",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("PITWALL_COMMIT")),
        ]),
    );
    add(ours);
    root
}

/// A setting of the service as a gauge, so an alert rule compares a series
/// with the threshold the service itself was given (`--alert-lag`), not
/// with a second copy of it in the rules.
pub fn setting(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: f64) {
    let g =
        prometheus_client::metrics::gauge::Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    g.set(value);
    match unit {
        Some(u) => r.register_with_unit(name, help, u, g),
        None => r.register(name, help, g),
    }
}

/// Whether the scraper's Accept header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("");
            // q=0 means "not this one".
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && !params.any(|p| p.replace(' ', "") == "q=0")
        })
    })
}

/// The registry's exposition and its content type.
pub fn encode(registry: &Registry, openmetrics: bool) -> (&'static str, String) {
    let mut text = String::new();
    // Writing to a String does not fail; a collector that did would leave
    // the scrape short, which Prometheus reports as a failed scrape.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!(error = %e, "encoding the metrics failed");
    }
    if openmetrics {
        (OPENMETRICS, text)
    } else {
        (TEXT, classic(&text))
    }
}

/// OpenMetrics text as the classic format (0.0.4) reads it: a counter's
/// family is named with its `_total`, an info family is a gauge named with
/// its `_info`, and `# UNIT` and `# EOF` are not part of it.
pub fn classic(openmetrics: &str) -> String {
    let mut suffix: std::collections::HashMap<&str, (&str, &str)> = Default::default();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            match rest.rsplit_once(' ') {
                Some((name, "counter")) => suffix.insert(name, ("_total", "counter")),
                Some((name, "info")) => suffix.insert(name, ("_info", "gauge")),
                _ => None,
            };
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta.and_then(|(p, rest)| {
            let (name, tail) = rest.split_once(' ')?;
            let (add, kind) = suffix.get(name)?;
            Some(if p == "# TYPE " {
                format!("{p}{name}{add} {kind}")
            } else {
                format!("{p}{name}{add} {tail}")
            })
        }) {
            Some(renamed) => out.push_str(&renamed),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The process series every Prometheus client library exports, from
/// /proc/self (Linux; elsewhere none).
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Some(p) = proc_self() else {
            return Ok(());
        };
        let c = ConstCounter::new(p.cpu_seconds);
        c.encode(e.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&Unit::Seconds),
            c.metric_type(),
        )?)?;
        for (name, help, unit, v) in [
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Unit::Bytes,
                p.rss_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Unit::Bytes,
                p.vsize_bytes,
            ),
            (
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Unit::Seconds,
                p.start_time_s,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(e.encode_descriptor(name, help, Some(&unit), g.metric_type())?)?;
        }
        for (name, help, v) in [
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcSelf {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    start_time_s: f64,
    open_fds: f64,
    max_fds: f64,
}

/// /proc reports CPU times in USER_HZ ticks, which Linux fixes at 100 for
/// user space on every architecture it runs pitwall on.
const USER_HZ: f64 = 100.0;

fn proc_self() -> Option<ProcSelf> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3] here.
    let num = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .map(|k| k * 1024.0)
    };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN);
    Some(ProcSelf {
        cpu_seconds: (num(14)? + num(15)?) / USER_HZ,
        vsize_bytes: kib("VmSize:")?,
        rss_bytes: kib("VmRSS:")?,
        start_time_s: boot + num(22)? / USER_HZ,
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(f64::NAN, |d| d.count() as f64),
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(openmetrics: bool) -> String {
        let r = registry(|_| {});
        encode(&r, openmetrics).1
    }

    #[test]
    fn build_info_and_process_series_are_there() {
        let text = encoded(true);
        assert!(
            text.contains(&format!(
                "pitwall_build_info{{version=\"{}\",commit=\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_classic_format_names_families_by_their_samples() {
        let text = encoded(false);
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP process_cpu_seconds_total Total"),
            "{text}"
        );
        assert!(text.contains("# TYPE pitwall_build_info gauge\n"), "{text}");
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0"
        )));
    }
}
