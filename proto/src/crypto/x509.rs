//! X.509 signed objects: the server's signed session key in the SMP handshake, certificate keys
//! and certificate signatures, and a small DER writer for the certificates we issue.
//!
//! A signed object (RFC 5280's SIGNED{}) is the same shape for a certificate and for the
//! handshake's signed public key:
//!
//! ```text
//! SEQUENCE {
//!   content     -- TBSCertificate, or a SubjectPublicKeyInfo in the handshake
//!   SEQUENCE { OID 1.3.101.112 (Ed25519) | 1.3.101.113 (Ed448) }   -- no parameters
//!   BIT STRING { 00, signature over the content's DER }
//! }
//! ```
//!
//! Writing it needs only tag-length-value concatenation, done here by hand; parsing uses the
//! RustCrypto `der` and `x509-cert` crates.

use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierRef;

use super::keys::{verify, KeyAlgorithm, PrivateSignKey, PublicKey};
use super::CryptoError;

/// DER tags used by the writer.
pub mod tag {
    #![allow(missing_docs)]
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
}

/// One DER element: tag, definite length (short or long form), content.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = Vec::with_capacity(n + 6);
    out.push(tag);
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed element over already-encoded parts.
pub fn constructed(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// A BIT STRING with no unused bits.
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(tag::BIT_STRING, &content)
}

/// AlgorithmIdentifier for a signature by `alg` (RFC 8410: the OID alone).
fn signature_algorithm(alg: KeyAlgorithm) -> Vec<u8> {
    let oid = tlv(tag::OID, &[0x2b, 0x65, PublicKey::oid_byte(alg)]);
    constructed(tag::SEQUENCE, &[&oid])
}

/// Wrap `content` (already DER) in a SIGNED{} object signed by `signer`.
pub fn signed_object(signer: &PrivateSignKey, content: &[u8]) -> Vec<u8> {
    let sig = signer.sign(content);
    constructed(
        tag::SEQUENCE,
        &[
            content,
            &signature_algorithm(signer.algorithm()),
            &bit_string(&sig),
        ],
    )
}

/// Sign a public key for the SMP handshake: the server proves that its per-session DH key
/// comes from the holder of its certificate. The DER is byte-identical to what the reference
/// produces (Haskell x509 `objectToSignedExact` over a `PubKey`).
pub fn sign_pubkey(signer: &PrivateSignKey, key: &PublicKey) -> Vec<u8> {
    signed_object(signer, &key.to_der())
}

#[derive(der::Sequence)]
struct SignedRef<'a> {
    content: AnyRef<'a>,
    algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

/// Parse a SIGNED{} object and check its signature by `signer`; returns the content's DER.
fn open_signed(signer: &PublicKey, signed_der: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let signed = SignedRef::from_der(signed_der)
        .map_err(|e| CryptoError::BadCertificate(format!("signed object: {e}")))?;
    if signed.algorithm.parameters.is_some()
        || PublicKey::alg_from_oid(signed.algorithm.oid.as_bytes()) != Some(signer.algorithm())
    {
        return Err(CryptoError::BadSignature);
    }
    let sig = signed
        .signature
        .as_bytes()
        .ok_or(CryptoError::BadSignature)?;
    let content = signed
        .content
        .to_der()
        .map_err(|e| CryptoError::BadCertificate(format!("signed content: {e}")))?;
    if verify(signer, sig, &content) {
        Ok(content)
    } else {
        Err(CryptoError::BadSignature)
    }
}

/// Check a handshake signed key against the signer's (certificate) key and return the key.
pub fn verify_signed_pubkey(
    signer_pub: &PublicKey,
    signed_der: &[u8],
) -> Result<PublicKey, CryptoError> {
    PublicKey::from_der(&open_signed(signer_pub, signed_der)?)
}

/// The subject public key of a DER certificate (Ed25519/Ed448/X25519/X448 only).
pub fn cert_public_key(cert_der: &[u8]) -> Result<PublicKey, CryptoError> {
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|e| CryptoError::BadCertificate(e.to_string()))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| CryptoError::BadCertificate(e.to_string()))?;
    PublicKey::from_der(&spki)
}

/// Whether the DER certificate is a certificate whose signature verifies with `issuer`.
pub fn cert_signed_by(cert_der: &[u8], issuer: &PublicKey) -> bool {
    x509_cert::Certificate::from_der(cert_der).is_ok() && open_signed(issuer, cert_der).is_ok()
}

/// All certificates in a PEM text, as DER, in file order (files may hold a chain).
pub fn certs_from_pem(pem: &str) -> Result<Vec<Vec<u8>>, CryptoError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let end = after
            .find(END)
            .ok_or_else(|| CryptoError::BadCertificate("unterminated PEM certificate".into()))?;
        let block = &after[..end + END.len()];
        let (label, der) = der::pem::decode_vec(block.as_bytes())
            .map_err(|e| CryptoError::BadCertificate(format!("PEM: {e}")))?;
        if label != "CERTIFICATE" {
            return Err(CryptoError::BadCertificate(
                "PEM label is not CERTIFICATE".into(),
            ));
        }
        out.push(der);
        rest = &after[end + END.len()..];
    }
    if out.is_empty() {
        return Err(CryptoError::BadCertificate(
            "no PEM certificate found".into(),
        ));
    }
    Ok(out)
}

/// A DER certificate as PEM ("CERTIFICATE", 64-column lines, LF), as OpenSSL writes it.
pub fn cert_to_pem(cert_der: &[u8]) -> String {
    // Only an invalid label can fail, and ours is a constant.
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, cert_der).unwrap_or_default()
}

/// A UTCTime (years 1950-2049) or GeneralizedTime (later), as RFC 5280 requires, from Unix
/// seconds. Days to civil date: the classic era/day-of-era computation.
pub fn x509_time(unix_secs: u64) -> Vec<u8> {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (h, mi, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if (1950..2050).contains(&y) {
        let text = format!("{:02}{m:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        tlv(tag::UTC_TIME, text.as_bytes())
    } else {
        let text = format!("{y:04}{m:02}{d:02}{h:02}{mi:02}{s:02}Z");
        tlv(tag::GENERALIZED_TIME, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0u8; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = tlv(0x04, &[0u8; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn times() {
        assert_eq!(x509_time(0), tlv(tag::UTC_TIME, b"700101000000Z"));
        // 2022-01-11 11:16:39 UTC (the reference fixture CA's notBefore).
        assert_eq!(
            x509_time(1_641_899_799),
            tlv(tag::UTC_TIME, b"220111111639Z")
        );
        // 4759-12-08 11:16:39 UTC, 999999 days later (its notAfter).
        let later = 1_641_899_799 + 999_999 * 86_400;
        assert_eq!(
            x509_time(later),
            tlv(tag::GENERALIZED_TIME, b"47591208111639Z")
        );
        assert_eq!(
            x509_time(2_524_608_000),
            tlv(tag::GENERALIZED_TIME, b"20500101000000Z")
        );
    }

    #[test]
    fn signed_pubkey_round_trip_and_layout() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Ed448] {
            let signer = PrivateSignKey::generate(alg).expect("key");
            let dh = crate::crypto::keys::DhKeyPair::from_secret_bytes([4u8; 32]).public();
            let signed = sign_pubkey(&signer, &dh);
            let spki = dh.to_der();
            let expected_len = spki.len() + 7 + 3 + alg_sig_len(alg);
            assert_eq!(
                signed.len(),
                expected_len + if expected_len > 127 { 3 } else { 2 }
            );
            assert_eq!(
                verify_signed_pubkey(&signer.public(), &signed).expect("ok"),
                dh
            );
            let other = PrivateSignKey::generate(alg).expect("key");
            assert!(verify_signed_pubkey(&other.public(), &signed).is_err());
            let mut bad = signed.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(verify_signed_pubkey(&signer.public(), &bad).is_err());
            let mut trailing = signed.clone();
            trailing.push(0);
            assert!(verify_signed_pubkey(&signer.public(), &trailing).is_err());
        }
        fn alg_sig_len(alg: KeyAlgorithm) -> usize {
            if alg == KeyAlgorithm::Ed25519 {
                64
            } else {
                114
            }
        }
    }

    #[test]
    fn wrong_algorithm_signer_is_rejected() {
        let signer = PrivateSignKey::generate(KeyAlgorithm::Ed25519).expect("key");
        let key = signer.public();
        let signed = sign_pubkey(&signer, &key);
        let ed448 = PrivateSignKey::generate(KeyAlgorithm::Ed448)
            .expect("key")
            .public();
        assert!(matches!(
            verify_signed_pubkey(&ed448, &signed),
            Err(CryptoError::BadSignature)
        ));
    }
}
