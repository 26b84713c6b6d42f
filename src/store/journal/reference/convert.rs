//! Converting the reference's journal directory into this server's journal at start, in
//! place, crash-safe and idempotent, deleting nothing.
//!
//! Next to `messages/` (the reference's directory):
//! 1. this server's journal is written to `messages.converting/` and fsynced;
//! 2. renamed to `messages.converted/` (from here on the conversion is complete);
//! 3. `messages/` is renamed to `messages.reference-<unix time>/` (kept, as it was);
//! 4. `messages.converted/` is renamed to `messages/`.
//!
//! A crash before 2 leaves the original untouched (the partial `messages.converting/` is
//! removed at the next start and the conversion redone); after 2, the next start finishes
//! steps 3 and 4. The messages are then restored by the ordinary journal start, so queues the
//! store log does not have follow the usual orphan rules.

use std::path::{Path, PathBuf};

use super::super::record::Record;
use super::super::shard::sync_dir;
use super::super::{Journal, JournalOptions};
use super::{io, is_reference_layout, read_dir, RefJournalError};

/// What a conversion did, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Queues with messages.
    pub queues: usize,
    /// Messages converted.
    pub messages: usize,
    /// Where the reference's directory was kept (`None` when an interrupted conversion was
    /// only finished, its name unknown here).
    pub original: Option<PathBuf>,
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

fn parent(dir: &Path) -> &Path {
    dir.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn rename(from: &Path, to: &Path) -> Result<(), RefJournalError> {
    std::fs::rename(from, to).map_err(io(from, "renaming (to its new name next to it)"))?;
    sync_dir(parent(to))?;
    Ok(())
}

/// A free `messages.reference-<unix time>[.n]` name next to `dir`.
fn aside_name(dir: &Path) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = sibling(dir, &format!(".reference-{now}"));
    let mut p = base.clone();
    let mut n = 1;
    while p.exists() {
        p = sibling(&base, &format!(".{n}"));
        n += 1;
    }
    p
}

/// If `dir` is the reference's journal (or a conversion of it was interrupted), convert it as
/// the module says and return what was done; `Ok(None)` when there is nothing to convert.
/// Damaged input is an error naming the file, with the original untouched.
pub fn convert_if_needed(
    dir: &Path,
    opts: JournalOptions,
) -> Result<Option<Converted>, RefJournalError> {
    let converting = sibling(dir, ".converting");
    let converted = sibling(dir, ".converted");
    if converting.exists() {
        // Only this server writes it, and only before step 2: a partial copy.
        std::fs::remove_dir_all(&converting).map_err(io(&converting, "removing"))?;
    }
    let reference = is_reference_layout(dir);
    if converted.exists() {
        if !dir.exists() {
            rename(&converted, dir)?;
            return Ok(Some(finished(dir)));
        }
        if !reference {
            return Err(RefJournalError::Ambiguous {
                converted,
                dir: dir.to_path_buf(),
            });
        }
        return put_in_place(dir, &converted, None);
    }
    if !reference {
        return Ok(None);
    }
    let replay = read_dir(dir)?;
    for note in &replay.notes {
        tracing::warn!("reference journal: {note}");
    }
    let (journal, _) = Journal::open(&converting, opts)?;
    let mut messages = 0;
    for (rid, msgs) in &replay.msgs {
        for msg in msgs {
            journal.append(&Record::Write {
                rid: rid.clone(),
                msg: msg.clone(),
            })?;
            messages += 1;
        }
    }
    journal.sync_all()?;
    drop(journal);
    sync_dir(&converting)?;
    rename(&converting, &converted)?;
    let counts = Converted {
        queues: replay.msgs.len(),
        messages,
        original: None,
    };
    put_in_place(dir, &converted, Some(counts))
}

/// Steps 3 and 4.
fn put_in_place(
    dir: &Path,
    converted: &Path,
    counts: Option<Converted>,
) -> Result<Option<Converted>, RefJournalError> {
    let aside = aside_name(dir);
    rename(dir, &aside)?;
    rename(converted, dir)?;
    let Some(c) = counts else {
        tracing::info!(
            "finished converting the reference smp-server's message journal into {} \
             (interrupted earlier); the original directory is kept unchanged as {}",
            dir.display(),
            aside.display()
        );
        return Ok(Some(Converted {
            queues: 0,
            messages: 0,
            original: Some(aside),
        }));
    };
    tracing::info!(
        "converted the reference smp-server's message journal: {} messages of {} queues are now \
         in {}; the original directory is kept unchanged as {} (delete it once the server \
         runs as expected)",
        c.messages,
        c.queues,
        dir.display(),
        aside.display()
    );
    Ok(Some(Converted {
        original: Some(aside),
        ..c
    }))
}

/// What finishing an interrupted conversion (renaming `messages.converted/` into place)
/// reports: its counts were logged by the start that wrote it, and are not known here.
fn finished(dir: &Path) -> Converted {
    tracing::info!(
        "finished converting the reference smp-server's message journal into {} (interrupted \
         earlier); the original directory is kept as {}.reference-<time>",
        dir.display(),
        dir.display()
    );
    Converted {
        queues: 0,
        messages: 0,
        original: None,
    }
}
