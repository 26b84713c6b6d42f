//! Journal records: encoding and framing, no I/O.
//!
//! This is our own format (the reference's journal files are read only to convert them, by
//! [`super::reference`]). A shard file is a header followed by framed records:
//!
//! ```text
//! file   = MAGIC (8 bytes, "SMPJRN2\n") *frame
//! frame  = len (u32 LE, payload bytes) crc (u32 LE, CRC-32 of payload)
//!          hcrc (u32 LE, CRC-32 of the 8 bytes before it) payload
//! payload = 'W' rid msg          ; a message was appended to queue rid
//!         / 'R' rid msg_id       ; messages removed up to and including msg_id
//!         / 'C' rid              ; all messages of the queue are gone
//! rid    = len (u8) bytes        ; recipient ID
//! msg_id = len (u8) bytes
//! msg    = 0 msg_id ts (i64 LE) flags (u8) body_len (u32 LE) body   ; a message
//!        / 1 msg_id ts (i64 LE)                                     ; the quota marker
//! ```
//!
//! The header checksum (`hcrc`) makes a damaged length field detectable on its own: without
//! it a bit flip in the length of a record in the middle of a file can make that record seem
//! to run past the end of the file, which looks exactly like an interrupted append. Files
//! written before it existed (`SMPJRN1\n`, frames without `hcrc`) are still read; they are
//! rewritten in the current format by the first compaction after start.
//!
//! Whether damage is a torn append or not is decided by [`find_valid_frame`]: an interrupted
//! append can only leave bytes after the last whole record, so if any whole, valid record
//! follows the damage, the damage is in the middle of the file.

use crate::protocol::command::MsgFlags;
use crate::store::Message;

/// First bytes of every shard file written now.
pub const MAGIC: &[u8; 8] = b"SMPJRN2\n";
/// First bytes of a shard file of the first format (no header checksum).
pub const MAGIC_V1: &[u8; 8] = b"SMPJRN1\n";
/// Bytes before a payload in the current format: length, payload CRC, header CRC.
pub const FRAME_HEADER: usize = 12;

/// The framing of a shard file, told by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `SMPJRN1`: length and payload CRC only.
    V1,
    /// `SMPJRN2`: length, payload CRC and header CRC.
    V2,
}

impl Framing {
    /// The framing a file's first 8 bytes announce.
    pub fn from_magic(m: &[u8]) -> Option<Framing> {
        if m == MAGIC {
            Some(Framing::V2)
        } else if m == MAGIC_V1 {
            Some(Framing::V1)
        } else {
            None
        }
    }

    /// Bytes before the payload.
    pub fn header_len(self) -> usize {
        match self {
            Framing::V1 => 8,
            Framing::V2 => FRAME_HEADER,
        }
    }

    /// The file's first bytes.
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            Framing::V1 => MAGIC_V1,
            Framing::V2 => MAGIC,
        }
    }
}
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

/// Encode a record as a complete frame in the current format.
pub fn encode_frame(rec: &Record) -> Result<Vec<u8>, DecodeError> {
    encode_frame_as(rec, Framing::V2)
}

/// Encode a record as a complete frame of a file with `framing` (appends to an old file).
pub fn encode_frame_as(rec: &Record, framing: Framing) -> Result<Vec<u8>, DecodeError> {
    let p = encode_payload(rec)?;
    Ok(frame_payload(&p, framing))
}

/// Frame an encoded payload.
pub fn frame_payload(p: &[u8], framing: Framing) -> Vec<u8> {
    let mut out = Vec::with_capacity(framing.header_len() + p.len());
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
    if framing == Framing::V2 {
        let h = crc32fast::hash(&out[..8]);
        out.extend_from_slice(&h.to_le_bytes());
    }
    out.extend_from_slice(p);
    out
}

fn encode_payload(rec: &Record) -> Result<Vec<u8>, DecodeError> {
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
    Ok(p)
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
    /// A whole record with good checksums; `len` is the frame's size.
    Ok {
        /// The payload.
        payload: &'a [u8],
        /// Bytes of the frame (header + payload).
        len: usize,
    },
    /// The bytes stop inside a frame whose header is not known to be damaged.
    Truncated,
    /// The header or the payload fails its check.
    Bad {
        /// What is wrong.
        reason: &'static str,
    },
}

/// Look at the frame starting at the beginning of `b` (which must be non-empty).
///
/// Whether a `Truncated` or `Bad` frame is a torn append or damage is not decided here: see
/// [`find_valid_frame`].
pub fn read_frame(b: &[u8], framing: Framing) -> Frame<'_> {
    let hl = framing.header_len();
    if b.len() < hl {
        return Frame::Truncated;
    }
    if framing == Framing::V2 {
        let h = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if crc32fast::hash(&b[..8]) != h {
            return Frame::Bad {
                reason: "damaged record header",
            };
        }
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return Frame::Bad {
            reason: "impossible record length",
        };
    }
    let end = hl + len;
    if b.len() < end {
        return Frame::Truncated;
    }
    let payload = &b[hl..end];
    if crc32fast::hash(payload) != crc {
        return Frame::Bad {
            reason: "checksum mismatch",
        };
    }
    Frame::Ok { payload, len: end }
}

/// The first offset at or after `from` where a whole, valid record starts (both checksums
/// good and a payload that decodes), or `None`.
///
/// Replay calls it at the first damaged frame: an interrupted append leaves damage only after
/// the last whole record, so a valid record after the damage proves the damage is not a torn
/// tail. A random match needs a 32-bit (V1) or two 32-bit (V2) checksums to agree by chance.
pub fn find_valid_frame(b: &[u8], from: usize, framing: Framing) -> Option<usize> {
    let hl = framing.header_len();
    (from..b.len().saturating_sub(hl)).find(|&p| match read_frame(&b[p..], framing) {
        Frame::Ok { payload, .. } => decode_payload(payload).is_ok(),
        _ => false,
    })
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
            match read_frame(&f, Framing::V2) {
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
        assert_eq!(read_frame(&f[..f.len() - 1], Framing::V2), Frame::Truncated);
        assert_eq!(read_frame(&f[..3], Framing::V2), Frame::Truncated);
        let mut bad = f.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(read_frame(&bad, Framing::V2), Frame::Bad { .. }));
        let zero = [0u8; 16];
        assert!(matches!(read_frame(&zero, Framing::V2), Frame::Bad { .. }));
    }

    #[test]
    fn every_bit_flip_in_a_length_is_seen_as_damage_not_a_short_file() {
        let f = encode_frame(&Record::Clear { rid: vec![7; 24] }).expect("encode");
        for bit in 0..32 {
            let mut b = f.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(read_frame(&b, Framing::V2), Frame::Bad { .. }),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_valid_record_after_damage_is_found_at_its_offset() {
        let a = encode_frame(&Record::Clear { rid: vec![1; 24] }).expect("a");
        let b = encode_frame(&Record::Clear { rid: vec![2; 24] }).expect("b");
        let mut bytes = a.clone();
        bytes[2] ^= 0x10; // the length of the first record
        bytes.extend_from_slice(&b);
        assert_eq!(find_valid_frame(&bytes, 1, Framing::V2), Some(a.len()));
        assert_eq!(
            find_valid_frame(&bytes[..a.len() + 5], 1, Framing::V2),
            None
        );
        // The first format: the same search over frames without a header checksum.
        let a1 = encode_frame_as(&Record::Clear { rid: vec![1; 24] }, Framing::V1).expect("a");
        let b1 = encode_frame_as(&Record::Clear { rid: vec![2; 24] }, Framing::V1).expect("b");
        let mut v1 = a1.clone();
        v1[1] ^= 0x01;
        v1.extend_from_slice(&b1);
        assert_eq!(read_frame(&v1, Framing::V1), Frame::Truncated);
        assert_eq!(find_valid_frame(&v1, 1, Framing::V1), Some(a1.len()));
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
