//! The SMP layer over TLS: 16 KB blocks (encrypted with chain keys from v11) and the SMP
//! handshake for both sides.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::crypto::cbox::{self, SbChainKey};
use crate::crypto::keys::{DhKeyPair, PrivateSignKey, PublicKey};
use crate::crypto::x509;
use crate::protocol::errors::{HandshakeError, TransportError};
use crate::protocol::handshake::{
    CertChainPubKey, ClientHandshake, ServerHandshake, ServerHandshakeResponse,
};
use crate::protocol::transmission::THParams;
use crate::protocol::version::{self, Version, VersionRange, SMP_BLOCK_SIZE};

/// Poly1305 tag length: the padded plaintext of an encrypted block is this much shorter.
const TAG: usize = 16;

/// Why an SMP connection ended or a block was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SmpTransportError {
    /// Socket error or end of stream.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// Protocol-level transport error (`BLOCK`, `VERSION`, `HANDSHAKE ...`).
    #[error("transport error {}", .0.to_text())]
    Transport(TransportError),
    /// The handshake did not finish in time.
    #[error("handshake timeout")]
    Timeout,
}

/// Reads whole blocks, decrypting them when block encryption is on.
///
/// The 16 KB block buffer exists only while a block is being read: an idle connection waits
/// for its next block holding a few bytes here, not a block (RSS per idle client, issue 15).
pub struct BlockReader<R> {
    io: R,
    key: Option<SbChainKey>,
}

/// Bytes read while waiting for a block, before its buffer is allocated.
const BLOCK_HEAD: usize = 64;

impl<R: AsyncRead + Unpin> BlockReader<R> {
    /// A reader without block encryption (handshake, versions before 11).
    pub fn new(io: R) -> Self {
        BlockReader { io, key: None }
    }

    /// Read one block and return its content. The outer `Err` ends the connection; the inner
    /// one is a block that arrived whole but did not decrypt or unpad (answered with `BLOCK`).
    pub async fn read_block(&mut self) -> Result<Result<Vec<u8>, TransportError>, std::io::Error> {
        let mut head = [0u8; BLOCK_HEAD];
        let n = self.io.read(&mut head).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut buf = vec![0; SMP_BLOCK_SIZE];
        buf[..n].copy_from_slice(&head[..n]);
        self.io.read_exact(&mut buf[n..]).await?;
        Ok(match &mut self.key {
            Some(k) => {
                let (sk, nonce) = k.next_key();
                cbox::cb_decrypt(&sk, &nonce, &buf).map_err(|_| TransportError::LargeMsg)
            }
            None => cbox::unpad(&buf).map_err(|_| TransportError::LargeMsg),
        })
    }
}

/// Writes whole blocks, encrypting them when block encryption is on.
pub struct BlockWriter<W> {
    io: W,
    key: Option<SbChainKey>,
}

impl<W: AsyncWrite + Unpin> BlockWriter<W> {
    /// A writer without block encryption.
    pub fn new(io: W) -> Self {
        BlockWriter { io, key: None }
    }

    /// Pad (and encrypt) `content` into one block and write it. `LARGE_MSG` if it can't fit.
    pub async fn write_block(&mut self, content: &[u8]) -> Result<(), SmpTransportError> {
        let block = match &mut self.key {
            Some(k) => {
                let (sk, nonce) = k.next_key();
                cbox::cb_encrypt(&sk, &nonce, content, SMP_BLOCK_SIZE - TAG)
                    .map_err(|_| SmpTransportError::Transport(TransportError::LargeMsg))?
            }
            None => cbox::pad(content, SMP_BLOCK_SIZE)
                .map_err(|_| SmpTransportError::Transport(TransportError::LargeMsg))?,
        };
        self.io.write_all(&block).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Close the write side.
    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}

/// What the server handshake established.
pub struct ServerSession<R, W> {
    /// Block reader (encrypted if agreed).
    pub reader: BlockReader<R>,
    /// Block writer (encrypted if agreed).
    pub writer: BlockWriter<W>,
    /// Framing parameters.
    pub params: THParams,
    /// The server's per-connection DH key: verifies authenticators and opens forwarded commands.
    pub dh_key: DhKeyPair,
    /// DH secret with the client's session key (v7+), used by the relay role.
    pub session_secret: Option<[u8; 32]>,
    /// Whether the client declared itself an SMP proxy.
    pub proxy_client: bool,
    /// The service, for a client that did the service handshake.
    pub service: Option<super::service::PeerService>,
}

/// The server's credentials for the SMP handshake.
pub struct HandshakeCredentials<'a> {
    /// Certificate chain, online certificate first.
    pub chain: &'a [Vec<u8>],
    /// Key of the online certificate: signs the session DH key.
    pub sign_key: &'a PrivateSignKey,
    /// SHA-256 of the CA certificate, which clients must name.
    pub key_hash: &'a [u8; 32],
}

/// The TLS client chain and how to find its service, for the service handshake.
pub struct ServiceLookup<'a> {
    /// The certificate chain the client presented in TLS (empty without one).
    pub tls_chain: &'a [Vec<u8>],
    /// Finds or creates the service.
    pub get_service: super::service::GetService<'a>,
}

/// Run the server side of the SMP handshake. Without `services`, a service hello is
/// answered `HANDSHAKE BAD_AUTH` (no client certificate was asked for).
pub async fn server_handshake<R, W>(
    read: R,
    write: W,
    session_id: Vec<u8>,
    alpn_smp: bool,
    creds: &HandshakeCredentials<'_>,
    range: VersionRange,
    services: Option<ServiceLookup<'_>>,
) -> Result<ServerSession<R, W>, SmpTransportError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BlockReader::new(read);
    let mut writer = BlockWriter::new(write);
    let dh_key = DhKeyPair::generate().map_err(|_| {
        SmpTransportError::Io(std::io::Error::other("cannot generate a session key"))
    })?;
    let signed_key = x509::sign_pubkey(creds.sign_key, &dh_key.public());
    // Clients without ALPN are older apps: they get the legacy range only.
    let range = if alpn_smp {
        range
    } else {
        VersionRange::LEGACY_SERVER
    };
    let hello = ServerHandshake {
        version_range: range,
        session_id: session_id.clone(),
        auth_pub_key: Some(CertChainPubKey {
            chain: creds.chain.to_vec(),
            signed_key,
        }),
    };
    writer.write_block(&hello.encode()).await?;
    let parse_err = SmpTransportError::Transport(TransportError::Handshake(HandshakeError::Parse));
    let block = match reader.read_block().await? {
        Ok(b) => b,
        Err(_) => return Err(parse_err),
    };
    let ch = ClientHandshake::decode(&block).map_err(|_| parse_err)?;
    if ch.key_hash != creds.key_hash {
        return Err(SmpTransportError::Transport(TransportError::Handshake(
            HandshakeError::Identity,
        )));
    }
    let v: Version = ch.version;
    if !range.contains(v) {
        return Err(SmpTransportError::Transport(TransportError::Version));
    }
    let mut service = None;
    if let Some((role, declared)) = &ch.client_service {
        let found = match &services {
            // No client certificate was requested in TLS, so the declared chain cannot be the
            // TLS peer's: the reference answers this with BAD_AUTH.
            None => Err(HandshakeError::BadAuth),
            Some(l) => {
                super::service::verify_declared(declared, l.tls_chain).and_then(|(key, fp)| {
                    (l.get_service)(*role, l.tls_chain, &fp)
                        .map(|id| (id, key, fp))
                        .map_err(|_| HandshakeError::BadService)
                })
            }
        };
        match found {
            Ok((id, key, cert_hash)) => {
                writer
                    .write_block(&ServerHandshakeResponse::Service(id.clone()).encode())
                    .await?;
                service = Some(super::service::PeerService {
                    id,
                    role: *role,
                    cert_hash,
                    key,
                });
            }
            Err(h) => {
                let err = TransportError::Handshake(h);
                writer
                    .write_block(&ServerHandshakeResponse::Error(err).encode())
                    .await?;
                return Err(SmpTransportError::Transport(err));
            }
        }
    }
    let session_secret = match &ch.auth_pub_key {
        Some(k) => Some(dh_key.dh(k).map_err(|_| {
            SmpTransportError::Transport(TransportError::Handshake(HandshakeError::Parse))
        })?),
        None => None,
    };
    if !ch.proxy_server && v >= version::ENCRYPTED_BLOCK {
        if let Some(secret) = &session_secret {
            let (snd, rcv) = cbox::sbc_init(&session_id, secret);
            writer.key = Some(snd);
            reader.key = Some(rcv);
        }
    }
    Ok(ServerSession {
        reader,
        writer,
        params: THParams {
            session_id,
            version: v,
        },
        dh_key,
        session_secret,
        proxy_client: ch.proxy_server,
        service,
    })
}

/// What the client handshake established.
pub struct ClientSession<R, W> {
    /// Block reader.
    pub reader: BlockReader<R>,
    /// Block writer.
    pub writer: BlockWriter<W>,
    /// Framing parameters.
    pub params: THParams,
    /// The server's session DH key (verified against its certificate), for authenticators.
    pub server_dh_key: Option<PublicKey>,
    /// Our session DH key pair.
    pub dh_key: DhKeyPair,
    /// The range the server offered.
    pub server_range: VersionRange,
    /// The server's certificate chain and signed session key (a proxy passes it on in PKEY).
    pub server_auth: Option<CertChainPubKey>,
    /// The service ID the server assigned, after a service handshake.
    pub service_id: Option<Vec<u8>>,
}

/// Run the client side of the SMP handshake. `peer_chain` is the TLS chain the server sent.
/// `proxy` declares this client an SMP proxy: no block encryption (the forwarded traffic is
/// already encrypted), and relays older than v14 are spoken to at v10 at most, as the
/// reference's proxies do.
pub async fn client_handshake<R, W>(
    read: R,
    write: W,
    session_id: Vec<u8>,
    key_hash: &[u8; 32],
    range: VersionRange,
    peer_chain: &[Vec<u8>],
    proxy: bool,
) -> Result<ClientSession<R, W>, SmpTransportError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    client_handshake_service(
        read, write, session_id, key_hash, range, peer_chain, proxy, None,
    )
    .await
}

/// [`client_handshake`] as a service: with `service`, the hello declares it (from v19 for
/// messaging services, v16 for the others, as the reference client) and the server's answer
/// with the service ID is read.
#[allow(clippy::too_many_arguments)]
pub async fn client_handshake_service<R, W>(
    read: R,
    write: W,
    session_id: Vec<u8>,
    key_hash: &[u8; 32],
    range: VersionRange,
    peer_chain: &[Vec<u8>],
    proxy: bool,
    service: Option<&super::service::ServiceCredentials>,
) -> Result<ClientSession<R, W>, SmpTransportError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BlockReader::new(read);
    let mut writer = BlockWriter::new(write);
    let perr = |e| SmpTransportError::Transport(TransportError::Handshake(e));
    let block = reader
        .read_block()
        .await?
        .map_err(|_| perr(HandshakeError::Parse))?;
    let sh = ServerHandshake::decode(&block).map_err(|_| perr(HandshakeError::Parse))?;
    if sh.session_id != session_id {
        return Err(SmpTransportError::Transport(TransportError::BadSession));
    }
    let range = if proxy && sh.version_range.max < version::PROXY_SERVER_HANDSHAKE {
        VersionRange {
            min: range.min,
            max: range.min.max(version::DELETED_EVENT),
        }
    } else {
        range
    };
    let agreed = sh
        .version_range
        .intersect(&range)
        .ok_or(SmpTransportError::Transport(TransportError::Version))?;
    let v = agreed.max;
    let server_dh_key = match &sh.auth_pub_key {
        Some(ck) => {
            let leaf = peer_chain.first().ok_or(perr(HandshakeError::BadAuth))?;
            let leaf_key =
                x509::cert_public_key(leaf).map_err(|_| perr(HandshakeError::BadAuth))?;
            let k = x509::verify_signed_pubkey(&leaf_key, &ck.signed_key)
                .map_err(|_| perr(HandshakeError::BadAuth))?;
            Some(k)
        }
        None => None,
    };
    let dh_key = DhKeyPair::generate().map_err(|_| {
        SmpTransportError::Io(std::io::Error::other("cannot generate a session key"))
    })?;
    let service = service.filter(|c| {
        let min = match c.role {
            crate::protocol::handshake::ServiceRole::Messaging => version::RCV_SERVICE,
            _ => version::SERVICE_CERTS,
        };
        v >= min
    });
    let hello = ClientHandshake {
        version: v,
        key_hash: key_hash.to_vec(),
        auth_pub_key: Some(dh_key.public()),
        proxy_server: proxy,
        client_service: service.map(|c| (c.role, c.declare())),
    };
    writer.write_block(&hello.encode()).await?;
    let mut service_id = None;
    if service.is_some() {
        let block = reader
            .read_block()
            .await?
            .map_err(|_| perr(HandshakeError::Parse))?;
        match ServerHandshakeResponse::decode(&block).map_err(|_| perr(HandshakeError::Parse))? {
            ServerHandshakeResponse::Service(id) => service_id = Some(id),
            ServerHandshakeResponse::Error(e) => return Err(SmpTransportError::Transport(e)),
        }
    }
    if !proxy && v >= version::ENCRYPTED_BLOCK {
        if let Some(k) = &server_dh_key {
            let secret = dh_key.dh(k).map_err(|_| perr(HandshakeError::BadAuth))?;
            // The client's send key is the server's receive key.
            let (srv_snd, srv_rcv) = cbox::sbc_init(&session_id, &secret);
            writer.key = Some(srv_rcv);
            reader.key = Some(srv_snd);
        }
    }
    Ok(ClientSession {
        reader,
        writer,
        params: THParams {
            session_id,
            version: v,
        },
        server_dh_key,
        dh_key,
        server_range: sh.version_range,
        server_auth: sh.auth_pub_key,
        service_id,
    })
}

/// The reference's handshake timeout (120 s): generous for slow networks and Tor.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(120);
