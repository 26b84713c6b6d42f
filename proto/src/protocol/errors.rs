//! The SMP `ERR` payloads and transport errors, with the reference's text encodings.

use super::encoding::{DResult, DecodeError, Decoder, Encoder};
pub use super::names::NameError;

/// Error in a command's syntax or credentials (`ERR CMD x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// Unknown command tag.
    Unknown,
    /// Command fields do not parse.
    Syntax,
    /// Not allowed here (e.g. SUB and GET on one queue in one connection).
    Prohibited,
    /// Missing signature or entity ID.
    NoAuth,
    /// Signature or entity present where it must not be.
    HasAuth,
    /// Missing entity ID.
    NoEntity,
}

impl CommandError {
    fn as_str(self) -> &'static str {
        match self {
            CommandError::Unknown => "UNKNOWN",
            CommandError::Syntax => "SYNTAX",
            CommandError::Prohibited => "PROHIBITED",
            CommandError::NoAuth => "NO_AUTH",
            CommandError::HasAuth => "HAS_AUTH",
            CommandError::NoEntity => "NO_ENTITY",
        }
    }

    fn parse(s: &[u8]) -> DResult<Self> {
        Ok(match s {
            b"UNKNOWN" => CommandError::Unknown,
            b"SYNTAX" => CommandError::Syntax,
            b"PROHIBITED" => CommandError::Prohibited,
            b"NO_AUTH" => CommandError::NoAuth,
            b"HAS_AUTH" => CommandError::HasAuth,
            b"NO_ENTITY" | b"NO_QUEUE" => CommandError::NoEntity,
            _ => return Err(DecodeError("bad CommandError")),
        })
    }
}

/// Why a queue was blocked by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingInfo {
    /// The reason shown to clients.
    pub reason: BlockingReason,
    /// Optional notice for clients (v18): TTL in seconds, `None` = indefinite.
    pub notice: Option<ClientNotice>,
}

/// Reason for blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockingReason {
    /// Spam.
    Spam,
    /// Illegal content.
    Content,
}

/// A notice to clients about a blocked entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNotice {
    /// Seconds the notice applies; `None` means indefinitely.
    pub ttl: Option<i64>,
}

impl BlockingInfo {
    /// `reason=spam[,notice={"ttl":N}]`, as the reference's StrEncoding.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "reason={}",
            match self.reason {
                BlockingReason::Spam => "spam",
                BlockingReason::Content => "content",
            }
        );
        if let Some(n) = &self.notice {
            s.push_str(",notice=");
            match n.ttl {
                Some(t) => s.push_str(&format!("{{\"ttl\":{t}}}")),
                None => s.push_str("{}"),
            }
        }
        s
    }

    /// Parse the text form.
    pub fn parse(s: &[u8]) -> DResult<Self> {
        let s = std::str::from_utf8(s).map_err(|_| DecodeError("bad BlockingInfo"))?;
        let rest = s
            .strip_prefix("reason=")
            .ok_or(DecodeError("bad BlockingInfo"))?;
        let (reason, notice) = match rest.split_once(",notice=") {
            Some((r, n)) => (r, Some(n)),
            None => (rest, None),
        };
        let reason = match reason {
            "spam" => BlockingReason::Spam,
            "content" => BlockingReason::Content,
            _ => return Err(DecodeError("bad BlockingReason")),
        };
        let notice = match notice {
            None => None,
            Some(j) => {
                let v: serde_json::Value =
                    serde_json::from_str(j).map_err(|_| DecodeError("bad notice"))?;
                Some(ClientNotice {
                    ttl: v.get("ttl").and_then(|t| t.as_i64()),
                })
            }
        };
        Ok(BlockingInfo { reason, notice })
    }
}

/// Transport-level errors (also carried inside proxy errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// Block could not be parsed.
    BadBlock,
    /// No compatible version.
    Version,
    /// Message does not fit the block.
    LargeMsg,
    /// Wrong session ID.
    BadSession,
    /// Server did not provide a DH key for authorization.
    NoServerAuth,
    /// Handshake failure.
    Handshake(HandshakeError),
}

/// Handshake failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Handshake did not parse.
    Parse,
    /// Wrong server identity (key hash).
    Identity,
    /// Authentication of the handshake failed.
    BadAuth,
    /// Service record error.
    BadService,
}

impl TransportError {
    /// Text form (`BLOCK`, `HANDSHAKE IDENTITY`, ...).
    pub fn to_text(&self) -> String {
        match self {
            TransportError::BadBlock => "BLOCK".into(),
            TransportError::Version => "VERSION".into(),
            TransportError::LargeMsg => "LARGE_MSG".into(),
            TransportError::BadSession => "SESSION".into(),
            TransportError::NoServerAuth => "NO_AUTH".into(),
            TransportError::Handshake(h) => format!(
                "HANDSHAKE {}",
                match h {
                    HandshakeError::Parse => "PARSE",
                    HandshakeError::Identity => "IDENTITY",
                    HandshakeError::BadAuth => "BAD_AUTH",
                    HandshakeError::BadService => "BAD_SERVICE",
                }
            ),
        }
    }

    /// Parse the text form from a decoder (consumes the word(s) it needs).
    pub fn decode(d: &mut Decoder) -> DResult<Self> {
        Ok(match d.till_space() {
            b"BLOCK" => TransportError::BadBlock,
            b"VERSION" => TransportError::Version,
            b"LARGE_MSG" => TransportError::LargeMsg,
            b"SESSION" => TransportError::BadSession,
            b"NO_AUTH" => TransportError::NoServerAuth,
            b"HANDSHAKE" => {
                d.space()?;
                TransportError::Handshake(match d.till_space() {
                    b"PARSE" => HandshakeError::Parse,
                    b"IDENTITY" => HandshakeError::Identity,
                    b"BAD_AUTH" => HandshakeError::BadAuth,
                    b"BAD_SERVICE" => HandshakeError::BadService,
                    _ => return Err(DecodeError("bad HandshakeError")),
                })
            }
            _ => return Err(DecodeError("bad TransportError")),
        })
    }
}

/// Errors of a forwarding proxy (`ERR PROXY ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The relay answered with an error.
    Protocol(Box<ErrorType>),
    /// The relay could not be reached or answered badly.
    Broker(BrokerError),
    /// The basic auth given to the proxy was wrong.
    BasicAuth,
    /// No session with the relay.
    NoSession,
}

/// Errors reaching a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// Response did not parse.
    Response(String),
    /// Unexpected response.
    Unexpected(String),
    /// Network error (detail not sent on the wire).
    Network,
    /// No compatible host.
    Host,
    /// Service unavailable.
    NoService,
    /// Transport error.
    Transport(TransportError),
    /// Timeout.
    Timeout,
}

/// The payload of `ERR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    /// Bad block format, encoding or signature size.
    Block,
    /// Wrong session ID.
    Session,
    /// Command error.
    Cmd(CommandError),
    /// Proxy error.
    Proxy(ProxyError),
    /// Authorization failed or no such queue.
    Auth,
    /// Entity blocked by the operator.
    Blocked(BlockingInfo),
    /// Service signature not allowed.
    Service,
    /// Proxy encryption error.
    Crypto,
    /// Queue full.
    Quota,
    /// Storage error.
    Store(String),
    /// ACK without a delivered message.
    NoMsg,
    /// Message too large.
    LargeMsg,
    /// Relay key expired.
    Expired,
    /// Internal error.
    Internal,
    /// Name resolution error (v20 RSLV).
    Name(NameError),
    /// Internal duplicate marker (never sent by the server).
    Duplicate,
}

impl ErrorType {
    /// Encode as the reference's `Encoding ErrorType`.
    pub fn encode(&self, e: &mut Encoder) {
        match self {
            ErrorType::Block => e.raw(b"BLOCK"),
            ErrorType::Session => e.raw(b"SESSION"),
            ErrorType::Cmd(c) => e.raw(b"CMD ").raw(c.as_str().as_bytes()),
            ErrorType::Proxy(p) => {
                e.raw(b"PROXY ");
                encode_proxy(p, e);
                e
            }
            ErrorType::Auth => e.raw(b"AUTH"),
            ErrorType::Blocked(i) => e.raw(b"BLOCKED ").raw(i.to_text().as_bytes()),
            ErrorType::Service => e.raw(b"SERVICE"),
            ErrorType::Crypto => e.raw(b"CRYPTO"),
            ErrorType::Quota => e.raw(b"QUOTA"),
            ErrorType::Store(s) => e.raw(b"STORE ").raw(s.as_bytes()),
            ErrorType::Expired => e.raw(b"EXPIRED"),
            ErrorType::NoMsg => e.raw(b"NO_MSG"),
            ErrorType::LargeMsg => e.raw(b"LARGE_MSG"),
            ErrorType::Internal => e.raw(b"INTERNAL"),
            ErrorType::Name(n) => e.raw(b"NAME ").raw(n.to_text().as_bytes()),
            ErrorType::Duplicate => e.raw(b"DUPLICATE_"),
        };
    }

    /// Decode the reference's `Encoding ErrorType`.
    pub fn decode(d: &mut Decoder) -> DResult<Self> {
        Ok(match d.till_space() {
            b"BLOCK" => ErrorType::Block,
            b"SESSION" => ErrorType::Session,
            b"CMD" => {
                d.space()?;
                ErrorType::Cmd(CommandError::parse(d.till_space())?)
            }
            b"PROXY" => {
                d.space()?;
                ErrorType::Proxy(decode_proxy(d)?)
            }
            b"AUTH" => ErrorType::Auth,
            b"BLOCKED" => {
                d.space()?;
                ErrorType::Blocked(BlockingInfo::parse(d.tail())?)
            }
            b"SERVICE" => ErrorType::Service,
            b"CRYPTO" => ErrorType::Crypto,
            b"QUOTA" => ErrorType::Quota,
            b"STORE" => {
                d.space()?;
                ErrorType::Store(String::from_utf8_lossy(d.tail()).into_owned())
            }
            b"EXPIRED" => ErrorType::Expired,
            b"NO_MSG" => ErrorType::NoMsg,
            b"LARGE_MSG" => ErrorType::LargeMsg,
            b"INTERNAL" => ErrorType::Internal,
            b"NAME" => {
                d.space()?;
                ErrorType::Name(NameError::decode(d)?)
            }
            b"DUPLICATE_" => ErrorType::Duplicate,
            _ => return Err(DecodeError("bad ErrorType")),
        })
    }
}

fn encode_proxy(p: &ProxyError, e: &mut Encoder) {
    match p {
        ProxyError::Protocol(err) => {
            e.raw(b"PROTOCOL ");
            err.encode(e);
        }
        ProxyError::Broker(b) => {
            e.raw(b"BROKER ");
            match b {
                BrokerError::Response(s) => {
                    e.raw(b"RESPONSE ").short_bytes(truncated(s));
                }
                BrokerError::Unexpected(s) => {
                    e.raw(b"UNEXPECTED ").short_bytes(truncated(s));
                }
                BrokerError::Transport(t) => {
                    e.raw(b"TRANSPORT ").raw(t.to_text().as_bytes());
                }
                BrokerError::Network => {
                    e.raw(b"NETWORK");
                }
                BrokerError::Timeout => {
                    e.raw(b"TIMEOUT");
                }
                BrokerError::Host => {
                    e.raw(b"HOST");
                }
                BrokerError::NoService => {
                    e.raw(b"NO_SERVICE");
                }
            }
        }
        ProxyError::BasicAuth => {
            e.raw(b"BASIC_AUTH");
        }
        ProxyError::NoSession => {
            e.raw(b"NO_SESSION");
        }
    }
}

fn truncated(s: &str) -> &[u8] {
    let b = s.as_bytes();
    &b[..b.len().min(255)]
}

fn decode_proxy(d: &mut Decoder) -> DResult<ProxyError> {
    Ok(match d.till_space() {
        b"PROTOCOL" => {
            d.space()?;
            ProxyError::Protocol(Box::new(ErrorType::decode(d)?))
        }
        b"BROKER" => {
            d.space()?;
            ProxyError::Broker(match d.till_space() {
                b"RESPONSE" => {
                    d.space()?;
                    BrokerError::Response(String::from_utf8_lossy(d.short_bytes()?).into_owned())
                }
                b"UNEXPECTED" => {
                    d.space()?;
                    BrokerError::Unexpected(String::from_utf8_lossy(d.short_bytes()?).into_owned())
                }
                b"TRANSPORT" => {
                    d.space()?;
                    BrokerError::Transport(TransportError::decode(d)?)
                }
                b"NETWORK" => {
                    // newer peers may append a detail; it is not needed here
                    d.tail();
                    BrokerError::Network
                }
                b"TIMEOUT" => BrokerError::Timeout,
                b"HOST" => BrokerError::Host,
                b"NO_SERVICE" => BrokerError::NoService,
                _ => return Err(DecodeError("bad BrokerErrorType")),
            })
        }
        b"BASIC_AUTH" => ProxyError::BasicAuth,
        b"NO_SESSION" => ProxyError::NoSession,
        _ => return Err(DecodeError("bad ProxyError")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(e: &ErrorType) -> Vec<u8> {
        let mut x = Encoder::new();
        e.encode(&mut x);
        x.finish()
    }

    #[test]
    fn error_texts_round_trip() {
        let cases: Vec<(ErrorType, &[u8])> = vec![
            (ErrorType::Auth, b"AUTH"),
            (ErrorType::Cmd(CommandError::Syntax), b"CMD SYNTAX"),
            (ErrorType::Cmd(CommandError::NoEntity), b"CMD NO_ENTITY"),
            (ErrorType::NoMsg, b"NO_MSG"),
            (ErrorType::Store("disk full".into()), b"STORE disk full"),
            (
                ErrorType::Blocked(BlockingInfo {
                    reason: BlockingReason::Spam,
                    notice: None,
                }),
                b"BLOCKED reason=spam",
            ),
            (
                ErrorType::Blocked(BlockingInfo {
                    reason: BlockingReason::Content,
                    notice: Some(ClientNotice { ttl: Some(3600) }),
                }),
                b"BLOCKED reason=content,notice={\"ttl\":3600}",
            ),
            (
                ErrorType::Proxy(ProxyError::Broker(BrokerError::Transport(
                    TransportError::Handshake(HandshakeError::Identity),
                ))),
                b"PROXY BROKER TRANSPORT HANDSHAKE IDENTITY",
            ),
            (
                ErrorType::Proxy(ProxyError::Protocol(Box::new(ErrorType::Auth))),
                b"PROXY PROTOCOL AUTH",
            ),
            (ErrorType::Name(NameError::NoResolver), b"NAME NO_RESOLVER"),
            (ErrorType::Name(NameError::NotFound), b"NAME NOT_FOUND"),
            (
                ErrorType::Name(NameError::Resolver("HTTP 502".into())),
                b"NAME RESOLVER HTTP 502",
            ),
            (
                ErrorType::Proxy(ProxyError::Protocol(Box::new(ErrorType::Name(
                    NameError::NotFound,
                )))),
                b"PROXY PROTOCOL NAME NOT_FOUND",
            ),
        ];
        for (e, bytes) in cases {
            assert_eq!(enc(&e), bytes);
            let mut d = Decoder::new(bytes);
            assert_eq!(ErrorType::decode(&mut d).expect("decode"), e);
            d.finish().expect("all consumed");
        }
        // legacy alias
        let mut d = Decoder::new(b"CMD NO_QUEUE");
        assert_eq!(
            ErrorType::decode(&mut d).expect("decode"),
            ErrorType::Cmd(CommandError::NoEntity)
        );
    }
}
