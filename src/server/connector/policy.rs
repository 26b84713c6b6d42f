//! Which destinations the proxy role may connect to, and one spelling per host.
//!
//! Clients name relays freely, so without a rule a public relay could be made to open
//! connections into its own network (`127.0.0.1`, `10.x`, `169.254.169.254`, ...). Names are
//! resolved here, the resolved addresses checked, and the connection made to exactly a checked
//! address, so a DNS answer that changes between a check and a connect cannot get around it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A host as clients may spell it, in one canonical form: ASCII lower case, without a
/// trailing dot, IPv6 without brackets and in its shortest form, IPv4-mapped IPv6 as IPv4.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    let h = h.strip_suffix('.').unwrap_or(h);
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => a.to_string(),
        },
        Ok(a) => a.to_string(),
        Err(_) => h.to_ascii_lowercase(),
    }
}

/// Whether `ip` is an address of the public internet (not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast, broadcast, documentation, benchmarking or
/// reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_public_v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(a),
        },
    }
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let [b0, b1, b2, _] = a.octets();
    !(a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || b0 == 0
        || (b0 == 100 && (64..128).contains(&b1)) // shared address space (RFC 6598)
        || (b0 == 192 && b1 == 0 && b2 == 0) // IETF protocol assignments
        || (b0 == 198 && (b1 == 18 || b1 == 19)) // benchmarking
        || b0 >= 240) // reserved
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let embedded_v4 =
        || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if a.is_loopback() || a.is_unspecified() || a.is_multicast() {
        return false;
    }
    match s[0] {
        0xfc00..=0xfdff => false,                                // unique local
        0xfe80..=0xfebf => false,                                // link-local
        0xfec0..=0xfeff => false,                                // site-local (deprecated)
        0x2001 if s[1] == 0x0db8 => false,                       // documentation
        0x0064 if s[1] == 0xff9b => is_public_v4(embedded_v4()), // NAT64
        0x2002 => is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        )), // 6to4
        0 if s[..6].iter().all(|x| *x == 0) => false,            // IPv4-compatible (deprecated)
        _ => true,
    }
}

/// Names that always mean this machine, whatever a resolver says.
fn is_local_name(host: &str) -> bool {
    let h = normalize_host(host);
    h == "localhost" || h.ends_with(".localhost")
}

/// The error of a destination the policy refuses.
pub fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "destination is not a public address ([PROXY] allow_private_destinations = off)",
    )
}

/// Check a host before a route that resolves names elsewhere (SOCKS): IP literals and local
/// names can be judged here; other names are left to the proxy.
pub fn check_unresolved(host: &str, allow_private: bool) -> io::Result<()> {
    if allow_private {
        return Ok(());
    }
    if is_local_name(host) {
        return Err(refused());
    }
    match normalize_host(host).parse::<IpAddr>() {
        Ok(ip) if !is_public(ip) => Err(refused()),
        _ => Ok(()),
    }
}

/// Resolve `host` (or take it as an address) and keep the addresses the policy allows, in the
/// resolver's order. An empty result for a name that resolved is a refusal.
pub async fn resolve_allowed(
    host: &str,
    port: u16,
    allow_private: bool,
) -> io::Result<Vec<SocketAddr>> {
    check_unresolved(host, allow_private)?;
    let h = normalize_host(host);
    let all: Vec<SocketAddr> = match h.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((h.as_str(), port)).await?.collect(),
    };
    let allowed: Vec<SocketAddr> = all
        .iter()
        .copied()
        .filter(|a| allow_private || is_public(a.ip()))
        .collect();
    if allowed.is_empty() && !all.is_empty() {
        return Err(refused());
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_host_normalize_alike() {
        let forms = [
            "Relay.Example.COM",
            "relay.example.com.",
            " relay.example.com ",
        ];
        for f in forms {
            assert_eq!(normalize_host(f), "relay.example.com");
        }
        assert_eq!(normalize_host("[0:0:0:0:0:0:0:1]"), "::1");
        assert_eq!(normalize_host("::0001"), "::1");
        assert_eq!(normalize_host("[2001:DB8::1]"), "2001:db8::1");
        assert_eq!(normalize_host("::ffff:1.2.3.4"), "1.2.3.4");
        assert_eq!(normalize_host("abc.onion"), "abc.onion");
        assert_eq!(normalize_host("ABC.ONION."), "abc.onion");
    }

    #[test]
    fn private_addresses_are_not_public() {
        let p = |s: &str| is_public(s.parse().expect("ip"));
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "::127.0.0.1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!p(a), "{a} counted as public");
        }
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::101:101",
            "::ffff:1.1.1.1",
        ] {
            assert!(p(a), "{a} counted as private");
        }
    }

    #[tokio::test]
    async fn resolve_then_check() {
        let refused = |r: io::Result<Vec<SocketAddr>>| matches!(r, Err(e) if e.kind() == io::ErrorKind::PermissionDenied);
        assert!(refused(resolve_allowed("127.0.0.1", 5223, false).await));
        assert!(refused(resolve_allowed("[::1]", 5223, false).await));
        assert!(refused(resolve_allowed("LOCALHOST.", 5223, false).await));
        assert!(refused(resolve_allowed("a.localhost", 5223, false).await));
        assert_eq!(
            resolve_allowed("127.0.0.1", 5223, true)
                .await
                .expect("allowed"),
            vec!["127.0.0.1:5223".parse().expect("addr")]
        );
        assert_eq!(
            resolve_allowed("1.1.1.1", 443, false)
                .await
                .expect("public"),
            vec!["1.1.1.1:443".parse().expect("addr")]
        );
        assert!(check_unresolved("example.com", false).is_ok());
        assert!(check_unresolved("10.0.0.1", false).is_err());
    }
}
