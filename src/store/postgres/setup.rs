//! Opening the database: the schema check, migrations and the removal of old deleted queues.

use super::db::{Db, DbError, DbOptions};
use super::migrations::{MIGRATIONS, MIGRATIONS_TABLE};

/// Whether the schema exists (the reference refuses to start without it).
pub fn schema_exists(db: &Db) -> Result<bool, DbError> {
    let schema = db.schema.clone();
    db.run("checking the schema", move |c| async move {
        let row = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
                &[&schema],
            )
            .await
            .map_err(DbError::query("checking the schema"))?;
        Ok(row.get::<_, bool>(0))
    })
}

/// Create the schema (`database import`, tests).
pub fn create_schema(db: &Db) -> Result<(), DbError> {
    let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", db.schema);
    db.run("creating the schema", move |c| async move {
        c.batch_execute(&sql)
            .await
            .map_err(DbError::query("creating the schema"))
    })
}

/// Names of the migrations recorded in the schema, oldest first.
pub fn applied_migrations(db: &Db) -> Result<Vec<String>, DbError> {
    db.run("reading migrations", |c| async move {
        c.batch_execute(MIGRATIONS_TABLE)
            .await
            .map_err(DbError::query("creating the migrations table"))?;
        let rows = c
            .query("SELECT name FROM migrations ORDER BY name ASC", &[])
            .await
            .map_err(DbError::query("reading migrations"))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    })
}

/// Apply the migrations the schema lacks, each in its own transaction, as the reference does
/// with `confirm_migrations = yes-up` at start. Returns the names applied.
pub fn migrate(db: &Db) -> Result<Vec<&'static str>, DbError> {
    let applied = applied_migrations(db)?;
    for (i, name) in applied.iter().enumerate() {
        if MIGRATIONS.get(i).map(|m| m.name) != Some(name.as_str()) {
            return Err(DbError::Other {
                op: "checking migrations",
                what: format!(
                    "the schema has migration {name}, which this server does not know (it was \
                     created by a newer or different server); use that server, or export with \
                     it and import here"
                ),
            });
        }
    }
    let mut done = Vec::new();
    for m in &MIGRATIONS[applied.len()..] {
        let (name, up, down) = (m.name, m.up, m.down);
        db.run("migrating", move |mut c| async move {
            let tx = c.transaction().await.map_err(DbError::query("migrating"))?;
            tx.execute(
                "INSERT INTO migrations (name, down, ts) VALUES ($1, $2, now() AT TIME ZONE 'UTC')",
                &[&name, &down],
            )
            .await
            .map_err(DbError::query("migrating"))?;
            tx.batch_execute(up)
                .await
                .map_err(DbError::query("migrating"))?;
            tx.commit().await.map_err(DbError::query("migrating"))
        })
        .map_err(|e| DbError::Other {
            op: "migrating",
            what: format!("migration {name} failed: {e}"),
        })?;
        done.push(name);
    }
    Ok(done)
}

/// Connect, require (or create) the schema and bring it up to date.
pub fn open_db(opts: &DbOptions, create: bool) -> Result<Db, DbError> {
    let db = Db::new(opts)?;
    db.ping().map_err(|e| DbError::Other {
        op: "connecting",
        what: format!(
            "cannot connect to PostgreSQL database {}: {e}. Check that PostgreSQL is running \
             and [STORE_LOG] db_connection",
            opts.display_connection()
        ),
    })?;
    if !schema_exists(&db)? {
        if !create {
            return Err(DbError::Other {
                op: "opening the database",
                what: format!(
                    "store_queues is `database`, create schema {} in PostgreSQL database {} \
                     (or use `smp-server database import`)",
                    opts.schema,
                    opts.display_connection()
                ),
            });
        }
        create_schema(&db)?;
    }
    let applied = migrate(&db)?;
    if !applied.is_empty() {
        tracing::info!("database migrations applied: {}", applied.join(", "));
    }
    Ok(db)
}

/// With `store_queues = database`: the queue store the server runs on (with
/// `store_messages = database` also its message store; with `journal` the messages are kept
/// by `store::pg_journal`).
pub fn open_for_config(c: &crate::config::Config) -> Result<super::PgStore, DbError> {
    use crate::config::MessageStoreType;
    if c.store_log.store_messages == MessageStoreType::Memory {
        return Err(DbError::Other {
            op: "opening the database",
            what: "store_queues = database with store_messages = memory cannot be combined; \
                   use store_messages = database or journal"
                .to_string(),
        });
    }
    let opts = DbOptions::from_config(c);
    let db = open_db(&opts, false)?;
    let log = if c.store_log.db_store_log {
        let path = c.paths.store_log_file();
        let w = crate::store::storelog_file::StoreLogWriter::open(&path).map_err(|e| {
            DbError::Other {
                op: "opening the store log",
                what: e.to_string(),
            }
        })?;
        Some(std::sync::Arc::new(w))
    } else {
        None
    };
    let qlog = log
        .clone()
        .map(|w| w as std::sync::Arc<dyn crate::store::QueueLog>);
    let st = super::PgStore::with_service_log(db, qlog, log, c.store_log.db_deleted_ttl);
    let removed = st.compact().unwrap_or(0);
    let (queues, notifiers) = crate::store::Store::count_queues(&st);
    tracing::info!(
        "PostgreSQL database: {}, schema: {}: {queues} queues ({notifiers} with notifiers); \
         {removed} old deleted queues removed",
        opts.display_connection(),
        opts.schema
    );
    Ok(st)
}
