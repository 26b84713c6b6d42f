//! Queue records and messages as the server keeps them.

use crate::crypto::keys::PublicKey;
use crate::protocol::command::{MsgFlags, QueueLinkData, QueueMode};
use crate::protocol::errors::BlockingInfo;

/// A queue's notifier credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtfCreds {
    /// Notifier ID (entity of NSUB).
    pub notifier_id: Vec<u8>,
    /// Key that authorizes NSUB.
    pub notifier_key: PublicKey,
    /// Shared secret for encrypting notification metadata to the recipient.
    pub rcv_ntf_dh_secret: [u8; 32],
}

/// Whether the queue accepts commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueStatus {
    /// Normal.
    Active,
    /// Suspended by the recipient (OFF): sending is refused.
    Off,
    /// Blocked by the operator.
    Blocked(BlockingInfo),
}

/// Everything the server knows about a queue (what the store log records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRec {
    /// Recipient ID.
    pub recipient_id: Vec<u8>,
    /// Keys that authorize recipient commands (several for contact queues after RKEY).
    pub recipient_keys: Vec<PublicKey>,
    /// Shared secret that encrypts message bodies to the recipient.
    pub rcv_dh_secret: [u8; 32],
    /// Sender ID.
    pub sender_id: Vec<u8>,
    /// Key that authorizes SEND once the queue is secured.
    pub sender_key: Option<PublicKey>,
    /// Queue mode (None for queues created before v9).
    pub queue_mode: Option<QueueMode>,
    /// Link ID and encrypted link data.
    pub queue_data: Option<(Vec<u8>, QueueLinkData)>,
    /// Notifier credentials.
    pub notifier: Option<NtfCreds>,
    /// Status.
    pub status: QueueStatus,
    /// Day (Unix seconds at 00:00 UTC) the queue was last used; kept coarse for privacy.
    pub updated_at: Option<i64>,
}

impl QueueRec {
    /// A contact (address) queue: LGET allowed, sender can't secure. Queues from before queue
    /// modes count as contact queues when they have no sender key.
    pub fn is_contact(&self) -> bool {
        match self.queue_mode {
            Some(QueueMode::Messaging) => false,
            Some(QueueMode::Contact) => true,
            None => self.sender_key.is_none(),
        }
    }

    /// A messaging queue that was secured by a sender key.
    pub fn is_secured_msg_queue(&self) -> bool {
        match self.queue_mode {
            Some(QueueMode::Contact) => false,
            _ => self.sender_key.is_some(),
        }
    }
}

/// A stored message, or the marker that the queue hit its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A message from a sender.
    Msg {
        /// Server-assigned message ID (also the encryption nonce).
        msg_id: Vec<u8>,
        /// Unix seconds when received.
        ts: i64,
        /// Flags from SEND.
        flags: MsgFlags,
        /// Body as sent.
        body: Vec<u8>,
    },
    /// "Queue full" marker delivered to the recipient in place of the message that did not fit.
    Quota {
        /// Message ID.
        msg_id: Vec<u8>,
        /// Unix seconds.
        ts: i64,
    },
}

impl Message {
    /// Message ID.
    pub fn msg_id(&self) -> &[u8] {
        match self {
            Message::Msg { msg_id, .. } | Message::Quota { msg_id, .. } => msg_id,
        }
    }

    /// Timestamp.
    pub fn ts(&self) -> i64 {
        match self {
            Message::Msg { ts, .. } | Message::Quota { ts, .. } => *ts,
        }
    }
}
