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

/// The day a queue was last used, as Unix seconds (of 00:00 UTC), in 4 bytes: every idle queue
/// keeps one, and an `Option<i64>` took 16. Covers 1970-2106; a value outside that (only a
/// hand-made store log could have one) reads as unknown, like a queue from before the field.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UpdatedAt(u32);

impl UpdatedAt {
    /// Unknown (never recorded).
    pub const NONE: Self = Self(0);

    /// The Unix time, if known.
    pub fn get(self) -> Option<i64> {
        (self.0 != 0).then_some(i64::from(self.0))
    }
}

impl From<Option<i64>> for UpdatedAt {
    fn from(t: Option<i64>) -> Self {
        Self(t.and_then(|t| u32::try_from(t).ok()).unwrap_or(0))
    }
}

impl std::fmt::Debug for UpdatedAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// Whether the queue accepts commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueStatus {
    /// Normal.
    Active,
    /// Suspended by the recipient (OFF): sending is refused.
    Off,
    /// Blocked by the operator.
    Blocked(Box<BlockingInfo>),
}

/// Everything the server knows about a queue (what the store log records): its two IDs and
/// the rest ([`QueueBody`], reached through `Deref`, so `rec.sender_key` reads as before).
///
/// The split exists for memory: a live queue handle ([`super::Queue`]) keeps the immutable IDs
/// once, outside its lock, where the indexes hash them, and only the body under the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRec {
    /// Recipient ID.
    pub recipient_id: IdKey,
    /// Sender ID.
    pub sender_id: IdKey,
    /// Keys, secrets, status and the rest.
    pub body: QueueBody,
}

impl std::ops::Deref for QueueRec {
    type Target = QueueBody;
    fn deref(&self) -> &QueueBody {
        &self.body
    }
}

impl std::ops::DerefMut for QueueRec {
    fn deref_mut(&mut self) -> &mut QueueBody {
        &mut self.body
    }
}

/// A queue record without its IDs: the part that changes over the queue's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueBody {
    /// Keys that authorize recipient commands (several for contact queues after RKEY).
    pub recipient_keys: RecipientKeys,
    /// Shared secret that encrypts message bodies to the recipient.
    pub rcv_dh_secret: [u8; 32],
    /// Key that authorizes SEND once the queue is secured.
    pub sender_key: Option<PublicKey>,
    /// Queue mode (None for queues created before v9).
    pub queue_mode: Option<QueueMode>,
    /// Link ID and encrypted link data (boxed: most queues have none, and every idle queue's
    /// record stays in memory).
    pub queue_data: Option<Box<(Vec<u8>, QueueLinkData)>>,
    /// Notifier credentials (boxed for the same reason).
    pub notifier: Option<Box<NtfCreds>>,
    /// Status.
    pub status: QueueStatus,
    /// Day (Unix seconds at 00:00 UTC) the queue was last used; kept coarse for privacy.
    pub updated_at: UpdatedAt,
}

impl QueueBody {
    /// A new queue's body: one recipient key, no sender key, link or notifier yet, active,
    /// never used.
    pub fn new(
        recipient_key: PublicKey,
        rcv_dh_secret: [u8; 32],
        queue_mode: Option<QueueMode>,
    ) -> Self {
        QueueBody {
            recipient_keys: recipient_key.into(),
            rcv_dh_secret,
            sender_key: None,
            queue_mode,
            queue_data: None,
            notifier: None,
            status: QueueStatus::Active,
            updated_at: UpdatedAt::NONE,
        }
    }

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

/// A queue's recipient keys: nearly always one, kept inline (no allocation per queue); a
/// contact queue may have several after RKEY. Reads as a slice.
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientKeys(KeysRepr);

/// One key inline, or the list; `One` whenever there is exactly one, so equality is by value.
#[derive(Clone, PartialEq, Eq)]
enum KeysRepr {
    One(PublicKey),
    Many(Box<[PublicKey]>),
}

impl std::ops::Deref for RecipientKeys {
    type Target = [PublicKey];
    fn deref(&self) -> &[PublicKey] {
        match &self.0 {
            KeysRepr::One(k) => std::slice::from_ref(k),
            KeysRepr::Many(ks) => ks,
        }
    }
}

impl From<Vec<PublicKey>> for RecipientKeys {
    fn from(mut v: Vec<PublicKey>) -> Self {
        match v.pop() {
            Some(k) if v.is_empty() => RecipientKeys(KeysRepr::One(k)),
            Some(k) => {
                v.push(k);
                RecipientKeys(KeysRepr::Many(v.into_boxed_slice()))
            }
            None => RecipientKeys(KeysRepr::Many(Box::default())),
        }
    }
}

impl From<PublicKey> for RecipientKeys {
    fn from(k: PublicKey) -> Self {
        RecipientKeys(KeysRepr::One(k))
    }
}

impl PartialEq<Vec<PublicKey>> for RecipientKeys {
    fn eq(&self, other: &Vec<PublicKey>) -> bool {
        **self == other[..]
    }
}

impl<'a> IntoIterator for &'a RecipientKeys {
    type Item = &'a PublicKey;
    type IntoIter = std::slice::Iter<'a, PublicKey>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Debug for RecipientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
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

/// An entity ID kept compactly (index keys, a queue's own ID): IDs of up to 24 bytes (all the server makes, and all a client
/// may choose) are kept inline, saving an allocation per queue and index; longer ones (only
/// from foreign store logs) are boxed.
#[derive(Clone)]
pub enum IdKey {
    /// Up to 24 bytes, zero-padded.
    #[allow(missing_docs)]
    Inline { len: u8, bytes: [u8; 24] },
    /// Longer IDs.
    Boxed(Box<[u8]>),
}

impl IdKey {
    /// Copy an ID.
    pub fn new(id: &[u8]) -> Self {
        if id.len() <= 24 {
            let mut bytes = [0u8; 24];
            bytes[..id.len()].copy_from_slice(id);
            IdKey::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            IdKey::Boxed(id.into())
        }
    }

    /// The ID's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            IdKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdKey::Boxed(b) => b,
        }
    }
}

// Hash and equality are those of the byte slice, so lookups can borrow `&[u8]`.
impl std::hash::Hash for IdKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for IdKey {}

impl std::borrow::Borrow<[u8]> for IdKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // IDs identify queues: never print them.
        write!(f, "IdKey({} bytes)", self.as_slice().len())
    }
}

impl std::ops::Deref for IdKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Vec<u8>> for IdKey {
    fn from(v: Vec<u8>) -> Self {
        IdKey::new(&v)
    }
}

impl From<&[u8]> for IdKey {
    fn from(v: &[u8]) -> Self {
        IdKey::new(v)
    }
}

impl PartialEq<[u8]> for IdKey {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u8>> for IdKey {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}
