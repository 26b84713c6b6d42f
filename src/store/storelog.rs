//! Store log records (`smp-server-store.log`), byte-compatible with the reference. No I/O.
//!
//! One record per line:
//!
//! ```text
//! CREATE rid=<id> rk=<key>[,<key>...] rdh=<secret> sid=<id> sk=[<key>][ queue_mode=M|C]
//!        [ link_id=<id> queue_data=<fixed> <user>][ notifier=<nid> <nkey> <secret>[ nsrv=<id>]]
//!        [ updated_at=<day>][ status=off|blocked,<info>][ rsrv=<id>]
//! LINK <rid> <link id> <fixed data> <user data>    LDELETE <rid>
//! SECURE <rid> <key>    KEYS <rid> <key>[,<key>...]    NOTIFIER <rid> <nid> <nkey> <secret>
//! SUSPEND <rid>    BLOCK <rid> reason=spam|content[,notice={...}]    UNBLOCK <rid>
//! DELETE <rid>    NDELETE <rid>    TIME <rid> <day>
//! NEW_SERVICE ...    QUEUE_SERVICE ...   (client services: see `store::services`)
//! ```
//!
//! IDs, secrets and link data are base64url with padding; keys are base64url SPKI DER. Older
//! logs may carry ` sndSecure=T|F` instead of ` queue_mode=`. Service IDs (`rsrv=`, `nsrv=`)
//! are skipped here and read by `store::services::line_service_ids`.

use super::strenc::{b64, key, keys, Cursor, ParseError};
use super::{NtfCreds, QueueBody, QueueRec, QueueStatus};
use crate::crypto::keys::PublicKey;
use crate::protocol::command::{QueueLinkData, QueueMode};
use crate::protocol::errors::BlockingInfo;

/// One line of the store log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLogRecord {
    /// `CREATE`: a queue with its whole record.
    Create(Box<QueueRec>),
    /// `LINK`: link ID and data added to a queue.
    Link(Vec<u8>, Vec<u8>, QueueLinkData),
    /// `LDELETE`: link data removed.
    DeleteLink(Vec<u8>),
    /// `SECURE`: sender key set.
    Secure(Vec<u8>, PublicKey),
    /// `KEYS`: recipient keys replaced.
    Keys(Vec<u8>, Vec<PublicKey>),
    /// `NOTIFIER`: notifier credentials added or replaced.
    Notifier(Vec<u8>, NtfCreds),
    /// `SUSPEND`: queue turned off by its recipient.
    Suspend(Vec<u8>),
    /// `BLOCK`: queue blocked by the operator.
    Block(Vec<u8>, BlockingInfo),
    /// `UNBLOCK`: queue active again.
    Unblock(Vec<u8>),
    /// `DELETE`: queue deleted.
    Delete(Vec<u8>),
    /// `NDELETE`: notifier removed.
    DeleteNotifier(Vec<u8>),
    /// `TIME`: day the queue was last used.
    Time(Vec<u8>, i64),
    /// `NEW_SERVICE ...`: a client service record (the whole line).
    NewService(Vec<u8>),
    /// `QUEUE_SERVICE ...`: a queue's service association (the whole line).
    QueueService(Vec<u8>),
}

fn status_text(s: &QueueStatus) -> Option<String> {
    match s {
        QueueStatus::Active => None,
        QueueStatus::Off => Some("off".into()),
        QueueStatus::Blocked(i) => Some(format!("blocked,{}", i.to_text())),
    }
}

fn ntf_text(n: &NtfCreds) -> String {
    format!(
        "{} {} {}",
        b64(&n.notifier_id),
        key(&n.notifier_key),
        b64(&n.rcv_ntf_dh_secret)
    )
}

/// The queue record part of `CREATE` (everything after `rid=<id> `).
pub fn encode_queue_rec(q: &QueueRec) -> String {
    encode_queue_rec_with(q, None, None)
}

/// [`encode_queue_rec`] with the queue's service associations (`rsrv=`, `nsrv=`), as the
/// reference writes them on compaction.
pub fn encode_queue_rec_with(q: &QueueRec, rsrv: Option<&[u8]>, nsrv: Option<&[u8]>) -> String {
    let mut s = format!(
        "rk={} rdh={} sid={} sk={}",
        keys(&q.recipient_keys),
        b64(&q.rcv_dh_secret),
        b64(&q.sender_id),
        q.sender_key.as_ref().map(key).unwrap_or_default()
    );
    if let Some(m) = q.queue_mode {
        s.push_str(match m {
            QueueMode::Messaging => " queue_mode=M",
            QueueMode::Contact => " queue_mode=C",
        });
    }
    if let Some((lid, (fixed, user))) = q.queue_data.as_deref() {
        s.push_str(&format!(
            " link_id={} queue_data={} {}",
            b64(lid),
            b64(fixed),
            b64(user)
        ));
    }
    if let Some(n) = &q.notifier {
        s.push_str(&format!(" notifier={}", ntf_text(n)));
        if let Some(id) = nsrv {
            s.push_str(&format!(" nsrv={}", b64(id)));
        }
    }
    if let Some(t) = q.updated_at.get() {
        s.push_str(&format!(" updated_at={t}"));
    }
    if let Some(st) = status_text(&q.status) {
        s.push_str(&format!(" status={st}"));
    }
    if let Some(id) = rsrv {
        s.push_str(&format!(" rsrv={}", b64(id)));
    }
    s
}

impl StoreLogRecord {
    /// The line without its newline.
    pub fn encode(&self) -> Vec<u8> {
        use StoreLogRecord::*;
        let s = match self {
            Create(q) => format!(
                "CREATE rid={} {}",
                b64(&q.recipient_id),
                encode_queue_rec(q)
            ),
            Link(r, l, (f, u)) => format!("LINK {} {} {} {}", b64(r), b64(l), b64(f), b64(u)),
            DeleteLink(r) => format!("LDELETE {}", b64(r)),
            Secure(r, k) => format!("SECURE {} {}", b64(r), key(k)),
            Keys(r, ks) => format!("KEYS {} {}", b64(r), keys(ks)),
            Notifier(r, n) => format!("NOTIFIER {} {}", b64(r), ntf_text(n)),
            Suspend(r) => format!("SUSPEND {}", b64(r)),
            Block(r, i) => format!("BLOCK {} {}", b64(r), i.to_text()),
            Unblock(r) => format!("UNBLOCK {}", b64(r)),
            Delete(r) => format!("DELETE {}", b64(r)),
            DeleteNotifier(r) => format!("NDELETE {}", b64(r)),
            Time(r, t) => format!("TIME {} {t}", b64(r)),
            NewService(line) | QueueService(line) => return line.clone(),
        };
        s.into_bytes()
    }

    /// Parse one line (without its newline); the whole line must be consumed.
    pub fn parse(line: &[u8]) -> Result<Self, ParseError> {
        use StoreLogRecord::*;
        let mut c = Cursor::new(line);
        // Longer tags first where one is a prefix of another (none are, but keep it explicit).
        let r = if c.try_tag("CREATE rid=") {
            let rid = c.bytes()?;
            c.space()?;
            Create(Box::new(parse_queue_rec(&mut c, rid)?))
        } else if c.try_tag("LINK ") {
            let r = c.bytes()?;
            c.space()?;
            let l = c.bytes()?;
            c.space()?;
            let f = c.bytes()?;
            c.space()?;
            Link(r, l, (f, c.bytes()?))
        } else if c.try_tag("LDELETE ") {
            DeleteLink(c.bytes()?)
        } else if c.try_tag("SECURE ") {
            let r = c.bytes()?;
            c.space()?;
            Secure(r, c.key()?)
        } else if c.try_tag("KEYS ") {
            let r = c.bytes()?;
            c.space()?;
            Keys(r, c.keys()?)
        } else if c.try_tag("NOTIFIER ") {
            let r = c.bytes()?;
            c.space()?;
            Notifier(r, parse_ntf(&mut c)?)
        } else if c.try_tag("SUSPEND ") {
            Suspend(c.bytes()?)
        } else if c.try_tag("BLOCK ") {
            let r = c.bytes()?;
            c.space()?;
            Block(r, parse_blocking(&mut c)?)
        } else if c.try_tag("UNBLOCK ") {
            Unblock(c.bytes()?)
        } else if c.try_tag("DELETE ") {
            Delete(c.bytes()?)
        } else if c.try_tag("NDELETE ") {
            DeleteNotifier(c.bytes()?)
        } else if c.try_tag("TIME ") {
            let r = c.bytes()?;
            c.space()?;
            Time(r, c.int()?)
        } else if c.try_tag("NEW_SERVICE ") {
            c.rest();
            NewService(line.to_vec())
        } else if c.try_tag("QUEUE_SERVICE ") {
            c.rest();
            QueueService(line.to_vec())
        } else {
            return Err(c.err("record type (CREATE, LINK, SECURE, ...)"));
        };
        c.end()?;
        Ok(r)
    }
}

fn parse_ntf(c: &mut Cursor<'_>) -> Result<NtfCreds, ParseError> {
    let notifier_id = c.bytes()?;
    c.space()?;
    let notifier_key = c.key()?;
    c.space()?;
    let rcv_ntf_dh_secret = c.fixed::<32>("32-byte DH secret")?;
    if c.try_tag(" nsrv=") {
        c.bytes()?;
    }
    Ok(NtfCreds {
        notifier_id,
        notifier_key,
        rcv_ntf_dh_secret,
    })
}

fn parse_blocking(c: &mut Cursor<'_>) -> Result<BlockingInfo, ParseError> {
    let at = c.err("");
    let t = c.take_till(b" \n");
    BlockingInfo::parse(t).map_err(|_| ParseError {
        what: "blocking info (reason=spam|content)",
        at: at.at,
    })
}

fn parse_queue_rec(c: &mut Cursor<'_>, recipient_id: Vec<u8>) -> Result<QueueRec, ParseError> {
    c.tag("rk=")?;
    let recipient_keys = c.keys()?;
    c.tag(" rdh=")?;
    let rcv_dh_secret = c.fixed::<32>("32-byte DH secret")?;
    c.tag(" sid=")?;
    let sender_id = c.bytes()?;
    c.tag(" sk=")?;
    let sender_key = match c.opt_bytes()? {
        None => None,
        Some(der) => Some(PublicKey::from_der(&der).map_err(|_| c.err("sender key"))?),
    };
    let queue_mode = if c.try_tag(" sndSecure=") {
        let v = c.take_till(b" ");
        Some(match v {
            b"T" => QueueMode::Messaging,
            b"F" => QueueMode::Contact,
            _ => return Err(c.err("sndSecure=T|F")),
        })
    } else if c.try_tag(" queue_mode=") {
        let v = c.take_till(b" ");
        Some(match v {
            b"M" => QueueMode::Messaging,
            b"C" => QueueMode::Contact,
            _ => return Err(c.err("queue_mode=M|C")),
        })
    } else {
        None
    };
    let queue_data = if c.try_tag(" link_id=") {
        let lid = c.bytes()?;
        c.tag(" queue_data=")?;
        let f = c.bytes()?;
        c.space()?;
        Some(Box::new((lid, (f, c.bytes()?))))
    } else {
        None
    };
    let notifier = if c.try_tag(" notifier=") {
        Some(Box::new(parse_ntf(c)?))
    } else {
        None
    };
    let updated_at = if c.try_tag(" updated_at=") {
        Some(c.int()?)
    } else {
        None
    };
    let status = if c.try_tag(" status=") {
        if c.try_tag("active") {
            QueueStatus::Active
        } else if c.try_tag("off") {
            QueueStatus::Off
        } else if c.try_tag("blocked,") {
            QueueStatus::Blocked(Box::new(parse_blocking(c)?))
        } else {
            return Err(c.err("status=active|off|blocked,..."));
        }
    } else {
        QueueStatus::Active
    };
    if c.try_tag(" rsrv=") {
        c.bytes()?;
    }
    Ok(QueueRec {
        recipient_id: recipient_id.into(),
        sender_id: sender_id.into(),
        body: QueueBody {
            recipient_keys: recipient_keys.into(),
            rcv_dh_secret,
            sender_key,
            queue_mode,
            queue_data,
            notifier,
            status,
            updated_at: updated_at.into(),
        },
    })
}

/// The records that turn `old` into `new` (what a queue change writes to the log).
pub fn update_records(old: &QueueRec, new: &QueueRec) -> Vec<StoreLogRecord> {
    use StoreLogRecord::*;
    let rid = || new.recipient_id.to_vec();
    let mut v = Vec::new();
    if old.sender_key != new.sender_key {
        if let Some(k) = &new.sender_key {
            v.push(Secure(rid(), k.clone()));
        }
    }
    if old.recipient_keys != new.recipient_keys {
        v.push(Keys(rid(), new.recipient_keys.to_vec()));
    }
    if old.queue_data != new.queue_data {
        v.push(match new.queue_data.as_deref() {
            Some((l, d)) => Link(rid(), l.clone(), d.clone()),
            None => DeleteLink(rid()),
        });
    }
    if old.notifier != new.notifier {
        v.push(match &new.notifier {
            Some(n) => Notifier(rid(), (**n).clone()),
            None => DeleteNotifier(rid()),
        });
    }
    if old.status != new.status {
        v.push(match &new.status {
            QueueStatus::Active => Unblock(rid()),
            QueueStatus::Off => Suspend(rid()),
            QueueStatus::Blocked(i) => Block(rid(), (**i).clone()),
        });
    }
    if old.updated_at != new.updated_at {
        if let Some(t) = new.updated_at.get() {
            v.push(Time(rid(), t));
        }
    }
    v
}

#[cfg(test)]
#[path = "storelog_tests.rs"]
mod tests;
