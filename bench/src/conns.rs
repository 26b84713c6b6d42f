//! Connections: the server's CPU per TLS + SMP handshake, and its RSS per idle client.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use smp_server::client::{ClientOptions, SmpClient};
use tokio::sync::Semaphore;

use crate::flood::{Flood, CHECK_EVERY};
use crate::server::Server;

fn opts() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    }
}

/// What the server spent per handshake.
pub struct HandshakeCost {
    /// Server CPU microseconds per completed handshake.
    pub cpu_us: f64,
    /// The kernel's part of `cpu_us` (tick samples).
    pub kernel_us: f64,
    /// Context switches of the server's threads per handshake.
    pub ctx_switches: f64,
}

/// The server's cost per completed handshake over `n` connections of the real client,
/// `parallel` at a time (each closed right after its SMP handshake).
pub async fn handshake_cost(server: &Server, n: usize, parallel: usize) -> Result<HandshakeCost> {
    let (addr, fp) = (server.addr, server.fingerprint);
    measure(server, n, parallel, move |_| async move {
        SmpClient::connect(addr, fp, opts()).await.map(drop)?;
        Ok(())
    })
    .await
}

/// The same with the [`Flood`] client, which leaves the server the larger share of the CPUs:
/// the server's cost per handshake at capacity. With `x25519`, the client offers only an
/// X25519 key share.
pub async fn handshake_cost_at_capacity(
    server: &Server,
    n: usize,
    parallel: usize,
    x25519: bool,
) -> Result<HandshakeCost> {
    let flood = Arc::new(Flood::new(server.fingerprint, x25519)?);
    let addr = server.addr;
    // The check outside the measured window too, so a refused hello fails before any figure.
    flood.handshake(addr, true).await?;
    measure(server, n, parallel, move |i| {
        let flood = flood.clone();
        async move { flood.handshake(addr, i % CHECK_EVERY == 0).await }
    })
    .await
}

/// Run `connect(i)` for `i` in `0..n`, `parallel` at a time, and divide the server's CPU time
/// and context switches over the run by `n`.
async fn measure<F, Fut>(
    server: &Server,
    n: usize,
    parallel: usize,
    connect: F,
) -> Result<HandshakeCost>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(parallel));
    // Let the previous phase's connections finish closing first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (user0, kernel0) = server.cpu_split()?;
    let ctx0 = server.ctx_switches()?;
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let fut = connect(i);
        tasks.push(tokio::spawn(async move {
            let r = fut.await;
            drop(permit);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    // The server's side of the closes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (user1, kernel1) = server.cpu_split()?;
    let ctx = server.ctx_switches()?.saturating_sub(ctx0);
    let kernel = kernel1.saturating_sub(kernel0);
    let cpu = user1.saturating_sub(user0) + kernel;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    Ok(HandshakeCost {
        cpu_us: per(cpu),
        kernel_us: per(kernel),
        ctx_switches: ctx as f64 / n as f64,
    })
}

/// RSS bytes per idle client: `n` connections that completed the SMP handshake and stay open.
pub async fn rss_per_connection(server: &Server, n: usize) -> Result<f64> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss()?;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(SmpClient::connect(server.addr, server.fingerprint, opts()).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss()?;
    drop(held);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}
