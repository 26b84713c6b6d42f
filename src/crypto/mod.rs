//! Keys, signatures, crypto_box authenticators, secret_box chain keys and certificates.
//!
//! Pure functions over bytes; the only I/O here is reading and writing key and certificate files.

pub mod keys;

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
}
