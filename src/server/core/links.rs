//! Short link commands: LSET and LDEL (recipient), LKEY and LGET (link client).
//!
//! Link data is stored encrypted by the client; the server only keeps it and hands it out by
//! link ID, and removes it once a messaging queue is secured.

use super::Core;
use crate::crypto::keys::PublicKey;
use crate::protocol::command::{QueueLinkData, QueueMode};
use crate::protocol::errors::ErrorType;
use crate::protocol::response::BrokerMsg;
use crate::store::{QueueRec, QueueRef};

fn ok_or(r: Result<(), ErrorType>) -> BrokerMsg {
    match r {
        Ok(()) => BrokerMsg::Ok,
        Err(e) => BrokerMsg::Err(e),
    }
}

impl Core {
    /// LSET: set link data; not on a secured messaging queue, and the link ID can't change.
    pub(super) fn lset(
        &self,
        q: &QueueRef,
        rec: &QueueRec,
        lid: Vec<u8>,
        data: QueueLinkData,
    ) -> BrokerMsg {
        if rec.is_secured_msg_queue() || rec.queue_data.as_deref().is_some_and(|(l, _)| *l != lid) {
            BrokerMsg::Err(ErrorType::Auth)
        } else {
            ok_or(self.store.add_link(q, lid, data))
        }
    }

    /// LDEL: remove link data (OK when there is none).
    pub(super) fn ldel(&self, q: &QueueRef, rec: &QueueRec) -> BrokerMsg {
        if rec.queue_data.is_some() {
            ok_or(self.store.delete_link(q))
        } else {
            BrokerMsg::Ok
        }
    }

    /// LKEY: the link client secures a messaging queue and gets its link data in one step.
    pub(super) fn lkey(
        &self,
        q: &QueueRef,
        rec: &QueueRec,
        link_id: &[u8],
        k: PublicKey,
    ) -> BrokerMsg {
        if rec.queue_mode != Some(QueueMode::Messaging) {
            return BrokerMsg::Err(ErrorType::Auth);
        }
        match self
            .secure(q, k)
            .and_then(|_| self.store.get_link(q, link_id))
        {
            Ok(d) => BrokerMsg::Lnk(rec.sender_id.to_vec(), d),
            Err(e) => BrokerMsg::Err(e),
        }
    }

    /// LGET: link data of a contact queue.
    pub(super) fn lget(&self, q: &QueueRef, rec: &QueueRec, link_id: &[u8]) -> BrokerMsg {
        if !rec.is_contact() {
            return BrokerMsg::Err(ErrorType::Auth);
        }
        match self.store.get_link(q, link_id) {
            Ok(d) => BrokerMsg::Lnk(rec.sender_id.to_vec(), d),
            Err(e) => BrokerMsg::Err(e),
        }
    }
}
