//! The crypto floor: what each server operation must spend on cryptography alone, measured in
//! this process with the crates and functions the server itself calls (ed25519-dalek and
//! ed448-goldilocks-plus through `smp_server::crypto::keys`, XSalsa20-Poly1305 through
//! `smp_server::crypto::cbox`, ring's ChaCha20-Poly1305 as rustls uses it for TLS 1.3 records,
//! the server's own X448 key-exchange group, HKDF).
//!
//! Every primitive is timed by this thread's CPU time over a loop of at least `MIN_LOOP`,
//! repeated, and the median kept: a core shared with other work slows the loop in wall time,
//! not in CPU time, so the floor and the server's CPU time move together and their ratio holds.

use std::time::Duration;

use anyhow::Result;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use smp_server::crypto::cbox;
use smp_server::crypto::keys::{self, DhKeyPair, KeyAlgorithm, PrivateSignKey};
use smp_server::protocol::version::{MAX_RCV_MESSAGE_PADDED, SMP_BLOCK_SIZE};

use crate::server::thread_cpu_ns;

/// Bytes of one TLS record carrying a 16 KB SMP block (the block plus the content type).
const RECORD: usize = SMP_BLOCK_SIZE + 1;
/// Authorized bytes of a SEND besides its body (session ID, corr ID, entity, command).
const SEND_OVERHEAD: usize = 120;
/// Authorized bytes of a small command (ACK, SUB, KEY).
const SMALL_CMD: usize = 110;
/// Authorized bytes of a NEW with Ed25519 and X25519 keys.
const NEW_CMD: usize = 230;
/// HKDF operations of a TLS 1.3 server handshake (extracts and expand-labels of the key
/// schedule, finished keys): an estimate, small next to the public-key operations.
const TLS_HKDF_OPS: f64 = 16.0;

/// Median CPU cost of each primitive, in microseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Primitives {
    /// Ed25519 verify of a SEND carrying a 16 KB body.
    pub ed25519_verify_16k: f64,
    /// Ed25519 verify of a SEND carrying a 1 KB body.
    pub ed25519_verify_1k: f64,
    /// Ed25519 verify of a small command.
    pub ed25519_verify_small: f64,
    /// Ed25519 verify of a NEW.
    pub ed25519_verify_new: f64,
    /// Ed25519 signature of a small message (TLS CertificateVerify, session key).
    pub ed25519_sign: f64,
    /// Ed448 signature of a small message.
    pub ed448_sign: f64,
    /// Seal of one 16 KB TLS 1.3 record (ChaCha20-Poly1305, ring).
    pub tls_record: f64,
    /// crypto_box of a MSG body padded to the receive size.
    pub body_encryption: f64,
    /// One v11+ block: chain key step (HKDF-SHA512) and secret_box of 16 KB.
    pub block_encryption: f64,
    /// One v11+ block opened: chain key step, secret_box_open, unpad.
    pub block_decryption: f64,
    /// X25519 key generation and DH.
    pub x25519_pair: f64,
    /// X448 key generation and DH (the server's rustls group).
    pub x448_pair: f64,
    /// One HKDF-SHA256 extract + expand (TLS key schedule step).
    pub hkdf_sha256: f64,
    /// The block chain keys from the session secret (HKDF-SHA512).
    pub sbc_init: f64,
}

/// The floor of each benchmarked operation, in microseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Floors {
    /// The primitives they are made of.
    pub primitives: Primitives,
}

impl Floors {
    /// A delivered message: SEND and ACK verified, 4 TLS records (SEND, OK, MSG, ACK), the body
    /// encrypted to the recipient, 4 block encryptions (2 opened, 2 sealed).
    pub fn delivery(&self, body: usize) -> f64 {
        let p = &self.primitives;
        let verify = if body > 8192 {
            p.ed25519_verify_16k
        } else {
            p.ed25519_verify_1k
        };
        verify
            + p.ed25519_verify_small
            + 4.0 * p.tls_record
            + p.body_encryption
            + 2.0 * p.block_encryption
            + 2.0 * p.block_decryption
    }

    /// The block an ACK gets when its queue is empty: its `OK` sealed in a block and a TLS
    /// record. The delivery floor leaves it out (under load the ACK is answered by the next MSG);
    /// added per ACK answered so, it gives the floor of the blocks actually on the wire.
    pub fn own_ok_block(&self) -> f64 {
        self.primitives.tls_record + self.primitives.block_encryption
    }

    /// A TLS + SMP handshake: X448 (the reference client's first key share), the TLS
    /// CertificateVerify signature and key schedule, 2 TLS records of 16 KB (the SMP hellos),
    /// the signed X25519 session key, the DH with the client's key and the block chain keys.
    pub fn handshake(&self, ed448: bool) -> f64 {
        let p = &self.primitives;
        let sign = if ed448 { p.ed448_sign } else { p.ed25519_sign };
        p.x448_pair
            + 2.0 * sign
            + TLS_HKDF_OPS * p.hkdf_sha256
            + 2.0 * p.tls_record
            + p.x25519_pair
            + p.sbc_init
    }

    /// [`Floors::handshake`] when the client's key share is X25519 instead of X448.
    pub fn handshake_x25519(&self, ed448: bool) -> f64 {
        let p = &self.primitives;
        self.handshake(ed448) - p.x448_pair + p.x25519_pair
    }

    /// Per-transmission share of a block's transport cost when `per_block` travel together.
    fn batch_share(&self, per_block: f64) -> f64 {
        let p = &self.primitives;
        (2.0 * p.tls_record + p.block_encryption + p.block_decryption) / per_block
    }

    /// A NEW: one verify, the queue's X25519 key pair and DH, its share of the blocks.
    pub fn new_queue(&self, per_block: f64) -> f64 {
        let p = &self.primitives;
        p.ed25519_verify_new + p.x25519_pair + self.batch_share(per_block)
    }

    /// A small signed command (KEY, SUB) in a batch: one verify and its share of the blocks.
    pub fn small_cmd(&self, per_block: f64) -> f64 {
        self.primitives.ed25519_verify_small + self.batch_share(per_block)
    }
}

/// Median microseconds per call of `f`, from `reps` loops of at least `min_loop` CPU time.
fn time_op(reps: usize, min_loop: Duration, mut f: impl FnMut()) -> f64 {
    let mut per_op = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = thread_cpu_ns();
        let mut n = 0u64;
        loop {
            f();
            n += 1;
            let spent = thread_cpu_ns().saturating_sub(start);
            if spent >= min_loop.as_nanos() as u64 && n >= 3 {
                per_op.push(spent as f64 / n as f64 / 1000.0);
                break;
            }
        }
    }
    median(&mut per_op)
}

/// The median of `v` (0 when empty).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Measure every primitive (a few seconds of one core).
pub fn measure(reps: usize, min_loop: Duration) -> Result<Floors> {
    let ed = PrivateSignKey::generate(KeyAlgorithm::Ed25519)?;
    let ed_pub = ed.public();
    let ed448 = PrivateSignKey::generate(KeyAlgorithm::Ed448)?;
    let verify_of = |len: usize| -> f64 {
        let msg = vec![0x5a; len];
        let sig = ed.sign(&msg);
        time_op(reps, min_loop, || {
            std::hint::black_box(keys::verify(&ed_pub, &sig, &msg));
        })
    };
    let ed25519_verify_16k = verify_of(15 * 1024 + SEND_OVERHEAD);
    let ed25519_verify_1k = verify_of(1024 + SEND_OVERHEAD);
    let ed25519_verify_small = verify_of(SMALL_CMD);
    let ed25519_verify_new = verify_of(NEW_CMD);
    let small = vec![7u8; 130];
    let ed25519_sign = time_op(reps, min_loop, || {
        std::hint::black_box(ed.sign(&small));
    });
    let ed448_sign = time_op(reps, min_loop, || {
        std::hint::black_box(ed448.sign(&small));
    });

    let key = LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &[3u8; 32]).map_err(|_| anyhow::anyhow!("key"))?,
    );
    let mut record = vec![1u8; RECORD];
    let mut seq = 0u64;
    let tls_record = time_op(reps, min_loop, || {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        seq += 1;
        record.truncate(RECORD);
        let aad = [23u8, 3, 3, 0x40, 0x11];
        let r = key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut record,
        );
        std::hint::black_box(r.is_ok());
    });

    let secret = [9u8; 32];
    let nonce = [4u8; 24];
    let plain = vec![b'x'; 15 * 1024 + 10];
    let body_encryption = time_op(reps, min_loop, || {
        std::hint::black_box(cbox::cb_encrypt(
            &secret,
            &nonce,
            &plain,
            MAX_RCV_MESSAGE_PADDED,
        ))
        .ok();
    });
    let mut chain = cbox::SbChainKey::from_bytes([5u8; 32]);
    let content = vec![b'b'; SMP_BLOCK_SIZE - 100];
    let block_encryption = time_op(reps, min_loop, || {
        let (k, n) = chain.next_key();
        std::hint::black_box(cbox::cb_encrypt(&k, &n, &content, SMP_BLOCK_SIZE - 16)).ok();
    });
    let (bk, bn) = cbox::SbChainKey::from_bytes([6u8; 32]).next_key();
    let sealed = cbox::cb_encrypt(&bk, &bn, &content, SMP_BLOCK_SIZE - 16)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut chain2 = cbox::SbChainKey::from_bytes([5u8; 32]);
    let block_decryption = time_op(reps, min_loop, || {
        // The step is the same work whatever key it yields; the packet opens with `bk`.
        let _ = std::hint::black_box(chain2.next_key());
        std::hint::black_box(cbox::cb_decrypt(&bk, &bn, &sealed)).ok();
    });

    let peer = DhKeyPair::generate()?.public();
    let x25519_pair = time_op(reps, min_loop, || {
        if let Ok(k) = DhKeyPair::generate() {
            std::hint::black_box(k.dh(&peer)).ok();
        }
    });
    let x448 = smp_server::transport::x448::X448;
    let peer448 = x448
        .start()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .pub_key()
        .to_vec();
    let x448_pair = time_op(reps, min_loop, || {
        if let Ok(kx) = x448.start() {
            std::hint::black_box(kx.complete(&peer448)).ok();
        }
    });
    let hkdf_sha256 = time_op(reps, min_loop, || {
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[1u8; 32]).extract(&secret);
        let info = [b"tls13 c hs traffic".as_slice()];
        if let Ok(okm) = prk.expand(&info, ring::hkdf::HKDF_SHA256) {
            let mut out = [0u8; 32];
            std::hint::black_box(okm.fill(&mut out)).ok();
        }
    });
    let sid = [8u8; 32];
    let sbc_init = time_op(reps, min_loop, || {
        std::hint::black_box(cbox::sbc_init(&sid, &secret));
    });
    Ok(Floors {
        primitives: Primitives {
            ed25519_verify_16k,
            ed25519_verify_1k,
            ed25519_verify_small,
            ed25519_verify_new,
            ed25519_sign,
            ed448_sign,
            tls_record,
            body_encryption,
            block_encryption,
            block_decryption,
            x25519_pair,
            x448_pair,
            hkdf_sha256,
            sbc_init,
        },
    })
}
