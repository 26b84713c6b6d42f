//! Identity files: the reference's own fixtures load unchanged, our generated chains round-trip,
//! and OpenSSL (an independent implementation; tests may run it, the product never does)
//! accepts what we write.

#[path = "common/require.rs"]
mod require;

use std::path::{Path, PathBuf};
use std::process::Command;

use smp_server::crypto::identity::{
    create_identity, fingerprint_of_ca, load_identity, renew_server_cert, Fingerprint, CA_CRT_FILE,
    CA_KEY_FILE, FINGERPRINT_FILE, SERVER_CRT_FILE, SERVER_KEY_FILE,
};
use smp_server::crypto::keys::{verify, KeyAlgorithm, PrivateSignKey};
use smp_server::crypto::x509::{
    cert_public_key, cert_signed_by, certs_from_pem, sign_pubkey, verify_signed_pubkey,
};
use smp_server::crypto::CryptoError;

/// The reference fixtures, in `shared/` beside the project's checkout.
fn fixtures() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("SMP_REFERENCE_FIXTURES").map(PathBuf::from),
        Some(manifest.join("../shared/reference-fixtures")),
        Some(PathBuf::from("/work/shared/reference-fixtures")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join(CA_CRT_FILE).exists())
        .expect("reference fixtures not found: set SMP_REFERENCE_FIXTURES")
}

fn cert(dir: &Path, name: &str) -> Vec<u8> {
    let pem = std::fs::read_to_string(dir.join(name)).expect("read cert");
    certs_from_pem(&pem).expect("pem").remove(0)
}

fn key(dir: &Path, name: &str) -> PrivateSignKey {
    PrivateSignKey::from_pem(&std::fs::read_to_string(dir.join(name)).expect("read key"))
        .expect("key")
}

#[test]
fn reference_keys_match_their_certificates() {
    let f = fixtures();
    for (dir, alg) in [
        (f.clone(), KeyAlgorithm::Ed448),
        (f.join("ed25519"), KeyAlgorithm::Ed25519),
    ] {
        let server = key(&dir, SERVER_KEY_FILE);
        assert_eq!(server.algorithm(), alg);
        assert_eq!(
            cert_public_key(&cert(&dir, SERVER_CRT_FILE)).expect("pk"),
            server.public()
        );
        let ca = key(&dir, CA_KEY_FILE);
        assert_eq!(
            cert_public_key(&cert(&dir, CA_CRT_FILE)).expect("pk"),
            ca.public()
        );
        // Re-encoding gives OpenSSL's bytes.
        let text = std::fs::read_to_string(dir.join(SERVER_KEY_FILE)).expect("read");
        assert_eq!(server.to_pem().as_str(), text);
        // The reference's certificates verify with our code.
        let ca_pub = ca.public();
        assert!(cert_signed_by(&cert(&dir, SERVER_CRT_FILE), &ca_pub));
        assert!(cert_signed_by(&cert(&dir, CA_CRT_FILE), &ca_pub));
        assert!(!cert_signed_by(&cert(&dir, CA_CRT_FILE), &server.public()));
        // Handshake signed key with a reference key.
        let signed = sign_pubkey(&server, &ca_pub);
        assert_eq!(
            verify_signed_pubkey(&server.public(), &signed).expect("v"),
            ca_pub
        );
    }
    // server2 is not signed by ca (it belongs to ca2).
    assert!(!cert_signed_by(
        &cert(&f, "server2.crt"),
        &cert_public_key(&cert(&f, CA_CRT_FILE)).expect("pk")
    ));
}

#[test]
fn reference_identity_loads_with_the_reference_fingerprint() {
    let f = fixtures();
    // The reference tests pin this value (tests/SMPClient.hs `testKeyHash`).
    let expected = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=";
    assert_eq!(fingerprint_of_ca(&f).expect("fp").to_base64url(), expected);
    let id = load_identity(&f).expect("load reference identity");
    assert_eq!(id.fingerprint.to_string(), expected);
    assert_eq!(id.chain.len(), 2);
    assert_eq!(id.chain[1], cert(&f, CA_CRT_FILE));
    assert_eq!(id.server_key.algorithm(), KeyAlgorithm::Ed448);
    let ed = load_identity(&f.join("ed25519")).expect("load ed25519 identity");
    assert_eq!(ed.server_key.algorithm(), KeyAlgorithm::Ed25519);
    // A stored fingerprint that does not match is an error naming both files.
    let tmp = tempfile::tempdir().expect("tmp");
    for name in [CA_CRT_FILE, SERVER_CRT_FILE, SERVER_KEY_FILE] {
        std::fs::copy(f.join(name), tmp.path().join(name)).expect("copy");
    }
    std::fs::write(tmp.path().join(FINGERPRINT_FILE), format!("{expected}\n")).expect("w");
    assert!(load_identity(tmp.path()).is_ok());
    let other = Fingerprint([7; 32]).to_base64url();
    std::fs::write(tmp.path().join(FINGERPRINT_FILE), format!("{other}\n")).expect("w");
    let err = load_identity(tmp.path()).expect_err("mismatch").to_string();
    assert!(
        err.contains(FINGERPRINT_FILE) && err.contains(CA_CRT_FILE),
        "{err}"
    );
    // A server key that is not the certificate's.
    std::fs::write(tmp.path().join(FINGERPRINT_FILE), format!("{expected}\n")).expect("w");
    std::fs::copy(f.join("server2.key"), tmp.path().join(SERVER_KEY_FILE)).expect("copy");
    let err = load_identity(tmp.path())
        .expect_err("wrong key")
        .to_string();
    assert!(err.contains(SERVER_KEY_FILE), "{err}");
    // A server certificate from another CA.
    std::fs::copy(f.join("server2.crt"), tmp.path().join(SERVER_CRT_FILE)).expect("copy");
    let err = load_identity(tmp.path()).expect_err("wrong CA").to_string();
    assert!(err.contains("not signed"), "{err}");
}

#[test]
fn fingerprint_text_forms() {
    let fp = Fingerprint([0xfb; 32]);
    let s = fp.to_base64url();
    assert_eq!(s.len(), 44);
    assert!(
        s.ends_with('=') && !s.contains('+') && !s.contains('/'),
        "{s}"
    );
    assert_eq!(Fingerprint::from_base64url(&s).expect("padded"), fp);
    assert_eq!(
        Fingerprint::from_base64url(s.trim_end_matches('=')).expect("bare"),
        fp
    );
    assert!(Fingerprint::from_base64url("AAAA").is_err());
    assert!(Fingerprint::from_base64url("+/+/").is_err());
}

/// The OpenSSL cross-checks run when the CLI is there; otherwise a `skipped:` line says so.
fn openssl() -> Option<&'static str> {
    require::tools("crypto_identity (OpenSSL cross-checks)", &["openssl"]).then_some("openssl")
}

fn run_openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
}

#[test]
fn created_identities_round_trip_renew_and_pass_openssl() {
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Ed448] {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("etc");
        let fp = create_identity(&dir, alg, "smp.example.com").expect("create");
        let saved = std::fs::read_to_string(dir.join(FINGERPRINT_FILE)).expect("fingerprint");
        assert_eq!(saved, format!("{}\n", fp.to_base64url()));
        assert_eq!(
            saved.len(),
            45,
            "44 base64url characters with padding, then a newline"
        );
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
            assert_eq!(mode(&dir.join(SERVER_KEY_FILE)), 0o600);
        }
        let id = load_identity(&dir).expect("load");
        assert_eq!(id.fingerprint, fp);
        assert_eq!(id.server_key.algorithm(), alg);
        assert_eq!(id.chain.len(), 2);
        assert_eq!(Fingerprint::of_cert(&id.chain[1]), fp);
        // Refuses to replace an identity.
        assert!(create_identity(&dir, alg, "x").is_err());

        if openssl().is_some() {
            let verified = run_openssl(&["verify", "-CAfile", CA_CRT_FILE, SERVER_CRT_FILE], &dir);
            assert!(verified.contains("OK"), "{verified}");
            let printed = run_openssl(
                &[
                    "x509",
                    "-in",
                    CA_CRT_FILE,
                    "-noout",
                    "-fingerprint",
                    "-sha256",
                ],
                &dir,
            );
            let hex: String = printed
                .trim()
                .rsplit('=')
                .next()
                .expect("fingerprint")
                .replace(':', "")
                .to_lowercase();
            let ours: String = fp.0.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, ours);
            let text = run_openssl(&["x509", "-in", SERVER_CRT_FILE, "-noout", "-text"], &dir);
            for needle in [
                "Issuer: CN = SMP server CA, O = SimpleX",
                "Subject: CN = smp.example.com",
                "CA:FALSE",
                "Digital Signature, Non Repudiation, Key Agreement",
                "TLS Web Server Authentication",
                "Subject Key Identifier",
                "Authority Key Identifier",
            ] {
                assert!(text.contains(needle), "server cert lacks {needle}:\n{text}");
            }
            // Key identifiers as OpenSSL's `hash` method: SHA-1 of the public key bits.
            use sha1::Digest;
            let colon_hex = |b: &[u8]| -> String {
                b.iter()
                    .map(|x| format!("{x:02X}"))
                    .collect::<Vec<_>>()
                    .join(":")
            };
            let server_ski = colon_hex(&sha1::Sha1::digest(id.server_key.public().raw()));
            let ca_ski = colon_hex(&sha1::Sha1::digest(
                cert_public_key(&id.chain[1]).expect("ca key").raw(),
            ));
            assert!(
                text.contains(&server_ski),
                "server SKI {server_ski} not in:\n{text}"
            );
            assert!(
                text.contains(&ca_ski),
                "server AKI {ca_ski} not in:\n{text}"
            );
            let ca_text = run_openssl(&["x509", "-in", CA_CRT_FILE, "-noout", "-text"], &dir);
            assert!(
                ca_text.contains(&ca_ski),
                "CA SKI {ca_ski} not in:\n{ca_text}"
            );
            assert!(
                ca_text.contains("critical") && ca_text.contains("CA:TRUE"),
                "{ca_text}"
            );
            // OpenSSL reads our key files and finds the certificate's key.
            let from_key = run_openssl(&["pkey", "-in", SERVER_KEY_FILE, "-pubout"], &dir);
            let from_cert =
                run_openssl(&["x509", "-in", SERVER_CRT_FILE, "-noout", "-pubkey"], &dir);
            assert_eq!(from_key, from_cert);
        }

        // Renewal: new server key and certificate, same CA and fingerprint.
        let old_key = std::fs::read_to_string(dir.join(SERVER_KEY_FILE)).expect("key");
        renew_server_cert(&dir, "smp2.example.com").expect("renew");
        let renewed = load_identity(&dir).expect("load renewed");
        assert_eq!(renewed.fingerprint, fp);
        assert_ne!(
            std::fs::read_to_string(dir.join(SERVER_KEY_FILE)).expect("key"),
            old_key
        );
        #[cfg(unix)]
        assert_eq!(mode(&dir.join(SERVER_KEY_FILE)), 0o600);
        if openssl().is_some() {
            let verified = run_openssl(&["verify", "-CAfile", CA_CRT_FILE, SERVER_CRT_FILE], &dir);
            assert!(verified.contains("OK"), "{verified}");
        }
        // The signature of the server's session key verifies with the certificate's key.
        let session = smp_server::crypto::keys::DhKeyPair::generate()
            .expect("dh")
            .public();
        let signed = sign_pubkey(&renewed.server_key, &session);
        let cert_key = cert_public_key(&renewed.chain[0]).expect("pk");
        assert_eq!(
            verify_signed_pubkey(&cert_key, &signed).expect("v"),
            session
        );
        let sig = renewed.server_key.sign(b"x");
        assert!(verify(&cert_key, &sig, b"x"));

        // Without the CA key (kept offline), renewal fails naming the file.
        std::fs::remove_file(dir.join(CA_KEY_FILE)).expect("rm");
        match renew_server_cert(&dir, "smp3.example.com") {
            Err(e @ CryptoError::MissingFile { .. }) => {
                assert!(e.to_string().contains(CA_KEY_FILE), "{e}")
            }
            other => panic!("expected MissingFile, got {other:?}"),
        }
        // The server still loads without it.
        assert!(load_identity(&dir).is_ok());
    }
}
