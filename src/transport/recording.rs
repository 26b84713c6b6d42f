//! The two taps that let us compute tls-unique with rustls' public API only.
//!
//! [`Recording`] wraps the socket and keeps a copy of the client's bytes (what the server reads,
//! or what our client writes) until the handshake is over; [`SecretCapture`] is a per-connection
//! `KeyLog` that keeps the client handshake traffic secret. `tls_unique` turns the two into the
//! client's Finished.
//!
//! [`Recording`] also reads ahead: rustls asks for at most 4 KB per read, so a 16 KB SMP block
//! would take five system calls; one read of up to [`READ_AHEAD`] bytes serves them all.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zeroize::Zeroizing;

use super::tls_unique::CLIENT_HANDSHAKE_SECRET_LABEL;

/// Upper bound on what our client keeps of its own flights (a few hundred bytes, a few KB with
/// a client certificate).
const MAX_RECORDED: usize = 256 * 1024;

/// The most of a client's bytes read before its TLS handshake is over. An SMP ClientHello is
/// ~300 bytes, a browser's with a post-quantum key share ~2 KB, a service's certificate chain
/// and Finished a few hundred more. Without it, a client could keep ~124 KB per connection here
/// and in rustls (a ClientHello claiming 48 KB, sent but for its last bytes) for the 60 s the
/// handshake may take.
///
/// A ClientHello that does not fit fails the handshake at once. After the ClientHello, reading
/// stops at the limit instead: a client may send data right behind its Finished (and
/// tokio-rustls reads on until the socket is empty), which must wait in the socket for the
/// handshake to end; a client whose handshake cannot end within the limit waits for the
/// handshake timeout with nothing more read.
pub const HANDSHAKE_READ_LIMIT: usize = 16 * 1024;

/// Bytes asked of the socket at once when the caller's buffer is smaller: two full TLS records
/// of 16 KB SMP blocks. Read into the stack; what the caller cannot take waits in a heap buffer
/// sized to it, which is freed as soon as it is drained, so an idle connection keeps none.
pub(crate) const READ_AHEAD: usize = 32 * 1024;

/// Which direction of the stream carries the client's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tap {
    /// Server side: record what we read.
    Reads,
    /// Client side: record what we write.
    Writes,
}

/// A socket wrapper that records one direction during the TLS handshake, then gets out of the
/// way, and reads ahead of rustls' small reads.
#[derive(Debug)]
pub struct Recording<IO> {
    inner: IO,
    tap: Option<Tap>,
    recorded: Vec<u8>,
    overflow: bool,
    /// Read from the socket, not yet handed to the caller: `ahead[ahead_pos..]`.
    ahead: Vec<u8>,
    ahead_pos: usize,
    /// The client's ClientHello has been read (see [`HANDSHAKE_READ_LIMIT`]).
    hello_read: bool,
}

impl<IO> Recording<IO> {
    pub(crate) fn new(inner: IO, tap: Tap) -> Self {
        Recording {
            inner,
            tap: Some(tap),
            recorded: Vec::with_capacity(2048),
            overflow: false,
            ahead: Vec::new(),
            ahead_pos: 0,
            hello_read: false,
        }
    }

    /// The ClientHello has been read: from now on, reading pauses at [`HANDSHAKE_READ_LIMIT`]
    /// instead of failing.
    pub(crate) fn hello_read(&mut self) {
        self.hello_read = true;
    }

    /// Stop recording and hand over what was recorded; `None` if it outgrew the limit.
    pub(crate) fn finish(&mut self) -> Option<Vec<u8>> {
        self.tap = None;
        let recorded = std::mem::take(&mut self.recorded);
        (!self.overflow).then_some(recorded)
    }

    fn record(&mut self, tap: Tap, bytes: &[u8]) {
        if self.tap != Some(tap) || self.overflow {
            return;
        }
        if self.recorded.len() + bytes.len() > MAX_RECORDED {
            self.overflow = true;
            self.recorded = Vec::new();
            return;
        }
        self.recorded.extend_from_slice(bytes);
    }

    /// Fill `buf` from the bytes read ahead; the heap buffer is dropped once drained.
    fn take_ahead(&mut self, buf: &mut ReadBuf<'_>) {
        let n = (self.ahead.len() - self.ahead_pos).min(buf.remaining());
        buf.put_slice(&self.ahead[self.ahead_pos..self.ahead_pos + n]);
        self.ahead_pos += n;
        if self.ahead_pos == self.ahead.len() {
            self.ahead = Vec::new();
            self.ahead_pos = 0;
        }
    }

    /// The wrapped socket (e.g. for its peer address).
    pub fn get_ref(&self) -> &IO {
        &self.inner
    }

    /// The wrapped socket, mutably.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.inner
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Recording<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.ahead_pos < this.ahead.len() {
            this.take_ahead(buf);
        } else {
            // While the client's handshake is recorded, never read past the limit.
            let cap = if this.tap == Some(Tap::Reads) {
                let left = HANDSHAKE_READ_LIMIT.saturating_sub(this.recorded.len());
                if left == 0 && this.hello_read {
                    // Not woken: the handshake's timeout ends the wait, or the handshake
                    // ends without more bytes and the next read after `finish` reads on.
                    return Poll::Pending;
                }
                if left == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the client's ClientHello is over 16 KiB",
                    )));
                }
                left
            } else {
                usize::MAX
            };
            if buf.remaining() >= READ_AHEAD && cap >= buf.remaining() {
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            } else {
                let mut stack = [MaybeUninit::<u8>::uninit(); READ_AHEAD];
                let want = READ_AHEAD.min(cap);
                let mut ahead = ReadBuf::uninit(&mut stack[..want]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
                let fresh = ahead.filled();
                let n = fresh.len().min(buf.remaining());
                buf.put_slice(&fresh[..n]);
                if n < fresh.len() {
                    this.ahead = fresh[n..].to_vec();
                }
            }
        }
        this.record(Tap::Reads, &buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Recording<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.record(Tap::Writes, &buf[..n]);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.tap == Some(Tap::Writes) {
            // While recording, write one slice at a time so we know exactly what went out.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// (client_random, CLIENT_HANDSHAKE_TRAFFIC_SECRET) as rustls reports them.
pub(crate) type ClientSecret = (Vec<u8>, Zeroizing<Vec<u8>>);

/// A per-connection `KeyLog` that keeps only the client handshake traffic secret.
#[derive(Debug, Default)]
pub(crate) struct SecretCapture {
    secret: Mutex<Option<ClientSecret>>,
}

impl SecretCapture {
    /// The (client_random, secret) pair rustls reported, if any.
    pub(crate) fn take(&self) -> Option<ClientSecret> {
        self.secret
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl rustls::KeyLog for SecretCapture {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if label == CLIENT_HANDSHAKE_SECRET_LABEL {
            *self
                .secret
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some((client_random.to_vec(), Zeroizing::new(secret.to_vec())));
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_HANDSHAKE_SECRET_LABEL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    /// A reader that hands out `data` in the chunks given and counts the reads.
    struct Chunks {
        chunks: Vec<Vec<u8>>,
        reads: usize,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            if this.chunks.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let chunk = &mut this.chunks[0];
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                this.chunks.remove(0);
            }
            Poll::Ready(Ok(()))
        }
    }

    impl Recording<Chunks> {
        fn get_inner_chunks_left(&self) -> usize {
            self.inner.chunks.iter().map(Vec::len).sum()
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read_in_order() {
        let data = pattern(50_000);
        let inner = Chunks {
            chunks: vec![data[..16_406].to_vec(), data[16_406..].to_vec()],
            reads: 0,
        };
        // our client's side: reads are not recorded, so not limited either
        let mut r = Recording::new(inner, Tap::Writes);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        loop {
            let n = r.read(&mut small).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
            if r.ahead_pos == r.ahead.len() {
                // Drained: nothing kept between reads.
                assert_eq!(r.ahead.capacity(), 0);
            }
        }
        assert_eq!(got, data);
        // Socket reads: the first chunk (16,406 B), READ_AHEAD and the last 826 B of the
        // second, then the end of the stream; 4 KB reads would have taken 15.
        assert_eq!(r.get_ref().reads, 4);
        assert_eq!(r.finish().expect("recorded"), Vec::<u8>::new());
    }

    /// The server's wrapper over a socket that delivers `data` in two reads, split at `first`.
    fn server_side(data: &[u8], first: usize) -> Recording<Chunks> {
        let inner = Chunks {
            chunks: vec![data[..first].to_vec(), data[first..].to_vec()],
            reads: 0,
        };
        Recording::new(inner, Tap::Reads)
    }

    /// Read in rustls' 4 KB steps until the end or an error.
    async fn read_all(r: &mut Recording<Chunks>) -> (Vec<u8>, Option<io::Error>) {
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        loop {
            match r.read(&mut small).await {
                Ok(0) => return (got, None),
                Ok(n) => got.extend_from_slice(&small[..n]),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    #[tokio::test]
    async fn a_client_hello_longer_than_the_limit_is_refused_without_reading_past_it() {
        let data = pattern(HANDSHAKE_READ_LIMIT + 5_000);
        let inner = Chunks {
            chunks: vec![data.clone()],
            reads: 0,
        };
        let mut r = Recording::new(inner, Tap::Reads);
        let (got, err) = read_all(&mut r).await;
        assert_eq!(
            got,
            data[..HANDSHAKE_READ_LIMIT],
            "all up to the limit, nothing after"
        );
        let err = err.expect("refused past the limit");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(r.ahead.is_empty(), "nothing read ahead past the limit");
        assert_eq!(r.get_inner_chunks_left(), 5_000);
        // While tapped, the recording holds exactly what the caller was given.
        assert_eq!(r.finish().expect("recorded"), got);
    }

    #[tokio::test]
    async fn after_the_hello_reading_pauses_at_the_limit_until_the_handshake_is_over() {
        let data = pattern(HANDSHAKE_READ_LIMIT + 5_000);
        let mut r = server_side(&data, 300);
        let mut hello = [0u8; 300];
        r.read_exact(&mut hello).await.expect("hello");
        r.hello_read();
        let mut got = hello.to_vec();
        let mut small = [0u8; 4096];
        while got.len() < HANDSHAKE_READ_LIMIT {
            let n = r.read(&mut small).await.expect("read");
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, data[..HANDSHAKE_READ_LIMIT]);
        // at the limit: no error, no byte, no end of stream; the read waits
        let paused = tokio::time::timeout(Duration::from_millis(50), r.read(&mut small)).await;
        assert!(paused.is_err(), "{paused:?}");
        assert_eq!(
            r.get_inner_chunks_left(),
            5_000,
            "nothing more taken from the socket"
        );
        // the handshake is over: the rest is read
        assert_eq!(r.finish().expect("recorded"), got);
        let (rest, err) = read_all(&mut r).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(rest, data[HANDSHAKE_READ_LIMIT..]);
    }

    #[tokio::test]
    async fn once_the_handshake_is_over_reads_are_not_limited() {
        let data = pattern(3 * HANDSHAKE_READ_LIMIT);
        let mut r = server_side(&data, 1_000);
        let mut hello = [0u8; 1_000];
        r.read_exact(&mut hello).await.expect("hello");
        assert_eq!(r.finish().expect("recorded"), data[..1_000]);
        let (rest, err) = read_all(&mut r).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(rest, data[1_000..]);
    }

    #[tokio::test]
    async fn large_buffers_read_straight_through() {
        let data = pattern(40_000);
        let inner = Chunks {
            chunks: vec![data.clone()],
            reads: 0,
        };
        let mut r = Recording::new(inner, Tap::Writes);
        let mut big = vec![0u8; 64 * 1024];
        let n = r.read(&mut big).await.expect("read");
        assert_eq!(&big[..n], &data[..]);
        assert!(r.ahead.is_empty());
        assert_eq!(r.read(&mut big).await.expect("eof"), 0);
        // Reads are not recorded on the client side.
        assert_eq!(r.finish().expect("recorded"), Vec::<u8>::new());
    }
}
