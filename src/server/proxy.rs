//! The proxy role of private message routing (PRXY/PFWD), as the reference's
//! `processProxiedCmd`: the server connects to the destination relay on a client's behalf,
//! hands the client the relay's signed session key (PKEY), and forwards the client's
//! end-to-end encrypted commands to it (RFWD), returning the relay's encrypted answers (PRES).
//!
//! The relay never learns the client's address, and this proxy never sees the commands.

use std::sync::Arc;
use std::time::Duration;

use super::connector::policy::normalize_host;
use super::connector::{choose_host, is_onion, Connector, DirectConnector, Egress};
use super::relays::{RelayKey, RelayPool};
use crate::client::{ClientError, ClientOptions, SmpClient};
use crate::config::limits::EgressLimits;
use crate::config::{HostMode, SocksMode};
use crate::crypto::cbox;
use crate::crypto::keys::PublicKey;
use crate::crypto::random_bytes;
use crate::protocol::command::{key, Command, SmpServerRef};
use crate::protocol::encoding::{Decoder, Encoder};
use crate::protocol::errors::{BrokerError, ErrorType, HandshakeError, ProxyError, TransportError};
use crate::protocol::response::BrokerMsg;
use crate::protocol::version::{self, Version, VersionRange};
use crate::transport::smp::SmpTransportError;
use crate::transport::TlsError;

/// Versions a client may use end to end with a relay through this proxy (8..=20 as the
/// reference 7.0; see [`version::PROXIED_SMP_RELAY_VERSION`]).
pub const PROXIED_RANGE: VersionRange = VersionRange::PROXIED;

/// The default SMP port when a server address names none.
const DEFAULT_SMP_PORT: u16 = 5223;

/// Unsolicited transmissions kept from a relay: the proxy reads none, so keep few.
const RELAY_EVENT_CAPACITY: usize = 8;

/// How the proxy reaches destination relays: the route per host (direct, SOCKS, Arti) and the
/// reference's `[PROXY] host_mode` / `required_host_mode` choice among a relay's hosts.
pub struct Route {
    /// Opens the streams.
    pub egress: Egress,
    /// `host_mode`.
    pub host_mode: HostMode,
    /// `required_host_mode`.
    pub required_host_mode: bool,
    /// `allow_private_destinations` (also in `egress`), `max_relay_connections` and
    /// `relay_idle_timeout`.
    pub limits: EgressLimits,
}

impl Default for Route {
    /// Direct TCP only, public hosts preferred: what a server without `[PROXY]`/`[TOR]` does.
    fn default() -> Self {
        Route {
            egress: Egress {
                direct: DirectConnector {
                    timeout: Duration::from_secs(20),
                },
                socks: None,
                socks_mode: SocksMode::default(),
                arti: None,
                allow_private: false,
            },
            host_mode: HostMode::default(),
            required_host_mode: false,
            limits: EgressLimits::default(),
        }
    }
}

/// Connections from this server to destination relays.
#[derive(Default)]
pub struct ProxyAgent {
    /// The open relay connections, made on first use with the route's limits.
    pool: std::sync::OnceLock<Arc<RelayPool>>,
    /// Connect, write and response timeout.
    pub timeout: Duration,
    /// Set once at start from `[PROXY]`/`[TOR]`; the default route until then.
    route: std::sync::OnceLock<Route>,
}

fn broker(e: BrokerError) -> ErrorType {
    ErrorType::Proxy(ProxyError::Broker(e))
}

fn client_error(e: ClientError) -> ErrorType {
    match e {
        ClientError::Timeout => broker(BrokerError::Timeout),
        ClientError::Tls(TlsError::Identity) => broker(BrokerError::Transport(
            TransportError::Handshake(HandshakeError::Identity),
        )),
        ClientError::Transport(SmpTransportError::Transport(t)) => {
            broker(BrokerError::Transport(t))
        }
        ClientError::Tls(TlsError::Timeout) => broker(BrokerError::Timeout),
        ClientError::Tls(_) | ClientError::Io(_) | ClientError::Closed => {
            broker(BrokerError::Network)
        }
        ClientError::Transport(_) => broker(BrokerError::Network),
        ClientError::Auth(_) => ErrorType::Internal,
    }
}

impl ProxyAgent {
    /// An agent with the reference's client timeouts.
    pub fn new(timeout: Duration) -> Self {
        ProxyAgent {
            timeout,
            ..Default::default()
        }
    }

    /// Use `route` for all later connections (called once, at start; later calls are ignored).
    pub fn set_route(&self, route: Route) {
        let _ = self.route.set(route);
    }

    /// PRXY: connect (or reuse the connection) to the relay and describe its session.
    pub async fn session_key(&self, srv: &SmpServerRef) -> BrokerMsg {
        self.session_key_connected(srv).await.0
    }

    /// As [`ProxyAgent::session_key`], also telling whether the relay was connected (the
    /// statistics classify errors differently before and after connecting).
    pub async fn session_key_connected(&self, srv: &SmpServerRef) -> (BrokerMsg, bool) {
        match self.relay(srv).await {
            Err(e) => (BrokerMsg::Err(e), false),
            Ok(r) => (self.describe(&r), true),
        }
    }

    /// PKEY for a connected relay, or why its session cannot be proxied.
    fn describe(&self, r: &SmpClient) -> BrokerMsg {
        let vr = r.server_range.intersect(&PROXIED_RANGE);
        match (vr, r.version() >= version::SENDING_PROXY, &r.server_auth) {
            (Some(vr), true, Some(auth)) => {
                BrokerMsg::Pkey(r.params.session_id.clone(), vr, auth.clone())
            }
            (Some(_), true, None) => {
                BrokerMsg::Err(broker(BrokerError::Transport(TransportError::NoServerAuth)))
            }
            _ => BrokerMsg::Err(broker(BrokerError::Transport(TransportError::Version))),
        }
    }

    fn route(&self) -> &Route {
        self.route.get_or_init(Route::default)
    }

    fn pool(&self) -> &Arc<RelayPool> {
        self.pool
            .get_or_init(|| RelayPool::start(self.route().limits))
    }

    async fn relay(&self, srv: &SmpServerRef) -> Result<Arc<SmpClient>, ErrorType> {
        let key = self.relay_key(srv)?;
        let first = srv.hosts.first().cloned().unwrap_or_default();
        let r = self
            .pool()
            .get_or_connect(key.clone(), first, || self.connect(key))
            .await?;
        Ok(r.client.clone())
    }

    /// Which relay `srv` names: the host chosen by `host_mode`, in canonical form, so every
    /// spelling of one host shares one connection.
    fn relay_key(&self, srv: &SmpServerRef) -> Result<RelayKey, ErrorType> {
        let route = self.route();
        let hosts: Vec<String> = srv
            .hosts
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        let host = choose_host(
            &hosts,
            route.host_mode,
            route.required_host_mode,
            route.egress.reaches_onion(),
        )
        .map_err(|_| broker(BrokerError::Host))?;
        if is_onion(host) && !route.egress.reaches_onion() {
            // The reference's client without a SOCKS proxy cannot reach an onion-only relay.
            return Err(broker(BrokerError::Host));
        }
        let port = if srv.port.is_empty() {
            DEFAULT_SMP_PORT
        } else {
            std::str::from_utf8(&srv.port)
                .ok()
                .and_then(|p| p.parse().ok())
                .ok_or(broker(BrokerError::Host))?
        };
        Ok(RelayKey {
            host: normalize_host(host),
            port,
            key_hash: srv.key_hash.clone(),
        })
    }

    async fn connect(&self, key: RelayKey) -> Result<SmpClient, ErrorType> {
        let route = self.route();
        let fingerprint: [u8; 32] = key.key_hash.as_slice().try_into().map_err(|_| {
            broker(BrokerError::Transport(TransportError::Handshake(
                HandshakeError::Identity,
            )))
        })?;
        let stream = match route.egress.connect(&key.host, key.port).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(broker(BrokerError::Timeout))
            }
            // Not a public address: refused as a host this proxy cannot use.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(broker(BrokerError::Host))
            }
            Err(_) => return Err(broker(BrokerError::Network)),
        };
        let opts = ClientOptions {
            versions: VersionRange::SERVER,
            alpn: true,
            timeout: self.timeout,
            proxy: true,
            event_capacity: RELAY_EVENT_CAPACITY,
            service: None,
        };
        SmpClient::connect_stream(stream, fingerprint, opts)
            .await
            .map_err(client_error)
    }

    /// The relay connection of a session ID from PKEY.
    pub fn by_session(&self, session_id: &[u8]) -> Option<Arc<SmpClient>> {
        self.pool().by_session(session_id).map(|r| r.client.clone())
    }

    /// The first host of the relay address a session was opened for.
    pub fn session_host(&self, session_id: &[u8]) -> Option<Vec<u8>> {
        self.pool()
            .by_session(session_id)
            .map(|r| r.first_host.clone())
    }

    /// Open relay connections and relay slots (open or connecting), for tests and metrics.
    pub fn relay_counts(&self) -> (usize, usize) {
        let p = self.pool();
        (p.open(), p.slots())
    }

    /// PFWD: wrap the client's encrypted transmission for the relay, send it as RFWD and
    /// unwrap the relay's RRES into the PRES payload.
    pub async fn forward(
        relay: &SmpClient,
        corr: &[u8],
        fwd_version: Version,
        fwd_key: &PublicKey,
        enc: &[u8],
    ) -> BrokerMsg {
        let Some(secret) = relay.session_secret else {
            return BrokerMsg::Err(broker(BrokerError::Transport(TransportError::NoServerAuth)));
        };
        let nonce = random_bytes(24);
        let n = cbox::cb_nonce(&nonce);
        let mut e = Encoder::with_capacity(enc.len() + 128);
        e.short_bytes(corr).u16(fwd_version);
        key(&mut e, fwd_key);
        e.raw(enc);
        let eft = cbox::secret_box(&secret, &n, &e.finish());
        let t = match relay.transmission(&nonce, b"", &Command::Rfwd(eft), None) {
            Ok(t) => t,
            Err(e) => return BrokerMsg::Err(client_error(e)),
        };
        let mut resp = match relay.send_batch(vec![(nonce, t)]).await {
            Ok(r) => r,
            Err(e) => return BrokerMsg::Err(client_error(e)),
        };
        let Some((_, msg)) = resp.pop() else {
            return BrokerMsg::Err(broker(BrokerError::Network));
        };
        match msg {
            BrokerMsg::Rres(efr) => {
                let Ok(plain) = cbox::secret_box_open(&secret, &cbox::reverse_nonce(&n), &efr)
                else {
                    return BrokerMsg::Err(ErrorType::Crypto);
                };
                let mut d = Decoder::new(&plain);
                match d.short_bytes() {
                    Ok(_) => BrokerMsg::Pres(d.tail().to_vec()),
                    Err(_) => BrokerMsg::Err(broker(BrokerError::Response("BLOCK".into()))),
                }
            }
            BrokerMsg::Err(e) => {
                BrokerMsg::Err(ErrorType::Proxy(ProxyError::Protocol(Box::new(e))))
            }
            other => BrokerMsg::Err(broker(BrokerError::Unexpected(
                format!("{other:?}").chars().take(64).collect(),
            ))),
        }
    }
}
