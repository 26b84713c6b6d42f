//! The reference's table of command syntax and credential errors (serverSyntaxTests):
//! raw transmissions with chosen correlation IDs, entity IDs and signatures, and the exact
//! (corrId, entityId, response) the server answers with, at v6 (session ID in every
//! transmission), v12 and v18 (service signature slot).

mod common;

use common::*;
use smp_server::client::SmpClient;
use smp_server::crypto::keys::DhKeyPair;
use smp_server::protocol::command::{key, Command, QueueReqData, SubscriptionMode};
use smp_server::protocol::encoding::Encoder;
use smp_server::protocol::errors::{CommandError, ErrorType};
use smp_server::protocol::response::BrokerMsg;
use smp_server::protocol::transmission::with_auth;
use smp_server::server::Settings;

const VERSIONS: [u16; 3] = [6, 12, 18];

/// Any well-formed Ed25519 signature (it verifies nothing).
const SAMPLE_SIG: [u8; 64] = [0x5a; 64];

fn raw(c: &SmpClient, auth: Option<&[u8]>, corr: &[u8], ent: &[u8], cmd: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    if c.version() < 7 {
        e.short_bytes(&c.params.session_id);
    }
    e.short_bytes(corr).short_bytes(ent).raw(cmd);
    with_auth(&c.params, auth, &e.finish())
}

fn cmd_err(e: CommandError) -> BrokerMsg {
    BrokerMsg::Err(ErrorType::Cmd(e))
}

struct Table<'a> {
    c: &'a SmpClient,
}

impl Table<'_> {
    /// `(sig, corrId, entityId, command) >#> (corrId, entityId, response)`
    async fn check(&self, sig: bool, corr: &str, ent: &str, cmd: &[u8], expected: BrokerMsg) {
        let auth = sig.then_some(&SAMPLE_SIG[..]);
        let t = raw(self.c, auth, corr.as_bytes(), ent.as_bytes(), cmd);
        let mut r = self
            .c
            .send_batch(vec![(corr.as_bytes().to_vec(), t)])
            .await
            .expect("response with the same corrId");
        let (rent, msg) = r.pop().expect("response");
        let v = self.c.version();
        let shown = String::from_utf8_lossy(cmd);
        assert_eq!(rent, ent.as_bytes(), "v{v} entity of {shown:?}");
        assert_eq!(
            msg, expected,
            "v{v} response to {shown:?} (sig {sig}, entity {ent:?})"
        );
    }
}

fn with_tag(tag: &[u8], rest: impl FnOnce(&mut Encoder)) -> Vec<u8> {
    let mut e = Encoder::new();
    e.raw(tag);
    rest(&mut e);
    e.finish()
}

#[tokio::test]
async fn syntax_and_credentials_table() {
    let s = start_server(Settings::default()).await;
    let pubk = sign_key().public();
    let dh = DhKeyPair::generate().expect("dh").public();
    for v in VERSIONS {
        let c = s.client_at(v).await;
        let t = Table { c: &c };
        let new = {
            let k = sign_key();
            let d = DhKeyPair::generate().expect("dh");
            let cmd = new_req(
                &k,
                &d,
                SubscriptionMode::Subscribe,
                Some(QueueReqData::Messaging(None)),
            );
            let mut e = Encoder::new();
            cmd.encode(v, &mut e);
            e.finish()
        };

        t.check(
            false,
            "abcd",
            "1234",
            b"HELLO",
            cmd_err(CommandError::Unknown),
        )
        .await;

        // NEW
        t.check(true, "bcda", "", b"NEW", cmd_err(CommandError::Syntax))
            .await;
        let many = with_tag(b"NEW ", |e| {
            e.raw(b"\x01A");
            key(e, &pubk);
            key(e, &dh);
        });
        t.check(true, "cdab", "", &many, cmd_err(CommandError::Syntax))
            .await;
        t.check(false, "dabc", "", &new, cmd_err(CommandError::NoAuth))
            .await;
        t.check(
            true,
            "abcd",
            "12345678",
            &new,
            cmd_err(CommandError::HasAuth),
        )
        .await;

        // KEY
        let key_cmd = with_tag(b"KEY ", |e| key(e, &pubk));
        t.check(
            true,
            "bcda",
            "12345678",
            &key_cmd,
            BrokerMsg::Err(ErrorType::Auth),
        )
        .await;
        t.check(
            true,
            "cdab",
            "12345678",
            b"KEY",
            cmd_err(CommandError::Syntax),
        )
        .await;
        let many = with_tag(b"KEY ", |e| {
            e.raw(b"\x01A");
            key(e, &pubk);
        });
        t.check(
            true,
            "dabc",
            "12345678",
            &many,
            cmd_err(CommandError::Syntax),
        )
        .await;
        t.check(
            false,
            "abcd",
            "12345678",
            &key_cmd,
            cmd_err(CommandError::NoAuth),
        )
        .await;
        t.check(true, "bcda", "", &key_cmd, cmd_err(CommandError::NoAuth))
            .await;

        // commands without parameters
        for tag in [&b"SUB"[..], b"OFF", b"DEL"] {
            t.check(
                true,
                "abcd",
                "12345678",
                tag,
                BrokerMsg::Err(ErrorType::Auth),
            )
            .await;
            let wrong = [tag, b"="].concat();
            t.check(
                true,
                "bcda",
                "12345678",
                &wrong,
                cmd_err(CommandError::Unknown),
            )
            .await;
            t.check(
                false,
                "cdab",
                "12345678",
                tag,
                cmd_err(CommandError::NoAuth),
            )
            .await;
            t.check(true, "dabc", "", tag, cmd_err(CommandError::NoAuth))
                .await;
        }

        // SEND
        t.check(
            true,
            "cdab",
            "12345678",
            b"SEND F hello",
            BrokerMsg::Err(ErrorType::Auth),
        )
        .await;
        t.check(
            true,
            "abcd",
            "12345678",
            b"SEND",
            cmd_err(CommandError::Syntax),
        )
        .await;
        t.check(
            true,
            "bcda",
            "",
            b"SEND F hello",
            cmd_err(CommandError::NoEntity),
        )
        .await;
        // an unsigned SEND to a missing queue is AUTH too
        t.check(
            false,
            "dabc",
            "12345678",
            b"SEND F hello",
            BrokerMsg::Err(ErrorType::Auth),
        )
        .await;

        // ACK
        let ack = with_tag(b"ACK ", |e| {
            e.short_bytes(b"1234");
        });
        t.check(
            true,
            "cdab",
            "12345678",
            &ack,
            BrokerMsg::Err(ErrorType::Auth),
        )
        .await;
        t.check(
            true,
            "abcd",
            "12345678",
            b"ACK",
            cmd_err(CommandError::Syntax),
        )
        .await;
        t.check(true, "bcda", "", &ack, cmd_err(CommandError::NoAuth))
            .await;
        t.check(
            false,
            "cdab",
            "12345678",
            &ack,
            cmd_err(CommandError::NoAuth),
        )
        .await;

        // PING
        t.check(false, "abcd", "", b"PING", BrokerMsg::Pong).await;
        t.check(
            false,
            "bcda",
            "12345678",
            b"PING",
            cmd_err(CommandError::HasAuth),
        )
        .await;
        t.check(true, "cdab", "", b"PING", cmd_err(CommandError::HasAuth))
            .await;

        // broker responses are not commands
        t.check(
            true,
            "bcda",
            "12345678",
            b"OK",
            cmd_err(CommandError::Unknown),
        )
        .await;
        t.check(false, "cdab", "", b"PONG", cmd_err(CommandError::Unknown))
            .await;

        // the connection still works after all these errors
        let r = create_queue(&c).await;
        let (_, q) = c
            .request(r.rid(), Command::Que, Some(&r.key))
            .await
            .expect("QUE");
        assert!(matches!(q, BrokerMsg::Info(_)), "v{v}: {q:?}");
    }
}

#[tokio::test]
async fn batched_errors_and_commands_are_all_answered() {
    let s = start_server(Settings::default()).await;
    for v in VERSIONS {
        let c = s.client_at(v).await;
        let items = vec![
            (b"1".to_vec(), raw(&c, None, b"1", b"", b"PING")),
            (b"2".to_vec(), raw(&c, None, b"2", b"", b"HELLO")),
            (
                b"3".to_vec(),
                raw(&c, Some(&SAMPLE_SIG), b"3", b"q", b"SUB"),
            ),
            (b"4".to_vec(), raw(&c, None, b"4", b"q", b"SUB")),
            (b"5".to_vec(), raw(&c, None, b"5", b"", b"PING")),
        ];
        let r = c.send_batch(items).await.expect("responses");
        let got: Vec<(Vec<u8>, BrokerMsg)> = r;
        assert_eq!(
            got,
            vec![
                (vec![], BrokerMsg::Pong),
                (vec![], cmd_err(CommandError::Unknown)),
                (b"q".to_vec(), BrokerMsg::Err(ErrorType::Auth)),
                (b"q".to_vec(), cmd_err(CommandError::NoAuth)),
                (vec![], BrokerMsg::Pong),
            ],
            "v{v}"
        );
    }
}
