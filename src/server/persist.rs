//! What survives a restart: the store log (queues), undelivered messages and pending
//! notifications saved at shutdown and restored at start, as the reference does.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::core::PendingNtf;
use super::state::ServerState;
use crate::config::Config;
use crate::protocol::command::Party;
use crate::store::durable::DurableStore;
use crate::store::journal::migrate as journal_start;
use crate::store::memory::MemoryStore;
use crate::store::msgfile::{encode_msg, encode_ntf, parse_msg, parse_ntf, NtfLine};
use crate::store::storelog_file::{open_store_log_checked, with_suffix, StoreLogWriter};
use crate::store::{Message, QueueLog, Store};
use crate::sync::lock;

/// A persistence failure at start or stop; the text names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The store log could not be restored or opened.
    #[error(transparent)]
    StoreLog(#[from] crate::store::storelog_file::StoreLogError),
    /// The message journal could not be opened or read.
    #[error(transparent)]
    Journal(#[from] crate::store::journal::JournalError),
    /// The PostgreSQL store could not be opened.
    #[error(transparent)]
    Database(#[from] crate::store::postgres::db::DbError),
    /// The database+journal store could not be opened.
    #[error(transparent)]
    DatabaseJournal(#[from] crate::store::pg_journal::OpenError),
    /// A messages or notifications file could not be read or written.
    #[error("{path}: {what}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong and what to do.
        what: String,
    },
}

fn file_err(path: &Path, what: impl std::fmt::Display) -> PersistError {
    PersistError::File {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// The store and the files it is saved to.
pub struct Persistence {
    /// The store the server uses.
    pub store: Arc<DurableStore>,
    /// The store log writer, if `[STORE_LOG] enable = on`.
    pub store_log: Option<Arc<StoreLogWriter>>,
    /// The message journal, with `store_messages = journal`.
    pub journal: Option<Arc<crate::store::journal::Journal>>,
    /// With `store_queues = database` (then `store` stays empty): the PostgreSQL store, or
    /// with `store_messages = journal` the database+journal store.
    pub db: Option<Arc<dyn Store>>,
    /// Client services and their queues (restored from the store log, appended to it).
    pub services: Arc<crate::store::services::ServiceStore>,
    messages_file: Option<PathBuf>,
    ntfs_file: Option<PathBuf>,
    /// `start --skip-warnings`: restore despite a bad last line or messages of deleted queues.
    skip_warnings: bool,
    /// The store log was left uncompacted at start ([`Persistence::compaction_service`]).
    compact_later: bool,
}

/// The size from which the store log is compacted after start-up rather than before
/// ([`crate::store::storelog_file::DEFER_COMPACTION_BYTES`]; `SMP_SERVER_DEFER_COMPACTION_BYTES`
/// overrides it, for tests), or `None` to compact before serving: in maintenance mode, which
/// exits before serving, and with `--compact-log`.
fn defer_compaction(config: &Config) -> Option<u64> {
    if config.start.maintenance || config.start.compact_log {
        return None;
    }
    let env = std::env::var("SMP_SERVER_DEFER_COMPACTION_BYTES").ok();
    Some(
        env.and_then(|v| v.parse().ok())
            .unwrap_or(crate::store::storelog_file::DEFER_COMPACTION_BYTES),
    )
}

/// Counts reported after restoring.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreStats {
    /// Items restored.
    pub stored: usize,
    /// Items dropped because they expired.
    pub expired: usize,
    /// Items whose queue no longer exists.
    pub no_queue: usize,
}

impl Persistence {
    /// Build the store from the configuration: replay and compact the store log if enabled.
    pub fn open(config: &Config) -> Result<Self, PersistError> {
        let log_dir = config.paths.log_dir();
        crate::fsmode::restrict_state(log_dir, config.web.static_path.as_deref()).map_err(|e| {
            file_err(
                log_dir,
                format!("cannot narrow the modes of state files: {e}"),
            )
        })?;
        if config.store_log.store_queues == crate::config::QueueStoreType::Database {
            let pg = Arc::new(crate::store::postgres::setup::open_for_config(config)?);
            let services = crate::store::Store::services(pg.as_ref()).unwrap_or_default();
            let (db, journal): (Arc<dyn Store>, _) =
                if config.store_log.store_messages == crate::config::MessageStoreType::Journal {
                    let (st, j) = crate::store::pg_journal::PgJournalStore::open(config, pg)?;
                    (Arc::new(st), Some(j))
                } else {
                    (pg, None)
                };
            return Ok(Persistence {
                store: Arc::new(DurableStore::new(MemoryStore::new(), None, None)),
                store_log: None,
                journal,
                db: Some(db),
                // Kept in the database's `services` table and queue columns.
                services,
                messages_file: None,
                ntfs_file: config
                    .store_log
                    .restore_messages_enabled()
                    .then(|| config.paths.ntfs_file()),
                skip_warnings: config.start.skip_warnings,
                compact_later: false,
            });
        }
        let mem = MemoryStore::new();
        let path = config.paths.store_log_file();
        let existed = path.exists() || with_suffix(&path, ".start").exists();
        // The journal is read (and refused if damaged) before the store log is compacted.
        let opened = journal_start::open_before_store_log(config, existed)?;
        let mut deleted = std::collections::HashSet::new();
        let mut services = None;
        let mut compact_later = false;
        let store_log = if config.store_log.enable {
            let check = |m: &MemoryStore, s: &crate::store::storelog_file::ReplayStats| {
                journal_start::check_orphans(config, opened.as_ref(), m, &s.deleted)
            };
            let (w, stats) = open_store_log_checked(&path, &mem, check, defer_compaction(config))?;
            compact_later = stats.compaction_deferred;
            tracing::info!(
                "store log restored: {} lines, {} queues, {} records not applied",
                stats.lines,
                mem.queue_count(),
                stats.not_applied
            );
            deleted = stats.deleted;
            let w = Arc::new(w);
            services = Some(stats.services);
            Some(w)
        } else {
            None
        };
        // The journal restores into the queues the store log just restored.
        let journal = journal_start::restore(config, opened, &mem, &deleted)?;
        let mlog = journal
            .clone()
            .map(|j| j as Arc<dyn crate::store::MessageLog>);
        let restore = config.store_log.restore_messages_enabled();
        let qlog = store_log.clone().map(|w| w as Arc<dyn QueueLog>);
        let nid_of = |rid: &[u8]| {
            mem.get_queue(Party::Recipient, rid)
                .and_then(|q| q.rec().ok())
                .and_then(|r| r.body.notifier.map(|n| n.notifier_id))
        };
        let services = Arc::new(crate::store::services::ServiceStore::new(
            services.unwrap_or_default(),
            store_log.clone(),
            &nid_of,
        ));
        Ok(Persistence {
            store: Arc::new(DurableStore::new(mem, qlog, mlog)),
            services,
            store_log,
            // With the journal, messages are never saved to or restored from the messages file.
            messages_file: (restore && journal.is_none()).then(|| config.paths.messages_file()),
            journal,
            db: None,
            ntfs_file: restore.then(|| config.paths.ntfs_file()),
            skip_warnings: config.start.skip_warnings,
            compact_later,
        })
    }

    /// The store log compaction that start-up left for later (a large log, see
    /// [`crate::store::storelog_file::compact_live`]), as a service that runs it once on a
    /// blocking thread and stops it at shutdown; `None` if there is none to do.
    pub fn compaction_service(&self) -> Option<Box<dyn crate::service::Service>> {
        let w = self.store_log.clone().filter(|_| self.compact_later)?;
        let store = self.store.clone();
        let services = self.services.clone();
        Some(crate::service::from_fn(
            "store log compaction",
            move |shutdown, mut ready| async move {
                ready.ready();
                let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let c = cancel.clone();
                let mut job = tokio::task::spawn_blocking(move || {
                    let snapshot = || services.snapshot().unwrap_or_default();
                    crate::store::storelog_file::compact_live(&w, &store, snapshot, &c)
                });
                let res = tokio::select! {
                    r = &mut job => r,
                    _ = shutdown.cancelled() => {
                        cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                        job.await
                    }
                };
                match res {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!("{e}"),
                    Err(e) => tracing::error!("store log compaction failed: {e}"),
                }
            },
        ))
    }

    /// The store the server runs on: the database's, or the in-memory one with its logs.
    pub fn serving_store(&self) -> Arc<dyn Store> {
        match &self.db {
            Some(db) => db.clone(),
            None => self.store.clone(),
        }
    }

    /// A store with given files (tests and tools).
    pub fn with_files(
        store: Arc<DurableStore>,
        messages_file: Option<PathBuf>,
        ntfs_file: Option<PathBuf>,
    ) -> Self {
        Persistence {
            store,
            store_log: None,
            journal: None,
            db: None,
            services: Default::default(),
            messages_file,
            ntfs_file,
            skip_warnings: false,
            compact_later: false,
        }
    }

    /// Restore saved messages and notifications into `state`, then rename the files to `.bak`.
    pub fn restore(&self, state: &ServerState, now: i64) -> Result<(), PersistError> {
        if let Some(f) = self.messages_file.as_ref().filter(|f| f.exists()) {
            let old = state.settings.message_ttl.map(|t| now - t);
            let s = restore_messages(f, self.store.inner(), old, self.skip_warnings)?;
            tracing::info!(
                "messages restored: {}, expired: {}, without queue: {}",
                s.stored,
                s.expired,
                s.no_queue
            );
        }
        if let Some(f) = self.ntfs_file.as_ref().filter(|f| f.exists()) {
            let s = restore_ntfs(f, state, now - state.settings.ntf_ttl)?;
            tracing::info!(
                "notifications restored: {}, expired: {}",
                s.stored,
                s.expired
            );
        }
        Ok(())
    }

    /// Save as [`Persistence::save`] does; if that fails (a full disk, a permission
    /// changed) log the error naming the file and try again every [`SAVE_RETRY`] until it
    /// works, so the messages still held in memory are not dropped. A second SIGINT or
    /// SIGTERM gives up and returns the error.
    pub async fn save_until_done(&self, state: &ServerState) -> Result<(), PersistError> {
        let mut give_up = GiveUp::new();
        loop {
            match self.save(state) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::error!(
                        "saving server state failed: {e}. Trying again every {} s; stop the \
                         server again (SIGINT/SIGTERM) to give up and lose what is unsaved",
                        SAVE_RETRY.as_secs()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(SAVE_RETRY) => {}
                        _ = give_up.signalled() => {
                            tracing::error!("gave up saving server state");
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Save undelivered messages and pending notifications (at shutdown).
    pub fn save(&self, state: &ServerState) -> Result<(), PersistError> {
        if let Some(w) = &self.store_log {
            if let Err(e) = w.sync() {
                tracing::error!("syncing the store log failed: {e}");
            }
        }
        if let Some(j) = &self.journal {
            j.sync_all()?;
        }
        if let Some(f) = &self.messages_file {
            let n = save_messages(f, self.store.as_ref())?;
            tracing::info!("messages saved: {n}");
        } else if self.journal.is_none() {
            tracing::info!("undelivered messages are not saved");
        }
        if let Some(f) = &self.ntfs_file {
            let n = save_ntfs(f, state)?;
            tracing::info!("notifications saved: {n}");
        }
        Ok(())
    }
}

/// How often a failed save at shutdown is tried again.
pub const SAVE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// SIGINT/SIGTERM listeners installed while a failed save is retried.
struct GiveUp {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl GiveUp {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        GiveUp {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn signalled(&mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => {}
            _ = recv(&mut self.int) => {}
        }
    }
}

/// The reference's advice when a warning stops start-up.
const SKIP_HINT: &str = "start with --skip-warnings option to ignore this error";

/// Read a line file, calling `each` per non-empty line. A bad line before the last stops
/// with an error naming the line; a bad last line (a save cut short) is skipped with a
/// warning when `skip_last` is set, else it stops start-up too (the reference's
/// `--skip-warnings` rule for saved messages).
fn for_lines(
    path: &Path,
    skip_last: bool,
    mut each: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), PersistError> {
    let f = File::open(path).map_err(|e| file_err(path, format!("cannot open: {e}")))?;
    let mut r = BufReader::new(f);
    let mut line = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut no = 0;
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| file_err(path, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        if let Some((l, e)) = pending.take() {
            return Err(file_err(
                path,
                format!(
                    "line {l}: {e}. The file is corrupt; fix or delete that line and start \
                     again (nothing was restored or renamed)"
                ),
            ));
        }
        no += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.is_empty() {
            continue;
        }
        if let Err(e) = each(text) {
            pending = Some((no, e));
        }
    }
    if let Some((l, e)) = pending {
        if !skip_last {
            return Err(file_err(
                path,
                format!("last line {l} is incomplete ({e}); {SKIP_HINT}"),
            ));
        }
        tracing::warn!(
            "{}: last line {l} is incomplete ({e}) and was skipped",
            path.display()
        );
    }
    Ok(())
}

/// Restore messages saved by [`save_messages`] or by the reference. As the reference, a bad
/// last line or messages of queues that no longer exist stop start-up unless `skip_warnings`
/// (`start --skip-warnings`); then they are logged and dropped.
pub fn restore_messages(
    path: &Path,
    st: &MemoryStore,
    old: Option<i64>,
    skip_warnings: bool,
) -> Result<RestoreStats, PersistError> {
    // Parse and check everything first so a refused file changes nothing.
    let mut parsed = Vec::new();
    for_lines(path, skip_warnings, |l| {
        parsed.push(parse_msg(l).map_err(|e| e.to_string())?);
        Ok(())
    })?;
    if !skip_warnings {
        let missing = parsed
            .iter()
            .filter(|(rid, _)| st.get_queue(Party::Recipient, rid).is_none())
            .count();
        if missing > 0 {
            return Err(file_err(
                path,
                format!("{missing} saved messages belong to queues that do not exist; {SKIP_HINT}"),
            ));
        }
    }
    let mut s = RestoreStats::default();
    for (rid, m) in parsed {
        let Some(q) = st.get_queue(Party::Recipient, &rid) else {
            s.no_queue += 1;
            continue;
        };
        let mut qs = q.lock();
        match m {
            Message::Msg { ts, .. } if old.is_some_and(|o| ts < o) => s.expired += 1,
            m @ Message::Msg { .. } => {
                qs.msgs.with_mut(|d| d.push_back(m));
                s.stored += 1;
            }
            m @ Message::Quota { .. } => {
                // The queue was full when saved: it stays full until emptied.
                qs.msgs.with_mut(|d| d.push_back(m));
                qs.set_can_write(false);
            }
        }
    }
    if s.no_queue > 0 {
        tracing::warn!(
            "{} saved messages belong to queues that no longer exist",
            s.no_queue
        );
    }
    std::fs::rename(path, with_suffix(path, ".bak"))
        .map_err(|e| file_err(path, format!("cannot rename to .bak: {e}")))?;
    Ok(s)
}

fn write_lines(path: &Path, lines: impl Iterator<Item = Vec<u8>>) -> Result<usize, PersistError> {
    let tmp = with_suffix(path, ".tmp");
    let r = write_lines_via(path, &tmp, lines);
    if r.is_err() {
        // The previous file is untouched; drop the partial copy (it only takes space).
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn write_lines_via(
    path: &Path,
    tmp: &Path,
    lines: impl Iterator<Item = Vec<u8>>,
) -> Result<usize, PersistError> {
    let hint = |e: std::io::Error| {
        let fix = match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                "the disk is full: free space on it"
            }
            std::io::ErrorKind::PermissionDenied => {
                "make the log directory writable by the user running smp-server (chown/chmod)"
            }
            std::io::ErrorKind::ReadOnlyFilesystem => "mount the log directory read-write",
            _ => "check the disk and the log directory",
        };
        file_err(
            path,
            format!(
                "cannot save ({e}); {fix}. The previous file (if any) is unchanged and \
                 the data is still in memory"
            ),
        )
    };
    let f = crate::fsmode::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(hint)?;
    crate::fsmode::restrict_file(&f).map_err(hint)?;
    let mut w = BufWriter::new(f);
    let mut n = 0;
    for mut l in lines {
        l.push(b'\n');
        w.write_all(&l).map_err(hint)?;
        n += 1;
    }
    let f = w.into_inner().map_err(|e| hint(e.into_error()))?;
    f.sync_all().map_err(hint)?;
    std::fs::rename(tmp, path).map_err(hint)?;
    Ok(n)
}

/// Save every queue's messages, oldest first, as the reference's `v3` lines.
pub fn save_messages(path: &Path, st: &dyn Store) -> Result<usize, PersistError> {
    let mut lines = Vec::new();
    for q in st.all_queues() {
        let s = q.lock();
        if s.deleted() {
            continue;
        }
        for m in s.msgs.iter() {
            lines.push(encode_msg(q.recipient_id(), m));
        }
    }
    write_lines(path, lines.into_iter())
}

/// Save pending notifications, oldest first per notifier.
pub fn save_ntfs(path: &Path, state: &ServerState) -> Result<usize, PersistError> {
    let pending = lock(&state.core.pending_ntfs);
    let mut lines = Vec::new();
    for (nid, ntfs) in pending.iter() {
        for n in ntfs {
            lines.push(encode_ntf(&NtfLine {
                notifier_id: nid.clone(),
                msg_id: n.msg_id.clone(),
                ts: n.ts,
                nonce: n.nonce,
                enc_meta: n.enc_meta.clone(),
            }));
        }
    }
    drop(pending);
    write_lines(path, lines.into_iter())
}

/// Restore pending notifications, dropping those older than `old`.
pub fn restore_ntfs(
    path: &Path,
    state: &ServerState,
    old: i64,
) -> Result<RestoreStats, PersistError> {
    let mut parsed = Vec::new();
    for_lines(path, true, |l| {
        parsed.push(parse_ntf(l).map_err(|e| e.to_string())?);
        Ok(())
    })?;
    let mut s = RestoreStats::default();
    let mut pending = lock(&state.core.pending_ntfs);
    for n in parsed {
        if n.ts < old {
            s.expired += 1;
            continue;
        }
        pending.entry(n.notifier_id).or_default().push(PendingNtf {
            nonce: n.nonce,
            enc_meta: n.enc_meta,
            ts: n.ts,
            msg_id: n.msg_id,
        });
        s.stored += 1;
    }
    drop(pending);
    std::fs::rename(path, with_suffix(path, ".bak"))
        .map_err(|e| file_err(path, format!("cannot rename to .bak: {e}")))?;
    Ok(s)
}

/// The control port's `save` (the reference's `saveServer False` while running): write the
/// undelivered messages (unless the journal already holds them) and pending notifications to
/// their files now, as at a stop. The server keeps running; the next start restores them.
pub fn save_now(config: &Config, state: &ServerState) -> Result<(), PersistError> {
    let sl = &config.store_log;
    if !sl.restore_messages_enabled() {
        return Ok(());
    }
    if sl.store_messages != crate::config::MessageStoreType::Journal {
        let n = save_messages(&config.paths.messages_file(), state.store.as_ref())?;
        tracing::info!("messages saved: {n}");
    }
    let n = save_ntfs(&config.paths.ntfs_file(), state)?;
    tracing::info!("notifications saved: {n}");
    Ok(())
}
