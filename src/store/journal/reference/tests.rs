use std::path::Path;

use super::convert::convert_if_needed;
use super::state::{choose, parse_line, Chosen};
use super::*;
use crate::config::JournalFsync;
use crate::protocol::command::MsgFlags;
use crate::store::journal::{Journal, JournalOptions};

#[path = "../../../../tests/common/refjournal.rs"]
mod fixture;
use fixture::{msg, state_path, RefMsg, RefQueue};

fn rid(n: u8) -> Vec<u8> {
    let mut r = vec![n; 24];
    r[1] = 0xfb; // base64url '-'/'_' territory
    r
}

fn ours(m: &RefMsg) -> Message {
    match m.clone() {
        RefMsg::Msg(msg_id, ts, notification, body) => Message::Msg {
            msg_id,
            ts,
            flags: MsgFlags { notification },
            body,
        },
        RefMsg::Quota(msg_id, ts) => Message::Quota { msg_id, ts },
    }
}

fn got(r: &RefReplay, q: u8) -> Vec<Message> {
    r.msgs
        .get(&rid(q))
        .map(|v| v.iter().cloned().collect())
        .unwrap_or_default()
}

fn want(q: u8, range: std::ops::Range<u8>) -> Vec<Message> {
    range.map(|i| ours(&msg(q, i))).collect()
}

/// Queue 1: 5 written, 2 acknowledged, one file. Queue 2: 7 written with 3 per file, 4
/// acknowledged (the first file removed), plus an unrecorded append. Queue 3: all
/// acknowledged. Queue 4: over quota (marker last), a torn state line.
fn build(root: &Path) {
    let mut q1 = RefQueue::new(root, &rid(1), 256);
    (0..5).for_each(|i| q1.write_msg(&msg(1, i)));
    q1.ack();
    q1.ack();
    let mut q2 = RefQueue::new(root, &rid(2), 3);
    (0..7).for_each(|i| q2.write_msg(&msg(2, i)));
    (0..4).for_each(|_| q2.ack());
    q2.torn_write(b"AAAA 17000");
    let mut q3 = RefQueue::new(root, &rid(3), 256);
    (0..3).for_each(|i| q3.write_msg(&msg(3, i)));
    (0..3).for_each(|_| q3.ack());
    let mut q4 = RefQueue::new(root, &rid(4), 256);
    (0..2).for_each(|i| q4.write_msg(&msg(4, i)));
    q4.write_msg(&RefMsg::Quota(vec![4; 24], fixture::ts(100)));
    q4.torn_state(b"write=abc,1,");
}

#[test]
fn state_lines_parse_and_are_checked_as_the_reference_does() {
    let l =
        b"write=AAAAAAAAAAAAAAAA,2,2,100,100 read=AAAAAAAAAAAAAAAA,1,2,50,100 canWrite=T size=1";
    let st = parse_line(l).expect("parses");
    assert!(st.is_valid());
    assert_eq!((st.read.msg_pos, st.size, st.can_write), (1, 1, true));
    assert!(parse_line(b"write=../x,0,0,0,0 read=a,0,0,0,0 canWrite=T size=0").is_none());
    assert!(parse_line(b"write=a,0,0,0,0 read=a,0,0,0,0 canWrite=X size=0").is_none());
    let bad = b"write=a,2,2,100,100 read=a,1,2,50,100 canWrite=T size=5\n";
    assert!(choose(bad).is_err(), "inconsistent size is refused");
    let two = [&l[..], b"\nwrite=AAAA"].concat();
    assert!(matches!(
        choose(&two),
        Ok(Chosen::State {
            fell_back: true,
            ..
        })
    ));
    assert_eq!(choose(b"").expect("empty"), Chosen::None);
    assert_eq!(choose(b"garbage").expect("one bad line"), Chosen::None);
    assert!(choose(b"garbage\ngarbage").is_err());
}

#[test]
fn undelivered_messages_are_read_from_the_read_position_in_order() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("messages");
    build(&root);
    assert!(is_reference_layout(&root));
    let r = read_dir(&root).expect("read");
    assert_eq!(r.queues, 4);
    assert_eq!(got(&r, 1), want(1, 2..5));
    assert_eq!(got(&r, 2), want(2, 4..7));
    assert!(got(&r, 3).is_empty());
    let mut q4 = want(4, 0..2);
    q4.push(Message::Quota {
        msg_id: vec![4; 24],
        ts: fixture::ts(100),
    });
    assert_eq!(got(&r, 4), q4);
    assert!(
        r.notes.iter().any(|n| n.contains("interrupted write")),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes.iter().any(|n| n.contains("cut off")),
        "{:?}",
        r.notes
    );
}

#[test]
fn two_message_files_with_the_read_file_unfinished() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut q = RefQueue::new(t.path(), &rid(5), 3);
    (0..8).for_each(|i| q.write_msg(&msg(5, i)));
    q.ack();
    // The read file holds 0..3 (0 acknowledged), the write file 3..8.
    assert_ne!(q.read.id, q.write.id);
    let r = read_dir(t.path()).expect("read");
    assert_eq!(got(&r, 5), want(5, 1..8));
    // The read file gone (the reference found it missing): the write file alone.
    std::fs::remove_file(q.msgs_path(&q.read.id)).expect("rm");
    let r = read_dir(t.path()).expect("read");
    assert_eq!(got(&r, 5), want(5, 3..8));
    assert!(
        r.notes.iter().any(|n| n.contains("missing")),
        "{:?}",
        r.notes
    );
}

#[test]
fn the_temporary_state_copy_is_used_and_timed_backups_ignored() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut q = RefQueue::new(t.path(), &rid(6), 256);
    (0..3).for_each(|i| q.write_msg(&msg(6, i)));
    let sp = state_path(t.path(), &rid(6));
    let full = std::fs::read(&sp).expect("state");
    // A crash while the reference rewrote the state file: .bak is the full copy, the new
    // file is still empty.
    std::fs::write(sp.with_extension("log.bak"), &full).expect("bak");
    std::fs::write(&sp, b"").expect("new");
    std::fs::write(
        sp.with_extension("log.2026-01-01T00:00:00Z.bak"),
        b"write=zzz,0,0,0,0 read=zzz,0,0,0,0 canWrite=T size=0\n",
    )
    .expect("timed");
    let r = read_dir(t.path()).expect("read");
    assert_eq!(r.queues, 1);
    assert_eq!(got(&r, 6), want(6, 0..3));
    assert!(sp.with_extension("log.bak").exists(), "nothing renamed");
}

#[test]
fn damage_is_an_error_naming_the_file() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut q = RefQueue::new(t.path(), &rid(7), 256);
    (0..3).for_each(|i| q.write_msg(&msg(7, i)));
    let f = q.msgs_path(&q.write.id);
    let bytes = std::fs::read(&f).expect("read");
    std::fs::write(&f, &bytes[..bytes.len() - 5]).expect("cut");
    let e = read_dir(t.path()).expect_err("short file");
    assert!(e.to_string().contains(&f.display().to_string()), "{e}");
    let mut bad = bytes.clone();
    bad[0] = b'!';
    std::fs::write(&f, &bad).expect("garble");
    let e = read_dir(t.path()).expect_err("bad line");
    assert!(e.to_string().contains("byte offset 0"), "{e}");
}

#[test]
fn conversion_is_complete_idempotent_and_keeps_the_original() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("messages");
    build(&root);
    let opts = JournalOptions::new(JournalFsync::Always);
    let c = convert_if_needed(&root, opts)
        .expect("convert")
        .expect("converted");
    assert_eq!((c.queues, c.messages), (3, 9));
    let aside = c.original.expect("aside");
    assert!(is_reference_layout(&aside), "original kept as it was");
    let again = convert_if_needed(&root, opts).expect("again");
    assert!(again.is_none(), "nothing to do the second time");
    let (_, replay) = Journal::open(&root, opts).expect("open ours");
    let q1: Vec<Message> = replay.msgs[&rid(1)].iter().cloned().collect();
    assert_eq!(q1, want(1, 2..5));
    assert_eq!(replay.msgs.values().map(|m| m.len()).sum::<usize>(), 9);
}

#[test]
fn an_interrupted_conversion_is_finished_or_redone() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("messages");
    build(&root);
    let opts = JournalOptions::new(JournalFsync::Always);
    // Crash during step 1: a partial copy; the original untouched.
    std::fs::create_dir_all(t.path().join("messages.converting")).expect("partial");
    std::fs::write(t.path().join("messages.converting/junk"), b"x").expect("junk");
    let c = convert_if_needed(&root, opts).expect("redo").expect("done");
    assert_eq!(c.messages, 9);
    // Crash between steps 3 and 4: put the pieces back that way and start again.
    std::fs::rename(&root, t.path().join("messages.converted")).expect("mv");
    let c = convert_if_needed(&root, opts)
        .expect("finish")
        .expect("finished");
    assert!(c.original.is_none());
    let (_, replay) = Journal::open(&root, opts).expect("open");
    assert_eq!(replay.msgs.values().map(|m| m.len()).sum::<usize>(), 9);
    // Crash between steps 2 and 3: converted next to the untouched original.
    let t2 = tempfile::tempdir().expect("tempdir");
    let root2 = t2.path().join("messages");
    build(&root2);
    std::fs::rename(&root, t2.path().join("messages.converted")).expect("mv");
    let c = convert_if_needed(&root2, opts)
        .expect("finish")
        .expect("finished");
    assert!(is_reference_layout(&c.original.expect("aside")));
    let (_, replay) = Journal::open(&root2, opts).expect("open");
    assert_eq!(replay.msgs.values().map(|m| m.len()).sum::<usize>(), 9);
    // A finished conversion next to a journal that is not the reference's: refused.
    std::fs::create_dir(t2.path().join("messages.converted")).expect("mkdir");
    let e = convert_if_needed(&root2, opts).expect_err("ambiguous");
    assert!(matches!(e, RefJournalError::Ambiguous { .. }), "{e}");
}

#[test]
fn damaged_input_stops_conversion_with_nothing_changed() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("messages");
    build(&root);
    let q = RefQueue::new(&root, &rid(1), 256);
    let f = q.msgs_path(&q.write.id);
    let mut bytes = std::fs::read(&f).expect("read");
    let n = bytes.len();
    bytes[n - 3] = b'!';
    std::fs::write(&f, &bytes).expect("garble");
    let opts = JournalOptions::new(JournalFsync::Always);
    let e = convert_if_needed(&root, opts).expect_err("damaged");
    assert!(e.to_string().contains("Nothing was changed"), "{e}");
    assert!(is_reference_layout(&root));
    let names: Vec<_> = std::fs::read_dir(t.path()).expect("ls").flatten().collect();
    assert_eq!(names.len(), 1, "no converting or aside directory");
}
