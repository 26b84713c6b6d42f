//! A SOCKS5 client handshake (RFC 1928, username/password from RFC 1929), CONNECT only.
//!
//! ```text
//! greeting:  05 n methods...            reply: 05 method
//! auth:      01 ulen user plen pass     reply: 01 status(00 = ok)
//! request:   05 01 00 atyp addr port    reply: 05 rep 00 atyp addr port
//!            atyp 01 = IPv4 (4), 03 = name (len + bytes), 04 = IPv6 (16)
//! ```

use std::io;
use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Username and password sent to the proxy (Tor uses them to isolate circuits).
#[derive(Clone, PartialEq, Eq)]
pub struct SocksCredentials {
    /// Username (1-255 bytes).
    pub username: String,
    /// Password (1-255 bytes).
    pub password: String,
}

impl std::fmt::Debug for SocksCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocksCredentials").finish_non_exhaustive()
    }
}

fn proto(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The proxy's reason for refusing a CONNECT.
fn reply_error(rep: u8) -> io::Error {
    let (kind, what) = match rep {
        1 => (io::ErrorKind::Other, "general failure"),
        2 => (io::ErrorKind::PermissionDenied, "not allowed by ruleset"),
        3 => (io::ErrorKind::NetworkUnreachable, "network unreachable"),
        4 => (io::ErrorKind::HostUnreachable, "host unreachable"),
        5 => (io::ErrorKind::ConnectionRefused, "connection refused"),
        6 => (io::ErrorKind::TimedOut, "TTL expired"),
        7 => (io::ErrorKind::Unsupported, "command not supported"),
        8 => (io::ErrorKind::Unsupported, "address type not supported"),
        _ => (io::ErrorKind::Other, "unknown error"),
    };
    io::Error::new(kind, format!("SOCKS proxy: {what} (reply {rep})"))
}

/// The CONNECT request for `host:port` (IP literals as addresses, anything else as a name).
pub(crate) fn connect_request(host: &str, port: u16) -> io::Result<Vec<u8>> {
    let mut req = vec![5, 1, 0];
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len())
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| proto("host name must be 1-255 bytes"))?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    Ok(req)
}

/// Run the client side of a SOCKS5 CONNECT on `s`; on success `s` carries the tunnel.
pub async fn socks5_connect<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    port: u16,
    credentials: Option<&SocksCredentials>,
) -> io::Result<S> {
    let request = connect_request(host, port)?;
    match credentials {
        Some(_) => s.write_all(&[5, 2, 0, 2]).await?,
        None => s.write_all(&[5, 1, 0]).await?,
    }
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await?;
    if choice[0] != 5 {
        return Err(proto("not a SOCKS5 proxy"));
    }
    match (choice[1], credentials) {
        (0, _) => {}
        (2, Some(c)) => {
            let (u, p) = (c.username.as_bytes(), c.password.as_bytes());
            let ulen = u8::try_from(u.len()).map_err(|_| proto("SOCKS username too long"))?;
            let plen = u8::try_from(p.len()).map_err(|_| proto("SOCKS password too long"))?;
            let mut auth = vec![1, ulen];
            auth.extend_from_slice(u);
            auth.push(plen);
            auth.extend_from_slice(p);
            s.write_all(&auth).await?;
            let mut status = [0u8; 2];
            s.read_exact(&mut status).await?;
            if status[1] != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "SOCKS proxy rejected the username/password",
                ));
            }
        }
        (0xff, _) => return Err(proto("SOCKS proxy accepts none of our methods")),
        (m, _) => return Err(proto(format!("SOCKS proxy chose unexpected method {m}"))),
    }
    s.write_all(&request).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(proto("bad SOCKS reply"));
    }
    if head[1] != 0 {
        return Err(reply_error(head[1]));
    }
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await?;
            usize::from(l[0])
        }
        t => return Err(proto(format!("bad SOCKS address type {t}"))),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest).await?;
    Ok(s)
}
