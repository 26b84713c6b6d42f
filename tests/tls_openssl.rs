//! tls-unique proven against an independent TLS implementation: OpenSSL.
//!
//! `tests/py/tls_unique_check.py` (pyOpenSSL; interpreter from `SMP_TEST_PYTHON`, default
//! `python3`) connects to our server and reports OpenSSL's own `get_finished()`, which must equal
//! the session ID our server computed. The `openssl` CLI checks the key-exchange group too.

#[path = "common/require.rs"]
mod require;
mod tls_support;

use std::sync::Arc;
use std::time::Duration;

use rustls::NamedGroup;
use smp_server::transport::{accept, server_config, HandshakeFacts};
use tls_support::{hex, identity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(20);

struct Outcome {
    session_id: Vec<u8>,
    alpn: Option<Vec<u8>>,
    facts: HandshakeFacts,
    report: serde_json::Value,
}

/// pyOpenSSL is there, or the test is skipped saying how to install it.
fn have_pyopenssl() -> bool {
    require::python("tls_openssl", &["OpenSSL"]).is_some()
}

/// One connection: our server on port 0, the pyOpenSSL client against it.
async fn run_case(config: Arc<rustls::ServerConfig>, groups: &str, alpn: &str) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut conn = accept(tcp, config, T).await.expect("server handshake");
        let line = format!("{}\n", hex(&conn.session_id));
        conn.stream.write_all(line.as_bytes()).await.expect("write");
        conn.stream.flush().await.expect("flush");
        // Wait for the client to close.
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(T, conn.stream.read(&mut sink)).await;
        (conn.session_id, conn.alpn, conn.facts)
    });

    let python = std::env::var("SMP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/tls_unique_check.py");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.kill_on_drop(true);
    cmd.arg(script).arg("--port").arg(port.to_string());
    if !groups.is_empty() {
        cmd.arg("--groups").arg(groups);
    }
    if !alpn.is_empty() {
        cmd.arg("--alpn").arg(alpn);
    }
    let out = tokio::time::timeout(T, cmd.output())
        .await
        .expect("script timed out")
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "OpenSSL check failed ({}): {}\n(install pyOpenSSL: pip install pyopenssl; or set SMP_TEST_PYTHON)",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("script prints JSON");
    let (session_id, alpn, facts) = server.await.expect("server task");
    eprintln!("groups={groups:?} alpn={alpn:?} facts={facts:?} openssl={report}");
    Outcome {
        session_id,
        alpn,
        facts,
        report,
    }
}

fn config(sub: &str) -> Arc<rustls::ServerConfig> {
    let id = identity(sub);
    server_config(id.chain, id.signer, &[]).expect("config")
}

/// The group name OpenSSL reports ("x448"; spelling varies across versions).
fn group(o: &Outcome) -> String {
    o.report["group"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn check_common(o: &Outcome) {
    let sid = hex(&o.session_id);
    assert_eq!(o.session_id.len(), 32);
    assert_eq!(
        o.report["finished"], sid,
        "OpenSSL get_finished() == our session ID"
    );
    assert_eq!(o.report["server_line"], sid);
    assert_ne!(o.report["peer_finished"], sid);
    assert_eq!(o.report["chain_len"], 2, "chain is [server, CA]");
    assert_eq!(o.report["version"], "TLSv1.3");
    assert_eq!(o.report["cipher"], "TLS_CHACHA20_POLY1305_SHA256");
}

#[tokio::test]
async fn openssl_x448_first_like_reference_client() {
    if !have_pyopenssl() {
        return;
    }
    for sub in ["", "ed25519"] {
        let o = run_case(config(sub), "X448:X25519", "smp/1").await;
        check_common(&o);
        assert_eq!(o.report["alpn"], "smp/1");
        assert_eq!(o.alpn.as_deref(), Some(&b"smp/1"[..]));
        assert_eq!(group(&o), "x448");
        assert_eq!(o.facts.kx_group, Some(NamedGroup::X448));
        assert!(
            !o.facts.hello_retry,
            "X448 key share first: no HelloRetryRequest"
        );
    }
}

#[tokio::test]
async fn openssl_hello_retry_path() {
    if !have_pyopenssl() {
        return;
    }
    // OpenSSL sends a P-256 share first, which we do not speak: HRR to X448.
    let o = run_case(config(""), "P-256:X448", "smp/1").await;
    check_common(&o);
    assert_eq!(group(&o), "x448");
    assert!(o.facts.hello_retry);
}

#[tokio::test]
async fn openssl_defaults_without_alpn() {
    if !have_pyopenssl() {
        return;
    }
    let o = run_case(config("ed25519"), "", "").await;
    check_common(&o);
    assert!(o.report["alpn"].is_null());
    assert_eq!(o.alpn, None);
    assert!(!o.facts.hello_retry);
}

/// The system `openssl s_client` as a second, independent look at the key exchange.
#[tokio::test]
async fn openssl_cli_reports_x448() {
    if !require::tools("tls_openssl", &["openssl"]) {
        return;
    }
    let version = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .expect("run openssl version");
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());
    let cfg = config("");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut conn = accept(tcp, cfg, T).await.expect("server handshake");
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(T, conn.stream.read(&mut sink)).await;
        conn.facts
    });
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-tls1_3", "-groups", "X448:X25519", "-alpn", "smp/1"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let facts = server.await.expect("server");
    assert!(
        text.contains("Server Temp Key: X448"),
        "s_client output:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ALPN protocol: smp/1"), "{text}");
    assert!(text.contains("TLS_CHACHA20_POLY1305_SHA256"), "{text}");
    assert_eq!(facts.kx_group, Some(NamedGroup::X448));
    assert!(!facts.hello_retry);
}
