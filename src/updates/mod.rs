//! Signed self-update wired into the server: the version this binary reports, the update
//! source from `[UPDATE]`, and the restart after an update (see the `smp-updater` crate for
//! download, verification and the binary swap).

pub mod confirm;
mod service;

use std::sync::atomic::{AtomicBool, Ordering};

pub use service::checker;
pub use smp_updater::RESTART_EXIT_STATUS;

use crate::config::Update;

/// The version this binary reports and compares releases with. Release builds may set it with
/// `SMP_SERVER_VERSION` at build time (the packaging script does); otherwise the crate version.
pub const VERSION: &str = match option_env!("SMP_SERVER_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// Set once an update has been installed by the running server; `start` then restarts.
static RESTART_PENDING: AtomicBool = AtomicBool::new(false);

/// Why the update settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpdateSetupError {
    /// No repository is known.
    #[error("no release repository is configured; set [UPDATE] repository = owner/name in smp-server.ini")]
    NoRepository,
    /// The verifying keys are unusable.
    #[error(transparent)]
    Keys(#[from] smp_updater::UpdateError),
}

/// The release source and trusted keys for `[UPDATE]`.
pub fn source_and_keys(
    u: &Update,
) -> Result<(smp_updater::Source, smp_updater::TrustedKeys), UpdateSetupError> {
    let repository = u.repository.clone().ok_or(UpdateSetupError::NoRepository)?;
    let keys = smp_updater::TrustedKeys::load(&u.verifying_keys)?;
    Ok((
        smp_updater::Source {
            repository,
            api_url: u.api_url.clone(),
            current_version: VERSION.to_string(),
            target: smp_updater::target().to_string(),
        },
        keys,
    ))
}

/// Record that a new binary is installed and the process should restart into it.
pub(crate) fn mark_restart_pending() {
    RESTART_PENDING.store(true, Ordering::SeqCst);
}

/// Called by `start` after the server has drained: when an update was installed, hand over to
/// the new binary. Under systemd (`INVOCATION_ID` is set) exit with [`RESTART_EXIT_STATUS`],
/// which the unit restarts on; standalone, re-execute the binary with the same arguments.
/// Returns only when no update is pending or the re-exec failed (then the caller exits
/// normally and says so).
pub fn restart_if_updated() {
    if !RESTART_PENDING.load(Ordering::SeqCst) {
        return;
    }
    if std::env::var_os("INVOCATION_ID").is_some() {
        println!("Update installed; exiting with status {RESTART_EXIT_STATUS} for systemd to start the new binary.");
        std::process::exit(i32::from(RESTART_EXIT_STATUS));
    }
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            println!(
                "Update installed, but the binary path is unknown ({e}); start the server again."
            );
            return;
        }
    };
    // After the rename the running image is "<path> (deleted)"; the new file is at <path>.
    let exe = exe
        .to_str()
        .and_then(|s| s.strip_suffix(" (deleted)"))
        .map(std::path::PathBuf::from)
        .unwrap_or(exe);
    println!("Update installed; restarting {}", exe.display());
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    println!("Update installed, but restarting failed ({err}); start the server again.");
}
