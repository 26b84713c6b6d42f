//! The container image, built from `packaging/Dockerfile` and run with a real engine: Debian's
//! podman (rootful, runc, cgroupfs; `.ci/setup-container.sh`). The image is built on a local
//! Debian base made by mmdebstrap (Docker Hub cannot be reached here) with this build's binary
//! (`SMP_BINARY_IMAGE`, so the image's Rust stage is not rebuilt). The container is started as
//! the guide runs it: root-owned bind mounts for the two volumes, `ADDR`, `PASS`, `WEB_MANUAL`;
//! then an SMP handshake from the host, a queue and a message, a stop with the image's stop
//! signal (clean exit, dated backups), and a restart that keeps the address and the message.

mod common;

use common::{connect_when_up, decrypt_msg, event, free_port, require, send_cmd, Recipient};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use smp_server::crypto::identity::Fingerprint;
use smp_server::protocol::command::{Command as SmpCommand, QueueReqData, SubscriptionMode};
use smp_server::protocol::response::BrokerMsg;

const SUITE: &str = "dist_container_image";
/// The base `.ci/setup-container.sh` imports.
const BASE: &str = "localhost/smp-debian:bookworm-slim";

/// podman with the settings this machine needs (see `.ci/setup-container.sh`).
fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    c
}

fn run(c: &mut Command) -> Output {
    let out = c.output().expect("run podman");
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the container and the images this test made, whatever happens.
struct Cleanup {
    container: String,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.container]).output();
        for i in &self.images {
            let _ = podman().args(["rmi", "-f", i]).output();
        }
    }
}

/// An image holding only this build's binary at `/smp-server`.
fn binary_image(dir: &Path, tag: &str) {
    let ctx = dir.join("binary");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::copy(env!("CARGO_BIN_EXE_smp-server"), ctx.join("smp-server")).expect("copy");
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY smp-server /smp-server\n",
    )
    .expect("Containerfile");
    run(podman().args(["build", "--quiet", "-t", tag]).arg(&ctx));
}

/// Wait until the container has written its fingerprint (the first start runs `init`).
fn fingerprint(cfg: &Path, name: &str) -> Fingerprint {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(t) = std::fs::read_to_string(cfg.join("fingerprint")) {
            if !t.trim().is_empty() {
                return Fingerprint::from_base64url(t.trim()).expect("fingerprint");
            }
        }
        if Instant::now() > deadline {
            let logs = podman().args(["logs", name]).output().expect("logs");
            panic!(
                "no fingerprint after 60 s; container log:\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `podman stop` sends the image's STOPSIGNAL (SIGINT): the server must exit 0 on its own.
fn stop(name: &str) {
    run(podman().args(["stop", "--time", "60", name]));
    let code = text(&run(podman().args([
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        name,
    ])));
    assert_eq!(code, "0", "the server exits cleanly on the stop signal");
}

#[tokio::test]
async fn image_builds_runs_with_the_guides_volumes_and_keeps_its_address_and_messages() {
    if !require::tools(SUITE, &["podman", "runc"]) || !require::root(SUITE) {
        return;
    }
    let base = podman().args(["image", "exists", BASE]).status();
    if !base.is_ok_and(|s| s.success()) {
        require::skip(
            SUITE,
            &format!("no base image {BASE}; run scripts/test.sh --install (or .ci/setup-container.sh) as root"),
        );
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let id = std::process::id();
    let bin_tag = format!("localhost/smp-test-binary:{id}");
    let tag = format!("localhost/smp-test-server:{id}");
    let name = format!("smp-test-{id}");
    let _cleanup = Cleanup {
        container: name.clone(),
        images: vec![tag.clone(), bin_tag.clone()],
    };

    binary_image(dir.path(), &bin_tag);
    run(podman()
        .args(["build", "--quiet", "--network", "host"])
        .args(["--build-arg", &format!("SMP_BINARY_IMAGE={bin_tag}")])
        .args(["--build-arg", &format!("SMP_RUNTIME_IMAGE={BASE}")])
        .arg("-f")
        .arg(repo.join("packaging/Dockerfile"))
        .args(["-t", &tag])
        .arg(&repo));
    // The image's user, volumes and stop signal are the Dockerfile's.
    let cfg_json = text(&run(podman().args([
        "image",
        "inspect",
        "--format",
        "{{.Config.StopSignal}} {{json .Config.Volumes}}",
        &tag,
    ])));
    assert!(cfg_json.starts_with("SIGINT "), "{cfg_json}");
    assert!(cfg_json.contains("/etc/opt/simplex") && cfg_json.contains("/var/opt/simplex"));

    // The guide's bind mounts: directories made by root, as `docker run -v` makes them.
    let cfg = dir.path().join("config");
    let logs = dir.path().join("logs");
    for d in [&cfg, &logs] {
        std::fs::create_dir_all(d).expect("mkdir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let port = free_port();
    run(podman()
        .args(["run", "--detach", "--name", &name])
        // runc may lower limits but not raise them without CAP_SYS_RESOURCE.
        .args([
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args(["--publish", &format!("127.0.0.1:{port}:5223")])
        .args(["--env", "ADDR=127.0.0.1", "--env", "PASS=secret"])
        .args(["--env", "WEB_MANUAL=1"])
        .arg("--volume")
        .arg(format!("{}:/etc/opt/simplex", cfg.display()))
        .arg("--volume")
        .arg(format!("{}:/var/opt/simplex", logs.display()))
        .arg(&tag));

    let fp = fingerprint(&cfg, &name);
    let ini = std::fs::read_to_string(cfg.join("smp-server.ini")).expect("ini");
    assert!(ini.contains("create_password = secret"), "{ini}");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let c = connect_when_up(addr, fp.0, Duration::from_secs(60)).await;
    // A queue (with the password) and a message, sent from the host into the container.
    let key = common::key_for(c.version());
    let dh = smp_server::crypto::keys::DhKeyPair::generate().expect("dh");
    let mut req = common::new_req(
        &key,
        &dh,
        SubscriptionMode::Subscribe,
        Some(QueueReqData::Messaging(None)),
    );
    if let SmpCommand::New(n) = &mut req {
        n.auth = Some(b"secret".to_vec());
    }
    let (_, r) = c.request(b"", req, Some(&key)).await.expect("NEW");
    let BrokerMsg::Ids(ids) = r else {
        panic!("expected IDS, got {r:?}")
    };
    let q = Recipient { key, dh, ids };
    let (_, r) = c
        .request(q.sid(), send_cmd(b"through the container"), None)
        .await
        .expect("SEND");
    assert_eq!(r, BrokerMsg::Ok);
    let m = event(&c).await.1;
    assert_eq!(
        decrypt_msg(&q, &m).body.as_deref(),
        Some(&b"through the container"[..])
    );
    drop(c);

    // Stop: clean exit, state written by the server's user into the root-made mounts.
    stop(&name);
    assert!(logs.join("smp-server-store.log").is_file());
    let backups = std::fs::read_dir(logs.join("backups"))
        .expect("backups/ written at stop")
        .count();
    assert!(backups > 0, "dated backups at stop");

    // Restart the same container: same identity, the queue and its unacknowledged message.
    run(podman().args(["start", &name]));
    assert_eq!(
        Fingerprint::from_base64url(
            std::fs::read_to_string(cfg.join("fingerprint"))
                .expect("fingerprint")
                .trim()
        )
        .expect("fingerprint")
        .0,
        fp.0,
        "the server address is kept"
    );
    let c = connect_when_up(addr, fp.0, Duration::from_secs(60)).await;
    let (_, r) = c
        .request(q.rid(), SmpCommand::Sub, Some(&q.key))
        .await
        .expect("SUB");
    let m = match r {
        BrokerMsg::Sok(_) => event(&c).await.1,
        m => m,
    };
    assert_eq!(
        decrypt_msg(&q, &m).body.as_deref(),
        Some(&b"through the container"[..]),
        "the message survived the restart"
    );
    drop(c);
    stop(&name);
}
