//! HTTP request handling: ACME HTTP-01 answers, the redirect to HTTPS, and static files from
//! the generated site with content types, gzip and no way out of the site directory.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::certs::WebCerts;

/// Files larger than this are not served (the generated site is a few KB).
const MAX_FILE: u64 = 8 * 1024 * 1024;

/// What the HTTP handler needs.
#[derive(Debug)]
pub struct Site {
    /// Directory of the generated site; `None` serves only ACME answers and redirects.
    pub root: Option<PathBuf>,
    /// Certificates (for the redirect decision) and ACME challenges.
    pub certs: Arc<WebCerts>,
    /// The HTTPS port to redirect plain HTTP to, when a certificate exists.
    pub https_port: Option<u16>,
}

/// Serve HTTP/1.1 or HTTP/2 on `io` until the client goes away, stays silent past
/// `timeouts`, or `shutdown`.
pub async fn serve_connection<IO>(
    io: IO,
    site: Arc<Site>,
    secure: bool,
    timeouts: crate::net::http::HttpTimeouts,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = move |req| {
        let site = site.clone();
        async move { handle(&site, req, secure).await }
    };
    crate::net::http::serve_http(io, handler, timeouts, shutdown).await;
}

type Resp = Response<Full<Bytes>>;

fn simple(status: StatusCode, text: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answer one request.
pub async fn handle<B>(site: &Site, req: Request<B>, secure: bool) -> Resp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = simple(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    if path.starts_with(smp_acme::challenges::HTTP01_PREFIX) {
        return match site.certs.challenges().http01_path(path) {
            Some(answer) => {
                tracing::debug!("web: answered an HTTP-01 challenge");
                let mut r = Response::new(Full::new(Bytes::from(answer)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                r
            }
            None => simple(StatusCode::NOT_FOUND, "no such challenge\n"),
        };
    }
    if !secure {
        if let Some(port) = site.https_port.filter(|_| site.certs.has_cert()) {
            if let Some(r) = redirect(&req, port) {
                return r;
            }
        }
    }
    let Some(root) = &site.root else {
        return simple(StatusCode::NOT_FOUND, "not found\n");
    };
    let gzip = accepts_gzip(req.headers().get(header::ACCEPT_ENCODING));
    match static_file(root, path).await {
        Some((file, body)) => file_response(&file, body, gzip, secure),
        None => not_found(root).await,
    }
}

/// `301` to the same host and path on HTTPS.
fn redirect<B>(req: &Request<B>, port: u16) -> Option<Resp> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())?;
    let host = strip_port(host);
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return None;
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    };
    let mut r = simple(StatusCode::MOVED_PERMANENTLY, "moved to HTTPS\n");
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(&location).ok()?);
    Some(r)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

fn accepts_gzip(v: Option<&HeaderValue>) -> bool {
    let Some(v) = v.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    v.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let q_zero = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
    })
}

/// Map a URL path to a file under `root`; `None` for anything outside it or missing.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    let mut rel = PathBuf::new();
    for seg in decoded.split('/') {
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg == ".." || seg.contains('\\') || seg.contains('\0') {
            return None;
        }
        rel.push(seg);
    }
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut full = root.join(&rel);
    if full.is_dir() {
        full.push("index.html");
    }
    // Symbolic links must not lead out of the site either.
    let canon_root = root.canonicalize().ok()?;
    let canon = full.canonicalize().ok()?;
    (canon.starts_with(&canon_root) && canon.is_file()).then_some(canon)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn static_file(root: &Path, url_path: &str) -> Option<(PathBuf, Vec<u8>)> {
    let root = root.to_path_buf();
    let url_path = url_path.to_string();
    let file = tokio::task::spawn_blocking(move || resolve(&root, &url_path))
        .await
        .ok()??;
    let meta = tokio::fs::metadata(&file).await.ok()?;
    if meta.len() > MAX_FILE {
        return None;
    }
    let body = tokio::fs::read(&file).await.ok()?;
    Some((file, body))
}

async fn not_found(root: &Path) -> Resp {
    match tokio::fs::read(root.join("404.html")).await {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Err(_) => simple(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The content type of a file, by its name.
pub fn content_type(path: &Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == "apple-app-site-association" {
        return "application/json";
    }
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn compressible(ct: &str) -> bool {
    ct.starts_with("text/") || ct == "application/json" || ct == "image/svg+xml"
}

fn file_response(file: &Path, body: Vec<u8>, gzip: bool, secure: bool) -> Resp {
    let ct = content_type(file);
    let (body, gzipped) = if gzip && compressible(ct) && body.len() > 256 {
        match gzip_bytes(&body) {
            Some(z) => (z, true),
            None => (body, false),
        }
    } else {
        (body, false)
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=600"),
    );
    if compressible(ct) {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    r
}

fn gzip_bytes(data: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).ok()?;
    enc.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_way_out_of_the_site() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("contact")).expect("mkdir");
        std::fs::write(root.join("index.html"), "i").expect("write");
        std::fs::write(root.join("contact/index.html"), "c").expect("write");
        std::fs::write(dir.path().join("secret"), "s").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).expect("symlink");
        let ok = |p: &str| resolve(&root, p).is_some();
        assert!(ok("/"));
        assert!(ok("/contact"));
        assert!(ok("/contact/"));
        assert!(ok("/%63ontact"));
        assert!(!ok("/../secret"));
        assert!(!ok("/%2e%2e/secret"));
        assert!(!ok("/contact/..%2f..%2fsecret"));
        assert!(!ok("/link"));
        assert!(!ok("/missing"));
        assert!(!ok("/%zz"));
    }

    #[test]
    fn gzip_negotiation() {
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(accepts_gzip(v("gzip, deflate, br").as_ref()));
        assert!(accepts_gzip(v("br;q=1.0, gzip;q=0.8").as_ref()));
        assert!(!accepts_gzip(v("gzip;q=0").as_ref()));
        assert!(!accepts_gzip(v("br").as_ref()));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn types_and_hosts() {
        assert_eq!(
            content_type(Path::new("a/index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new(".well-known/apple-app-site-association")),
            "application/json"
        );
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
