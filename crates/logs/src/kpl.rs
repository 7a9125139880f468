//! KPL aggregated records: magic `F3 89 9A C2`, a protobuf
//! `AggregatedRecord`, and the MD5 of that protobuf. Only the user records'
//! data is needed, so this reads the three message fields by hand instead of
//! generating code for the whole KPL schema.

use md5::{Digest, Md5};

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const MD5_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KplError {
    /// The trailer is not the MD5 of the body: truncated or corrupted.
    Md5Mismatch,
    /// The protobuf body does not parse.
    Malformed(&'static str),
}

/// Is this an aggregated record? (Only then is [`user_records`] meaningful.)
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() + MD5_LEN && data[..4] == MAGIC
}

/// The user records' data, in order; their index is the sub-sequence number.
pub fn user_records(data: &[u8]) -> Result<Vec<&[u8]>, KplError> {
    let body = &data[MAGIC.len()..data.len() - MD5_LEN];
    let trailer = &data[data.len() - MD5_LEN..];
    if Md5::digest(body).as_slice() != trailer {
        return Err(KplError::Md5Mismatch);
    }
    let mut out = Vec::new();
    let mut r = Reader { buf: body };
    while !r.buf.is_empty() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (3, 2) => out.push(record_data(r.bytes()?)?),
            _ => r.skip(wire)?,
        }
    }
    Ok(out)
}

/// `Record.data` (field 3) of one nested record.
fn record_data(rec: &[u8]) -> Result<&[u8], KplError> {
    let mut r = Reader { buf: rec };
    let mut data = None;
    while !r.buf.is_empty() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (3, 2) => data = Some(r.bytes()?),
            _ => r.skip(wire)?,
        }
    }
    data.ok_or(KplError::Malformed("a user record has no data"))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, KplError> {
        let mut v = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        Err(KplError::Malformed("truncated varint"))
    }

    fn key(&mut self) -> Result<(u64, u8), KplError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], KplError> {
        if n > self.buf.len() {
            return Err(KplError::Malformed("a field runs past the end"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], KplError> {
        let n =
            usize::try_from(self.varint()?).map_err(|_| KplError::Malformed("length too large"))?;
        self.take(n)
    }

    fn skip(&mut self, wire: u8) -> Result<(), KplError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            _ => Err(KplError::Malformed("unknown wire type")),
        }
    }
}

/// Builds an aggregated record the way the KPL does; for tests and the
/// test-data generator, which need real aggregated records to put.
pub fn aggregate(partition_key: &str, records: &[&[u8]]) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn len_field(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint((field << 3) | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    let mut body = Vec::new();
    len_field(1, partition_key.as_bytes(), &mut body);
    for data in records {
        let mut rec = Vec::new();
        varint(1 << 3, &mut rec); // partition_key_index = 0
        varint(0, &mut rec);
        len_field(3, data, &mut rec);
        len_field(3, &rec, &mut body);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_records_round_trip() {
        let recs: [&[u8]; 3] = [b"{\"a\":1}", b"", b"{\"b\":2}\n{\"c\":3}"];
        let agg = aggregate("pk", &recs);
        assert!(is_aggregated(&agg));
        assert_eq!(user_records(&agg), Ok(recs.to_vec()));
    }

    #[test]
    fn a_corrupted_record_fails_the_md5_check() {
        let mut agg = aggregate("pk", &[b"{\"a\":1}"]);
        let mid = agg.len() / 2;
        agg[mid] ^= 1;
        assert_eq!(user_records(&agg), Err(KplError::Md5Mismatch));
        let short = &aggregate("pk", &[b"{}"])[..20];
        assert!(user_records(short).is_err() || !is_aggregated(short));
    }

    #[test]
    fn a_truncated_body_with_a_valid_md5_is_malformed() {
        let mut body = Vec::new();
        body.extend_from_slice(&[0x1a, 0x20, 0x00]); // records: length 32, only 1 byte
        let mut rec = MAGIC.to_vec();
        rec.extend_from_slice(&body);
        rec.extend_from_slice(&Md5::digest(&body));
        assert!(matches!(user_records(&rec), Err(KplError::Malformed(_))));
    }

    #[test]
    fn plain_json_is_not_aggregated() {
        assert!(!is_aggregated(
            b"{\"event_id\":\"x\",\"padding\":\"...........\"}"
        ));
    }
}
