//! Reading the reference server's journal store (its `messages/` directory) in place, so a
//! server switched from the reference keeps every undelivered message without an export.
//!
//! The reference keeps one directory per queue, `<rid>` (base64url) split as `ab/cd/ef/gh/<rest>`,
//! holding `queue_state.<rid>.log` (see [`state`]) and one or two journal files
//! `messages.<id>.log`, one message per line (the message-log line without `v3 <rid> `).
//! A queue's undelivered messages are those from the read position to the end of the read
//! journal and, when the write journal has moved on to another file, the write journal from
//! its start to the write position. Bytes after the write position are an append the state
//! never recorded (the reference truncates them), so they are not messages.
//!
//! [`read_dir`] yields exactly those messages, changing nothing; [`convert`] turns such a
//! directory into this server's journal at start.

pub mod convert;
pub mod state;

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::store::msgfile::parse_message;
use crate::store::strenc::Cursor;
use crate::store::Message;
use state::{Chosen, Pos, QueueState};

/// What can go wrong reading the reference's journal. Every variant names the file, and the
/// text says what to do; nothing has been changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum RefJournalError {
    /// A file operation failed.
    #[error("reference journal: error {what} {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A file's content is not what the reference writes.
    #[error("reference journal file {} is damaged: {reason}. Nothing was changed. Restore the queue directory {} from a backup, or move it out of the journal directory to give up its messages, then start again.", path.display(), path.parent().map(Path::display).unwrap_or(Path::new("").display()))]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A finished conversion lies next to a `messages/` directory that is not the reference's
    /// journal: someone moved directories by hand; which one holds the messages is unknown.
    #[error("{} (a finished conversion of the reference's journal) is next to {}, which is not the reference's journal. Nothing was changed. Keep the one that holds the messages as {} and move the other away, then start again.", converted.display(), dir.display(), dir.display())]
    Ambiguous {
        /// The finished conversion.
        converted: PathBuf,
        /// The journal directory.
        dir: PathBuf,
    },
    /// Writing this server's journal failed.
    #[error(transparent)]
    Journal(#[from] super::JournalError),
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> RefJournalError {
    let path = path.to_path_buf();
    move |source| RefJournalError::Io { path, what, source }
}

fn damaged(path: &Path, reason: impl Into<String>) -> RefJournalError {
    RefJournalError::Damaged {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether `dir` is laid out as the reference's journal: it holds queue directories (named by
/// two characters of a base64url queue ID) and none of this server's journal files.
pub fn is_reference_layout(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut queue_dirs = false;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if super::is_own_entry(&name) {
            return false;
        }
        let b64 = name.len() == 2
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        queue_dirs |= b64 && e.file_type().is_ok_and(|t| t.is_dir());
    }
    queue_dirs
}

/// The messages read from a reference journal directory.
#[derive(Debug, Default)]
pub struct RefReplay {
    /// Undelivered messages per recipient ID, oldest first.
    pub msgs: HashMap<Vec<u8>, VecDeque<Message>>,
    /// Queue state files read.
    pub queues: usize,
    /// What was recovered the way the reference recovers it (a torn state line, a missing
    /// journal file, an unrecorded append): one line each, for the log.
    pub notes: Vec<String>,
}

/// Read every queue in the reference journal directory `dir`, without changing anything.
pub fn read_dir(dir: &Path) -> Result<RefReplay, RefJournalError> {
    let mut out = RefReplay::default();
    walk(dir, 0, &mut out)?;
    Ok(out)
}

/// The reference nests queue directories 5 deep; a little slack, no unbounded recursion.
const MAX_DEPTH: usize = 8;

fn walk(dir: &Path, depth: usize, out: &mut RefReplay) -> Result<(), RefJournalError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir, "reading"))?
        .collect::<Result<_, _>>()
        .map_err(io(dir, "reading"))?;
    entries.sort_by_key(|e| e.file_name());
    // A queue's `.log` and `.log.bak` are one queue: collected first, read once.
    let mut rids = std::collections::BTreeMap::new();
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type().map_err(io(&path, "reading"))?;
        if ft.is_dir() && depth < MAX_DEPTH {
            walk(&path, depth + 1, out)?;
        } else if let Some(rid_b64) = state_file_rid(&name) {
            rids.insert(rid_b64, path);
        }
    }
    for (rid_b64, path) in rids {
        let rid = Cursor::new(rid_b64.as_bytes())
            .bytes()
            .map_err(|_| damaged(&path, "the queue ID in the file name is not base64url"))?;
        let msgs = read_queue(dir, &rid_b64, out)?;
        out.queues += 1;
        if !msgs.is_empty() && out.msgs.insert(rid, msgs).is_some() {
            return Err(damaged(
                &path,
                "a second queue directory for the same queue",
            ));
        }
    }
    Ok(())
}

/// The queue ID of a current state file name: `queue_state.<rid>.log`, or the temporary
/// copy `queue_state.<rid>.log.bak` when the `.log` is missing (a crash while the reference
/// was rewriting it). Timed backups (`...log.<time>.bak`) are old states and are not read.
fn state_file_rid(name: &str) -> Option<String> {
    let rest = name.strip_prefix("queue_state.")?;
    let (rid, ext) = rest.split_once('.')?;
    (ext == "log" || ext == "log.bak").then(|| rid.to_string())
}

/// The undelivered messages of one queue.
fn read_queue(
    dir: &Path,
    rid: &str,
    out: &mut RefReplay,
) -> Result<VecDeque<Message>, RefJournalError> {
    let log = dir.join(format!("queue_state.{rid}.log"));
    let bak = dir.join(format!("queue_state.{rid}.log.bak"));
    // The reference, finding the temporary copy, renames it over the state file and reads
    // it: the copy is the complete file, the new one may hold a single line.
    let path = if bak.exists() { bak } else { log };
    let content = read_tail(&path)?;
    let st = match state::choose(&content) {
        Ok(Chosen::None) => {
            if !content.is_empty() {
                out.notes.push(format!(
                    "{}: the only state line is damaged; the queue has no messages (as in the reference)",
                    path.display()
                ));
            }
            return Ok(VecDeque::new());
        }
        Ok(Chosen::State { state, fell_back }) => {
            if fell_back {
                out.notes.push(format!(
                    "{}: the last state line was cut off; the line before it was used",
                    path.display()
                ));
            }
            state
        }
        Err(reason) => return Err(damaged(&path, reason)),
    };
    if st.size == 0 {
        return Ok(VecDeque::new());
    }
    read_messages(dir, &path, &st, out)
}

/// The end of a state file: the reference reads only the last 512 bytes; a little more is
/// read here, whole lines only.
fn read_tail(path: &Path) -> Result<Vec<u8>, RefJournalError> {
    const TAIL: u64 = 64 << 10;
    let mut f = std::fs::File::open(path).map_err(io(path, "opening"))?;
    let len = f.metadata().map_err(io(path, "reading"))?.len();
    let start = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(start))
        .map_err(io(path, "reading"))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io(path, "reading"))?;
    if start > 0 {
        // The first line may be partial.
        let cut = buf
            .iter()
            .position(|b| *b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        buf.drain(..cut);
    }
    Ok(buf)
}

/// The journal file of `p`.
fn journal_path(dir: &Path, p: &Pos) -> PathBuf {
    dir.join(format!("messages.{}.log", p.id))
}

/// The messages of a queue with undelivered messages, following the reference's recovery
/// when a journal file is missing (`openJournals`).
fn read_messages(
    dir: &Path,
    state_path: &Path,
    st: &QueueState,
    out: &mut RefReplay,
) -> Result<VecDeque<Message>, RefJournalError> {
    let (r, w) = (&st.read, &st.write);
    let (rpath, wpath) = (journal_path(dir, r), journal_path(dir, w));
    let mut msgs = VecDeque::new();
    let missing = |p: &Path, what: &str| {
        format!(
            "{}: {} missing; {what} (as the reference does)",
            state_path.display(),
            p.display()
        )
    };
    if r.id == w.id {
        if !rpath.exists() {
            out.notes.push(missing(&rpath, "the queue has no messages"));
            return Ok(msgs);
        }
        read_range(&rpath, r.byte_pos, w.byte_pos, st.size, &mut msgs, out)?;
        return Ok(msgs);
    }
    if rpath.exists() {
        read_range(
            &rpath,
            r.byte_pos,
            r.byte_count,
            r.msg_count - r.msg_pos,
            &mut msgs,
            out,
        )?;
    } else {
        out.notes
            .push(missing(&rpath, "reading from the write journal"));
    }
    if wpath.exists() {
        read_range(&wpath, 0, w.byte_pos, w.msg_count, &mut msgs, out)?;
    } else {
        out.notes
            .push(missing(&wpath, "only the read journal is used"));
    }
    Ok(msgs)
}

/// Read the `count` messages in bytes `from..to` of the journal file `path`.
fn read_range(
    path: &Path,
    from: u64,
    to: u64,
    count: u64,
    msgs: &mut VecDeque<Message>,
    out: &mut RefReplay,
) -> Result<(), RefJournalError> {
    let mut f = std::fs::File::open(path).map_err(io(path, "opening"))?;
    let len = f.metadata().map_err(io(path, "reading"))?.len();
    if len < to {
        return Err(damaged(
            path,
            format!("its queue state counts {to} bytes of messages but the file has {len} (cut short, e.g. by a power loss)"),
        ));
    }
    if len > to {
        out.notes.push(format!(
            "{}: {} bytes after the last recorded message (an interrupted write) are not messages",
            path.display(),
            len - to
        ));
    }
    let mut buf = vec![0; usize::try_from(to - from).map_err(|_| damaged(path, "too large"))?];
    f.seek(SeekFrom::Start(from)).map_err(io(path, "reading"))?;
    f.read_exact(&mut buf).map_err(io(path, "reading"))?;
    if !buf.is_empty() && !buf.ends_with(b"\n") {
        return Err(damaged(
            path,
            format!("the message ending at byte offset {to} has no line end"),
        ));
    }
    let mut n = 0;
    let mut off = from;
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    if !buf.is_empty() {
        for line in body.split(|b| *b == b'\n') {
            if n == count {
                break;
            }
            let m = parse_message(line).map_err(|e| {
                damaged(
                    path,
                    format!("the message at byte offset {off} does not parse ({e})"),
                )
            })?;
            off += line.len() as u64 + 1;
            msgs.push_back(m);
            n += 1;
        }
    }
    if n != count || off != to {
        return Err(damaged(
            path,
            format!("its queue state counts {count} messages in bytes {from}..{to}, the file holds {n} there"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
