//! TLS client certificates, as the reference server asks for them: optional, so ordinary
//! clients connect without one, and any chain a service presents is accepted if it is sound
//! (see [`verify::check_client_chain`]); who the service is gets decided in the SMP handshake,
//! by the fingerprint of its identity certificate.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::sign::{HandshakeSigner, SmpSigningKey};
use super::verify;

/// The server's verifier of service client certificates.
#[derive(Debug, Default)]
pub struct ServiceCertVerifier;

impl ClientCertVerifier for ServiceCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Client certificates are only used by services.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let chain: Vec<&[u8]> = std::iter::once(end_entity.as_ref())
            .chain(intermediates.iter().map(|c| c.as_ref()))
            .collect();
        verify::check_client_chain(&chain, now.as_secs())?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify::verify_handshake_signature(cert.as_ref(), dss.scheme, message, dss.signature())?;
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED448, SignatureScheme::ED25519]
    }
}

/// A client's certificate chain and key (a service's TLS credentials).
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key (Ed25519 or Ed448).
    pub signer: Arc<dyn HandshakeSigner>,
}

/// Presents one certificate whenever the server asks.
#[derive(Debug)]
pub(crate) struct AlwaysClientCert(Arc<CertifiedKey>);

impl AlwaysClientCert {
    /// `None` when the key cannot sign in TLS.
    pub(crate) fn new(c: &ClientCert) -> Option<Self> {
        let key = SmpSigningKey::new(c.signer.clone())?;
        let chain = c.chain.iter().cloned().map(CertificateDer::from).collect();
        Some(AlwaysClientCert(Arc::new(CertifiedKey::new(
            chain,
            Arc::new(key),
        ))))
    }
}

impl ResolvesClientCert for AlwaysClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A private key of ours signs TLS handshakes directly (a service's leaf key).
impl HandshakeSigner for crate::crypto::keys::PrivateSignKey {
    fn algorithm(&self) -> crate::crypto::keys::KeyAlgorithm {
        crate::crypto::keys::PrivateSignKey::algorithm(self)
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        crate::crypto::keys::PrivateSignKey::sign(self, msg)
    }
}
