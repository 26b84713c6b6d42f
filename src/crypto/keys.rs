//! Public keys as SMP carries them: X.509 SubjectPublicKeyInfo DER.
//!
//! SMP encodes every public key (queue auth keys, DH keys, the server's session key) as the DER
//! of a `SubjectPublicKeyInfo` whose algorithm is one of the RFC 8410 OIDs, with no parameters.
//! For these four algorithms the DER is a fixed 12-byte prefix followed by the raw key:
//!
//! ```text
//! 30 LL 30 05 06 03 2B 65 XX 03 KK 00 <raw key>
//!          \-- AlgorithmIdentifier --/ \- BIT STRING, 0 unused bits
//! XX: 0x6E X25519 (32 bytes), 0x6F X448 (56), 0x70 Ed25519 (32), 0x71 Ed448 (57)
//! ```
//!
//! Anything else (other OIDs, parameters present, trailing bytes) is rejected, as the reference's
//! `decodePubKey` rejects it.

use super::CryptoError;

/// Which curve a key belongs to; also selects the signature or DH scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519 signatures (RFC 8032).
    Ed25519,
    /// Ed448 signatures (RFC 8032), used by identities made by older reference servers.
    Ed448,
    /// X25519 Diffie-Hellman (RFC 7748).
    X25519,
    /// X448 Diffie-Hellman (RFC 7748).
    X448,
}

impl KeyAlgorithm {
    /// Last byte of the RFC 8410 OID `1.3.101.x`.
    fn oid_byte(self) -> u8 {
        match self {
            KeyAlgorithm::X25519 => 0x6e,
            KeyAlgorithm::X448 => 0x6f,
            KeyAlgorithm::Ed25519 => 0x70,
            KeyAlgorithm::Ed448 => 0x71,
        }
    }

    fn from_oid_byte(b: u8) -> Option<Self> {
        match b {
            0x6e => Some(KeyAlgorithm::X25519),
            0x6f => Some(KeyAlgorithm::X448),
            0x70 => Some(KeyAlgorithm::Ed25519),
            0x71 => Some(KeyAlgorithm::Ed448),
            _ => None,
        }
    }

    /// Length of the raw public key.
    pub fn key_len(self) -> usize {
        match self {
            KeyAlgorithm::X25519 | KeyAlgorithm::Ed25519 => 32,
            KeyAlgorithm::X448 => 56,
            KeyAlgorithm::Ed448 => 57,
        }
    }

    /// Whether keys of this algorithm make signatures (as opposed to DH agreements).
    pub fn is_signature(self) -> bool {
        matches!(self, KeyAlgorithm::Ed25519 | KeyAlgorithm::Ed448)
    }
}

/// A public key of one of the four algorithms SMP uses, holding the raw key bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    alg: KeyAlgorithm,
    raw: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys identify queues: never print them in full.
        write!(f, "PublicKey({:?})", self.alg)
    }
}

impl PublicKey {
    /// Wrap raw key bytes, checking the length for the algorithm.
    pub fn from_raw(alg: KeyAlgorithm, raw: &[u8]) -> Result<Self, CryptoError> {
        if raw.len() != alg.key_len() {
            return Err(CryptoError::BadKey("wrong raw key length"));
        }
        Ok(PublicKey {
            alg,
            raw: raw.to_vec(),
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The raw key bytes (32, 56 or 57 bytes).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The SubjectPublicKeyInfo DER, as SMP sends it.
    pub fn to_der(&self) -> Vec<u8> {
        let n = self.raw.len();
        let mut out = Vec::with_capacity(12 + n);
        out.extend_from_slice(&[0x30, (n + 10) as u8, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65]);
        out.push(self.alg.oid_byte());
        out.extend_from_slice(&[0x03, (n + 1) as u8, 0x00]);
        out.extend_from_slice(&self.raw);
        out
    }

    /// Parse a SubjectPublicKeyInfo DER, rejecting anything but the four RFC 8410 forms.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        const BAD: CryptoError = CryptoError::BadKey("not an RFC 8410 SubjectPublicKeyInfo");
        if der.len() < 12 {
            return Err(BAD);
        }
        let alg = KeyAlgorithm::from_oid_byte(der[8]).ok_or(BAD)?;
        let n = alg.key_len();
        let expected = [
            0x30,
            (n + 10) as u8,
            0x30,
            0x05,
            0x06,
            0x03,
            0x2b,
            0x65,
            der[8],
            0x03,
            (n + 1) as u8,
            0x00,
        ];
        if der.len() != 12 + n || der[..12] != expected {
            return Err(BAD);
        }
        Ok(PublicKey {
            alg,
            raw: der[12..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_round_trip_and_known_prefix() {
        // The reference's dummy Ed25519 key (base64 of SPKI DER) starts "MCowBQYDK2VwAyEA".
        let raw = [7u8; 32];
        let k = PublicKey::from_raw(KeyAlgorithm::Ed25519, &raw).expect("key");
        let der = k.to_der();
        assert_eq!(
            &der[..12],
            &[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]
        );
        assert_eq!(PublicKey::from_der(&der).expect("parse"), k);
        let mut bad = der.clone();
        bad.push(0);
        assert!(PublicKey::from_der(&bad).is_err());
        bad = der;
        bad[8] = 0x72;
        assert!(PublicKey::from_der(&bad).is_err());
    }

    #[test]
    fn ed448_and_x448_lengths() {
        for alg in [KeyAlgorithm::Ed448, KeyAlgorithm::X448, KeyAlgorithm::X25519] {
            let k = PublicKey::from_raw(alg, &vec![1u8; alg.key_len()]).expect("key");
            let der = k.to_der();
            assert_eq!(der.len(), 12 + alg.key_len());
            assert_eq!(PublicKey::from_der(&der).expect("parse").algorithm(), alg);
        }
    }
}
