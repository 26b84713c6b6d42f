//! Journal records: encoding and framing, no I/O.
//!
//! This is our own format (the reference's journal files are not read or written). A shard
//! file is a header followed by framed records:
//!
//! ```text
//! file   = MAGIC (8 bytes, "SMPJRN1\n") *frame
//! frame  = len (u32 LE, payload bytes) crc (u32 LE, CRC-32 of payload) payload
//! payload = 'W' rid msg          ; a message was appended to queue rid
//!         / 'R' rid msg_id       ; messages removed up to and including msg_id
//!         / 'C' rid              ; all messages of the queue are gone
//! rid    = len (u8) bytes        ; recipient ID
//! msg_id = len (u8) bytes
//! msg    = 0 msg_id ts (i64 LE) flags (u8) body_len (u32 LE) body   ; a message
//!        / 1 msg_id ts (i64 LE)                                     ; the quota marker
//! ```
//!
//! The length prefix finds the end of a record, the CRC tells a whole record from a torn or
//! damaged one.

use crate::protocol::command::MsgFlags;
use crate::store::Message;

/// First bytes of every shard file.
pub const MAGIC: &[u8; 8] = b"SMPJRN1\n";
/// Bytes before a payload: length and CRC.
pub const FRAME_HEADER: usize = 8;
/// Largest payload accepted; SMP messages are far smaller, so more means damage.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// One change to the message store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A message was appended.
    Write {
        /// Recipient ID of the queue.
        rid: Vec<u8>,
        /// The message.
        msg: Message,
    },
    /// The oldest messages were removed, up to and including `msg_id`.
    Remove {
        /// Recipient ID.
        rid: Vec<u8>,
        /// Last removed message.
        msg_id: Vec<u8>,
    },
    /// The queue's messages are all gone.
    Clear {
        /// Recipient ID.
        rid: Vec<u8>,
    },
}

impl Record {
    /// Recipient ID of the queue the record is about.
    pub fn rid(&self) -> &[u8] {
        match self {
            Record::Write { rid, .. } | Record::Remove { rid, .. } | Record::Clear { rid } => rid,
        }
    }
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ended early or has bytes left over.
    #[error("malformed record payload")]
    Malformed,
    /// An unknown record or message tag.
    #[error("unknown record tag {0}")]
    Tag(u8),
    /// An ID longer than 255 bytes cannot be encoded.
    #[error("ID too long")]
    IdTooLong,
}

fn put_short(out: &mut Vec<u8>, b: &[u8]) -> Result<(), DecodeError> {
    let n = u8::try_from(b.len()).map_err(|_| DecodeError::IdTooLong)?;
    out.push(n);
    out.extend_from_slice(b);
    Ok(())
}

/// Encode a record as a complete frame (length, CRC, payload).
pub fn encode_frame(rec: &Record) -> Result<Vec<u8>, DecodeError> {
    let mut p = Vec::with_capacity(64);
    match rec {
        Record::Write { rid, msg } => {
            p.push(b'W');
            put_short(&mut p, rid)?;
            match msg {
                Message::Msg {
                    msg_id,
                    ts,
                    flags,
                    body,
                } => {
                    p.push(0);
                    put_short(&mut p, msg_id)?;
                    p.extend_from_slice(&ts.to_le_bytes());
                    p.push(u8::from(flags.notification));
                    let n = u32::try_from(body.len()).map_err(|_| DecodeError::Malformed)?;
                    p.extend_from_slice(&n.to_le_bytes());
                    p.extend_from_slice(body);
                }
                Message::Quota { msg_id, ts } => {
                    p.push(1);
                    put_short(&mut p, msg_id)?;
                    p.extend_from_slice(&ts.to_le_bytes());
                }
            }
        }
        Record::Remove { rid, msg_id } => {
            p.push(b'R');
            put_short(&mut p, rid)?;
            put_short(&mut p, msg_id)?;
        }
        Record::Clear { rid } => {
            p.push(b'C');
            put_short(&mut p, rid)?;
        }
    }
    if p.len() > MAX_PAYLOAD {
        return Err(DecodeError::Malformed);
    }
    let mut out = Vec::with_capacity(FRAME_HEADER + p.len());
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    out.extend_from_slice(&p);
    Ok(out)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn short(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.byte()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        let b: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| DecodeError::Malformed)?;
        Ok(i64::from_le_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| DecodeError::Malformed)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// Decode a payload (after its CRC was checked).
pub fn decode_payload(p: &[u8]) -> Result<Record, DecodeError> {
    let mut c = Cursor(p);
    let rec = match c.byte()? {
        b'W' => {
            let rid = c.short()?;
            let msg = match c.byte()? {
                0 => {
                    let msg_id = c.short()?;
                    let ts = c.i64()?;
                    let notification = match c.byte()? {
                        0 => false,
                        1 => true,
                        t => return Err(DecodeError::Tag(t)),
                    };
                    let n = c.u32()? as usize;
                    let body = c.take(n)?.to_vec();
                    Message::Msg {
                        msg_id,
                        ts,
                        flags: MsgFlags { notification },
                        body,
                    }
                }
                1 => {
                    let msg_id = c.short()?;
                    let ts = c.i64()?;
                    Message::Quota { msg_id, ts }
                }
                t => return Err(DecodeError::Tag(t)),
            };
            Record::Write { rid, msg }
        }
        b'R' => Record::Remove {
            rid: c.short()?,
            msg_id: c.short()?,
        },
        b'C' => Record::Clear { rid: c.short()? },
        t => return Err(DecodeError::Tag(t)),
    };
    if c.0.is_empty() {
        Ok(rec)
    } else {
        Err(DecodeError::Malformed)
    }
}

/// What is at an offset of a file's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole record with a good CRC; `len` is the frame's size.
    Ok {
        /// The payload.
        payload: &'a [u8],
        /// Bytes of the frame (header + payload).
        len: usize,
    },
    /// The bytes stop inside a frame: an interrupted append.
    Truncated,
    /// The length is impossible or the CRC does not match.
    Bad {
        /// Whether the claimed frame reaches the end of the bytes (so it may be a torn append).
        reaches_end: bool,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Look at the frame starting at the beginning of `b` (which must be non-empty).
pub fn read_frame(b: &[u8]) -> Frame<'_> {
    if b.len() < FRAME_HEADER {
        return Frame::Truncated;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return Frame::Bad {
            reaches_end: false,
            reason: "impossible record length",
        };
    }
    let end = FRAME_HEADER + len;
    if b.len() < end {
        return Frame::Truncated;
    }
    let payload = &b[FRAME_HEADER..end];
    if crc32fast::hash(payload) != crc {
        return Frame::Bad {
            reaches_end: end == b.len(),
            reason: "checksum mismatch",
        };
    }
    Frame::Ok { payload, len: end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u8) -> Message {
        Message::Msg {
            msg_id: vec![i; 24],
            ts: 1_700_000_000 + i as i64,
            flags: MsgFlags { notification: true },
            body: vec![i; 100],
        }
    }

    #[test]
    fn round_trip_all_records() {
        let recs = [
            Record::Write {
                rid: vec![1; 24],
                msg: msg(3),
            },
            Record::Write {
                rid: vec![1; 24],
                msg: Message::Quota {
                    msg_id: vec![4; 24],
                    ts: -5,
                },
            },
            Record::Remove {
                rid: vec![2; 24],
                msg_id: vec![9; 24],
            },
            Record::Clear { rid: vec![7; 24] },
        ];
        for r in recs {
            let f = encode_frame(&r).expect("encode");
            match read_frame(&f) {
                Frame::Ok { payload, len } => {
                    assert_eq!(len, f.len());
                    assert_eq!(decode_payload(payload).expect("decode"), r);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn torn_and_damaged_frames() {
        let f = encode_frame(&Record::Clear { rid: vec![7; 24] }).expect("encode");
        assert_eq!(read_frame(&f[..f.len() - 1]), Frame::Truncated);
        assert_eq!(read_frame(&f[..3]), Frame::Truncated);
        let mut bad = f.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            read_frame(&bad),
            Frame::Bad {
                reaches_end: true,
                ..
            }
        ));
        bad.extend_from_slice(&f);
        assert!(matches!(
            read_frame(&bad),
            Frame::Bad {
                reaches_end: false,
                ..
            }
        ));
        let zero = [0u8; 16];
        assert!(matches!(read_frame(&zero), Frame::Bad { .. }));
    }

    #[test]
    fn trailing_payload_bytes_are_rejected() {
        assert_eq!(
            decode_payload(b"C\x01\x05\x00"),
            Err(DecodeError::Malformed)
        );
        assert_eq!(decode_payload(b"X"), Err(DecodeError::Tag(b'X')));
    }
}
