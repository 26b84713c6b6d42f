//! Signed self-update of `smp-server` from GitHub releases (or a mirror with the same API).
//!
//! The steps, each of which may refuse: find the newest release, refuse anything not strictly
//! newer than the running version, download the asset `smp-server-<version>-<target>.tar.gz`,
//! verify its zipsign (ed25519) signature against [`TrustedKeys`] (bound to the asset name),
//! extract the binary, run it with `--version` and check it reports the release's version, then
//! swap it in with a rename, keeping the old binary as `<binary>.previous` for [`rollback`].
//! Until the final rename nothing at the binary's path changes, so a failed update leaves the
//! installed binary byte-identical.
//!
//! All calls block (HTTP through `ureq`): call them from `spawn_blocking` inside tokio.

mod install;
mod keys;
mod release;

use std::path::PathBuf;

pub use install::{
    confirm_started, install_binary, pending_path, previous_path, rollback, smoke_test,
};
pub use keys::{parse_key, TrustedKeys};
pub use release::{
    asset_name, check, check_version, download_and_verify, verify_archive, Available, Verified,
};

/// Exit status with which `smp-server` ends after installing an update; the systemd unit lists
/// it in `RestartForceExitStatus=` so the new binary starts.
pub const RESTART_EXIT_STATUS: u8 = 42;

/// The GitHub API, used unless a mirror is configured.
pub const GITHUB_API: &str = "https://api.github.com";

/// The release channel.
pub const DEFAULT_REPOSITORY: &str = "simplex-chat/simplexmq";

/// Where to look for releases and what we are.
#[derive(Clone, Debug)]
pub struct Source {
    /// `owner/name` on GitHub (or on the mirror).
    pub repository: String,
    /// Base URL of a GitHub-compatible API, e.g. `https://api.github.com`.
    pub api_url: String,
    /// The running version (semver, no leading `v`).
    pub current_version: String,
    /// The target triple the assets are named after.
    pub target: String,
}

impl Source {
    /// `(owner, name)` of the repository.
    fn owner_name(&self) -> Result<(&str, &str), UpdateError> {
        match self.repository.split_once('/') {
            Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok((o, n)),
            _ => Err(UpdateError::BadRepository(self.repository.clone())),
        }
    }
}

/// How progress is shown while downloading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar (an operator at a terminal).
    Bar,
    /// Log lines every 10% (a service).
    Log,
}

/// Why an update was not done. Each message says what happened and that nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No key to verify with: updating without verification is never done.
    #[error("no release verifying key is configured in this build or in [UPDATE] verifying_keys; refusing to install an unverifiable update")]
    NoKeys,
    /// A configured or compiled-in key cannot be used.
    #[error("verifying key '{key}' {problem}; it must be the base64 of a 32-byte ed25519 public key (see docs/releases.md)")]
    BadKey {
        /// The key text.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// `repository` is not `owner/name`.
    #[error("repository '{0}' is not in the form owner/name")]
    BadRepository(String),
    /// The release server could not be asked.
    #[error("cannot fetch the release list: {0}")]
    Fetch(#[source] self_update::errors::Error),
    /// The repository has no release.
    #[error("the repository has no release")]
    NoRelease,
    /// A version string is not semver.
    #[error("version '{0}' is not a semantic version")]
    BadVersion(String),
    /// The newest release is not newer than the running binary.
    #[error("the newest release {latest} is not newer than the running version {current}; nothing to do")]
    NotNewer {
        /// Latest release version.
        latest: String,
        /// Running version.
        current: String,
    },
    /// The release has no archive for this machine.
    #[error("release {version} has no asset {asset}")]
    NoAsset {
        /// Release version.
        version: String,
        /// The asset name looked for.
        asset: String,
    },
    /// Downloading the archive failed.
    #[error("download of {asset} failed: {source}")]
    Download {
        /// Asset name.
        asset: String,
        /// The error.
        #[source]
        source: self_update::errors::Error,
    },
    /// The archive is not signed by any trusted key (tampered, unsigned, or another signer).
    #[error("signature check of {asset} failed ({reason}); the archive is tampered, unsigned or signed by an untrusted key")]
    Signature {
        /// Asset name.
        asset: String,
        /// What zipsign reported.
        reason: String,
    },
    /// The archive does not hold a usable binary.
    #[error("cannot extract smp-server from {asset}: {reason}")]
    Extract {
        /// Asset name.
        asset: String,
        /// What went wrong.
        reason: String,
    },
    /// The new binary did not run or reported another version.
    #[error("the new binary failed its smoke test: {0}")]
    SmokeTest(String),
    /// There is no previous binary to roll back to.
    #[error("no previous binary at {}: nothing to roll back to", .0.display())]
    NoPrevious(PathBuf),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl UpdateError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        UpdateError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The target triple this binary was built for; release assets are named after it.
pub fn target() -> &'static str {
    self_update::get_target()
}
