//! Time for the whole server: one `now_secs`, one [`Clock`] trait, one calendar.
//!
//! Command handling never reads the wall clock itself: the session reads [`now_secs`] once per
//! block and passes it in, and timers (daily statistics, expiry, inactive clients) take a
//! [`Clock`], so tests move time by hand with [`ManualClock`] instead of sleeping.

use std::future::Future;
use std::pin::Pin;

pub use smp_proto::calendar::{civil_from_days, days_from_civil, iso_date, iso_datetime, DAY_SECS};

/// Current Unix time in seconds (0 if the system clock is before 1970).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (statistics files, backups' names, the control port).
pub fn iso_time(secs: i64) -> String {
    format!("{}Z", iso_datetime(secs))
}

/// A source of time that can also wait; the server uses [`SystemClock`], tests a manual one.
pub trait Clock: Send + Sync + 'static {
    /// Now, in Unix seconds.
    fn now(&self) -> i64;
    /// Wait until [`Clock::now`] reaches `t`.
    fn sleep_until(&self, t: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        now_secs()
    }
    fn sleep_until(&self, t: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // re-check in steps, so a system clock change is noticed within a minute
            loop {
                let left = t - self.now();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(left.min(60) as u64)).await;
            }
        })
    }
}

/// A clock moved by hand (tests): sleepers wake when it is set past their time.
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<i64>,
}

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: i64) -> Self {
        ManualClock {
            now: tokio::sync::watch::Sender::new(now),
        }
    }
    /// Move the clock to `t`.
    pub fn set(&self, t: i64) {
        self.now.send_replace(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        *self.now.borrow()
    }
    fn sleep_until(&self, t: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|n| *n >= t).await;
        })
    }
}
