//! One frame per QUIC stream: a 4-byte big-endian length, then the payload.

use quinn::{RecvStream, SendStream};

/// Default upper bound on a frame; snapshots travel as several frames.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
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

pub async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(e) => FrameError::Read(e.to_string()),
    })?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge(len, max));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(e) => FrameError::Read(e.to_string()),
    })?;
    Ok(buf)
}

pub async fn write_frame(send: &mut SendStream, payload: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len())
        .map_err(|_| FrameError::TooLarge(payload.len(), u32::MAX as usize))?;
    send.write_all(&len.to_be_bytes())
        .await
        .map_err(|e| FrameError::Write(e.to_string()))?;
    send.write_all(payload)
        .await
        .map_err(|e| FrameError::Write(e.to_string()))?;
    Ok(())
}
