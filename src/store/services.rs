//! Client services (SMP v16): the service records a certificate handshake creates, and which
//! queues are associated with which service, as recipient (`SUBS`) or notifier (`NSUBS`).
//!
//! Kept beside the queue store rather than in [`super::QueueRec`], and written to the store log
//! in the reference's records:
//!
//! ```text
//! NEW_SERVICE service_id=<id> role=M|N|P cert=<der>[,<der>...] cert_hash=<bytes> created_at=<secs>
//! QUEUE_SERVICE <rid> R|N [<service id>]       (no service ID: the association is removed)
//! CREATE ... notifier=<nid> <nkey> <secret> nsrv=<id> ... rsrv=<id>   (on compaction)
//! ```
//!
//! Certificates are kept as the bytes the client sent; they are never parsed again.
//!
//! Where the records live is a [`ServiceBackend`]: in memory with the store log
//! ([`super::services_mem`]), or in the PostgreSQL tables with the database stores
//! (`store::postgres::services`). The server only sees [`ServiceStore`].

use std::collections::HashMap;
use std::sync::Arc;

use md5::{Digest, Md5};

use super::storelog_file::StoreLogWriter;
use super::strenc::{b64, Cursor, ParseError};
use crate::protocol::errors::ErrorType;
use crate::protocol::handshake::ServiceRole;

/// A service as the server records it (the reference's `ServiceRec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRec {
    /// Service ID: the entity of SUBS/NSUBS and what `SOK`/`IDS` name.
    pub id: Vec<u8>,
    /// Role declared in the handshake.
    pub role: ServiceRole,
    /// Certificate chain the client presented, DER, leaf first.
    pub cert: Vec<Vec<u8>>,
    /// SHA-256 of the identity certificate: with the role, what identifies the service.
    pub cert_hash: Vec<u8>,
    /// Unix seconds of creation.
    pub created_at: i64,
}

/// The role as the store log and the `service_role` column write it (`M`, `N`, `P`).
pub fn role_byte(r: ServiceRole) -> u8 {
    match r {
        ServiceRole::Messaging => b'M',
        ServiceRole::Notifier => b'N',
        ServiceRole::Proxy => b'P',
    }
}

/// Parse [`role_byte`]'s text.
pub fn parse_role(b: &[u8]) -> Option<ServiceRole> {
    match b {
        b"M" => Some(ServiceRole::Messaging),
        b"N" => Some(ServiceRole::Notifier),
        b"P" => Some(ServiceRole::Proxy),
        _ => None,
    }
}

impl ServiceRec {
    /// The `NEW_SERVICE` line (without newline).
    pub fn encode(&self) -> Vec<u8> {
        let cert: Vec<String> = self.cert.iter().map(|c| b64(c)).collect();
        format!(
            "NEW_SERVICE service_id={} role={} cert={} cert_hash={} created_at={}",
            b64(&self.id),
            role_byte(self.role) as char,
            cert.join(","),
            b64(&self.cert_hash),
            self.created_at
        )
        .into_bytes()
    }

    /// Parse a `NEW_SERVICE` line.
    pub fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor::new(line);
        c.tag("NEW_SERVICE service_id=")?;
        let id = c.bytes()?;
        c.tag(" role=")?;
        let Some(role) = parse_role(c.take_till(b" ")) else {
            return Err(c.err("role=M|N|P"));
        };
        c.tag(" cert=")?;
        let mut cert = vec![c.bytes()?];
        while c.try_tag(",") {
            cert.push(c.bytes()?);
        }
        c.tag(" cert_hash=")?;
        let cert_hash = c.bytes()?;
        c.tag(" created_at=")?;
        let created_at = c.int()?;
        c.end()?;
        Ok(ServiceRec {
            id,
            role,
            cert,
            cert_hash,
            created_at,
        })
    }
}

/// Which subscription a queue is associated for (the reference's `ASubscriberParty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubParty {
    /// Messages (`SUBS`), `R` in the log.
    Recipient,
    /// Notifications (`NSUBS`), `N` in the log.
    Notifier,
}

/// A `QUEUE_SERVICE` line: the recipient ID, the party and the service (none: removed).
pub fn encode_queue_service(rid: &[u8], party: SubParty, sid: Option<&[u8]>) -> Vec<u8> {
    let p = match party {
        SubParty::Recipient => 'R',
        SubParty::Notifier => 'N',
    };
    format!(
        "QUEUE_SERVICE {} {p} {}",
        b64(rid),
        sid.map(b64).unwrap_or_default()
    )
    .into_bytes()
}

/// A parsed `QUEUE_SERVICE` record: recipient ID, party, service (none: removed).
pub type QueueService = (Vec<u8>, SubParty, Option<Vec<u8>>);

/// Parse a `QUEUE_SERVICE` line.
pub fn parse_queue_service(line: &[u8]) -> Result<QueueService, ParseError> {
    let mut c = Cursor::new(line);
    c.tag("QUEUE_SERVICE ")?;
    let rid = c.bytes()?;
    c.space()?;
    let party = match c.take_till(b" ") {
        b"R" => SubParty::Recipient,
        b"N" => SubParty::Notifier,
        _ => return Err(c.err("R|N")),
    };
    let sid = if c.try_tag(" ") { c.opt_bytes()? } else { None };
    c.end()?;
    Ok((rid, party, sid))
}

/// The service IDs a `CREATE` or `NOTIFIER` line carries (`rsrv=`, `nsrv=`).
pub fn line_service_ids(line: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Built once: a restore looks through a million lines, most without either tag.
    static ANY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("srv="));
    static TAGS: LazyLock<[Finder<'static>; 2]> =
        LazyLock::new(|| [Finder::new(" rsrv="), Finder::new(" nsrv=")]);
    if ANY.find(line).is_none() {
        return (None, None);
    }
    let find = |t: &Finder<'_>| -> Option<Vec<u8>> {
        let at = t.find(line)?;
        let mut c = Cursor::new(&line[at + t.needle().len()..]);
        c.bytes().ok()
    };
    (find(&TAGS[0]), find(&TAGS[1]))
}

/// XOR of the MD5 of each queue ID: the reference's `IdsHash`, which lets a service check that
/// the server has the same set of queues as it does.
pub fn ids_hash_add(acc: &mut [u8; 16], id: &[u8]) {
    let h = Md5::digest(id);
    for (a, b) in acc.iter_mut().zip(h.iter()) {
        *a ^= b;
    }
}

/// Services and associations: what replay collects and compaction writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceData {
    /// Services in the order they were created.
    pub services: Vec<ServiceRec>,
    /// Recipient ID → service for messages.
    pub rcv: HashMap<Vec<u8>, Vec<u8>>,
    /// Recipient ID → service for notifications.
    pub ntf: HashMap<Vec<u8>, Vec<u8>>,
}

impl ServiceData {
    fn map(&mut self, p: SubParty) -> &mut HashMap<Vec<u8>, Vec<u8>> {
        match p {
            SubParty::Recipient => &mut self.rcv,
            SubParty::Notifier => &mut self.ntf,
        }
    }

    /// Apply a service record from the log; a repeated ID replaces nothing.
    pub fn add_service(&mut self, s: ServiceRec) {
        if !self.services.iter().any(|x| x.id == s.id) {
            self.services.push(s);
        }
    }

    /// Set or remove an association.
    pub fn set(&mut self, rid: &[u8], p: SubParty, sid: Option<Vec<u8>>) {
        match sid {
            Some(s) => {
                self.map(p).insert(rid.to_vec(), s);
            }
            None => {
                let m = self.map(p);
                // most queues have no service: spare the replay a hash per line
                if !m.is_empty() {
                    m.remove(rid);
                }
            }
        }
    }

    /// A queue was deleted: both associations go.
    pub fn queue_deleted(&mut self, rid: &[u8]) {
        self.rcv.remove(rid);
        self.ntf.remove(rid);
    }
}

/// How an association changed (for the `assoc*` counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssocChange {
    /// None before.
    New,
    /// The same service already.
    Duplicate,
    /// Another service before.
    Updated,
    /// Removed.
    Removed,
    /// Nothing before, nothing now.
    Unchanged,
}

/// Where services and associations are kept. Queues are named by recipient ID; `qid` is the
/// ID that goes into the service's IdsHash: the recipient ID for [`SubParty::Recipient`], the
/// notifier ID for [`SubParty::Notifier`] (as the reference hashes them).
pub trait ServiceBackend: Send + Sync {
    /// The service for a certificate hash, created if new (the reference's
    /// `getCreateService`): the same certificate with another role is `SERVICE`. `new_id`
    /// draws the ID of a new service.
    fn get_or_create(
        &self,
        role: ServiceRole,
        cert: &[Vec<u8>],
        cert_hash: &[u8],
        now: i64,
        new_id: &mut dyn FnMut() -> Vec<u8>,
    ) -> Result<Vec<u8>, ErrorType>;

    /// The service a live queue is associated with for `p`.
    fn service_of(&self, p: SubParty, rid: &[u8]) -> Result<Option<Vec<u8>>, ErrorType>;

    /// Associate a queue with a service (or remove the association).
    fn set(
        &self,
        p: SubParty,
        rid: &[u8],
        qid: &[u8],
        sid: Option<&[u8]>,
    ) -> Result<AssocChange, ErrorType>;

    /// The queue (or its notifier) is gone: drop the association without recording it
    /// separately (the queue's own change already implies it).
    fn forget(&self, p: SubParty, rid: &[u8], qid: &[u8]);

    /// Queue count and IdsHash of a service's associations (the reference's
    /// `getServiceQueueCountHash`).
    fn count_hash(&self, p: SubParty, sid: &[u8]) -> Result<(i64, [u8; 16]), ErrorType>;

    /// Recipient IDs of the live queues associated with a service.
    fn queues_of(&self, p: SubParty, sid: &[u8]) -> Result<Vec<Vec<u8>>, ErrorType>;

    /// (messaging services, notifier services, queues associated for messages, for
    /// notifications): the reference's `EntityCounts` service fields.
    fn counts(&self) -> (usize, usize, usize, usize);

    /// Services and associations as a store log compaction writes them; `None` where they
    /// are not kept in the store log (the database).
    fn snapshot(&self) -> Option<ServiceData> {
        None
    }
}

/// The running server's services, on whichever backend the queue store uses.
pub struct ServiceStore {
    backend: Box<dyn ServiceBackend>,
}

impl std::fmt::Debug for ServiceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceStore").finish_non_exhaustive()
    }
}

impl Default for ServiceStore {
    fn default() -> Self {
        ServiceStore::new(ServiceData::default(), None, &|_| None)
    }
}

impl std::ops::Deref for ServiceStore {
    type Target = dyn ServiceBackend;
    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

impl ServiceStore {
    /// In memory, from replayed data; `log` receives every later change. `nid_of` gives the
    /// notifier ID of a queue (for the IdsHash of notifier associations).
    pub fn new(
        data: ServiceData,
        log: Option<Arc<StoreLogWriter>>,
        nid_of: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Self {
        Self::with_backend(Box::new(super::services_mem::MemoryServices::new(
            data, log, nid_of,
        )))
    }

    /// On another backend (the database).
    pub fn with_backend(backend: Box<dyn ServiceBackend>) -> Self {
        ServiceStore { backend }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let s = ServiceRec {
            id: vec![1; 24],
            role: ServiceRole::Notifier,
            cert: vec![vec![2; 40], vec![3; 41]],
            cert_hash: vec![4; 32],
            created_at: 1_700_000_000,
        };
        assert_eq!(ServiceRec::parse(&s.encode()).expect("parse"), s);
        let l = encode_queue_service(&[5; 24], SubParty::Recipient, Some(&[1; 24]));
        assert_eq!(
            parse_queue_service(&l).expect("q"),
            (vec![5; 24], SubParty::Recipient, Some(vec![1; 24]))
        );
        let l = encode_queue_service(&[5; 24], SubParty::Notifier, None);
        assert!(l.ends_with(b" N "), "reference writes an empty Maybe");
        assert_eq!(
            parse_queue_service(&l).expect("q"),
            (vec![5; 24], SubParty::Notifier, None)
        );
    }

    #[test]
    fn memory_totals_follow_associations() {
        let st = ServiceStore::default();
        let mut n = 0u8;
        let mut new_id = || {
            n += 1;
            vec![n; 24]
        };
        let a = st
            .get_or_create(ServiceRole::Messaging, &[vec![9]], &[7; 32], 1, &mut new_id)
            .expect("a");
        let a2 = st
            .get_or_create(ServiceRole::Messaging, &[vec![9]], &[7; 32], 2, &mut new_id)
            .expect("a2");
        assert_eq!(a, a2, "same certificate and role: same service");
        assert_eq!(
            st.get_or_create(ServiceRole::Notifier, &[vec![9]], &[7; 32], 3, &mut new_id),
            Err(ErrorType::Service),
            "the same certificate in another role is refused, as the reference does"
        );
        let b = st
            .get_or_create(ServiceRole::Notifier, &[vec![8]], &[8; 32], 3, &mut new_id)
            .expect("b");
        assert_ne!(a, b);
        let (r1, r2) = (vec![1u8; 24], vec![2u8; 24]);
        assert_eq!(
            st.set(SubParty::Recipient, &r1, &r1, Some(&a))
                .expect("set"),
            AssocChange::New
        );
        st.set(SubParty::Recipient, &r2, &r2, Some(&a))
            .expect("set");
        let mut expect = [0u8; 16];
        ids_hash_add(&mut expect, &r1);
        ids_hash_add(&mut expect, &r2);
        assert_eq!(
            st.count_hash(SubParty::Recipient, &a).expect("c"),
            (2, expect)
        );
        st.forget(SubParty::Recipient, &r1, &r1);
        let mut one = [0u8; 16];
        ids_hash_add(&mut one, &r2);
        assert_eq!(st.count_hash(SubParty::Recipient, &a).expect("c"), (1, one));
        assert_eq!(
            st.count_hash(SubParty::Notifier, &a).expect("c"),
            (0, [0; 16])
        );
        assert_eq!(st.counts(), (1, 1, 1, 0));
        // notifier associations hash the notifier ID
        let nid = vec![7u8; 24];
        st.set(SubParty::Notifier, &r2, &nid, Some(&b))
            .expect("set");
        let mut nh = [0u8; 16];
        ids_hash_add(&mut nh, &nid);
        assert_eq!(st.count_hash(SubParty::Notifier, &b).expect("c"), (1, nh));
        st.forget(SubParty::Notifier, &r2, &nid);
        assert_eq!(
            st.count_hash(SubParty::Notifier, &b).expect("c"),
            (0, [0; 16])
        );
    }
}
