use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ONION: &str = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion";

fn hosts(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

#[test]
fn onion_hosts() {
    assert!(is_onion(ONION));
    assert!(is_onion("X.ONION"));
    assert!(!is_onion(".onion"));
    assert!(!is_onion("smp.example.com"));
    assert!(!is_onion("127.0.0.1"));
}

#[test]
fn host_choice_follows_the_reference() {
    let both = hosts(&["smp.example.com", ONION]);
    let onion_first = hosts(&[ONION, "smp.example.com"]);
    let only_onion = hosts(&[ONION]);
    let only_public = hosts(&["smp.example.com"]);
    use HostMode::*;
    assert_eq!(
        choose_host(&both, Public, false, true),
        Ok("smp.example.com")
    );
    assert_eq!(
        choose_host(&onion_first, Public, false, true),
        Ok("smp.example.com")
    );
    assert_eq!(choose_host(&both, Onion, false, true), Ok(ONION));
    // host_mode = onion without any way to reach onions behaves as public.
    assert_eq!(
        choose_host(&both, Onion, false, false),
        Ok("smp.example.com")
    );
    // No preferred host: the first one, unless required.
    assert_eq!(choose_host(&only_onion, Public, false, false), Ok(ONION));
    assert_eq!(
        choose_host(&only_onion, Public, true, true),
        Err(IncompatibleHost("public"))
    );
    assert_eq!(
        choose_host(&only_public, Onion, true, true),
        Err(IncompatibleHost("onion"))
    );
    assert_eq!(
        choose_host(&only_public, Onion, false, true),
        Ok("smp.example.com")
    );
}

#[test]
fn socks_requests() {
    assert_eq!(
        socks5::connect_request("127.0.0.1", 5223).expect("ok"),
        vec![5, 1, 0, 1, 127, 0, 0, 1, 0x14, 0x67]
    );
    let r = socks5::connect_request("a.onion", 443).expect("ok");
    assert_eq!(&r[..5], &[5, 1, 0, 3, 7]);
    assert_eq!(&r[5..12], b"a.onion");
    assert_eq!(&r[12..], &[1, 187]);
    let r = socks5::connect_request("[::1]", 1).expect("ok");
    assert_eq!(r[3], 4);
    assert_eq!(r.len(), 4 + 16 + 2);
    assert!(socks5::connect_request(&"x".repeat(256), 1).is_err());
}

/// A TCP echo server; returns its address.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A minimal SOCKS5 server (the peer our client talks to): checks the credentials if any,
/// then connects to the requested IPv4 address and relays. `seen` gets each target.
async fn socks_server(
    creds: Option<(&'static str, &'static str)>,
    seen: tokio::sync::mpsc::UnboundedSender<(String, u16)>,
    reply: u8,
) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut h = [0u8; 2];
                s.read_exact(&mut h).await.expect("greeting");
                let mut methods = vec![0u8; usize::from(h[1])];
                s.read_exact(&mut methods).await.expect("methods");
                match creds {
                    Some((u, p)) => {
                        assert!(methods.contains(&2), "client offers username/password");
                        s.write_all(&[5, 2]).await.expect("choice");
                        let mut v = [0u8; 2];
                        s.read_exact(&mut v).await.expect("auth");
                        let mut user = vec![0u8; usize::from(v[1])];
                        s.read_exact(&mut user).await.expect("user");
                        let mut pl = [0u8; 1];
                        s.read_exact(&mut pl).await.expect("plen");
                        let mut pass = vec![0u8; usize::from(pl[0])];
                        s.read_exact(&mut pass).await.expect("pass");
                        let ok = user == u.as_bytes() && pass == p.as_bytes();
                        s.write_all(&[1, if ok { 0 } else { 1 }])
                            .await
                            .expect("status");
                        if !ok {
                            return;
                        }
                    }
                    None => s.write_all(&[5, 0]).await.expect("choice"),
                }
                let mut req = [0u8; 4];
                s.read_exact(&mut req).await.expect("request");
                let host = match req[3] {
                    1 => {
                        let mut a = [0u8; 4];
                        s.read_exact(&mut a).await.expect("ipv4");
                        std::net::Ipv4Addr::from(a).to_string()
                    }
                    3 => {
                        let mut l = [0u8; 1];
                        s.read_exact(&mut l).await.expect("len");
                        let mut n = vec![0u8; usize::from(l[0])];
                        s.read_exact(&mut n).await.expect("name");
                        String::from_utf8(n).expect("utf8")
                    }
                    t => panic!("unexpected address type {t}"),
                };
                let mut p = [0u8; 2];
                s.read_exact(&mut p).await.expect("port");
                let port = u16::from_be_bytes(p);
                let _ = seen.send((host.clone(), port));
                if reply != 0 {
                    let _ = s.write_all(&[5, reply, 0, 1, 0, 0, 0, 0, 0, 0]).await;
                    return;
                }
                // Names resolve to loopback in this test proxy.
                let target = if host.parse::<std::net::Ipv4Addr>().is_ok() {
                    host
                } else {
                    "127.0.0.1".into()
                };
                let mut up = TcpStream::connect((target.as_str(), port))
                    .await
                    .expect("up");
                s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
                    .await
                    .expect("reply");
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    addr
}

async fn round_trip(mut s: BoxedStream) {
    s.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"ping");
}

fn direct() -> DirectConnector {
    DirectConnector {
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn direct_connects_and_refuses_onion() {
    let echo = echo_server().await;
    round_trip(
        direct()
            .connect("127.0.0.1", echo.port())
            .await
            .expect("connect"),
    )
    .await;
    round_trip(
        direct()
            .connect("localhost", echo.port())
            .await
            .expect("by name"),
    )
    .await;
    let e = direct()
        .connect(ONION, 5223)
        .await
        .err()
        .expect("onion refused");
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
}

#[tokio::test]
async fn socks_connects_by_name_and_with_credentials() {
    let echo = echo_server().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let proxy = socks_server(Some(("user", "pass")), tx, 0).await;
    let c = SocksConnector {
        proxy,
        credentials: Some(SocksCredentials {
            username: "user".into(),
            password: "pass".into(),
        }),
        timeout: Duration::from_secs(5),
    };
    round_trip(c.connect(ONION, echo.port()).await.expect("connect")).await;
    assert_eq!(rx.recv().await, Some((ONION.to_string(), echo.port())));
    let bad = SocksConnector {
        credentials: Some(SocksCredentials {
            username: "user".into(),
            password: "wrong".into(),
        }),
        ..c
    };
    let e = bad
        .connect(ONION, echo.port())
        .await
        .err()
        .expect("rejected");
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn socks_refusal_is_reported() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let proxy = socks_server(None, tx, 4).await;
    let c = SocksConnector {
        proxy,
        credentials: None,
        timeout: Duration::from_secs(5),
    };
    let e = c
        .connect("smp.example.com", 5223)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.kind(), io::ErrorKind::HostUnreachable);
    assert!(e.to_string().contains("host unreachable"), "{e}");
}

#[tokio::test]
async fn egress_routes_by_socks_mode_and_onion() {
    let echo = echo_server().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let proxy = socks_server(None, tx, 0).await;
    let socks = SocksConnector {
        proxy,
        credentials: None,
        timeout: Duration::from_secs(5),
    };
    // socks_mode = onion: public hosts direct, onion hosts through the proxy.
    let e = Egress {
        direct: direct(),
        socks: Some(socks.clone()),
        socks_mode: SocksMode::Onion,
        arti: None,
        allow_private: true,
    };
    assert!(e.reaches_onion());
    round_trip(e.connect("127.0.0.1", echo.port()).await.expect("direct")).await;
    round_trip(e.connect(ONION, echo.port()).await.expect("via socks")).await;
    assert_eq!(rx.recv().await, Some((ONION.to_string(), echo.port())));
    assert!(rx.try_recv().is_err(), "public host must not use the proxy");
    // socks_mode = always: everything through the proxy.
    let e = Egress {
        socks_mode: SocksMode::Always,
        ..e
    };
    round_trip(
        e.connect("127.0.0.1", echo.port())
            .await
            .expect("via socks"),
    )
    .await;
    assert_eq!(
        rx.recv().await,
        Some(("127.0.0.1".to_string(), echo.port()))
    );
    // No proxy, no Tor: onion hosts are unreachable, with a clear error.
    let e = Egress {
        direct: direct(),
        socks: None,
        socks_mode: SocksMode::Always,
        arti: None,
        allow_private: true,
    };
    assert!(!e.reaches_onion());
    let err = e.connect(ONION, 5223).await.err().expect("no route");
    assert!(err.to_string().contains("[TOR]"), "{err}");
    round_trip(e.connect("127.0.0.1", echo.port()).await.expect("direct")).await;
}

#[tokio::test]
async fn private_destinations_refused_unless_allowed() {
    let echo = echo_server().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let proxy = socks_server(None, tx, 0).await;
    let socks = SocksConnector {
        proxy,
        credentials: None,
        timeout: Duration::from_secs(5),
    };
    let mut e = Egress {
        direct: direct(),
        socks: Some(socks),
        socks_mode: SocksMode::Onion,
        arti: None,
        allow_private: false,
    };
    for host in [
        "127.0.0.1",
        "localhost",
        "LocalHost.",
        "[::1]",
        "::ffff:127.0.0.1",
    ] {
        let err = e.connect(host, echo.port()).await.err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{host}: {err}");
    }
    e.socks_mode = SocksMode::Always;
    let err = e.connect("10.1.2.3", 5223).await.err().expect("refused");
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert!(
        rx.try_recv().is_err(),
        "a refused host must not reach the proxy"
    );
    e.socks_mode = SocksMode::Onion;
    e.allow_private = true;
    round_trip(e.connect("LOCALHOST.", echo.port()).await.expect("allowed")).await;
}
