//! The frames a model's process and stagegate exchange on its Unix socket: a 12-byte head
//! (header length `u32`, body length `u64`, little-endian), a JSON header, then the body (Arrow
//! IPC or JSON bytes). Binary lengths rather than lines, so a body of any content, and of any
//! size, needs no escaping or scanning.

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Headers are a few hundred bytes; anything larger is not a header.
const MAX_HEADER: u32 = 1 << 20;

#[derive(Debug)]
pub struct Frame {
    pub header: Value,
    pub body: Vec<u8>,
}

/// The head and header of a frame, ready to be followed by its body.
pub fn head(header: &Value, body_len: usize) -> Vec<u8> {
    let h = header.to_string();
    let mut out = Vec::with_capacity(12 + h.len());
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

pub async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    header: &Value,
    body: &[u8],
) -> std::io::Result<()> {
    w.write_all(&head(header, body.len())).await?;
    if !body.is_empty() {
        w.write_all(body).await?;
    }
    w.flush().await
}

/// The next frame; `Ok(None)` when the peer closed the connection before a new frame began.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 12];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let hlen = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let mut blen_bytes = [0u8; 8];
    blen_bytes.copy_from_slice(&head[4..]);
    let blen = u64::from_le_bytes(blen_bytes);
    if hlen > MAX_HEADER {
        return Err(std::io::Error::other(format!(
            "a frame header of {hlen} bytes: the peer does not speak this protocol"
        )));
    }
    let mut header = vec![0u8; hlen as usize];
    r.read_exact(&mut header).await?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|e| std::io::Error::other(format!("a frame header that is not JSON: {e}")))?;
    let blen = usize::try_from(blen)
        .map_err(|_| std::io::Error::other(format!("a frame body of {blen} bytes")))?;
    let mut body = vec![0u8; blen];
    r.read_exact(&mut body).await?;
    Ok(Some(Frame { header, body }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn frames_round_trip_and_a_clean_close_is_none() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write(&mut a, &json!({"op": "predict"}), b"\x00\x01body")
            .await
            .unwrap();
        write(&mut a, &json!({"op": "http"}), b"").await.unwrap();
        drop(a);
        let f = read(&mut b).await.unwrap().unwrap();
        assert_eq!(f.header, json!({"op": "predict"}));
        assert_eq!(f.body, b"\x00\x01body");
        let f = read(&mut b).await.unwrap().unwrap();
        assert_eq!((f.header, f.body.len()), (json!({"op": "http"}), 0));
        assert!(read(&mut b).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_cut_frame_or_a_foreign_peer_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let mut bytes = head(&json!({"x": 1}), 10);
        bytes.extend_from_slice(b"abc");
        a.write_all(&bytes).await.unwrap();
        drop(a);
        assert!(read(&mut b).await.is_err());
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        drop(a);
        assert!(read(&mut b).await.is_err());
    }
}
