//! Interop: our crypto against independent implementations (libsodium via PyNaCl, OpenSSL via
//! `cryptography`), through vectors made by `tests/py/crypto_vectors.py`.
//!
//! The interpreter is `$SMP_TEST_PYTHON` (default `python3`). Without PyNaCl and `cryptography`
//! the test is skipped with a `skipped:` line saying how to install them (a failure under
//! `SMP_TEST_REQUIRE_ALL=1`, as in CI).

#[path = "common/require.rs"]
mod require;

use serde_json::Value;
use smp_server::crypto::cbox::{
    cb_authenticate, cb_decrypt, cb_encrypt, cb_verify, hkdf_sha512, sbc_init, secret_box,
    secret_box_open, SbChainKey,
};
use smp_server::crypto::keys::{verify, DhKeyPair, KeyAlgorithm, PrivateSignKey, PublicKey};

fn vectors() -> Option<Value> {
    let python = require::python("crypto_vectors", &["nacl", "cryptography"])?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/crypto_vectors.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (set SMP_TEST_PYTHON to a Python 3 interpreter): {e}")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed (status {:?}).\n{stderr}\nIf a module is missing: \
         `{python} -m pip install pynacl cryptography` (or point SMP_TEST_PYTHON at a venv \
         that has them)",
        out.status.code()
    );
    Some(serde_json::from_slice(&out.stdout).expect("vectors are JSON"))
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn a32(v: &Value) -> [u8; 32] {
    hex(v).try_into().expect("32 bytes")
}

fn a24(v: &Value) -> [u8; 24] {
    hex(v).try_into().expect("24 bytes")
}

fn list<'a>(v: &'a Value, name: &str) -> &'a Vec<Value> {
    let l = v[name].as_array().expect("list");
    assert!(!l.is_empty(), "no {name} vectors");
    l
}

#[test]
fn crypto_matches_libsodium_and_openssl() {
    let Some(v) = vectors() else { return };

    for t in list(&v, "x25519") {
        let a = DhKeyPair::from_secret_bytes(a32(&t["sk_a"]));
        let b = DhKeyPair::from_secret_bytes(a32(&t["sk_b"]));
        assert_eq!(a.public().raw(), hex(&t["pk_a"]));
        assert_eq!(b.public().raw(), hex(&t["pk_b"]));
        assert_eq!(a.dh(&b.public()).expect("dh").to_vec(), hex(&t["shared"]));
    }

    for t in list(&v, "crypto_box") {
        let own = DhKeyPair::from_secret_bytes(a32(&t["sk_a"]));
        let peer = PublicKey::from_raw(KeyAlgorithm::X25519, &hex(&t["pk_b"])).expect("pk");
        let secret = own.dh(&peer).expect("dh");
        let nonce = a24(&t["nonce"]);
        let msg = hex(&t["msg"]);
        let boxed = secret_box(&secret, &nonce, &msg);
        assert_eq!(boxed, hex(&t["box"]), "crypto_box differs from libsodium");
        assert_eq!(secret_box_open(&secret, &nonce, &boxed).expect("open"), msg);
        let padded_len = t["padded_len"].as_u64().expect("len") as usize;
        let padded = cb_encrypt(&secret, &nonce, &msg, padded_len).expect("enc");
        assert_eq!(padded, hex(&t["padded_box"]));
        assert_eq!(cb_decrypt(&secret, &nonce, &padded).expect("dec"), msg);
    }

    for t in list(&v, "secret_box") {
        let (key, nonce, msg) = (a32(&t["key"]), a24(&t["nonce"]), hex(&t["msg"]));
        assert_eq!(secret_box(&key, &nonce, &msg), hex(&t["box"]));
        assert_eq!(
            secret_box_open(&key, &nonce, &hex(&t["box"])).expect("open"),
            msg
        );
    }

    for t in list(&v, "cb_authenticate") {
        let own = DhKeyPair::from_secret_bytes(a32(&t["own_sk"]));
        let peer = DhKeyPair::from_secret_bytes(a32(&t["peer_sk"]));
        let peer_pub = PublicKey::from_raw(KeyAlgorithm::X25519, &hex(&t["peer_pk"])).expect("pk");
        assert_eq!(peer.public(), peer_pub);
        let (nonce, msg, auth) = (a24(&t["nonce"]), hex(&t["msg"]), hex(&t["auth"]));
        assert_eq!(
            cb_authenticate(&peer_pub, &own, &nonce, &msg).expect("auth"),
            auth
        );
        assert!(cb_verify(&own.public(), &peer, &nonce, &auth, &msg));
        assert!(!cb_verify(&own.public(), &peer, &nonce, &auth, b"other"));
    }

    for (name, alg) in [
        ("ed25519", KeyAlgorithm::Ed25519),
        ("ed448", KeyAlgorithm::Ed448),
    ] {
        for t in list(&v, name) {
            let key = PrivateSignKey::from_seed(alg, &hex(&t["seed"])).expect("seed");
            assert_eq!(key.public().raw(), hex(&t["pk"]), "{name} public key");
            let (msg, sig) = (hex(&t["msg"]), hex(&t["sig"]));
            assert_eq!(key.sign(&msg), sig, "{name} signature differs");
            assert!(verify(&key.public(), &sig, &msg));
        }
    }

    for t in list(&v, "pkcs8") {
        let pem = t["pem"].as_str().expect("pem");
        let key = PrivateSignKey::from_pem(pem).expect("OpenSSL PKCS#8 loads");
        assert_eq!(key.public().raw(), hex(&t["pk"]));
        assert_eq!(key.public().to_der(), hex(&t["spki"]), "SPKI DER differs");
        assert_eq!(key.to_pem().as_str(), pem, "PEM differs from OpenSSL's");
    }

    for t in list(&v, "hkdf") {
        let n = t["len"].as_u64().expect("len") as usize;
        let okm = hkdf_sha512(&hex(&t["salt"]), &hex(&t["ikm"]), &hex(&t["info"]), n);
        assert_eq!(okm.expect("hkdf"), hex(&t["okm"]));
    }

    for t in list(&v, "sbc") {
        let (mut ck1, ck2) = sbc_init(&hex(&t["salt"]), &hex(&t["secret"]));
        assert_eq!(ck1.as_bytes().to_vec(), hex(&t["ck1"]));
        assert_eq!(ck2.as_bytes().to_vec(), hex(&t["ck2"]));
        let mut receiver = SbChainKey::from_bytes(*ck1.as_bytes());
        for s in t["steps"].as_array().expect("steps") {
            let (key, nonce) = ck1.next_key();
            assert_eq!(ck1.as_bytes().to_vec(), hex(&s["chain_key"]));
            assert_eq!(key.to_vec(), hex(&s["key"]));
            assert_eq!(nonce.to_vec(), hex(&s["nonce"]));
            let block = cb_encrypt(&key, &nonce, &hex(&s["msg"]), 64).expect("enc");
            assert_eq!(block, hex(&s["box"]));
            let (rk, rn) = receiver.next_key();
            assert_eq!(cb_decrypt(&rk, &rn, &block).expect("dec"), hex(&s["msg"]));
        }
    }
}
