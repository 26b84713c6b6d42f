//! Certificates from any ACME CA (Let's Encrypt by default) for a web server that shares its
//! ports with something else.
//!
//! The crate knows nothing of the program that uses it: it takes domain names, a directory
//! URL and file paths, answers challenges through [`Challenges`] (which the caller's HTTP and
//! TLS listeners consult), writes the issued chain and key atomically, and hands them to a
//! callback so the caller can swap them into a running TLS configuration.
//!
//! - [`settings`]: what to obtain and from where.
//! - [`challenges`]: pending HTTP-01 tokens and TLS-ALPN-01 certificates.
//! - [`account`]: the ACME account, persisted 0600 and re-created when the CA forgot it.
//! - [`issue`]: one order, from new-order to the certificate chain.
//! - [`certinfo`]: what an issued certificate says (validity, names, ARI identifier).
//! - [`renew`]: the long-running renewer (ARI or 2/3 of the lifetime, jitter, backoff).
//! - [`files`]: atomic, private file writes.

pub mod account;
pub mod certinfo;
pub mod challenges;
pub mod files;
pub mod issue;
pub mod renew;
pub mod settings;

pub use challenges::{Challenges, ACME_TLS_ALPN};
pub use renew::{Issued, Renewer, RenewerHandle};
pub use settings::{
    AcmeSettings, ChallengeMode, KeyType, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING,
};

/// What can go wrong while obtaining a certificate.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME server or the HTTP exchange with it failed.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// A local file could not be read or written.
    #[error("{what} {path}: {source}")]
    File {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Key or CSR generation failed.
    #[error("key generation: {0}")]
    Key(String),
    /// A challenge could not be completed; `hint` says what the operator should check.
    #[error("{detail}. {hint}")]
    Challenge {
        /// What the CA reported.
        detail: String,
        /// What to check.
        hint: String,
    },
    /// The issued certificate could not be understood.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Stored account credentials could not be read.
    #[error("account file {path}: {detail}; delete it to create a new account")]
    Account {
        /// The account file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
}
