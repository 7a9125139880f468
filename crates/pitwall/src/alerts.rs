//! The commands' side of alerting: raise or clear an alert on whatever sinks
//! the environment configures (see `pitwall_alert`), and say on stderr when
//! a sink could not be told — never failing the command for it.

use pitwall_alert::{Alert, Notifier};

fn notifier() -> Option<Notifier> {
    match Notifier::from_env() {
        Ok(n) if !n.sinks().is_empty() => Some(n),
        Ok(_) => None,
        Err(e) => {
            say_warn!("alerts are off: {e}");
            None
        }
    }
}

pub fn raise(a: &Alert) {
    if let Some(n) = notifier() {
        for e in n.fire_blocking(a) {
            say_warn!("alert not delivered: {e}");
        }
    }
}

pub fn clear(key: &str, note: &str, source: &str) {
    if let Some(n) = notifier() {
        for e in n.resolve_blocking(key, note, source) {
            say_warn!("recovery not delivered: {e}");
        }
    }
}

/// Raises `key` when `problem` is Some, clears it otherwise: the shape of
/// every batch command's outcome.
pub fn outcome(key: &str, source: &str, problem: Option<Alert>, ok_note: &str) {
    match problem {
        Some(a) => raise(&a),
        None => clear(key, ok_note, source),
    }
}
