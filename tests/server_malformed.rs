//! Malformed input never crashes the server: bad block content and bad transmissions are
//! answered with `ERR BLOCK` (empty corrId unless the corrId could be read), a wrong session ID
//! with `ERR SESSION`, and the connection keeps working. Clients that fail the handshake, send
//! garbage or close in the middle of a block are dropped while other clients keep working.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use smp_server::client::SmpClient;
use smp_server::protocol::command::Command;
use smp_server::protocol::encoding::Encoder;
use smp_server::protocol::errors::ErrorType;
use smp_server::protocol::handshake::ClientHandshake;
use smp_server::protocol::response::BrokerMsg;
use smp_server::protocol::transmission::{
    decode_client, encode_client, split_batch, with_auth, THParams,
};
use smp_server::protocol::version::{VersionRange, SMP_BLOCK_SIZE};
use smp_server::server::Settings;
use smp_server::transport::smp::{client_handshake, BlockReader, BlockWriter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const VERSIONS: [u16; 3] = [6, 12, 18];

fn block_err() -> (Vec<u8>, BrokerMsg) {
    (Vec::new(), BrokerMsg::Err(ErrorType::Block))
}

async fn ping_works(c: &SmpClient) {
    let (ent, pong) = c.request(b"", Command::Ping, None).await.expect("PING");
    assert_eq!((ent, pong), (Vec::new(), BrokerMsg::Pong));
}

/// Block contents that are not a valid batch of transmissions.
fn bad_contents() -> Vec<Vec<u8>> {
    let mut random = vec![3u8, 0xff, 0xff];
    random.extend(smp_server::crypto::random_bytes(500));
    vec![
        vec![],                                      // nothing at all
        vec![0],                                     // count 0
        vec![0, 0, 4, b'P', b'I', b'N', b'G'],       // count 0 with a transmission
        [&[1u8, 0x10, 0x00][..], b"short"].concat(), // length beyond the content
        vec![2, 0, 1, b'x'],                         // second transmission missing
        vec![1, 0, 1, b'x', b'y', b'z'],             // trailing bytes after the batch
        random,
    ]
}

#[tokio::test]
async fn bad_block_content_is_answered_with_block_error() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let c = s.client_at(v).await;
        let r = create_queue(&c).await;
        for content in bad_contents() {
            c.send_raw_content(&content).await.expect("write");
            assert_eq!(event(&c).await, block_err(), "v{v} content {content:?}");
            ping_works(&c).await;
        }
        // the queue created before is still usable on this connection
        let sc = s.client_at(v).await;
        let (_, ok) = sc
            .request(r.sid(), send_cmd(b"still here"), None)
            .await
            .expect("SEND");
        assert_eq!(ok, BrokerMsg::Ok);
        let (_, m) = event(&c).await;
        assert_eq!(
            decrypt_msg(&r, &m).body.as_deref(),
            Some(&b"still here"[..])
        );
    }
}

fn batch_of(ts: &[&[u8]]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.byte(ts.len() as u8);
    for t in ts {
        e.large_bytes(t);
    }
    e.finish()
}

#[tokio::test]
async fn bad_transmission_in_a_batch_does_not_affect_others() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let c = s.client_at(v).await;
        // authenticator length beyond the transmission; transmission cut inside the corrId
        let cut = {
            let ct = encode_client(&c.params, b"abcd", b"", &Command::Ping);
            let t = with_auth(&c.params, None, &ct.to_send);
            t[..3].to_vec()
        };
        for garbage in [vec![0xffu8], vec![], cut] {
            let corr = b"ping1".to_vec();
            let ping = with_auth(
                &c.params,
                None,
                &encode_client(&c.params, &corr, b"", &Command::Ping).to_send,
            );
            // the PING after the garbage is answered; the garbage gets BLOCK with no corrId
            let content = batch_of(&[&garbage, &ping]);
            c.send_raw_content(&content).await.expect("write");
            let mut got = [event(&c).await, event(&c).await];
            got.sort_by_key(|(_, m)| matches!(m, BrokerMsg::Pong));
            assert_eq!(got[0], block_err(), "v{v} {garbage:?}");
            assert_eq!(got[1], (Vec::new(), BrokerMsg::Pong), "v{v}");
        }
        ping_works(&c).await;
    }
}

#[tokio::test]
async fn bad_signature_length_is_block_error_with_corr_id() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let c = s.client_at(v).await;
        let r = create_queue(&c).await;
        for len in [1usize, 10, 63, 65, 79, 81, 113, 115, 200] {
            let corr = format!("sig{len}").into_bytes();
            let ct = encode_client(&c.params, &corr, r.rid(), &Command::Sub);
            let t = with_auth(&c.params, Some(&vec![1u8; len]), &ct.to_send);
            let resp = c.send_batch(vec![(corr, t)]).await.expect("response");
            assert_eq!(
                resp,
                vec![(Vec::new(), BrokerMsg::Err(ErrorType::Block))],
                "v{v} signature of {len} bytes"
            );
        }
        ping_works(&c).await;
        // the queue is untouched
        let (_, ok) = c
            .request(r.rid(), Command::Sub, Some(&r.key))
            .await
            .expect("SUB");
        assert!(matches!(ok, BrokerMsg::Sok(None) | BrokerMsg::Ok), "{ok:?}");
    }
}

#[tokio::test]
async fn wrong_session_id_at_v6() {
    let s = start_server(Settings::default()).await;
    let c = s.client_at(6).await;
    let r = create_queue(&c).await;
    for sess in [b"wrong session".to_vec(), vec![], vec![0u8; 32]] {
        let p = THParams {
            session_id: sess,
            version: 6,
        };
        let corr = b"sess".to_vec();
        let ct = encode_client(&p, &corr, r.rid(), &Command::Sub);
        let sig = match &r.key {
            smp_server::client::AuthKey::Sign(k) => k.sign(&ct.for_auth),
            _ => unreachable!("v6 keys sign"),
        };
        let t = with_auth(&p, Some(&sig), &ct.to_send);
        let resp = c.send_batch(vec![(corr, t)]).await.expect("response");
        assert_eq!(resp, vec![(Vec::new(), BrokerMsg::Err(ErrorType::Session))]);
    }
    // unsigned PING with a wrong session too
    let p = THParams {
        session_id: b"other".to_vec(),
        version: 6,
    };
    let t = with_auth(
        &p,
        None,
        &encode_client(&p, b"p", b"", &Command::Ping).to_send,
    );
    let resp = c
        .send_batch(vec![(b"p".to_vec(), t)])
        .await
        .expect("response");
    assert_eq!(resp, vec![(Vec::new(), BrokerMsg::Err(ErrorType::Session))]);
    ping_works(&c).await;
    let (_, ok) = c
        .request(r.rid(), Command::Sub, Some(&r.key))
        .await
        .expect("SUB");
    assert_eq!(ok, BrokerMsg::Ok);
}

/// Wait until the server has `n` connected clients.
async fn wait_clients(s: &TestServer, n: usize) {
    for _ in 0..100 {
        if s.server.state.client_count() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "expected {n} clients, server has {}",
        s.server.state.client_count()
    );
}

/// Reading from a closed connection ends within a few seconds (EOF or error, no data).
async fn expect_closed<R: AsyncRead + Unpin>(r: &mut R) {
    let mut buf = vec![0u8; SMP_BLOCK_SIZE];
    match tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("server sent {n} bytes instead of closing"),
        Err(_) => panic!("server did not close the connection"),
    }
}

async fn tls(s: &TestServer, alpn: bool) -> smp_server::transport::tls::TlsClientConn<TcpStream> {
    let tcp = TcpStream::connect(s.addr).await.expect("tcp");
    let alpn = alpn.then_some(smp_server::transport::SMP_ALPN);
    smp_server::transport::connect(
        tcp,
        s.fingerprint,
        "localhost",
        alpn,
        Duration::from_secs(10),
    )
    .await
    .expect("tls")
}

#[tokio::test]
async fn wrong_key_hash_in_handshake_is_disconnected() {
    let s = start_server(Settings::default()).await;
    let other = s.client().await;
    for (alpn, range) in [
        (false, VersionRange::LEGACY_SERVER),
        (true, VersionRange::SERVER),
    ] {
        let conn = tls(&s, alpn).await;
        let (mut r, mut w) = tokio::io::split(conn.stream);
        let mut wrong = s.fingerprint;
        wrong[0] ^= 1;
        let sess = client_handshake(
            &mut r,
            &mut w,
            conn.session_id,
            &wrong,
            range,
            &conn.peer_chain,
            false,
        )
        .await
        .expect("the client side completes; the server then refuses");
        drop(sess);
        expect_closed(&mut r).await;
        ping_works(&other).await;
    }
    wait_clients(&s, 1).await;
}

#[tokio::test]
async fn garbage_instead_of_handshake_is_disconnected() {
    let s = start_server(Settings::default()).await;
    let other = s.client().await;
    // a whole block of garbage instead of the client hello
    {
        let conn = tls(&s, true).await;
        let (mut r, mut w) = tokio::io::split(conn.stream);
        let _hello = BlockReader::new(&mut r)
            .read_block()
            .await
            .expect("server hello");
        let garbage = smp_server::crypto::random_bytes(SMP_BLOCK_SIZE);
        w.write_all(&garbage).await.expect("write");
        w.flush().await.expect("flush");
        expect_closed(&mut r).await;
    }
    // a well-padded block that is not a client hello
    {
        let conn = tls(&s, true).await;
        let (mut r, w) = tokio::io::split(conn.stream);
        let _hello = BlockReader::new(&mut r)
            .read_block()
            .await
            .expect("server hello");
        let mut bw = BlockWriter::new(w);
        bw.write_block(b"\x00").await.expect("write");
        expect_closed(&mut r).await;
    }
    // a version the server does not offer
    {
        let conn = tls(&s, false).await;
        let (mut r, w) = tokio::io::split(conn.stream);
        let _hello = BlockReader::new(&mut r)
            .read_block()
            .await
            .expect("server hello");
        let hello = ClientHandshake {
            version: 18, // without ALPN only v6 is offered
            key_hash: s.fingerprint.to_vec(),
            auth_pub_key: None,
            proxy_server: false,
            client_service: None,
        };
        BlockWriter::new(w)
            .write_block(&hello.encode())
            .await
            .expect("write");
        expect_closed(&mut r).await;
    }
    // a few bytes, then the client goes away
    {
        let conn = tls(&s, true).await;
        let (mut r, mut w) = tokio::io::split(conn.stream);
        let _hello = BlockReader::new(&mut r)
            .read_block()
            .await
            .expect("server hello");
        w.write_all(b"garbage").await.expect("write");
        w.shutdown().await.expect("shutdown");
        drop((r, w));
    }
    // plain TCP garbage instead of TLS
    {
        let mut tcp = TcpStream::connect(s.addr).await.expect("tcp");
        tcp.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])
            .await
            .expect("write");
        let _ = tcp.write_all(&[0u8; 300]).await;
        // at most a TLS alert comes back, then the connection closes
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "server did not close the connection");
        assert!(got.len() <= 16, "server sent {got:?}");
    }
    ping_works(&other).await;
    let again = s.client().await;
    ping_works(&again).await;
    wait_clients(&s, 2).await;
}

#[tokio::test]
async fn client_closing_mid_block_is_dropped() {
    let s = start_server(Settings::default()).await;
    let other = s.client().await;
    let r = create_queue(&other).await;
    for (alpn, range) in [
        (false, VersionRange::LEGACY_SERVER),
        (true, VersionRange::SERVER),
    ] {
        let conn = tls(&s, alpn).await;
        let (mut rd, mut w) = tokio::io::split(conn.stream);
        {
            let sess = client_handshake(
                &mut rd,
                &mut w,
                conn.session_id,
                &s.fingerprint,
                range,
                &conn.peer_chain,
                false,
            )
            .await
            .expect("handshake");
            drop(sess);
        }
        wait_clients(&s, 2).await;
        w.write_all(&[7u8; 1000]).await.expect("partial block");
        w.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(100)).await;
        w.shutdown().await.expect("close");
        drop((rd, w));
        wait_clients(&s, 1).await;
        ping_works(&other).await;
    }
    // a subscribed client that vanishes mid-block: messages wait for the next subscriber
    let c = s.client().await;
    let (_, sok) = c
        .request(r.rid(), Command::Sub, Some(&r.key))
        .await
        .expect("SUB");
    assert_eq!(sok, BrokerMsg::Sok(None));
    assert_eq!(event(&other).await, (r.rid().to_vec(), BrokerMsg::End));
    drop(c);
    wait_clients(&s, 1).await;
    let sc = s.client().await;
    let (_, ok) = sc
        .request(r.sid(), send_cmd(b"kept"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    no_event(&other).await;
    let (_, sok) = other
        .request(r.rid(), Command::Sub, Some(&r.key))
        .await
        .expect("SUB");
    assert_eq!(sok, BrokerMsg::Sok(None));
    let (_, m) = event(&other).await;
    assert_eq!(decrypt_msg(&r, &m).body.as_deref(), Some(&b"kept"[..]));
}

/// A writer that flips one byte of the next block written: the block fails to decrypt.
struct Corrupting<W> {
    inner: W,
    corrupt: Arc<AtomicBool>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Corrupting<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.corrupt.load(Ordering::Acquire) && !buf.is_empty() {
            let mut b = buf.to_vec();
            b[0] ^= 0xff;
            let r = Pin::new(&mut self.inner).poll_write(cx, &b);
            if let Poll::Ready(Ok(n)) = r {
                if n > 0 {
                    self.corrupt.store(false, Ordering::Release);
                }
            }
            return r;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Read the next block and decode its transmissions.
async fn read_responses<R: AsyncRead + Unpin>(
    rd: &mut BlockReader<R>,
    p: &THParams,
) -> Vec<(Vec<u8>, Vec<u8>, BrokerMsg)> {
    let block = tokio::time::timeout(Duration::from_secs(5), rd.read_block())
        .await
        .expect("response in time")
        .expect("connection open")
        .expect("block decrypts");
    split_batch(&block)
        .expect("batch")
        .into_iter()
        .map(|t| decode_client(p, t).expect("transmission"))
        .collect()
}

#[tokio::test]
async fn undecryptable_block_is_block_error_and_chain_keys_advance() {
    let s = start_server(Settings::default()).await;
    for v in [11u16, 18] {
        let conn = tls(&s, true).await;
        let (rd, w) = tokio::io::split(conn.stream);
        let corrupt = Arc::new(AtomicBool::new(false));
        let w = Corrupting {
            inner: w,
            corrupt: corrupt.clone(),
        };
        let mut sess = client_handshake(
            rd,
            w,
            conn.session_id,
            &s.fingerprint,
            VersionRange::new(6, v).expect("range"),
            &conn.peer_chain,
            false,
        )
        .await
        .expect("handshake");
        assert_eq!(sess.params.version, v);
        let ping = |corr: &[u8]| {
            let ct = encode_client(&sess.params, corr, b"", &Command::Ping);
            let mut e = Encoder::new();
            e.byte(1)
                .large_bytes(&with_auth(&sess.params, None, &ct.to_send));
            e.finish()
        };
        let (p1, p2, p3) = (ping(b"1"), ping(b"2"), ping(b"3"));
        sess.writer.write_block(&p1).await.expect("write");
        let r = read_responses(&mut sess.reader, &sess.params).await;
        assert_eq!(r, vec![(b"1".to_vec(), vec![], BrokerMsg::Pong)]);
        corrupt.store(true, Ordering::Release);
        sess.writer.write_block(&p2).await.expect("write");
        let r = read_responses(&mut sess.reader, &sess.params).await;
        assert_eq!(
            r,
            vec![(vec![], vec![], BrokerMsg::Err(ErrorType::Block))],
            "v{v}"
        );
        // the next block uses the next chain key on both sides
        sess.writer.write_block(&p3).await.expect("write");
        let r = read_responses(&mut sess.reader, &sess.params).await;
        assert_eq!(r, vec![(b"3".to_vec(), vec![], BrokerMsg::Pong)], "v{v}");
    }
}

#[tokio::test]
async fn many_bad_blocks_do_not_stop_other_clients() {
    let s = start_server(Settings::default()).await;
    let good = s.client().await;
    let r = create_queue(&good).await;
    let mut bad = Vec::new();
    for v in VERSIONS {
        bad.push(s.client_at(v).await);
    }
    let spam = async {
        for _ in 0..20 {
            for c in &bad {
                for content in bad_contents() {
                    c.send_raw_content(&content).await.expect("write");
                }
            }
        }
    };
    let work = async {
        let sc = s.client().await;
        for i in 0..20 {
            let body = format!("m{i}");
            let (_, ok) = sc
                .request(r.sid(), send_cmd(body.as_bytes()), None)
                .await
                .expect("SEND");
            assert_eq!(ok, BrokerMsg::Ok);
            let (_, m) = event(&good).await;
            let m = decrypt_msg(&r, &m);
            assert_eq!(m.body.as_deref(), Some(body.as_bytes()));
            let (_, ok) = good
                .request(r.rid(), Command::Ack(m.msg_id), Some(&r.key))
                .await
                .expect("ACK");
            assert_eq!(ok, BrokerMsg::Ok);
        }
    };
    tokio::join!(spam, work);
    for c in &bad {
        let n = bad_contents().len() * 20;
        for _ in 0..n {
            assert_eq!(event(c).await, block_err());
        }
        ping_works(c).await;
    }
}
