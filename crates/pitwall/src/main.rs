//! The `pitwall` binary: parses arguments, wires library crates together,
//! and turns outcomes into exit codes. Business rules live in the crates.

mod alerts;
mod cmd;
mod errors;
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
            eprintln!("error: {}", errors::describe(&e));
            ExitCode::from(exit::ERROR)
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PITWALL_LOG")
        .unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
