//! Queue records and messages to and from the reference's columns.
//!
//! Column encodings (the reference's): keys are SubjectPublicKeyInfo DER; `recipient_keys` is a
//! count byte followed by each key as a length byte and its DER; `rcv_dh_secret` and
//! `rcv_ntf_dh_secret` are the raw 32 bytes; `queue_mode` is `M`/`C`; `status` is `active`,
//! `off` or `blocked,<info>` as in the store log; `updated_at` is Unix seconds of the day.

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::crypto::keys::PublicKey;
use crate::protocol::command::{MsgFlags, QueueMode};
use crate::protocol::errors::BlockingInfo;
use crate::store::{Message, NtfCreds, QueueBody, QueueRec, QueueStatus};

/// The columns of a queue record, in [`QueueRow`]'s order.
pub const QUEUE_COLUMNS: &str = "recipient_id, recipient_keys, rcv_dh_secret, sender_id, \
    sender_key, queue_mode, notifier_id, notifier_key, rcv_ntf_dh_secret, status, updated_at, \
    link_id, fixed_data, user_data";

/// The columns of a message, in [`message_from_row`]'s order.
pub const MESSAGE_COLUMNS: &str = "msg_id, msg_ts, msg_quota, msg_ntf_flag, msg_body";

/// A record that does not decode (a corrupt or foreign row).
#[derive(Debug, thiserror::Error)]
#[error("bad {0} in msg_queues")]
pub struct BadRow(pub &'static str);

/// Encode recipient keys as the reference stores them.
pub fn encode_keys(keys: &[PublicKey]) -> Vec<u8> {
    let mut out = vec![keys.len() as u8];
    for k in keys {
        let der = k.to_der();
        out.push(der.len() as u8);
        out.extend_from_slice(&der);
    }
    out
}

/// Decode [`encode_keys`].
pub fn decode_keys(b: &[u8]) -> Result<Vec<PublicKey>, BadRow> {
    let bad = BadRow("recipient_keys");
    let (&n, mut rest) = b.split_first().ok_or(BadRow("recipient_keys"))?;
    let mut keys = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (&len, r) = rest.split_first().ok_or(BadRow("recipient_keys"))?;
        if r.len() < len as usize {
            return Err(bad);
        }
        let (der, r) = r.split_at(len as usize);
        keys.push(PublicKey::from_der(der).map_err(|_| BadRow("recipient_keys"))?);
        rest = r;
    }
    if !rest.is_empty() || keys.is_empty() {
        return Err(bad);
    }
    Ok(keys)
}

/// The `status` text.
pub fn status_text(s: &QueueStatus) -> String {
    match s {
        QueueStatus::Active => "active".into(),
        QueueStatus::Off => "off".into(),
        QueueStatus::Blocked(i) => format!("blocked,{}", i.to_text()),
    }
}

fn parse_status(s: &str) -> Result<QueueStatus, BadRow> {
    match s {
        "active" => Ok(QueueStatus::Active),
        "off" => Ok(QueueStatus::Off),
        _ => {
            let info = s.strip_prefix("blocked,").ok_or(BadRow("status"))?;
            BlockingInfo::parse(info.as_bytes())
                .map(|i| QueueStatus::Blocked(Box::new(i)))
                .map_err(|_| BadRow("status"))
        }
    }
}

fn mode_text(m: Option<QueueMode>) -> Option<&'static str> {
    m.map(|m| match m {
        QueueMode::Messaging => "M",
        QueueMode::Contact => "C",
    })
}

fn secret(b: &[u8], what: &'static str) -> Result<[u8; 32], BadRow> {
    b.try_into().map_err(|_| BadRow(what))
}

/// A queue record's column values, owned, for statement parameters.
pub struct QueueRow {
    rid: Vec<u8>,
    keys: Vec<u8>,
    dh: Vec<u8>,
    sid: Vec<u8>,
    skey: Option<Vec<u8>>,
    mode: Option<&'static str>,
    nid: Option<Vec<u8>>,
    nkey: Option<Vec<u8>>,
    ndh: Option<Vec<u8>>,
    status: String,
    updated: Option<i64>,
    link: Option<Vec<u8>>,
    fixed: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
}

impl QueueRow {
    /// The columns of a record.
    pub fn new(r: &QueueRec) -> Self {
        QueueRow {
            rid: r.recipient_id.to_vec(),
            keys: encode_keys(&r.recipient_keys),
            dh: r.rcv_dh_secret.to_vec(),
            sid: r.sender_id.to_vec(),
            skey: r.sender_key.as_ref().map(PublicKey::to_der),
            mode: mode_text(r.queue_mode),
            nid: r.notifier.as_ref().map(|n| n.notifier_id.clone()),
            nkey: r.notifier.as_ref().map(|n| n.notifier_key.to_der()),
            ndh: r.notifier.as_ref().map(|n| n.rcv_ntf_dh_secret.to_vec()),
            status: status_text(&r.status),
            updated: r.updated_at.get(),
            link: r.queue_data.as_deref().map(|(l, _)| l.clone()),
            fixed: r.queue_data.as_deref().map(|(_, d)| d.0.clone()),
            user: r.queue_data.as_deref().map(|(_, d)| d.1.clone()),
        }
    }

    /// Parameters in [`QUEUE_COLUMNS`] order.
    pub fn params(&self) -> [&(dyn ToSql + Sync); 14] {
        [
            &self.rid,
            &self.keys,
            &self.dh,
            &self.sid,
            &self.skey,
            &self.mode,
            &self.nid,
            &self.nkey,
            &self.ndh,
            &self.status,
            &self.updated,
            &self.link,
            &self.fixed,
            &self.user,
        ]
    }
}

/// A record from a row selected with [`QUEUE_COLUMNS`].
pub fn queue_from_row(row: &Row) -> Result<QueueRec, BadRow> {
    let get_b = |i: usize, w: &'static str| row.try_get::<_, Vec<u8>>(i).map_err(|_| BadRow(w));
    let get_ob =
        |i: usize, w: &'static str| row.try_get::<_, Option<Vec<u8>>>(i).map_err(|_| BadRow(w));
    let key = |b: Vec<u8>, w: &'static str| PublicKey::from_der(&b).map_err(|_| BadRow(w));
    let notifier = match (
        get_ob(6, "notifier_id")?,
        get_ob(7, "notifier_key")?,
        get_ob(8, "rcv_ntf_dh_secret")?,
    ) {
        (Some(id), Some(k), Some(dh)) => Some(Box::new(NtfCreds {
            notifier_id: id,
            notifier_key: key(k, "notifier_key")?,
            rcv_ntf_dh_secret: secret(&dh, "rcv_ntf_dh_secret")?,
        })),
        _ => None,
    };
    let mode: Option<String> = row.try_get(5).map_err(|_| BadRow("queue_mode"))?;
    let queue_mode = match mode.as_deref() {
        None => None,
        Some("M") => Some(QueueMode::Messaging),
        Some("C") => Some(QueueMode::Contact),
        Some(_) => return Err(BadRow("queue_mode")),
    };
    let status: String = row.try_get(9).map_err(|_| BadRow("status"))?;
    let queue_data = get_ob(11, "link_id")?.map(|l| -> Result<_, BadRow> {
        Ok(Box::new((
            l,
            (
                get_ob(12, "fixed_data")?.unwrap_or_default(),
                get_ob(13, "user_data")?.unwrap_or_default(),
            ),
        )))
    });
    Ok(QueueRec {
        recipient_id: get_b(0, "recipient_id")?.into(),
        sender_id: get_b(3, "sender_id")?.into(),
        body: QueueBody {
            recipient_keys: decode_keys(&get_b(1, "recipient_keys")?)?.into(),
            rcv_dh_secret: secret(&get_b(2, "rcv_dh_secret")?, "rcv_dh_secret")?,
            sender_key: get_ob(4, "sender_key")?
                .map(|k| key(k, "sender_key"))
                .transpose()?,
            queue_mode,
            queue_data: queue_data.transpose()?,
            notifier,
            status: parse_status(&status)?,
            updated_at: row
                .try_get::<_, Option<i64>>(10)
                .map_err(|_| BadRow("updated_at"))?
                .into(),
        },
    })
}

/// The columns of a message: (quota marker, notification flag, body).
pub fn message_parts(m: &Message) -> (bool, bool, &[u8]) {
    match m {
        Message::Msg { flags, body, .. } => (false, flags.notification, body),
        Message::Quota { .. } => (true, false, &[]),
    }
}

/// A message from columns `offset..` in [`MESSAGE_COLUMNS`] order.
pub fn message_from_row(row: &Row, offset: usize) -> Result<Message, BadRow> {
    let bad = |_| BadRow("message");
    let msg_id: Vec<u8> = row.try_get(offset).map_err(bad)?;
    let ts: i64 = row.try_get(offset + 1).map_err(bad)?;
    let quota: bool = row.try_get(offset + 2).map_err(bad)?;
    if quota {
        return Ok(Message::Quota { msg_id, ts });
    }
    Ok(Message::Msg {
        msg_id,
        ts,
        flags: MsgFlags {
            notification: row.try_get(offset + 3).map_err(bad)?,
        },
        body: row.try_get(offset + 4).map_err(bad)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::KeyAlgorithm;

    #[test]
    fn keys_round_trip_and_match_the_reference_layout() {
        let k = PublicKey::from_raw(KeyAlgorithm::Ed25519, &[7; 32]).expect("k");
        let b = encode_keys(std::slice::from_ref(&k));
        // the reference's migration turned a single DER key into 0x01 || len || DER
        assert_eq!(b[0], 1);
        assert_eq!(b[1] as usize, k.to_der().len());
        assert_eq!(&b[2..], &k.to_der()[..]);
        assert_eq!(decode_keys(&b).expect("decode"), vec![k]);
        assert!(decode_keys(&b[..b.len() - 1]).is_err());
        assert!(decode_keys(&[0]).is_err());
    }
}
