//! Moving queues and messages between the reference's files and the database
//! (`smp-server database import|export`).
//!
//! Queues come from a replayed store log (so the database gets the compacted state) and go out
//! as a compacted store log; messages come from and go to `smp-server-messages.log` lines.
//! Services travel with the queues: `NEW_SERVICE` records become `services` rows (inserted
//! first, the queues refer to them) and queue associations (`QUEUE_SERVICE`, `rsrv=`/`nsrv=`)
//! the queues' `rcv_service_id` / `ntf_service_id`; the triggers count them as they arrive.
//! Imports use `COPY` in one transaction each, so a failed import leaves no half table. Messages
//! whose queue is not in the database are skipped and counted, not failed on.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::db::{Db, DbError};
use super::rows::{message_from_row, message_parts, queue_from_row, QueueRow, QUEUE_COLUMNS};
use super::services::{encode_chain, role_text, service_from_row, SERVICE_COLUMNS};
use crate::store::memory::MemoryStore;
use crate::store::msgfile::{encode_msg, parse_msg};
use crate::store::services::ServiceData;
use crate::store::{Message, Store};

fn other(op: &'static str, what: impl std::fmt::Display) -> DbError {
    DbError::Other {
        op,
        what: what.to_string(),
    }
}

const QUEUE_TYPES: [Type; 16] = [
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    // rcv_service_id, ntf_service_id
    Type::BYTEA,
    Type::BYTEA,
];

/// Counts of a queues import.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueImport {
    /// Services inserted.
    pub services: u64,
    /// Queues inserted.
    pub queues: u64,
}

/// Insert every service of `svc` and every queue of `st` (a replayed store log) with its
/// associations, in one transaction.
pub fn import_queues(db: &Db, st: &MemoryStore, svc: &ServiceData) -> Result<QueueImport, DbError> {
    type Assoc = (Option<Vec<u8>>, Option<Vec<u8>>);
    let rows: Vec<(QueueRow, Assoc)> = st
        .all_queues()
        .iter()
        .filter_map(|q| q.rec().ok())
        .map(|r| {
            let rid: &[u8] = &r.recipient_id;
            let ntf = svc.ntf.get(rid).filter(|_| r.notifier.is_some()).cloned();
            (QueueRow::new(&r), (svc.rcv.get(rid).cloned(), ntf))
        })
        .collect();
    let services: Vec<_> = svc
        .services
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                role_text(s.role),
                encode_chain(&s.cert),
                s.cert_hash.clone(),
                s.created_at,
            )
        })
        .collect();
    db.run_unbounded("importing queues", move |mut c| async move {
        let op = "importing queues";
        let tx = c.transaction().await.map_err(DbError::query(op))?;
        let ins = tx
            .prepare(&format!(
                "INSERT INTO services ({SERVICE_COLUMNS}) VALUES ($1,$2,$3,$4,$5)"
            ))
            .await
            .map_err(DbError::query(op))?;
        let mut n_services = 0;
        for (id, role, cert, hash, at) in &services {
            n_services += tx
                .execute(&ins, &[id, role, cert, hash, at])
                .await
                .map_err(DbError::query(op))?;
        }
        let sink = tx
            .copy_in(&format!(
                "COPY msg_queues ({QUEUE_COLUMNS}, rcv_service_id, ntf_service_id) FROM STDIN BINARY"
            ))
            .await
            .map_err(DbError::query(op))?;
        let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &QUEUE_TYPES));
        for (r, (rsrv, nsrv)) in &rows {
            let mut params = r.params().to_vec();
            params.push(rsrv);
            params.push(nsrv);
            w.as_mut()
                .write(&params)
                .await
                .map_err(DbError::query(op))?;
        }
        let n = w.finish().await.map_err(DbError::query(op))?;
        tx.commit().await.map_err(DbError::query(op))?;
        Ok(QueueImport {
            services: n_services,
            queues: n,
        })
    })
}

/// Every service and the associations of live queues (to write a compacted store log with).
pub fn load_services(db: &Db) -> Result<ServiceData, DbError> {
    let op = "exporting services";
    let (services, queues) = db.run(op, move |c| async move {
        let s = c
            .query(
                &format!("SELECT {SERVICE_COLUMNS} FROM services ORDER BY created_at, service_id"),
                &[],
            )
            .await
            .map_err(DbError::query(op))?;
        let q = c
            .query(
                "SELECT recipient_id, rcv_service_id, ntf_service_id FROM msg_queues \
                 WHERE deleted_at IS NULL \
                 AND (rcv_service_id IS NOT NULL OR ntf_service_id IS NOT NULL)",
                &[],
            )
            .await
            .map_err(DbError::query(op))?;
        Ok((s, q))
    })?;
    let mut data = ServiceData::default();
    for r in &services {
        data.add_service(service_from_row(r).ok_or_else(|| other(op, "bad row in services"))?);
    }
    for r in &queues {
        let rid: Vec<u8> = r.get(0);
        if let Some(s) = r.get::<_, Option<Vec<u8>>>(1) {
            data.rcv.insert(rid.clone(), s);
        }
        if let Some(s) = r.get::<_, Option<Vec<u8>>>(2) {
            data.ntf.insert(rid, s);
        }
    }
    Ok(data)
}

/// Counts of a messages import.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MessageImport {
    /// Lines read.
    pub read: u64,
    /// Messages stored.
    pub stored: u64,
    /// Skipped: their queue is not in the database.
    pub no_queue: u64,
}

/// Import `smp-server-messages.log` lines, replacing any messages in the database, and set
/// each queue's size and quota state from what was imported (as the reference does).
pub fn import_messages(db: &Db, path: &Path) -> Result<MessageImport, DbError> {
    let op = "importing messages";
    let f = std::fs::File::open(path).map_err(|e| other(op, format!("{}: {e}", path.display())))?;
    let mut msgs = Vec::new();
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(|e| other(op, format!("{}: {e}", path.display())))?;
        if line.is_empty() {
            continue;
        }
        match parse_msg(&line) {
            Ok(m) => msgs.push(m),
            Err(e) => eprintln!("Error parsing line {}: {e}", i + 1),
        }
    }
    let read = msgs.len() as u64;
    let (stored, total) = db.run_unbounded(op, move |mut c| async move {
        let tx = c.transaction().await.map_err(DbError::query(op))?;
        tx.batch_execute(
            "TRUNCATE messages; \
             CREATE TEMP TABLE import_messages (seq BIGSERIAL, recipient_id BYTEA, msg_id BYTEA, \
             msg_ts BIGINT, msg_quota BOOLEAN, msg_ntf_flag BOOLEAN, msg_body BYTEA) ON COMMIT DROP",
        )
        .await
        .map_err(DbError::query(op))?;
        let sink = tx
            .copy_in(
                "COPY import_messages (recipient_id, msg_id, msg_ts, msg_quota, msg_ntf_flag, msg_body) \
                 FROM STDIN BINARY",
            )
            .await
            .map_err(DbError::query(op))?;
        let types = [
            Type::BYTEA,
            Type::BYTEA,
            Type::INT8,
            Type::BOOL,
            Type::BOOL,
            Type::BYTEA,
        ];
        let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for (rid, m) in &msgs {
            let (quota, ntf, body) = message_parts(m);
            let id = m.msg_id().to_vec();
            let ts = m.ts();
            w.as_mut()
                .write(&[rid, &id, &ts, &quota, &ntf, &body])
                .await
                .map_err(DbError::query(op))?;
        }
        w.finish().await.map_err(DbError::query(op))?;
        let stored = tx
            .execute(
                "INSERT INTO messages (recipient_id, msg_id, msg_ts, msg_quota, msg_ntf_flag, msg_body) \
                 SELECT i.recipient_id, i.msg_id, i.msg_ts, i.msg_quota, i.msg_ntf_flag, i.msg_body \
                 FROM import_messages i \
                 WHERE EXISTS (SELECT 1 FROM msg_queues q WHERE q.recipient_id = i.recipient_id \
                               AND q.deleted_at IS NULL) \
                 ORDER BY i.seq",
                &[],
            )
            .await
            .map_err(DbError::query(op))?;
        tx.batch_execute(
            "UPDATE msg_queues SET msg_queue_size = 0, msg_can_write = TRUE, msg_queue_expire = FALSE \
               WHERE msg_queue_size <> 0 OR NOT msg_can_write OR msg_queue_expire; \
             UPDATE msg_queues q SET msg_queue_size = s.size, msg_can_write = s.quotas = 0, \
               msg_queue_expire = s.size > s.quotas \
             FROM (SELECT recipient_id, COUNT(*) AS size, \
                          COUNT(*) FILTER (WHERE msg_quota) AS quotas \
                   FROM messages GROUP BY recipient_id) s \
             WHERE q.recipient_id = s.recipient_id;",
        )
        .await
        .map_err(DbError::query(op))?;
        tx.commit().await.map_err(DbError::query(op))?;
        Ok((stored, read))
    })?;
    Ok(MessageImport {
        read: total,
        stored,
        no_queue: total - stored,
    })
}

/// Every live queue, into a memory store (to write a compacted store log from).
pub fn load_queues(db: &Db) -> Result<MemoryStore, DbError> {
    let op = "exporting queues";
    let rows = db.run_unbounded(op, move |c| async move {
        c.query(
            &format!(
                "SELECT {QUEUE_COLUMNS} FROM msg_queues WHERE deleted_at IS NULL ORDER BY recipient_id"
            ),
            &[],
        )
        .await
        .map_err(DbError::query(op))
    })?;
    let st = MemoryStore::new();
    for r in &rows {
        let rec = queue_from_row(r).map_err(|e| other(op, e))?;
        st.add_queue(rec)
            .map_err(|e| other(op, format!("duplicate queue ID ({e:?})")))?;
    }
    Ok(st)
}

/// Write the messages of live queues to `path` as `smp-server-messages.log` lines, oldest
/// first per queue; returns how many.
pub fn export_messages(db: &Db, path: &Path) -> Result<u64, DbError> {
    let op = "exporting messages";
    let rows = db.run_unbounded(op, move |c| async move {
        c.query(
            "SELECT m.recipient_id, m.msg_id, m.msg_ts, m.msg_quota, m.msg_ntf_flag, m.msg_body \
             FROM messages m JOIN msg_queues q ON q.recipient_id = m.recipient_id \
             WHERE q.deleted_at IS NULL ORDER BY m.recipient_id, m.message_id",
            &[],
        )
        .await
        .map_err(DbError::query(op))
    })?;
    let io = |e: std::io::Error| other(op, format!("{}: {e}", path.display()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    let mut w = BufWriter::new(f);
    let mut n = 0;
    for r in &rows {
        let rid: Vec<u8> = r.get(0);
        let m: Message = message_from_row(r, 1).map_err(|e| other(op, e))?;
        w.write_all(&encode_msg(&rid, &m)).map_err(io)?;
        w.write_all(b"\n").map_err(io)?;
        n += 1;
    }
    w.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    Ok(n)
}

/// Messages in the database (quota markers included).
pub fn count_messages(db: &Db) -> Result<i64, DbError> {
    db.run_unbounded("counting messages", |c| async move {
        let r = c
            .query_one("SELECT COUNT(*) FROM messages", &[])
            .await
            .map_err(DbError::query("counting messages"))?;
        Ok(r.get::<_, i64>(0))
    })
}
