//! How an SMP client decides that it reached the right server.
//!
//! There is no web PKI: the server address carries the SHA-256 of the server's identity
//! (CA) certificate, and the TLS chain must lead to it. As the reference client does, the chain
//! is read as `[leaf, id]`, `[leaf, id, ca]` or `[leaf, id, _, ca]`; the fingerprint must match
//! `id`; every certificate must be signed by the next one (Ed25519 or Ed448), be within its
//! validity period, and every issuer must be a CA (basicConstraints cA, keyCertSign if a key
//! usage is present). The leaf must be X.509 v3. Host names are not checked.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};
use x509_cert::der::Decode;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::{Certificate, Version};

/// Why a server certificate chain was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The identity certificate's SHA-256 is not the fingerprint in the server address.
    #[error("server identity does not match the fingerprint in the server address")]
    Identity,
    /// Fewer than two or more than four certificates.
    #[error("certificate chain has {0} certificates, expected 2 to 4")]
    ChainLength(usize),
    /// A certificate is not valid DER X.509.
    #[error("certificate does not parse")]
    Parse,
    /// A key or signature algorithm other than Ed25519/Ed448.
    #[error("unsupported key or signature algorithm")]
    Algorithm,
    /// A signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A certificate's issuer name is not the next certificate's subject.
    #[error("issuer name does not match the issuing certificate")]
    IssuerMismatch,
    /// An issuing certificate is not a CA.
    #[error("issuing certificate is not a CA")]
    NotCa,
    /// The leaf is not an X.509 v3 certificate.
    #[error("leaf certificate is not X.509 v3")]
    LeafNotV3,
    /// A certificate has expired.
    #[error("certificate expired")]
    Expired,
    /// A certificate is not valid yet.
    #[error("certificate not valid yet")]
    NotYetValid,
}

impl From<ChainError> for rustls::Error {
    fn from(e: ChainError) -> Self {
        let ce = match e {
            // The reference reports an unknown CA here; we read it back as an identity error.
            ChainError::Identity => CertificateError::UnknownIssuer,
            ChainError::Parse => CertificateError::BadEncoding,
            ChainError::BadSignature => CertificateError::BadSignature,
            ChainError::Expired => CertificateError::Expired,
            ChainError::NotYetValid => CertificateError::NotValidYet,
            other => CertificateError::Other(OtherError(Arc::new(other))),
        };
        rustls::Error::InvalidCertificate(ce)
    }
}

/// An EdDSA public key from a SubjectPublicKeyInfo.
enum EdKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Ed448(Box<ed448_goldilocks_plus::VerifyingKey>),
}

// RFC 8410 OIDs 1.3.101.112 / 1.3.101.113, DER content bytes.
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

impl EdKey {
    fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, ChainError> {
        if spki.algorithm.parameters.is_some() {
            return Err(ChainError::Algorithm);
        }
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or(ChainError::Parse)?;
        match spki.algorithm.oid.as_bytes() {
            OID_ED25519 => {
                let raw: &[u8; 32] = raw.try_into().map_err(|_| ChainError::Parse)?;
                ed25519_dalek::VerifyingKey::from_bytes(raw)
                    .map(EdKey::Ed25519)
                    .map_err(|_| ChainError::Parse)
            }
            OID_ED448 => {
                let raw: &[u8; 57] = raw.try_into().map_err(|_| ChainError::Parse)?;
                ed448_goldilocks_plus::VerifyingKey::from_bytes(raw)
                    .map(|k| EdKey::Ed448(Box::new(k)))
                    .map_err(|_| ChainError::Parse)
            }
            _ => Err(ChainError::Algorithm),
        }
    }

    fn oid(&self) -> &'static [u8] {
        match self {
            EdKey::Ed25519(_) => OID_ED25519,
            EdKey::Ed448(_) => OID_ED448,
        }
    }

    fn scheme(&self) -> SignatureScheme {
        match self {
            EdKey::Ed25519(_) => SignatureScheme::ED25519,
            EdKey::Ed448(_) => SignatureScheme::ED448,
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), ChainError> {
        let ok = match self {
            EdKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(sig)
                .map(|s| k.verify_strict(msg, &s).is_ok())
                .unwrap_or(false),
            EdKey::Ed448(k) => ed448_goldilocks_plus::Signature::from_slice(sig)
                .map(|s| k.verify_raw(&s, msg).is_ok())
                .unwrap_or(false),
        };
        ok.then_some(()).ok_or(ChainError::BadSignature)
    }
}

/// Split one DER TLV off `input`: (content, rest). Only what certificates need (tags < 31).
fn der_tlv(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&_tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The exact DER bytes of `tbsCertificate`, which the issuer signed.
fn tbs_bytes(cert_der: &[u8]) -> Option<&[u8]> {
    let (content, _) = der_tlv(cert_der)?;
    let (_, after) = der_tlv(content)?;
    Some(&content[..content.len() - after.len()])
}

struct Parsed<'a> {
    der: &'a [u8],
    cert: Certificate,
}

impl<'a> Parsed<'a> {
    fn new(der: &'a [u8]) -> Result<Self, ChainError> {
        let cert = Certificate::from_der(der).map_err(|_| ChainError::Parse)?;
        Ok(Parsed { der, cert })
    }

    fn key(&self) -> Result<EdKey, ChainError> {
        EdKey::from_spki(self.cert.tbs_certificate().subject_public_key_info())
    }

    fn check_time(&self, now_secs: u64) -> Result<(), ChainError> {
        let v = self.cert.tbs_certificate().validity();
        if now_secs < v.not_before.to_unix_duration().as_secs() {
            return Err(ChainError::NotYetValid);
        }
        if now_secs > v.not_after.to_unix_duration().as_secs() {
            return Err(ChainError::Expired);
        }
        Ok(())
    }

    fn check_is_ca(&self) -> Result<(), ChainError> {
        let tbs = self.cert.tbs_certificate();
        let bc = tbs
            .get_extension::<BasicConstraints>()
            .map_err(|_| ChainError::Parse)?;
        if !matches!(bc, Some((_, BasicConstraints { ca: true, .. }))) {
            return Err(ChainError::NotCa);
        }
        let ku = tbs
            .get_extension::<KeyUsage>()
            .map_err(|_| ChainError::Parse)?;
        if let Some((_, ku)) = ku {
            if !ku.key_cert_sign() {
                return Err(ChainError::NotCa);
            }
        }
        Ok(())
    }

    /// Check that `issuer` signed this certificate.
    fn check_signed_by(&self, issuer: &Parsed<'_>) -> Result<(), ChainError> {
        if self.cert.tbs_certificate().issuer() != issuer.cert.tbs_certificate().subject() {
            return Err(ChainError::IssuerMismatch);
        }
        let key = issuer.key()?;
        let alg = self.cert.signature_algorithm();
        if alg.parameters.is_some() || alg.oid.as_bytes() != key.oid() {
            return Err(ChainError::Algorithm);
        }
        let sig = self.cert.signature().as_bytes().ok_or(ChainError::Parse)?;
        let tbs = tbs_bytes(self.der).ok_or(ChainError::Parse)?;
        key.verify(tbs, sig)
    }
}

/// SHA-256 of a certificate's DER: the fingerprint SMP server addresses carry.
pub fn cert_fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// Check a server chain `[leaf, id, ...]` against the address fingerprint, as SMP clients do.
pub fn check_server_chain(
    chain: &[&[u8]],
    fingerprint: &[u8; 32],
    now_secs: u64,
) -> Result<(), ChainError> {
    let id = match chain.len() {
        2..=4 => chain[1],
        n => return Err(ChainError::ChainLength(n)),
    };
    let id_fp = cert_fingerprint(id);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&id_fp[..], &fingerprint[..])) {
        return Err(ChainError::Identity);
    }
    let parsed = chain
        .iter()
        .map(|der| Parsed::new(der))
        .collect::<Result<Vec<_>, _>>()?;
    if parsed[0].cert.tbs_certificate().version() != Version::V3 {
        return Err(ChainError::LeafNotV3);
    }
    for pair in parsed.windows(2) {
        pair[1].check_is_ca()?;
        pair[0].check_signed_by(&pair[1])?;
    }
    for p in &parsed {
        p.check_time(now_secs)?;
    }
    // The leaf key must be one we can verify CertificateVerify with.
    parsed[0].key().map(|_| ())
}

/// Check a service client's chain as the reference server does (its
/// `validateClientCertificate`): one self-signed certificate, or `[leaf, id]`, `[leaf, id, ca]`,
/// `[leaf, id, _, ca]` where each is signed by the next; the leaf X.509 v3, intermediates CAs,
/// every certificate within its validity. There is no trust store: the chain's own last
/// certificate is the anchor, and the service is identified by its fingerprint afterwards.
pub fn check_client_chain(chain: &[&[u8]], now_secs: u64) -> Result<(), ChainError> {
    if chain.is_empty() || chain.len() > 4 {
        return Err(ChainError::ChainLength(chain.len()));
    }
    let parsed = chain
        .iter()
        .map(|der| Parsed::new(der))
        .collect::<Result<Vec<_>, _>>()?;
    if parsed[0].cert.tbs_certificate().version() != Version::V3 {
        return Err(ChainError::LeafNotV3);
    }
    if parsed.len() == 1 {
        parsed[0].check_signed_by(&parsed[0])?;
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        if i + 2 < parsed.len() {
            pair[1].check_is_ca()?;
        }
        pair[0].check_signed_by(&pair[1])?;
    }
    for p in &parsed {
        p.check_time(now_secs)?;
    }
    parsed[0].key().map(|_| ())
}

/// Verify a TLS 1.3 CertificateVerify signature by the leaf certificate's key.
pub fn verify_handshake_signature(
    leaf_der: &[u8],
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> Result<(), ChainError> {
    let key = Parsed::new(leaf_der)?.key()?;
    if key.scheme() != scheme {
        return Err(ChainError::Algorithm);
    }
    key.verify(message, signature)
}

/// Check that `leaf_der`'s key is the one behind `sign` (catches a mismatched key file early).
pub(crate) fn leaf_matches_signer(
    leaf_der: &[u8],
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
) -> Result<(), ChainError> {
    const PROBE: &[u8] = b"smp-server tls key probe";
    let key = Parsed::new(leaf_der)?.key()?;
    key.verify(PROBE, &sign(PROBE))
}

/// The rustls certificate verifier of an SMP client: see the module doc.
#[derive(Debug)]
pub struct ServerIdentityVerifier {
    fingerprint: [u8; 32],
}

impl ServerIdentityVerifier {
    /// Accept servers whose identity certificate has this SHA-256 fingerprint.
    pub fn new(fingerprint: [u8; 32]) -> Self {
        ServerIdentityVerifier { fingerprint }
    }
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<&[u8]> = std::iter::once(end_entity.as_ref())
            .chain(intermediates.iter().map(|c| c.as_ref()))
            .collect();
        check_server_chain(&chain, &self.fingerprint, now.as_secs())?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Our provider only speaks TLS 1.3.
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(cert.as_ref(), dss.scheme, message, dss.signature())?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // The reference client's order.
        vec![SignatureScheme::ED448, SignatureScheme::ED25519]
    }
}
