//! The one accept loop of every TCP listener: admit under [`ConnLimits`], close at once what
//! is over them, back off when the process is out of descriptors, and log problems at most
//! once per interval with a count, never with a peer address.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::limits::{ConnLimits, ConnPermit, Refused};

/// Shortest pause after a failed accept that is not the peer's fault.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause: descriptors free up when connections close, so keep trying this often.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this interval for each kind of problem.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts events and lets a log line through at most once per interval, with the count of
/// events since the last line.
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    pending: u64,
}

impl LogLimiter {
    /// A limiter letting one line through per `every`.
    pub fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            last: None,
            pending: 0,
        }
    }

    /// Count one event at `now`; `Some(n)` when a line is due, `n` events since the last one.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        match self.last {
            Some(t) if now.duration_since(t) < self.every => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.pending))
            }
        }
    }
}

/// Errors that concern one connection that was already gone; the next accept is fine.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Accept on `listener` until `shutdown`, handing each admitted connection with its permit to
/// `handler`, which must not block (spawn the connection's task and keep the permit in it).
///
/// `name` names the listener in log lines (e.g. `"SMP port 5223"`).
pub async fn serve_accepts<H>(
    name: &str,
    listener: TcpListener,
    limits: Arc<ConnLimits>,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(TcpStream, SocketAddr, ConnPermit),
{
    let mut refused_log = LogLimiter::new(LOG_INTERVAL);
    let mut error_log = LogLimiter::new(LOG_INTERVAL);
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if let Some(n) = error_log.hit(Instant::now()) {
                    tracing::warn!("{name}: accept failed {n} time(s) since the last report: {e}");
                }
                if peer_gone(&e) {
                    continue;
                }
                // Out of descriptors (EMFILE/ENFILE) or memory: nothing frees up by retrying
                // at once, so wait, longer each time, while open connections finish.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        match limits.try_acquire(peer.ip()) {
            Ok(permit) => {
                let _ = sock.set_nodelay(true);
                handler(sock, peer, permit);
            }
            Err(why) => {
                // Closing at once (RST rather than a lingering FIN) frees the descriptor now.
                let _ = sock.set_zero_linger();
                drop(sock);
                if let Some(n) = refused_log.hit(Instant::now()) {
                    let (total, per_ip) = limits.refused();
                    let caps = limits.caps();
                    let which = match why {
                        Refused::Total => format!("max_connections = {}", caps.total),
                        Refused::PerIp => format!("max_connections_per_ip = {}", caps.per_ip),
                    };
                    tracing::warn!(
                        "{name}: refused {n} connection(s) since the last report, the last over {which} \
                         (in all {total} over the total, {per_ip} over the per-address cap)"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::ConnCaps;

    #[test]
    fn log_limiter_reports_counts_once_per_interval() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.hit(t0), Some(1));
        for i in 1..100 {
            assert_eq!(l.hit(t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(l.hit(t0 + Duration::from_secs(11)), Some(100));
    }

    #[tokio::test]
    async fn over_the_cap_is_closed_and_permits_free_places() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let limits = ConnLimits::new(ConnCaps {
            total: 2,
            per_ip: 2,
        });
        let sd = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(serve_accepts(
            "test",
            l,
            limits.clone(),
            sd.clone(),
            move |s, _, p| {
                let _ = tx.send((s, p));
            },
        ));
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let first = rx.recv().await.expect("first");
        let _second = rx.recv().await.expect("second");
        // The third is closed by the server: reading gives EOF or a reset.
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut clients[2], &mut buf),
        )
        .await
        .expect("closed in time");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        assert_eq!(limits.refused(), (1, 0));
        drop(first);
        let _c = TcpStream::connect(addr).await.expect("connect");
        let _fourth = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("admitted after a place freed");
        sd.cancel();
        task.await.expect("loop ends");
    }
}
