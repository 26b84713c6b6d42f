//! The reference's command lines and files start the real binary: `smp-server start +RTS -N
//! -RTS` (its systemd unit and Docker entrypoint), a stats file written by 7.0 (with
//! `rslvStats:`), `[NAMES]` and `[TRANSPORT] max_smp_version` read from the INI, and
//! `[TRANSPORT] websockets` refused with a clear message rather than ignored.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use smp_server::client::{ClientOptions, SmpClient};
use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::Command as SmpCommand;
use smp_server::protocol::names::SimplexDomain;
use smp_server::protocol::response::BrokerMsg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smp-server"))
}

struct Dirs {
    dir: tempfile::TempDir,
}

impl Dirs {
    fn cfg(&self) -> PathBuf {
        self.dir.path().join("etc")
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("var")
    }
    fn cmd(&self) -> Command {
        let mut c = bin();
        c.env("SMP_SERVER_CFG_PATH", self.cfg())
            .env("SMP_SERVER_LOG_PATH", self.log())
            .env_remove("RUST_LOG");
        c
    }
}

/// `init` a server on loopback; returns the dirs, the SMP port and the identity.
fn init() -> (Dirs, u16, [u8; 32]) {
    let d = Dirs {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let out = d
        .cmd()
        .args([
            "init",
            "-y",
            "-l",
            "--ip",
            "127.0.0.1",
            "--no-password",
            "--disable-web",
        ])
        .output()
        .expect("init");
    assert!(out.status.success(), "init: {out:?}");
    let ini_path = d.cfg().join("smp-server.ini");
    let ini = std::fs::read_to_string(&ini_path).expect("ini");
    assert!(ini.contains("[NAMES]\n"), "init writes the [NAMES] section");
    let port = free_port();
    let ini: String = ini
        .lines()
        .map(|l| {
            if l.starts_with("port") {
                format!("port = {port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&ini_path, ini).expect("write");
    let fp = std::fs::read_to_string(d.cfg().join("fingerprint")).expect("fp");
    let fp = Fingerprint::from_base64url(fp.trim()).expect("fp").0;
    (d, port, fp)
}

fn edit_ini(d: &Dirs, f: impl FnOnce(String) -> String) {
    let p = d.cfg().join("smp-server.ini");
    let s = std::fs::read_to_string(&p).expect("ini");
    std::fs::write(&p, f(s)).expect("write");
}

/// A resolver that answers every name with the same record.
async fn resolver() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = vec![0u8; 4096];
                let _ = s.read(&mut b).await;
                let body = br#"{"name":"alice.simplex","nickname":"","website":"","location":"","simplexContact":[],"simplexChannel":[],"eth":null,"btc":null,"xmr":null,"dot":null,"owner":"0x1","resolver":"0x2"}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
            });
        }
    });
    url
}

/// A stats file as 7.0 writes it (`strEncode ServerStatsData`), ending with `rslvStats:`.
fn stats_7_0() -> String {
    let mut s = String::from("fromTime=2026-12-01T00:00:00Z\nqCreated=3\nqSecured=2\nqDeletedAll=1\nqDeletedNew=1\nqDeletedSecured=0\nqDeletedAllB=0\nqBlocked=0\nqCount=2\nqSub=4\nqSubAllB=0\nqSubAuth=0\nqSubDuplicate=0\nqSubProhibited=0\nqSubEnd=0\nqSubEndB=0\nntfCreated=0\nntfNewCreated=0\nntfDeleted=0\nntfDeletedB=0\nntfSub=0\nntfSubB=0\nntfSubAuth=0\nntfSubDuplicate=0\nmsgSent=7\nmsgSentAuth=0\nmsgSentQuota=0\nmsgSentLarge=0\nmsgSentBlock=0\nmsgRecv=6\nmsgRecvGet=0\nmsgGet=0\nmsgGetNoMsg=0\nmsgGetAuth=0\nmsgGetDuplicate=0\nmsgGetProhibited=0\nmsgExpired=0\nmsgSentNtf=0\nmsgRecvNtf=0\nmsgNtfs=0\nmsgNtfsB=0\nmsgNtfNoSub=0\nmsgNtfLost=0\nmsgNtfExpired=0\nactiveQueues:\ndayHashes=1,2\nweekHashes=1,2\nmonthHashes=1,2\nactiveQueuesNtf:\ndayHashes=\nweekHashes=\nmonthHashes=\n");
    for p in ["pRelays", "pRelaysOwn", "pMsgFwds", "pMsgFwdsOwn"] {
        s.push_str(&format!(
            "{p}:\nrequests=0\nsuccesses=0\nerrorsConnect=0\nerrorsCompat=0\nerrorsOther=0\n"
        ));
    }
    s.push_str("pMsgFwdsRecv=0\n");
    for p in ["rcvServices", "ntfServices"] {
        s.push_str(&format!("{p}:\nassocNew=0\nassocDuplicate=0\nassocUpdatedt=0\nassocRemoved=0\nsubCount=0\nsubDuplicate=0\nsubQueues=0\nsubEnd=0\n"));
    }
    s.push_str("rslvStats:\nreqs=5\nsucc=3\nnotFound=1\nresolverErrs=1\ndisabled=0\n");
    s
}

#[tokio::test]
async fn start_with_rts_options_7_0_stats_and_names() {
    let (d, port, fp) = init();
    let url = resolver().await;
    edit_ini(&d, |ini| {
        let ini = ini.replace("log_stats = off", "log_stats = on");
        let ini = ini.replace("[PROXY]\n", "max_smp_version = 19\n\n[PROXY]\n");
        let ini = ini.replace(
            "[NAMES]\n",
            &format!("[NAMES]\nenable: on\nresolver_endpoint: {url}\n"),
        );
        // the generated `enable: off` line would now come second and be ignored; drop it
        ini.replacen("enable: off\n", "", 1)
    });
    std::fs::create_dir_all(d.log()).expect("log dir");
    std::fs::write(d.log().join("smp-server-stats.log"), stats_7_0()).expect("stats");
    let out = d.dir.path().join("stdout.txt");
    let child = d
        .cmd()
        .args(["start", "+RTS", "-N", "-RTS"])
        .stdout(Stdio::from(std::fs::File::create(&out).expect("out")))
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let mut run = Running(child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let c = connect_when_up(addr, fp, Duration::from_secs(30)).await;
    // the INI cap: the newest client is held at 19
    assert_eq!(c.version(), 19);
    // [NAMES] from the INI, resolver on loopback
    let d2 = SimplexDomain::parse(b"alice.simplex").expect("name");
    let (_, m) = c
        .request(b"", SmpCommand::Rslv(d2), None)
        .await
        .expect("RSLV");
    assert!(
        matches!(m, BrokerMsg::Rname(ref r) if r.name == "alice.simplex"),
        "{m:?}"
    );
    drop(c);
    let text = std::fs::read_to_string(&out).expect("stdout");
    assert!(
        text.lines()
            .any(|l| l.starts_with("Note: ignoring GHC runtime options")
                && l.ends_with("+RTS -N -RTS")),
        "{text}"
    );
    // the 7.0 file was read (and moved aside, as the reference does)
    assert!(d.log().join("smp-server-stats.log.bak").exists());
    // stop: the saved counters continue the restored ones
    let pid = run.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let st = tokio::task::spawn_blocking(move || run.0.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(st.success());
    let saved = std::fs::read_to_string(d.log().join("smp-server-stats.log")).expect("saved");
    assert!(saved.contains("\nmsgSent=7\n"), "{saved}");
    assert!(
        saved.ends_with("rslvStats:\nreqs=6\nsucc=4\nnotFound=1\nresolverErrs=1\ndisabled=0\n"),
        "{saved}"
    );
}

#[tokio::test]
async fn trailing_rts_without_end_marker() {
    let (d, port, fp) = init();
    let child = d
        .cmd()
        .args(["start", "+RTS", "-N", "-A16m"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let _run = Running(child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let c = connect_when_up(addr, fp, Duration::from_secs(30)).await;
    assert_eq!(c.version(), 20);
    let c2 = SmpClient::connect(addr, fp, ClientOptions::default())
        .await
        .expect("again");
    let (_, m) = c2.request(b"", SmpCommand::Ping, None).await.expect("PING");
    assert_eq!(m, BrokerMsg::Pong);
}

#[test]
fn websockets_are_refused_not_ignored() {
    let (d, _, _) = init();
    edit_ini(&d, |ini| {
        ini.replace("websockets = off", "websockets = 8080")
    });
    let out = d.cmd().arg("start").output().expect("start");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[TRANSPORT] websockets = 8080 is not supported"),
        "{text}"
    );
}
