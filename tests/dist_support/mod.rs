//! Shared by the distribution tests: test keys, releases built and signed by
//! `packaging/build-release.sh`, and a local mock of GitHub's releases API.
//!
//! The mock (tests/py/release_mock.py) stands in for GitHub only because GitHub cannot be
//! reached here; everything it serves was produced by the project's own release script.
//! The two releases are the same source built twice with a different `SMP_SERVER_VERSION`
//! (0.1.0 and 0.2.0), both with the TEST key compiled in through `SMP_UPDATER_KEYS` (a build-time
//! variable: a production binary cannot be made to trust it afterwards).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Everything built once per test process.
pub struct Fixture {
    /// Where keys and releases are kept (shared by the test binaries; treat as read-only).
    pub dir: PathBuf,
    /// The TEST signing key and its public key file.
    pub key: PathBuf,
    /// Public key of `key`.
    pub key_pub: PathBuf,
    /// A different key (for "signed by another key").
    pub other_key: PathBuf,
    /// Public key of `other_key`.
    pub other_pub: PathBuf,
    /// Release output directory (`<out>/v0.1.0`, `<out>/v0.2.0`).
    pub out: PathBuf,
    /// The host target triple.
    pub target: String,
}

pub const OLD: &str = "0.1.0";
pub const NEW: &str = "0.2.0";
pub const REPO: &str = "test/smp";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    // <target>/debug/smp-server
    Path::new(env!("CARGO_BIN_EXE_smp-server"))
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub use crate::common::require;

/// What every distribution test needs (zipsign, openssl, python3 for the release mock, and
/// `extra`), or a `skipped:` line and `false`.
pub fn tools(suite: &str, extra: &[&str]) -> bool {
    let mut all = vec!["zipsign", "openssl", "python3", "tar", "sha256sum"];
    all.extend_from_slice(extra);
    require::tools(suite, &all)
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn b64_file(p: &Path) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).expect("read key"))
}

fn host_target() -> String {
    let v = run(Command::new("rustc").arg("-vV"));
    v.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("host line")
        .to_string()
}

/// Build a release with the project's script (test keys compiled in).
pub fn build_release(out: &Path, version: &str, key: &Path, key_pub: &Path) {
    run(Command::new("bash")
        .arg(repo_root().join("packaging/build-release.sh"))
        .args(["--version", version, "--out"])
        .arg(out)
        .arg("--key")
        .arg(key)
        .args(["--repo", REPO])
        .args(["--api-url", "http://releases.invalid/api/v3"])
        .args(["--download-url", "http://releases.invalid"])
        .env("SMP_RELEASE_PROFILE", "dist-test")
        .env("SMP_UPDATER_KEYS", b64_file(key_pub))
        .env("CARGO_TARGET_DIR", target_dir()));
}

/// What the cached releases were built from: the test build of the server (same sources) and
/// the release script. A change to either rebuilds them.
fn source_stamp() -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in [
        PathBuf::from(env!("CARGO_BIN_EXE_smp-server")),
        repo_root().join("packaging/build-release.sh"),
        repo_root().join("updater/release-keys.txt"),
    ] {
        h.update(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Keys and the two releases, built once and cached in `<target>/dist-fixture` for the other
/// test binaries (cargo runs them one after another) until the sources change.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = target_dir().join("dist-fixture");
        let stamp = source_stamp();
        let stamp_file = dir.join("stamp");
        let fixture = Fixture {
            key: dir.join("test.key"),
            key_pub: dir.join("test.pub"),
            other_key: dir.join("other.key"),
            other_pub: dir.join("other.pub"),
            out: dir.join("releases"),
            target: host_target(),
            dir: dir.clone(),
        };
        if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
            return fixture;
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fixture dir");
        for (k, p) in [
            (&fixture.key, &fixture.key_pub),
            (&fixture.other_key, &fixture.other_pub),
        ] {
            run(Command::new("zipsign").arg("gen-key").arg(k).arg(p));
        }
        for v in [OLD, NEW] {
            build_release(&fixture.out, v, &fixture.key, &fixture.key_pub);
        }
        std::fs::write(&stamp_file, stamp).expect("stamp");
        fixture
    })
}

impl Fixture {
    pub fn asset(&self, version: &str) -> String {
        format!("smp-server-{version}-{}.tar.gz", self.target)
    }

    pub fn release_dir(&self, version: &str) -> PathBuf {
        self.out.join(format!("v{version}"))
    }

    /// Extract the binary of a built release into `dest_dir/smp-server`.
    pub fn extract(&self, version: &str, dest_dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dest_dir).expect("mkdir");
        run(Command::new("tar")
            .arg("-xzf")
            .arg(self.release_dir(version).join(self.asset(version)))
            .arg("-C")
            .arg(dest_dir));
        dest_dir.join("smp-server")
    }
}

/// A mock of the releases API serving `root`; killed on drop.
pub struct Mock {
    child: Child,
    /// Served directory.
    pub root: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
}

impl Mock {
    /// Serve `root`, whose `latest` file names the newest release directory.
    pub fn start(root: &Path) -> Mock {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/py/release_mock.py"))
            .arg(root)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start release mock");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("mock port");
        let port: u16 = line.trim().parse().expect("mock prints its port");
        Mock {
            child,
            root: root.to_path_buf(),
            origin: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/v3", self.origin)
    }

    pub fn requests(&self) -> String {
        std::fs::read_to_string(self.root.join("requests.log")).unwrap_or_default()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copy a release directory into `root` (optionally under another tag) and make it the latest.
pub fn publish(root: &Path, from: &Path, tag: &str) {
    let dest = root.join(tag);
    std::fs::create_dir_all(&dest).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read release") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dest.join(e.file_name())).expect("copy");
    }
    std::fs::write(root.join("latest"), tag).expect("latest");
}
