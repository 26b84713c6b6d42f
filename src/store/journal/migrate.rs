//! Moving messages between `smp-server-messages.log` and the journal (`smp-server journal`).
//!
//! Also the start-up wiring: [`open_for_config`] opens the journal configured in
//! `smp-server.ini` and restores its messages into the memory store.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::orphans::check_share;
use super::record::MAGIC;
use super::{
    shard_path, Journal, JournalError, JournalOptions, OrphanPolicy, QueueSource, Replay,
    RestoreStats, SHARDS,
};
use crate::config::{Config, MessageStoreType};
use crate::store::memory::MemoryStore;

/// Whether any shard in `dir` holds a record (more than its header).
pub fn has_records(dir: &Path) -> bool {
    (0..SHARDS)
        .any(|i| std::fs::metadata(shard_path(dir, i)).is_ok_and(|m| m.len() > MAGIC.len() as u64))
}

/// Refuse configurations and file sets in which the journal's messages would lose their
/// queues, before anything is opened or changed.
fn check_queues_kept(config: &Config, store_log_existed: bool) -> Result<(), JournalError> {
    let dir = config.paths.messages_journal_dir();
    if !config.store_log.enable {
        return Err(JournalError::Refused(format!(
            "[STORE_LOG] store_messages = journal needs enable = on: the journal {} holds only \
             messages; their queues are kept in the store log, so without it every journaled \
             message would lose its queue. Nothing was changed. Set enable = on in section \
             [STORE_LOG] of {}, then start again. To run without a store log, first move the \
             messages out: with enable = on run `smp-server journal export`, then set \
             store_messages = memory and enable = off.",
            dir.display(),
            config.paths.ini_file().display()
        )));
    }
    let has_messages = has_records(&dir) || super::reference::is_reference_layout(&dir);
    if !store_log_existed && has_messages && !config.start.allow_orphaned_messages {
        return Err(JournalError::Refused(format!(
            "the store log {} is missing, but the message journal {} holds messages: their \
             queues are in the store log. Nothing was changed. Restore the store log from a \
             backup (timed copies smp-server-store.log.<time> are made at each start) and \
             start again; or start once with `smp-server start --allow-orphaned-messages` to \
             move the messages aside into {}/smp-server-messages.orphaned.<time>.log and run \
             without their queues.",
            config.paths.store_log_file().display(),
            dir.display(),
            config.paths.log_dir().display()
        )));
    }
    Ok(())
}

/// With `store_queues = database`: convert a reference journal in place if needed, then read
/// the journal (created if missing). The queues are in the database, so no store log is needed.
pub fn open_for_database(config: &Config) -> Result<Opened, JournalError> {
    let dir = config.paths.messages_journal_dir();
    let opts = JournalOptions::new(config.store_log.journal_fsync);
    super::reference::convert::convert_if_needed(&dir, opts)?;
    Journal::open(&dir, opts)
}

/// The journal read at start, before its messages go into the store.
pub type Opened = (Journal, Replay);

/// Start-up step 1 with `store_messages = journal`, before the store log is opened: refuse a
/// configuration or file set in which the journal's messages would lose their queues, then
/// read the journal (a damaged record stops start-up here, before any file is changed).
/// `store_log_existed`: the store log (or a compaction's `.start` file) is there.
pub fn open_before_store_log(
    config: &Config,
    store_log_existed: bool,
) -> Result<Option<Opened>, JournalError> {
    if config.store_log.store_messages != MessageStoreType::Journal {
        return Ok(None);
    }
    check_queues_kept(config, store_log_existed)?;
    let dir = config.paths.messages_journal_dir();
    let opts = JournalOptions::new(config.store_log.journal_fsync);
    // The reference's journal is converted in place first (nothing lost, original kept).
    super::reference::convert::convert_if_needed(&dir, opts)?;
    Journal::open(&dir, opts).map(Some)
}

fn policy<'a>(config: &'a Config, deleted: &'a HashSet<Vec<u8>>) -> OrphanPolicy<'a> {
    OrphanPolicy {
        deleted,
        allow: config.start.allow_orphaned_messages,
        dir: config.paths.log_dir(),
        queues: QueueSource::StoreLog,
    }
}

/// Step 2, run on the replayed store log before it is compacted: the orphan share check
/// (see [`super::orphans`]); the `Err` text stops start-up with nothing changed.
pub fn check_orphans(
    config: &Config,
    opened: Option<&Opened>,
    memory: &MemoryStore,
    deleted: &HashSet<Vec<u8>>,
) -> Result<(), String> {
    let Some((journal, replay)) = opened else {
        return Ok(());
    };
    check_share(replay, memory, &policy(config, deleted), journal.dir()).map_err(|e| e.to_string())
}

/// Step 3: put the journal's messages into `memory` (whose queues are restored), set orphans
/// aside, start the compaction thread and return the journal for the store to log into.
pub fn restore(
    config: &Config,
    opened: Option<Opened>,
    memory: &MemoryStore,
    deleted: &HashSet<Vec<u8>>,
) -> Result<Option<Arc<Journal>>, JournalError> {
    let Some((mut journal, replay)) = opened else {
        return Ok(None);
    };
    let stats = journal.restore_into(memory, replay, policy(config, deleted))?;
    log_restored(&journal, &stats);
    journal.start_compactor();
    Ok(Some(Arc::new(journal)))
}

/// Log what a restore did (also used by the database+journal store).
pub(crate) fn log_restored(j: &Journal, s: &RestoreStats) {
    tracing::info!(
        "message journal {}: restored {} messages in {} queues (fsync: {:?})",
        j.dir().display(),
        s.messages,
        s.queues,
        j.opts.fsync
    );
    if s.deleted > 0 {
        tracing::info!(
            "message journal: cleared {} messages of queues the store log deleted",
            s.deleted
        );
    }
    if let Some(f) = &s.orphans_file {
        tracing::warn!(
            "message journal: {} messages of queues the store log does not have were moved \
             to {} (their queues are unknown, so they cannot be delivered)",
            s.orphaned,
            f.display()
        );
    }
}
