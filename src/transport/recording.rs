//! The two taps that let us compute tls-unique with rustls' public API only.
//!
//! [`Recording`] wraps the socket and keeps a copy of the client's bytes (what the server reads,
//! or what our client writes) until the handshake is over; [`SecretCapture`] is a per-connection
//! `KeyLog` that keeps the client handshake traffic secret. `tls_unique` turns the two into the
//! client's Finished.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zeroize::Zeroizing;

use super::tls_unique::CLIENT_HANDSHAKE_SECRET_LABEL;

/// Upper bound on what we keep: a client flight is a few hundred bytes, a few KB with client
/// certificates; anything larger is not a handshake we want to finish.
const MAX_RECORDED: usize = 256 * 1024;

/// Which direction of the stream carries the client's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tap {
    /// Server side: record what we read.
    Reads,
    /// Client side: record what we write.
    Writes,
}

/// A socket wrapper that records one direction during the TLS handshake, then gets out of the way.
#[derive(Debug)]
pub struct Recording<IO> {
    inner: IO,
    tap: Option<Tap>,
    recorded: Vec<u8>,
    overflow: bool,
}

impl<IO> Recording<IO> {
    pub(crate) fn new(inner: IO, tap: Tap) -> Self {
        Recording {
            inner,
            tap: Some(tap),
            recorded: Vec::with_capacity(2048),
            overflow: false,
        }
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
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            this.record(Tap::Reads, &buf.filled()[before..]);
        }
        res
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

/// A per-connection `KeyLog` that keeps only the client handshake traffic secret.
#[derive(Debug, Default)]
pub(crate) struct SecretCapture {
    secret: Mutex<Option<(Vec<u8>, Zeroizing<Vec<u8>>)>>,
}

impl SecretCapture {
    /// The (client_random, secret) pair rustls reported, if any.
    pub(crate) fn take(&self) -> Option<(Vec<u8>, Zeroizing<Vec<u8>>)> {
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
