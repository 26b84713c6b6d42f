//! `smp-server database import|export|delete [--table queues|messages|all]` and the start-up
//! check of the database storage, with the reference's conditions and messages.
//!
//! `import` moves the store log (compacted) and/or `smp-server-messages.log` into a new schema
//! and renames the sources to `.bak`; `export` writes them back from the schema (which stays);
//! `delete` only says how to drop the schema, as the reference does.

use std::path::Path;

use super::args::{DbArgs, StoreCmd};
use super::console::Console;
use super::CliError;
use crate::config::{Config, MessageStoreType, Paths, QueueStoreType};
use crate::store::postgres::db::{Db, DbError, DbOptions};
use crate::store::postgres::{setup, transfer};

pub(crate) fn db_err(e: DbError) -> CliError {
    CliError::Message(format!("Error: {e}"))
}

fn exists(opts: &DbOptions) -> Result<bool, CliError> {
    let db = Db::new(opts).map_err(db_err)?;
    setup::schema_exists(&db).map_err(db_err)
}

fn no_schema(o: &DbOptions) -> CliError {
    CliError::Message(format!(
        "Schema {} does not exist in PostrgreSQL database: {}",
        o.schema,
        o.display_connection()
    ))
}

fn both_present(c: &Config, o: &DbOptions) -> CliError {
    CliError::Message(format!(
        "Error: both {} file and {} schema are present (database: {}).\nConfigure queue storage.",
        c.paths.store_log_file().display(),
        o.schema,
        o.display_connection()
    ))
}

/// The configured database for a tool, which must have the schema (the reference's message).
pub(crate) fn open_existing(c: &Config) -> Result<Db, CliError> {
    let o = DbOptions::from_config(c);
    if !exists(&o)? {
        return Err(no_schema(&o));
    }
    setup::open_db(&o, false).map_err(db_err)
}

/// Refuse to start `store_queues = database` when the files and the schema disagree (with
/// `store_messages = journal` also the message files, as `journal` does for the store log).
pub fn check_db_storage(c: &Config) -> Result<(), CliError> {
    let sl = &c.store_log;
    if sl.store_queues != QueueStoreType::Database {
        return Ok(());
    }
    if sl.store_messages == MessageStoreType::Journal {
        // The reference's journal checks first (a messages file next to the journal pair is
        // refused), then the database's.
        crate::cli::journal::check_msg_store_mode(c)?;
    } else {
        let (file, dir) = (c.paths.messages_file(), c.paths.messages_journal_dir());
        if file.exists() || dir.is_dir() {
            return Err(CliError::Message(format!(
                "Error: {} file or {} directory are present.\nConfigure memory storage.",
                file.display(),
                dir.display()
            )));
        }
    }
    let o = DbOptions::from_config(c);
    let schema = exists(&o)?;
    let log = c.paths.store_log_file();
    let no_db_schema = || {
        CliError::Message(format!(
            "Error: store_queues is `database`, create schema {} in PostgreSQL database {}",
            o.schema,
            o.display_connection()
        ))
    };
    if sl.db_store_log {
        if !schema {
            return Err(no_db_schema());
        }
        if !log.exists() {
            return Err(CliError::Message(format!(
                "Error: db_store_log is `on`, {} does not exist",
                log.display()
            )));
        }
        return Ok(());
    }
    match (log.exists(), schema) {
        (true, true) => Err(both_present(c, &o)),
        (true, false) => Err(CliError::Message(format!(
            "Error: store_queues is `database` with {} file present.\nSet store_queues to `memory` or use `smp-server database import` to migrate.",
            log.display()
        ))),
        (false, false) => Err(no_db_schema()),
        (false, true) => Ok(()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Queues,
    Messages,
    All,
}

fn rename_bak(p: &Path) -> Result<(), CliError> {
    let bak = crate::store::storelog_file::with_suffix(p, ".bak");
    std::fs::rename(p, &bak).map_err(|e| CliError::io(format!("renaming {}", p.display()), e))
}

fn store_type_hint(c: &Config) -> &'static str {
    match (c.store_log.store_queues, c.store_log.store_messages) {
        (QueueStoreType::Database, MessageStoreType::Database) => {
            "store_queues and store_messages set to `database`, start the server."
        }
        _ => "set store_queues and store_messages to `database` in INI file",
    }
}

/// Run `database <cmd>`.
pub fn run(cmd: StoreCmd, table: &str, args: &DbArgs, paths: &Paths) -> Result<(), CliError> {
    super::require_initialized(paths)?;
    let c = Config::load_from(paths.clone())?;
    let table = match table {
        "queues" => Table::Queues,
        "messages" => Table::Messages,
        _ => Table::All,
    };
    let o = DbOptions {
        connection: args.database.clone(),
        schema: args.schema.clone(),
        pool_size: args.pool_size,
    };
    let schema = exists(&o)?;
    let log = paths.store_log_file();
    let msgs = paths.messages_file();
    let (log_exists, msgs_exist) = (log.exists(), msgs.exists());
    let target = format!(
        "PostrgreSQL database: {}, schema: {}",
        o.display_connection(),
        o.schema
    );
    let mut console = Console::stdin();
    match (cmd, table) {
        (StoreCmd::Import, Table::All | Table::Queues) => {
            if table == Table::Queues && schema && log_exists {
                return Err(both_present(&c, &o));
            }
            let ok = !schema && log_exists && (table == Table::Queues || msgs_exist);
            if !ok {
                let mut m = Vec::new();
                if schema {
                    m.push(format!("Schema {} already exists in {target}", o.schema));
                }
                if !log_exists {
                    m.push(format!("{} file does not exist.", log.display()));
                }
                if table == Table::All && !msgs_exist {
                    m.push(format!("{} file does not exist.", msgs.display()));
                }
                return Err(CliError::Message(m.join("\n")));
            }
            let what = if table == Table::All {
                format!(
                    "store log file {} and message log file {}",
                    log.display(),
                    msgs.display()
                )
            } else {
                format!("store log file {}", log.display())
            };
            console.confirm(
                &format!("WARNING: {what} will be imported to {target}"),
                "Store logs not imported",
            )?;
            let mem = crate::store::memory::MemoryStore::new();
            let replayed = crate::store::storelog_file::replay(&log, &mem)
                .map_err(|e| CliError::Message(format!("Error: {e}")))?;
            let db = setup::open_db(&o, true).map_err(db_err)?;
            let n = transfer::import_queues(&db, &mem, &replayed.services).map_err(db_err)?;
            rename_bak(&log)?;
            println!("Imported: {} services, {} queues", n.services, n.queues);
            if table == Table::All {
                println!("Importing messages...");
                let m = transfer::import_messages(&db, &msgs).map_err(db_err)?;
                rename_bak(&msgs)?;
                println!("Import completed: {} messages", m.stored);
                if m.no_queue > 0 {
                    println!("{} messages skipped: their queues do not exist", m.no_queue);
                }
                println!("{}", store_type_hint(&c));
            } else {
                println!(
                    "{}",
                    match (c.store_log.store_queues, c.store_log.store_messages) {
                        (QueueStoreType::Database, _) =>
                            "store_queues set to `database`, start the server.",
                        (_, MessageStoreType::Memory) =>
                            "store_queues set to `memory`, update it to `database` in INI file\nstore_messages set to `memory`, import messages to journal to use PostgreSQL database for queues (`smp-server journal import`)",
                        _ => "store_queues set to `memory`, update it to `database` in INI file",
                    }
                );
            }
            Ok(())
        }
        (StoreCmd::Import, Table::Messages) => {
            if !schema {
                return Err(no_schema(&o));
            }
            if !msgs_exist {
                return Err(CliError::Message(format!(
                    "{} file does not exist.",
                    msgs.display()
                )));
            }
            console.confirm(
                &format!(
                    "WARNING: message log file {} will be imported to {target}",
                    msgs.display()
                ),
                "Message records not imported",
            )?;
            let db = setup::open_db(&o, false).map_err(db_err)?;
            if transfer::count_messages(&db).map_err(db_err)? > 0 {
                console.confirm(
                    "WARNING: the database contains messages, they will be deleted.",
                    "Message records not imported",
                )?;
            }
            let m = transfer::import_messages(&db, &msgs).map_err(db_err)?;
            rename_bak(&msgs)?;
            println!("Import completed: {} messages", m.stored);
            if m.no_queue > 0 {
                println!("{} messages skipped: their queues do not exist", m.no_queue);
            }
            println!("{}", store_type_hint(&c));
            Ok(())
        }
        (StoreCmd::Export, Table::All | Table::Queues) => {
            if table == Table::Queues && schema && log_exists {
                return Err(both_present(&c, &o));
            }
            let ok = schema && !log_exists && (table == Table::Queues || !msgs_exist);
            if !ok {
                let mut m = Vec::new();
                if !schema {
                    m.push(no_schema(&o).to_string());
                }
                if log_exists {
                    m.push(format!("{} file already exists.", log.display()));
                }
                if table == Table::All && msgs_exist {
                    m.push(format!("{} file already exists.", msgs.display()));
                }
                return Err(CliError::Message(m.join("\n")));
            }
            console.confirm(
                &format!(
                    "WARNING: PostrgreSQL schema {} (database: {}) will be exported to store log file {}{}",
                    o.schema,
                    o.display_connection(),
                    log.display(),
                    if table == Table::All {
                        format!(" and to message log file {}", msgs.display())
                    } else {
                        String::new()
                    }
                ),
                "Database store not exported",
            )?;
            let db = setup::open_db(&o, false).map_err(db_err)?;
            let mem = transfer::load_queues(&db).map_err(db_err)?;
            let svc = transfer::load_services(&db).map_err(db_err)?;
            let n = crate::store::storelog_file::write_compacted(&log, &mem, &svc)
                .map_err(|e| CliError::Message(format!("Error: {e}")))?;
            println!("Exported: {} services, {n} queues", svc.services.len());
            if table == Table::All {
                println!("Exporting messages...");
                let m = transfer::export_messages(&db, &msgs).map_err(db_err)?;
                println!("Export completed: {m} messages");
            } else {
                println!(
                    "{}",
                    if c.store_log.store_queues == QueueStoreType::Database {
                        "store_queues or store_messages set to `database`, update it to `memory` in INI file."
                    } else {
                        "store_queues set to `memory`, start the server"
                    }
                );
            }
            Ok(())
        }
        (StoreCmd::Export, Table::Messages) => {
            if !schema {
                return Err(no_schema(&o));
            }
            if msgs_exist {
                return Err(CliError::Message(format!(
                    "{} file already exists.",
                    msgs.display()
                )));
            }
            console.confirm(
                &format!(
                    "WARNING: Messages from PostrgreSQL schema {} (database: {}) will be exported to message log file {}",
                    o.schema,
                    o.display_connection(),
                    msgs.display()
                ),
                "Message records not exported",
            )?;
            let db = setup::open_db(&o, false).map_err(db_err)?;
            let m = transfer::export_messages(&db, &msgs).map_err(db_err)?;
            println!("Export completed: {m} messages");
            println!("Export queues with `smp-server database export --table queues`");
            if c.store_log.store_messages == MessageStoreType::Journal {
                println!("store_messages is `journal`: move the messages into the journal with `smp-server journal import`");
            }
            Ok(())
        }
        (StoreCmd::Delete, _) => {
            if !schema {
                return Err(no_schema(&o));
            }
            println!("Open database: psql {}", o.display_connection());
            println!("Delete schema: DROP SCHEMA {} CASCADE;", o.schema);
            Ok(())
        }
    }
}
