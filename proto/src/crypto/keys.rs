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
///
/// Every queue holds two or more of these, so the common 32-byte keys are kept inline (40 bytes,
/// no allocation) and only the rare 448-bit keys are boxed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey(RawKey);

/// The raw bytes of a [`PublicKey`], tagged with their algorithm.
#[derive(Clone, PartialEq, Eq, Hash)]
enum RawKey {
    Ed25519([u8; 32]),
    X25519([u8; 32]),
    Ed448(Box<[u8; 57]>),
    X448(Box<[u8; 56]>),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys identify queues: never print them in full.
        write!(f, "PublicKey({:?})", self.algorithm())
    }
}

impl PublicKey {
    /// Wrap raw key bytes, checking the length for the algorithm.
    pub fn from_raw(alg: KeyAlgorithm, raw: &[u8]) -> Result<Self, CryptoError> {
        let bad = |_| CryptoError::BadKey("wrong raw key length");
        Ok(PublicKey(match alg {
            KeyAlgorithm::Ed25519 => RawKey::Ed25519(raw.try_into().map_err(bad)?),
            KeyAlgorithm::X25519 => RawKey::X25519(raw.try_into().map_err(bad)?),
            KeyAlgorithm::Ed448 => RawKey::Ed448(Box::new(raw.try_into().map_err(bad)?)),
            KeyAlgorithm::X448 => RawKey::X448(Box::new(raw.try_into().map_err(bad)?)),
        }))
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.0 {
            RawKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            RawKey::X25519(_) => KeyAlgorithm::X25519,
            RawKey::Ed448(_) => KeyAlgorithm::Ed448,
            RawKey::X448(_) => KeyAlgorithm::X448,
        }
    }

    /// The raw key bytes (32, 56 or 57 bytes).
    pub fn raw(&self) -> &[u8] {
        match &self.0 {
            RawKey::Ed25519(k) | RawKey::X25519(k) => k,
            RawKey::Ed448(k) => &k[..],
            RawKey::X448(k) => &k[..],
        }
    }

    /// The SubjectPublicKeyInfo DER, as SMP sends it.
    pub fn to_der(&self) -> Vec<u8> {
        let raw = self.raw();
        let n = raw.len();
        let mut out = Vec::with_capacity(12 + n);
        out.extend_from_slice(&[0x30, (n + 10) as u8, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65]);
        out.push(self.algorithm().oid_byte());
        out.extend_from_slice(&[0x03, (n + 1) as u8, 0x00]);
        out.extend_from_slice(raw);
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
        PublicKey::from_raw(alg, &der[12..])
    }
}

impl PublicKey {
    /// The RFC 8410 algorithm OID byte, for encoders of AlgorithmIdentifier (X.509 signatures).
    pub fn oid_byte(alg: KeyAlgorithm) -> u8 {
        alg.oid_byte()
    }

    /// The algorithm named by an RFC 8410 OID `1.3.101.x`, given its DER content bytes.
    pub fn alg_from_oid(oid: &[u8]) -> Option<KeyAlgorithm> {
        match oid {
            [0x2b, 0x65, b] => KeyAlgorithm::from_oid_byte(*b),
            _ => None,
        }
    }
}

/// Fill `buf` from the operating system's RNG, reporting failure instead of panicking.
pub fn os_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    use rand::RngCore;
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|_| CryptoError::Rng)
}

/// A private signing key: the server's certificate keys, and keys tests and clients sign with.
///
/// Only Ed25519 and Ed448 exist because those are the only signature schemes SMP accepts.
pub enum PrivateSignKey {
    /// An Ed25519 key (RFC 8032). Boxed, as is Ed448: moves then never copy secret material.
    Ed25519(Box<ed25519_dalek::SigningKey>),
    /// An Ed448 key (RFC 8032).
    Ed448(Box<Ed448SignKey>),
}

/// An Ed448 signing key (`crrl`'s: signing takes ~56 µs there against ~500 µs with
/// `ed448-goldilocks-plus`, and a server with an Ed448 identity signs twice per handshake).
///
/// `crrl` does not clear its keys when they are dropped, so this wrapper overwrites the key
/// with one made from an all-zero seed before the memory is freed.
pub struct Ed448SignKey(crrl::ed448::PrivateKey);

impl Drop for Ed448SignKey {
    fn drop(&mut self) {
        self.0 = crrl::ed448::PrivateKey::from_seed(&[0u8; 57]);
        // Keep the overwrite from being optimised away as a store to memory about to be freed.
        std::hint::black_box(&self.0);
    }
}

impl std::fmt::Debug for PrivateSignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret material.
        write!(f, "PrivateSignKey({:?})", self.algorithm())
    }
}

/// Length of an Ed25519 signature; SMP tells signature types apart by length.
pub const ED25519_SIGNATURE_LEN: usize = 64;
/// Length of an Ed448 signature.
pub const ED448_SIGNATURE_LEN: usize = 114;

/// PKCS#8 v1 prefix as OpenSSL writes RFC 8410 keys, up to the 1-byte length of the outer
/// SEQUENCE and the algorithm byte; see [`PrivateSignKey::to_pkcs8_der`].
const PKCS8_VERSION_AND_OID: [u8; 10] = [0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0];

impl PrivateSignKey {
    /// A new random key from the OS RNG (an error, not a panic, if the RNG fails).
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, CryptoError> {
        match alg {
            KeyAlgorithm::Ed25519 => {
                let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                os_random(seed.as_mut())?;
                Ok(PrivateSignKey::Ed25519(Box::new(
                    ed25519_dalek::SigningKey::from_bytes(&seed),
                )))
            }
            KeyAlgorithm::Ed448 => {
                let mut seed = zeroize::Zeroizing::new([0u8; 57]);
                os_random(seed.as_mut())?;
                Ok(Self::ed448_from_seed(&seed))
            }
            KeyAlgorithm::X25519 | KeyAlgorithm::X448 => {
                Err(CryptoError::BadKey("not a signature algorithm"))
            }
        }
    }

    fn ed448_from_seed(seed: &[u8; 57]) -> Self {
        PrivateSignKey::Ed448(Box::new(Ed448SignKey(crrl::ed448::PrivateKey::from_seed(
            seed,
        ))))
    }

    /// Build a key from its RFC 8032 seed (32 bytes for Ed25519, 57 for Ed448).
    pub fn from_seed(alg: KeyAlgorithm, seed: &[u8]) -> Result<Self, CryptoError> {
        match alg {
            KeyAlgorithm::Ed25519 => {
                let seed: [u8; 32] = seed
                    .try_into()
                    .map_err(|_| CryptoError::BadKey("Ed25519 seed must be 32 bytes"))?;
                Ok(PrivateSignKey::Ed25519(Box::new(
                    ed25519_dalek::SigningKey::from_bytes(&seed),
                )))
            }
            KeyAlgorithm::Ed448 => {
                let seed: [u8; 57] = seed
                    .try_into()
                    .map_err(|_| CryptoError::BadKey("Ed448 seed must be 57 bytes"))?;
                Ok(Self::ed448_from_seed(&seed))
            }
            KeyAlgorithm::X25519 | KeyAlgorithm::X448 => {
                Err(CryptoError::BadKey("not a signature algorithm"))
            }
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PrivateSignKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            PrivateSignKey::Ed448(_) => KeyAlgorithm::Ed448,
        }
    }

    /// The matching public key, as SMP and certificates carry it.
    pub fn public(&self) -> PublicKey {
        match self {
            PrivateSignKey::Ed25519(k) => PublicKey(RawKey::Ed25519(k.verifying_key().to_bytes())),
            PrivateSignKey::Ed448(k) => PublicKey(RawKey::Ed448(Box::new(k.0.public_key.encode()))),
        }
    }

    /// Sign `msg` with pure EdDSA (no pre-hash, empty context), as the reference does.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            PrivateSignKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(msg).to_bytes().to_vec()
            }
            PrivateSignKey::Ed448(k) => k.0.sign_raw(msg).to_vec(),
        }
    }

    fn seed(&self) -> zeroize::Zeroizing<Vec<u8>> {
        match self {
            PrivateSignKey::Ed25519(k) => zeroize::Zeroizing::new(k.to_bytes().to_vec()),
            PrivateSignKey::Ed448(k) => zeroize::Zeroizing::new(k.0.encode().to_vec()),
        }
    }

    /// The RFC 8410 PKCS#8 DER exactly as `openssl genpkey` writes it (v1, no public key):
    ///
    /// ```text
    /// 30 LL 02 01 00 30 05 06 03 2B 65 XX 04 MM 04 NN <seed>
    /// XX: 0x70 Ed25519 (NN = 32), 0x71 Ed448 (NN = 57)
    /// ```
    pub fn to_pkcs8_der(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let seed = self.seed();
        let n = seed.len();
        let mut out = Vec::with_capacity(n + 16);
        out.extend_from_slice(&[0x30, (n + 14) as u8]);
        out.extend_from_slice(&PKCS8_VERSION_AND_OID);
        out[11] = self.algorithm().oid_byte();
        out.extend_from_slice(&[0x04, (n + 2) as u8, 0x04, n as u8]);
        out.extend_from_slice(&seed);
        zeroize::Zeroizing::new(out)
    }

    /// Parse an RFC 8410 PKCS#8 (v1, or v2 with the public key, which must then match).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        use der::Decode;
        const BAD: CryptoError = CryptoError::BadKey("not an RFC 8410 PKCS#8 private key");
        let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|_| BAD)?;
        if info.algorithm.parameters.is_some() {
            return Err(BAD);
        }
        let alg = PublicKey::alg_from_oid(info.algorithm.oid.as_bytes()).ok_or(BAD)?;
        if !alg.is_signature() {
            return Err(CryptoError::BadKey("PKCS#8 key is not a signature key"));
        }
        let inner =
            <&der::asn1::OctetStringRef>::from_der(info.private_key.as_bytes()).map_err(|_| BAD)?;
        let key = Self::from_seed(alg, inner.as_bytes())?;
        if let Some(public) = info.public_key {
            if public.raw_bytes() != key.public().raw() {
                return Err(CryptoError::BadKey(
                    "PKCS#8 public key does not match private key",
                ));
            }
        }
        Ok(key)
    }

    /// The PEM ("PRIVATE KEY") that OpenSSL and the reference server write to `*.key` files.
    pub fn to_pem(&self) -> zeroize::Zeroizing<String> {
        let der = self.to_pkcs8_der();
        // Encoding into a String only fails for invalid labels; ours is a constant.
        let pem = der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &der)
            .unwrap_or_default();
        zeroize::Zeroizing::new(pem)
    }

    /// Parse a PEM "PRIVATE KEY" (RFC 8410 PKCS#8), as written by OpenSSL or [`Self::to_pem`].
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|_| CryptoError::BadKey("not a PEM private key"))?;
        let der = zeroize::Zeroizing::new(der);
        if label != "PRIVATE KEY" {
            return Err(CryptoError::BadKey("PEM label is not PRIVATE KEY"));
        }
        Self::from_pkcs8_der(&der)
    }
}

/// Verify a pure EdDSA signature. False, never a panic, for a DH key, a signature of the wrong
/// length for the key, an invalid key or signature encoding, or a bad signature.
pub fn verify(key: &PublicKey, sig: &[u8], msg: &[u8]) -> bool {
    match key.algorithm() {
        KeyAlgorithm::Ed25519 => {
            let (Ok(raw), Ok(sig)) = (
                <[u8; 32]>::try_from(key.raw()),
                <[u8; ED25519_SIGNATURE_LEN]>::try_from(sig),
            ) else {
                return false;
            };
            let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&raw) else {
                return false;
            };
            let sig = ed25519_dalek::Signature::from_bytes(&sig);
            use ed25519_dalek::Verifier;
            vk.verify(msg, &sig).is_ok()
        }
        KeyAlgorithm::Ed448 => {
            let (Ok(raw), Ok(sig)) = (
                <[u8; 57]>::try_from(key.raw()),
                <[u8; ED448_SIGNATURE_LEN]>::try_from(sig),
            ) else {
                return false;
            };
            let Ok(vk) = ed448_goldilocks_plus::VerifyingKey::from_bytes(&raw) else {
                return false;
            };
            let Ok(sig) = ed448_goldilocks_plus::Signature::from_bytes(&sig) else {
                return false;
            };
            vk.verify_raw(&sig, msg).is_ok()
        }
        KeyAlgorithm::X25519 | KeyAlgorithm::X448 => false,
    }
}

/// The signature scheme implied by a signature's length: SMP transmissions carry no algorithm
/// tag, so the reference infers it (64 bytes Ed25519, 114 bytes Ed448).
pub fn signature_algorithm_for_len(len: usize) -> Option<KeyAlgorithm> {
    match len {
        ED25519_SIGNATURE_LEN => Some(KeyAlgorithm::Ed25519),
        ED448_SIGNATURE_LEN => Some(KeyAlgorithm::Ed448),
        _ => None,
    }
}

/// SPKI DER of the reference server's fixed dummy keys (Server.hs `dummyKeyEd25519`,
/// `dummyKeyEd448`, `dummyKeyX25519`), decoded from their published base64.
const DUMMY_ED25519: &str = "MCowBQYDK2VwAyEA139Oqs4QgpqbAmB0o7rZf6T19ryl7E65k4AYe0kE3Qs=";
const DUMMY_ED448: &str =
    "MEMwBQYDK2VxAzoA6ibQc9XpkSLtwrf7PLvp81qW/etiumckVFImCMRdftcG/XopbOSaq9qyLhrgJWKOLyNrQPNVvpMA";
const DUMMY_X25519: &str = "MCowBQYDK2VuAyEA4JGSMYht18H4mas/jHeBwfcM7jLwNYJNOAhi2/g4RXg=";

/// A fixed key to verify against when the queue does not exist, so that AUTH errors take the
/// same time whether or not a queue exists (the reference uses the same keys). X448 has no
/// dummy in the reference; it gets the X25519 one, which no caller should ask for.
///
/// Decoded once: decoding base64 and DER on every AUTH failure made a missing queue slower
/// than a wrong key. The key is kept as bytes, not as a decompressed point, because a real
/// key is decompressed at each verification too, so both paths do the same work.
pub fn dummy_key(alg: KeyAlgorithm) -> &'static PublicKey {
    static KEYS: [std::sync::OnceLock<PublicKey>; 3] = [
        std::sync::OnceLock::new(),
        std::sync::OnceLock::new(),
        std::sync::OnceLock::new(),
    ];
    let i = match alg {
        KeyAlgorithm::Ed25519 => 0,
        KeyAlgorithm::Ed448 => 1,
        KeyAlgorithm::X25519 | KeyAlgorithm::X448 => 2,
    };
    KEYS[i].get_or_init(|| decode_dummy_key(alg))
}

fn decode_dummy_key(alg: KeyAlgorithm) -> PublicKey {
    use base64::Engine;
    let b64 = match alg {
        KeyAlgorithm::Ed25519 => DUMMY_ED25519,
        KeyAlgorithm::Ed448 => DUMMY_ED448,
        KeyAlgorithm::X25519 | KeyAlgorithm::X448 => DUMMY_X25519,
    };
    // The constants are checked by a unit test; a fallback keeps this total without unwrap.
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|der| PublicKey::from_der(&der).ok())
        .unwrap_or_else(|| {
            PublicKey(match alg {
                KeyAlgorithm::Ed25519 => RawKey::Ed25519([0; 32]),
                KeyAlgorithm::X25519 => RawKey::X25519([0; 32]),
                KeyAlgorithm::Ed448 => RawKey::Ed448(Box::new([0; 57])),
                KeyAlgorithm::X448 => RawKey::X448(Box::new([0; 56])),
            })
        })
}

/// An X25519 key pair: the server's per-queue and per-session DH keys.
pub struct DhKeyPair {
    secret: x25519_dalek::StaticSecret,
}

impl std::fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhKeyPair(X25519)")
    }
}

impl DhKeyPair {
    /// A new random key pair from the OS RNG.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        os_random(bytes.as_mut())?;
        Ok(Self::from_secret_bytes(*bytes))
    }

    /// A new random key pair from `rng` (command handling passes its generator in, so tests
    /// can repeat a run).
    pub fn generate_from(rng: &mut dyn super::random::SecureRng) -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_secret_bytes(*bytes)
    }

    /// A key pair from fixed secret bytes (tests and vectors).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        DhKeyPair {
            secret: x25519_dalek::StaticSecret::from(bytes),
        }
    }

    /// The public key (algorithm X25519).
    pub fn public(&self) -> PublicKey {
        PublicKey(RawKey::X25519(
            x25519_dalek::PublicKey::from(&self.secret).to_bytes(),
        ))
    }

    /// The raw X25519 shared secret with `peer` (no hashing: the reference uses it as is).
    pub fn dh(&self, peer: &PublicKey) -> Result<[u8; 32], CryptoError> {
        let raw: [u8; 32] = match &peer.0 {
            RawKey::X25519(k) => *k,
            _ => return Err(CryptoError::BadKey("DH peer key is not X25519")),
        };
        let peer = x25519_dalek::PublicKey::from(raw);
        Ok(self.secret.diffie_hellman(&peer).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_compact_and_keep_algorithm_and_bytes() {
        // Queues hold several keys each: 32-byte keys must not allocate.
        assert!(std::mem::size_of::<PublicKey>() <= 40);
        for alg in [
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::X25519,
            KeyAlgorithm::Ed448,
            KeyAlgorithm::X448,
        ] {
            let raw: Vec<u8> = (0..alg.key_len() as u8).collect();
            let k = PublicKey::from_raw(alg, &raw).expect("key");
            assert_eq!((k.algorithm(), k.raw()), (alg, &raw[..]));
            assert_eq!(PublicKey::from_der(&k.to_der()).expect("der"), k);
            assert!(PublicKey::from_raw(alg, &raw[1..]).is_err());
        }
    }

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
        for alg in [
            KeyAlgorithm::Ed448,
            KeyAlgorithm::X448,
            KeyAlgorithm::X25519,
        ] {
            let k = PublicKey::from_raw(alg, &vec![1u8; alg.key_len()]).expect("key");
            let der = k.to_der();
            assert_eq!(der.len(), 12 + alg.key_len());
            assert_eq!(PublicKey::from_der(&der).expect("parse").algorithm(), alg);
        }
    }

    #[test]
    fn dummy_keys_decode_to_the_reference_constants() {
        let ed = dummy_key(KeyAlgorithm::Ed25519);
        assert_eq!(ed.algorithm(), KeyAlgorithm::Ed25519);
        assert_eq!(&ed.raw()[..4], &[0xd7, 0x7f, 0x4e, 0xaa]);
        let ed448 = dummy_key(KeyAlgorithm::Ed448);
        assert_eq!(ed448.algorithm(), KeyAlgorithm::Ed448);
        assert_eq!(&ed448.raw()[..3], &[0xea, 0x26, 0xd0]);
        let x = dummy_key(KeyAlgorithm::X25519);
        assert_eq!(x.algorithm(), KeyAlgorithm::X25519);
        assert_eq!(&x.raw()[..3], &[0xe0, 0x91, 0x92]);
        // Verifying against a dummy key takes the normal path and fails.
        assert!(!verify(ed, &[0u8; 64], b"m"));
        assert!(!verify(ed448, &[0u8; 114], b"m"));
    }

    #[test]
    fn sign_verify_and_rejections() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Ed448] {
            let k = PrivateSignKey::generate(alg).expect("key");
            assert_eq!(k.algorithm(), alg);
            let sig = k.sign(b"hello");
            assert_eq!(signature_algorithm_for_len(sig.len()), Some(alg));
            let public = k.public();
            assert!(verify(&public, &sig, b"hello"));
            assert!(!verify(&public, &sig, b"hellp"));
            assert!(!verify(&public, &sig[1..], b"hello"));
            let mut bad = sig.clone();
            bad[0] ^= 1;
            assert!(!verify(&public, &bad, b"hello"));
            assert!(!verify(&public, &vec![0xffu8; sig.len()], b"hello"));
            let other = if alg == KeyAlgorithm::Ed25519 {
                114
            } else {
                64
            };
            assert!(!verify(&public, &vec![0u8; other], b"hello"));
            // Same raw bytes under a DH algorithm never verify.
            if alg == KeyAlgorithm::Ed25519 {
                let x = PublicKey::from_raw(KeyAlgorithm::X25519, public.raw()).expect("x");
                assert!(!verify(&x, &sig, b"hello"));
            }
            // An invalid point is a false, not a panic.
            let junk = PublicKey::from_raw(alg, &vec![0xffu8; alg.key_len()]).expect("raw");
            assert!(!verify(&junk, &sig, b"hello"));
        }
        assert_eq!(signature_algorithm_for_len(65), None);
        assert!(PrivateSignKey::generate(KeyAlgorithm::X25519).is_err());
    }

    #[test]
    fn rfc8032_ed25519_test_1() {
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let k = PrivateSignKey::from_seed(KeyAlgorithm::Ed25519, &seed).expect("key");
        assert_eq!(
            k.public().raw(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        assert_eq!(
            k.sign(b""),
            hex(concat!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            ))
        );
    }

    #[test]
    fn rfc8032_ed448_blank() {
        let seed = hex(concat!(
            "6c82a562cb808d10d632be89c8513ebf6c929f34ddfa8c9f63c9960ef6e348a3",
            "528c8a3fcc2f044e39a3fc5b94492f8f032e7549a20098f95b"
        ));
        let k = PrivateSignKey::from_seed(KeyAlgorithm::Ed448, &seed).expect("key");
        assert_eq!(
            k.public().raw(),
            hex(concat!(
                "5fd7449b59b461fd2ce787ec616ad46a1da1342485a70e1f8a0ea75d80e96778",
                "edf124769b46c7061bd6783df1e50f6cd1fa1abeafe8256180"
            ))
        );
        let sig = k.sign(b"");
        assert_eq!(
            sig,
            hex(concat!(
                "533a37f6bbe457251f023c0d88f976ae2dfb504a843e34d2074fd823d41a591f",
                "2b233f034f628281f2fd7a22ddd47d7828c59bd0a21bfd3980ff0d2028d4b18a",
                "9df63e006c5d1c2d345b925d8dc00b4104852db99ac5c7cdda8530a113a0f4db",
                "b61149f05a7363268c71d95808ff2e652600"
            ))
        );
        assert!(verify(&k.public(), &sig, b""));
    }

    /// Ed448 signatures are deterministic: ours (`crrl`) must equal, byte for byte, those of an
    /// independent implementation (`ed448-goldilocks-plus`) for the same seed and message.
    #[test]
    fn ed448_signatures_match_an_independent_implementation() {
        for i in 0..16u8 {
            let seed = [i.wrapping_mul(29).wrapping_add(3); 57];
            let msg = vec![i; usize::from(i) * 37];
            let ours = PrivateSignKey::from_seed(KeyAlgorithm::Ed448, &seed).expect("key");
            let theirs = ed448_goldilocks_plus::SigningKey::from_bytes(
                &ed448_goldilocks_plus::SecretKey::from(seed),
            );
            assert_eq!(ours.public().raw(), &theirs.verifying_key().to_bytes()[..]);
            let sig = ours.sign(&msg);
            assert_eq!(sig, theirs.sign_raw(&msg).to_bytes().to_vec());
            assert!(verify(&ours.public(), &sig, &msg));
        }
    }

    #[test]
    fn pkcs8_round_trip_and_openssl_layout() {
        for (alg, len) in [(KeyAlgorithm::Ed25519, 48), (KeyAlgorithm::Ed448, 73)] {
            let k = PrivateSignKey::generate(alg).expect("key");
            let der = k.to_pkcs8_der();
            assert_eq!(der.len(), len);
            let back = PrivateSignKey::from_pkcs8_der(&der).expect("parse");
            assert_eq!(back.public(), k.public());
            let pem = k.to_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let back = PrivateSignKey::from_pem(&pem).expect("pem");
            assert_eq!(back.public(), k.public());
        }
        assert!(PrivateSignKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )
        .is_err());
        assert!(PrivateSignKey::from_pkcs8_der(&[0x30, 0x00]).is_err());
    }

    #[test]
    fn x25519_dh_agrees_and_rejects_other_keys() {
        let a = DhKeyPair::generate().expect("a");
        let b = DhKeyPair::generate().expect("b");
        assert_eq!(a.public().algorithm(), KeyAlgorithm::X25519);
        assert_eq!(
            a.dh(&b.public()).expect("ab"),
            b.dh(&a.public()).expect("ba")
        );
        let ed = PrivateSignKey::generate(KeyAlgorithm::Ed25519)
            .expect("ed")
            .public();
        assert!(a.dh(&ed).is_err());
        // RFC 7748 section 6.1.
        let alice = DhKeyPair::from_secret_bytes(arr(&hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        )));
        let bob = DhKeyPair::from_secret_bytes(arr(&hex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        )));
        assert_eq!(
            alice.public().raw(),
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            alice.dh(&bob.public()).expect("dh").to_vec(),
            hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        );
    }

    fn arr(v: &[u8]) -> [u8; 32] {
        v.try_into().expect("32 bytes")
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }
}
