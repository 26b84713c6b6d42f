//! Byte-exact encodings derived from the reference's encoding rules (`Encoding` instances in
//! Protocol.hs, Transport.hs, Encoding.hs), and round-trip properties.

use proptest::prelude::*;
use smp_server::crypto::keys::{KeyAlgorithm, PublicKey};
use smp_server::protocol::command::{
    Command, MsgFlags, NewQueueReq, QueueMode, QueueReqData, SubscriptionMode,
};
use smp_server::protocol::encoding::Encoder;
use smp_server::protocol::errors::{BlockingInfo, BlockingReason, ClientNotice, ErrorType};
use smp_server::protocol::handshake::{CertChainPubKey, ClientHandshake, ServerHandshake};
use smp_server::protocol::response::{BrokerMsg, QueueIdsKeys};
use smp_server::protocol::transmission::{encode_client, encode_server, with_auth, THParams};
use smp_server::protocol::version::VersionRange;

fn ed(b: u8) -> PublicKey {
    PublicKey::from_raw(KeyAlgorithm::Ed25519, &[b; 32]).expect("key")
}
fn x(b: u8) -> PublicKey {
    PublicKey::from_raw(KeyAlgorithm::X25519, &[b; 32]).expect("key")
}
/// SPKI DER prefixes (RFC 8410), as the reference's `encodePubKey` writes them.
fn spki(prefix: &[u8], b: u8) -> Vec<u8> {
    [prefix, &[b; 32]].concat()
}
const ED_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const X_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

fn cmd_bytes(v: u16, c: &Command) -> Vec<u8> {
    let mut e = Encoder::new();
    c.encode(v, &mut e);
    e.finish()
}
fn msg_bytes(v: u16, m: &BrokerMsg) -> Vec<u8> {
    let mut e = Encoder::new();
    m.encode(v, &mut e);
    e.finish()
}

fn new_cmd() -> Command {
    Command::New(NewQueueReq {
        rcv_auth_key: ed(1),
        rcv_dh_key: x(2),
        auth: None,
        sub_mode: SubscriptionMode::Subscribe,
        queue_req_data: Some(QueueReqData::Messaging(None)),
        ntf_creds: None,
    })
}

#[test]
fn new_command_layout_by_version() {
    let keys = [
        &b"NEW "[..],
        &[44],
        &spki(&ED_PREFIX, 1),
        &[44],
        &spki(&X_PREFIX, 2),
    ]
    .concat();
    // v17+: Maybe auth, mode, Maybe QueueReqData ('1' 'M' Maybe link data '0'), Maybe ntf creds
    assert_eq!(cmd_bytes(18, &new_cmd()), [&keys[..], b"0S1M00"].concat());
    assert_eq!(cmd_bytes(15, &new_cmd()), [&keys[..], b"0S1M0"].concat());
    // v9..14: Maybe auth, mode, sender-can-secure flag
    assert_eq!(cmd_bytes(9, &new_cmd()), [&keys[..], b"0ST"].concat());
    // v6..8: optional 'A' auth, mode
    assert_eq!(cmd_bytes(6, &new_cmd()), [&keys[..], b"S"].concat());
    for v in [6u16, 9, 15, 18] {
        let parsed = Command::parse(v, &cmd_bytes(v, &new_cmd())).expect("parse");
        let Command::New(r) = parsed else { panic!() };
        assert_eq!(r.rcv_auth_key, ed(1));
        if v >= 9 {
            assert_eq!(
                r.queue_req_data.map(|d| d.mode()),
                Some(QueueMode::Messaging)
            );
        }
    }
    // password at v6 is 'A' + short bytes
    let Command::New(mut r) = new_cmd() else {
        panic!()
    };
    r.auth = Some(b"pwd".to_vec());
    assert_eq!(
        cmd_bytes(6, &Command::New(r.clone())),
        [&keys[..], b"A\x03pwdS"].concat()
    );
    assert_eq!(
        cmd_bytes(18, &Command::New(r)),
        [&keys[..], b"1\x03pwdS1M00"].concat()
    );
}

#[test]
fn simple_commands() {
    assert_eq!(
        cmd_bytes(
            18,
            &Command::Send(MsgFlags { notification: true }, b"hi".to_vec())
        ),
        b"SEND T hi"
    );
    assert_eq!(cmd_bytes(18, &Command::Ack(b"id".to_vec())), b"ACK \x02id");
    assert_eq!(
        cmd_bytes(18, &Command::Key(ed(3))),
        [&b"KEY "[..], &[44], &spki(&ED_PREFIX, 3)].concat()
    );
    assert_eq!(
        cmd_bytes(18, &Command::Rkey(vec![ed(3), x(4)])),
        [
            &b"RKEY "[..],
            &[2, 44],
            &spki(&ED_PREFIX, 3),
            &[44],
            &spki(&X_PREFIX, 4)
        ]
        .concat()
    );
    assert_eq!(
        cmd_bytes(
            18,
            &Command::Lset(b"L".to_vec(), (b"f".to_vec(), b"u".to_vec()))
        ),
        b"LSET \x01L\x00\x01f\x00\x01u"
    );
    // future flags after the first one are skipped up to the space
    assert_eq!(
        Command::parse(18, b"SEND FXYZ body").expect("parse"),
        Command::Send(
            MsgFlags {
                notification: false
            },
            b"body".to_vec()
        )
    );
}

#[test]
fn ids_layout_by_version() {
    let ids = BrokerMsg::Ids(QueueIdsKeys {
        rcv_id: b"r".to_vec(),
        snd_id: b"s".to_vec(),
        rcv_public_dh_key: x(5),
        queue_mode: Some(QueueMode::Messaging),
        link_id: None,
        service_id: None,
        ntf_creds: None,
    });
    let base = [&b"IDS \x01r\x01s"[..], &[44], &spki(&X_PREFIX, 5)].concat();
    assert_eq!(msg_bytes(18, &ids), [&base[..], b"1M000"].concat());
    assert_eq!(msg_bytes(16, &ids), [&base[..], b"1M00"].concat());
    assert_eq!(msg_bytes(15, &ids), [&base[..], b"1M0"].concat());
    assert_eq!(msg_bytes(9, &ids), [&base[..], b"T"].concat());
    assert_eq!(msg_bytes(8, &ids), base);
    for v in [8u16, 9, 15, 16, 18] {
        assert!(matches!(
            BrokerMsg::parse(v, &msg_bytes(v, &ids)).expect("parse"),
            BrokerMsg::Ids(_)
        ));
    }
}

#[test]
fn version_dependent_responses() {
    assert_eq!(msg_bytes(15, &BrokerMsg::Sok(None)), b"OK");
    assert_eq!(msg_bytes(16, &BrokerMsg::Sok(None)), b"SOK 0");
    assert_eq!(msg_bytes(9, &BrokerMsg::Deld), b"END");
    assert_eq!(msg_bytes(10, &BrokerMsg::Deld), b"DELD");
    let blocked = BrokerMsg::Err(ErrorType::Blocked(BlockingInfo {
        reason: BlockingReason::Spam,
        notice: Some(ClientNotice { ttl: None }),
    }));
    assert_eq!(msg_bytes(11, &blocked), b"ERR AUTH");
    assert_eq!(msg_bytes(17, &blocked), b"ERR BLOCKED reason=spam");
    assert_eq!(
        msg_bytes(18, &blocked),
        b"ERR BLOCKED reason=spam,notice={}"
    );
    assert_eq!(
        msg_bytes(18, &BrokerMsg::Msg(b"m".to_vec(), b"body".to_vec())),
        b"MSG \x01mbody"
    );
    assert_eq!(
        msg_bytes(18, &BrokerMsg::Soks(3, vec![0; 16])),
        b"SOKS \0\0\0\0\0\0\0\x03"
    );
    let nmsg = BrokerMsg::Nmsg([9; 24], b"meta".to_vec());
    assert_eq!(
        msg_bytes(18, &nmsg),
        [&b"NMSG "[..], &[9; 24], b"\x04meta"].concat()
    );
}

#[test]
fn transmission_layouts() {
    let p6 = THParams {
        session_id: b"S".to_vec(),
        version: 6,
    };
    let p18 = THParams {
        session_id: b"S".to_vec(),
        version: 18,
    };
    // server responses: empty authenticator, session ID only before v7
    assert_eq!(
        encode_server(&p6, b"c", b"q", &BrokerMsg::Ok),
        b"\x00\x01S\x01c\x01qOK"
    );
    assert_eq!(
        encode_server(&p18, b"c", b"q", &BrokerMsg::Ok),
        b"\x00\x01c\x01qOK"
    );
    // client: authenticator, then (v16+) the absent service signature '0'
    let ct = encode_client(&p18, b"c", b"q", &Command::Sub);
    assert_eq!(ct.for_auth, b"\x01S\x01c\x01qSUB");
    assert_eq!(
        with_auth(&p18, Some(b"AB"), &ct.to_send),
        b"\x02AB0\x01c\x01qSUB"
    );
    let p15 = THParams {
        session_id: b"S".to_vec(),
        version: 15,
    };
    assert_eq!(
        with_auth(&p15, Some(b"AB"), &ct.to_send),
        b"\x02AB\x01c\x01qSUB"
    );
}

#[test]
fn handshake_layouts() {
    let sh = ServerHandshake {
        version_range: VersionRange::SERVER,
        session_id: b"sid".to_vec(),
        auth_pub_key: Some(CertChainPubKey {
            chain: vec![b"C1".to_vec(), b"C2".to_vec()],
            signed_key: b"K".to_vec(),
        }),
    };
    assert_eq!(
        sh.encode(),
        b"\x00\x06\x00\x14\x03sid\x02\x00\x02C1\x00\x02C2\x00\x01K".to_vec()
    );
    assert_eq!(ServerHandshake::decode(&sh.encode()).expect("decode"), sh);
    // legacy range (no ALPN) carries no key
    let legacy = ServerHandshake {
        version_range: VersionRange::LEGACY_SERVER,
        ..sh
    };
    assert_eq!(legacy.encode(), b"\x00\x06\x00\x06\x03sid".to_vec());
    let ch = ClientHandshake {
        version: 18,
        key_hash: vec![7; 32],
        auth_pub_key: Some(x(1)),
        proxy_server: false,
        client_service: None,
    };
    let bytes = ch.encode();
    assert_eq!(
        bytes,
        [
            &[0, 18, 32][..],
            &[7; 32],
            &[44],
            &spki(&X_PREFIX, 1),
            b"F0"
        ]
        .concat()
    );
    assert_eq!(ClientHandshake::decode(&bytes).expect("decode"), ch);
    // v6 client: version and key hash only; extra bytes are ignored
    let ch6 = ClientHandshake::decode(&[&[0, 6, 1][..], b"h", b"extra"].concat()).expect("v6");
    assert_eq!(
        (ch6.version, ch6.key_hash, ch6.auth_pub_key),
        (6, b"h".to_vec(), None)
    );
}

fn arb_key() -> impl Strategy<Value = PublicKey> {
    (
        any::<u8>(),
        prop_oneof![Just(KeyAlgorithm::Ed25519), Just(KeyAlgorithm::X25519)],
    )
        .prop_map(|(b, a)| PublicKey::from_raw(a, &[b; 32]).expect("key"))
}

fn arb_cmd() -> impl Strategy<Value = Command> {
    let id = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        Just(Command::Sub),
        Just(Command::Get),
        Just(Command::Ping),
        Just(Command::Del),
        id.clone().prop_map(Command::Ack),
        arb_key().prop_map(Command::Key),
        arb_key().prop_map(Command::Skey),
        proptest::collection::vec(arb_key(), 1..4).prop_map(Command::Rkey),
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(n, b)| Command::Send(MsgFlags { notification: n }, b)),
        (id.clone(), id.clone(), id).prop_map(|(l, f, u)| Command::Lset(l, (f, u))),
    ]
}

/// v19/v20 commands and responses at every version. Derivation from the reference 7.0
/// (`Protocol.hs` `encodeProtocol`, `Encoding` instances in `Encoding.hs`):
/// - `SUBS n idsHash | v >= rcvServiceSMPVersion (19) -> e (SUBS_, ' ', n, idsHash)`, else
///   `e SUBS_`; `Int64` is 8 bytes big-endian; `IdsHash` derives `Encoding` from `ByteString`
///   (1 length byte + bytes). NSUBS the same. Before v19 the parser gives `(-1, mempty)`,
///   `mempty` being 16 zero bytes.
/// - `SOKS`/`ENDS` via `serviceResp`: `(tag, ' ', n, idsHash)` from v19, `(tag, ' ', n)` before.
/// - `ALLS -> e ALLS_` = `"ALLS"` at every version.
/// - `RSLV d -> e (RSLV_, ' ', d)` where `smpEncode SimplexDomain = strEncode` = the full name
///   text (`fullDomainName`: lower-cased labels joined by '.'); parsed as `_smpP <* takeByteString`,
///   not gated by version.
/// - `RNAME rec -> e (RNAME_, ' ', Tail (J.encode rec))`: aeson's compact JSON of `NameRecord`
///   in field order, `nr` prefix dropped, `omitNothingFields = False` (nulls kept).
/// - `ERR (NAME e)`: `"NAME " <> smpEncode e` with `NO_RESOLVER`, `NOT_FOUND`,
///   `RESOLVER <text>`.
#[test]
fn v19_v20_layouts() {
    use smp_server::protocol::errors::NameError;
    use smp_server::protocol::names::{NameRecord, SimplexDomain};
    let h: Vec<u8> = (1..=16).collect();
    let n7 = [0u8, 0, 0, 0, 0, 0, 0, 7];
    for v in [16u16, 18] {
        assert_eq!(cmd_bytes(v, &Command::Subs(7, h.clone())), b"SUBS");
        assert_eq!(cmd_bytes(v, &Command::Nsubs(7, h.clone())), b"NSUBS");
        assert_eq!(
            Command::parse(v, b"SUBS").expect("parse"),
            Command::Subs(-1, vec![0; 16])
        );
        assert_eq!(
            msg_bytes(v, &BrokerMsg::Soks(7, h.clone())),
            [&b"SOKS "[..], &n7].concat()
        );
        assert_eq!(
            msg_bytes(v, &BrokerMsg::Ends(7, h.clone())),
            [&b"ENDS "[..], &n7].concat()
        );
    }
    for v in [19u16, 20] {
        let with_hash = |tag: &[u8]| [tag, b" ", &n7, &[16], &h].concat();
        assert_eq!(
            cmd_bytes(v, &Command::Subs(7, h.clone())),
            with_hash(b"SUBS")
        );
        assert_eq!(
            cmd_bytes(v, &Command::Nsubs(7, h.clone())),
            with_hash(b"NSUBS")
        );
        assert_eq!(
            Command::parse(v, &with_hash(b"NSUBS")).expect("parse"),
            Command::Nsubs(7, h.clone())
        );
        assert_eq!(
            msg_bytes(v, &BrokerMsg::Soks(7, h.clone())),
            with_hash(b"SOKS")
        );
        assert_eq!(
            msg_bytes(v, &BrokerMsg::Ends(7, h.clone())),
            with_hash(b"ENDS")
        );
        assert_eq!(
            BrokerMsg::parse(v, &with_hash(b"ENDS")).expect("parse"),
            BrokerMsg::Ends(7, h.clone())
        );
        // a v19 SUBS without its fields is a syntax error
        assert!(Command::parse(v, b"SUBS").is_err());
    }
    for v in [6u16, 18, 19, 20] {
        assert_eq!(msg_bytes(v, &BrokerMsg::Alls), b"ALLS");
        let d = SimplexDomain::parse(b"Bob.Simplex").expect("name");
        assert_eq!(cmd_bytes(v, &Command::Rslv(d.clone())), b"RSLV bob.simplex");
        assert_eq!(
            Command::parse(v, b"RSLV bob.simplex extra").expect("parse"),
            Command::Rslv(d)
        );
        assert!(Command::parse(v, b"RSLV bob").is_err());
        assert!(Command::parse(v, b"RSLV ").is_err());
        for (e, text) in [
            (NameError::NoResolver, &b"ERR NAME NO_RESOLVER"[..]),
            (NameError::NotFound, b"ERR NAME NOT_FOUND"),
            (
                NameError::Resolver("timeout".into()),
                b"ERR NAME RESOLVER timeout",
            ),
        ] {
            let m = BrokerMsg::Err(ErrorType::Name(e));
            assert_eq!(msg_bytes(v, &m), text);
            assert_eq!(BrokerMsg::parse(v, text).expect("parse"), m);
        }
        let rec = NameRecord {
            name: "bob.simplex".into(),
            simplex_contact: vec!["simplex:/c".into()],
            btc: Some("bc1".into()),
            owner: "0x1".into(),
            resolver: "0x2".into(),
            ..NameRecord::default()
        };
        let rname: &[u8] = b"RNAME {\"name\":\"bob.simplex\",\"nickname\":\"\",\"website\":\"\",\"location\":\"\",\"simplexContact\":[\"simplex:/c\"],\"simplexChannel\":[],\"eth\":null,\"btc\":\"bc1\",\"xmr\":null,\"dot\":null,\"owner\":\"0x1\",\"resolver\":\"0x2\"}";
        assert_eq!(msg_bytes(v, &BrokerMsg::Rname(rec.clone())), rname);
        assert_eq!(
            BrokerMsg::parse(v, rname).expect("parse"),
            BrokerMsg::Rname(rec)
        );
    }
}

proptest! {
    #[test]
    fn commands_round_trip(c in arb_cmd(), v in 6u16..=20) {
        prop_assert_eq!(Command::parse(v, &cmd_bytes(v, &c)).expect("parse"), c);
    }

    #[test]
    fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200), v in 6u16..=20) {
        let _ = Command::parse(v, &b);
        let _ = BrokerMsg::parse(v, &b);
        let _ = ClientHandshake::decode(&b);
        let _ = ServerHandshake::decode(&b);
        let p = THParams { session_id: vec![1; 32], version: v };
        let _ = smp_server::protocol::transmission::decode_server(
            &p,
            smp_server::protocol::transmission::parse_transmission(&p, &b),
        );
        let _ = smp_server::protocol::transmission::split_batch(&b);
    }

    #[test]
    fn errors_round_trip(code in 0usize..10, v in 6u16..=20) {
        use smp_server::protocol::errors::CommandError as C;
        let all = [ErrorType::Auth, ErrorType::NoMsg, ErrorType::Quota, ErrorType::LargeMsg,
            ErrorType::Internal, ErrorType::Block, ErrorType::Session, ErrorType::Cmd(C::Syntax),
            ErrorType::Cmd(C::Prohibited), ErrorType::Store("x y".into())];
        let m = BrokerMsg::Err(all[code].clone());
        prop_assert_eq!(BrokerMsg::parse(v, &msg_bytes(v, &m)).expect("parse"), m);
    }
}
