//! Shared helpers for the TLS integration tests: fixtures, signers, a server on port 0.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use smp_server::crypto::keys::KeyAlgorithm;
use smp_server::transport::HandshakeSigner;

/// The reference fixtures (shared/reference-fixtures beside the repository).
pub fn fixtures_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("SMP_REFERENCE_FIXTURES").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference-fixtures")),
        Some(PathBuf::from("/work/shared/reference-fixtures")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.join("ca.crt").exists() {
            return c;
        }
    }
    panic!("reference fixtures not found: set SMP_REFERENCE_FIXTURES or place shared/ beside the repository");
}

/// The DER inside a one-block PEM file.
pub fn pem_der(path: &std::path::Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).expect("read pem");
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("base64")
}

/// A test implementation of the server's handshake signer.
#[derive(Debug)]
pub enum TestSigner {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    Ed448(Box<ed448_goldilocks_plus::SigningKey>),
}

impl HandshakeSigner for TestSigner {
    fn algorithm(&self) -> KeyAlgorithm {
        match self {
            TestSigner::Ed25519(_) => KeyAlgorithm::Ed25519,
            TestSigner::Ed448(_) => KeyAlgorithm::Ed448,
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer;
        match self {
            TestSigner::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
            TestSigner::Ed448(k) => k.sign_raw(msg).to_bytes().to_vec(),
        }
    }
}

/// A PKCS#8 Ed25519/Ed448 private key file (RFC 8410: the seed is the last bytes).
pub fn load_signer(path: &std::path::Path) -> TestSigner {
    let der = pem_der(path);
    match der.len() {
        48 => {
            let seed: [u8; 32] = der[16..].try_into().expect("seed");
            TestSigner::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&seed)))
        }
        73 => TestSigner::Ed448(Box::new(
            ed448_goldilocks_plus::SigningKey::try_from(&der[16..]).expect("ed448 key"),
        )),
        n => panic!("unexpected private key DER length {n}"),
    }
}

/// An identity: chain [server, CA], the server key, and the CA fingerprint.
pub struct Identity {
    pub chain: Vec<Vec<u8>>,
    pub signer: Arc<dyn HandshakeSigner>,
    pub fingerprint: [u8; 32],
}

/// `""` for the Ed448 reference chain, `"ed25519"` for the Ed25519 one.
pub fn identity(sub: &str) -> Identity {
    let dir = fixtures_dir().join(sub);
    let server = pem_der(&dir.join("server.crt"));
    let ca = pem_der(&dir.join("ca.crt"));
    let fingerprint = smp_server::transport::verify::cert_fingerprint(&ca);
    Identity {
        chain: vec![server, ca],
        signer: Arc::new(load_signer(&dir.join("server.key"))),
        fingerprint,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
