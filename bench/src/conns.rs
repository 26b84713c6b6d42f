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

/// Server CPU microseconds per completed handshake over `n` connections, `parallel` at a time
/// (each closed right after its SMP handshake), and the kernel's part of it.
pub async fn handshake_cpu_us(server: &Server, n: usize, parallel: usize) -> Result<(f64, f64)> {
    let gate = Arc::new(Semaphore::new(parallel));
    // Let the previous phase's connections finish closing first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (user0, kernel0) = server.cpu_split()?;
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
    let kernel = kernel1.saturating_sub(kernel0);
    let cpu = user1.saturating_sub(user0) + kernel;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    Ok((per(cpu), per(kernel)))
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
