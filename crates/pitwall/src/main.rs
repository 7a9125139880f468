//! The `pitwall` binary: parses arguments, wires library crates together,
//! and turns outcomes into exit codes. Business rules live in the crates.

// First: its macros are used by the modules below.
#[macro_use]
mod say;
mod alerts;
mod cmd;
mod errors;
mod metrics;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    /// A quality gate held the run: outputs are written, nothing may be published.
    pub const HELD: u8 = 3;
    /// A reconciliation found an hour beyond its tolerance.
    pub const BEYOND_TOLERANCE: u8 = 4;
}

fn main() -> ExitCode {
    let cli = match cmd::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.log_json);
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A closed pipe (`pitwall … | head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(exit::OK);
            }
            say_error!("{}", errors::describe(&e));
            ExitCode::from(exit::ERROR)
        }
    }
}

/// The level comes from `PITWALL_LOG`, else from `RUST_LOG` (what every
/// Rust service's operator reaches for first), else `warn`. A filter that
/// does not parse falls back to `warn` and says so, rather than logging
/// nothing or refusing to run.
fn init_logging(json: bool) {
    let (filter, bad) = log_filter(
        std::env::var("PITWALL_LOG").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    say::set_json(json);
    // What `say!` prints was printed whatever the level; as log events it
    // must still get through.
    let filter = match format!("{}=info", say::TARGET).parse() {
        Ok(d) if json => filter.add_directive(d),
        _ => filter,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        // One object per line, with the fields of every enclosing span
        // (run_id, shard_id, cycle) so one run's lines can be found together.
        builder.json().with_span_list(true).init();
    } else {
        builder.init();
    }
    if let Some((var, e)) = bad {
        tracing::warn!(variable = var, error = %e, "log filter not understood; logging at warn");
    }
}

fn log_filter(
    pitwall: Option<String>,
    rust: Option<String>,
) -> (
    tracing_subscriber::EnvFilter,
    Option<(&'static str, String)>,
) {
    let (var, spec) = match (pitwall, rust) {
        (Some(p), _) if !p.trim().is_empty() => ("PITWALL_LOG", p),
        (_, Some(r)) if !r.trim().is_empty() => ("RUST_LOG", r),
        _ => return (tracing_subscriber::EnvFilter::new("warn"), None),
    };
    match tracing_subscriber::EnvFilter::try_new(&spec) {
        Ok(f) => (f, None),
        Err(e) => (
            tracing_subscriber::EnvFilter::new("warn"),
            Some((var, e.to_string())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn pitwall_log_wins_over_rust_log_and_warn_is_the_default() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(log_filter(s("debug"), s("trace")).0.to_string(), "debug");
        assert_eq!(log_filter(None, s("info")).0.to_string(), "info");
        assert_eq!(log_filter(s(" "), s("info")).0.to_string(), "info");
        assert_eq!(log_filter(None, None).0.to_string(), "warn");
    }

    #[test]
    fn a_filter_that_does_not_parse_is_named_and_warn_is_used() {
        let (f, bad) = log_filter(Some("pitwall=loud".into()), None);
        assert_eq!(f.to_string(), "warn");
        assert_eq!(bad.map(|b| b.0), Some("PITWALL_LOG"));
    }
}
