//! Moving messages between `smp-server-messages.log` and the journal (`smp-server journal`).
//!
//! Also the start-up wiring: [`open_for_config`] opens the journal configured in
//! `smp-server.ini` and restores its messages into the memory store.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::record::MAGIC;
use super::{
    shard_path, Journal, JournalError, JournalOptions, OrphanPolicy, RestoreStats, SHARDS,
};
use crate::config::{Config, MessageStoreType};
use crate::store::memory::MemoryStore;

/// What start-up learnt from the store log before the journal is opened.
#[derive(Debug, Clone, Copy)]
pub struct StoreLogFacts<'a> {
    /// The store log (or a compaction's `.start` file) existed before start-up touched it.
    pub existed: bool,
    /// Queues its `DELETE` lines deleted.
    pub deleted: &'a HashSet<Vec<u8>>,
}

/// Whether any shard in `dir` holds a record (more than its header).
pub fn has_records(dir: &Path) -> bool {
    (0..SHARDS)
        .any(|i| std::fs::metadata(shard_path(dir, i)).is_ok_and(|m| m.len() > MAGIC.len() as u64))
}

/// Refuse configurations and file sets in which the journal's messages would lose their
/// queues, before anything is opened or changed.
fn check_queues_kept(config: &Config, facts: &StoreLogFacts<'_>) -> Result<(), JournalError> {
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
    if !facts.existed && has_records(&dir) && !config.start.allow_orphaned_messages {
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

/// With `store_messages = journal`: open the journal, put its messages into `memory` (whose
/// queues must already be restored) and return it for the store to log into. `None` otherwise.
pub fn open_for_config(
    config: &Config,
    memory: &MemoryStore,
    facts: StoreLogFacts<'_>,
) -> Result<Option<Arc<Journal>>, JournalError> {
    if config.store_log.store_messages != MessageStoreType::Journal {
        return Ok(None);
    }
    check_queues_kept(config, &facts)?;
    let dir = config.paths.messages_journal_dir();
    let (journal, replay) =
        Journal::open(&dir, JournalOptions::new(config.store_log.journal_fsync))?;
    let policy = OrphanPolicy {
        deleted: facts.deleted,
        allow: config.start.allow_orphaned_messages,
        dir: config.paths.log_dir(),
    };
    let stats = journal.restore_into(memory, replay, policy)?;
    log_restored(&journal, &stats);
    Ok(Some(Arc::new(journal)))
}

fn log_restored(j: &Journal, s: &RestoreStats) {
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
