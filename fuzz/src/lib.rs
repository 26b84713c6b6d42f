//! Helpers shared by the fuzz targets: how a target reads its version byte, and where the
//! targets that drive file readers put their file.

use std::path::PathBuf;

use smp_server::protocol::transmission::THParams;
use smp_server::protocol::version::Version;

/// The session ID every target and seed uses (v6 transmissions carry it and must match).
pub const SESSION_ID: [u8; 32] = [0x5a; 32];

/// Split a fuzz input into its version byte and the rest. Every version 0..=255 is allowed:
/// a forwarded command (PFWD/RFWD) carries a version the client chose, so the parsers meet
/// versions outside the negotiated range too.
pub fn split_version(data: &[u8]) -> Option<(Version, &[u8])> {
    let (&v, rest) = data.split_first()?;
    Some((Version::from(v), rest))
}

/// Framing parameters of a connection at `version` with [`SESSION_ID`].
pub fn params(version: Version) -> THParams {
    THParams {
        session_id: SESSION_ID.to_vec(),
        version,
    }
}

/// A per-process scratch path for targets that drive file readers (on tmpfs when there is one,
/// so a campaign does not wear a disk).
pub fn scratch(name: &str) -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let base = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("smp-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir.join(name)
}
