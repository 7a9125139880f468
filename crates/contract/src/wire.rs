//! The two registry wire formats, byte for byte.
//!
//! - AWS Glue Schema Registry: byte 0 = 3 (header version), byte 1 =
//!   compression (0 none, 5 zlib), bytes 2..18 = the schema version UUID,
//!   then the Avro binary datum (zlib-compressed when byte 1 is 5).
//! - Confluent: byte 0 = 0 (magic), bytes 1..5 = the schema id, big-endian
//!   u32, then the Avro binary datum.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use uuid::Uuid;

pub const GLUE_HEADER_VERSION: u8 = 3;
pub const GLUE_COMPRESSION_NONE: u8 = 0;
pub const GLUE_COMPRESSION_ZLIB: u8 = 5;
pub const CONFLUENT_MAGIC: u8 = 0;

/// Which schema a framed record says it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaRef {
    Glue(Uuid),
    Confluent(u32),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("record is {0} bytes, shorter than its header")]
    TooShort(usize),
    #[error("unknown header byte {0}: neither Glue (3) nor Confluent (0) framing")]
    UnknownHeader(u8),
    #[error("unknown Glue compression byte {0}: expected 0 (none) or 5 (zlib)")]
    UnknownCompression(u8),
    #[error("zlib payload is corrupt: {0}")]
    Zlib(String),
}

impl std::fmt::Display for SchemaRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaRef::Glue(id) => write!(f, "Glue schema version {id}"),
            SchemaRef::Confluent(id) => write!(f, "Confluent schema id {id}"),
        }
    }
}

/// Frames an Avro datum for the Glue deserializer.
pub fn glue(schema_version: Uuid, datum: &[u8], zlib: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + datum.len());
    glue_into(schema_version, datum, zlib, &mut out);
    out
}

/// [`glue`], appended to `out`: a publisher frames a whole batch into one buffer.
pub fn glue_into(schema_version: Uuid, datum: &[u8], zlib: bool, out: &mut Vec<u8>) {
    out.push(GLUE_HEADER_VERSION);
    out.push(if zlib {
        GLUE_COMPRESSION_ZLIB
    } else {
        GLUE_COMPRESSION_NONE
    });
    out.extend_from_slice(schema_version.as_bytes());
    if zlib {
        let mut z = ZlibEncoder::new(&mut *out, Compression::default());
        // Writing into a Vec cannot fail.
        let _ = z.write_all(datum);
        let _ = z.finish();
    } else {
        out.extend_from_slice(datum);
    }
}

/// Frames an Avro datum for Confluent deserializers.
pub fn confluent(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + datum.len());
    confluent_into(schema_id, datum, &mut out);
    out
}

/// [`confluent`], appended to `out`.
pub fn confluent_into(schema_id: u32, datum: &[u8], out: &mut Vec<u8>) {
    out.push(CONFLUENT_MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
}

/// Splits a framed record into its schema reference and the Avro datum.
pub fn unframe(bytes: &[u8]) -> Result<(SchemaRef, Vec<u8>), WireError> {
    match bytes.first() {
        Some(&GLUE_HEADER_VERSION) => {
            if bytes.len() < 18 {
                return Err(WireError::TooShort(bytes.len()));
            }
            let id =
                Uuid::from_slice(&bytes[2..18]).map_err(|_| WireError::TooShort(bytes.len()))?;
            let body = &bytes[18..];
            let datum = match bytes[1] {
                GLUE_COMPRESSION_NONE => body.to_vec(),
                GLUE_COMPRESSION_ZLIB => {
                    let mut out = Vec::new();
                    ZlibDecoder::new(body)
                        .read_to_end(&mut out)
                        .map_err(|e| WireError::Zlib(e.to_string()))?;
                    out
                }
                other => return Err(WireError::UnknownCompression(other)),
            };
            Ok((SchemaRef::Glue(id), datum))
        }
        Some(&CONFLUENT_MAGIC) => {
            if bytes.len() < 5 {
                return Err(WireError::TooShort(bytes.len()));
            }
            let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            Ok((SchemaRef::Confluent(id), bytes[5..].to_vec()))
        }
        Some(&other) => Err(WireError::UnknownHeader(other)),
        None => Err(WireError::TooShort(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Uuid = Uuid::from_bytes([0xb7, 0x1a, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);

    #[test]
    fn glue_uncompressed_layout() {
        let b = glue(ID, &[0xaa, 0xbb], false);
        assert_eq!(b[0], 3);
        assert_eq!(b[1], 0);
        assert_eq!(&b[2..18], ID.as_bytes());
        assert_eq!(&b[18..], &[0xaa, 0xbb]);
    }

    #[test]
    fn glue_zlib_round_trips_and_is_a_zlib_stream() {
        let datum: Vec<u8> = (0..200u8).cycle().take(2000).collect();
        let b = glue(ID, &datum, true);
        assert_eq!((b[0], b[1]), (3, 5));
        // zlib header: CMF 0x78.
        assert_eq!(b[18], 0x78);
        assert!(b.len() < datum.len());
        assert_eq!(unframe(&b), Ok((SchemaRef::Glue(ID), datum)));
    }

    #[test]
    fn confluent_layout_is_magic_then_big_endian_id() {
        let b = confluent(0x0102_0304, &[9]);
        assert_eq!(b, vec![0, 1, 2, 3, 4, 9]);
        assert_eq!(
            unframe(&b),
            Ok((SchemaRef::Confluent(0x0102_0304), vec![9]))
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert_eq!(unframe(&[]), Err(WireError::TooShort(0)));
        assert_eq!(unframe(&[3, 0, 1]), Err(WireError::TooShort(3)));
        assert_eq!(unframe(&[0, 1]), Err(WireError::TooShort(2)));
        assert_eq!(unframe(&[7, 0, 0, 0, 0]), Err(WireError::UnknownHeader(7)));
        let mut b = glue(ID, &[1], false);
        b[1] = 9;
        assert_eq!(unframe(&b), Err(WireError::UnknownCompression(9)));
    }
}
