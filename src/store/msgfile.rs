//! Lines of the files that carry undelivered messages and notifications across a restart
//! (`smp-server-messages.log`, `smp-server-ntfs.log`), as the reference writes them. No I/O.
//!
//! ```text
//! v3 <recipient id> <msg id> <ts> flags=<T|F> <body>     a message
//! v3 <recipient id> <msg id> <ts> quota                  the "queue full" marker
//! v1 <notifier id> <msg id> <ts> <nonce> <encrypted meta>  a pending notification
//! ```
//!
//! Byte strings are base64url with padding, times are Unix seconds.

use super::strenc::{b64, Cursor, ParseError};
use super::Message;
use crate::protocol::command::MsgFlags;

/// A message line for queue `rid`.
pub fn encode_msg(rid: &[u8], m: &Message) -> Vec<u8> {
    let mut line = format!("v3 {} ", b64(rid)).into_bytes();
    line.extend(encode_message(m));
    line
}

/// A message alone, as the reference's journal writes one per line of `messages.<id>.log`
/// (the message-log line without `v3 <recipient id> `).
pub fn encode_message(m: &Message) -> Vec<u8> {
    match m {
        Message::Msg {
            msg_id,
            ts,
            flags,
            body,
        } => format!(
            "{} {ts} flags={} {}",
            b64(msg_id),
            if flags.notification { "T" } else { "F" },
            b64(body)
        ),
        Message::Quota { msg_id, ts } => format!("{} {ts} quota", b64(msg_id)),
    }
    .into_bytes()
}

/// Parse a message line: (recipient ID, message).
pub fn parse_msg(line: &[u8]) -> Result<(Vec<u8>, Message), ParseError> {
    let mut c = Cursor::new(line);
    c.tag("v3 ")?;
    let rid = c.bytes()?;
    c.space()?;
    Ok((rid, message(&mut c)?))
}

/// Parse a message alone (a line of the reference's `messages.<id>.log`).
pub fn parse_message(line: &[u8]) -> Result<Message, ParseError> {
    message(&mut Cursor::new(line))
}

fn message(c: &mut Cursor<'_>) -> Result<Message, ParseError> {
    let msg_id = c.bytes()?;
    c.space()?;
    let ts = c.int()?;
    c.space()?;
    if c.try_tag("quota") {
        c.end()?;
        return Ok(Message::Quota { msg_id, ts });
    }
    let mut flags = MsgFlags::default();
    if c.try_tag("flags=") {
        flags.notification = match c.take_till(b" ").first() {
            Some(b'T') => true,
            Some(b'F') => false,
            _ => return Err(c.err("flags=T|F")),
        };
        c.space()?;
    }
    // An empty body is written as nothing; accept it.
    let body = c.opt_bytes()?.unwrap_or_default();
    c.end()?;
    Ok(Message::Msg {
        msg_id,
        ts,
        flags,
        body,
    })
}

/// A pending notification as stored: message ID, time, nonce, encrypted metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtfLine {
    /// Notifier ID.
    pub notifier_id: Vec<u8>,
    /// Message ID.
    pub msg_id: Vec<u8>,
    /// Unix seconds.
    pub ts: i64,
    /// Nonce of the encrypted metadata.
    pub nonce: [u8; 24],
    /// Encrypted metadata.
    pub enc_meta: Vec<u8>,
}

/// A notification line.
pub fn encode_ntf(n: &NtfLine) -> Vec<u8> {
    format!(
        "v1 {} {} {} {} {}",
        b64(&n.notifier_id),
        b64(&n.msg_id),
        n.ts,
        b64(&n.nonce),
        b64(&n.enc_meta)
    )
    .into_bytes()
}

/// Parse a notification line.
pub fn parse_ntf(line: &[u8]) -> Result<NtfLine, ParseError> {
    let mut c = Cursor::new(line);
    c.tag("v1 ")?;
    let notifier_id = c.bytes()?;
    c.space()?;
    let msg_id = c.bytes()?;
    c.space()?;
    let ts = c.int()?;
    c.space()?;
    let nonce = c.fixed::<24>("24-byte nonce")?;
    c.space()?;
    let enc_meta = c.bytes()?;
    c.end()?;
    Ok(NtfLine {
        notifier_id,
        msg_id,
        ts,
        nonce,
        enc_meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/reference-messages.log");
    const NTFS: &str = include_str!("../../tests/fixtures/reference-ntfs.log");

    #[test]
    fn reference_message_lines_parse_and_encode_back() {
        let mut n = 0;
        for line in FIXTURE.lines() {
            let (rid, m) = parse_msg(line.as_bytes()).expect(line);
            assert_eq!(String::from_utf8(encode_msg(&rid, &m)).expect("utf8"), line);
            n += 1;
        }
        assert_eq!(n, 3);
        let (_, m) = parse_msg(FIXTURE.lines().next().expect("l").as_bytes()).expect("p");
        assert_eq!(
            m,
            Message::Msg {
                msg_id: vec![16; 24],
                ts: 1700000000,
                flags: MsgFlags { notification: true },
                body: b"hello".to_vec()
            }
        );
    }

    #[test]
    fn old_lines_without_flags_parse() {
        let (_, m) = parse_msg(b"v3 AQEB EBAQ 5 aGk=").expect("p");
        assert_eq!(
            m,
            Message::Msg {
                msg_id: vec![16, 16, 16],
                ts: 5,
                flags: MsgFlags::default(),
                body: b"hi".to_vec()
            }
        );
        assert!(parse_msg(b"v3 AQEB EBAQ soon quota").is_err());
        assert!(parse_msg(b"v2 AQEB EBAQ 5 quota").is_err());
    }

    #[test]
    fn reference_ntf_lines_parse_and_encode_back() {
        for line in NTFS.lines() {
            let n = parse_ntf(line.as_bytes()).expect(line);
            assert_eq!(String::from_utf8(encode_ntf(&n)).expect("utf8"), line);
        }
        assert!(
            parse_ntf(b"v1 AQEB EBAQ 5 AQEB AQEB").is_err(),
            "short nonce"
        );
    }
}
