//! `[STORE_LOG] journal_fsync`: when the message journal forces its writes to disk.
//!
//! Our own key (the reference has no such setting); it only matters with
//! `store_messages = journal`. Every policy writes each journal record to the operating system
//! before the command is answered, so all of them survive `kill -9`; they differ in what
//! survives a power loss or kernel crash.

use std::fmt;

use super::read::Reader;
use super::ConfigError;

/// The journal's fsync policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JournalFsync {
    /// `always`: a record is fsynced before its command is answered (SEND's `OK`, ACK's reply).
    /// Concurrent commands share one fsync (group commit). Survives power loss.
    #[default]
    Always,
    /// `batch`: records are fsynced by a background flush every
    /// [`JournalFsync::BATCH_INTERVAL_MS`] milliseconds; a power loss may lose the last interval.
    Batch,
    /// `off`: never fsynced while running (only at compaction and shutdown); the kernel writes
    /// back when it wants. A power loss may lose recent records.
    Off,
}

impl JournalFsync {
    /// Interval of the background flush of the `batch` policy.
    pub const BATCH_INTERVAL_MS: u64 = 100;

    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        match r.raw("STORE_LOG", "journal_fsync") {
            None | Some("always") => Ok(JournalFsync::Always),
            Some("batch") => Ok(JournalFsync::Batch),
            Some("off") => Ok(JournalFsync::Off),
            Some(v) => Err(r.invalid(
                "STORE_LOG",
                "journal_fsync",
                v,
                "is not a journal fsync policy",
                "use journal_fsync = always (fsync before answering), batch (fsync every 100 ms) or off",
            )),
        }
    }
}

impl fmt::Display for JournalFsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JournalFsync::Always => "always",
            JournalFsync::Batch => "batch",
            JournalFsync::Off => "off",
        })
    }
}
