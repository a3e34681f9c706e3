//! The one place that knows the wire and disk encoding of our own types
//! (bincode 2 through serde), and their format versions. Raft's own messages
//! keep raft-rs's protobuf.
//!
//! A record of format 2 or later starts with `MAGIC` and its format (a
//! bincode varint), then the value. A record of format 1, written before
//! formats existed, is the value alone; it never starts with `MAGIC`,
//! because every record of ours starts with a bincode varint (an integer, a
//! length, an enum's or an option's tag), and a varint's first byte is at
//! most 254. A record from a format this build does not know is refused
//! with `CodecError::TooNew`, never misread.
//!
//! A field added in format N is marked `#[serde(default, with =
//! "codec::since_N")]`: a record of an older format has no bytes for it, so
//! it decodes as the field's default (the upgrade, in memory), and a record
//! written for an older format (`encode_at`) leaves it out. docs/upgrades.md
//! has the rules and the compatibility promise.
//!
//! A field of opaque bytes (a config's value, a sealed secret, a Raft
//! message or snapshot chunk on the wire) is `#[serde(with = "serde_bytes")]`:
//! bincode writes it exactly as it writes a `Vec<u8>` (a length, then the
//! bytes) but copies it whole instead of one `u8` at a time, which in a
//! debug build took 1.9 s to encode and 1.6 s to decode a 22 MB snapshot of
//! configs (36 ms and 21 ms now) and stalled the Raft actor past the
//! election timeout.

use std::cell::Cell;

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

/// The newest format this build reads and writes.
pub const FORMAT: u32 = 2;

/// The oldest format this build reads: the unversioned records of the
/// builds before formats existed.
pub const OLDEST: u32 = 1;

/// The first byte of a versioned record (never the first byte of a bincode
/// varint, so never that of a format 1 record).
pub const MAGIC: u8 = 0xFF;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("record written by format {found}; this build reads up to {supported}")]
    TooNew { found: u32, supported: u32 },
    #[error("record claims format {0}, which no build writes")]
    NoSuchFormat(u32),
    #[error("cannot splice records of formats {0} and {1}")]
    MixedFormats(u32, u32),
}

/// The highest format this build reads and writes (`FORMAT`; a function
/// so that callers read as what they ask).
pub fn supported() -> u32 {
    FORMAT
}

thread_local! {
    /// The format of the record being encoded or decoded on this thread
    /// (what `since_N` fields consult); `FORMAT` outside the codec, so
    /// other serializers (JSON) see every field.
    static IN_FORMAT: Cell<u32> = const { Cell::new(FORMAT) };
}

/// Runs `f` with the record format set to `format`, restoring the one
/// before even if `f` panics (a nested encode or decode keeps its own).
fn in_format<R>(format: u32, f: impl FnOnce() -> R) -> R {
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_FORMAT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(IN_FORMAT.with(|c| c.replace(format)));
    f()
}

/// The format of the record being encoded or decoded on this thread.
pub fn record_format() -> u32 {
    IN_FORMAT.with(Cell::get)
}

/// Upper bound on one decoded value, so a corrupt length prefix cannot make us
/// allocate gigabytes.
const LIMIT: usize = 256 * 1024 * 1024;

/// bincode counts each value against the limit by its size in memory: at most
/// 16 bytes (a `u128` in a one-byte varint) for each byte it reads.
const CLAIM_PER_BYTE: usize = 16;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes a value in this build's format.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_at(value, supported())
}

/// Encodes a value in `format` (no newer than `FORMAT`, no older than
/// `OLDEST`), as a build of that format wrote it: fields added later are
/// left out, and format 1 is the bare value. What a build writes for
/// members of an older format goes through here (docs/upgrades.md); the
/// golden fixtures check that it gives an older build's bytes exactly.
pub fn encode_at<T: Serialize>(value: &T, format: u32) -> Result<Vec<u8>, CodecError> {
    let format = format.clamp(OLDEST, supported());
    let mut out = header(format)?;
    in_format(format, || {
        bincode::serde::encode_into_std_write(value, &mut out, config())
    })?;
    Ok(out)
}

/// The bytes a record of `format` starts with.
fn header(format: u32) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    if format > OLDEST {
        out.push(MAGIC);
        bincode::encode_into_std_write(format, &mut out, bincode::config::standard())?;
    }
    Ok(out)
}

/// A record's format and where its value starts; `TooNew` for a format
/// newer than `supported`.
pub fn format_of(bytes: &[u8]) -> Result<(u32, usize), CodecError> {
    let Some((&MAGIC, rest)) = bytes.split_first() else {
        return Ok((OLDEST, 0));
    };
    let (format, read): (u32, usize) =
        bincode::decode_from_slice(rest, bincode::config::standard())?;
    if format <= OLDEST {
        return Err(CodecError::NoSuchFormat(format));
    }
    if format > supported() {
        return Err(CodecError::TooNew {
            found: format,
            supported: supported(),
        });
    }
    Ok((format, 1 + read))
}

/// The encoding of a value whose encoding ends with a sequence (a `Vec` as
/// its last field), built from the record of that value with the sequence
/// empty and the records of each element, all of one format: the record
/// `encode_at` gives for the value holding those elements, without decoding
/// or encoding them again. (bincode writes a sequence as its length, a
/// varint, then its elements; the empty one ends with the length 0, one
/// byte.)
pub fn splice_seq(empty: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CodecError> {
    let (format, start) = format_of(empty)?;
    let Some((&0, head)) = empty.split_last() else {
        return Err(bincode::error::EncodeError::Other(
            "not a value ending with an empty sequence",
        )
        .into());
    };
    if head.len() < start {
        return Err(bincode::error::EncodeError::Other("not a record").into());
    }
    let len = bincode::encode_to_vec(parts.len() as u64, bincode::config::standard())?;
    let mut bodies = Vec::with_capacity(parts.len());
    for part in parts {
        let (part_format, part_start) = format_of(part)?;
        if part_format != format {
            return Err(CodecError::MixedFormats(format, part_format));
        }
        bodies.push(&part[part_start..]);
    }
    let total = head.len() + len.len() + bodies.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(head);
    out.extend_from_slice(&len);
    for body in bodies {
        out.extend_from_slice(body);
    }
    Ok(out)
}

/// Decodes a record of any format from `OLDEST` to `supported`, upgraded to
/// this build's types (fields newer than the record take their defaults).
///
/// The limit scales with the input: bincode allocates a string's buffer from
/// its length prefix before reading it, so a 10-byte message claiming a 200
/// MB string must be refused by the limit, not by the read. A valid value
/// never claims more than `CLAIM_PER_BYTE` times its encoding, so the scaled
/// limit refuses nothing the fixed `LIMIT` accepts.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (format, start) = format_of(bytes)?;
    let body = &bytes[start..];
    let claim = body.len().saturating_mul(CLAIM_PER_BYTE);
    in_format(format, || {
        if claim <= 1 << 16 {
            decode_within::<{ 1 << 16 }, T>(body)
        } else if claim <= 1 << 20 {
            decode_within::<{ 1 << 20 }, T>(body)
        } else if claim <= 1 << 24 {
            decode_within::<{ 1 << 24 }, T>(body)
        } else {
            decode_within::<LIMIT, T>(body)
        }
    })
}

fn decode_within<const N: usize, T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<N>();
    let (value, _) = bincode::serde::decode_from_slice(bytes, config)?;
    Ok(value)
}

/// A field added in `since`: nothing (bincode's unit, no bytes) in a record
/// of an older format, the value otherwise.
fn serialize_since<T: Serialize, S: Serializer>(
    since: u32,
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if record_format() < since {
        serializer.serialize_unit()
    } else {
        value.serialize(serializer)
    }
}

/// A field added in `since`: its default in a record of an older format
/// (which has no bytes for it), read otherwise.
fn deserialize_since<'de, T: Deserialize<'de> + Default, D: Deserializer<'de>>(
    since: u32,
    deserializer: D,
) -> Result<T, D::Error> {
    if record_format() < since {
        <()>::deserialize(deserializer)?;
        Ok(T::default())
    } else {
        T::deserialize(deserializer)
    }
}

/// Fields added in format 2: `#[serde(default, with = "codec::since_2")]`.
pub mod since_2 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        super::serialize_since(2, value, s)
    }

    pub fn deserialize<'de, T: Deserialize<'de> + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        super::deserialize_since(2, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Old {
        id: u64,
        name: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct New {
        id: u64,
        #[serde(default, with = "since_2")]
        added: u32,
        name: String,
    }

    #[test]
    fn a_format_1_record_is_the_bare_value() {
        let old = Old {
            id: 7,
            name: "x".into(),
        };
        let v1 = bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap();
        assert_eq!(encode_at(&old, 1).unwrap(), v1);
        assert_eq!(decode::<Old>(&v1).unwrap(), old);
        let v2 = encode(&old).unwrap();
        assert_eq!(&v2[..2], &[MAGIC, 2]);
        assert_eq!(&v2[2..], &v1[..]);
        assert_eq!(decode::<Old>(&v2).unwrap(), old);
    }

    #[test]
    fn a_field_added_in_format_2_takes_its_default_in_a_format_1_record() {
        let v1 = encode_at(
            &Old {
                id: 7,
                name: "x".into(),
            },
            1,
        )
        .unwrap();
        let new: New = decode(&v1).unwrap();
        assert_eq!(
            new,
            New {
                id: 7,
                added: 0,
                name: "x".into()
            }
        );
        let value = New {
            id: 8,
            added: 3,
            name: "y".into(),
        };
        // Written for format 1, it is what a format 1 build reads.
        let old: Old = decode(&encode_at(&value, 1).unwrap()).unwrap();
        assert_eq!(old.name, "y");
        assert_eq!(decode::<New>(&encode(&value).unwrap()).unwrap(), value);
    }

    #[test]
    fn a_record_of_a_newer_format_is_refused_naming_both() {
        let mut future = vec![MAGIC, 3];
        future.extend(encode_at(&7u64, 1).unwrap());
        let err = decode::<u64>(&future).unwrap_err();
        assert!(matches!(
            err,
            CodecError::TooNew {
                found: 3,
                supported: FORMAT
            }
        ));
        assert_eq!(
            err.to_string(),
            "record written by format 3; this build reads up to 2"
        );
        assert!(matches!(
            decode::<u64>(&[MAGIC, 1, 7]),
            Err(CodecError::NoSuchFormat(1))
        ));
        assert!(decode::<u64>(&[MAGIC]).is_err());
    }

    #[test]
    fn no_varint_starts_with_the_magic_byte() {
        for v in [
            0u128,
            250,
            251,
            65_535,
            u32::MAX as u128,
            u64::MAX as u128,
            u128::MAX,
        ] {
            let bytes = encode_at(&v, 1).unwrap();
            assert_ne!(bytes[0], MAGIC, "{v}");
        }
        for v in [i64::MIN, -1, 0, i64::MAX] {
            assert_ne!(encode_at(&v, 1).unwrap()[0], MAGIC, "{v}");
        }
    }

    #[test]
    fn splicing_keeps_the_format_and_refuses_a_mix() {
        let empty = encode(&(5u8, Vec::<u64>::new())).unwrap();
        let parts: Vec<Vec<u8>> = [1u64, 300].iter().map(|p| encode(p).unwrap()).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let spliced = splice_seq(&empty, &refs).unwrap();
        assert_eq!(spliced, encode(&(5u8, vec![1u64, 300])).unwrap());
        let old = encode_at(&1u64, 1).unwrap();
        assert!(matches!(
            splice_seq(&empty, &[&old]),
            Err(CodecError::MixedFormats(2, 1))
        ));
    }
}
