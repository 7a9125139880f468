//! tests/fault_proxy.py as a process: started in front of moto, its
//! counts read, its settings changed while a test runs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::Error;
use super::TestResult;
use super::kinesis::http_get;

/// The proxy process, killed on drop.
pub struct Proxy {
    child: Child,
    pub port: u16,
}

impl Proxy {
    pub fn start(upstream: &str, args: &[&str]) -> Result<Proxy, Error> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fault_proxy.py");
        let mut child = Command::new("python3")
            .args([script, "--upstream", upstream, "--seed", "7"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().ok_or("no proxy stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("fault proxy said {line:?}"))?;
        Ok(Proxy { child, port })
    }

    /// The faults injected, by kind. Panics as an environment failure when
    /// the emulator behind the proxy stopped answering: then nothing this
    /// run saw says anything about pitwall.
    pub fn faults(&self) -> Result<serde_json::Value, Error> {
        let (status, body) = http_get(self.port, "/_faults").ok_or("proxy unreachable")?;
        assert_eq!(status, 200);
        let faults: serde_json::Value = serde_json::from_str(&body)?;
        let down = faults["upstream_down"].as_u64().unwrap_or(0);
        assert!(
            down == 0,
            "ENVIRONMENT FAILURE, not a result: moto stopped answering ({down} calls failed upstream)"
        );
        Ok(faults)
    }

    /// Changes the proxy's settings (see fault_proxy.py's `/_faults/config`).
    pub fn configure(&self, settings: serde_json::Value) -> TestResult {
        use std::io::{Read, Write};
        let body = settings.to_string();
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            c,
            "POST /_faults/config HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut res = String::new();
        c.read_to_string(&mut res)?;
        assert!(res.split(' ').nth(1) == Some("200"), "proxy said {res}");
        Ok(())
    }

    pub fn count(&self, kind: &str) -> Result<u64, Error> {
        Ok(self.faults()?[kind].as_u64().unwrap_or(0))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
