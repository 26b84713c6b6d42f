//! Writes the seed corpora (`fuzz/seeds/<target>/`) with the server's own encoders and real
//! keys, certificates and signatures, plus the reference's files from `tests/fixtures`. Run it
//! with `fuzz/run.sh --seeds`; the output is committed, so keep it small.

use std::path::{Path, PathBuf};

use smp_server::config::{render_ini, IniTemplate, Paths};
use smp_server::crypto::cbox;
use smp_server::crypto::identity::{create_identity, load_identity};
use smp_server::crypto::keys::{DhKeyPair, KeyAlgorithm, PrivateSignKey};
use smp_server::crypto::x509;
use smp_server::protocol::command::{
    key, Command, MsgFlags, NewQueueReq, QueueMode, QueueReqData, SmpServerRef, SubscriptionMode,
};
use smp_server::protocol::encoding::Encoder;
use smp_server::protocol::errors::{
    BlockingInfo, BlockingReason, ClientNotice, CommandError, ErrorType, ProxyError,
};
use smp_server::protocol::handshake::{CertChainPubKey, ClientHandshake, ServerHandshake};
use smp_server::protocol::response::{BrokerMsg, QueueIdsKeys};
use smp_server::protocol::transmission::{batch, encode_client, encode_server, with_auth};
use smp_server::protocol::version::{Version, VersionRange, SMP_BLOCK_SIZE};
use smp_server::stats::backup;
use smp_server::stats::counters::ServerStats;
use smp_server::store::journal::record::{encode_frame, Record};
use smp_server::store::msgfile::{encode_msg, encode_ntf, NtfLine};
use smp_server::store::storelog::StoreLogRecord;
use smp_server::store::{Message, NtfCreds, QueueBody, QueueRec, QueueStatus};
use smp_server_fuzz::{params, SESSION_ID};

/// The versions seeds are written at: each one where the encoding changes.
const VERSIONS: [Version; 11] = [6, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18];

struct Out {
    root: PathBuf,
    files: usize,
    bytes: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("seed dir");
        std::fs::write(dir.join(name), data).expect("seed file");
        self.files += 1;
        self.bytes += data.len();
    }
}

fn with_version(v: Version, b: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::try_from(v).expect("versions fit a byte")];
    out.extend_from_slice(b);
    out
}

struct Keys {
    sign: PrivateSignKey,
    sign448: PrivateSignKey,
    dh: DhKeyPair,
    server_dh: DhKeyPair,
}

impl Keys {
    fn new() -> Self {
        Keys {
            sign: PrivateSignKey::from_seed(KeyAlgorithm::Ed25519, &[1; 32]).expect("ed25519"),
            sign448: PrivateSignKey::from_seed(KeyAlgorithm::Ed448, &[2; 57]).expect("ed448"),
            dh: DhKeyPair::from_secret_bytes([3; 32]),
            server_dh: DhKeyPair::from_secret_bytes([4; 32]),
        }
    }
}

fn commands(k: &Keys) -> Vec<(&'static str, Command)> {
    let auth = k.sign.public();
    let dh = k.dh.public();
    let link = (b"fixed link data".to_vec(), b"user link data".to_vec());
    vec![
        (
            "new",
            Command::New(NewQueueReq {
                rcv_auth_key: auth.clone(),
                rcv_dh_key: dh.clone(),
                auth: None,
                sub_mode: SubscriptionMode::Subscribe,
                queue_req_data: None,
                ntf_creds: None,
            }),
        ),
        (
            "new-full",
            Command::New(NewQueueReq {
                rcv_auth_key: k.sign448.public(),
                rcv_dh_key: dh.clone(),
                auth: Some(b"server password".to_vec()),
                sub_mode: SubscriptionMode::OnlyCreate,
                queue_req_data: Some(QueueReqData::Contact(Some((
                    vec![9; 24],
                    vec![8; 24],
                    link.clone(),
                )))),
                ntf_creds: Some((auth.clone(), dh.clone())),
            }),
        ),
        (
            "new-msg",
            Command::New(NewQueueReq {
                rcv_auth_key: auth.clone(),
                rcv_dh_key: dh.clone(),
                auth: None,
                sub_mode: SubscriptionMode::Subscribe,
                queue_req_data: Some(QueueReqData::Messaging(Some((vec![7; 24], link.clone())))),
                ntf_creds: None,
            }),
        ),
        ("sub", Command::Sub),
        ("subs", Command::Subs(3, vec![7; 16])),
        ("key", Command::Key(auth.clone())),
        (
            "rkey",
            Command::Rkey(vec![auth.clone(), k.sign448.public()]),
        ),
        ("lset", Command::Lset(vec![6; 24], link.clone())),
        ("ldel", Command::Ldel),
        ("nkey", Command::Nkey(auth.clone(), dh.clone())),
        ("ndel", Command::Ndel),
        ("get", Command::Get),
        ("ack", Command::Ack(vec![5; 24])),
        ("off", Command::Off),
        ("del", Command::Del),
        ("que", Command::Que),
        ("skey", Command::Skey(auth.clone())),
        (
            "send",
            Command::Send(
                MsgFlags { notification: true },
                b"an encrypted message body".repeat(4),
            ),
        ),
        ("ping", Command::Ping),
        ("lkey", Command::Lkey(auth.clone())),
        ("lget", Command::Lget),
        ("nsub", Command::Nsub),
        ("nsubs", Command::Nsubs(2, vec![8; 16])),
        (
            "prxy",
            Command::Prxy(
                SmpServerRef {
                    hosts: vec![b"smp.example.com".to_vec(), b"abcdef.onion".to_vec()],
                    port: b"5223".to_vec(),
                    key_hash: vec![0xab; 32],
                },
                Some(b"relay password".to_vec()),
            ),
        ),
        ("pfwd", Command::Pfwd(18, dh.clone(), vec![0x42; 120])),
        ("rfwd", Command::Rfwd(vec![0x24; 150])),
    ]
}

fn responses(k: &Keys, chain: &CertChainPubKey) -> Vec<(&'static str, BrokerMsg)> {
    let dh = k.server_dh.public();
    let blocked = BlockingInfo {
        reason: BlockingReason::Spam,
        notice: Some(ClientNotice { ttl: Some(3600) }),
    };
    vec![
        (
            "ids",
            BrokerMsg::Ids(QueueIdsKeys {
                rcv_id: vec![1; 24],
                snd_id: vec![2; 24],
                rcv_public_dh_key: dh.clone(),
                queue_mode: Some(QueueMode::Contact),
                link_id: Some(vec![3; 24]),
                service_id: Some(vec![4; 16]),
                ntf_creds: Some((vec![5; 24], dh.clone())),
            }),
        ),
        (
            "lnk",
            BrokerMsg::Lnk(vec![2; 24], (b"fixed".to_vec(), b"user".to_vec())),
        ),
        ("sok", BrokerMsg::Sok(Some(vec![4; 16]))),
        ("soks", BrokerMsg::Soks(12, vec![9; 16])),
        (
            "msg",
            BrokerMsg::Msg(vec![6; 24], b"encrypted body".repeat(8)),
        ),
        ("nid", BrokerMsg::Nid(vec![5; 24], dh.clone())),
        ("nmsg", BrokerMsg::Nmsg([7; 24], b"encrypted meta".to_vec())),
        (
            "pkey",
            BrokerMsg::Pkey(SESSION_ID.to_vec(), VersionRange::SERVER, chain.clone()),
        ),
        ("rres", BrokerMsg::Rres(vec![0x11; 200])),
        ("pres", BrokerMsg::Pres(vec![0x22; 200])),
        ("end", BrokerMsg::End),
        ("ends", BrokerMsg::Ends(3, vec![1; 16])),
        ("deld", BrokerMsg::Deld),
        (
            "info",
            BrokerMsg::Info(br#"{"qiSnd":true,"qiNtf":false,"qiSize":0}"#.to_vec()),
        ),
        ("ok", BrokerMsg::Ok),
        ("pong", BrokerMsg::Pong),
        ("err-auth", BrokerMsg::Err(ErrorType::Auth)),
        (
            "err-cmd",
            BrokerMsg::Err(ErrorType::Cmd(CommandError::Syntax)),
        ),
        ("err-blocked", BrokerMsg::Err(ErrorType::Blocked(blocked))),
        (
            "err-proxy",
            BrokerMsg::Err(ErrorType::Proxy(ProxyError::Protocol(Box::new(
                ErrorType::Quota,
            )))),
        ),
        (
            "err-store",
            BrokerMsg::Err(ErrorType::Store("disk full".into())),
        ),
    ]
}

/// A client transmission as the client sends it: signed with Ed25519 (recipient/sender
/// commands), a crypto_box authenticator from v7 for some, none for PING.
fn client_transmission(k: &Keys, v: Version, corr: &[u8], entity: &[u8], cmd: &Command) -> Vec<u8> {
    let p = params(v);
    let ct = encode_client(&p, corr, entity, cmd);
    let auth = match cmd {
        Command::Ping | Command::Rfwd(_) | Command::Prxy(..) | Command::Pfwd(..) => None,
        Command::Send(..) if v >= 7 => {
            let auth = cbox::cb_authenticate(
                &k.server_dh.public(),
                &k.dh,
                &cbox::cb_nonce(corr),
                &ct.for_auth,
            );
            Some(auth.expect("authenticator"))
        }
        Command::New(_) => Some(k.sign448.sign(&ct.for_auth)),
        _ => Some(k.sign.sign(&ct.for_auth)),
    };
    with_auth(&p, auth.as_deref(), &ct.to_send)
}

/// Block content, padded only to its own length (the padding is not read).
fn block_of(content: &[u8]) -> Vec<u8> {
    cbox::pad(content, content.len() + 2).expect("pad")
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    if root.exists() {
        std::fs::remove_dir_all(&root).expect("clear the old seeds");
    }
    let mut out = Out {
        root,
        files: 0,
        bytes: 0,
    };
    let k = Keys::new();

    // A real identity: CA and online certificate as `init` creates them.
    let tmp = std::env::temp_dir().join(format!("smp-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    create_identity(&tmp, KeyAlgorithm::Ed25519, "smp.example.com").expect("identity");
    let identity = load_identity(&tmp).expect("load identity");
    let _ = std::fs::remove_dir_all(&tmp);
    let chain = CertChainPubKey {
        chain: identity.chain.clone(),
        signed_key: x509::sign_pubkey(&identity.server_key, &k.server_dh.public()),
    };

    // Commands and responses, each at every version where encodings change.
    let cmds = commands(&k);
    let resps = responses(&k, &chain);
    for &v in &VERSIONS {
        for (name, c) in &cmds {
            let mut e = Encoder::new();
            c.encode(v, &mut e);
            out.put(
                "command",
                &format!("{name}-v{v}"),
                &with_version(v, &e.finish()),
            );
        }
        for (name, m) in &resps {
            let mut e = Encoder::new();
            m.encode(v, &mut e);
            out.put(
                "response",
                &format!("{name}-v{v}"),
                &with_version(v, &e.finish()),
            );
        }
    }

    // Blocks: batches of client commands (server side) and of server messages (client side).
    for &v in &VERSIONS {
        let ts: Vec<Vec<u8>> = cmds
            .iter()
            .enumerate()
            .map(|(i, (_, c))| {
                let entity = if matches!(c, Command::New(_) | Command::Ping) {
                    vec![]
                } else {
                    vec![i as u8; 24]
                };
                client_transmission(&k, v, &[i as u8; 24], &entity, c)
            })
            .collect();
        for (i, b) in batch(&ts[..8], SMP_BLOCK_SIZE).into_iter().enumerate() {
            out.put(
                "block",
                &format!("commands-a{i}-v{v}"),
                &with_version(v, &block_of(&b.expect("fits"))),
            );
        }
        for (i, b) in batch(&ts[8..], SMP_BLOCK_SIZE).into_iter().enumerate() {
            out.put(
                "block",
                &format!("commands-b{i}-v{v}"),
                &with_version(v, &block_of(&b.expect("fits"))),
            );
        }
        let p = params(v);
        let rs: Vec<Vec<u8>> = resps
            .iter()
            .enumerate()
            .map(|(i, (_, m))| encode_server(&p, &[i as u8; 24], &[1; 24], m))
            .collect();
        for (i, b) in batch(&rs, SMP_BLOCK_SIZE).into_iter().enumerate() {
            out.put(
                "block",
                &format!("responses-{i}-v{v}"),
                &with_version(v, &block_of(&b.expect("fits"))),
            );
        }
    }

    // Handshakes: server hellos (selector 1) with the real chain, client hellos (selector 0).
    for range in [VersionRange::SERVER, VersionRange::LEGACY_SERVER] {
        let sh = ServerHandshake {
            version_range: range,
            session_id: SESSION_ID.to_vec(),
            auth_pub_key: Some(chain.clone()),
        };
        let mut b = vec![1];
        b.extend_from_slice(&sh.encode());
        out.put(
            "handshake",
            &format!("server-{}-{}", range.min, range.max),
            &b,
        );
    }
    for &v in &VERSIONS {
        for proxy in [false, true] {
            let ch = ClientHandshake {
                version: v,
                key_hash: identity.fingerprint.0.to_vec(),
                auth_pub_key: Some(k.dh.public()),
                proxy_server: proxy,
                client_service: None,
            };
            let mut b = vec![0];
            b.extend_from_slice(&ch.encode());
            out.put(
                "handshake",
                &format!("client-v{v}-proxy{}", u8::from(proxy)),
                &b,
            );
        }
    }

    // Forwarded commands: the decrypted RFWD body a proxy sends for a client's SEND/SKEY/LGET.
    for &v in &[8u16, 11, 14, 15, 18] {
        for (name, c) in cmds
            .iter()
            .filter(|(n, _)| matches!(*n, "send" | "skey" | "lkey" | "lget" | "sub"))
        {
            let t = client_transmission(&k, v, &[9; 24], &[2; 24], c);
            let content = batch(&[t], SMP_BLOCK_SIZE).remove(0).expect("fits");
            let mut e = Encoder::new();
            e.short_bytes(&[8; 24]).u16(v);
            key(&mut e, &k.dh.public());
            e.raw(&content);
            out.put("forward", &format!("{name}-v{v}"), &e.finish());
        }
    }

    // Store log: our encoder's records for a full queue history, and the reference's file.
    let rid = vec![1u8; 24];
    let rec = QueueRec {
        recipient_id: rid.clone().into(),
        sender_id: vec![2; 24].into(),
        body: QueueBody {
            recipient_keys: vec![k.sign.public(), k.sign448.public()].into(),
            rcv_dh_secret: [5; 32],
            sender_key: Some(k.sign.public()),
            queue_mode: Some(QueueMode::Messaging),
            queue_data: Some(Box::new((
                vec![3; 24],
                (b"fixed".to_vec(), b"user".to_vec()),
            ))),
            notifier: Some(Box::new(NtfCreds {
                notifier_id: vec![4; 24],
                notifier_key: k.sign.public(),
                rcv_ntf_dh_secret: [6; 32],
            })),
            status: QueueStatus::Active,
            updated_at: Some(1_764_892_800).into(),
        },
    };
    let blocked = BlockingInfo {
        reason: BlockingReason::Content,
        notice: Some(ClientNotice { ttl: None }),
    };
    let ntf = *rec.notifier.clone().expect("notifier");
    let history = vec![
        StoreLogRecord::Create(Box::new(rec.clone())),
        StoreLogRecord::Secure(rid.clone(), k.sign.public()),
        StoreLogRecord::Keys(rid.clone(), vec![k.sign.public(), k.sign448.public()]),
        StoreLogRecord::Link(rid.clone(), vec![3; 24], (b"f".to_vec(), b"u".to_vec())),
        StoreLogRecord::Notifier(rid.clone(), ntf),
        StoreLogRecord::Time(rid.clone(), 1_764_979_200),
        StoreLogRecord::Suspend(rid.clone()),
        StoreLogRecord::Block(rid.clone(), blocked),
        StoreLogRecord::Unblock(rid.clone()),
        StoreLogRecord::DeleteLink(rid.clone()),
        StoreLogRecord::DeleteNotifier(rid.clone()),
        StoreLogRecord::Delete(rid.clone()),
    ];
    let mut log = Vec::new();
    for r in &history {
        log.extend_from_slice(&r.encode());
        log.push(b'\n');
    }
    out.put("store_log", "history", &log);
    out.put(
        "store_log",
        "create",
        &[history[0].encode(), b"\n".to_vec()].concat(),
    );
    out.put(
        "store_log",
        "reference",
        &std::fs::read(fixtures.join("reference-store.log")).expect("fixture"),
    );

    // Journal: framed records (mode 0, as on disk) and bare payloads in chunks (mode 1).
    let msgs = [
        Message::Msg {
            msg_id: vec![7; 24],
            ts: 1_764_892_800,
            flags: MsgFlags { notification: true },
            body: b"encrypted body".repeat(6),
        },
        Message::Quota {
            msg_id: vec![8; 24],
            ts: 1_764_892_900,
        },
    ];
    let records = [
        Record::Write {
            rid: rid.clone(),
            msg: msgs[0].clone(),
        },
        Record::Write {
            rid: vec![9; 24],
            msg: msgs[0].clone(),
        },
        Record::Remove {
            rid: rid.clone(),
            msg_id: vec![7; 24],
        },
        Record::Write {
            rid: rid.clone(),
            msg: msgs[1].clone(),
        },
        Record::Clear { rid: rid.clone() },
    ];
    let mut on_disk = vec![0u8];
    let mut chunks = vec![1u8];
    for r in &records {
        let frame = encode_frame(r).expect("frame");
        on_disk.extend_from_slice(&frame);
        let payload = &frame[8..];
        chunks.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        chunks.extend_from_slice(payload);
    }
    out.put("journal", "shard", &on_disk);
    out.put("journal", "payloads", &chunks);
    let mut torn = on_disk.clone();
    torn.truncate(torn.len() - 5);
    out.put("journal", "torn", &torn);

    // Messages and notifications files: ours and the reference's.
    let mut m = Vec::new();
    for msg in &msgs {
        m.extend_from_slice(&encode_msg(&rid, msg));
        m.push(b'\n');
    }
    out.put("messages_log", "ours", &m);
    out.put(
        "messages_log",
        "reference",
        &std::fs::read(fixtures.join("reference-messages.log")).expect("fixture"),
    );
    let n = encode_ntf(&NtfLine {
        notifier_id: vec![4; 24],
        msg_id: vec![7; 24],
        ts: 1_764_892_800,
        nonce: [3; 24],
        enc_meta: b"encrypted meta".to_vec(),
    });
    out.put("ntfs_log", "ours", &[n, b"\n".to_vec()].concat());
    out.put(
        "ntfs_log",
        "reference",
        &std::fs::read(fixtures.join("reference-ntfs.log")).expect("fixture"),
    );

    // INI: what `init` writes, default and with the optional keys filled in.
    let paths = Paths::new("/etc/opt/simplex", "/var/opt/simplex");
    let plain = IniTemplate {
        paths: paths.clone(),
        ..IniTemplate::default()
    };
    out.put("ini", "init-default", render_ini(&plain).as_bytes());
    let full = IniTemplate {
        paths,
        create_password: Some("secret-password".into()),
        control_port: Some(5224),
        control_port_passwords: Some(("admin-pw".into(), "user-pw".into())),
        socks_proxy: Some("127.0.0.1:9050".into()),
        own_domains: vec!["example.com".into()],
        source_code: Some("https://example.com/src".into()),
        server_country: Some("DE".into()),
        website: Some("https://example.com".into()),
        enable_tor: true,
        acme_domains: vec!["smp.example.com".into()],
        log_stats: true,
        ..IniTemplate::default()
    };
    out.put("ini", "init-full", render_ini(&full).as_bytes());

    // Stats backup: what the server saves after some traffic.
    let s = ServerStats::new(1_764_892_800);
    s.msg_sent.add(12);
    s.msg_recv.add(10);
    s.active_queues.update(&[1; 24]);
    s.active_queues.update(&[2; 24]);
    s.active_queues_ntf.update(&[1; 24]);
    out.put("stats", "saved", backup::encode(&s).as_bytes());
    out.put(
        "stats",
        "fresh",
        backup::encode(&ServerStats::new(0)).as_bytes(),
    );

    // Control port: each command word, with the arguments it takes.
    let qid = "AQEBAQEBAQEBAQEBAQEBAQEBAQEB";
    let lines = [
        "auth admin-pw".to_string(),
        "stats".into(),
        "stats-rts".into(),
        "clients".into(),
        "threads".into(),
        "sockets".into(),
        "socket-threads".into(),
        "server-info".into(),
        "suspend".into(),
        "resume".into(),
        format!("delete {qid}"),
        format!("status {qid}"),
        format!("block {qid} reason=spam,notice={{\"ttl\":3600}}"),
        format!("unblock {qid}"),
        "save".into(),
        "help".into(),
        "quit".into(),
    ];
    for (i, l) in lines.iter().enumerate() {
        out.put("control", &format!("line-{i}"), format!("{l}\n").as_bytes());
    }

    // HTTP: requests as real clients (hyper's HTTP/1.1 and HTTP/2 clients) put them on the wire.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (i, (h2, path, gzip)) in [
        (false, "/", true),
        (false, "/style.css", false),
        (false, "/.well-known/acme-challenge/token123", false),
        (false, "/media/../index.html?x=1", true),
        (true, "/", true),
        (true, "/media/logo.svg", false),
    ]
    .into_iter()
    .enumerate()
    {
        let wire = rt.block_on(capture_request(h2, path, gzip));
        let mut b = vec![u8::from(i % 2 == 1)];
        b.extend_from_slice(&wire);
        out.put("http", &format!("{}-{i}", if h2 { "h2" } else { "h1" }), &b);
    }

    println!(
        "make-seeds: {} files, {} bytes in {}",
        out.files,
        out.bytes,
        out.root.display()
    );
}

/// The bytes a hyper client writes for one GET (the server side answers nothing: the request
/// is all we want, so reading stops when the client has written it).
async fn capture_request(h2: bool, path: &str, gzip: bool) -> Vec<u8> {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use tokio::io::AsyncReadExt;
    let (client_io, mut server_io) = tokio::io::duplex(1 << 16);
    let mut req = hyper::Request::get(path).header("user-agent", "make-seeds/1");
    if !h2 {
        req = req.header("host", "smp.example.com");
    }
    if gzip {
        req = req.header("accept-encoding", "gzip, deflate");
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let io = hyper_util::rt::TokioIo::new(client_io);
    let send = async move {
        if h2 {
            let (mut s, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(300), s.send_request(req))
                    .await;
        } else {
            let (mut s, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("h1 handshake");
            tokio::spawn(conn);
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(300), s.send_request(req))
                    .await;
        }
    };
    let mut wire = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            server_io.read(&mut buf),
        )
        .await
        {
            if n == 0 {
                break;
            }
            wire.extend_from_slice(&buf[..n]);
        }
    };
    tokio::join!(send, read);
    wire
}
