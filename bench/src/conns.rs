//! Connections: the server's CPU per TLS + SMP handshake, and its RSS per idle client.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use smp_server::client::{ClientOptions, SmpClient};
use tokio::sync::Semaphore;

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

/// The server's cost per completed handshake over `n` connections, `parallel` at a time (each
/// closed right after its SMP handshake).
pub async fn handshake_cost(server: &Server, n: usize, parallel: usize) -> Result<HandshakeCost> {
    let gate = Arc::new(Semaphore::new(parallel));
    // Let the previous phase's connections finish closing first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (user0, kernel0) = server.cpu_split()?;
    let ctx0 = server.ctx_switches()?;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let (addr, fp) = (server.addr, server.fingerprint);
        tasks.push(tokio::spawn(async move {
            let c = SmpClient::connect(addr, fp, opts()).await;
            drop(permit);
            c.map(drop)
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
