//! Services in PostgreSQL, on the reference's schema: a row in `services` per service, the
//! association of a queue in its `msg_queues.rcv_service_id` / `ntf_service_id`, and each
//! service's queue count and IdsHash in `services.queue_count` / `queue_ids_hash`, kept by the
//! triggers of migration `20250915_queue_ids_hash` (so a SUBS/NSUBS reads them, never the
//! queues). Nothing per queue is kept in memory.
//!
//! The queue statements of [`super::PgStore`] already clear what a change of the queue ends
//! (a new or removed notifier sets `ntf_service_id = NULL`; a deleted queue stops counting when
//! `deleted_at` is set), so [`ServiceBackend::forget`] has nothing to do here.
//!
//! `service_cert` holds the chain as the reference encodes it: a count byte, then each DER
//! certificate with a 2-byte length. `created_at` is Unix seconds; `service_role` is `M`/`N`/`P`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::db::{Db, DbError};
use crate::protocol::encoding::{Decoder, Encoder};
use crate::protocol::errors::ErrorType;
use crate::protocol::handshake::ServiceRole;
use crate::store::services::{
    encode_queue_service, role_byte, AssocChange, ServiceBackend, ServiceRec, SubParty,
};
use crate::store::storelog::StoreLogRecord;
use crate::store::storelog_file::StoreLogWriter;
use crate::sync::lock;

/// The columns of a service row, in [`service_from_row`]'s order.
pub const SERVICE_COLUMNS: &str =
    "service_id, service_role, service_cert, service_cert_hash, created_at";

/// Encode a certificate chain for `service_cert`.
pub fn encode_chain(chain: &[Vec<u8>]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.list(chain, |e, c| {
        e.large_bytes(c);
    });
    e.finish()
}

/// Decode [`encode_chain`].
pub fn decode_chain(b: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut d = Decoder::new(b);
    let chain = d.non_empty(|d| d.large_bytes().map(<[u8]>::to_vec)).ok()?;
    d.finish().ok()?;
    Some(chain)
}

/// The `service_role` text.
pub fn role_text(r: ServiceRole) -> String {
    (role_byte(r) as char).to_string()
}

/// A service row (columns [`SERVICE_COLUMNS`]); `None` if it does not decode.
pub fn service_from_row(r: &tokio_postgres::Row) -> Option<ServiceRec> {
    let role: String = r.get(1);
    let cert: Vec<u8> = r.get(2);
    Some(ServiceRec {
        id: r.get(0),
        role: crate::store::services::parse_role(role.as_bytes())?,
        cert: decode_chain(&cert)?,
        cert_hash: r.get(3),
        created_at: r.get(4),
    })
}

/// The column of a party's association, and the condition that the queue can have one.
fn column(p: SubParty) -> (&'static str, &'static str) {
    match p {
        SubParty::Recipient => ("rcv_service_id", ""),
        SubParty::Notifier => ("ntf_service_id", " AND notifier_id IS NOT NULL"),
    }
}

/// The role whose services hold a party's associations.
fn party_role(p: SubParty) -> &'static str {
    match p {
        SubParty::Recipient => "M",
        SubParty::Notifier => "N",
    }
}

/// The database backend of [`crate::store::services::ServiceStore`].
pub struct PgServices {
    db: Arc<Db>,
    /// The store log with `db_store_log = on` (written after each commit; failures logged).
    log: Option<Arc<StoreLogWriter>>,
    /// Whether any service exists: until one does, no queue can be associated and the
    /// per-message lookup ([`ServiceBackend::service_of`]) needs no query.
    any: AtomicBool,
    /// Handshakes of one certificate racing each other create one row (the reference locks
    /// per certificate hash; handshakes are rare, so one lock does).
    create: Mutex<()>,
    /// When a failure was last logged (at most one line per 10 s: lookups run per message).
    last_error_log: AtomicI64,
}

impl PgServices {
    /// Log a database failure (at most once per 10 s) and turn it into `STORE`.
    fn fail(&self, e: DbError) -> ErrorType {
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
        store_error(e)
    }
}

fn store_error(e: DbError) -> ErrorType {
    let op = match &e {
        DbError::Config(_) => "config",
        DbError::Connect { op, .. }
        | DbError::Query { op, .. }
        | DbError::Timeout { op }
        | DbError::Other { op, .. } => op,
    };
    ErrorType::Store(format!("{op}, withDB"))
}

impl PgServices {
    /// On `db`, writing service records to `log` too.
    pub fn new(db: Arc<Db>, log: Option<Arc<StoreLogWriter>>) -> Self {
        let any = db
            .run("getServices", |c| async move {
                let r = c
                    .query_one("SELECT EXISTS (SELECT 1 FROM services)", &[])
                    .await
                    .map_err(DbError::query("getServices"))?;
                Ok(r.get::<_, bool>(0))
            })
            // unknown: look queues up
            .unwrap_or(true);
        PgServices {
            db,
            log,
            any: AtomicBool::new(any),
            create: Mutex::new(()),
            last_error_log: AtomicI64::new(0),
        }
    }

    fn write_log(&self, op: &str, line: Vec<u8>) {
        if let Some(w) = &self.log {
            if let Err(e) = w.write_records(op, &[StoreLogRecord::NewService(line)]) {
                tracing::warn!("STORE: {op}, db_store_log write failed: {e:?}");
            }
        }
    }

    /// The service of a certificate hash: (ID, role).
    fn find(&self, hash: Vec<u8>) -> Result<Option<(Vec<u8>, String)>, DbError> {
        self.db.run("getCreateService", move |c| async move {
            let r = c
                .query_opt(
                    "SELECT service_id, service_role FROM services WHERE service_cert_hash = $1",
                    &[&hash],
                )
                .await
                .map_err(DbError::query("getCreateService"))?;
            Ok(r.map(|r| (r.get(0), r.get(1))))
        })
    }
}

impl ServiceBackend for PgServices {
    fn get_or_create(
        &self,
        role: ServiceRole,
        cert: &[Vec<u8>],
        cert_hash: &[u8],
        now: i64,
        new_id: &mut dyn FnMut() -> Vec<u8>,
    ) -> Result<Vec<u8>, ErrorType> {
        let _g = lock(&self.create);
        // A unique violation is a taken service ID (or another server process creating the
        // same service): look again, with a new ID.
        for _ in 0..3 {
            if let Some((id, r)) = self.find(cert_hash.to_vec()).map_err(|e| self.fail(e))? {
                return match r == role_text(role) {
                    true => Ok(id),
                    false => Err(ErrorType::Service),
                };
            }
            let rec = ServiceRec {
                id: new_id(),
                role,
                cert: cert.to_vec(),
                cert_hash: cert_hash.to_vec(),
                created_at: now,
            };
            let (id, role_t, chain, hash) = (
                rec.id.clone(),
                role_text(role),
                encode_chain(cert),
                rec.cert_hash.clone(),
            );
            let r = self.db.run("getCreateService", move |c| async move {
                c.execute(
                    &format!("INSERT INTO services ({SERVICE_COLUMNS}) VALUES ($1,$2,$3,$4,$5)"),
                    &[&id, &role_t, &chain, &hash, &now],
                )
                .await
                .map_err(DbError::query("getCreateService"))
            });
            match r {
                Ok(_) => {
                    self.any.store(true, Ordering::Relaxed);
                    self.write_log("getCreateService", rec.encode());
                    return Ok(rec.id);
                }
                Err(e) if e.is_unique_violation() => continue,
                Err(e) => return Err(self.fail(e)),
            }
        }
        Err(ErrorType::Internal)
    }

    fn service_of(&self, p: SubParty, rid: &[u8]) -> Result<Option<Vec<u8>>, ErrorType> {
        if !self.any.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let (col, cond) = column(p);
        let sql = format!(
            "SELECT {col} FROM msg_queues WHERE recipient_id = $1 AND deleted_at IS NULL{cond}"
        );
        let rid = rid.to_vec();
        self.db
            .run("getQueueService", move |c| async move {
                let st = c
                    .prepare_cached(&sql)
                    .await
                    .map_err(DbError::query("getQueueService"))?;
                let r = c
                    .query_opt(&st, &[&rid])
                    .await
                    .map_err(DbError::query("getQueueService"))?;
                Ok(r.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
            })
            .map_err(|e| self.fail(e))
    }

    fn set(
        &self,
        p: SubParty,
        rid: &[u8],
        _qid: &[u8],
        sid: Option<&[u8]>,
    ) -> Result<AssocChange, ErrorType> {
        let (col, cond) = column(p);
        let (rid2, sid2) = (rid.to_vec(), sid.map(<[u8]>::to_vec));
        let r = self.db.run("setQueueService", move |mut c| async move {
            let op = "setQueueService";
            let tx = c.transaction().await.map_err(DbError::query(op))?;
            let prev = tx
                .query_opt(
                    &format!(
                        "SELECT {col} FROM msg_queues WHERE recipient_id = $1 \
                         AND deleted_at IS NULL{cond} FOR UPDATE"
                    ),
                    &[&rid2],
                )
                .await
                .map_err(DbError::query(op))?;
            let Some(prev) = prev else { return Ok(None) };
            let prev: Option<Vec<u8>> = prev.get(0);
            let change = match (&prev, &sid2) {
                (None, None) => AssocChange::Unchanged,
                (Some(a), Some(b)) if a == b => AssocChange::Duplicate,
                (None, Some(_)) => AssocChange::New,
                (Some(_), Some(_)) => AssocChange::Updated,
                (Some(_), None) => AssocChange::Removed,
            };
            if !matches!(change, AssocChange::Unchanged | AssocChange::Duplicate) {
                tx.execute(
                    &format!("UPDATE msg_queues SET {col} = $2 WHERE recipient_id = $1"),
                    &[&rid2, &sid2],
                )
                .await
                .map_err(DbError::query(op))?;
            }
            tx.commit().await.map_err(DbError::query(op))?;
            Ok(Some(change))
        });
        let change = r.map_err(|e| self.fail(e))?.ok_or(ErrorType::Auth)?;
        if !matches!(change, AssocChange::Unchanged | AssocChange::Duplicate) {
            self.write_log("setQueueService", encode_queue_service(rid, p, sid));
        }
        Ok(change)
    }

    fn forget(&self, _p: SubParty, _rid: &[u8], _qid: &[u8]) {}

    fn count_hash(&self, p: SubParty, sid: &[u8]) -> Result<(i64, [u8; 16]), ErrorType> {
        let (sid, role) = (sid.to_vec(), party_role(p));
        let r = self
            .db
            .run("getServiceQueueCountHash", move |c| async move {
                let r = c
                    .query_opt(
                        "SELECT queue_count, queue_ids_hash FROM services \
                         WHERE service_id = $1 AND service_role = $2",
                        &[&sid, &role],
                    )
                    .await
                    .map_err(DbError::query("getServiceQueueCountHash"))?;
                Ok(r.map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1))))
            })
            .map_err(|e| self.fail(e))?;
        match r {
            None => Ok((0, [0; 16])),
            Some((n, h)) => Ok((n, h.try_into().map_err(|_| ErrorType::Internal)?)),
        }
    }

    fn queues_of(&self, p: SubParty, sid: &[u8]) -> Result<Vec<Vec<u8>>, ErrorType> {
        let (col, cond) = column(p);
        let sql = format!(
            "SELECT recipient_id FROM msg_queues WHERE {col} = $1 AND deleted_at IS NULL{cond}"
        );
        let sid = sid.to_vec();
        self.db
            .run("foldServiceQueueRecs", move |c| async move {
                let rows = c
                    .query(&sql, &[&sid])
                    .await
                    .map_err(DbError::query("foldServiceQueueRecs"))?;
                Ok(rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
            })
            .map_err(|e| self.fail(e))
    }

    fn counts(&self) -> (usize, usize, usize, usize) {
        let r = self.db.run("getEntityCounts", |c| async move {
            let r = c
                .query_one(
                    "SELECT (SELECT COUNT(1) FROM services WHERE service_role = 'M'), \
                     (SELECT COUNT(1) FROM services WHERE service_role = 'N'), \
                     (SELECT COUNT(1) FROM msg_queues WHERE rcv_service_id IS NOT NULL AND deleted_at IS NULL), \
                     (SELECT COUNT(1) FROM msg_queues WHERE ntf_service_id IS NOT NULL AND deleted_at IS NULL)",
                    &[],
                )
                .await
                .map_err(DbError::query("getEntityCounts"))?;
            Ok((0..4).map(|i| r.get::<_, i64>(i) as usize).collect::<Vec<_>>())
        });
        match r.as_deref() {
            Ok([a, b, c, d]) => (*a, *b, *c, *d),
            _ => (0, 0, 0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_encode_as_the_reference() {
        let chain = vec![vec![1u8; 3], vec![2u8; 300]];
        let enc = encode_chain(&chain);
        // count byte, then each certificate with a 2-byte big-endian length
        assert_eq!(&enc[..6], &[2, 0, 3, 1, 1, 1]);
        assert_eq!(&enc[6..8], &[1, 44]);
        assert_eq!(decode_chain(&enc), Some(chain));
        assert_eq!(decode_chain(&[0]), None, "an empty chain is not a chain");
        assert_eq!(decode_chain(&enc[..enc.len() - 1]), None);
    }
}
