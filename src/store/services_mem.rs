//! Services in memory, for the memory and journal queue stores: every change is written to the
//! store log (when there is one) before it takes effect, and the log's replay rebuilds them
//! (see [`super::services`] for the records).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::services::{
    encode_queue_service, ids_hash_add, role_byte, AssocChange, ServiceBackend, ServiceData,
    ServiceRec, SubParty,
};
use super::storelog::StoreLogRecord;
use super::storelog_file::StoreLogWriter;
use crate::protocol::errors::ErrorType;
use crate::protocol::handshake::ServiceRole;
use crate::sync::lock;

struct Inner {
    data: ServiceData,
    /// Certificate hash → (service ID, role byte).
    by_cert: HashMap<Vec<u8>, (Vec<u8>, u8)>,
    ids: HashSet<Vec<u8>>,
    totals: HashMap<(SubParty, Vec<u8>), (i64, [u8; 16])>,
}

impl Inner {
    fn map(&mut self, p: SubParty) -> &mut HashMap<Vec<u8>, Vec<u8>> {
        match p {
            SubParty::Recipient => &mut self.data.rcv,
            SubParty::Notifier => &mut self.data.ntf,
        }
    }

    /// Move queue `qid` (hashed) from service `prev` to `sid`, and record it under `rid`.
    fn apply(
        &mut self,
        p: SubParty,
        rid: &[u8],
        qid: &[u8],
        prev: Option<&[u8]>,
        sid: Option<&[u8]>,
    ) {
        if let Some(old) = prev {
            let key = (p, old.to_vec());
            if let Some(t) = self.totals.get_mut(&key) {
                t.0 -= 1;
                ids_hash_add(&mut t.1, qid);
                if t.0 <= 0 {
                    self.totals.remove(&key);
                }
            }
        }
        if let Some(new) = sid {
            let t = self.totals.entry((p, new.to_vec())).or_insert((0, [0; 16]));
            t.0 += 1;
            ids_hash_add(&mut t.1, qid);
        }
        self.data.set(rid, p, sid.map(<[u8]>::to_vec));
    }
}

/// The memory backend of [`super::services::ServiceStore`].
pub struct MemoryServices {
    inner: Mutex<Inner>,
    log: Option<Arc<StoreLogWriter>>,
}

impl MemoryServices {
    /// From replayed data; `log` receives every later change; `nid_of` gives a queue's
    /// notifier ID (notifier associations are hashed by it).
    pub fn new(
        data: ServiceData,
        log: Option<Arc<StoreLogWriter>>,
        nid_of: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Self {
        let mut inner = Inner {
            data: ServiceData::default(),
            by_cert: HashMap::new(),
            ids: HashSet::new(),
            totals: HashMap::new(),
        };
        for s in &data.services {
            inner
                .by_cert
                .insert(s.cert_hash.clone(), (s.id.clone(), role_byte(s.role)));
            inner.ids.insert(s.id.clone());
        }
        inner.data.services = data.services;
        for (rid, sid) in &data.rcv {
            inner.apply(SubParty::Recipient, rid, rid, None, Some(sid));
        }
        for (rid, sid) in &data.ntf {
            // an association of a queue without a notifier cannot stand (nothing to hash)
            if let Some(nid) = nid_of(rid) {
                inner.apply(SubParty::Notifier, rid, &nid, None, Some(sid));
            }
        }
        MemoryServices {
            inner: Mutex::new(inner),
            log,
        }
    }

    fn write(&self, op: &str, line: Vec<u8>) -> Result<(), ErrorType> {
        match &self.log {
            // The raw-line variant encodes as the line itself.
            Some(w) => w.write_records(op, &[StoreLogRecord::NewService(line)]),
            None => Ok(()),
        }
    }
}

impl ServiceBackend for MemoryServices {
    fn get_or_create(
        &self,
        role: ServiceRole,
        cert: &[Vec<u8>],
        cert_hash: &[u8],
        now: i64,
        new_id: &mut dyn FnMut() -> Vec<u8>,
    ) -> Result<Vec<u8>, ErrorType> {
        let mut g = lock(&self.inner);
        if let Some((id, r)) = g.by_cert.get(cert_hash) {
            return match *r == role_byte(role) {
                true => Ok(id.clone()),
                false => Err(ErrorType::Service),
            };
        }
        let mut id = new_id();
        while g.ids.contains(&id) {
            id = new_id();
        }
        let rec = ServiceRec {
            id: id.clone(),
            role,
            cert: cert.to_vec(),
            cert_hash: cert_hash.to_vec(),
            created_at: now,
        };
        self.write("getCreateService", rec.encode())?;
        g.by_cert
            .insert(cert_hash.to_vec(), (id.clone(), role_byte(role)));
        g.ids.insert(id.clone());
        g.data.services.push(rec);
        Ok(id)
    }

    fn service_of(&self, p: SubParty, rid: &[u8]) -> Result<Option<Vec<u8>>, ErrorType> {
        Ok(lock(&self.inner).map(p).get(rid).cloned())
    }

    fn set(
        &self,
        p: SubParty,
        rid: &[u8],
        qid: &[u8],
        sid: Option<&[u8]>,
    ) -> Result<AssocChange, ErrorType> {
        let mut g = lock(&self.inner);
        let prev = g.map(p).get(rid).cloned();
        let change = match (&prev, sid) {
            (None, None) => return Ok(AssocChange::Unchanged),
            (Some(a), Some(b)) if a.as_slice() == b => return Ok(AssocChange::Duplicate),
            (None, Some(_)) => AssocChange::New,
            (Some(_), Some(_)) => AssocChange::Updated,
            (Some(_), None) => AssocChange::Removed,
        };
        self.write("setQueueService", encode_queue_service(rid, p, sid))?;
        g.apply(p, rid, qid, prev.as_deref(), sid);
        Ok(change)
    }

    fn forget(&self, p: SubParty, rid: &[u8], qid: &[u8]) {
        let mut g = lock(&self.inner);
        let prev = g.map(p).get(rid).cloned();
        if prev.is_some() {
            g.apply(p, rid, qid, prev.as_deref(), None);
        }
    }

    fn count_hash(&self, p: SubParty, sid: &[u8]) -> Result<(i64, [u8; 16]), ErrorType> {
        let g = lock(&self.inner);
        Ok(g.totals
            .get(&(p, sid.to_vec()))
            .copied()
            .unwrap_or((0, [0; 16])))
    }

    fn queues_of(&self, p: SubParty, sid: &[u8]) -> Result<Vec<Vec<u8>>, ErrorType> {
        let mut g = lock(&self.inner);
        Ok(g.map(p)
            .iter()
            .filter(|(_, s)| s.as_slice() == sid)
            .map(|(r, _)| r.clone())
            .collect())
    }

    fn counts(&self) -> (usize, usize, usize, usize) {
        let g = lock(&self.inner);
        let by_role = |r| g.data.services.iter().filter(|s| s.role == r).count();
        (
            by_role(ServiceRole::Messaging),
            by_role(ServiceRole::Notifier),
            g.data.rcv.len(),
            g.data.ntf.len(),
        )
    }

    fn snapshot(&self) -> Option<ServiceData> {
        // Changes are logged and applied under this lock, so the copy holds every change
        // logged before it.
        Some(lock(&self.inner).data.clone())
    }
}
