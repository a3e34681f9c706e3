//! The one place that knows the wire and disk encoding of our own types
//! (bincode 2 through serde). Raft's own messages keep raft-rs's protobuf.
//!
//! A field of opaque bytes (a config's value, a sealed secret, a Raft
//! message or snapshot chunk on the wire) is `#[serde(with = "serde_bytes")]`:
//! bincode writes it exactly as it writes a `Vec<u8>` (a length, then the
//! bytes) but copies it whole instead of one `u8` at a time, which in a
//! debug build took 1.9 s to encode and 1.6 s to decode a 22 MB snapshot of
//! configs (36 ms and 21 ms now) and stalled the Raft actor past the
//! election timeout.

use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
}

/// Upper bound on one decoded value, so a corrupt length prefix cannot make us
/// allocate gigabytes.
const LIMIT: usize = 256 * 1024 * 1024;

/// bincode counts each value against the limit by its size in memory: at most
/// 16 bytes (a `u128` in a one-byte varint) for each byte it reads.
const CLAIM_PER_BYTE: usize = 16;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    Ok(bincode::serde::encode_to_vec(value, config)?)
}

/// The encoding of a value whose encoding ends with a sequence (a `Vec` as
/// its last field), built from the encoding of that value with the sequence
/// empty and each element's own encoding: what `encode` gives for the value
/// holding those elements, without decoding or encoding them again. (bincode
/// writes a sequence as its length, a varint, then its elements; the empty
/// one ends with the length 0, one byte.)
pub fn splice_seq(empty: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CodecError> {
    let Some((&0, head)) = empty.split_last() else {
        return Err(bincode::error::EncodeError::Other(
            "not a value ending with an empty sequence",
        )
        .into());
    };
    let len = encode(&(parts.len() as u64))?;
    let total = head.len() + len.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(head);
    out.extend_from_slice(&len);
    for part in parts {
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Decodes with a limit scaled to the input: bincode allocates a string's
/// buffer from its length prefix before reading it, so a 10-byte message
/// claiming a 200 MB string must be refused by the limit, not by the read.
/// A valid value never claims more than `CLAIM_PER_BYTE` times its encoding,
/// so the scaled limit refuses nothing the fixed `LIMIT` accepts.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let claim = bytes.len().saturating_mul(CLAIM_PER_BYTE);
    if claim <= 1 << 16 {
        decode_within::<{ 1 << 16 }, T>(bytes)
    } else if claim <= 1 << 20 {
        decode_within::<{ 1 << 20 }, T>(bytes)
    } else if claim <= 1 << 24 {
        decode_within::<{ 1 << 24 }, T>(bytes)
    } else {
        decode_within::<LIMIT, T>(bytes)
    }
}

fn decode_within<const N: usize, T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<N>();
    let (value, _) = bincode::serde::decode_from_slice(bytes, config)?;
    Ok(value)
}
