//! Finding the newest release, downloading its archive and checking its signature.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use self_update::backends::github;
use self_update::zipsign_api;

use crate::{Progress, Source, TrustedKeys, UpdateError};

/// The binary inside every release archive.
pub const BIN_NAME: &str = "smp-server";

/// The archive name for a version and target: `smp-server-<version>-<target>.tar.gz`.
/// The signature is bound to this exact name.
pub fn asset_name(version: &str, target: &str) -> String {
    format!("{BIN_NAME}-{version}-{target}.tar.gz")
}

/// A release newer than the running binary, with an archive for this target.
#[derive(Clone, Debug)]
pub struct Available {
    /// Its version (semver, no `v`).
    pub version: String,
    /// The archive's name.
    pub asset: String,
    /// Where to download it (the API asset URL; needs `Accept: application/octet-stream`).
    pub url: String,
}

/// A downloaded archive whose signature checked out, and the binary extracted from it.
#[derive(Debug)]
pub struct Verified {
    /// The release.
    pub release: Available,
    /// The extracted binary (in a temporary directory kept alive by `_dir`).
    pub binary: PathBuf,
    /// Index of the key that signed it.
    pub key_index: usize,
    _dir: tempfile::TempDir,
}

fn parse_version(v: &str) -> Result<semver::Version, UpdateError> {
    semver::Version::parse(v.trim_start_matches('v')).map_err(|_| UpdateError::BadVersion(v.into()))
}

/// Ask for the newest release; `Ok(Available)` only when it is strictly newer than the running
/// version and has an archive for this target. A pinned tag is never used, so a downgrade
/// cannot be requested through this API.
pub fn check(source: &Source) -> Result<Available, UpdateError> {
    let (owner, name) = source.owner_name()?;
    let current = parse_version(&source.current_version)?;
    let update = github::Update::configure()
        .repo_owner(owner)
        .repo_name(name)
        .api_base_url(source.api_url.trim_end_matches('/'))
        .bin_name(BIN_NAME)
        .target(source.target.as_str())
        .current_version(current.to_string())
        .build()
        .map_err(UpdateError::Fetch)?;
    let releases = update.get_latest_release().map_err(UpdateError::Fetch)?;
    let latest = releases.latest().ok_or(UpdateError::NoRelease)?;
    let latest_version = parse_version(latest.version())?;
    if latest_version <= current {
        return Err(UpdateError::NotNewer {
            latest: latest_version.to_string(),
            current: current.to_string(),
        });
    }
    let wanted = asset_name(&latest_version.to_string(), &source.target);
    let asset = latest
        .assets()
        .iter()
        .find(|a| a.name() == wanted)
        .ok_or_else(|| UpdateError::NoAsset {
            version: latest_version.to_string(),
            asset: wanted.clone(),
        })?;
    Ok(Available {
        version: latest_version.to_string(),
        asset: wanted,
        url: asset.download_url().to_string(),
    })
}

/// Ask for one release by tag (`v1.2.3` or `1.2.3`): an operator pinning a version, newer or
/// older than the running one (a deliberate downgrade is allowed; its archive is verified like
/// any other). Errors when the tag does not exist or has no archive for this target.
pub fn check_version(source: &Source, tag: &str) -> Result<Available, UpdateError> {
    let (owner, name) = source.owner_name()?;
    let wanted_version = parse_version(tag)?;
    let update = github::Update::configure()
        .repo_owner(owner)
        .repo_name(name)
        .api_base_url(source.api_url.trim_end_matches('/'))
        .bin_name(BIN_NAME)
        .target(source.target.as_str())
        .current_version(parse_version(&source.current_version)?.to_string())
        .build()
        .map_err(UpdateError::Fetch)?;
    let release = update
        .get_release_version(&format!("v{wanted_version}"))
        .map_err(UpdateError::Fetch)?;
    let version = parse_version(release.version())?;
    if version != wanted_version {
        return Err(UpdateError::BadVersion(release.version().to_string()));
    }
    let wanted = asset_name(&version.to_string(), &source.target);
    let asset = release
        .assets()
        .iter()
        .find(|a| a.name() == wanted)
        .ok_or_else(|| UpdateError::NoAsset {
            version: version.to_string(),
            asset: wanted.clone(),
        })?;
    Ok(Available {
        version: version.to_string(),
        asset: wanted,
        url: asset.download_url().to_string(),
    })
}

/// Verify a zipsign-signed `.tar.gz` whose published name is `asset` against `keys`.
/// Returns the index of the matching key.
pub fn verify_archive(path: &Path, asset: &str, keys: &TrustedKeys) -> Result<usize, UpdateError> {
    let mut file = File::open(path).map_err(|e| UpdateError::io("opening the archive", e))?;
    zipsign_api::verify::verify_tar(&mut file, keys.keys(), Some(asset.as_bytes())).map_err(|e| {
        UpdateError::Signature {
            asset: asset.to_string(),
            reason: e.to_string(),
        }
    })
}

fn progress_logger(asset: String) -> impl Fn(u64, Option<u64>) + Send + Sync + 'static {
    let last = Arc::new(AtomicU64::new(u64::MAX));
    move |done, total| {
        let Some(total) = total.filter(|t| *t > 0) else {
            return;
        };
        let tenth = done.saturating_mul(10) / total;
        if last.swap(tenth, Ordering::Relaxed) != tenth {
            tracing::info!("downloading {asset}: {}% of {total} bytes", tenth * 10);
        }
    }
}

/// Download the release archive under its own name into a temporary directory, verify its
/// signature, and extract the binary. Nothing outside the temporary directory is touched.
pub fn download_and_verify(
    release: &Available,
    keys: &TrustedKeys,
    progress: Progress,
) -> Result<Verified, UpdateError> {
    let dir = tempfile::Builder::new()
        .prefix("smp-update-")
        .tempdir()
        .map_err(|e| UpdateError::io("creating a temporary directory", e))?;
    if release.asset.contains('/') || release.asset.starts_with('.') {
        return Err(UpdateError::Extract {
            asset: release.asset.clone(),
            reason: "unsafe asset name".into(),
        });
    }
    let archive = dir.path().join(&release.asset);
    let file =
        File::create(&archive).map_err(|e| UpdateError::io("creating the download file", e))?;
    let mut dl = self_update::Download::from_url(&release.url);
    dl.request_header("Accept", "application/octet-stream");
    match progress {
        Progress::Bar => {
            dl.show_download_progress(true);
        }
        Progress::Log => {
            dl.progress_callback(progress_logger(release.asset.clone()));
        }
    }
    dl.download_to(file)
        .map_err(|source| UpdateError::Download {
            asset: release.asset.clone(),
            source,
        })?;
    let key_index = verify_archive(&archive, &release.asset, keys)?;
    let out = dir.path().join("extracted");
    std::fs::create_dir(&out)
        .map_err(|e| UpdateError::io("creating the extraction directory", e))?;
    self_update::Extract::from_source(&archive)
        .archive(self_update::ArchiveKind::Tar(Some(
            self_update::Compression::Gz,
        )))
        .extract_file(&out, BIN_NAME)
        .map_err(|e| UpdateError::Extract {
            asset: release.asset.clone(),
            reason: e.to_string(),
        })?;
    let binary = out.join(BIN_NAME);
    if !binary.is_file() {
        return Err(UpdateError::Extract {
            asset: release.asset.clone(),
            reason: format!("no file {BIN_NAME} in the archive"),
        });
    }
    Ok(Verified {
        release: release.clone(),
        binary,
        key_index,
        _dir: dir,
    })
}
