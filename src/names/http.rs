//! The HTTP(S) transport to the REST resolver (hyper-util's pooled client, rustls with the
//! system's roots). Bounded as the reference's `HttpResolver`: redirects are not followed (a
//! compromised resolver cannot bounce the Authorization header elsewhere), the body is read to
//! at most `max_response_bytes` (one byte more means "too large"), and the whole request runs
//! under `resolver_timeout_ms` in [`super::Resolver`].

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::names::ResolverAuth;

/// Idle connections kept to the resolver (the reference's manager keeps 10).
const POOL_IDLE: usize = 10;

/// What went wrong talking to the resolver (mapped to `ERR NAME ...` by [`super`]).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connection, TLS or HTTP protocol failure.
    #[error("transport failure: {0}")]
    Transport(String),
    /// The resolver answered with status >= 400.
    #[error("HTTP {0}")]
    Status(u16),
    /// The body is larger than `resolver_max_response_bytes`.
    #[error("response too large")]
    TooLarge,
    /// The request URL could not be built from the endpoint.
    #[error("bad URL: {0}")]
    Url(String),
}

/// A pooled client for one resolver endpoint.
pub struct HttpGet {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: String,
    auth: Option<HeaderValue>,
    max_bytes: usize,
}

impl HttpGet {
    /// A client for `base` (validated by the config: http(s), host, no userinfo).
    pub fn new(
        base: &str,
        auth: Option<&ResolverAuth>,
        max_bytes: usize,
    ) -> Result<Self, HttpError> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| HttpError::Transport(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(POOL_IDLE)
            .build(https);
        let auth = auth
            .map(|a| {
                let v = match a {
                    ResolverAuth::Bearer(t) => format!("Bearer {t}"),
                    ResolverAuth::Basic(u, p) => format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                    ),
                };
                let mut h = HeaderValue::from_str(&v)
                    .map_err(|_| HttpError::Url("resolver_auth has invalid characters".into()))?;
                h.set_sensitive(true);
                Ok(h)
            })
            .transpose()?;
        Ok(HttpGet {
            client,
            base: base.to_string(),
            auth,
            max_bytes,
        })
    }

    /// GET `<base><path>`: the body of a response with status < 400, within the size cap.
    pub async fn get(&self, path: &str) -> Result<Vec<u8>, HttpError> {
        let uri: hyper::Uri = format!("{}{}", self.base, path)
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url(e.to_string()))?;
        let mut req = hyper::Request::get(uri)
            .header(ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| HttpError::Url(e.to_string()))?;
        if let Some(a) = &self.auth {
            req.headers_mut().insert(AUTHORIZATION, a.clone());
        }
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        if status >= 400 {
            return Err(HttpError::Status(status));
        }
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| HttpError::Transport(e.to_string()))?;
            if let Some(d) = frame.data_ref() {
                if out.len() + d.len() > self.max_bytes {
                    return Err(HttpError::TooLarge);
                }
                out.extend_from_slice(d);
            }
        }
        Ok(out)
    }
}

/// Percent-encode every byte but RFC 3986's unreserved ones (the reference's `urlEncode True`),
/// so a name can never change the request path.
pub fn percent_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(super::percent_encode("alice.simplex"), "alice.simplex");
        assert_eq!(super::percent_encode("a/b c"), "a%2Fb%20c");
    }
}
