//! The service part of the SMP handshake (v16): a client that presented a TLS certificate
//! declares a role and signs its session key with the certificate's key; the server checks
//! it against the TLS chain, finds or creates the service by the identity certificate's
//! fingerprint, and answers with the service ID.

use sha2::{Digest, Sha256};

use crate::crypto::keys::{KeyAlgorithm, PrivateSignKey, PublicKey};
use crate::crypto::x509;
use crate::protocol::errors::HandshakeError;
use crate::protocol::handshake::{CertChainPubKey, ServiceRole};

/// A service session as the server knows it after the handshake (the reference's
/// `THPeerClientService`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerService {
    /// The service ID the server assigned (entity of SUBS/NSUBS).
    pub id: Vec<u8>,
    /// The declared role.
    pub role: ServiceRole,
    /// SHA-256 of the identity certificate: queue keys sign it with the transmission.
    pub cert_hash: [u8; 32],
    /// The session's Ed25519 service key: signs NEW/SUB/NSUB (beside the queue key) and
    /// SUBS/NSUBS.
    pub key: PublicKey,
}

/// Finds or creates the service for (role, chain, identity fingerprint); `Err` is answered
/// `HANDSHAKE BAD_SERVICE`.
pub type GetService<'a> =
    &'a (dyn Fn(ServiceRole, &[Vec<u8>], &[u8; 32]) -> Result<Vec<u8>, ()> + Send + Sync);

/// The leaf and identity certificates of a chain, as the reference's `chainIdCaCerts`:
/// a single certificate is both; otherwise the second one is the identity.
fn leaf_and_id(chain: &[Vec<u8>]) -> Option<(&[u8], &[u8])> {
    match chain.len() {
        1 => Some((&chain[0], &chain[0])),
        2..=4 => Some((&chain[0], &chain[1])),
        _ => None,
    }
}

/// Check a declared service against the TLS chain: the same chain, and the session key
/// signed by the leaf's key. Returns the Ed25519 session key and the identity fingerprint.
pub fn verify_declared(
    declared: &CertChainPubKey,
    tls_chain: &[Vec<u8>],
) -> Result<(PublicKey, [u8; 32]), HandshakeError> {
    if declared.chain.as_slice() != tls_chain {
        return Err(HandshakeError::BadAuth);
    }
    let (leaf, id) = leaf_and_id(tls_chain).ok_or(HandshakeError::BadAuth)?;
    let leaf_key = x509::cert_public_key(leaf).map_err(|_| HandshakeError::BadAuth)?;
    if !leaf_key.algorithm().is_signature() {
        return Err(HandshakeError::BadAuth);
    }
    let key = x509::verify_signed_pubkey(&leaf_key, &declared.signed_key)
        .map_err(|_| HandshakeError::BadAuth)?;
    if key.algorithm() != KeyAlgorithm::Ed25519 {
        return Err(HandshakeError::BadAuth);
    }
    Ok((key, Sha256::digest(id).into()))
}

/// What a service client brings to the handshake.
#[derive(Debug)]
pub struct ServiceCredentials {
    /// The role it declares.
    pub role: ServiceRole,
    /// Its TLS chain (the same it presented in TLS), leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key: signs the session key (and the TLS CertificateVerify).
    pub leaf_key: std::sync::Arc<PrivateSignKey>,
    /// The per-session Ed25519 service key.
    pub session_key: PrivateSignKey,
}

impl ServiceCredentials {
    /// SHA-256 of the identity certificate (what queue keys sign alongside transmissions).
    pub fn cert_hash(&self) -> [u8; 32] {
        leaf_and_id(&self.chain)
            .map(|(_, id)| Sha256::digest(id).into())
            .unwrap_or([0; 32])
    }

    /// The TLS client certificate these credentials present.
    pub fn tls_cert(&self) -> super::client_cert::ClientCert {
        super::client_cert::ClientCert {
            chain: self.chain.clone(),
            signer: self.leaf_key.clone(),
        }
    }

    /// The declaration sent in the client hello.
    pub fn declare(&self) -> CertChainPubKey {
        CertChainPubKey {
            chain: self.chain.clone(),
            signed_key: x509::sign_pubkey(&self.leaf_key, &self.session_key.public()),
        }
    }
}
