//! The message journal: a shard file as start-up opens it (frames, CRCs, torn tails, damaged
//! records, replay into the index), and each record's payload, which must encode back to the
//! same record.
//! Input: a mode byte. Bit 0 clear: the bytes after the file header, as they are (damage, torn
//! tails). Set: `<u16 len><payload>` chunks, each framed with its right length and checksums, so
//! the payload decoder and the index see what a checksum would otherwise hide. Bit 1 chooses
//! the file format: the current one (`SMPJRN2`, header checksum) or the first (`SMPJRN1`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smp_server::store::journal::record::{
    decode_payload, encode_frame_as, frame_payload, read_frame, Frame, Framing, MAGIC, MAGIC_V1,
};
use smp_server::store::journal::shard::Shard;
use smp_server_fuzz::scratch;

fn framed(mut rest: &[u8], framing: Framing) -> Vec<u8> {
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let payload = &rest[2..2 + n];
        rest = &rest[2 + n..];
        if payload.is_empty() {
            continue;
        }
        out.extend_from_slice(&frame_payload(payload, framing));
        if let Ok(rec) = decode_payload(payload) {
            let frame = encode_frame_as(&rec, framing).expect("a decoded record encodes");
            match read_frame(&frame, framing) {
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
    let (magic, framing) = if mode & 2 == 0 {
        (MAGIC, Framing::V2)
    } else {
        (MAGIC_V1, Framing::V1)
    };
    let mut file = magic.to_vec();
    if mode & 1 == 0 {
        file.extend_from_slice(rest);
    } else {
        file.extend_from_slice(&framed(rest, framing));
    }
    let path = scratch("0.journal");
    std::fs::write(&path, &file).expect("write scratch shard");
    let _ = Shard::open(path);
});
