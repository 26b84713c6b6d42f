//! SMP handshake messages (the first block each side sends after TLS).
//!
//! ```text
//! server: <versionRange><sessionId>[if max >= 7: <CertChainPubKey>]      (tail ignored)
//! client: <version><keyHash>[v7+: optional <X25519 key>][v14+: <proxy Bool>]
//!         [v16+: <Maybe (role char, CertChainPubKey)>]                   (tail ignored)
//! CertChainPubKey: <count><Large cert DER>... <Large signed SPKI object DER>
//! handshake response (services only): 'R' <serviceId> | 'E' <transport error text>
//! ```

use super::encoding::{DResult, DecodeError, Decoder, Encoder};
use super::errors::TransportError;
use super::version::{self, Version, VersionRange};
use crate::crypto::keys::{KeyAlgorithm, PublicKey};

/// A certificate chain and a key signed by its leaf (the server's session DH key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertChainPubKey {
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// DER of the X.509 signed object carrying the SubjectPublicKeyInfo.
    pub signed_key: Vec<u8>,
}

impl CertChainPubKey {
    /// Encode the chain and the signed key.
    pub fn encode(&self, e: &mut Encoder) {
        e.list(&self.chain, |e, c| {
            e.large_bytes(c);
        });
        e.large_bytes(&self.signed_key);
    }

    /// Decode the chain and the signed key.
    pub fn decode(d: &mut Decoder) -> DResult<Self> {
        let chain = d.non_empty(|d| d.large_bytes().map(|b| b.to_vec()))?;
        let signed_key = d.large_bytes()?.to_vec();
        Ok(CertChainPubKey { chain, signed_key })
    }
}

/// The server's hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHandshake {
    /// Versions the server offers on this connection.
    pub version_range: VersionRange,
    /// The TLS session ID (tls-unique).
    pub session_id: Vec<u8>,
    /// The server's session DH key signed by its online certificate.
    pub auth_pub_key: Option<CertChainPubKey>,
}

impl ServerHandshake {
    /// Encode the server hello.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.version_range.encode(&mut e);
        e.short_bytes(&self.session_id);
        if self.version_range.max >= version::AUTH_CMDS {
            if let Some(k) = &self.auth_pub_key {
                k.encode(&mut e);
            }
        }
        e.finish()
    }

    /// Decode the server hello (client side), ignoring trailing bytes.
    pub fn decode(b: &[u8]) -> DResult<Self> {
        let mut d = Decoder::new(b);
        let version_range = VersionRange::decode(&mut d)?;
        let session_id = d.short_bytes()?.to_vec();
        let auth_pub_key = if version_range.max >= version::AUTH_CMDS && !d.is_empty() {
            let mut t = d.clone();
            CertChainPubKey::decode(&mut t).ok()
        } else {
            None
        };
        Ok(ServerHandshake {
            version_range,
            session_id,
            auth_pub_key,
        })
    }
}

/// Roles a service client may declare (v16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRole {
    /// Messaging client service.
    Messaging,
    /// Notification server.
    Notifier,
    /// SMP proxy.
    Proxy,
}

/// The client's hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHandshake {
    /// The version chosen by the client.
    pub version: Version,
    /// The server identity the client expects (SHA-256 of the CA certificate).
    pub key_hash: Vec<u8>,
    /// The client's session X25519 key (v7+).
    pub auth_pub_key: Option<PublicKey>,
    /// Whether the client is an SMP proxy (disables block encryption).
    pub proxy_server: bool,
    /// Service credentials (v16+).
    pub client_service: Option<(ServiceRole, CertChainPubKey)>,
}

impl ClientHandshake {
    /// Encode the client hello.
    pub fn encode(&self) -> Vec<u8> {
        let v = self.version;
        let mut e = Encoder::new();
        e.u16(v).short_bytes(&self.key_hash);
        if v >= version::AUTH_CMDS {
            if let Some(k) = &self.auth_pub_key {
                e.short_bytes(&k.to_der());
            }
        }
        if v >= version::PROXY_SERVER_HANDSHAKE {
            e.bool(self.proxy_server);
        }
        if v >= version::SERVICE_CERTS {
            e.maybe(self.client_service.as_ref(), |e, (role, ck)| {
                e.byte(match role {
                    ServiceRole::Messaging => b'M',
                    ServiceRole::Notifier => b'N',
                    ServiceRole::Proxy => b'P',
                });
                ck.encode(e);
            });
        }
        e.finish()
    }

    /// Decode the client hello, ignoring trailing bytes (room for extensions).
    pub fn decode(b: &[u8]) -> DResult<Self> {
        let mut d = Decoder::new(b);
        let v = d.u16()?;
        let key_hash = d.short_bytes()?.to_vec();
        let mut auth_pub_key = None;
        if v >= version::AUTH_CMDS {
            // `optional`: a key if one parses here, otherwise nothing consumed.
            let mut t = d.clone();
            if let Ok(k) = t
                .short_bytes()
                .map_err(|_| ())
                .and_then(|b| PublicKey::from_der(b).map_err(|_| ()))
            {
                if k.algorithm() == KeyAlgorithm::X25519 {
                    auth_pub_key = Some(k);
                    d = t;
                }
            }
        }
        let proxy_server = if v >= version::PROXY_SERVER_HANDSHAKE {
            d.bool()?
        } else {
            false
        };
        let client_service = if v >= version::SERVICE_CERTS {
            d.maybe(|d| {
                let role = match d.byte()? {
                    b'M' => ServiceRole::Messaging,
                    b'N' => ServiceRole::Notifier,
                    b'P' => ServiceRole::Proxy,
                    _ => return Err(DecodeError("bad SMPServiceRole")),
                };
                Ok((role, CertChainPubKey::decode(d)?))
            })?
        } else {
            None
        };
        Ok(ClientHandshake {
            version: v,
            key_hash,
            auth_pub_key,
            proxy_server,
            client_service,
        })
    }
}

/// The server's third handshake message, sent only to service clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHandshakeResponse {
    /// The service ID assigned.
    Service(Vec<u8>),
    /// The handshake failed.
    Error(TransportError),
}

impl ServerHandshakeResponse {
    /// Decode `'R' serviceId` or `'E' error` (a service client reads it).
    pub fn decode(b: &[u8]) -> DResult<Self> {
        let mut d = Decoder::new(b);
        match d.byte()? {
            b'R' => Ok(ServerHandshakeResponse::Service(d.short_bytes()?.to_vec())),
            b'E' => Ok(ServerHandshakeResponse::Error(TransportError::decode(
                &mut d,
            )?)),
            _ => Err(DecodeError("bad SMPServerHandshakeResponse")),
        }
    }

    /// Encode `'R' serviceId` or `'E' error`.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        match self {
            ServerHandshakeResponse::Service(id) => {
                e.byte(b'R').short_bytes(id);
            }
            ServerHandshakeResponse::Error(t) => {
                e.byte(b'E').raw(t.to_text().as_bytes());
            }
        }
        e.finish()
    }
}
