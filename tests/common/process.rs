//! Helpers for tests that run the real `smp-server` binary as a child process.

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use smp_server::client::{ClientOptions, SmpClient};

/// A loopback port that was free a moment ago (for a child process to bind).
///
/// Ports are drawn at random from below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`): a port from `bind(0)` lies inside it, where any
/// outgoing connection made meanwhile (by this test or another suite running at the same time)
/// may take it as its local port, and the child's `bind` then fails with "address in use". Ports
/// already given out by this test process are skipped, so two servers started by one test never
/// share a port.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    let state = std::collections::hash_map::RandomState::new();
    for attempt in 0u64.. {
        let port = if ephemeral_low > LOW + 1_000 && attempt < 10_000 {
            let mut h = state.build_hasher();
            h.write_u64(attempt);
            h.write_u32(std::process::id());
            LOW + (h.finish() % u64::from(ephemeral_low - LOW)) as u16
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")
                .expect("bind")
                .local_addr()
                .expect("addr")
                .port()
        };
        // Free on every address a server may bind (the wildcard conflicts with 127.0.0.1 too).
        let free = std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free && given.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
    unreachable!("the loop above only ends by returning")
}

/// A child process that is killed (and reaped) when the test lets go of it, also on panic.
pub struct Running(pub Child);

impl Running {
    /// What the exited process printed, stdout then stderr (for assertions and panics).
    pub fn output(&mut self) -> String {
        use std::io::Read;
        let mut out = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut out);
        }
        out
    }
}

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
