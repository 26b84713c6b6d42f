//! Moving messages between `smp-server-messages.log` and the journal (`smp-server journal`).
//!
//! Also the start-up wiring: [`open_for_config`] opens the journal configured in
//! `smp-server.ini` and restores its messages into the memory store.

use std::sync::Arc;

use super::{Journal, JournalError, JournalOptions, RestoreStats};
use crate::config::{Config, MessageStoreType};
use crate::store::memory::MemoryStore;

/// With `store_messages = journal`: open the journal, put its messages into `memory` (whose
/// queues must already be restored) and return it for the store to log into. `None` otherwise.
pub fn open_for_config(
    config: &Config,
    memory: &MemoryStore,
) -> Result<Option<Arc<Journal>>, JournalError> {
    if config.store_log.store_messages != MessageStoreType::Journal {
        return Ok(None);
    }
    let dir = config.paths.messages_journal_dir();
    let (journal, replay) =
        Journal::open(&dir, JournalOptions::new(config.store_log.journal_fsync))?;
    let stats = journal.restore_into(memory, replay)?;
    log_restored(&journal, stats);
    Ok(Some(Arc::new(journal)))
}

fn log_restored(j: &Journal, s: RestoreStats) {
    tracing::info!(
        "message journal {}: restored {} messages in {} queues (fsync: {:?})",
        j.dir().display(),
        s.messages,
        s.queues,
        j.opts.fsync
    );
    if s.orphaned > 0 {
        tracing::warn!(
            "message journal: dropped {} messages of queues that no longer exist",
            s.orphaned
        );
    }
}
