//! The SMP port's certificate chain and key, swappable while the server runs.
//!
//! Operators may renew `server.crt`/`server.key` under the same CA (`smp-server cert`); on
//! SIGHUP the new chain is served to new connections while existing ones keep theirs. The CA
//! is the server's identity (its fingerprint is in every queue address), so a reload that would
//! change it is refused: that needs a restart, and clients would stop trusting the server.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::ServerError;
use crate::crypto::identity::Identity;
use crate::crypto::keys::{KeyAlgorithm, PrivateSignKey};
use crate::transport::tls;
use crate::transport::HandshakeSigner;

/// Signs TLS handshakes with the identity's online key, shared with the SMP handshake.
#[derive(Debug)]
struct IdentitySigner(Arc<Identity>);

impl HandshakeSigner for IdentitySigner {
    fn algorithm(&self) -> KeyAlgorithm {
        PrivateSignKey::algorithm(&self.0.server_key)
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.0.server_key.sign(msg)
    }
}

/// One identity and the TLS configuration serving it: a connection uses both from one load.
pub struct SmpCredentials {
    /// Chain, online key and fingerprint (the SMP handshake sends and signs with them).
    pub identity: Arc<Identity>,
    /// The TLS configuration presenting `identity.chain`.
    pub tls: Arc<rustls::ServerConfig>,
    /// Clients are asked for a certificate (services).
    pub ask_client_cert: bool,
}

impl SmpCredentials {
    /// TLS configuration for `identity`, without client certificates.
    pub fn new(identity: Identity) -> Result<Self, ServerError> {
        Self::with_client_certs(identity, false)
    }

    /// TLS configuration for `identity`, asking clients for a certificate when `ask`.
    pub fn with_client_certs(identity: Identity, ask: bool) -> Result<Self, ServerError> {
        let identity = Arc::new(identity);
        let signer: Arc<dyn HandshakeSigner> = Arc::new(IdentitySigner(identity.clone()));
        let tls = tls::server_config_with(identity.chain.clone(), signer, &[], ask)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        Ok(SmpCredentials {
            identity,
            tls,
            ask_client_cert: ask,
        })
    }
}

/// What a reload of the SMP certificate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsReload {
    /// The files hold the chain already in use.
    Unchanged,
    /// A new chain (same CA) is served to new connections.
    Replaced,
    /// The files could not be used; the current chain stays. The text says why.
    Kept(String),
}

/// The current SMP credentials, replaced atomically on reload.
pub struct LiveCredentials(ArcSwap<SmpCredentials>);

impl LiveCredentials {
    /// Start with `creds`.
    pub fn new(creds: SmpCredentials) -> Self {
        LiveCredentials(ArcSwap::from_pointee(creds))
    }

    /// The credentials for a new connection.
    pub fn current(&self) -> Arc<SmpCredentials> {
        self.0.load_full()
    }

    /// Re-read `ca.crt`, `server.crt` and `server.key` in `cfg_dir`; serve the new chain to
    /// new connections if it is valid and under the same CA.
    pub fn reload_from(&self, cfg_dir: &Path) -> CredentialsReload {
        match crate::crypto::identity::load_identity(cfg_dir) {
            Ok(id) => self.replace(id),
            Err(e) => CredentialsReload::Kept(e.to_string()),
        }
    }

    /// Use `identity` for new connections if it keeps the server's fingerprint.
    pub fn replace(&self, identity: Identity) -> CredentialsReload {
        let cur = self.current();
        if identity.fingerprint != cur.identity.fingerprint {
            return CredentialsReload::Kept(format!(
                "the CA certificate changed (fingerprint {} instead of {}): the server identity cannot change while it runs; restore ca.crt, or restart to use a new identity (clients will no longer trust this server)",
                identity.fingerprint.to_base64url(),
                cur.identity.fingerprint.to_base64url()
            ));
        }
        if identity.chain == cur.identity.chain {
            return CredentialsReload::Unchanged;
        }
        match SmpCredentials::with_client_certs(identity, cur.ask_client_cert) {
            Ok(c) => {
                self.0.store(Arc::new(c));
                CredentialsReload::Replaced
            }
            Err(e) => CredentialsReload::Kept(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::{create_identity, load_identity, renew_server_cert};
    use crate::crypto::keys::KeyAlgorithm;

    fn identity_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        create_identity(d.path(), KeyAlgorithm::Ed25519, "localhost").expect("identity");
        d
    }

    #[test]
    fn renewed_online_certificate_is_swapped_and_identity_is_kept() {
        let a = identity_dir();
        let live = LiveCredentials::new(
            SmpCredentials::new(load_identity(a.path()).expect("load")).expect("creds"),
        );
        let first = live.current();
        assert_eq!(live.reload_from(a.path()), CredentialsReload::Unchanged);
        renew_server_cert(a.path(), "localhost").expect("renew");
        assert_eq!(live.reload_from(a.path()), CredentialsReload::Replaced);
        let now = live.current();
        assert_ne!(now.identity.chain[0], first.identity.chain[0]);
        assert_eq!(now.identity.fingerprint, first.identity.fingerprint);
        // connections that loaded the old credentials keep them
        assert_eq!(first.identity.chain.len(), 2);

        // another CA is refused: the fingerprint in every address would change
        let b = identity_dir();
        match live.reload_from(b.path()) {
            CredentialsReload::Kept(why) => {
                assert!(why.contains("CA certificate changed"), "{why}")
            }
            other => panic!("another identity was accepted: {other:?}"),
        }
        assert_eq!(live.current().identity.chain, now.identity.chain);

        // unreadable files: kept, with the reason
        std::fs::write(a.path().join("server.key"), "junk").expect("write");
        assert!(matches!(
            live.reload_from(a.path()),
            CredentialsReload::Kept(_)
        ));
        assert_eq!(live.current().identity.chain, now.identity.chain);
    }
}
