//! TLS to PostgreSQL with libpq's meaning of `sslmode`, `sslrootcert`, `sslcert` and `sslkey`.
//!
//! The reference connects through libpq, so operators' `db_connection` strings (and managed
//! databases' instructions) use libpq's TLS parameters. The driver here (tokio-postgres) knows
//! only `sslmode=disable|prefer|require` and rejects the rest, so these parameters are taken
//! off the string first and carried out with rustls:
//!
//! | sslmode | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (the default) | if the server offers it | as `require` |
//! | `require` | always | chain, if a root certificate is given or `~/.postgresql/root.crt` exists; else not |
//! | `verify-ca` | always | chain against the root certificate |
//! | `verify-full` | always | chain and host name |
//!
//! `sslrootcert=system` takes the operating system's roots. `PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGSSLCERT` and `PGSSLKEY` apply where the string is silent, as with libpq. A client
//! certificate (`sslcert` + `sslkey`, PEM) is sent when the server asks for one. Unix sockets
//! are never encrypted (PostgreSQL does not offer TLS there).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::db::DbError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt if the server insists (treated as `prefer`: encrypting when offered is safer).
    Allow,
    /// Encrypt if the server offers it (libpq's default).
    Prefer,
    /// Always encrypt.
    Require,
    /// Always encrypt, and check the certificate chain.
    VerifyCa,
    /// Always encrypt, and check the chain and the host name.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<Self, DbError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(DbError::Config(format!(
                "sslmode `{other}`: use disable, allow, prefer, require, verify-ca or verify-full"
            )))
            }
        })
    }
}

/// The TLS parameters of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file, or `system`.
    pub root_cert: Option<String>,
    /// `sslcert`: the client certificate chain (PEM).
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
}

impl TlsParams {
    /// The driver's own mode: the TLS decision is the driver's, the certificate checks ours.
    pub fn driver_mode(&self, tcp: bool) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self.mode {
            _ if !tcp => D::Disable,
            SslMode::Disable => D::Disable,
            SslMode::Allow | SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }

    /// The rustls connector these parameters ask for.
    pub fn connector(&self) -> Result<MakeRustlsConnect, DbError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match self.root_cert.as_deref() {
            Some(r) => Some(load_roots(r)?),
            None => default_root_file()
                .filter(|p| p.exists())
                .map(|p| load_roots(&p.to_string_lossy()))
                .transpose()?,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, roots) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(DbError::Config(format!(
                    "sslmode={} needs the server's root certificate: add sslrootcert=<PEM file> (or sslrootcert=system) to db_connection",
                    if self.mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
                )))
            }
            (SslMode::VerifyFull, Some(roots)) => webpki(roots, &provider)?,
            (_, Some(roots)) => Arc::new(ChainOnly(webpki(roots, &provider)?)),
            (_, None) => Arc::new(Unchecked(provider.clone())),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| file_err("sslcert", cert, e))?;
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| file_err("sslkey", key, e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_err(format!("sslcert/sslkey: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(DbError::Config(
                    "sslcert and sslkey go together: give both files or neither".into(),
                ))
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

fn tls_err(what: String) -> DbError {
    DbError::Config(format!("TLS to PostgreSQL: {what}"))
}

fn file_err(key: &str, path: &Path, e: impl std::fmt::Display) -> DbError {
    DbError::Config(format!("{key} {}: {e}", path.display()))
}

/// libpq's default root certificate file.
fn default_root_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
}

fn load_roots(spec: &str) -> Result<RootCertStore, DbError> {
    let mut roots = RootCertStore::empty();
    if spec == "system" {
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    } else {
        let path = Path::new(spec);
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| file_err("sslrootcert", path, e))?;
        roots.add_parsable_certificates(certs);
    }
    if roots.is_empty() {
        return Err(DbError::Config(format!(
            "sslrootcert {spec}: no certificate found"
        )));
    }
    Ok(roots)
}

fn webpki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, DbError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_err(e.to_string()))
}

/// `verify-ca` (and `require` with a root): the chain must lead to the root; the name is not
/// checked, as libpq does not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require` without a root certificate: encrypted against passive eavesdropping,
/// the certificate taken as offered (libpq's behaviour); the handshake signature is still
/// checked against it.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The connection string without libpq's TLS parameters (which the driver rejects), and
/// those parameters, with libpq's environment variables where the string is silent.
pub fn split(conn: &str) -> Result<(String, TlsParams), DbError> {
    let (rest, taken) = if conn.starts_with("postgresql://") || conn.starts_with("postgres://") {
        split_uri(conn)?
    } else {
        split_keywords(conn)?
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let get = |k: &str, e: &str| {
        taken
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .or_else(|| env(e))
    };
    let mode = match get("sslmode", "PGSSLMODE") {
        Some(m) => SslMode::parse(&m)?,
        None => SslMode::Prefer,
    };
    Ok((
        rest,
        TlsParams {
            mode,
            root_cert: get("sslrootcert", "PGSSLROOTCERT"),
            client_cert: get("sslcert", "PGSSLCERT").map(PathBuf::from),
            client_key: get("sslkey", "PGSSLKEY").map(PathBuf::from),
        },
    ))
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// `postgresql://...?k=v&...`: the query parameters named in [`TLS_KEYS`] are taken out
/// (percent-decoded); the rest is kept as written.
fn split_uri(uri: &str) -> Result<(String, Vec<(String, String)>), DbError> {
    let Some((base, query)) = uri.split_once('?') else {
        return Ok((uri.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = percent_decode(k)?;
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, percent_decode(v)?));
        } else {
            kept.push(part);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, taken))
}

fn percent_decode(s: &str) -> Result<String, DbError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| DbError::Config(format!("bad percent-encoding in `{s}`")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DbError::Config(format!("`{s}` is not UTF-8")))
}

/// `key=value key='quoted value'` (libpq's keyword form): the keywords in [`TLS_KEYS`] are
/// taken out; the rest is written back quoted.
fn split_keywords(conn: &str) -> Result<(String, Vec<(String, String)>), DbError> {
    let bad = |what: &str| DbError::Config(format!("db_connection: {what}"));
    let mut chars = conn.chars().peekable();
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(&format!("`{key}` has no `=value`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or_else(|| bad("a lone `\\`"))?),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad("an unclosed quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or_else(|| bad("a lone `\\`"))?);
                } else {
                    value.push(c);
                }
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_strings_lose_only_the_tls_keys() {
        let (rest, t) = split(
            "host=db.example.com port=5432 sslmode=verify-full sslrootcert='/etc/ssl/my ca.pem' password='a\\'b c' user=smp",
        )
        .expect("parses");
        assert_eq!(
            rest,
            "host='db.example.com' port='5432' password='a\\'b c' user='smp'"
        );
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some("/etc/ssl/my ca.pem"));
        let parsed: tokio_postgres::Config = rest.parse().expect("the driver takes the rest");
        assert_eq!(parsed.get_password(), Some(&b"a'b c"[..]));
    }

    #[test]
    fn uris_lose_only_the_tls_keys() {
        let (rest, t) = split(
            "postgresql://smp:pw@db.example.com:5432/smp?sslmode=require&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .expect("parses");
        assert_eq!(
            rest,
            "postgresql://smp:pw@db.example.com:5432/smp?application_name=x"
        );
        assert_eq!(t.mode, SslMode::Require);
        assert_eq!(t.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let (rest, _) = split("postgres://h/db?sslmode=disable").expect("parses");
        assert_eq!(rest, "postgres://h/db");
    }

    #[test]
    fn bad_tls_settings_say_what_to_fix() {
        let e = split("host=h sslmode=verify").expect_err("bad mode");
        assert!(e.to_string().contains("verify-full"), "{e}");
        let e = split("host=h sslmode='unclosed").expect_err("bad quote");
        assert!(e.to_string().contains("unclosed"), "{e}");
        let (_, t) =
            split("host=h sslmode=verify-ca sslrootcert=/nonexistent/ca.pem").expect("parses");
        let e = t.connector().err().expect("missing root file");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let (_, t) = split("host=h sslcert=/a.pem").expect("parses");
        let e = t.connector().err().expect("cert without key");
        assert!(e.to_string().contains("sslkey"), "{e}");
    }

    #[test]
    fn modes_map_to_the_driver_as_libpq_behaves() {
        use tokio_postgres::config::SslMode as D;
        let mode = |s: &str, tcp: bool| split(s).expect("parses").1.driver_mode(tcp);
        assert_eq!(mode("host=h sslmode=verify-full", true), D::Require);
        assert_eq!(mode("host=h sslmode=allow", true), D::Prefer);
        assert_eq!(mode("host=h sslmode=disable", true), D::Disable);
        assert_eq!(
            mode("host=/run/postgresql sslmode=require", false),
            D::Disable
        );
    }
}
