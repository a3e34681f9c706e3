//! The one place that knows the wire and disk encoding of our own types
//! (bincode 2 through serde). Raft's own messages keep raft-rs's protobuf.

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
