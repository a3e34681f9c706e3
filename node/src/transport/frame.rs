//! Frames on QUIC streams: a 4-byte big-endian length, then the payload;
//! one per stream, or many in a row on an ordered pipe's stream.
//!
//! [`decode_frame`] and [`payload_len`] are the pure part (no IO), so the
//! fuzzers can drive exactly what [`read_frame`] checks.

use quinn::{RecvStream, SendStream};

/// Default upper bound on a frame; snapshots travel as several frames.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is larger than the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("stream: {0}")]
    Read(String),
    #[error("stream: {0}")]
    Write(String),
}

/// The payload length a header announces, refused above `max` before
/// anything is allocated for it.
pub fn payload_len(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = usize::try_from(u32::from_be_bytes(header))
        .map_err(|_| FrameError::TooLarge(usize::MAX, max))?;
    if len > max {
        return Err(FrameError::TooLarge(len, max));
    }
    Ok(len)
}

/// The header of a frame carrying `payload_len` bytes.
pub fn header(payload_len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    let len = u32::try_from(payload_len)
        .map_err(|_| FrameError::TooLarge(payload_len, u32::MAX as usize))?;
    Ok(len.to_be_bytes())
}

/// Splits one frame off the front of `bytes`: its payload, and what follows it.
pub fn decode_frame(bytes: &[u8], max: usize) -> Result<(&[u8], &[u8]), FrameError> {
    let (head, rest) = bytes
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(FrameError::Truncated)?;
    let len = payload_len(*head, max)?;
    if rest.len() < len {
        return Err(FrameError::Truncated);
    }
    Ok(rest.split_at(len))
}

fn read_error(e: quinn::ReadExactError) -> FrameError {
    match e {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(e) => FrameError::Read(e.to_string()),
    }
}

pub async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut head = [0u8; HEADER_LEN];
    recv.read_exact(&mut head).await.map_err(read_error)?;
    let len = payload_len(head, max)?;
    // The buffer grows with what arrives, not with what the header claims:
    // a peer that announces 16 MiB and stalls holds one chunk, not 16 MiB.
    read_payload(recv, len).await
}

/// The next frame on a stream that may carry several, or `None` if the
/// stream ended cleanly where a frame would begin.
pub async fn read_next_frame(
    recv: &mut RecvStream,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut first = [0u8; 1];
    match recv.read_exact(&mut first).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(read_error(e)),
    }
    let mut rest = [0u8; HEADER_LEN - 1];
    recv.read_exact(&mut rest).await.map_err(read_error)?;
    let head = [first[0], rest[0], rest[1], rest[2]];
    let len = payload_len(head, max)?;
    read_payload(recv, len).await.map(Some)
}

async fn read_payload(recv: &mut RecvStream, len: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::with_capacity(len.min(READ_CHUNK));
    let mut chunk = vec![0u8; len.min(READ_CHUNK)];
    while buf.len() < len {
        let want = (len - buf.len()).min(READ_CHUNK);
        recv.read_exact(&mut chunk[..want])
            .await
            .map_err(read_error)?;
        buf.extend_from_slice(&chunk[..want]);
    }
    Ok(buf)
}

/// How much of a frame is read at a time.
const READ_CHUNK: usize = 64 * 1024;

pub async fn write_frame(send: &mut SendStream, payload: &[u8]) -> Result<(), FrameError> {
    send.write_all(&header(payload.len())?)
        .await
        .map_err(|e| FrameError::Write(e.to_string()))?;
    send.write_all(payload)
        .await
        .map_err(|e| FrameError::Write(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::transport::frame::{decode_frame, header, FrameError};

    #[test]
    fn a_frame_splits_off_the_front() {
        let mut bytes = header(3).unwrap().to_vec();
        bytes.extend_from_slice(b"abcde");
        assert_eq!(decode_frame(&bytes, 16), Ok((&b"abc"[..], &b"de"[..])));
    }

    #[test]
    fn a_frame_above_the_limit_is_refused_before_its_payload() {
        let bytes = header(u32::MAX as usize).unwrap();
        assert_eq!(
            decode_frame(&bytes, 16),
            Err(FrameError::TooLarge(u32::MAX as usize, 16))
        );
    }

    #[test]
    fn a_short_frame_is_truncated() {
        assert_eq!(decode_frame(&[0, 0], 16), Err(FrameError::Truncated));
        assert_eq!(
            decode_frame(&[0, 0, 0, 2, 1], 16),
            Err(FrameError::Truncated)
        );
    }
}
