//! Keys, signatures, crypto_box authenticators, secret_box chain keys and certificates.
//!
//! Pure functions over bytes, wire-compatible with the reference server's `Crypto.hs`. Reading
//! and writing identity files lives in the server crate (`smp_server::crypto::identity`).
//!
//! - [`keys`]: public keys (SPKI DER), Ed25519/Ed448 signing keys (PKCS#8), X25519 key pairs.
//! - [`cbox`]: padding, the reference's crypto_box/secret_box, authenticators, HKDF chain keys.
//! - [`x509`]: signed public keys for the SMP handshake; certificate key and signature checks.
//! - [`random`]: IDs and nonces, from an injected generator or the OS.

pub mod cbox;
pub mod keys;
pub mod random;
pub mod x509;

use std::path::PathBuf;

/// Errors of the crypto layer.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A key could not be parsed or has the wrong algorithm/length.
    #[error("invalid key: {0}")]
    BadKey(&'static str),
    /// A signature could not be parsed.
    #[error("invalid signature")]
    BadSignature,
    /// Decryption or authentication failed.
    #[error("decryption failed")]
    Decrypt,
    /// A message is larger than its padded size allows.
    #[error("message too large for padding")]
    LargeMsg,
    /// A padded message is shorter than its length prefix says.
    #[error("invalid padded message")]
    BadPadding,
    /// The operating system's random number generator failed.
    #[error("OS random number generator failed")]
    Rng,
    /// A certificate or signed object could not be parsed or has an unsupported form.
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    /// A file the identity needs does not exist (e.g. `ca.key`, kept offline by operators).
    #[error("missing file {}: {hint}", path.display())]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
        /// What to do about it.
        hint: &'static str,
    },
    /// The identity files do not agree with each other.
    #[error("{0}")]
    IdentityMismatch(String),
    /// Reading or writing an identity file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
