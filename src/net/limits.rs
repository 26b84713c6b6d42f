//! Connection caps: a total and a per-IP count, taken as an RAII [`ConnPermit`] that the
//! connection's task holds until it ends.
//!
//! IPv6 clients are counted per /64 (one customer's allocation, free to vary within), and
//! IPv4-mapped IPv6 addresses as the IPv4 address they carry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::limits::ConnCaps;

/// The address a per-IP count is kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpKey {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl IpKey {
    /// The key of a peer address.
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(a) => IpKey::V4(a.into()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.into()),
                None => IpKey::V6((u128::from(a) >> 64) as u64),
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The listener's total is reached.
    #[error("too many connections")]
    Total,
    /// The peer's address already has its share.
    #[error("too many connections from one address")]
    PerIp,
}

/// The open connections of one listener or group of listeners, against their caps.
#[derive(Debug)]
pub struct ConnLimits {
    caps: ConnCaps,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpKey, usize>>,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    key: Option<IpKey>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            let mut m = self.limits.lock();
            if let Some(n) = m.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&k);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnLimits {
    /// Limits with these caps.
    pub fn new(caps: ConnCaps) -> Arc<Self> {
        Arc::new(ConnLimits {
            caps,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused_total: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
        })
    }

    /// No practical limit (tests and embedders that count elsewhere).
    pub fn unlimited() -> Arc<Self> {
        Self::new(ConnCaps {
            total: usize::MAX,
            per_ip: usize::MAX,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpKey, usize>> {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caps.
    pub fn caps(&self) -> ConnCaps {
        self.caps
    }

    /// Admit a connection from `ip`, or say which cap it is over (and count the refusal).
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        self.acquire(Some(IpKey::of(ip)))
    }

    /// Admit a connection that has no IP address (an onion service stream): only the total
    /// applies.
    pub fn try_acquire_anonymous(self: &Arc<Self>) -> Result<ConnPermit, Refused> {
        self.acquire(None)
    }

    fn acquire(self: &Arc<Self>, key: Option<IpKey>) -> Result<ConnPermit, Refused> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.caps.total).then_some(n + 1)
            });
        if admitted.is_err() {
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Total);
        }
        if let Some(k) = key {
            let mut m = self.lock();
            let n = m.entry(k).or_insert(0);
            if *n >= self.caps.per_ip {
                drop(m);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        Ok(ConnPermit {
            limits: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections refused so far: (over the total, over the per-IP cap).
    pub fn refused(&self) -> (u64, u64) {
        (
            self.refused_total.load(Ordering::Relaxed),
            self.refused_per_ip.load(Ordering::Relaxed),
        )
    }

    /// Addresses with at least one open connection (bounded by the total).
    pub fn addresses(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn caps_total_and_per_ip_and_frees_on_drop() {
        let l = ConnLimits::new(ConnCaps {
            total: 3,
            per_ip: 2,
        });
        let a1 = l.try_acquire(ip("10.0.0.1")).expect("a1");
        let a2 = l.try_acquire(ip("::ffff:10.0.0.1")).expect("a2");
        assert_eq!(
            l.try_acquire(ip("10.0.0.1")).expect_err("refused"),
            Refused::PerIp
        );
        let b = l.try_acquire(ip("10.0.0.2")).expect("b");
        assert_eq!(
            l.try_acquire(ip("10.0.0.3")).expect_err("refused"),
            Refused::Total
        );
        assert_eq!(l.refused(), (1, 1));
        assert_eq!(l.open(), 3);
        drop(a1);
        assert_eq!(l.open(), 2);
        let a3 = l.try_acquire(ip("10.0.0.1")).expect("a3");
        drop((a2, a3, b));
        assert_eq!(l.open(), 0);
        assert_eq!(l.addresses(), 0);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = ConnLimits::new(ConnCaps {
            total: 10,
            per_ip: 1,
        });
        let _a = l.try_acquire(ip("2001:db8:1:2::1")).expect("a");
        assert_eq!(
            l.try_acquire(ip("2001:db8:1:2:ffff::9"))
                .expect_err("refused"),
            Refused::PerIp
        );
        let _b = l.try_acquire(ip("2001:db8:1:3::1")).expect("other /64");
        let _c = l.try_acquire_anonymous().expect("anonymous");
        assert_eq!(l.open(), 3);
    }
}
