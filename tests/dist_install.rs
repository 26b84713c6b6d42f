//! packaging/install.sh end to end into a throwaway root: it downloads the release built and
//! signed by packaging/build-release.sh from the local mock of GitHub's releases API (GitHub
//! cannot be reached here), checks the signature with the key embedded in the script, installs
//! binary, unit and configuration; the unit passes `systemd-analyze verify`; the installed server
//! starts and answers an SMP handshake. Needs zipsign, openssl, python3 and systemd-analyze
//! (.ci/setup-dist.sh).

mod common;
mod dist_support;

use common::{connect_when_up, free_port, Running};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use dist_support::*;
use smp_server::crypto::identity::Fingerprint;

/// install.sh with `keys` embedded, as a release would publish it.
fn installer(dir: &Path, keys: &[&Path]) -> PathBuf {
    let text =
        std::fs::read_to_string(repo_root().join("packaging/install.sh")).expect("install.sh");
    let list: String = keys.iter().map(|k| format!("{}\n", b64_file(k))).collect();
    let stamped = text.replacen(
        "RELEASE_KEYS=\"\n\"",
        &format!("RELEASE_KEYS=\"\n{list}\""),
        1,
    );
    assert_ne!(stamped, text, "install.sh has no RELEASE_KEYS block");
    let path = dir.join(format!("install-{}.sh", keys.len()));
    std::fs::write(&path, stamped).expect("write installer");
    path
}

fn sh(script: &Path, args: &[&str]) -> Output {
    Command::new("sh")
        .arg(script)
        .args(args)
        .env_remove("SMP_INSTALL_ROOT")
        .output()
        .expect("run install.sh")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn install_sh_installs_a_server_that_answers() {
    if !tools("dist_install", &["systemd-analyze"]) {
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let mock_root = dir.path().join("mock");
    publish(&mock_root, &f.release_dir(NEW), &format!("v{NEW}"));
    let mock = Mock::start(&mock_root);
    let root = dir.path().join("root");
    let port = free_port().to_string();
    let script = installer(dir.path(), &[&f.key_pub]);
    let root_s = root.to_str().expect("utf-8 path");
    let api = mock.api_url();
    let args = [
        "--root",
        root_s,
        "--repo",
        REPO,
        "--api-url",
        &api,
        "--ip",
        "192.0.2.7",
        "--port",
        &port,
        "--password",
        "test",
    ];
    let out = sh(&script, &args);
    assert!(out.status.success(), "install.sh failed: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);

    let bin = root.join("opt/simplex/bin/smp-server");
    let cfg = root.join("etc/opt/simplex");
    let unit = root.join("etc/systemd/system/smp-server.service");
    assert_eq!(
        std::fs::read(&bin).expect("installed binary"),
        std::fs::read(f.extract(NEW, &dir.path().join("expected"))).expect("released binary")
    );
    assert_eq!(
        std::fs::read_link(root.join("usr/local/bin/smp-server")).expect("symlink"),
        Path::new("/opt/simplex/bin/smp-server")
    );
    let unit_text = std::fs::read_to_string(&unit).expect("unit");
    for line in [
        "KillSignal=SIGINT",
        "LimitNOFILE=",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        &format!(
            "RestartForceExitStatus={}",
            smp_updater::RESTART_EXIT_STATUS
        ),
    ] {
        assert!(unit_text.contains(line), "unit lacks {line}:\n{unit_text}");
    }
    // Checked with its paths moved under the throwaway root, where the files are.
    let moved = dir.path().join("smp-server.service");
    let mut rooted = unit_text.clone();
    for p in ["/opt/simplex/bin", "/etc/opt/simplex", "/var/opt/simplex"] {
        rooted = rooted.replace(&format!("={p}"), &format!("={root_s}{p}"));
        rooted = rooted.replace(&format!(" {p}"), &format!(" {root_s}{p}"));
    }
    assert!(rooted.contains(&format!(
        "ExecStart={root_s}/opt/simplex/bin/smp-server start"
    )));
    std::fs::write(&moved, rooted).expect("unit copy");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&moved)
        .output()
        .expect("systemd-analyze");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        text(&verify)
    );
    let ini = std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini");
    assert!(ini.contains(&format!(
        "[UPDATE]\nmode = check\nrepository = {REPO}\napi_url = {api}"
    )));

    let fp_text = std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint");
    let fp = Fingerprint::from_base64url(fp_text.trim()).expect("fingerprint");
    let address = format!(
        "Server address: smp://{}:test@192.0.2.7:{port}",
        fp_text.trim()
    );
    assert!(stdout.contains(&address), "{stdout}");

    // The installed server starts and answers the SMP handshake.
    let child = Command::new(&bin)
        .arg("start")
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", root.join("var/opt/simplex"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start installed server");
    let server = Running(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let client = connect_when_up(addr, fp.0, Duration::from_secs(30)).await;
    assert_eq!(client.version(), 20);
    drop(client);
    drop(server);

    // Idempotent: a second run keeps the identity and configuration.
    let out = sh(&script, &args);
    assert!(out.status.success(), "second run: {}", text(&out));
    assert!(text(&out).contains("keeping the existing configuration"));
    assert_eq!(
        std::fs::read_to_string(cfg.join("fingerprint")).expect("fp"),
        fp_text
    );
    assert_eq!(
        std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini"),
        ini
    );

    // Uninstall keeps the identity; --purge removes it.
    let out = sh(&script, &["--uninstall", "--root", root_s]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!bin.exists() && !unit.exists());
    assert!(cfg.join("ca.key").exists(), "identity kept");
    let out = sh(&script, &["--uninstall", "--purge", "--root", root_s]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!cfg.exists());
}

#[test]
fn install_sh_refuses_a_release_signed_by_another_key() {
    if !tools("dist_install", &[]) {
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let mock_root = dir.path().join("mock");
    publish(&mock_root, &f.release_dir(NEW), &format!("v{NEW}"));
    let mock = Mock::start(&mock_root);
    let root = dir.path().join("root");
    // The installer trusts only the other key.
    let script = installer(dir.path(), &[&f.other_pub]);
    let api = mock.api_url();
    let out = sh(
        &script,
        &[
            "--root",
            root.to_str().expect("path"),
            "--repo",
            REPO,
            "--api-url",
            &api,
            "--ip",
            "127.0.0.1",
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("does not verify"), "{}", text(&out));
    assert!(!root.join("opt/simplex/bin/smp-server").exists());
    assert!(!root.join("etc/opt/simplex/smp-server.ini").exists());

    // A rotation: the installer lists both keys and accepts the release.
    let script = installer(dir.path(), &[&f.other_pub, &f.key_pub]);
    let out = sh(
        &script,
        &[
            "--root",
            root.to_str().expect("path"),
            "--repo",
            REPO,
            "--api-url",
            &api,
            "--ip",
            "127.0.0.1",
            "--no-password",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(root.join("opt/simplex/bin/smp-server").exists());
}

#[test]
fn install_sh_refuses_an_archive_that_does_not_match_the_signed_sums() {
    if !tools("dist_install", &[]) {
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let mock_root = dir.path().join("mock");
    let tag = format!("v{NEW}");
    publish(&mock_root, &f.release_dir(NEW), &tag);
    let archive = mock_root.join(&tag).join(f.asset(NEW));
    let mut bytes = std::fs::read(&archive).expect("archive");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&archive, bytes).expect("write");
    let mock = Mock::start(&mock_root);
    let root = dir.path().join("root");
    let script = installer(dir.path(), &[&f.key_pub]);
    let api = mock.api_url();
    let out = sh(
        &script,
        &[
            "--root",
            root.to_str().expect("path"),
            "--repo",
            REPO,
            "--api-url",
            &api,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not match SHA256SUMS"),
        "{}",
        text(&out)
    );
    assert!(!root.join("opt/simplex/bin/smp-server").exists());
}

#[tokio::test]
async fn install_sh_tor_turns_on_the_onion_service_and_prints_its_address() {
    if !tools("dist_install", &[]) {
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let mock_root = dir.path().join("mock");
    publish(&mock_root, &f.release_dir(NEW), &format!("v{NEW}"));
    let mock = Mock::start(&mock_root);
    let root = dir.path().join("root");
    let root_s = root.to_str().expect("utf-8 path");
    let port = free_port().to_string();
    let script = installer(dir.path(), &[&f.key_pub]);
    let api = mock.api_url();
    let args = [
        "--root",
        root_s,
        "--repo",
        REPO,
        "--api-url",
        &api,
        "--ip",
        "192.0.2.7",
        "--port",
        &port,
        "--no-password",
        "--tor",
    ];
    let out = sh(&script, &args);
    assert!(
        out.status.success(),
        "install.sh --tor failed: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("onion-address once the server has started"),
        "{}",
        text(&out)
    );
    let cfg = root.join("etc/opt/simplex");
    let log = root.join("var/opt/simplex");
    let ini = std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini");
    let tor = ini.split("[TOR]").nth(1).expect("[TOR] section");
    assert!(
        tor.lines().any(|l| l.trim() == "enable = on"),
        "[TOR] enable = on:\n{tor}"
    );

    // The installed server launches its onion service (the key is made locally; this machine
    // cannot reach the Tor network, which the onion address does not need) and writes it.
    let bin = root.join("opt/simplex/bin/smp-server");
    let child = Command::new(&bin)
        .arg("start")
        .env("SMP_SERVER_CFG_PATH", &cfg)
        .env("SMP_SERVER_LOG_PATH", &log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start installed server");
    let server = Running(child);
    let onion = common::wait_for_file(&log.join("onion-address"), Duration::from_secs(60)).await;
    drop(server);
    assert!(onion.ends_with(".onion") && onion.len() == 62, "{onion}");

    // A re-run prints the full address with the onion host after the public one.
    let out = sh(&script, &args);
    assert!(out.status.success(), "second run: {}", text(&out));
    let fp = std::fs::read_to_string(cfg.join("fingerprint")).expect("fp");
    let address = format!(
        "Server address: smp://{}@192.0.2.7,{onion}:{port}",
        fp.trim()
    );
    assert!(text(&out).contains(&address), "{}", text(&out));
}
