//! One HTTP/1.1 + HTTP/2 connection runner (hyper) for every HTTP listener: the web page,
//! the web side of a shared SMP port, and Prometheus.
//!
//! hyper bounds the headers of an HTTP/1 request in time; nothing in hyper closes a
//! connection that says nothing (before its first request, inside a partial HTTP/2 preface,
//! or an idle HTTP/2 connection), so an outer timer watches the bytes that actually move.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::config::limits::HttpTimeouts;

/// Largest buffered HTTP/1 request head.
const MAX_HTTP1_BUF: usize = 64 * 1024;
/// Streams one HTTP/2 connection may have open at once.
const MAX_H2_STREAMS: u32 = 16;
/// Largest HTTP/2 header list.
const MAX_H2_HEADERS: u32 = 16 * 1024;

/// When bytes last moved on a connection.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last_ms: AtomicU64,
    /// Whether the peer has sent anything yet.
    heard: AtomicBool,
}

impl Activity {
    fn touch(&self, read: bool) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
        if read {
            self.heard.store(true, Ordering::Relaxed);
        }
    }

    /// When the connection is to be closed if nothing moves until then.
    fn deadline(&self, t: &HttpTimeouts) -> Instant {
        if self.heard.load(Ordering::Relaxed) {
            self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + t.idle
        } else {
            self.start + t.first_byte
        }
    }
}

/// A stream that records its activity.
struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch(true);
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(false);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body of the HTTP services here: always complete in memory.
pub type Body = Full<Bytes>;

/// Serve HTTP/1.1 or HTTP/2 (by the client's first bytes) on `io` with `handle` until the
/// client goes away, stays silent past `timeouts`, or `shutdown`.
pub async fn serve_http<IO, F, Fut>(
    io: IO,
    handle: F,
    timeouts: HttpTimeouts,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        heard: AtomicBool::new(false),
    });
    let io = Watched {
        io,
        activity: activity.clone(),
    };
    let service = hyper::service::service_fn(move |req| {
        let h = handle.clone();
        async move { Ok::<_, Infallible>(h(req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.idle)
        .max_buf_size(MAX_HTTP1_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(MAX_H2_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    loop {
        let deadline = activity.deadline(&timeouts);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("HTTP connection: {e}");
                }
                return;
            }
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {
                if activity.deadline(&timeouts) <= Instant::now() {
                    tracing::debug!("HTTP connection closed: silent too long");
                    return;
                }
            }
        }
    }
}
