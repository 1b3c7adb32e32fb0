//! The request-response codec: one length-prefixed frame (u32 big-endian) of opaque envelope
//! bytes per request or response, refused above the frame limit before anything is allocated.
//! Below the limit the declared length is still not trusted: the body buffer grows with the
//! bytes that actually arrive (from [`FIRST_CHUNK`]), so a peer that declares 4 MiB and stalls
//! costs the node what it sent, not what it declared.
//!
//! The limit depends on who sends: a request from a peer that has not proven membership on
//! this run may be no larger than [`MAX_UNPROVEN_FRAME`] (a hello or a proof fits; nothing
//! else is accepted from it anyway), so before the proof a stranger's streams can make the node
//! buffer a few KiB each, never a full frame. Each connection's codec knows its peer (see
//! [`super::gate`]). A response is read only to a request this node chose to send, and it
//! sends unproven peers nothing but its hello and proof, to addresses from its bootstrap list
//! or from proven members: responses get the full limit.
//! What the bytes mean is the app's business (`fedanno_protocol::envelope`).

use std::io;

use fedanno_protocol::limits::MAX_UNPROVEN_FRAME;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::{PeerId, StreamProtocol};

use super::gate::Proven;

/// The request-response protocol name. No PHI ever goes into protocol or agent names.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/fedanno/rr/2.0.0");

/// The codec of one connection (or, before it is cloned for one, of the behaviour).
#[derive(Debug)]
pub struct FrameCodec {
    max_frame: u32,
    /// The connection's peer; `None` only in the behaviour's own copy, and then every request
    /// gets the unproven limit.
    peer: Option<PeerId>,
    proven: Proven,
}

/// request-response clones the behaviour's codec once per connection, inside the call that
/// [`super::gate::Gated`] makes with the connection's peer id: that clone takes the peer id
/// the gate handed over. Clones of a connection's codec (one per stream) keep their peer.
impl Clone for FrameCodec {
    fn clone(&self) -> Self {
        FrameCodec {
            max_frame: self.max_frame,
            peer: self.peer.or_else(|| self.proven.take_next()),
            proven: self.proven.clone(),
        }
    }
}

impl FrameCodec {
    pub fn new(max_frame: u32, proven: Proven) -> Self {
        FrameCodec {
            max_frame,
            peer: None,
            proven,
        }
    }

    /// The most this connection's peer may send in one request.
    fn request_limit(&self) -> u32 {
        match self.peer {
            Some(p) if self.proven.contains(&p) => self.max_frame,
            // A compile-time constant of a few KiB.
            _ => MAX_UNPROVEN_FRAME as u32,
        }
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: u32) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {max}-byte limit"),
        ));
    }
    let mut buf = Vec::with_capacity((len as usize).min(FIRST_CHUNK));
    io.take(u64::from(len)).read_to_end(&mut buf).await?;
    if buf.len() != len as usize {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame ended after {} of {len} bytes", buf.len()),
        ));
    }
    Ok(buf)
}

/// The most a frame's body buffer holds before its bytes arrive.
pub const FIRST_CHUNK: usize = 16 * 1024;

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
    max: u32,
) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| io::Error::other("frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.flush().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.request_limit()).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_frame).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.max_frame).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, self.max_frame).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_from_unproven_peers_get_the_small_limit() {
        let proven = Proven::default();
        let peer = PeerId::random();
        let behaviours = FrameCodec::new(1 << 20, proven.clone());
        proven.hand_over(Some(peer));
        let mut conn = behaviours.clone();
        proven.hand_over(None);
        assert_eq!(conn.peer, Some(peer));
        // A stream's codec keeps the connection's peer.
        assert_eq!(conn.clone().peer, Some(peer));
        assert_eq!(behaviours.clone().peer, None);
        let mut wire = Vec::new();
        let body = vec![7u8; MAX_UNPROVEN_FRAME + 1];
        write_frame(&mut futures::io::Cursor::new(&mut wire), &body, 1 << 20)
            .await
            .unwrap();
        async fn request(c: &mut FrameCodec, wire: &[u8]) -> io::Result<Vec<u8>> {
            let mut io = futures::io::Cursor::new(wire);
            request_response::Codec::read_request(c, &PROTOCOL, &mut io).await
        }
        let e = request(&mut conn, &wire).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        proven.insert(peer);
        assert_eq!(request(&mut conn, &wire).await.unwrap().len(), body.len());
        // Responses (to requests this node chose to send) get the full limit.
        proven.remove(&peer);
        let mut io = futures::io::Cursor::new(&wire);
        let got = request_response::Codec::read_response(&mut conn, &PROTOCOL, &mut io)
            .await
            .unwrap();
        assert_eq!(got.len(), body.len());
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversized_frames_are_refused_before_allocation() {
        let mut buf = Vec::new();
        write_frame(&mut futures::io::Cursor::new(&mut buf), b"hello", 16)
            .await
            .unwrap();
        assert_eq!(buf, [0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        let got = read_frame(&mut futures::io::Cursor::new(&buf), 16)
            .await
            .unwrap();
        assert_eq!(got, b"hello");
        // A header declaring 4 GiB: refused from the 4 length bytes alone.
        let hostile = [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3];
        let e = read_frame(&mut futures::io::Cursor::new(&hostile[..]), 1024)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A frame larger than the first chunk arrives whole.
        let big: Vec<u8> = (0..3 * FIRST_CHUNK + 7).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        write_frame(&mut futures::io::Cursor::new(&mut wire), &big, 1 << 20)
            .await
            .unwrap();
        let got = read_frame(&mut futures::io::Cursor::new(&wire), 1 << 20)
            .await
            .unwrap();
        assert_eq!(got, big);
        // A declared length the peer never sends: an error, and the buffer only ever held
        // what arrived (the declared 1 MiB is never allocated up front).
        let mut stalled = vec![0, 0x10, 0, 0];
        stalled.extend_from_slice(&[7u8; 100]);
        let e = read_frame(&mut futures::io::Cursor::new(&stalled[..]), 1 << 21)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("after 100 of 1048576 bytes"), "{e}");
        // Truncated body.
        let short = [0, 0, 0, 9, 1, 2];
        assert!(
            read_frame(&mut futures::io::Cursor::new(&short[..]), 1024)
                .await
                .is_err()
        );
        assert!(
            write_frame(
                &mut futures::io::Cursor::new(&mut Vec::new()),
                &[0u8; 17],
                16
            )
            .await
            .is_err()
        );
    }
}
