//! PII transforms: what a contract's PII fields become before they land.

use std::net::IpAddr;

use hmac::{KeyInit, Mac};

use crate::contract::PiiTransform;

/// The environment variable that holds the HMAC key for hashed PII.
pub const KEY_ENV: &str = "PITWALL_PII_KEY";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Keyed transforms; built once per worker from the secret.
#[derive(Clone)]
pub struct Pii {
    mac: HmacSha256,
}

impl std::fmt::Debug for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pii { key: <redacted> }")
    }
}

impl Pii {
    pub fn new(key: &[u8]) -> Pii {
        Pii {
            // HMAC accepts keys of any length.
            mac: <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// The transformed value, or why the value cannot be transformed.
    pub fn apply(&self, t: PiiTransform, value: &str) -> Result<String, &'static str> {
        let mut out = String::new();
        self.apply_into(t, value, &mut out)?;
        Ok(out)
    }

    /// Appends the transformed value to `out`: the hot path, which reuses
    /// one buffer for every event.
    pub fn apply_into(
        &self,
        t: PiiTransform,
        value: &str,
        out: &mut String,
    ) -> Result<(), &'static str> {
        match t {
            PiiTransform::HmacSha256 => {
                self.hmac_hex(value, out);
                Ok(())
            }
            PiiTransform::IpNetwork => ip_network(value, out),
            PiiTransform::Round(_) => Err("rounds numbers, not text"),
        }
    }

    /// A numeric field's transformed value.
    pub fn apply_number(t: PiiTransform, v: f64) -> f64 {
        match t {
            PiiTransform::Round(decimals) => round(v, decimals),
            PiiTransform::HmacSha256 | PiiTransform::IpNetwork => v,
        }
    }

    fn hmac_hex(&self, value: &str, out: &mut String) {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // Written whole, not char by char: one capacity check instead of 64.
        let mut hex = [0u8; 64];
        for (pair, b) in hex.chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 15)];
        }
        out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    }
}

/// `a.b.c.d` → `a.b.c.0/24`; IPv6 → its /48 network.
fn ip_network(value: &str, out: &mut String) -> Result<(), &'static str> {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = match value.parse::<IpAddr>() {
        // The parser takes only canonical dotted quads (no leading zeros,
        // no spaces), so the text up to the last dot is the network's.
        Ok(IpAddr::V4(_)) => {
            let net = value.rfind('.').map_or("", |dot| &value[..=dot]);
            out.push_str(net);
            out.push_str("0/24");
            Ok(())
        }
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            write!(out, "{net}/48")
        }
        Err(_) => return Err("not an IP address"),
    };
    Ok(())
}

/// `v` rounded to `decimals` places, half away from zero. Dividing by the
/// power of ten (not multiplying by its inverse) gives the nearest double
/// to the decimal, so 37.5665 prints as 37.567, not 37.567000000000004.
fn round(v: f64, decimals: u8) -> f64 {
    let scale = 10f64.powi(i32::from(decimals));
    (v * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ipv4_networks_are_the_first_three_octets(ip in any::<u32>()) {
            let v4 = std::net::Ipv4Addr::from(ip);
            let [a, b, c, _] = v4.octets();
            let mut out = String::new();
            ip_network(&v4.to_string(), &mut out).map_err(TestCaseError::fail)?;
            prop_assert_eq!(out, format!("{a}.{b}.{c}.0/24"));
        }
    }

    #[test]
    fn addresses_in_other_spellings_are_refused() {
        for bad in [
            "01.2.3.4",
            " 1.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.256",
            "",
        ] {
            assert!(ip_network(bad, &mut String::new()).is_err(), "{bad}");
        }
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let p = Pii::new(b"Jefe");
        assert_eq!(
            p.apply(PiiTransform::HmacSha256, "what do ya want for nothing?"),
            Ok("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843".into())
        );
    }

    #[test]
    fn ip_addresses_become_their_networks() {
        let p = Pii::new(b"k");
        let net = |v| p.apply(PiiTransform::IpNetwork, v);
        assert_eq!(net("203.0.113.77"), Ok("203.0.113.0/24".into()));
        assert_eq!(net("2001:db8:abcd:12::1"), Ok("2001:db8:abcd::/48".into()));
        assert_eq!(net("::1"), Ok("::/48".into()));
        assert!(net("300.1.1.1").is_err());
        assert!(net("phone").is_err());
    }

    #[test]
    fn positions_round_to_the_declared_decimals() {
        let r = |v| Pii::apply_number(PiiTransform::Round(3), v);
        assert_eq!(r(37.566_512), 37.567);
        assert_eq!(r(126.978_04), 126.978);
        assert_eq!(r(-33.868_82), -33.869);
        assert_eq!(r(0.0004), 0.0);
        assert_eq!(Pii::apply_number(PiiTransform::Round(0), 2.5), 3.0);
        assert_eq!(r(37.567), 37.567, "already coarse values stay as they are");
    }

    #[test]
    fn the_key_never_prints() {
        assert!(!format!("{:?}", Pii::new(b"secret-key")).contains("secret"));
    }
}
