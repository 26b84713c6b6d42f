//! `smp-server journal import|export|delete` and the start-up check of the message storage
//! files, with the reference's messages.
//!
//! `import` moves `smp-server-messages.log` into a new journal directory; `export` writes the
//! journal's messages to `smp-server-messages.log` (the journal stays, as in the reference);
//! `delete` removes the journal directory. Our journal files are our own format; `export` also
//! reads a reference server's `messages/` directory in place (as the reference's export would),
//! and `start` converts one into ours.

use std::collections::HashSet;
use std::path::Path;

use super::args::StoreCmd;
use super::console::Console;
use super::CliError;
use crate::config::{Config, MessageStoreType, Paths, QueueStoreType};
use crate::protocol::command::Party;
use crate::store::journal::{reference, Journal, JournalOptions, OrphanPolicy, QueueSource};
use crate::store::memory::MemoryStore;
use crate::store::{Message, Store};

/// Refuse to start when the message files on disk do not match `store_messages`.
pub fn check_msg_store_mode(c: &Config) -> Result<(), CliError> {
    let file = c.paths.messages_file();
    let dir = c.paths.messages_journal_dir();
    let (file_exists, dir_exists) = (file.exists(), dir.is_dir());
    if file_exists && dir_exists {
        return Err(both_present(&file, &dir));
    }
    match c.store_log.store_messages {
        MessageStoreType::Journal if file_exists => Err(CliError::Message(format!(
            "Error: store_messages is `journal` with {} file present.\nSet store_messages to `memory` or use `smp-server journal export` to migrate.",
            file.display()
        ))),
        MessageStoreType::Journal if !dir_exists => {
            println!(
                "store_messages is `journal`, {} directory will be created.",
                dir.display()
            );
            Ok(())
        }
        MessageStoreType::Memory if dir_exists && reference::is_reference_layout(&dir) => {
            Err(CliError::Message(format!(
                "Error: store_messages is `memory` with {} directory present (the reference smp-server's journal).\nSet store_messages to `journal` (it is converted at start, nothing is lost) or use `smp-server journal export` to move its messages to {}.",
                dir.display(),
                file.display()
            )))
        }
        MessageStoreType::Memory if dir_exists => Err(CliError::Message(format!(
            "Error: store_messages is `memory` with {} directory present.\nSet store_messages to `journal` or use `smp-server journal import` to migrate.",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

fn both_present(file: &Path, dir: &Path) -> CliError {
    CliError::Message(format!(
        "Error: both {} file and {} directory are present.\nConfigure memory storage.",
        file.display(),
        dir.display()
    ))
}

/// Run `journal <cmd>`.
pub fn run(cmd: StoreCmd, paths: &Paths) -> Result<(), CliError> {
    super::require_initialized(paths)?;
    let config = Config::load_from(paths.clone())?;
    let file = paths.messages_file();
    let dir = paths.messages_journal_dir();
    let (file_exists, dir_exists) = (file.exists(), dir.is_dir());
    match cmd {
        StoreCmd::Import => {
            if file_exists && dir_exists {
                return Err(both_present(&file, &dir));
            }
            if dir_exists {
                return Err(CliError::Message(format!(
                    "{} directory already exists.",
                    dir.display()
                )));
            }
            if !file_exists {
                return Err(CliError::Message(format!(
                    "{} file does not exist.",
                    file.display()
                )));
            }
            let db = queue_db(&config)?;
            Console::stdin().confirm(
                &format!(
                    "WARNING: message log file {} will be imported to journal directory {}",
                    file.display(),
                    dir.display()
                ),
                "Messages not imported",
            )?;
            let memory = match &db {
                Some(db) => crate::store::postgres::transfer::load_queues(db)
                    .map_err(super::database::db_err)?,
                None => load_queues(&config)?.0,
            };
            let imported = import_messages_log(&config, &memory)?;
            // Written under another name first, so a crash never leaves half a journal.
            let tmp = dir.with_extension("importing");
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp)
                    .map_err(|e| CliError::io(format!("deleting {}", tmp.display()), e))?;
            }
            let (journal, _) =
                Journal::open(&tmp, JournalOptions::new(config.store_log.journal_fsync))
                    .map_err(journal_err)?;
            let n = journal.write_all_from(&memory).map_err(journal_err)?;
            drop(journal);
            std::fs::rename(&tmp, &dir).map_err(|e| {
                CliError::io(
                    format!("renaming {} to {}", tmp.display(), dir.display()),
                    e,
                )
            })?;
            // The source is kept as a backup; it must not be next to the journal at start.
            let bak = file.with_extension("log.bak");
            if file.exists() {
                std::fs::rename(&file, &bak).map_err(|e| {
                    CliError::io(
                        format!("renaming {} to {}", file.display(), bak.display()),
                        e,
                    )
                })?;
            }
            println!("Import completed");
            println!(
                "Messages: {n} imported ({imported} read from {}, kept as {})",
                file.display(),
                bak.display()
            );
            println!(
                "{}",
                match config.store_log.store_messages {
                    MessageStoreType::Journal => "store_messages set to `journal`",
                    MessageStoreType::Memory =>
                        "store_messages set to `memory`, update it to `journal` in INI file",
                    MessageStoreType::Database =>
                        "store_messages set to `database`, update it to `journal` in INI file",
                }
            );
            Ok(())
        }
        StoreCmd::Export => {
            if file_exists && dir_exists {
                return Err(both_present(&file, &dir));
            }
            if file_exists {
                return Err(CliError::Message(format!(
                    "{} file already exists.",
                    file.display()
                )));
            }
            let sl = &config.store_log;
            if sl.store_queues == QueueStoreType::Database
                && sl.store_messages == MessageStoreType::Database
            {
                return Err(CliError::Message(
                    "Messages can be exported with `database export --table messages`.".into(),
                ));
            }
            let db = queue_db(&config)?;
            Console::stdin().confirm(
                &format!(
                    "WARNING: journal directory {} will be exported to message log file {}",
                    dir.display(),
                    file.display()
                ),
                "Journal not exported",
            )?;
            let (memory, mut deleted) = match &db {
                Some(db) => (
                    crate::store::postgres::transfer::load_queues(db)
                        .map_err(super::database::db_err)?,
                    HashSet::new(),
                ),
                None => load_queues(&config)?,
            };
            if reference::is_reference_layout(&dir) {
                load_reference(&dir, &memory)?;
                return finish_export(&config, &memory);
            }
            let (journal, replay) =
                Journal::open(&dir, JournalOptions::new(config.store_log.journal_fsync))
                    .map_err(journal_err)?;
            if let Some(db) = &db {
                // Queues the database marks deleted: their messages go, as at start.
                let rids = replay.msgs.keys().cloned().collect();
                deleted = crate::store::postgres::journal_queues(db, rids)
                    .map_err(super::database::db_err)?
                    .deleted;
            }
            // Messages without a queue cannot be exported; they are kept aside, not dropped.
            let policy = OrphanPolicy {
                deleted: &deleted,
                allow: true,
                dir: config.paths.log_dir(),
                queues: if db.is_some() {
                    QueueSource::Database
                } else {
                    QueueSource::StoreLog
                },
            };
            let s = journal
                .restore_into(&memory, replay, policy)
                .map_err(journal_err)?;
            if let Some(f) = &s.orphans_file {
                println!(
                    "Messages without queue (not exported): {}, kept in {}",
                    s.orphaned,
                    f.display()
                );
            }
            drop(journal);
            finish_export(&config, &memory)
        }
        StoreCmd::Delete => {
            if !dir_exists {
                return Err(CliError::Message(format!(
                    "{} directory does not exists.",
                    dir.display()
                )));
            }
            Console::stdin().confirm(
                &format!(
                    "WARNING: journal directory {} will be permanently deleted.\nTHIS CANNOT BE UNDONE!",
                    dir.display()
                ),
                "Messages NOT deleted",
            )?;
            std::fs::remove_dir_all(&dir)
                .map_err(|e| CliError::io(format!("deleting {}", dir.display()), e))?;
            println!("Deleted all messages in journal {}", dir.display());
            Ok(())
        }
    }
}

/// Write the messages now in `memory` to `smp-server-messages.log` and say what to do next.
fn finish_export(config: &Config, memory: &MemoryStore) -> Result<(), CliError> {
    let n = export_messages_log(config, memory)?;
    println!("Export completed");
    println!(
        "Messages: {n} exported to {}",
        config.paths.messages_file().display()
    );
    let sl = &config.store_log;
    println!(
        "{}",
        match (sl.store_queues, sl.store_messages) {
            (QueueStoreType::Database, _) =>
                "store_messages set to `journal`, store_queues is set to `database`.\nExport queues to store log to use memory storage for messages (`smp-server database export`).",
            (_, MessageStoreType::Journal) =>
                "store_messages set to `journal`, update it to `memory` in INI file",
            _ => "store_messages set to `memory`, start the server.",
        }
    );
    Ok(())
}

/// Where the queues of the messages are: `None` for the store log (required then), or the
/// database with `store_queues = database` (its schema required, as the reference's export).
fn queue_db(c: &Config) -> Result<Option<crate::store::postgres::db::Db>, CliError> {
    if c.store_log.store_queues == QueueStoreType::Database {
        super::database::open_existing(c).map(Some)
    } else {
        require_store_log(c).map(|_| None)
    }
}

/// Put the undelivered messages of the reference's journal in `dir` into the queues of
/// `memory`, as the reference's export reads them: only queues the store log (or the
/// database) has (the others stay in `dir`, which is not changed).
fn load_reference(dir: &Path, memory: &MemoryStore) -> Result<(), CliError> {
    let replay = reference::read_dir(dir).map_err(|e| CliError::Message(format!("Error: {e}")))?;
    for note in &replay.notes {
        println!("Note: {note}");
    }
    let (mut left, mut left_queues) = (0, 0);
    for (rid, msgs) in replay.msgs {
        match memory.get_queue(Party::Recipient, &rid) {
            Some(q) => {
                let mut s = q.lock();
                let full = matches!(msgs.back(), Some(Message::Quota { .. }));
                s.msgs.replace(msgs);
                s.set_can_write(!full);
            }
            None => {
                left += msgs.len();
                left_queues += 1;
            }
        }
    }
    if left > 0 {
        println!(
            "Messages of {left_queues} queues the store log does not have (not exported, left in {}): {left}",
            dir.display()
        );
    }
    Ok(())
}

fn journal_err(e: crate::store::journal::JournalError) -> CliError {
    CliError::Message(format!("Error: {e}"))
}

/// Messages belong to queues, so both directions need the store log.
fn require_store_log(c: &Config) -> Result<(), CliError> {
    if c.store_log.enable {
        Ok(())
    } else {
        Err(CliError::Message(
            "Error: store log is disabled: messages cannot be moved without their queues.\nSet enable = on in section [STORE_LOG] of smp-server.ini.".into(),
        ))
    }
}

/// The queues of the store log, in memory, and the queues its `DELETE` lines deleted.
fn load_queues(c: &Config) -> Result<(MemoryStore, HashSet<Vec<u8>>), CliError> {
    let mem = MemoryStore::new();
    let path = c.paths.store_log_file();
    let (_, stats) = crate::store::storelog_file::open_store_log(&path, &mem)
        .map_err(|e| CliError::Message(format!("Error: {e}")))?;
    Ok((mem, stats.deleted))
}

/// Read `smp-server-messages.log` into the queues of `memory` (the reader renames the file to
/// `.bak`); returns the message count. No expiration, as in the reference.
fn import_messages_log(c: &Config, memory: &MemoryStore) -> Result<usize, CliError> {
    let s = crate::server::persist::restore_messages(&c.paths.messages_file(), memory, None, false)
        .map_err(|e| CliError::Message(format!("Error: {e}")))?;
    if s.no_queue > 0 {
        println!("Messages without queue (not imported): {}", s.no_queue);
    }
    Ok(s.stored)
}

/// Write the messages of `memory` to `smp-server-messages.log`; returns the message count.
fn export_messages_log(c: &Config, memory: &MemoryStore) -> Result<usize, CliError> {
    crate::server::persist::save_messages(&c.paths.messages_file(), memory)
        .map_err(|e| CliError::Message(format!("Error: {e}")))
}
