//! The reference journal's queue state: the lines of `queue_state.<rid>.log` and how the
//! current one is chosen. No I/O.
//!
//! ```text
//! write=<id>,<msgPos>,<msgCount>,<bytePos>,<byteCount> read=<same fields> canWrite=T|F size=<n>
//! ```
//!
//! The reference appends one such line per change (message written, read position moved,
//! journal switched); the last line is the state. Positions are counted in messages and bytes
//! of the journal file `messages.<id>.log`.

/// A position in one journal file (the reference's `JournalState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// The journal file's id: its name is `messages.<id>.log`.
    pub id: String,
    /// Messages before the position.
    pub msg_pos: u64,
    /// Messages in the file.
    pub msg_count: u64,
    /// Bytes before the position.
    pub byte_pos: u64,
    /// Bytes of complete messages in the file.
    pub byte_count: u64,
}

/// One queue's state (the reference's `MsgQueueState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    /// Where messages are appended.
    pub write: Pos,
    /// Where the next message to deliver is.
    pub read: Pos,
    /// False after the quota marker was written, until the queue is emptied.
    pub can_write: bool,
    /// Undelivered messages (the quota marker included).
    pub size: u64,
}

fn pos(s: &str) -> Option<Pos> {
    let mut it = s.split(',');
    let id = it.next()?;
    // Journal ids are base64url; anything else could name a file outside the queue directory.
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b))
    {
        return None;
    }
    let mut n = || -> Option<u64> {
        let d = it.next()?;
        (!d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .then(|| d.parse().ok())
            .flatten()
    };
    let p = Pos {
        id: id.to_string(),
        msg_pos: n()?,
        msg_count: n()?,
        byte_pos: n()?,
        byte_count: n()?,
    };
    it.next().is_none().then_some(p)
}

/// Parse one state line (without its newline); `None` if it is not a whole state line.
pub fn parse_line(line: &[u8]) -> Option<QueueState> {
    let s = std::str::from_utf8(line).ok()?;
    let rest = s.strip_prefix("write=")?;
    let (w, rest) = rest.split_once(" read=")?;
    let (r, rest) = rest.split_once(" canWrite=")?;
    let (cw, size) = rest.split_once(" size=")?;
    let can_write = match cw {
        "T" => true,
        "F" => false,
        _ => return None,
    };
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(QueueState {
        write: pos(w)?,
        read: pos(r)?,
        can_write,
        size: size.parse().ok()?,
    })
}

impl QueueState {
    /// The reference's consistency check of a state (`validQueueState`); it refuses to use
    /// a state that fails it.
    pub fn is_valid(&self) -> bool {
        let (r, w) = (&self.read, &self.write);
        let always = r.msg_pos <= r.msg_count
            && r.byte_pos <= r.byte_count
            && w.msg_pos == w.msg_count
            && w.byte_pos == w.byte_count;
        if r.id == w.id {
            always
                && r.msg_pos <= w.msg_pos
                && r.msg_count == w.msg_count
                && r.byte_pos <= w.byte_pos
                && r.byte_count == w.byte_count
                && Some(self.size) == r.msg_count.checked_sub(r.msg_pos)
        } else {
            always && Some(self.size) == (w.msg_count + r.msg_count).checked_sub(r.msg_pos)
        }
    }
}

/// How the current state was chosen from a state file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    /// The file is empty or its only line is damaged: the queue has no messages (the
    /// reference starts it afresh).
    None,
    /// The state to use; `fell_back` when the last line was damaged (an interrupted append)
    /// and the line before it was used, as the reference does.
    State {
        /// The state.
        state: QueueState,
        /// The last line was skipped.
        fell_back: bool,
    },
}

/// Choose the current state from the content of a state file, as the reference's
/// `readQueueState` does: the last line; if it does not parse, the line before it (a torn
/// append). `Err` with the reason when that is damaged too, or the chosen state is
/// inconsistent (the reference refuses those as well). One difference: an unterminated last
/// line that parses but is inconsistent (cut inside a number) falls back too, where the
/// reference would refuse the queue.
pub fn choose(content: &[u8]) -> Result<Chosen, String> {
    let terminated = content.ends_with(b"\n");
    let mut lines: Vec<&[u8]> = content.split(|b| *b == b'\n').collect();
    if terminated {
        lines.pop();
    }
    let Some(last) = lines.pop() else {
        return Ok(Chosen::None);
    };
    match parse_line(last) {
        Some(st) if st.is_valid() => {
            return Ok(Chosen::State {
                state: st,
                fell_back: false,
            })
        }
        Some(st) if terminated => return Err(format!("inconsistent state {st:?}")),
        _ => {}
    }
    let Some(prev) = lines.pop() else {
        return Ok(Chosen::None);
    };
    match parse_line(prev) {
        Some(st) if st.is_valid() => Ok(Chosen::State {
            state: st,
            fell_back: true,
        }),
        Some(st) => Err(format!("inconsistent state {st:?}")),
        None => Err(format!(
            "neither of the last two lines is a state: {:?}",
            String::from_utf8_lossy(prev)
        )),
    }
}
