//! The reference's NaCl-style constructions: padding, crypto_box/secret_box, authenticators
//! and the HKDF secret_box chain keys.
//!
//! # The reference's "crypto_box" is real NaCl crypto_box
//!
//! The reference feeds the *raw* X25519 shared secret into its XSalsa20 routine, but that
//! routine starts with an XSalsa20 state keyed by the secret and a nonce of sixteen zero bytes
//! followed by the real nonce's first 8 bytes, then derives once more with the remaining 16.
//! Unrolled, that is `HSalsa20(secret, 0^16)` (which is NaCl's `crypto_box_beforenm`) followed
//! by standard XSalsa20 with the real nonce. So:
//!
//! - `secret_box(dh_secret, n, m)` = NaCl `crypto_box(m, n, peer_pk, own_sk)` with the 16-byte
//!   Poly1305 tag first and no zero prefix: `tag || ciphertext`.
//! - For 32-byte symmetric keys (chain keys, file keys) the same function is used, so the
//!   reference's "secret_box" is NaCl `crypto_secretbox` keyed with `HSalsa20(key, 0^16)`, not
//!   with the key itself. We mirror that exactly; `tests/crypto_vectors.rs` checks it against
//!   libsodium (PyNaCl).
//!
//! # Padding
//!
//! ```text
//! | len: u16 big-endian | msg (len bytes) | '#' * (padded_len - len - 2) |
//! ```

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use xsalsa20poly1305::aead::{AeadInPlace, KeyInit};

use super::keys::{DhKeyPair, PublicKey};
use super::CryptoError;

/// Longest message `pad` accepts: the length prefix is 16 bits and the reference reserves 2.
pub const MAX_PADDED_MSG_LEN: usize = (1 << 16) - 3;

/// Size of the Poly1305 tag that precedes every ciphertext.
pub const AUTH_TAG_SIZE: usize = 16;

/// Size of a crypto_box authenticator: a boxed SHA-512 digest (64 bytes) plus its tag (16).
pub const CB_AUTHENTICATOR_SIZE: usize = 80;

/// Pad `msg` to exactly `padded_len` bytes so ciphertext length reveals nothing.
pub fn pad(msg: &[u8], padded_len: usize) -> Result<Vec<u8>, CryptoError> {
    let len = msg.len();
    if len > MAX_PADDED_MSG_LEN || len + 2 > padded_len {
        return Err(CryptoError::LargeMsg);
    }
    let mut out = Vec::with_capacity(padded_len);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out.resize(padded_len, b'#');
    Ok(out)
}

/// Remove the padding added by [`pad`]. Like the reference, the fill bytes are not checked.
pub fn unpad(padded: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (len, rest) = match padded {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]) as usize, rest),
        _ => return Err(CryptoError::BadPadding),
    };
    rest.get(..len)
        .map(<[u8]>::to_vec)
        .ok_or(CryptoError::BadPadding)
}

/// The XSalsa20-Poly1305 cipher for a reference "secret": key = HSalsa20(secret, 0^16).
fn cipher(secret: &[u8; 32]) -> xsalsa20poly1305::XSalsa20Poly1305 {
    use salsa20::cipher::consts::U10;
    let zero = salsa20::cipher::generic_array::GenericArray::default();
    let mut subkey = salsa20::hsalsa::<U10>(secret.into(), &zero);
    let cipher = xsalsa20poly1305::XSalsa20Poly1305::new(&subkey);
    zeroize::Zeroize::zeroize(subkey.as_mut_slice());
    cipher
}

/// Encrypt without padding: `tag (16) || ciphertext`, as the reference's `cryptoBox`.
///
/// `secret` is either a raw X25519 shared secret or a 32-byte symmetric key; see the module
/// doc for why this equals NaCl crypto_box.
pub fn secret_box(key: &[u8; 32], nonce: &[u8; 24], plain: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; AUTH_TAG_SIZE + plain.len()];
    out[AUTH_TAG_SIZE..].copy_from_slice(plain);
    // XSalsa20-Poly1305 only fails for messages longer than 2^38 bytes; ours are blocks.
    if let Ok(tag) =
        cipher(key).encrypt_in_place_detached(nonce.into(), b"", &mut out[AUTH_TAG_SIZE..])
    {
        out[..AUTH_TAG_SIZE].copy_from_slice(&tag);
    }
    out
}

/// Decrypt a [`secret_box`] packet; `Decrypt` if it is shorter than a tag or forged.
pub fn secret_box_open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    packet: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if packet.len() < AUTH_TAG_SIZE {
        return Err(CryptoError::Decrypt);
    }
    let (tag, ct) = packet.split_at(AUTH_TAG_SIZE);
    let mut buf = ct.to_vec();
    cipher(key)
        .decrypt_in_place_detached(
            nonce.into(),
            b"",
            &mut buf,
            xsalsa20poly1305::Tag::from_slice(tag),
        )
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(buf)
}

/// Pad `msg` to `padded_len` and box it (the reference's `cbEncrypt`/`sbEncrypt`).
pub fn cb_encrypt(
    secret: &[u8; 32],
    nonce: &[u8; 24],
    msg: &[u8],
    padded_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    Ok(secret_box(secret, nonce, &pad(msg, padded_len)?))
}

/// Open and unpad (the reference's `cbDecrypt`/`sbDecrypt`).
pub fn cb_decrypt(
    secret: &[u8; 32],
    nonce: &[u8; 24],
    packet: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    unpad(&secret_box_open(secret, nonce, packet)?)
}

/// A 24-byte nonce from any bytes: longer input is truncated, shorter is zero-padded at the
/// end (the server derives message nonces from message IDs this way).
pub fn cb_nonce(bytes: &[u8]) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    let n = bytes.len().min(24);
    nonce[..n].copy_from_slice(&bytes[..n]);
    nonce
}

/// The nonce with its bytes in reverse order: responses reuse the command's nonce reversed.
pub fn reverse_nonce(nonce: &[u8; 24]) -> [u8; 24] {
    let mut out = *nonce;
    out.reverse();
    out
}

/// Authenticate `msg` to `peer_pub` without a signature: box SHA-512(msg) with the DH secret.
/// Fails only if `peer_pub` is not an X25519 key.
pub fn cb_authenticate(
    peer_pub: &PublicKey,
    own: &DhKeyPair,
    nonce: &[u8; 24],
    msg: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let secret = zeroize::Zeroizing::new(own.dh(peer_pub)?);
    Ok(secret_box(&secret, nonce, &Sha512::digest(msg)))
}

/// Check a [`cb_authenticate`] authenticator in constant time. False for a non-X25519 key,
/// a wrong length, a forged box or a different message.
pub fn cb_verify(
    peer_pub: &PublicKey,
    own: &DhKeyPair,
    nonce: &[u8; 24],
    authenticator: &[u8],
    msg: &[u8],
) -> bool {
    if authenticator.len() != CB_AUTHENTICATOR_SIZE {
        return false;
    }
    let Ok(secret) = own.dh(peer_pub).map(zeroize::Zeroizing::new) else {
        return false;
    };
    match secret_box_open(&secret, nonce, authenticator) {
        Ok(digest) => bool::from(digest.as_slice().ct_eq(Sha512::digest(msg).as_slice())),
        Err(_) => false,
    }
}

/// HKDF (RFC 5869) with SHA-512, as the reference's `hkdf`. An empty salt is the same as no
/// salt. `LargeMsg` if `len` exceeds 255 * 64 bytes.
pub fn hkdf_sha512(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = vec![0u8; len];
    hkdf_into(salt, ikm, info, &mut out)?;
    Ok(out)
}

fn hkdf_into(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
    hkdf::Hkdf::<Sha512>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| CryptoError::LargeMsg)
}

/// A secret_box chain key: each step yields a one-time (key, nonce) and replaces itself, so
/// every block of a v11+ transport connection is encrypted with fresh keys.
pub struct SbChainKey([u8; 32]);

impl Drop for SbChainKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for SbChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SbChainKey(..)")
    }
}

/// Derive the two chain keys (one per direction) from a DH secret, with the session ID as salt:
/// HKDF-SHA512(salt, secret, "SimpleXSbChainInit", 64) split 32/32, in that order.
pub fn sbc_init(salt: &[u8], secret: &[u8]) -> (SbChainKey, SbChainKey) {
    let mut out = zeroize::Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF-SHA512's limit, so this cannot fail.
    let ok = hkdf_into(salt, secret, b"SimpleXSbChainInit", out.as_mut());
    debug_assert!(ok.is_ok());
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a.copy_from_slice(&out[..32]);
    b.copy_from_slice(&out[32..]);
    (SbChainKey(a), SbChainKey(b))
}

impl SbChainKey {
    /// Wrap 32 bytes as a chain key (tests, vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SbChainKey(bytes)
    }

    /// The current chain key bytes (tests, vectors).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Advance the chain: HKDF-SHA512(no salt, chain key, "SimpleXSbChain", 88) is split into
    /// the next chain key (32), then the secret_box key (32), then the nonce (24).
    /// Returns (secret_box key, nonce).
    pub fn next_key(&mut self) -> ([u8; 32], [u8; 24]) {
        let mut out = zeroize::Zeroizing::new([0u8; 88]);
        // 88 bytes is far below HKDF-SHA512's limit, so this cannot fail.
        let ok = hkdf_into(b"", &self.0, b"SimpleXSbChain", out.as_mut());
        debug_assert!(ok.is_ok());
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 24];
        self.0.copy_from_slice(&out[..32]);
        key.copy_from_slice(&out[32..64]);
        nonce.copy_from_slice(&out[64..]);
        (key, nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_layout_and_limits() {
        let p = pad(b"hello", 10).expect("pad");
        assert_eq!(p, b"\x00\x05hello###");
        assert_eq!(unpad(&p).expect("unpad"), b"hello");
        assert_eq!(pad(b"hello", 7).expect("exact"), b"\x00\x05hello");
        assert!(matches!(pad(b"hello", 6), Err(CryptoError::LargeMsg)));
        let big = vec![0u8; MAX_PADDED_MSG_LEN + 1];
        assert!(pad(&big, 70000).is_err());
        assert!(pad(&big[1..], 70000).is_ok());
        assert!(unpad(b"\x00").is_err());
        assert!(unpad(b"\x00\x05abc").is_err());
        assert_eq!(unpad(b"\x00\x00").expect("empty"), b"");
    }

    #[test]
    fn box_round_trip_and_tamper() {
        let key = [3u8; 32];
        let nonce = [9u8; 24];
        let c = cb_encrypt(&key, &nonce, b"msg", 100).expect("enc");
        assert_eq!(c.len(), 116);
        assert_eq!(cb_decrypt(&key, &nonce, &c).expect("dec"), b"msg");
        let mut bad = c.clone();
        bad[20] ^= 1;
        assert!(cb_decrypt(&key, &nonce, &bad).is_err());
        assert!(secret_box_open(&key, &nonce, &c[..15]).is_err());
        assert!(secret_box_open(&key, &reverse_nonce(&nonce), &c).is_ok());
        assert!(secret_box_open(&key, &[1u8; 24], &c).is_err());
        assert_eq!(
            secret_box_open(&key, &nonce, &secret_box(&key, &nonce, b"")).expect("e"),
            b""
        );
    }

    #[test]
    fn nonce_helpers() {
        assert_eq!(cb_nonce(&[1, 2]), {
            let mut n = [0u8; 24];
            n[0] = 1;
            n[1] = 2;
            n
        });
        let long: Vec<u8> = (0..30).collect();
        assert_eq!(cb_nonce(&long).to_vec(), long[..24].to_vec());
        let n: [u8; 24] = core::array::from_fn(|i| i as u8);
        let r = reverse_nonce(&n);
        assert_eq!(r[0], 23);
        assert_eq!(reverse_nonce(&r), n);
    }

    #[test]
    fn authenticator_round_trip() {
        let a = DhKeyPair::from_secret_bytes([1u8; 32]);
        let b = DhKeyPair::from_secret_bytes([2u8; 32]);
        let nonce = [5u8; 24];
        let auth = cb_authenticate(&b.public(), &a, &nonce, b"body").expect("auth");
        assert_eq!(auth.len(), CB_AUTHENTICATOR_SIZE);
        assert!(cb_verify(&a.public(), &b, &nonce, &auth, b"body"));
        assert!(!cb_verify(&a.public(), &b, &nonce, &auth, b"bodz"));
        assert!(!cb_verify(&a.public(), &b, &nonce, &auth[..79], b"body"));
        let ed = PublicKey::from_raw(super::super::keys::KeyAlgorithm::Ed25519, &[1u8; 32])
            .expect("key");
        assert!(!cb_verify(&ed, &b, &nonce, &auth, b"body"));
        assert!(cb_authenticate(&ed, &a, &nonce, b"body").is_err());
    }

    #[test]
    fn chain_keys_advance_and_agree() {
        let (mut s1, mut r1) = sbc_init(b"session", b"secret");
        let (mut s2, mut r2) = sbc_init(b"session", b"secret");
        assert_ne!(s1.as_bytes(), r1.as_bytes());
        let k1 = s1.next_key();
        assert_eq!(k1, s2.next_key());
        assert_ne!(k1, s1.next_key());
        assert_eq!(r1.next_key(), r2.next_key());
        assert!(hkdf_sha512(b"", b"x", b"", 255 * 64 + 1).is_err());
    }

    proptest::proptest! {
        #[test]
        fn pad_unpad_and_box_round_trip(
            msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            extra in 0usize..50,
            key in proptest::prelude::any::<[u8; 32]>(),
            nonce in proptest::prelude::any::<[u8; 24]>(),
        ) {
            let padded_len = msg.len() + 2 + extra;
            let padded = pad(&msg, padded_len).expect("fits");
            proptest::prop_assert_eq!(padded.len(), padded_len);
            proptest::prop_assert_eq!(&unpad(&padded).expect("unpad"), &msg);
            let boxed = cb_encrypt(&key, &nonce, &msg, padded_len).expect("enc");
            proptest::prop_assert_eq!(boxed.len(), padded_len + AUTH_TAG_SIZE);
            proptest::prop_assert_eq!(&cb_decrypt(&key, &nonce, &boxed).expect("dec"), &msg);
        }

        #[test]
        fn unpad_and_open_never_panic(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
        ) {
            let _ = unpad(&data);
            let _ = secret_box_open(&[0u8; 32], &[0u8; 24], &data);
        }
    }
}
