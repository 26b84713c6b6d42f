//! systemd readiness notifications (`sd_notify`): a datagram to `$NOTIFY_SOCKET`, so a
//! `Type=notify` unit knows when the server is ready and when it is stopping. Without
//! `NOTIFY_SOCKET` (not under systemd) nothing is sent.

/// Send `state` (e.g. `READY=1\nSTATUS=serving`) to systemd if it is listening.
pub fn sd_notify(state: &str) {
    #[cfg(unix)]
    {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        let sock = match std::os::unix::net::UnixDatagram::unbound() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("sd_notify: {e}");
                return;
            }
        };
        let bytes = path.as_encoded_bytes();
        let r = if let Some(name) = bytes.strip_prefix(b"@") {
            abstract_send(&sock, name, state)
        } else {
            sock.send_to(state.as_bytes(), std::path::Path::new(&path))
                .map(|_| ())
        };
        if let Err(e) = r {
            tracing::warn!("sd_notify: {e}");
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

#[cfg(target_os = "linux")]
fn abstract_send(
    sock: &std::os::unix::net::UnixDatagram,
    name: &[u8],
    state: &str,
) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
}

#[cfg(all(unix, not(target_os = "linux")))]
fn abstract_send(
    _sock: &std::os::unix::net::UnixDatagram,
    _name: &[u8],
    _state: &str,
) -> std::io::Result<()> {
    Err(std::io::Error::other("abstract sockets are Linux-only"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sends_to_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&p).expect("bind");
        // the variable is process-wide: this is the only test that sets it
        std::env::set_var("NOTIFY_SOCKET", &p);
        super::sd_notify("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }
}
