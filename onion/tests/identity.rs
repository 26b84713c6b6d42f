//! The onion identity is created on first launch, kept under the state directory with private
//! permissions, and the same after a restart. Runs without any Tor network: the only
//! directory cache configured is a closed loopback port, so nothing leaves the machine.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use smp_onion::{ServiceSettings, Tor, TorSettings};

/// A network of one unreachable cache on loopback (no traffic leaves the machine).
fn offline_arti_toml(dir: &Path) -> std::path::PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let f = dir.join("arti.toml");
    std::fs::write(
        &f,
        format!(
            "[tor_network]\nfallback_caches = [ {{ rsa_identity = \"{rsa}\", ed_identity = \"{ed}\", orports = [\"127.0.0.1:{port}\"] }} ]\n\
             [tor_network.authorities]\nv3idents = [\"{rsa}\"]\nuploads = [[\"127.0.0.1:{port}\"]]\ndownloads = [[\"127.0.0.1:{port}\"]]\nvotes = [[\"127.0.0.1:{port}\"]]\n\
             [storage.permissions]\ndangerously_trust_everyone = true\n",
            rsa = "0123456789ABCDEF0123456789ABCDEF01234567",
            ed = "EyTbDTnS+hLCez6NRHCG+2sFUsbkIDC3rkW1uot4R1s",
        ),
    )
    .expect("write arti.toml");
    f
}

/// One "process lifetime": a fresh runtime, Tor, the service; then the runtime is dropped,
/// ending every Arti task as a process exit would (which releases Arti's state locks).
fn launch_and_read_address(settings: &TorSettings, nickname: &str) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let address = rt.block_on(async {
        let tor = Tor::start(settings.clone()).await.expect("start Tor");
        let mut s = ServiceSettings::new(vec![5223]);
        s.nickname = nickname.into();
        let (svc, _rx) = tor.launch_service(&s).expect("launch");
        let a = svc.address().to_string();
        svc.shutdown();
        tor.shutdown();
        a
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    address
}

fn assert_private(dir: &Path) {
    let meta = std::fs::symlink_metadata(dir).expect("meta");
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_dir() {
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        for e in std::fs::read_dir(dir).expect("read_dir") {
            assert_private(&e.expect("entry").path());
        }
    } else if meta.is_file() {
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", dir.display());
    }
}

#[test]
fn onion_address_survives_restart_and_keys_are_private() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut settings = TorSettings::new(t.path().join("tor"));
    settings.arti_config = Some(offline_arti_toml(t.path()));

    let first = launch_and_read_address(&settings, "smp-server");
    assert!(first.ends_with(".onion") && first.len() == 62, "{first}");
    assert_private(&settings.state_dir);
    let keys: Vec<_> = walk(&settings.arti_state_dir());
    assert!(
        keys.iter().any(|p| p.contains("smp-server")),
        "the service's keys are under the state dir: {keys:?}"
    );

    let again = launch_and_read_address(&settings, "smp-server");
    assert_eq!(first, again, "same onion address after a restart");

    // Another nickname is another identity; a fresh state dir is a fresh identity.
    let other = launch_and_read_address(&settings, "other");
    assert_ne!(first, other);
    let mut fresh = settings.clone();
    fresh.state_dir = t.path().join("tor2");
    assert_ne!(first, launch_and_read_address(&fresh, "smp-server"));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.display().to_string());
            if p.is_dir() {
                out.extend(walk(&p));
            }
        }
    }
    out
}
