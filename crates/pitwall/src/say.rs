//! What the binary tells its operator on stderr. In a terminal these are
//! plain lines; under `--log-json` (a CronJob, a Deployment, the DAG) they
//! are log events like every other line, so an aggregator gets one format
//! and none of them is lost to a parse error.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// The target of these events; the log filter always lets it through at
/// info, since these lines were printed whatever the level.
pub const TARGET: &str = "pitwall::say";

pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// A line of news: `say!("wrote {} files", n)`.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {
        if $crate::say::json() {
            tracing::info!(target: "pitwall::say", "{}", format_args!($($t)*));
        } else {
            eprintln!($($t)*);
        }
    };
}

/// A warning: printed after `warning: `, or a warn event.
#[macro_export]
macro_rules! say_warn {
    ($($t:tt)*) => {
        if $crate::say::json() {
            tracing::warn!(target: "pitwall::say", "{}", format_args!($($t)*));
        } else {
            eprintln!("warning: {}", format_args!($($t)*));
        }
    };
}

/// An error that ends the command: printed after `error: `, or an error event.
#[macro_export]
macro_rules! say_error {
    ($($t:tt)*) => {
        if $crate::say::json() {
            tracing::error!(target: "pitwall::say", "{}", format_args!($($t)*));
        } else {
            eprintln!("error: {}", format_args!($($t)*));
        }
    };
}
