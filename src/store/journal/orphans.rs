//! Journaled messages whose queue the store log (or, with `store_queues = database`, the
//! database) does not have ("orphans") at start.
//!
//! Messages are never deleted only because their queue is unknown: a missing, stale or
//! emptied store log would otherwise wipe every message. Three cases:
//! - the queue was deleted by a `DELETE` line of the replayed store log (its journal `Clear`
//!   was lost to a crash or a failed write): the messages are cleared, as the deletion meant;
//! - the queue is unknown and such messages are a small share (at most
//!   [`MAX_ORPHAN_PERCENT`] % of the journal): they are written to
//!   `smp-server-messages.orphaned.<time>.log` (the messages-log line format, 0600, fsynced)
//!   before being cleared from the journal, and a warning names the file;
//! - more than that, and start-up was not told `--allow-orphaned-messages`: start stops with
//!   an error saying what to do, and nothing is changed.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::record::Record;
use super::shard::{io_err, sync_dir};
use super::{Journal, JournalError, Replay};
use crate::protocol::command::Party;
use crate::store::msgfile::encode_msg;
use crate::store::{Message, Store};

/// The largest share of journaled messages that may lack a queue before start refuses.
pub const MAX_ORPHAN_PERCENT: usize = 10;

/// How to treat orphans.
#[derive(Debug, Clone, Copy)]
pub struct OrphanPolicy<'a> {
    /// Queues the replayed store log deleted.
    pub deleted: &'a HashSet<Vec<u8>>,
    /// `--allow-orphaned-messages`: set any share aside instead of refusing.
    pub allow: bool,
    /// Where the orphans file is written (the log directory).
    pub dir: &'a Path,
    /// Where the queues come from, for the refusal's advice.
    pub queues: QueueSource,
}

/// Where the queues of the journaled messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueSource {
    /// The store log (`store_queues = memory`).
    StoreLog,
    /// PostgreSQL (`store_queues = database`).
    Database,
}

/// What restoring into a store did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreStats {
    /// Queues that got messages.
    pub queues: usize,
    /// Messages restored.
    pub messages: usize,
    /// Messages of queues the store log deleted, cleared from the journal.
    pub deleted: usize,
    /// Messages of unknown queues, set aside.
    pub orphaned: usize,
    /// The file they were set aside in.
    pub orphans_file: Option<PathBuf>,
}

/// The refusal text: how many, why it matters, what to do.
fn refusal(orphaned: usize, total: usize, p: &OrphanPolicy<'_>, dir: &Path) -> JournalError {
    let (holder, fix) = match p.queues {
        QueueSource::StoreLog => (
            "the store log does not have".to_string(),
            format!(
                "The store log may be missing, emptied or an old copy. Nothing was changed. \
                 Restore smp-server-store.log in {} from a backup (timed copies \
                 smp-server-store.log.<time> are made at each start) and start again",
                p.dir.display()
            ),
        ),
        QueueSource::Database => (
            "the database does not have".to_string(),
            "The database may be another one, another schema or an old copy. Nothing was \
             changed. Check db_connection and db_schema in section [STORE_LOG] of \
             smp-server.ini (or restore the database from a backup) and start again"
                .to_string(),
        ),
    };
    JournalError::Refused(format!(
        "message journal {}: {orphaned} of {total} journaled messages belong to queues that \
         {holder} (more than {MAX_ORPHAN_PERCENT} %). {fix}; or start once with \
         `smp-server start --allow-orphaned-messages` to move these messages aside into \
         {}/smp-server-messages.orphaned.<time>.log and run without their queues.",
        dir.display(),
        p.dir.display()
    ))
}

/// Write orphaned messages to a new file (0600, fsynced) in the messages-log line format.
fn write_orphans(dir: &Path, msgs: &[(&Vec<u8>, &Message)]) -> Result<PathBuf, JournalError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("smp-server-messages.orphaned.{now}.log"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path, "creating"))?;
    let mut w = std::io::BufWriter::new(f);
    for (rid, m) in msgs {
        let mut line = encode_msg(rid, m);
        line.push(b'\n');
        w.write_all(&line).map_err(io_err(&path, "writing"))?;
    }
    let f = w
        .into_inner()
        .map_err(|e| io_err(&path, "writing")(e.into_error()))?;
    f.sync_all().map_err(io_err(&path, "syncing"))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Refuse when more than [`MAX_ORPHAN_PERCENT`] % of the replayed messages have no queue in
/// `store` (and were not deleted by the store log), unless `policy.allow`. Changes nothing.
pub fn check_share(
    replay: &Replay,
    store: &dyn Store,
    policy: &OrphanPolicy<'_>,
    journal_dir: &Path,
) -> Result<(), JournalError> {
    if policy.allow {
        return Ok(());
    }
    let (mut total, mut orphaned) = (0, 0);
    for (rid, msgs) in &replay.msgs {
        total += msgs.len();
        if store.get_queue(Party::Recipient, rid).is_none() && !policy.deleted.contains(rid) {
            orphaned += msgs.len();
        }
    }
    if orphaned * 100 > total * MAX_ORPHAN_PERCENT {
        return Err(refusal(orphaned, total, policy, journal_dir));
    }
    Ok(())
}

impl Journal {
    /// Put replayed messages into the queues of `store` (which must already hold the queues,
    /// e.g. from the store log), dealing with orphans as the module says.
    pub fn restore_into(
        &self,
        store: &dyn Store,
        replay: Replay,
        policy: OrphanPolicy<'_>,
    ) -> Result<RestoreStats, JournalError> {
        check_share(&replay, store, &policy, self.dir())?;
        let mut stats = RestoreStats::default();
        let (mut found, mut deleted, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
        for (rid, msgs) in replay.msgs {
            match store.get_queue(Party::Recipient, &rid) {
                Some(q) => found.push((q, msgs)),
                None if policy.deleted.contains(&rid) => deleted.push((rid, msgs)),
                None => unknown.push((rid, msgs)),
            }
        }
        let orphaned: usize = unknown.iter().map(|(_, m)| m.len()).sum();
        if orphaned > 0 {
            let list: Vec<(&Vec<u8>, &Message)> = unknown
                .iter()
                .flat_map(|(rid, ms)| ms.iter().map(move |m| (rid, m)))
                .collect();
            stats.orphans_file = Some(write_orphans(policy.dir, &list)?);
            stats.orphaned = orphaned;
        }
        // Cleared only now: the orphans are in their file, fsynced.
        for (rid, msgs) in deleted {
            stats.deleted += msgs.len();
            self.append(&Record::Clear { rid })?;
        }
        for (rid, _) in unknown {
            self.append(&Record::Clear { rid })?;
        }
        if stats.deleted + stats.orphaned > 0 {
            self.sync_all()?;
        }
        for (q, msgs) in found {
            let mut s = q.lock();
            let full = matches!(msgs.back(), Some(Message::Quota { .. }));
            stats.queues += 1;
            stats.messages += msgs.len();
            s.msgs.replace(msgs);
            s.set_can_write(!full);
        }
        Ok(stats)
    }
}
