//! SMP protocol versions and version ranges.
//!
//! The server speaks 6..=20. A TLS connection that negotiated ALPN `smp/1` is offered the full
//! range; one without ALPN is offered only the legacy range 6..=6, as the reference does.

use super::encoding::{DResult, DecodeError, Decoder, Encoder};

/// An SMP protocol version.
pub type Version = u16;

/// Queue creation without subscription (oldest version still served).
pub const SUB_MODE: Version = 6;
/// Commands authorized with crypto_box authenticators; session ID implied, not sent.
pub const AUTH_CMDS: Version = 7;
/// Sending proxy (PRXY/PFWD/RFWD).
pub const SENDING_PROXY: Version = 8;
/// SKEY: the sender secures the queue; IDS/NEW carry the sender-can-secure flag.
pub const SND_AUTH_KEY: Version = 9;
/// DELD event when a queue is deleted from another connection.
pub const DELETED_EVENT: Version = 10;
/// Transport block encryption with forward secrecy (secret_box chain keys).
pub const ENCRYPTED_BLOCK: Version = 11;
/// `ERR BLOCKED` for blocked queues.
pub const BLOCKED_ENTITY: Version = 12;
/// Proxy flag in the client handshake disables block encryption between proxy and relay.
pub const PROXY_SERVER_HANDSHAKE: Version = 14;
/// Short links: queue link data in NEW/LSET, LKEY/LGET/LNK.
pub const SHORT_LINKS: Version = 15;
/// Service certificates, service signatures on NEW/SUB/NSUB, SOK.
pub const SERVICE_CERTS: Version = 16;
/// Notifier credentials created with NEW.
pub const NEW_NTF_CREDS: Version = 17;
/// Client notices in BLOCKED errors.
pub const CLIENT_NOTICES: Version = 18;
/// Service subscriptions to messages: SUBS/NSUBS carry the expected queue count and IdsHash,
/// SOKS/ENDS the server's, ALLS ends the delivery for SUBS.
pub const RCV_SERVICE: Version = 19;
/// SimpleX names: RSLV/RNAME and `ERR NAME`.
pub const NAMES: Version = 20;

/// Lowest version served.
pub const MIN_SERVER_VERSION: Version = 6;
/// Highest version served.
pub const CURRENT_SERVER_VERSION: Version = 20;
/// Highest version a proxy lets a client use end to end with a relay. The reference pins it to
/// its current version (20) in 7.0, because proxied RSLV needs v20; normally it trails by one
/// so relays can't fingerprint clients by their upgrade time.
pub const PROXIED_SMP_RELAY_VERSION: Version = 20;

/// An inclusive range of versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    /// Lowest version.
    pub min: Version,
    /// Highest version.
    pub max: Version,
}

impl VersionRange {
    /// A range; `None` when `min > max` (the reference rejects such ranges).
    pub fn new(min: Version, max: Version) -> Option<Self> {
        (min <= max).then_some(VersionRange { min, max })
    }

    /// The full range this server supports.
    pub const SERVER: VersionRange = VersionRange {
        min: MIN_SERVER_VERSION,
        max: CURRENT_SERVER_VERSION,
    };

    /// Versions a client may use end to end with a relay through a proxy (the reference's
    /// `proxiedSMPRelayVRange`).
    pub const PROXIED: VersionRange = VersionRange {
        min: SENDING_PROXY,
        max: PROXIED_SMP_RELAY_VERSION,
    };

    /// The range offered to TLS clients that negotiated no ALPN.
    pub const LEGACY_SERVER: VersionRange = VersionRange { min: 6, max: 6 };

    /// Whether `v` is in the range.
    pub fn contains(&self, v: Version) -> bool {
        self.min <= v && v <= self.max
    }

    /// The intersection of two ranges, if not empty.
    pub fn intersect(&self, other: &VersionRange) -> Option<VersionRange> {
        VersionRange::new(self.min.max(other.min), self.max.min(other.max))
    }

    /// Encode as two Word16.
    pub fn encode(&self, e: &mut Encoder) {
        e.u16(self.min).u16(self.max);
    }

    /// Decode two Word16, rejecting `min > max`.
    pub fn decode(d: &mut Decoder) -> DResult<Self> {
        let min = d.u16()?;
        let max = d.u16()?;
        VersionRange::new(min, max).ok_or(DecodeError("invalid version range"))
    }
}

/// Largest message body a SEND may carry at a given version.
pub fn max_message_length(v: Version) -> usize {
    if v >= ENCRYPTED_BLOCK {
        16048
    } else if v >= SENDING_PROXY {
        16064
    } else {
        16088
    }
}

/// Padded size of a message body sent to a recipient (MaxRcvMessageLen + 2 length bytes).
pub const MAX_RCV_MESSAGE_PADDED: usize = 16088 + 16 + 2;

/// The SMP transport block size.
pub const SMP_BLOCK_SIZE: usize = 16384;

/// Padded length of a proxied transmission (the reference's `paddedProxiedTLength`).
pub const PADDED_PROXIED_T_LENGTH: usize = 16226;
