//! How an error reads to a person: its context chain on one line.

use std::fmt::Write;

/// The chain as `anyhow`'s `{:#}` joins it, less the causes whose text an
/// outer message already carries: library errors put their source in
/// their own message ("cannot read P: No such file or directory (os error
/// 2)") and also return it as `source()`, which would print it twice.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        let _ = write!(out, "{text}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library error of the usual shape: its source in its message too.
    #[derive(Debug)]
    struct Io {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for Io {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read {}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Io {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_source_already_in_its_message_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(Io {
            path: "/lake".into(),
            source: io,
        })
        .context("score run --state /s into /out");
        let text = describe(&e);
        assert_eq!(text.matches("not found").count(), 1, "{text}");
        assert!(
            text.starts_with("score run --state /s into /out: cannot read /lake: "),
            "{text}"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&plain), "outer: inner");
    }
}
