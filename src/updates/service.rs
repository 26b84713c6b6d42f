//! The periodic update checker started by `smp-server start` when `[UPDATE] mode` is `check`
//! or `auto`. Network and file work runs on the blocking pool; a failure is logged with its
//! reason and the server keeps running the binary it has.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::config::{Update, UpdateMode, UpdateWindow};

/// What one check did.
enum Outcome {
    /// Nothing newer, or something failed (already logged).
    Nothing,
    /// A newer verified release exists but it is outside the window.
    Waiting,
    /// A new binary is installed: restart.
    Installed,
}

fn minute_of_day() -> u16 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    ((secs % 86400) / 60) as u16
}

/// Minutes from `now` until the window opens (0 inside it).
fn minutes_until(window: &UpdateWindow, now: u16) -> u16 {
    if window.contains(now) {
        0
    } else {
        (window.start_min + 1440 - now) % 1440
    }
}

fn check_once(u: &Update) -> Outcome {
    let (source, keys) = match super::source_and_keys(u) {
        Ok(sk) => sk,
        Err(e) => {
            tracing::error!("update check: {e}");
            return Outcome::Nothing;
        }
    };
    let available = match smp_updater::check(&source) {
        Ok(a) => a,
        Err(smp_updater::UpdateError::NotNewer { .. }) => {
            tracing::debug!("update check: running the newest release");
            return Outcome::Nothing;
        }
        Err(e) => {
            tracing::warn!("update check failed: {e}");
            return Outcome::Nothing;
        }
    };
    // Only a release whose signature checks out is reported or installed.
    let verified =
        match smp_updater::download_and_verify(&available, &keys, smp_updater::Progress::Log) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("release {} refused: {e}", available.version);
                return Outcome::Nothing;
            }
        };
    if u.mode == UpdateMode::Check {
        tracing::info!(
            "a newer signed release is available: {} (running {}); run `smp-server self-update` to install it",
            available.version,
            super::VERSION
        );
        return Outcome::Nothing;
    }
    if !u.window.contains(minute_of_day()) {
        tracing::info!(
            "signed release {} will be installed in the update window {} UTC",
            available.version,
            u.window
        );
        return Outcome::Waiting;
    }
    let dest = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("update not installed: cannot find this binary: {e}");
            return Outcome::Nothing;
        }
    };
    match smp_updater::install_binary(&verified, &dest) {
        Ok(()) => Outcome::Installed,
        Err(e) => {
            tracing::error!(
                "update to {} not installed, still running {}: {e}",
                available.version,
                super::VERSION
            );
            Outcome::Nothing
        }
    }
}

/// The checker, if `mode` asks for one. When it installs an update it marks the restart as
/// pending and cancels `shutdown`, so the server drains before the new binary takes over.
pub fn checker(u: &Update) -> Option<Box<dyn crate::service::Service>> {
    if u.mode == UpdateMode::Off {
        return None;
    }
    let u = u.clone();
    Some(crate::service::from_fn(
        "update checker",
        move |shutdown: CancellationToken, mut ready| async move {
            ready.ready();
            let interval = Duration::from_secs(u.check_interval_secs);
            let mut wait = interval.min(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                let settings = u.clone();
                let outcome = tokio::task::spawn_blocking(move || check_once(&settings)).await;
                wait = match outcome {
                    Ok(Outcome::Installed) => {
                        super::mark_restart_pending();
                        tracing::info!("update installed; draining connections before restart");
                        shutdown.cancel();
                        return;
                    }
                    Ok(Outcome::Waiting) => {
                        let mins = u64::from(minutes_until(&u.window, minute_of_day()));
                        interval.min(Duration::from_secs(mins * 60 + 30))
                    }
                    Ok(Outcome::Nothing) => interval,
                    Err(e) => {
                        tracing::error!("update check task failed: {e}");
                        interval
                    }
                };
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_wait() {
        let w = UpdateWindow {
            start_min: 180,
            end_min: 300,
        };
        assert_eq!(minutes_until(&w, 200), 0);
        assert_eq!(minutes_until(&w, 170), 10);
        assert_eq!(minutes_until(&w, 300), 1320);
    }
}
