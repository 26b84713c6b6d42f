//! Keys, signatures, crypto_box authenticators, secret_box chain keys and certificates.
//!
//! The pure parts live in the `smp-proto` crate (no I/O, checked by the compiler) and are
//! re-exported here so the server keeps one `crypto` path; [`identity`] adds the server's
//! identity files (CA and server certificates, the `fingerprint` file).

pub mod identity;

pub use smp_proto::crypto::random::random_bytes;
pub use smp_proto::crypto::{cbox, keys, random, x509, CryptoError};
