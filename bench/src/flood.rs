//! Handshakes at capacity: a client that does only what the server needs of it.
//!
//! The real client (`SmpClient`) does about as much cryptography per handshake as the server,
//! more with an Ed448 identity (it verifies the CertificateVerify, the chain and the signed
//! session key). On two cores it then cannot keep the server busy, and the server's figure
//! includes sleeping and waking at every flight. This client skips every check of the
//! server's signatures and reuses one session key, so it costs the X448 exchange and the TLS
//! records, well under the server's work, and the server runs at capacity: its CPU per
//! handshake is then what "handshakes per second per core" means.
//!
//! Nothing of the server's side is skipped: it sees the reference client's X448 key share, signs
//! the CertificateVerify and its session key, and reads a client hello like any other. One
//! connection in [`CHECK_EVERY`] also does the session DH and a PING in an encrypted block, so a
//! hello the server did not accept fails the run.

use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use smp_server::crypto::cbox;
use smp_server::crypto::keys::{DhKeyPair, PublicKey};
use smp_server::crypto::x509;
use smp_server::protocol::command::Command;
use smp_server::protocol::handshake::{ClientHandshake, ServerHandshake};
use smp_server::protocol::response::BrokerMsg;
use smp_server::protocol::transmission::{
    batch, decode_client, encode_client, split_batch, with_auth, THParams,
};
use smp_server::protocol::version::{VersionRange, SMP_BLOCK_SIZE};
use smp_server::transport::tls::{smp_provider, SMP_ALPN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One connection in this many checks that the server accepted its hello.
pub const CHECK_EVERY: usize = 64;

/// Accepts any certificate and signature: the bench knows whom it talks to, and checking
/// would cost this client as much as the server's signing.
#[derive(Debug)]
struct TrustAll;

impl ServerCertVerifier for TrustAll {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // The reference client's order.
        vec![SignatureScheme::ED448, SignatureScheme::ED25519]
    }
}

/// What every connection of a flood shares.
pub struct Flood {
    tls: TlsConnector,
    /// The session key every hello carries (the server still does its DH with it).
    session: DhKeyPair,
    session_pub: PublicKey,
    fingerprint: [u8; 32],
}

impl Flood {
    /// A client for the server whose CA certificate has this fingerprint. With `x25519`, its
    /// only key share is X25519 (as most TLS clients but not the reference's), else X448 first
    /// as the reference client.
    pub fn new(fingerprint: [u8; 32], x25519: bool) -> Result<Self> {
        let mut provider = smp_provider();
        if x25519 {
            provider.kx_groups = vec![rustls::crypto::ring::kx_group::X25519];
        }
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustAll))
            .with_no_client_auth();
        config.enable_sni = false;
        // Every handshake is a full one, as a new client's.
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![SMP_ALPN.to_vec()];
        let session = DhKeyPair::generate().context("session key")?;
        Ok(Flood {
            tls: TlsConnector::from(Arc::new(config)),
            session_pub: session.public(),
            session,
            fingerprint,
        })
    }

    /// One TLS + SMP handshake; with `check`, then a PING answered by PONG. The connection is
    /// closed when this returns.
    pub async fn handshake(&self, addr: std::net::SocketAddr, check: bool) -> Result<()> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost")?;
        let tls = self.tls.connect(name, tcp).await?;
        let chain: Vec<Vec<u8>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.to_vec()).collect())
            .unwrap_or_default();
        let mut io = tls;
        let mut buf = vec![0u8; SMP_BLOCK_SIZE];
        io.read_exact(&mut buf).await?;
        let block = cbox::unpad(&buf).map_err(|_| anyhow::anyhow!("server hello padding"))?;
        let sh = ServerHandshake::decode(&block).map_err(|_| anyhow::anyhow!("server hello"))?;
        let v = sh
            .version_range
            .intersect(&VersionRange::SERVER)
            .context("no common version")?
            .max;
        let hello = ClientHandshake {
            version: v,
            key_hash: self.fingerprint.to_vec(),
            auth_pub_key: Some(self.session_pub.clone()),
            proxy_server: false,
            client_service: None,
        };
        io.write_all(&cbox::pad(&hello.encode(), SMP_BLOCK_SIZE)?)
            .await?;
        io.flush().await?;
        if !check {
            return Ok(());
        }
        let signed = sh
            .auth_pub_key
            .context("no session key in the server hello")?;
        let leaf = chain.first().context("no certificate")?;
        let server_key =
            x509::verify_signed_pubkey(&x509::cert_public_key(leaf)?, &signed.signed_key)?;
        let secret = self.session.dh(&server_key)?;
        let (mut rcv, mut snd) = cbox::sbc_init(&sh.session_id, &secret);
        let params = THParams {
            session_id: sh.session_id,
            version: v,
        };
        let ct = encode_client(&params, b"flood-check", b"", &Command::Ping);
        let t = with_auth(&params, None, &ct.to_send);
        let content = batch(&[t], SMP_BLOCK_SIZE)
            .pop()
            .context("empty batch")?
            .map_err(|_| anyhow::anyhow!("PING does not fit a block"))?;
        let (k, n) = snd.next_key();
        let out = cbox::cb_encrypt(&k, &n, &content, SMP_BLOCK_SIZE - cbox::AUTH_TAG_SIZE)?;
        io.write_all(&out).await?;
        io.flush().await?;
        io.read_exact(&mut buf).await?;
        let (k, n) = rcv.next_key();
        let content = cbox::cb_decrypt(&k, &n, &buf)?;
        let ts = split_batch(&content).map_err(|_| anyhow::anyhow!("reply batch"))?;
        let first = ts.first().context("empty reply")?;
        let (corr, _, msg) =
            decode_client(&params, first).map_err(|_| anyhow::anyhow!("reply transmission"))?;
        ensure!(corr == b"flood-check", "reply to another request");
        if !matches!(msg, BrokerMsg::Pong) {
            bail!("PING answered with {msg:?}");
        }
        Ok(())
    }
}
