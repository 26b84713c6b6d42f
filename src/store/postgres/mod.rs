//! Queues and messages in PostgreSQL, on the reference's schema (`store_queues = database`,
//! `store_messages = database`).
//!
//! The database is the only copy: a queue handle from [`PgStore::get_queue`] is a snapshot of
//! the row, loaded per lookup, so memory does not grow with the number of queues. Changes go
//! to the database first and reach the handle only after the commit, so nothing is answered
//! `OK` that is not committed. Per-queue serialization is the database's: every message
//! function locks the live queue row (`FOR UPDATE`) and record changes are single statements
//! guarded by `deleted_at IS NULL`. Deleted queues are kept (with `deleted_at`) for
//! `db_deleted_ttl` seconds, then removed with their messages, as the reference does.
//!
//! A failing database answers `ERR STORE` (with no detail for the client; the log has it)
//! and the pool reconnects on its own when the database is back.

mod access;
pub use access::{journal_queues, JournalQueues};
pub mod db;
pub mod migrations;
pub mod rows;
pub mod services;
pub mod setup;
pub mod tls;
pub mod transfer;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

#[cfg(test)]
use access::{SELECT_BY_LINK, SELECT_BY_NOTIFIER, SELECT_BY_RECIPIENT, SELECT_BY_SENDER};
use db::{Db, DbError};
use rows::{message_from_row, message_parts, queue_from_row, QueueRow, MESSAGE_COLUMNS};

use super::{
    Message, NtfCreds, Queue, QueueLog, QueueRec, QueueRef, QueueStatus, Store, WriteResult,
};
use crate::crypto::keys::PublicKey;
use crate::protocol::command::{Party, QueueLinkData};
use crate::protocol::errors::ErrorType;

/// How many queues the database's expiry procedure handles per batch (the reference's value).
const EXPIRE_BATCH: i32 = 10_000;

/// The PostgreSQL store.
pub struct PgStore {
    db: Arc<Db>,
    /// Services and queue associations, in the same database.
    services: Arc<crate::store::services::ServiceStore>,
    /// The store log, with `db_store_log = on` (written after each commit; failures only logged).
    log: Option<Arc<dyn QueueLog>>,
    deleted_ttl: i64,
    last_error_log: AtomicI64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("db", &self.db)
            .field("store_log", &self.log.is_some())
            .finish()
    }
}

type Param = Box<dyn tokio_postgres::types::ToSql + Send + Sync>;

/// The `msg_queues` column a party's entity ID is kept in.
fn party_column(party: Party) -> Option<&'static str> {
    match party {
        Party::Recipient => Some("recipient_id"),
        Party::Sender => Some("sender_id"),
        Party::Notifier => Some("notifier_id"),
        Party::LinkClient => Some("link_id"),
        _ => None,
    }
}

/// A replaced notifier's columns: ID, key, DH secret.
type OldNotifier = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

impl Store for PgStore {
    fn add_queue(&self, rec: QueueRec) -> Result<QueueRef, ErrorType> {
        let row = QueueRow::new(&rec);
        let r = self.db.run("addQueue", move |c| async move {
            let sql = format!(
                "INSERT INTO msg_queues ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                rows::QUEUE_COLUMNS
            );
            let st = c
                .prepare_cached(&sql)
                .await
                .map_err(DbError::query("addQueue"))?;
            c.execute(&st, &row.params())
                .await
                .map_err(DbError::query("addQueue"))
        });
        match r {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => return Err(ErrorType::Duplicate),
            Err(e) => return Err(self.fail(e)),
        }
        if let Some(log) = &self.log {
            if let Err(e) = log.created(&rec) {
                tracing::warn!("STORE: db_store_log write failed: {e:?}");
            }
        }
        Ok(QueueRef::new(Queue::new(rec)))
    }

    fn get_queue(&self, party: Party, id: &[u8]) -> Option<QueueRef> {
        // A database failure reads as "no such queue" here; commands use `find_queue`.
        self.find_queue(party, id).ok().flatten()
    }

    fn find_queue(&self, party: Party, id: &[u8]) -> Result<Option<QueueRef>, ErrorType> {
        let Some(column) = party_column(party) else {
            return Ok(None);
        };
        Ok(self
            .load(column, id.to_vec())?
            .map(|r| QueueRef::new(Queue::new(r))))
    }

    fn batches_lookups(&self) -> bool {
        true
    }

    fn io_waits(&self) -> usize {
        self.db.pool_size()
    }

    fn find_queues(&self, party: Party, ids: &[&[u8]]) -> Result<Vec<Option<QueueRef>>, ErrorType> {
        let Some(column) = party_column(party) else {
            return Ok(vec![None; ids.len()]);
        };
        let recs = self.load_many(column, ids.iter().map(|id| id.to_vec()).collect())?;
        let by_id: std::collections::HashMap<Vec<u8>, QueueRef> = recs
            .into_iter()
            .filter_map(|r| {
                let id = match party {
                    Party::Recipient => Some(r.recipient_id.to_vec()),
                    Party::Sender => Some(r.sender_id.to_vec()),
                    Party::Notifier => r.notifier.as_ref().map(|n| n.notifier_id.clone()),
                    _ => r.queue_data.as_deref().map(|(lid, _)| lid.clone()),
                }?;
                Some((id, QueueRef::new(Queue::new(r))))
            })
            .collect();
        // The same ID twice in a block gets the same handle both times.
        Ok(ids.iter().map(|id| by_id.get(*id).cloned()).collect())
    }

    fn peek_msgs(&self, qs: &[&Queue]) -> Vec<Result<Option<Message>, ErrorType>> {
        let live: Vec<Vec<u8>> = qs
            .iter()
            .filter(|q| !q.lock().deleted())
            .map(|q| q.recipient_id().to_vec())
            .collect();
        let heads: std::collections::HashMap<Vec<u8>, Message> = match self.peek_many(live) {
            Ok(h) => h.into_iter().collect(),
            Err(e) => return qs.iter().map(|_| Err(e.clone())).collect(),
        };
        qs.iter()
            .map(|q| {
                if q.lock().deleted() {
                    Err(ErrorType::Auth)
                } else {
                    // A queue asked twice gets its head both times.
                    Ok(heads.get(q.recipient_id()).cloned())
                }
            })
            .collect()
    }

    fn secure_queue(&self, q: &Queue, key: PublicKey) -> Result<(), ErrorType> {
        let der = key.to_der();
        self.update(
            "secureQueue",
            "UPDATE msg_queues SET sender_key = $2 WHERE recipient_id = $1 AND deleted_at IS NULL \
             AND (sender_key IS NULL OR sender_key = $2)",
            q.recipient_id().to_vec(),
            vec![Box::new(der) as Param],
        )?;
        self.changed(q, |r| r.sender_key = Some(key));
        Ok(())
    }

    fn update_keys(&self, q: &Queue, keys: Vec<PublicKey>) -> Result<(), ErrorType> {
        self.update(
            "updateKeys",
            "UPDATE msg_queues SET recipient_keys = $2 WHERE recipient_id = $1 AND deleted_at IS NULL",
            q.recipient_id().to_vec(),
            vec![Box::new(rows::encode_keys(&keys)) as Param],
        )?;
        self.changed(q, |r| r.recipient_keys = keys.into());
        Ok(())
    }

    fn add_link(&self, q: &Queue, link_id: Vec<u8>, data: QueueLinkData) -> Result<(), ErrorType> {
        // A new link, or the same link ID with the same fixed data. Another queue's link ID
        // violates the unique index: a client fault, answered `AUTH` like any other mismatch.
        let (rid, lid, d) = (q.recipient_id().to_vec(), link_id.clone(), data.clone());
        let r = self.db.run("addQueueLinkData", move |c| async move {
            let op = "addQueueLinkData";
            let st = c
                .prepare_cached(
                    "UPDATE msg_queues SET fixed_data = $2, user_data = $3, link_id = $4 \
                     WHERE recipient_id = $1 AND deleted_at IS NULL \
                     AND (link_id IS NULL OR (link_id = $4 AND (fixed_data IS NULL OR fixed_data = $2)))",
                )
                .await
                .map_err(DbError::query(op))?;
            c.execute(&st, &[&rid, &d.0, &d.1, &lid])
                .await
                .map_err(DbError::query(op))
        });
        match r {
            Ok(0) => return Err(ErrorType::Auth),
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => return Err(ErrorType::Auth),
            Err(e) => return Err(self.fail(e)),
        }
        self.changed(q, |r| r.queue_data = Some(Box::new((link_id, data))));
        Ok(())
    }

    fn delete_link(&self, q: &Queue) -> Result<(), ErrorType> {
        self.update(
            "deleteQueueLinkData",
            "UPDATE msg_queues SET link_id = NULL, fixed_data = NULL, user_data = NULL \
             WHERE recipient_id = $1 AND deleted_at IS NULL",
            q.recipient_id().to_vec(),
            vec![],
        )?;
        self.changed(q, |r| r.queue_data = None);
        Ok(())
    }

    fn get_link(&self, q: &Queue, link_id: &[u8]) -> Result<QueueLinkData, ErrorType> {
        match self.load("link_id", link_id.to_vec())? {
            Some(r) if r.recipient_id[..] == *q.recipient_id() => {
                r.body.queue_data.map(|b| b.1).ok_or(ErrorType::Auth)
            }
            _ => Err(ErrorType::Auth),
        }
    }

    fn add_notifier(&self, q: &Queue, creds: NtfCreds) -> Result<Option<NtfCreds>, ErrorType> {
        let rid = q.recipient_id().to_vec();
        let c2 = creds.clone();
        let r = self.db.run("addQueueNotifier", move |mut c| async move {
            let op = "addQueueNotifier";
            let tx = c.transaction().await.map_err(DbError::query(op))?;
            let old = tx
                .query_opt(
                    "SELECT notifier_id, notifier_key, rcv_ntf_dh_secret FROM msg_queues \
                     WHERE recipient_id = $1 AND deleted_at IS NULL FOR UPDATE",
                    &[&rid],
                )
                .await
                .map_err(DbError::query(op))?;
            let Some(old) = old else { return Ok(None) };
            tx.execute(
                "UPDATE msg_queues SET notifier_id = $2, notifier_key = $3, rcv_ntf_dh_secret = $4, \
                 ntf_service_id = NULL WHERE recipient_id = $1",
                &[
                    &rid,
                    &c2.notifier_id,
                    &c2.notifier_key.to_der(),
                    &c2.rcv_ntf_dh_secret.to_vec(),
                ],
            )
            .await
            .map_err(DbError::query(op))?;
            tx.commit().await.map_err(DbError::query(op))?;
            let ids: OldNotifier = (old.get(0), old.get(1), old.get(2));
            Ok(Some(ids))
        });
        let old = match r {
            Ok(Some(o)) => o,
            Ok(None) => return Err(ErrorType::Auth),
            Err(e) if e.is_unique_violation() => return Err(ErrorType::Duplicate),
            Err(e) => return Err(self.fail(e)),
        };
        let old = match old {
            (Some(id), Some(k), Some(dh)) => Some(NtfCreds {
                notifier_id: id,
                notifier_key: PublicKey::from_der(&k).map_err(|_| ErrorType::Internal)?,
                rcv_ntf_dh_secret: dh.try_into().map_err(|_| ErrorType::Internal)?,
            }),
            _ => None,
        };
        self.changed(q, |r| r.notifier = Some(Box::new(creds)));
        Ok(old)
    }

    fn delete_notifier(&self, q: &Queue) -> Result<Option<NtfCreds>, ErrorType> {
        let old = self
            .load("recipient_id", q.recipient_id().to_vec())?
            .ok_or(ErrorType::Auth)?
            .body
            .notifier
            .map(|n| *n);
        if old.is_some() {
            self.update(
                "deleteQueueNotifier",
                "UPDATE msg_queues SET notifier_id = NULL, notifier_key = NULL, \
                 rcv_ntf_dh_secret = NULL, ntf_service_id = NULL \
                 WHERE recipient_id = $1 AND deleted_at IS NULL",
                q.recipient_id().to_vec(),
                vec![],
            )?;
            self.changed(q, |r| r.notifier = None);
        }
        Ok(old)
    }

    fn set_status(&self, q: &Queue, status: QueueStatus) -> Result<(), ErrorType> {
        self.update(
            "setStatus",
            "UPDATE msg_queues SET status = $2 WHERE recipient_id = $1 AND deleted_at IS NULL",
            q.recipient_id().to_vec(),
            vec![Box::new(rows::status_text(&status)) as Param],
        )?;
        self.changed(q, |r| r.status = status);
        Ok(())
    }

    fn update_time(&self, q: &Queue, day: i64) -> Result<(), ErrorType> {
        self.update(
            "updateQueueTime",
            "UPDATE msg_queues SET updated_at = $2 WHERE recipient_id = $1 AND deleted_at IS NULL",
            q.recipient_id().to_vec(),
            vec![Box::new(day) as Param],
        )?;
        self.changed(q, |r| r.updated_at = Some(day).into());
        Ok(())
    }

    fn update_times(&self, qs: &[&Queue], day: i64) -> Vec<Result<(), ErrorType>> {
        // One statement and one commit for the block; a queue deleted meanwhile gets no row.
        let rids: Vec<Vec<u8>> = qs.iter().map(|q| q.recipient_id().to_vec()).collect();
        let updated = self.run("updateQueueTimes", move |c| async move {
            let op = "updateQueueTimes";
            let st = c
                .prepare_cached(
                    "UPDATE msg_queues SET updated_at = $2 WHERE recipient_id = ANY($1) \
                     AND deleted_at IS NULL RETURNING recipient_id",
                )
                .await
                .map_err(DbError::query(op))?;
            let rows = c
                .query(&st, &[&rids, &day])
                .await
                .map_err(DbError::query(op))?;
            Ok(rows
                .iter()
                .filter_map(|r| r.try_get::<_, Vec<u8>>(0).ok())
                .collect::<std::collections::HashSet<_>>())
        });
        match updated {
            Err(e) => qs.iter().map(|_| Err(e.clone())).collect(),
            Ok(done) => qs
                .iter()
                .map(|q| {
                    if done.contains(q.recipient_id()) {
                        self.changed(q, |r| r.updated_at = Some(day).into());
                        Ok(())
                    } else {
                        Err(ErrorType::Auth)
                    }
                })
                .collect(),
        }
    }

    fn delete_queue(&self, q: &Queue) -> Result<(QueueRec, usize), ErrorType> {
        let rid = q.recipient_id().to_vec();
        let day = crate::clock::now_secs() / 86400 * 86400;
        let size = self.run("deleteStoreQueue", move |c| async move {
            let op = "deleteStoreQueue";
            let st = c
                .prepare_cached(
                    "UPDATE msg_queues SET deleted_at = $2 WHERE recipient_id = $1 \
                     AND deleted_at IS NULL RETURNING msg_queue_size",
                )
                .await
                .map_err(DbError::query(op))?;
            Ok(c.query_opt(&st, &[&rid, &day])
                .await
                .map_err(DbError::query(op))?
                .map(|r| r.get::<_, i64>(0)))
        })?;
        let size = size.ok_or(ErrorType::Auth)?;
        let rec = {
            let mut s = q.lock();
            s.set_deleted();
            q.record(&s.rec)
        };
        if let Some(log) = &self.log {
            if let Err(e) = log.deleted(q.recipient_id()) {
                tracing::warn!("STORE: db_store_log write failed: {e:?}");
            }
        }
        Ok((rec, usize::try_from(size).unwrap_or(0)))
    }

    fn write_msg(&self, q: &Queue, msg: Message, quota: usize) -> Result<WriteResult, ErrorType> {
        let quota = i32::try_from(quota).unwrap_or(i32::MAX);
        let rid = q.recipient_id().to_vec();
        let row = self.run("writeMsg", move |c| async move {
            let op = "writeMsg";
            let (is_quota, ntf, body) = message_parts(&msg);
            let st = c
                .prepare_cached(
                    "SELECT quota_written, was_empty FROM write_message($1,$2,$3,$4,$5,$6,$7)",
                )
                .await
                .map_err(DbError::query(op))?;
            c.query_opt(
                &st,
                &[
                    &rid,
                    &msg.msg_id(),
                    &msg.ts(),
                    &is_quota,
                    &ntf,
                    &body,
                    &quota,
                ],
            )
            .await
            .map_err(DbError::query(op))
            .map(|r| r.map(|r| (r.get::<_, bool>(0), r.get::<_, bool>(1))))
        })?;
        match row {
            Some((false, was_empty)) => Ok(WriteResult::Stored { was_empty }),
            Some((true, _)) => Ok(WriteResult::Quota),
            // not written: the queue is full, or gone
            None => match self.live_size(q.recipient_id().to_vec())? {
                Some(_) => Ok(WriteResult::Quota),
                None => Err(ErrorType::Auth),
            },
        }
    }

    fn peek_msg(&self, q: &Queue) -> Result<Option<Message>, ErrorType> {
        if q.lock().deleted() {
            return Err(ErrorType::Auth);
        }
        let rid = q.recipient_id().to_vec();
        let row = self.run("tryPeekMsg", move |c| async move {
            let op = "tryPeekMsg";
            let st = c
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE recipient_id = $1 \
                     ORDER BY message_id ASC LIMIT 1"
                ))
                .await
                .map_err(DbError::query(op))?;
            c.query_opt(&st, &[&rid]).await.map_err(DbError::query(op))
        })?;
        row.map(|r| message_from_row(&r, 0))
            .transpose()
            .map_err(|e| {
                self.fail(DbError::Other {
                    op: "tryPeekMsg",
                    what: e.to_string(),
                })
            })
    }

    fn del_msg(&self, q: &Queue, msg_id: &[u8]) -> Result<Option<Message>, ErrorType> {
        let mut m = self.messages_of(
            "tryDelMsg",
            "SELECT r_msg_id, r_msg_ts, r_msg_quota, r_msg_ntf_flag, r_msg_body FROM try_del_msg($1, $2)",
            q.recipient_id().to_vec(),
            msg_id.to_vec(),
        )?;
        Ok(if m.is_empty() {
            None
        } else {
            Some(m.remove(0))
        })
    }

    fn del_peek_msg(
        &self,
        q: &Queue,
        msg_id: &[u8],
    ) -> Result<(Option<Message>, Option<Message>), ErrorType> {
        let ms = self.messages_of(
            "tryDelPeekMsg",
            "SELECT r_msg_id, r_msg_ts, r_msg_quota, r_msg_ntf_flag, r_msg_body FROM try_del_peek_msg($1, $2)",
            q.recipient_id().to_vec(),
            msg_id.to_vec(),
        )?;
        let mut it = ms.into_iter();
        Ok(match (it.next(), it.next()) {
            (None, _) => (None, None),
            (Some(m), None) if m.msg_id() == msg_id => (Some(m), None),
            (Some(m), None) => (None, Some(m)),
            (Some(d), Some(n)) => (Some(d), Some(n)),
        })
    }

    fn queue_size(&self, q: &Queue) -> Result<usize, ErrorType> {
        let n = self
            .live_size(q.recipient_id().to_vec())?
            .ok_or(ErrorType::Auth)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn delete_expired(&self, q: &Queue, before: i64) -> Result<usize, ErrorType> {
        let rid = q.recipient_id().to_vec();
        let n = self.run("deleteExpiredMsgs", move |c| async move {
            let op = "deleteExpiredMsgs";
            let r = c
                .query_one("SELECT delete_expired_msgs($1, $2)", &[&rid, &before])
                .await
                .map_err(DbError::query(op))?;
            Ok(r.get::<_, i64>(0))
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Every live queue, loaded into memory: for tools only (the server uses the aggregate
    /// methods below, which stay in the database).
    fn all_queues(&self) -> Vec<QueueRef> {
        let sql = format!(
            "SELECT {} FROM msg_queues WHERE deleted_at IS NULL ORDER BY recipient_id",
            rows::QUEUE_COLUMNS
        );
        let rows = self.run("allQueues", move |c| async move {
            c.query(&sql, &[])
                .await
                .map_err(DbError::query("allQueues"))
        });
        rows.unwrap_or_default()
            .iter()
            .filter_map(|r| queue_from_row(r).ok())
            .map(|r| QueueRef::new(Queue::new(r)))
            .collect()
    }

    fn expire_messages(&self, before: i64) -> usize {
        match self.compact() {
            Ok(n) if n > 0 => tracing::info!("removed {n} old deleted queues from the database"),
            _ => {}
        }
        // The procedure commits per queue, so it runs outside a transaction (simple protocol).
        let sql = format!("CALL expire_old_messages(0, {before}, {EXPIRE_BATCH}, 0, 0, 0)");
        let r = self.run("expireOldMessages", move |c| async move {
            let msgs = c
                .simple_query(&sql)
                .await
                .map_err(DbError::query("expireOldMessages"))?;
            Ok(msgs.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get(0).and_then(|v| v.parse::<usize>().ok())
                }
                _ => None,
            }))
        });
        r.ok().flatten().unwrap_or(0)
    }

    fn count_queues(&self) -> (usize, usize) {
        let r = self.run("getEntityCounts", |c| async move {
            let r = c
                .query_one(
                    "SELECT (SELECT COUNT(1) FROM msg_queues WHERE deleted_at IS NULL), \
                     (SELECT COUNT(1) FROM msg_queues WHERE deleted_at IS NULL AND notifier_id IS NOT NULL)",
                    &[],
                )
                .await
                .map_err(DbError::query("getEntityCounts"))?;
            Ok((r.get::<_, i64>(0), r.get::<_, i64>(1)))
        });
        let (q, n) = r.unwrap_or((0, 0));
        (q as usize, n as usize)
    }

    fn services(&self) -> Option<Arc<crate::store::services::ServiceStore>> {
        Some(self.services.clone())
    }

    fn count_messages(&self) -> usize {
        self.run("getDbMessageCount", |c| async move {
            let r = c
                .query_one("SELECT COUNT(*) FROM messages WHERE NOT msg_quota", &[])
                .await
                .map_err(DbError::query("getDbMessageCount"))?;
            Ok(r.get::<_, i64>(0))
        })
        .unwrap_or(0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_read_the_columns_rows_decodes() {
        for sql in [
            SELECT_BY_RECIPIENT,
            SELECT_BY_SENDER,
            SELECT_BY_NOTIFIER,
            SELECT_BY_LINK,
        ] {
            assert!(sql.contains(rows::QUEUE_COLUMNS), "{sql}");
        }
    }
}
