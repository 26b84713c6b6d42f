//! The message journal: a shard file as start-up opens it (frames, CRCs, torn tails, damaged
//! records, replay into the index), and each record's payload, which must encode back to the
//! same record.
//! Input: a mode byte. Even: the bytes after the file header, as they are (damage, torn
//! tails). Odd: `<u16 len><payload>` chunks, each framed with its right length and CRC, so the
//! payload decoder and the index see what a CRC would otherwise hide.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::store::journal::record::{decode_payload, encode_frame, read_frame, Frame, MAGIC};
use smp_server::store::journal::shard::Shard;
use smp_server_fuzz::scratch;

fn framed(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let payload = &rest[2..2 + n];
        rest = &rest[2 + n..];
        if payload.is_empty() {
            continue;
        }
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
        if let Ok(rec) = decode_payload(payload) {
            let frame = encode_frame(&rec).expect("a decoded record encodes");
            match read_frame(&frame) {
                Frame::Ok { payload: p, .. } => {
                    assert_eq!(
                        decode_payload(p).ok(),
                        Some(rec),
                        "re-encoded record differs"
                    )
                }
                other => panic!("re-encoded record does not frame: {other:?}"),
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = MAGIC.to_vec();
    if mode % 2 == 0 {
        file.extend_from_slice(rest);
    } else {
        file.extend_from_slice(&framed(rest));
    }
    let path = scratch("0.journal");
    std::fs::write(&path, &file).expect("write scratch shard");
    let _ = Shard::open(path);
});
