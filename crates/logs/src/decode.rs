//! Kinesis record data → event payloads. A record holds one JSON object,
//! several separated by newlines, a gzip CloudWatch Logs subscription
//! payload, or a KPL aggregate of any of these. Each payload is handed on
//! with its position inside the record: the sub-sequence number (the user
//! record's index in a KPL aggregate, else 0) and the line (the line, or the
//! CloudWatch log event, within it).

use std::io::Read;

use serde::Deserialize;

use crate::dlq::Reason;
use crate::kpl;

/// Decompressed CloudWatch payloads above this are refused: a guard against
/// gzip bombs (Kinesis records are at most 1 MiB; CloudWatch batches stay far below this).
pub const MAX_GUNZIPPED: u64 = 64 << 20;

/// One thing found in a record.
#[derive(Debug, PartialEq)]
pub enum Item<'a> {
    /// One event's JSON bytes, not yet checked.
    Event { sub: u64, line: u32, json: &'a [u8] },
    /// Bytes that cannot yield events, and why.
    Bad {
        sub: u64,
        line: u32,
        bytes: &'a [u8],
        reason: Reason,
    },
    /// A CloudWatch CONTROL_MESSAGE: skipped, counted.
    Control { sub: u64 },
}

/// Decodes one record's data, handing each item to `f` in record order.
pub fn decode_record(data: &[u8], f: &mut dyn FnMut(Item<'_>)) {
    if kpl::is_aggregated(data) {
        match kpl::user_records(data) {
            Ok(records) => {
                for (sub, rec) in records.into_iter().enumerate() {
                    decode_user_record(rec, sub as u64, f);
                }
            }
            Err(e) => f(Item::Bad {
                sub: 0,
                line: 0,
                bytes: data,
                reason: match e {
                    kpl::KplError::Md5Mismatch => Reason::KplMd5Mismatch,
                    kpl::KplError::Malformed(why) => Reason::KplMalformed(why),
                },
            }),
        }
    } else {
        decode_user_record(data, 0, f);
    }
}

fn decode_user_record(data: &[u8], sub: u64, f: &mut dyn FnMut(Item<'_>)) {
    if data.starts_with(&[0x1f, 0x8b]) {
        return cloudwatch(data, sub, f);
    }
    let mut line = 0u32;
    for chunk in lines(data) {
        let chunk = chunk.trim_ascii();
        if chunk.is_empty() {
            continue;
        }
        f(Item::Event {
            sub,
            line,
            json: chunk,
        });
        line += 1;
    }
    if line == 0 {
        f(Item::Bad {
            sub,
            line: 0,
            bytes: data,
            reason: Reason::Empty,
        });
    }
}

/// Splits at newlines with memchr: records are scanned for them once per
/// byte, so the search must be vectorised, not a byte-by-byte predicate.
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', data);
    std::iter::from_fn(move || {
        if start > data.len() {
            return None;
        }
        let end = ends.next().unwrap_or(data.len());
        let line = &data[start..end];
        start = end + 1;
        Some(line)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudWatch<'a> {
    message_type: &'a str,
    #[serde(default, borrow)]
    log_events: Vec<LogEvent<'a>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
}

fn cloudwatch(data: &[u8], sub: u64, f: &mut dyn FnMut(Item<'_>)) {
    let bad = |reason, f: &mut dyn FnMut(Item<'_>)| {
        f(Item::Bad {
            sub,
            line: 0,
            bytes: data,
            reason,
        })
    };
    let mut text = Vec::new();
    let mut gz = flate2::read::MultiGzDecoder::new(data).take(MAX_GUNZIPPED + 1);
    if let Err(e) = gz.read_to_end(&mut text) {
        return bad(Reason::Gzip(e.to_string()), f);
    }
    if text.len() as u64 > MAX_GUNZIPPED {
        return bad(
            Reason::Gzip(format!("expands beyond {MAX_GUNZIPPED} bytes")),
            f,
        );
    }
    let payload: CloudWatch<'_> = match serde_json::from_slice(&text) {
        Ok(p) => p,
        Err(e) => return bad(Reason::CloudWatch(e.to_string()), f),
    };
    match payload.message_type {
        "CONTROL_MESSAGE" => f(Item::Control { sub }),
        "DATA_MESSAGE" => {
            for (line, ev) in payload.log_events.iter().enumerate() {
                let json = ev.message.trim_ascii().as_bytes();
                f(Item::Event {
                    sub,
                    line: line as u32,
                    json,
                });
            }
        }
        other => bad(
            Reason::CloudWatch(format!("unknown messageType {other:?}")),
            f,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn items(data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        decode_record(data, &mut |i| {
            out.push(match i {
                Item::Event { sub, line, json } => {
                    format!("{sub}.{line} {}", String::from_utf8_lossy(json))
                }
                Item::Bad {
                    sub, line, reason, ..
                } => format!("{sub}.{line} bad {}", reason.code()),
                Item::Control { sub } => format!("{sub} control"),
            })
        });
        out
    }

    pub fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).expect("in memory");
        e.finish().expect("in memory")
    }

    #[test]
    fn lines_split_like_the_standard_library() {
        for data in [&b""[..], b"a", b"a\n", b"\n", b"a\nb", b"a\n\nb\n", b"\n\n"] {
            let ours: Vec<&[u8]> = lines(data).collect();
            let std: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            assert_eq!(ours, std, "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn one_object_and_newline_separated_objects() {
        assert_eq!(items(b"{\"a\":1}\n"), ["0.0 {\"a\":1}"]);
        assert_eq!(
            items(b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}"),
            ["0.0 {\"a\":1}", "0.1 {\"b\":2}", "0.2 {\"c\":3}"]
        );
        assert_eq!(items(b"\n \n"), ["0.0 bad empty"]);
    }

    #[test]
    fn cloudwatch_payloads_yield_their_messages_and_skip_control() {
        let data = gzip(
            br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],
                "logEvents":[{"id":"1","timestamp":1,"message":"{\"a\":1}"},{"id":"2","timestamp":2,"message":"{\"b\":\"\\u00e9\"}"}]}"#,
        );
        assert_eq!(items(&data), ["0.0 {\"a\":1}", "0.1 {\"b\":\"\\u00e9\"}"]);
        let control = gzip(br#"{"messageType":"CONTROL_MESSAGE","logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE"}]}"#);
        assert_eq!(items(&control), ["0 control"]);
        assert_eq!(items(&gzip(b"not json")), ["0.0 bad cloudwatch_invalid"]);
        let mut truncated = gzip(b"{\"messageType\":\"DATA_MESSAGE\"}");
        truncated.truncate(12);
        assert_eq!(items(&truncated), ["0.0 bad gzip_invalid"]);
    }

    #[test]
    fn kpl_aggregates_number_their_user_records() {
        let cw = gzip(br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1,"message":"{\"c\":3}"}]}"#);
        let agg = kpl::aggregate("pk", &[b"{\"a\":1}", b"{\"b\":2}\n{\"b\":3}", &cw]);
        assert_eq!(
            items(&agg),
            [
                "0.0 {\"a\":1}",
                "1.0 {\"b\":2}",
                "1.1 {\"b\":3}",
                "2.0 {\"c\":3}"
            ]
        );
        let mut broken = agg.clone();
        let n = broken.len();
        broken[n - 1] ^= 0xff;
        assert_eq!(items(&broken), ["0.0 bad kpl_md5_mismatch"]);
    }
}
