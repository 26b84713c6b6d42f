//! The store's access to the database: running a call, turning failures into `STORE`,
//! guarded updates, loading a record, and keeping the handle and the store log in step.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::db::{Db, DbError};
use super::rows::{self, message_from_row, queue_from_row, MESSAGE_COLUMNS};
use super::PgStore;
use crate::protocol::errors::ErrorType;
use crate::store::{Message, Queue, QueueBody, QueueLog, QueueRec};

impl PgStore {
    /// A store over an opened (migrated) database.
    pub fn new(db: Db, log: Option<Arc<dyn QueueLog>>, deleted_ttl: i64) -> Self {
        Self::with_service_log(db, log, None, deleted_ttl)
    }

    /// A store whose service records also go to `service_log` (the store log with
    /// `db_store_log = on`, as the reference writes them there).
    pub fn with_service_log(
        db: Db,
        log: Option<Arc<dyn QueueLog>>,
        service_log: Option<Arc<crate::store::storelog_file::StoreLogWriter>>,
        deleted_ttl: i64,
    ) -> Self {
        let db = Arc::new(db);
        let services = super::services::PgServices::new(db.clone(), service_log);
        PgStore {
            db,
            log,
            services: Arc::new(crate::store::services::ServiceStore::with_backend(
                Box::new(services),
            )),
            deleted_ttl,
            last_error_log: AtomicI64::new(0),
        }
    }

    /// The database (tools).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Log a database failure (at most once per 10 s) and turn it into `STORE`.
    pub(super) fn fail(&self, e: DbError) -> ErrorType {
        let now = crate::clock::now_secs();
        let last = self.last_error_log.load(Ordering::Relaxed);
        if now - last >= 10
            && self
                .last_error_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!("STORE: database: {e}");
        }
        let op = match &e {
            DbError::Config(_) => "config",
            DbError::Connect { op, .. }
            | DbError::Query { op, .. }
            | DbError::Timeout { op }
            | DbError::Other { op, .. } => op,
        };
        ErrorType::Store(format!("{op}, withDB"))
    }

    pub(super) fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, ErrorType>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, DbError>> + Send + 'static,
    {
        self.db.run(op, f).map_err(|e| self.fail(e))
    }

    /// Run an `UPDATE ... WHERE recipient_id = $1 AND deleted_at IS NULL`; `AUTH` if no row.
    pub(super) fn update(
        &self,
        op: &'static str,
        sql: &'static str,
        rid: Vec<u8>,
        args: Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
    ) -> Result<(), ErrorType> {
        let n = self.run(op, move |c| async move {
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&rid];
            params.extend(
                args.iter()
                    .map(|a| a.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)),
            );
            let st = c.prepare_cached(sql).await.map_err(DbError::query(op))?;
            c.execute(&st, &params).await.map_err(DbError::query(op))
        })?;
        if n == 0 {
            Err(ErrorType::Auth)
        } else {
            Ok(())
        }
    }

    /// After a committed change: update the handle and append to the store log.
    pub(super) fn changed(&self, q: &Queue, f: impl FnOnce(&mut QueueBody)) {
        let (old, new) = {
            let mut s = q.lock();
            let old = q.record(&s.rec);
            f(&mut s.rec);
            (old, q.record(&s.rec))
        };
        if let Some(log) = &self.log {
            if let Err(e) = log.updated(&old, &new) {
                tracing::warn!("STORE: db_store_log write failed: {e:?}");
            }
        }
    }

    /// Remove queues deleted more than `db_deleted_ttl` seconds ago; returns how many.
    pub fn compact(&self) -> Result<u64, ErrorType> {
        let old = crate::clock::now_secs() - self.deleted_ttl;
        self.run("removeDeletedQueues", move |c| async move {
            c.execute("DELETE FROM msg_queues WHERE deleted_at < $1", &[&old])
                .await
                .map_err(DbError::query("removeDeletedQueues"))
        })
    }

    pub(super) fn load(
        &self,
        column: &'static str,
        id: Vec<u8>,
    ) -> Result<Option<QueueRec>, ErrorType> {
        let sql: &'static str = match column {
            "sender_id" => SELECT_BY_SENDER,
            "notifier_id" => SELECT_BY_NOTIFIER,
            "link_id" => SELECT_BY_LINK,
            _ => SELECT_BY_RECIPIENT,
        };
        let row = self.run("getQueue", move |c| async move {
            let st = c
                .prepare_cached(sql)
                .await
                .map_err(DbError::query("getQueue"))?;
            c.query_opt(&st, &[&id])
                .await
                .map_err(DbError::query("getQueue"))
        })?;
        row.map(|r| queue_from_row(&r)).transpose().map_err(|e| {
            self.fail(DbError::Other {
                op: "getQueue",
                what: e.to_string(),
            })
        })
    }

    /// The live queues whose `column` is one of `ids`, in one query (a block of SUBs).
    pub(super) fn load_many(
        &self,
        column: &'static str,
        ids: Vec<Vec<u8>>,
    ) -> Result<Vec<QueueRec>, ErrorType> {
        let sql: &'static str = match column {
            "sender_id" => SELECT_ANY_SENDER,
            "notifier_id" => SELECT_ANY_NOTIFIER,
            "link_id" => SELECT_ANY_LINK,
            _ => SELECT_ANY_RECIPIENT,
        };
        let rows = self.run("getQueues", move |c| async move {
            let st = c
                .prepare_cached(sql)
                .await
                .map_err(DbError::query("getQueues"))?;
            c.query(&st, &[&ids])
                .await
                .map_err(DbError::query("getQueues"))
        })?;
        rows.iter()
            .map(queue_from_row)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                self.fail(DbError::Other {
                    op: "getQueues",
                    what: e.to_string(),
                })
            })
    }

    /// The oldest message of each of `rids` that has one, with its recipient ID, in one query:
    /// one index probe per queue (`LATERAL ... LIMIT 1`), as [`Store::peek_msg`] does singly.
    pub(super) fn peek_many(
        &self,
        rids: Vec<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, Message)>, ErrorType> {
        let op = "tryPeekMsgs";
        let rows = self.run(op, move |c| async move {
            let st = c
                .prepare_cached(&format!(
                    "SELECT r.rid, m.* FROM unnest($1::bytea[]) AS r(rid) CROSS JOIN LATERAL \
                     (SELECT {MESSAGE_COLUMNS} FROM messages WHERE recipient_id = r.rid \
                     ORDER BY message_id ASC LIMIT 1) m"
                ))
                .await
                .map_err(DbError::query(op))?;
            c.query(&st, &[&rids]).await.map_err(DbError::query(op))
        })?;
        rows.iter()
            .map(|r| {
                let rid: Vec<u8> = r.try_get(0).map_err(|_| rows::BadRow("recipient_id"))?;
                Ok((rid, message_from_row(r, 1)?))
            })
            .collect::<Result<_, rows::BadRow>>()
            .map_err(|e| {
                self.fail(DbError::Other {
                    op,
                    what: e.to_string(),
                })
            })
    }

    /// The live queue's `msg_queue_size` column; `None` if the queue is deleted or unknown.
    pub(crate) fn live_size(&self, rid: Vec<u8>) -> Result<Option<i64>, ErrorType> {
        self.run("getQueueSize", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT msg_queue_size FROM msg_queues WHERE recipient_id = $1 AND deleted_at IS NULL",
                )
                .await
                .map_err(DbError::query("getQueueSize"))?;
            Ok(c.query_opt(&st, &[&rid])
                .await
                .map_err(DbError::query("getQueueSize"))?
                .map(|r| r.get::<_, i64>(0)))
        })
    }

    pub(super) fn messages_of(
        &self,
        op: &'static str,
        sql: &'static str,
        rid: Vec<u8>,
        msg_id: Vec<u8>,
    ) -> Result<Vec<Message>, ErrorType> {
        let rows = self.run(op, move |c| async move {
            let st = c.prepare_cached(sql).await.map_err(DbError::query(op))?;
            c.query(&st, &[&rid, &msg_id])
                .await
                .map_err(DbError::query(op))
        })?;
        rows.iter()
            .map(|r| message_from_row(r, 0))
            .collect::<Result<_, _>>()
            .map_err(|e| {
                self.fail(DbError::Other {
                    op,
                    what: e.to_string(),
                })
            })
    }
}

/// The database's view of the recipient IDs that hold journaled messages (start-up with
/// `store_messages = journal`).
#[derive(Debug, Default)]
pub struct JournalQueues {
    /// Live queues' records.
    pub live: Vec<QueueRec>,
    /// Queues marked deleted (`deleted_at` set) and not yet removed.
    pub deleted: std::collections::HashSet<Vec<u8>>,
}

/// Look up `rids` in one query per batch: which are live queues (with their records) and
/// which are deleted ones; the rest are unknown to the database.
pub fn journal_queues(db: &Db, rids: Vec<Vec<u8>>) -> Result<JournalQueues, DbError> {
    let mut out = JournalQueues::default();
    for chunk in rids.chunks(10_000) {
        let chunk = chunk.to_vec();
        let sql = format!(
            "SELECT {}, deleted_at IS NOT NULL FROM msg_queues WHERE recipient_id = ANY($1)",
            super::rows::QUEUE_COLUMNS
        );
        let rows = db.run("getJournalQueues", move |c| async move {
            c.query(&sql, &[&chunk])
                .await
                .map_err(DbError::query("getJournalQueues"))
        })?;
        for r in &rows {
            let rec = queue_from_row(r).map_err(|e| DbError::Other {
                op: "getJournalQueues",
                what: e.to_string(),
            })?;
            if r.get::<_, bool>(14) {
                out.deleted.insert(rec.recipient_id.to_vec());
            } else {
                out.live.push(rec);
            }
        }
    }
    Ok(out)
}

macro_rules! select_queue {
    ($cond:literal) => {
        concat!(
            "SELECT recipient_id, recipient_keys, rcv_dh_secret, sender_id, sender_key, queue_mode, \
             notifier_id, notifier_key, rcv_ntf_dh_secret, status, updated_at, link_id, fixed_data, \
             user_data FROM msg_queues WHERE ",
            $cond,
            " AND deleted_at IS NULL"
        )
    };
}
pub(super) const SELECT_ANY_RECIPIENT: &str = select_queue!("recipient_id = ANY($1)");
pub(super) const SELECT_ANY_SENDER: &str = select_queue!("sender_id = ANY($1)");
pub(super) const SELECT_ANY_NOTIFIER: &str = select_queue!("notifier_id = ANY($1)");
pub(super) const SELECT_ANY_LINK: &str = select_queue!("link_id = ANY($1)");
pub(super) const SELECT_BY_RECIPIENT: &str = select_queue!("recipient_id = $1");
pub(super) const SELECT_BY_SENDER: &str = select_queue!("sender_id = $1");
pub(super) const SELECT_BY_NOTIFIER: &str = select_queue!("notifier_id = $1");
pub(super) const SELECT_BY_LINK: &str = select_queue!("link_id = $1");
