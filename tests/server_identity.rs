//! Identities made by the reference server are served unchanged: an Ed448 CA and online
//! certificate (TLS CertificateVerify and the SMP handshake signed with Ed448), same fingerprint.

mod common;

use common::*;
use smp_server::crypto::identity::Fingerprint;
use smp_server::crypto::keys::KeyAlgorithm;
use smp_server::protocol::response::BrokerMsg;
use smp_server::server::Settings;

/// The fingerprint the reference's tests use for this identity (`testKeyHash`).
const REFERENCE_KEY_HASH: &str = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=";

#[tokio::test]
async fn serves_reference_ed448_identity_with_its_fingerprint() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["ca.crt", "server.crt", "server.key"] {
        std::fs::copy(reference_fixtures().join(f), dir.path().join(f)).expect("copy fixture");
    }
    let s = start_server_in(Settings::default(), dir).await;
    assert_eq!(
        Fingerprint(s.fingerprint).to_base64url(),
        REFERENCE_KEY_HASH,
        "fingerprint is base64url(SHA-256(ca.crt))"
    );
    for v in [6u16, 18] {
        let rc = s.client_at(v).await;
        let sc = s.client_at(v).await;
        let r = create_queue(&rc).await;
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"ed448"), None)
            .await
            .expect("send");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, m) = event(&rc).await;
        assert_eq!(decrypt_msg(&r, &m).body.as_deref(), Some(&b"ed448"[..]));
    }
}

#[tokio::test]
async fn fresh_ed448_identity_works_too() {
    let s = start_server_with(Settings::default(), KeyAlgorithm::Ed448).await;
    let c = s.client().await;
    let r = create_queue(&c).await;
    assert_eq!(r.ids.rcv_id.len(), 24);
    // Ed448 queue keys authorize commands as well
    let k = ed448_key();
    let (_, ok) = c
        .request(
            r.rid(),
            smp_server::protocol::command::Command::Key(k.public()),
            Some(&r.key),
        )
        .await
        .expect("KEY");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, ok) = c
        .request(r.sid(), send_cmd(b"signed"), Some(&k))
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
}
