//! Does a broker implement transactions? librdkafka finds out only when it
//! commits — after the records were sent, and on a broker without
//! transactions (tansu, some emulators) those records are already visible.
//! So before sending anything, ask each bootstrap broker for its API
//! versions (Kafka's ApiVersions request, v0) and look for EndTxn.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const API_VERSIONS: i16 = 18;
const END_TXN: i16 = 26;

/// The API keys a broker supports, or why it could not be asked.
pub fn supported_apis(broker: &str, timeout: Duration) -> std::io::Result<Vec<i16>> {
    let addr = broker
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{broker} resolves to no address")))?;
    let mut conn = TcpStream::connect_timeout(&addr, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    let client = b"pitwall";
    let mut req = Vec::new();
    req.extend_from_slice(&API_VERSIONS.to_be_bytes());
    req.extend_from_slice(&0i16.to_be_bytes()); // version 0
    req.extend_from_slice(&1i32.to_be_bytes()); // correlation id
    req.extend_from_slice(&(client.len() as i16).to_be_bytes());
    req.extend_from_slice(client);
    conn.write_all(&(req.len() as i32).to_be_bytes())?;
    conn.write_all(&req)?;
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(10..=1 << 20).contains(&len) {
        return Err(std::io::Error::other(format!(
            "implausible ApiVersions response length {len}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    conn.read_exact(&mut body)?;
    parse(&body)
}

/// correlation_id i32, error_code i16, [api_key i16, min i16, max i16]
fn parse(body: &[u8]) -> std::io::Result<Vec<i16>> {
    let bad = || std::io::Error::other("malformed ApiVersions response");
    let i16_at = |o: usize| {
        body.get(o..o + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(bad)
    };
    let error = i16_at(4)?;
    if error != 0 {
        return Err(std::io::Error::other(format!(
            "ApiVersions answered error code {error}"
        )));
    }
    let n = body
        .get(6..10)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(bad)?;
    (0..n.max(0) as usize).map(|k| i16_at(10 + 6 * k)).collect()
}

/// Whether every reachable bootstrap broker implements EndTxn; `None` when
/// none could be asked (e.g. TLS listeners), leaving it to librdkafka.
pub fn brokers_support_transactions(brokers: &str, timeout: Duration) -> Option<bool> {
    let answers: Vec<bool> = brokers
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .filter_map(|b| supported_apis(b, timeout).ok())
        .map(|apis| apis.contains(&END_TXN))
        .collect();
    if answers.is_empty() {
        None
    } else {
        Some(answers.iter().all(|&b| b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_v0_response() {
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
        body.extend_from_slice(&[0, 0, 0, 0, 0, 9]); // Produce 0..9
        body.extend_from_slice(&[0, 26, 0, 0, 0, 3]); // EndTxn 0..3
        assert_eq!(parse(&body).unwrap(), vec![0, 26]);
        assert!(
            parse(&[0, 0, 0, 1, 0, 35]).is_err(),
            "error code 35 is reported"
        );
        assert!(parse(&[0, 0]).is_err());
    }
}
