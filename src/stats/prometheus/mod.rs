//! Prometheus metrics in the reference's text (metric names, labels and their typos are an
//! interface: dashboards use them), written to `smp-server-metrics.txt` every
//! `prometheus_interval` and served over HTTP on `prometheus_address`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::counters::ServerStats;
use super::period::iso_time;
use super::ServerView;
use super::{EntityCounts, RealTime};

/// Everything one rendering needs.
pub struct Snapshot<'a> {
    /// The counters.
    pub stats: &'a ServerStats,
    /// Store counts.
    pub counts: EntityCounts,
    /// Real-time metrics.
    pub rt: RealTime,
    /// Time of the snapshot, Unix milliseconds.
    pub now_ms: i64,
}

mod info;
mod messages;
mod queues;
mod relays;
mod services;
mod writer;

use writer::W;

/// Render the metrics text.
pub fn render(s: &Snapshot<'_>) -> String {
    let st = s.stats;
    let mut w = W {
        out: String::with_capacity(24 * 1024),
        ts: s.now_ms.to_string(),
    };
    let from = st.from_time.load(std::sync::atomic::Ordering::Relaxed);
    let _ = write!(
        w.out,
        "# Recorded at: {}\n# Stats from: {}\n\n",
        iso_time(s.now_ms.div_euclid(1000)),
        iso_time(from)
    );
    queues::queues(&mut w, s);
    messages::messages(&mut w, s);
    relays::relays_group(&mut w, st);
    services::services_group(&mut w, st, &s.counts);
    info::info(&mut w, s);
    w.out
}

/// Render the current metrics of a running server.
pub fn render_state(state: &dyn ServerView) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let snap = Snapshot {
        stats: state.stats(),
        counts: state.entity_counts(),
        rt: state.realtime(now_ms / 1000),
        now_ms,
    };
    render(&snap)
}

/// Write the metrics file every `interval` until `shutdown`.
pub async fn run_file_writer(
    state: Arc<dyn ServerView>,
    path: PathBuf,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let text = render_state(state.as_ref());
        let tmp = path.with_extension("txt.tmp");
        if let Err(e) = crate::fsmode::write_private(&tmp, text.as_bytes())
            .and_then(|_| std::fs::rename(&tmp, &path))
        {
            tracing::error!("writing Prometheus metrics to {}: {e}", path.display());
        }
    }
}

/// Serve `GET /metrics` (and `/`) over HTTP until `shutdown`, through the same HTTP stack,
/// connection caps and timeouts as the web page.
pub async fn run_http(
    state: Arc<dyn ServerView>,
    listener: TcpListener,
    limits: Arc<crate::net::ConnLimits>,
    timeouts: crate::net::http::HttpTimeouts,
    shutdown: CancellationToken,
) {
    let sd = shutdown.clone();
    crate::net::serve_accepts(
        "Prometheus",
        listener,
        limits,
        shutdown,
        move |sock, _, permit| {
            let st = state.clone();
            let handler = move |req: hyper::Request<hyper::body::Incoming>| {
                let st = st.clone();
                async move { metrics_response(st.as_ref(), req.method(), req.uri().path()) }
            };
            let sd = sd.clone();
            tokio::spawn(async move {
                crate::net::http::serve_http(sock, handler, timeouts, sd).await;
                drop(permit);
            });
        },
    )
    .await;
}

fn metrics_response(
    state: &dyn ServerView,
    method: &hyper::Method,
    path: &str,
) -> hyper::Response<crate::net::http::Body> {
    use hyper::{header, Method, StatusCode};
    let (status, ctype, body) = match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics" | "/") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_state(state),
        ),
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: use /metrics\n".into(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET /metrics\n".into(),
        ),
    };
    let mut r = hyper::Response::new(crate::net::http::Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    // One scrape per connection, as before hyper: simple scrapers read until the server closes.
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}
