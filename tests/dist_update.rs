//! Signed self-update end to end: releases built and signed by packaging/build-release.sh with a
//! TEST key, served by a local mock of GitHub's releases API (GitHub cannot be reached here),
//! and the real `smp-server self-update` replacing a copy of the older release's binary.
//!
//! What is swapped: the same source built twice with different `SMP_SERVER_VERSION` (0.1.0 and
//! 0.2.0), both trusting the TEST key through the build-time variable `SMP_UPDATER_KEYS`.
//! Needs zipsign, openssl and python3 (.ci/setup-dist.sh installs them).

#[allow(unused)]
mod common;
mod dist_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dist_support::*;

/// An installed old binary with its configuration, served by its own mock.
struct Installed {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    cfg: PathBuf,
    original: Vec<u8>,
    mock: Mock,
}

impl Installed {
    /// Install the old release's binary; `root` is served as the release server.
    fn new(publish_latest: impl FnOnce(&Path)) -> Installed {
        let f = fixture();
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = f.extract(OLD, &dir.path().join("bin"));
        let root = dir.path().join("mock");
        std::fs::create_dir_all(&root).expect("mkdir");
        publish_latest(&root);
        let mock = Mock::start(&root);
        let cfg = dir.path().join("etc");
        std::fs::create_dir_all(&cfg).expect("mkdir");
        std::fs::write(
            cfg.join("smp-server.ini"),
            format!(
                "[UPDATE]\nrepository = {REPO}\napi_url = {}\n",
                mock.api_url()
            ),
        )
        .expect("ini");
        let original = std::fs::read(&bin).expect("read bin");
        Installed {
            _dir: dir,
            bin,
            cfg,
            original,
            mock,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_bin(&self.bin, args)
    }

    fn run_bin(&self, bin: &Path, args: &[&str]) -> Output {
        Command::new(bin)
            .args(args)
            .env("SMP_SERVER_CFG_PATH", &self.cfg)
            .env("SMP_SERVER_LOG_PATH", self.cfg.join("log"))
            .output()
            .expect("run smp-server")
    }

    fn version(&self) -> String {
        let out = self.run(&["--version"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().next().unwrap_or_default().trim().to_string()
    }

    /// `self-update --yes` must fail, saying `why`, and leave the binary byte-identical.
    fn assert_refused(&self, why: &str) {
        let out = self.run(&["self-update", "--yes"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "update should be refused: {text}");
        assert!(text.contains(why), "expected '{why}' in: {text}");
        assert!(
            text.contains("The installed binary was not changed"),
            "{text}"
        );
        assert_eq!(
            std::fs::read(&self.bin).expect("read bin"),
            self.original,
            "the installed binary changed"
        );
        assert!(!smp_updater::previous_path(&self.bin).exists());
        assert_eq!(self.version(), format!("SMP server v{OLD}"));
    }
}

/// Copy the new release under its own tag and let `change` alter its archive.
fn publish_new_with(root: &Path, change: impl FnOnce(&Path, &str)) {
    let f = fixture();
    let tag = format!("v{NEW}");
    publish(root, &f.release_dir(NEW), &tag);
    let asset = f.asset(NEW);
    change(&root.join(&tag).join(&asset), &asset);
}

fn unsign(archive: &Path) {
    let tmp = archive.with_extension("unsigned");
    run(Command::new("zipsign")
        .args(["unsign", "tar", "-f", "-o"])
        .arg(&tmp)
        .arg(archive));
    std::fs::rename(&tmp, archive).expect("rename");
}

fn sign(archive: &Path, context: &str, key: &Path) {
    run(Command::new("zipsign")
        .args(["sign", "tar", "-f", "-c", context])
        .arg(archive)
        .arg(key));
}

#[test]
fn older_binary_updates_to_newer_and_rolls_back() {
    if !tools("dist_update", &[]) {
        return;
    }
    let f = fixture();
    let inst = Installed::new(|root| publish(root, &f.release_dir(NEW), &format!("v{NEW}")));
    assert_eq!(inst.version(), format!("SMP server v{OLD}"));

    let out = inst.run(&["self-update", "--check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("newer release is available: v{NEW}")),
        "{text}"
    );
    assert_eq!(std::fs::read(&inst.bin).expect("bin"), inst.original);

    let out = inst.run(&["self-update", "--yes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Signature of"), "{text}");
    assert_eq!(inst.version(), format!("SMP server v{NEW}"));
    let new_bytes = std::fs::read(&inst.bin).expect("bin");
    let shipped = std::fs::read(f.extract(NEW, &inst.cfg.join("check-new"))).expect("new");
    assert_eq!(new_bytes, shipped, "installed binary is the released one");
    let previous = smp_updater::previous_path(&inst.bin);
    assert_eq!(
        std::fs::read(&previous).expect("previous kept"),
        inst.original
    );
    // Downloaded from the API asset URL with the octet-stream Accept header.
    assert!(
        inst.mock
            .requests()
            .lines()
            .any(|l| l.contains("/releases/assets/") && l.ends_with("application/octet-stream")),
        "{}",
        inst.mock.requests()
    );

    // Running the newest release now: nothing to do.
    let out = inst.run(&["self-update", "--yes"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not newer"));

    let out = inst.run(&["self-update", "--rollback"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&inst.bin).expect("bin"), inst.original);
    assert_eq!(inst.version(), format!("SMP server v{OLD}"));
    assert_eq!(std::fs::read(&previous).expect("previous"), new_bytes);
}

#[test]
fn tampered_archive_is_refused() {
    if !tools("dist_update", &[]) {
        return;
    }
    let inst = Installed::new(|root| {
        publish_new_with(root, |archive, _| {
            let mut bytes = std::fs::read(archive).expect("read");
            let i = bytes.len() / 2;
            bytes[i] ^= 0x01;
            std::fs::write(archive, bytes).expect("write");
        })
    });
    inst.assert_refused("signature check");
}

#[test]
fn unsigned_archive_is_refused() {
    if !tools("dist_update", &[]) {
        return;
    }
    let inst = Installed::new(|root| publish_new_with(root, |archive, _| unsign(archive)));
    inst.assert_refused("signature check");
}

#[test]
fn archive_signed_by_another_key_is_refused() {
    if !tools("dist_update", &[]) {
        return;
    }
    let f = fixture();
    let inst = Installed::new(|root| {
        publish_new_with(root, |archive, asset| {
            unsign(archive);
            sign(archive, asset, &f.other_key);
        })
    });
    inst.assert_refused("signature check");
}

#[test]
fn signature_for_another_file_name_is_refused() {
    if !tools("dist_update", &[]) {
        return;
    }
    let f = fixture();
    let inst = Installed::new(|root| {
        publish_new_with(root, |archive, _| {
            unsign(archive);
            sign(archive, "smp-server-9.9.9-other.tar.gz", &f.key);
        })
    });
    inst.assert_refused("signature check");
}

#[test]
fn older_and_same_versions_are_refused_without_download() {
    if !tools("dist_update", &[]) {
        return;
    }
    let f = fixture();
    for tag in ["v0.0.9", &format!("v{OLD}")] {
        let inst = Installed::new(|root| {
            publish(root, &f.release_dir(OLD), tag);
            let json = root.join(tag).join("release.json");
            let text = std::fs::read_to_string(&json).expect("json");
            std::fs::write(
                &json,
                text.replace(&format!("\"v{OLD}\""), &format!("\"{tag}\"")),
            )
            .expect("write");
        });
        // Nothing to install is not an error for the command, but nothing may change.
        let out = inst.run(&["self-update", "--yes"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("is not newer than the running version"),
            "{text}"
        );
        assert_eq!(std::fs::read(&inst.bin).expect("bin"), inst.original);
        assert!(!smp_updater::previous_path(&inst.bin).exists());
        assert!(!inst.mock.requests().contains("/assets/"));
    }
}

#[test]
fn signed_binary_failing_its_smoke_test_is_refused() {
    if !tools("dist_update", &[]) {
        return;
    }
    let f = fixture();
    let inst = Installed::new(|root| {
        publish_new_with(root, |archive, asset| {
            // A correctly signed archive whose binary reports the wrong version.
            let stage = archive.with_extension("stage");
            std::fs::create_dir_all(&stage).expect("mkdir");
            let script = stage.join("smp-server");
            std::fs::write(&script, "#!/bin/sh\necho 'SMP server v0.1.5'\n").expect("script");
            run(Command::new("chmod").arg("755").arg(&script));
            run(Command::new("tar")
                .arg("-czf")
                .arg(archive)
                .arg("-C")
                .arg(&stage)
                .arg("smp-server"));
            sign(archive, asset, &f.key);
        })
    });
    inst.assert_refused("smoke test");
}

#[test]
fn build_without_keys_refuses_and_config_keys_are_used() {
    if !tools("dist_update", &[]) {
        return;
    }
    let f = fixture();
    let inst = Installed::new(|root| publish(root, &f.release_dir(NEW), &format!("v{NEW}")));
    // The test harness's own binary: built without SMP_UPDATER_KEYS, release-keys.txt lists none.
    let keyless = inst.cfg.join("keyless-smp-server");
    std::fs::copy(env!("CARGO_BIN_EXE_smp-server"), &keyless).expect("copy");
    let before = std::fs::read(&keyless).expect("read");
    let out = inst.run_bin(&keyless, &["self-update", "--yes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("no release verifying key"), "{text}");
    assert_eq!(std::fs::read(&keyless).expect("read"), before);

    // An empty key list in the configuration is no key either.
    let ini = inst.cfg.join("smp-server.ini");
    let base = std::fs::read_to_string(&ini).expect("ini");
    std::fs::write(&ini, format!("{base}verifying_keys =\n")).expect("ini");
    let out = inst.run_bin(&keyless, &["self-update", "--yes"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no release verifying key"));
    assert_eq!(std::fs::read(&keyless).expect("read"), before);

    // A key configured in [UPDATE] verifying_keys (a mirror's) is trusted.
    std::fs::write(
        &ini,
        format!("{base}verifying_keys = {}\n", b64_file(&f.key_pub)),
    )
    .expect("ini");
    let out = inst.run_bin(&keyless, &["self-update", "--yes"]);
    assert!(out.status.success(), "{out:?}");
    let v = inst.run_bin(&keyless, &["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&v.stdout)
            .lines()
            .next()
            .unwrap_or_default(),
        format!("SMP server v{NEW}")
    );
}

#[test]
fn release_output_verifies_with_zipsign_and_openssl() {
    if !tools("dist_update", &[]) {
        return;
    }
    let f = fixture();
    let rel = f.release_dir(NEW);
    let asset = rel.join(f.asset(NEW));
    let ok = Command::new("zipsign")
        .args(["verify", "tar"])
        .arg(&asset)
        .arg(&f.key_pub)
        .output()
        .expect("zipsign");
    assert!(ok.status.success(), "{ok:?}");
    let bad = Command::new("zipsign")
        .args(["verify", "tar"])
        .arg(&asset)
        .arg(&f.other_pub)
        .output()
        .expect("zipsign");
    assert!(!bad.status.success(), "verified with the wrong key");

    // SHA256SUMS matches and its signature verifies with openssl, as install.sh checks it.
    let sums = std::fs::read_to_string(rel.join("SHA256SUMS")).expect("sums");
    assert!(sums.contains(&f.asset(NEW)));
    run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&rel));
    let tmp = tempfile::tempdir().expect("tempdir");
    let pem = tmp.path().join("test-pub.der");
    let der: Vec<u8> = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ]
    .into_iter()
    .chain(std::fs::read(&f.key_pub).expect("pub"))
    .collect();
    std::fs::write(&pem, der).expect("der");
    run(Command::new("openssl")
        .args([
            "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-rawin", "-inkey",
        ])
        .arg(&pem)
        .arg("-in")
        .arg(rel.join("SHA256SUMS"))
        .arg("-sigfile")
        .arg(rel.join("SHA256SUMS.sig")));

    // release.json looks like GitHub's: tag, assets with API and browser URLs.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rel.join("release.json")).expect("json"))
            .expect("parse");
    assert_eq!(json["tag_name"], format!("v{NEW}"));
    let a = json["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .find(|a| a["name"] == f.asset(NEW).as_str())
        .expect("archive asset");
    assert!(a["url"]
        .as_str()
        .expect("url")
        .contains("/releases/assets/"));
    assert!(a["browser_download_url"]
        .as_str()
        .expect("browser url")
        .ends_with(&f.asset(NEW)));
}

/// A signed release `version` whose binary passes the `--version` smoke test but exits with an
/// error on `start`: what a broken release looks like to the updater.
fn publish_crashing(root: &Path, version: &str) {
    let f = fixture();
    let tag = format!("v{version}");
    let dir = root.join(&tag);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let asset = f.asset(version);
    let stage = dir.join("stage");
    std::fs::create_dir_all(&stage).expect("mkdir");
    let script = stage.join("smp-server");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'SMP server v{version}'; exit 0; fi\necho 'crashed at start' >&2\nexit 3\n"
        ),
    )
    .expect("script");
    run(Command::new("chmod").arg("755").arg(&script));
    let archive = dir.join(&asset);
    run(Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&stage)
        .arg("smp-server"));
    sign(&archive, &asset, &f.key);
    // The release JSON of NEW, renamed; asset ids moved so the mock cannot mix them up.
    let text = std::fs::read_to_string(f.release_dir(NEW).join("release.json")).expect("json");
    let mut rel: serde_json::Value = serde_json::from_str(&text).expect("json");
    rel["tag_name"] = format!("v{version}").into();
    rel["name"] = format!("v{version}").into();
    let assets = rel["assets"].as_array_mut().expect("assets");
    assets.retain(|a| a["name"] == f.asset(NEW));
    for a in assets.iter_mut() {
        let old_id = a["id"].as_u64().expect("id");
        let new_id = old_id + 1;
        a["id"] = new_id.into();
        a["name"] = asset.clone().into();
        let url = a["url"]
            .as_str()
            .expect("url")
            .replace(&old_id.to_string(), &new_id.to_string());
        a["url"] = url.into();
        let dl = a["browser_download_url"]
            .as_str()
            .expect("dl")
            .replace(NEW, version);
        a["browser_download_url"] = dl.into();
    }
    std::fs::write(dir.join("release.json"), rel.to_string()).expect("json");
}

/// The unit's start guard, as install.sh installs it (ExecStartPre).
fn guard(dir: &Path) -> PathBuf {
    let text = run(Command::new("sh")
        .arg(repo_root().join("packaging/install.sh"))
        .arg("--print-update-guard"));
    // Copied into place by `install` so that no write descriptor of the executed file is ever
    // open in this process (a child forked meanwhile by another test would make exec ETXTBSY).
    let draft = dir.join("smp-update-guard.draft");
    std::fs::write(&draft, text).expect("guard");
    let p = dir.join("smp-update-guard");
    run(Command::new("install")
        .arg("-m")
        .arg("755")
        .arg(&draft)
        .arg(&p));
    p
}

impl Installed {
    /// What systemd does at each start of the unit: the guard, then `smp-server start`.
    fn systemd_start(&self, guard: &Path) -> std::process::Child {
        run(Command::new(guard).arg(&self.bin));
        Command::new(&self.bin)
            .arg("start")
            .env("SMP_SERVER_CFG_PATH", &self.cfg)
            .env("SMP_SERVER_LOG_PATH", self.cfg.join("log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start")
    }
}

async fn answers(port: u16, cfg: &Path) {
    let fp = std::fs::read_to_string(cfg.join("fingerprint")).expect("fingerprint");
    let fp = smp_server::crypto::identity::Fingerprint::from_base64url(fp.trim()).expect("fp");
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let c = common::connect_when_up(addr, fp.0, std::time::Duration::from_secs(60)).await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_version_installs_and_a_release_that_cannot_start_is_rolled_back() {
    if !tools("dist_update", &[]) {
        return;
    }
    let f = fixture();
    let inst = Installed::new(|root| {
        publish(root, &f.release_dir(NEW), &format!("v{NEW}"));
        publish_crashing(root, "0.3.0");
        std::fs::write(root.join("latest"), "v0.3.0").expect("latest");
    });
    // A real server configuration on a free port, with the [UPDATE] of the fixture.
    let update_ini = std::fs::read_to_string(inst.cfg.join("smp-server.ini")).expect("ini");
    std::fs::remove_file(inst.cfg.join("smp-server.ini")).expect("rm");
    let out = inst.run(&["init", "-y", "--ip", "127.0.0.1", "--no-password"]);
    assert!(out.status.success(), "{out:?}");
    let port = common::free_port();
    let ini = std::fs::read_to_string(inst.cfg.join("smp-server.ini")).expect("ini");
    let ini: String = ini
        .lines()
        .map(|l| {
            if l.starts_with("port") {
                format!("port = {port}\n")
            } else if l.starts_with("https") || l.starts_with("control_port") {
                format!("# {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(inst.cfg.join("smp-server.ini"), ini + &update_ini).expect("ini");
    let guard = guard(inst.cfg.as_path());
    let marker = smp_updater::pending_path(&inst.bin);

    // Pinned: v0.2.0, although v0.3.0 is the latest.
    let out = inst.run(&["self-update", "--yes", "--version", &format!("v{NEW}")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(inst.version(), format!("SMP server v{NEW}"));
    assert!(marker.exists(), "an update is unconfirmed until it serves");
    // It starts, answers its own handshake and confirms.
    let mut server = common::Running(inst.systemd_start(&guard));
    answers(port, &inst.cfg).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new binary never confirmed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(server.0.id().to_string())
        .status();
    let _ = server.0.wait();
    drop(server);

    // Pinned to the broken v0.3.0: installed (its --version is right), then it cannot start.
    let out = inst.run(&["self-update", "--yes", "--version", "v0.3.0"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(inst.version(), "SMP server v0.3.0");
    let mut crashing = inst.systemd_start(&guard);
    let status = crashing.wait().expect("wait");
    assert!(!status.success(), "the broken release exits at start");
    // systemd's Restart=on-failure: the guard rolls back, the previous binary serves again.
    let server = common::Running(inst.systemd_start(&guard));
    assert_eq!(inst.version(), format!("SMP server v{NEW}"));
    assert!(!marker.exists());
    let mut failed = inst.bin.clone().into_os_string();
    failed.push(".failed");
    assert!(
        Path::new(&failed).exists(),
        "the failed binary is kept for a look"
    );
    answers(port, &inst.cfg).await;
    drop(server);
}
