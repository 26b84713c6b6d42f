//! tls-unique for TLS 1.3, recovered from the raw bytes the client sent.
//!
//! SMP's session ID is RFC 5929 tls-unique as the Haskell `tls` library defines it for TLS 1.3:
//! the `verify_data` of the *client's* Finished message. rustls keeps that value private, so we
//! recompute it from what went over the wire: the client's handshake flight, decrypted with the
//! client handshake traffic secret that rustls hands to a `KeyLog`.
//!
//! Byte layouts (RFC 8446):
//!
//! ```text
//! record:            | type u8 | legacy_version u16 | length u16 | fragment (length bytes) |
//!                    type 22 handshake (plaintext ClientHello), 20 change_cipher_spec (ignored),
//!                    21 alert, 23 application_data (encrypted; everything after ServerHello)
//! encrypted record:  fragment = AEAD(key, iv XOR seq, aad = the 5-byte header)
//!                    -> | content | real_type u8 | zero padding |
//! handshake message: | msg_type u8 | length u24 | body |
//!                    1 ClientHello (twice after a HelloRetryRequest), 11 Certificate,
//!                    15 CertificateVerify, 20 Finished (body = verify_data, 32 bytes for SHA-256)
//! HkdfLabel:         | length u16 | label_len u8 | "tls13 " + label | context_len u8 | context |
//! ```
//!
//! SMP connections always use TLS_CHACHA20_POLY1305_SHA256 (the only suite our SMP provider
//! offers); the two AES-GCM suites are handled too so that a web configuration on a shared port
//! can go through the same accept path.
//!
//! This module does no I/O: it takes bytes and a secret and returns the value or the reason.

use hkdf::Hkdf;
use ring::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
};
use sha2::{Sha256, Sha384};
use zeroize::Zeroizing;

/// The `KeyLog` label under which rustls reports the secret we need.
pub const CLIENT_HANDSHAKE_SECRET_LABEL: &str = "CLIENT_HANDSHAKE_TRAFFIC_SECRET";

/// Length of Finished.verify_data with SHA-256, i.e. of an SMP session ID.
pub const VERIFY_DATA_LEN: usize = 32;

/// The TLS 1.3 cipher suites whose records we can open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// TLS_CHACHA20_POLY1305_SHA256, the SMP suite.
    Chacha20Poly1305Sha256,
    /// TLS_AES_128_GCM_SHA256.
    Aes128GcmSha256,
    /// TLS_AES_256_GCM_SHA384.
    Aes256GcmSha384,
}

impl Suite {
    /// The suite for a rustls cipher suite identifier, if it is one of ours.
    pub fn from_rustls(suite: rustls::CipherSuite) -> Option<Self> {
        match suite {
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => {
                Some(Suite::Chacha20Poly1305Sha256)
            }
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => Some(Suite::Aes128GcmSha256),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(Suite::Aes256GcmSha384),
            _ => None,
        }
    }

    fn hash_len(self) -> usize {
        match self {
            Suite::Aes256GcmSha384 => 48,
            _ => 32,
        }
    }
}

const REC_CHANGE_CIPHER_SPEC: u8 = 20;
const REC_ALERT: u8 = 21;
const REC_HANDSHAKE: u8 = 22;
const REC_APPLICATION_DATA: u8 = 23;

const HS_CLIENT_HELLO: u8 = 1;
const HS_FINISHED: u8 = 20;

/// Largest legal ciphertext fragment (2^14 + 256, RFC 8446 section 5.2).
const MAX_FRAGMENT: usize = (1 << 14) + 256;
const TAG_LEN: usize = 16;

/// What the client's handshake flight told us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFlight {
    /// How many ClientHello messages the client sent: 2 means a HelloRetryRequest happened.
    pub client_hellos: usize,
    /// `random` of the (first) ClientHello, the key under which `KeyLog` reports secrets.
    pub client_random: [u8; 32],
    /// The client's Finished.verify_data: tls-unique, the SMP session ID.
    pub verify_data: Vec<u8>,
}

/// Why tls-unique could not be recovered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UniqueError {
    /// The bytes end before the client's Finished message.
    #[error("client handshake flight is incomplete")]
    Incomplete,
    /// The bytes are not a TLS 1.3 client flight.
    #[error("malformed client handshake flight: {0}")]
    Malformed(&'static str),
    /// A record did not decrypt with the client handshake key.
    #[error("client handshake record does not decrypt")]
    Decrypt,
    /// The client sent an alert instead of finishing.
    #[error("client sent an alert during the handshake")]
    Alert,
}

/// HKDF-Expand-Label (RFC 8446 section 7.1) with the suite's hash.
pub fn hkdf_expand_label(
    suite: Suite,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), UniqueError> {
    const BAD: UniqueError = UniqueError::Malformed("bad traffic secret");
    let full_label_len = 6 + label.len();
    let out_len = u16::try_from(out.len()).map_err(|_| BAD)?;
    let label_len = u8::try_from(full_label_len).map_err(|_| BAD)?;
    let context_len = u8::try_from(context.len()).map_err(|_| BAD)?;
    let mut info = Vec::with_capacity(4 + full_label_len + context.len());
    info.extend_from_slice(&out_len.to_be_bytes());
    info.push(label_len);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(context_len);
    info.extend_from_slice(context);
    match suite {
        Suite::Aes256GcmSha384 => Hkdf::<Sha384>::from_prk(secret)
            .map_err(|_| BAD)?
            .expand(&info, out),
        _ => Hkdf::<Sha256>::from_prk(secret)
            .map_err(|_| BAD)?
            .expand(&info, out),
    }
    .map_err(|_| BAD)
}

/// The client's handshake-traffic record key: AEAD key and static IV.
struct RecordKey {
    key: LessSafeKey,
    iv: [u8; 12],
}

impl RecordKey {
    fn new(suite: Suite, secret: &[u8]) -> Result<Self, UniqueError> {
        let alg = match suite {
            Suite::Chacha20Poly1305Sha256 => &CHACHA20_POLY1305,
            Suite::Aes128GcmSha256 => &AES_128_GCM,
            Suite::Aes256GcmSha384 => &AES_256_GCM,
        };
        let mut key = Zeroizing::new(vec![0u8; alg.key_len()]);
        let mut iv = [0u8; 12];
        hkdf_expand_label(suite, secret, b"key", &[], &mut key[..])?;
        hkdf_expand_label(suite, secret, b"iv", &[], &mut iv)?;
        let unbound =
            UnboundKey::new(alg, &key[..]).map_err(|_| UniqueError::Malformed("bad record key"))?;
        Ok(RecordKey {
            key: LessSafeKey::new(unbound),
            iv,
        })
    }

    fn nonce(&self, seq: u64) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(n)
    }

    /// Decrypt one record in place; returns (real content type, content).
    fn open<'a>(
        &self,
        seq: u64,
        header: &[u8],
        fragment: &'a mut [u8],
    ) -> Result<(u8, &'a [u8]), UniqueError> {
        let plain = self
            .key
            .open_in_place(self.nonce(seq), Aad::from(header), fragment)
            .map_err(|_| UniqueError::Decrypt)?;
        // Strip the zero padding; the last non-zero byte is the real content type.
        let end = plain
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(UniqueError::Malformed(
                "encrypted record without content type",
            ))?;
        Ok((plain[end], &plain[..end]))
    }

    #[cfg(test)]
    fn seal(&self, seq: u64, content_type: u8, content: &[u8]) -> Vec<u8> {
        let mut inner = content.to_vec();
        inner.push(content_type);
        let len = inner.len() + TAG_LEN;
        let header = [
            REC_APPLICATION_DATA,
            3,
            3,
            (len >> 8) as u8,
            (len & 0xff) as u8,
        ];
        self.key
            .seal_in_place_append_tag(self.nonce(seq), Aad::from(&header[..]), &mut inner)
            .expect("seal");
        let mut rec = header.to_vec();
        rec.extend_from_slice(&inner);
        rec
    }
}

/// Splits a stream of handshake messages that may span records.
#[derive(Default)]
struct HandshakeReader {
    buf: Vec<u8>,
}

impl HandshakeReader {
    /// Append record content and return every complete message (type, body).
    fn push(&mut self, content: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.buf.extend_from_slice(content);
        let mut out = Vec::new();
        let mut pos = 0;
        while self.buf.len() - pos >= 4 {
            let len = usize::from(self.buf[pos + 1]) << 16
                | usize::from(self.buf[pos + 2]) << 8
                | usize::from(self.buf[pos + 3]);
            if self.buf.len() - pos - 4 < len {
                break;
            }
            out.push((self.buf[pos], self.buf[pos + 4..pos + 4 + len].to_vec()));
            pos += 4 + len;
        }
        self.buf.drain(..pos);
        out
    }
}

/// Find the client's Finished in the bytes the client sent during a TLS 1.3 handshake.
///
/// `sent` is everything the client wrote, from its first byte on (it may run past the end of
/// the handshake); `client_hs_secret` is its CLIENT_HANDSHAKE_TRAFFIC_SECRET.
pub fn client_finished(
    suite: Suite,
    sent: &[u8],
    client_hs_secret: &[u8],
) -> Result<ClientFlight, UniqueError> {
    let key = RecordKey::new(suite, client_hs_secret)?;
    let mut plain = HandshakeReader::default();
    let mut encrypted = HandshakeReader::default();
    let mut client_hellos = 0usize;
    let mut client_random: Option<[u8; 32]> = None;
    let mut seq: u64 = 0;
    let mut pos = 0usize;

    while sent.len() - pos >= 5 {
        let header = &sent[pos..pos + 5];
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len > MAX_FRAGMENT {
            return Err(UniqueError::Malformed("record too long"));
        }
        if sent.len() - pos - 5 < len {
            break;
        }
        let fragment = &sent[pos + 5..pos + 5 + len];
        pos += 5 + len;
        match header[0] {
            REC_CHANGE_CIPHER_SPEC => {}
            REC_ALERT => return Err(UniqueError::Alert),
            REC_HANDSHAKE => {
                if seq > 0 {
                    return Err(UniqueError::Malformed(
                        "plaintext handshake after encryption",
                    ));
                }
                for (typ, body) in plain.push(fragment) {
                    if typ != HS_CLIENT_HELLO {
                        return Err(UniqueError::Malformed("unexpected plaintext message"));
                    }
                    client_hellos += 1;
                    // body: legacy_version u16, random [32], ...
                    if client_random.is_none() {
                        let random = body
                            .get(2..34)
                            .ok_or(UniqueError::Malformed("short ClientHello"))?;
                        let mut r = [0u8; 32];
                        r.copy_from_slice(random);
                        client_random = Some(r);
                    }
                }
            }
            REC_APPLICATION_DATA => {
                if len < TAG_LEN + 1 {
                    return Err(UniqueError::Malformed("encrypted record too short"));
                }
                let mut buf = fragment.to_vec();
                let (typ, content) = key.open(seq, header, &mut buf)?;
                seq += 1;
                match typ {
                    REC_HANDSHAKE => {
                        for (msg, body) in encrypted.push(content) {
                            if msg == HS_FINISHED {
                                if body.len() != suite.hash_len() {
                                    return Err(UniqueError::Malformed("Finished length"));
                                }
                                let client_random = client_random
                                    .ok_or(UniqueError::Malformed("no ClientHello"))?;
                                return Ok(ClientFlight {
                                    client_hellos,
                                    client_random,
                                    verify_data: body,
                                });
                            }
                            // Certificate / CertificateVerify (client auth) come first: skip.
                        }
                    }
                    REC_ALERT => return Err(UniqueError::Alert),
                    _ => return Err(UniqueError::Malformed("data before Finished")),
                }
            }
            _ => return Err(UniqueError::Malformed("unknown record type")),
        }
    }
    Err(UniqueError::Incomplete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 8448 section 3: client handshake traffic secret -> write key (16) and iv (12).
    #[test]
    fn expand_label_matches_rfc8448() {
        let secret = unhex("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21");
        let mut key = [0u8; 16];
        let mut iv = [0u8; 12];
        hkdf_expand_label(Suite::Aes128GcmSha256, &secret, b"key", &[], &mut key).expect("key");
        hkdf_expand_label(Suite::Aes128GcmSha256, &secret, b"iv", &[], &mut iv).expect("iv");
        assert_eq!(key.to_vec(), unhex("dbfaa693d1762c5b666af5d950258d01"));
        assert_eq!(iv.to_vec(), unhex("5bd3c71b836e0b76bb73265f"));
    }

    fn client_hello(random: u8) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[random; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x03, 1, 0]);
        let mut msg = vec![HS_CLIENT_HELLO, 0, 0, body.len() as u8];
        msg.extend_from_slice(&body);
        let mut rec = vec![REC_HANDSHAKE, 3, 1, 0, msg.len() as u8];
        rec.extend_from_slice(&msg);
        rec
    }

    fn hs_msg(typ: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![typ, 0, (body.len() >> 8) as u8, body.len() as u8];
        m.extend_from_slice(body);
        m
    }

    const C: Suite = Suite::Chacha20Poly1305Sha256;

    const CCS: [u8; 6] = [20, 3, 3, 0, 1, 1];

    #[test]
    fn finds_finished_after_ccs_and_client_auth() {
        let secret = [9u8; 32];
        let key = RecordKey::new(C, &secret).expect("key");
        let mut sent = client_hello(7);
        sent.extend_from_slice(&CCS);
        sent.extend(key.seal(0, REC_HANDSHAKE, &hs_msg(11, &[0; 40])));
        // CertificateVerify and Finished in one record.
        let mut both = hs_msg(15, &[1; 70]);
        both.extend(hs_msg(HS_FINISHED, &[0xab; 32]));
        sent.extend(key.seal(1, REC_HANDSHAKE, &both));
        // Application data afterwards (a different key) must not matter.
        sent.extend_from_slice(&[23, 3, 3, 0, 20]);
        sent.extend_from_slice(&[0x55; 20]);
        let flight = client_finished(C, &sent, &secret).expect("finished");
        assert_eq!(flight.client_hellos, 1);
        assert_eq!(flight.client_random, [7u8; 32]);
        assert_eq!(flight.verify_data, vec![0xab; 32]);
    }

    #[test]
    fn two_client_hellos_mean_retry_and_messages_may_span_records() {
        let secret = [1u8; 32];
        let key = RecordKey::new(C, &secret).expect("key");
        let mut sent = client_hello(3);
        sent.extend_from_slice(&CCS);
        sent.extend(client_hello(3));
        let fin = hs_msg(HS_FINISHED, &[0x11; 32]);
        sent.extend(key.seal(0, REC_HANDSHAKE, &fin[..10]));
        sent.extend(key.seal(1, REC_HANDSHAKE, &fin[10..]));
        let flight = client_finished(C, &sent, &secret).expect("finished");
        assert_eq!(flight.client_hellos, 2);
        assert_eq!(flight.verify_data, vec![0x11; 32]);
    }

    #[test]
    fn incomplete_wrong_key_and_alerts() {
        let secret = [2u8; 32];
        let key = RecordKey::new(C, &secret).expect("key");
        let mut sent = client_hello(1);
        sent.extend(key.seal(0, REC_HANDSHAKE, &hs_msg(HS_FINISHED, &[5; 32])));
        for cut in [0, 3, 10, sent.len() - 1] {
            assert_eq!(
                client_finished(C, &sent[..cut], &secret),
                Err(UniqueError::Incomplete)
            );
        }
        assert_eq!(
            client_finished(C, &sent, &[3u8; 32]),
            Err(UniqueError::Decrypt)
        );
        let mut alert = client_hello(1);
        alert.extend(key.seal(0, REC_ALERT, &[2, 40]));
        assert_eq!(client_finished(C, &alert, &secret), Err(UniqueError::Alert));
        let mut short = client_hello(1);
        short.extend(key.seal(0, REC_HANDSHAKE, &hs_msg(HS_FINISHED, &[5; 48])));
        assert!(matches!(
            client_finished(C, &short, &secret),
            Err(UniqueError::Malformed(_))
        ));
        assert!(matches!(
            client_finished(C, &[99, 3, 3, 0, 0], &secret),
            Err(UniqueError::Malformed(_))
        ));
    }
}
