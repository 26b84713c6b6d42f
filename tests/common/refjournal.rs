//! Writes a `messages/` directory as the reference server's journal store leaves it, from the
//! reference's format (`MsgStore/Journal.hs`): one directory per queue at
//! `<b64 rid split into four 2-char parts>/<rest>/`, holding `queue_state.<b64 rid>.log` (one
//! `write=<id>,<msgPos>,<msgCount>,<bytePos>,<byteCount> read=<same> canWrite=T|F size=<n>`
//! line per change, the last one current) and `messages.<journal id>.log` (one message per
//! line: `<b64 msg id> <ts> flags=T|F <b64 body>` or `<b64 msg id> <ts> quota`).
//!
//! Independent of the server's own encoder on purpose, so the reader is checked against the
//! format, not against itself. Shared by the unit tests (through `#[path]`) and
//! `tests/journal_reference.rs`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;

/// One message as the reference journals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefMsg {
    /// A message: id, time, notification flag, body.
    Msg(Vec<u8>, i64, bool, Vec<u8>),
    /// The quota marker: id, time.
    Quota(Vec<u8>, i64),
}

impl RefMsg {
    /// The line written to `messages.<id>.log`, newline included.
    pub fn line(&self) -> Vec<u8> {
        let s = match self {
            RefMsg::Msg(id, ts, ntf, body) => format!(
                "{} {ts} flags={} {}\n",
                URL_SAFE.encode(id),
                if *ntf { "T" } else { "F" },
                URL_SAFE.encode(body)
            ),
            RefMsg::Quota(id, ts) => format!("{} {ts} quota\n", URL_SAFE.encode(id)),
        };
        s.into_bytes()
    }
}

/// A journal position: file id, message position and count, byte position and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub id: String,
    pub msg_pos: u64,
    pub msg_count: u64,
    pub byte_pos: u64,
    pub byte_count: u64,
}

impl Pos {
    fn enc(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.id, self.msg_pos, self.msg_count, self.byte_pos, self.byte_count
        )
    }
}

/// A `queue_state` line.
pub fn state_line(write: &Pos, read: &Pos, can_write: bool, size: u64) -> String {
    format!(
        "write={} read={} canWrite={} size={size}\n",
        write.enc(),
        read.enc(),
        if can_write { "T" } else { "F" }
    )
}

/// The queue directory of `rid` under `root`, as the reference lays it out (depth 5).
pub fn queue_dir(root: &Path, rid: &[u8]) -> PathBuf {
    let s = URL_SAFE.encode(rid);
    let mut p = root.to_path_buf();
    let mut rest = s.as_str();
    for _ in 0..4 {
        let (a, b) = rest.split_at(2.min(rest.len()));
        p.push(a);
        rest = b;
    }
    if !rest.is_empty() {
        p.push(rest);
    }
    p
}

/// The state file of `rid`.
pub fn state_path(root: &Path, rid: &[u8]) -> PathBuf {
    queue_dir(root, rid).join(format!("queue_state.{}.log", URL_SAFE.encode(rid)))
}

/// A queue written the way the reference's writeMsg / tryDelMsg do it: messages are appended
/// to the write journal (a new one after `max_per_file` messages), each change appends a state
/// line, and acknowledging moves the read position (removing a read journal once passed).
pub struct RefQueue {
    pub root: PathBuf,
    pub rid: Vec<u8>,
    pub write: Pos,
    pub read: Pos,
    pub can_write: bool,
    pub size: u64,
    pub max_per_file: u64,
    /// Lengths of the undelivered messages' lines, oldest first.
    lens: std::collections::VecDeque<u64>,
    next_id: u32,
}

impl RefQueue {
    /// A new queue; nothing is written until the first message, as in the reference.
    pub fn new(root: &Path, rid: &[u8], max_per_file: u64) -> RefQueue {
        let id = Self::journal_id(rid, 0);
        let p = Pos {
            id,
            msg_pos: 0,
            msg_count: 0,
            byte_pos: 0,
            byte_count: 0,
        };
        RefQueue {
            root: root.to_path_buf(),
            rid: rid.to_vec(),
            write: p.clone(),
            read: p,
            can_write: true,
            size: 0,
            max_per_file,
            lens: Default::default(),
            next_id: 1,
        }
    }

    /// A 16-character journal id (the reference: 12 random bytes, base64url).
    fn journal_id(rid: &[u8], n: u32) -> String {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&n.to_le_bytes());
        b[4..].copy_from_slice(&rid[..8]);
        URL_SAFE.encode(b)
    }

    pub fn dir(&self) -> PathBuf {
        queue_dir(&self.root, &self.rid)
    }

    pub fn msgs_path(&self, id: &str) -> PathBuf {
        self.dir().join(format!("messages.{id}.log"))
    }

    fn append(path: &Path, bytes: &[u8]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(bytes).expect("append");
    }

    fn log_state(&self) {
        Self::append(
            &state_path(&self.root, &self.rid),
            state_line(&self.write, &self.read, self.can_write, self.size).as_bytes(),
        );
    }

    /// Write a message (the file first, then the state line).
    pub fn write_msg(&mut self, m: &RefMsg) {
        std::fs::create_dir_all(self.dir()).expect("mkdir");
        if self.read.id == self.write.id && self.write.msg_count >= self.max_per_file {
            // switchWriteJournal (only while reading and writing share a file, so a queue
            // has at most two): a new file, a fresh write position.
            let id = Self::journal_id(&self.rid, self.next_id);
            self.next_id += 1;
            self.write = Pos {
                id,
                msg_pos: 0,
                msg_count: 0,
                byte_pos: 0,
                byte_count: 0,
            };
        }
        let line = m.line();
        let len = line.len() as u64;
        Self::append(&self.msgs_path(&self.write.id.clone()), &line);
        let w = &mut self.write;
        w.msg_pos += 1;
        w.msg_count = w.msg_pos;
        w.byte_pos += len;
        w.byte_count = w.byte_pos;
        if self.read.id == self.write.id {
            self.read.msg_count = self.write.msg_count;
            self.read.byte_count = self.write.byte_count;
        }
        if matches!(m, RefMsg::Quota(..)) {
            self.can_write = false;
        }
        self.size += 1;
        self.lens.push_back(len);
        self.log_state();
    }

    /// Acknowledge the oldest message (the read position moves past it).
    pub fn ack(&mut self) {
        if self.read.msg_pos >= self.read.msg_count && self.read.id != self.write.id {
            // chooseReadJournal: switch to the write journal, remove the old read file.
            let _ = std::fs::remove_file(self.msgs_path(&self.read.id.clone()));
            self.read = Pos {
                id: self.write.id.clone(),
                msg_pos: 0,
                msg_count: self.write.msg_count,
                byte_pos: 0,
                byte_count: self.write.byte_count,
            };
            self.log_state();
        }
        let len = self.lens.pop_front().expect("a message to acknowledge");
        self.read.msg_pos += 1;
        self.read.byte_pos += len;
        self.size -= 1;
        self.log_state();
    }

    /// Bytes after the last state line in the write file: a write the crash interrupted
    /// before its state line (the reference truncates them).
    pub fn torn_write(&self, bytes: &[u8]) {
        Self::append(&self.msgs_path(&self.write.id), bytes);
    }

    /// A torn state line at the end of the state file.
    pub fn torn_state(&self, bytes: &[u8]) {
        Self::append(&state_path(&self.root, &self.rid), bytes);
    }
}

/// A recent message time: fixed for the process (so expected and written messages agree),
/// ten minutes old, so start-up expiry keeps it.
pub fn ts(i: u8) -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        now - 600
    });
    base + i64::from(i)
}

/// A message with a recognisable id and body.
pub fn msg(q: u8, i: u8) -> RefMsg {
    RefMsg::Msg(
        vec![
            q, i, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        ],
        ts(i),
        i % 2 == 0,
        format!("q{q}-m{i}").into_bytes(),
    )
}
