//! `[NAMES]` (reference 7.0): the names role, which answers `RSLV` by asking a REST resolver
//! (`GET <resolver_endpoint>/resolve/<name>`). Keys, defaults, bounds and the URL rules are the
//! reference's (`readNamesConfig`, `validateUrl`, `parseRpcAuth`); an invalid value stops start
//! with an error naming the key. When `enable` is off no other key is read, as the reference.

use super::read::Reader;
use super::ConfigError;

const NAMES: &str = "NAMES";

/// Keys of `[NAMES]`.
pub(crate) const KEYS: &[&str] = &[
    "enable",
    "resolver_endpoint",
    "resolver_auth",
    "resolver_timeout_ms",
    "resolver_max_response_bytes",
    "resolver_concurrency",
];

/// The reference's `defaultNameResolverConcurrency`: per connection, because forwarded RSLVs of
/// many clients share one proxy connection.
pub const DEFAULT_CONCURRENCY: usize = 1000;

/// How the resolver authenticates us.
#[derive(Clone, PartialEq, Eq)]
pub enum ResolverAuth {
    /// `bearer <token>`.
    Bearer(String),
    /// `basic <user>:<password>`.
    Basic(String, String),
}

impl std::fmt::Debug for ResolverAuth {
    // Secrets never reach logs, even through a Debug of the whole config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolverAuth::Bearer(_) => f.write_str("Bearer <redacted>"),
            ResolverAuth::Basic(u, _) => write!(f, "Basic {u:?} <redacted>"),
        }
    }
}

/// `[NAMES]` when `enable = on`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// `resolver_endpoint`: absolute http(s) URL without userinfo; trailing '/' removed.
    pub endpoint: String,
    /// `resolver_auth`.
    pub auth: Option<ResolverAuth>,
    /// `resolver_timeout_ms` (100..=60000, default 3000).
    pub timeout_ms: u64,
    /// `resolver_max_response_bytes` (1024..=16000, default 16000).
    pub max_response_bytes: usize,
    /// `resolver_concurrency`: resolutions in flight per connection (default 1000).
    pub concurrency: usize,
}

/// Read `[NAMES]`; `None` when the names role is off.
pub(crate) fn read(r: &Reader<'_>) -> Result<Option<Names>, ConfigError> {
    if !r.on_off_or(NAMES, "enable", false)? {
        return Ok(None);
    }
    let auth = match r.raw(NAMES, "resolver_auth") {
        None => None,
        Some(v) => Some(parse_auth(v).map_err(|p| {
            r.invalid(
                NAMES,
                "resolver_auth",
                "<hidden>",
                p,
                "use resolver_auth = bearer <token> or resolver_auth = basic <user>:<password>",
            )
        })?),
    };
    let raw = r.raw(NAMES, "resolver_endpoint").ok_or_else(|| {
        r.invalid(
            NAMES,
            "resolver_endpoint",
            "",
            "is required when enable = on",
            "add e.g. resolver_endpoint = http://127.0.0.1:8000",
        )
    })?;
    let endpoint = validate_url(raw, auth.is_some()).map_err(|p| {
        r.invalid(
            NAMES,
            "resolver_endpoint",
            raw,
            p,
            "use an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000",
        )
    })?;
    let bounded = |key: &'static str, def: u64, lo: u64, hi: u64| -> Result<u64, ConfigError> {
        let Some(v) = r.raw(NAMES, key) else {
            return Ok(def);
        };
        let n: i64 = v.trim().parse().map_err(|_| {
            r.invalid(
                NAMES,
                key,
                v,
                "not an integer",
                format!("use e.g. {key} = {def}"),
            )
        })?;
        if n < lo as i64 || n > hi as i64 {
            return Err(r.invalid(
                NAMES,
                key,
                v,
                format!("must be in [{lo}..{hi}]"),
                format!("use e.g. {key} = {def}"),
            ));
        }
        Ok(n as u64)
    };
    let timeout_ms = bounded("resolver_timeout_ms", 3000, 100, 60000)?;
    let max_response_bytes = bounded("resolver_max_response_bytes", 16000, 1024, 16000)? as usize;
    let concurrency = match r.number::<usize>(NAMES, "resolver_concurrency", "1000")? {
        Some(0) => {
            return Err(r.invalid(
                NAMES,
                "resolver_concurrency",
                "0",
                "must be at least 1",
                "use e.g. resolver_concurrency = 1000",
            ))
        }
        Some(n) => n,
        None => DEFAULT_CONCURRENCY,
    };
    Ok(Some(Names {
        endpoint,
        auth,
        timeout_ms,
        max_response_bytes,
        concurrency,
    }))
}

/// The `[NAMES]` section `init` writes: off, every key shown with its default.
pub(crate) fn template(out: &mut String) {
    out.push_str(
        "[NAMES]\n\
         # SimpleX names (SMP v20 RSLV): resolve names through a REST resolver you run\n\
         # (GET <resolver_endpoint>/resolve/<name>), e.g. the reference's snrc-resolve.py.\n\
         enable: off\n\
         # resolver_endpoint: http://127.0.0.1:8000\n\
         # A resolver on another host needs https when resolver_auth is set:\n\
         # resolver_endpoint: https://names.example.com\n\
         # resolver_auth is `bearer <token>` or `basic <user>:<password>`:\n\
         # resolver_auth: bearer <token>\n\
         # Timeout 100..60000 ms; largest answer 1024..16000 bytes:\n\
         # resolver_timeout_ms: 3000\n\
         # resolver_max_response_bytes: 16000\n\
         # Name resolutions in flight per connection (a proxy's connection carries many\n\
         # clients' requests, so this is much higher than [PROXY] client_concurrency).\n",
    );
    out.push_str(&format!(
        "# resolver_concurrency = {DEFAULT_CONCURRENCY}\n\n"
    ));
}

/// `bearer <token>` / `basic <user>:<pass>`, the scheme case-insensitive (as the reference).
pub fn parse_auth(v: &str) -> Result<ResolverAuth, String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    match words.as_slice() {
        [scheme, tok] if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(ResolverAuth::Bearer((*tok).to_string()))
        }
        [scheme, up] if scheme.eq_ignore_ascii_case("basic") => match up.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(ResolverAuth::Basic(u.into(), p.into())),
            _ => Err("basic auth expects user:password".into()),
        },
        _ => Err("expected `bearer <token>` or `basic <user>:<pass>`".into()),
    }
}

/// The reference's `validateUrl`: absolute http(s) URL with a non-empty host and no userinfo;
/// with `resolver_auth`, plain http only to a loopback host. Returns it without trailing '/'.
pub fn validate_url(url: &str, has_auth: bool) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or("not an absolute URI")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("scheme must be http or https".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("userinfo (user:pass@) not allowed; put credentials in resolver_auth".into());
    }
    let host = if authority.starts_with('[') {
        authority
            .find(']')
            .map(|i| &authority[..=i])
            .unwrap_or(authority)
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0");
    if scheme == "http" && has_auth && !loopback {
        return Err("http with resolver_auth on a non-loopback host not allowed (the Authorization header would travel in cleartext); use https, or drop resolver_auth".into());
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ini::Ini;

    fn read_text(t: &str) -> Result<Option<Names>, ConfigError> {
        let ini = Ini::parse(t).expect("ini");
        read(&Reader { ini: &ini })
    }

    #[test]
    fn defaults_bounds_and_urls() {
        assert_eq!(
            read_text("[NAMES]\nenable: off\nresolver_timeout_ms: x\n").ok(),
            Some(None)
        );
        let n = read_text("[NAMES]\nenable: on\nresolver_endpoint: http://127.0.0.1:8000/\n")
            .expect("ok")
            .expect("on");
        assert_eq!(n.endpoint, "http://127.0.0.1:8000");
        assert_eq!(
            (n.timeout_ms, n.max_response_bytes, n.concurrency),
            (3000, 16000, 1000)
        );
        assert!(read_text("[NAMES]\nenable: on\n").is_err());
        for bad in [
            "resolver_timeout_ms: 99",
            "resolver_timeout_ms: 60001",
            "resolver_max_response_bytes: 1023",
            "resolver_max_response_bytes: 16001",
            "resolver_concurrency: 0",
            "resolver_auth: token",
        ] {
            let t = format!("[NAMES]\nenable: on\nresolver_endpoint: http://127.0.0.1\n{bad}\n");
            assert!(read_text(&t).is_err(), "{bad}");
        }
        assert!(validate_url("ftp://x", false).is_err());
        assert!(validate_url("http://u:p@x", false).is_err());
        assert!(validate_url("http:///x", false).is_err());
        assert!(validate_url("http://names.example.com", true).is_err());
        assert!(validate_url("http://localhost:8000", true).is_ok());
        assert!(validate_url("https://names.example.com:443", true).is_ok());
        assert_eq!(
            parse_auth("Basic user:pa:ss"),
            Ok(ResolverAuth::Basic("user".into(), "pa:ss".into()))
        );
        assert_eq!(parse_auth("BEARER t"), Ok(ResolverAuth::Bearer("t".into())));
        assert!(format!("{:?}", ResolverAuth::Bearer("secret".into()))
            .find("secret")
            .is_none());
    }
}
