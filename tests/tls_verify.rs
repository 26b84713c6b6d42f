//! The client's server-identity check on the reference fixtures.

mod tls_support;

use rustls::SignatureScheme;
use smp_server::transport::verify::{
    cert_fingerprint, check_server_chain, verify_handshake_signature, ChainError,
};
use tls_support::identity;

/// 2030-01-01, inside every fixture's validity.
const NOW: u64 = 1_893_456_000;

fn refs(chain: &[Vec<u8>]) -> Vec<&[u8]> {
    chain.iter().map(Vec::as_slice).collect()
}

#[test]
fn reference_chains_verify() {
    for sub in ["", "ed25519"] {
        let id = identity(sub);
        assert_eq!(
            check_server_chain(&refs(&id.chain), &id.fingerprint, NOW),
            Ok(())
        );
        // [leaf, id, ca] with id == ca also follows the reference's reading.
        let three = vec![
            id.chain[0].clone(),
            id.chain[1].clone(),
            id.chain[1].clone(),
        ];
        assert_eq!(
            check_server_chain(&refs(&three), &id.fingerprint, NOW),
            Ok(())
        );
    }
}

#[test]
fn fingerprint_is_of_the_ca_certificate() {
    let id = identity("");
    let leaf_fp = cert_fingerprint(&id.chain[0]);
    assert_eq!(
        check_server_chain(&refs(&id.chain), &leaf_fp, NOW),
        Err(ChainError::Identity)
    );
}

#[test]
fn bad_chains_are_refused() {
    let ed448 = identity("");
    let ed25519 = identity("ed25519");
    let one = vec![ed448.chain[0].clone()];
    assert_eq!(
        check_server_chain(&refs(&one), &ed448.fingerprint, NOW),
        Err(ChainError::ChainLength(1))
    );
    let five = vec![ed448.chain[0].clone(); 5];
    assert_eq!(
        check_server_chain(&refs(&five), &ed448.fingerprint, NOW),
        Err(ChainError::ChainLength(5))
    );
    // Ed25519 leaf under the Ed448 CA: same names, wrong key.
    let mixed = vec![ed25519.chain[0].clone(), ed448.chain[1].clone()];
    let err = check_server_chain(&refs(&mixed), &ed448.fingerprint, NOW).expect_err("mixed");
    assert!(
        matches!(err, ChainError::Algorithm | ChainError::BadSignature),
        "{err:?}"
    );
    // The leaf as issuer is not a CA.
    let swapped = vec![ed448.chain[1].clone(), ed448.chain[0].clone()];
    let fp = cert_fingerprint(&ed448.chain[0]);
    assert!(check_server_chain(&refs(&swapped), &fp, NOW).is_err());
    // A tampered leaf.
    let mut tampered = ed448.chain.clone();
    let n = tampered[0].len();
    tampered[0][n / 2] ^= 1;
    assert!(check_server_chain(&refs(&tampered), &ed448.fingerprint, NOW).is_err());
}

#[test]
fn validity_period_is_checked() {
    let id = identity("ed25519");
    // Before the Ed25519 fixtures were made (2026-02-02).
    assert_eq!(
        check_server_chain(&refs(&id.chain), &id.fingerprint, 1_700_000_000),
        Err(ChainError::NotYetValid)
    );
    // After 2126.
    assert_eq!(
        check_server_chain(&refs(&id.chain), &id.fingerprint, 5_000_000_000),
        Err(ChainError::Expired)
    );
}

#[test]
fn handshake_signatures_both_schemes() {
    for (sub, scheme, other) in [
        ("", SignatureScheme::ED448, SignatureScheme::ED25519),
        ("ed25519", SignatureScheme::ED25519, SignatureScheme::ED448),
    ] {
        let id = identity(sub);
        let msg = b"TLS 1.3, server CertificateVerify";
        let sig = id.signer.sign(msg);
        assert_eq!(
            verify_handshake_signature(&id.chain[0], scheme, msg, &sig),
            Ok(())
        );
        assert_eq!(
            verify_handshake_signature(&id.chain[0], scheme, b"other", &sig),
            Err(ChainError::BadSignature)
        );
        assert_eq!(
            verify_handshake_signature(&id.chain[0], other, msg, &sig),
            Err(ChainError::Algorithm)
        );
    }
}
