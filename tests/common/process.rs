//! Helpers for tests that run the real `smp-server` binary as a child process.

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use smp_server::client::{ClientOptions, SmpClient};

/// A loopback port that was free a moment ago (for a child process to bind).
///
/// The kernel may hand the same ephemeral port to two `bind(0)` calls once the first listener is
/// closed, so ports already given out by this test process are skipped: two servers started by
/// one test never get the same port for their SMP and control listeners.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if given.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// A child process that is killed (and reaped) when the test lets go of it, also on panic.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connect an SMP client to a starting server, retrying until it answers or `limit` passes.
pub async fn connect_when_up(
    addr: SocketAddr,
    fingerprint: [u8; 32],
    limit: Duration,
) -> SmpClient {
    let deadline = Instant::now() + limit;
    loop {
        match SmpClient::connect(addr, fingerprint, ClientOptions::default()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() >= deadline => {
                panic!("the server at {addr} did not answer within {limit:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Wait until `path` exists with non-empty content (a file a starting server writes, such as
/// `onion-address`) and return it trimmed; panics after `limit`.
pub async fn wait_for_file(path: &std::path::Path, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.trim().is_empty() {
                return s.trim().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear in {limit:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
