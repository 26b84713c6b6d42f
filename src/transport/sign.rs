//! The server's CertificateVerify signature, made by our own key types.
//!
//! rustls can sign with Ed25519 but not Ed448, and servers migrated from the reference keep
//! their Ed448 identity; so the server signs through [`HandshakeSigner`], which the crypto
//! module's private keys implement, for both schemes.

use std::sync::Arc;

use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::crypto::keys::KeyAlgorithm;

/// A private signing key that can sign the server's TLS CertificateVerify.
pub trait HandshakeSigner: Send + Sync + std::fmt::Debug {
    /// The key's algorithm; only [`KeyAlgorithm::Ed25519`] and [`KeyAlgorithm::Ed448`] can serve TLS.
    fn algorithm(&self) -> KeyAlgorithm;
    /// A pure (non-prehashed, empty-context) EdDSA signature of `msg`.
    fn sign(&self, msg: &[u8]) -> Vec<u8>;
}

/// The TLS signature scheme for a key algorithm, if it can sign in TLS 1.3.
pub(crate) fn scheme_for(alg: KeyAlgorithm) -> Option<SignatureScheme> {
    match alg {
        KeyAlgorithm::Ed25519 => Some(SignatureScheme::ED25519),
        KeyAlgorithm::Ed448 => Some(SignatureScheme::ED448),
        KeyAlgorithm::X25519 | KeyAlgorithm::X448 => None,
    }
}

/// Adapts a [`HandshakeSigner`] to rustls' `SigningKey`.
#[derive(Debug)]
pub(crate) struct SmpSigningKey {
    signer: Arc<dyn HandshakeSigner>,
    scheme: SignatureScheme,
}

impl SmpSigningKey {
    /// `None` when the key cannot sign in TLS (a DH key).
    pub(crate) fn new(signer: Arc<dyn HandshakeSigner>) -> Option<Self> {
        let scheme = scheme_for(signer.algorithm())?;
        Some(SmpSigningKey { signer, scheme })
    }
}

impl SigningKey for SmpSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&self.scheme).then(|| {
            Box::new(SmpSigner {
                signer: self.signer.clone(),
                scheme: self.scheme,
            }) as Box<dyn Signer>
        })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.scheme {
            SignatureScheme::ED448 => SignatureAlgorithm::ED448,
            _ => SignatureAlgorithm::ED25519,
        }
    }
}

#[derive(Debug)]
struct SmpSigner {
    signer: Arc<dyn HandshakeSigner>,
    scheme: SignatureScheme,
}

impl Signer for SmpSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(self.signer.sign(message))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
