//! TLS to PostgreSQL (a managed database's usual set-up): a throwaway cluster that takes TCP
//! connections over TLS only (`hostssl`; plain TCP is rejected), with a certificate from a
//! test CA made by `openssl`. libpq's `sslmode` values are honoured: `verify-full` checks
//! the chain and the name, `verify-ca` the chain only, `require` encrypts without checking,
//! `disable` is refused by this server. The real binary serves SMP from the database over TLS.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::binary::{stop, Setup};
use common::pg::Cluster;
use common::*;
use smp_server::protocol::command::{Command as Cmd, SubscriptionMode};
use smp_server::protocol::response::BrokerMsg;
use smp_server::store::postgres::db::DbOptions;
use smp_server::store::postgres::setup::open_db;

/// A CA and a server certificate for the name `localhost` only (so `127.0.0.1` is a name
/// mismatch), plus an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = r#"
set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=other-ca -keyout other.key -out other.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile ext -out server.crt 2>/dev/null
"#;
        let st = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir.path())
            .status()
            .expect("openssl");
        assert!(st.success(), "making the test certificates failed");
        Pki { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

/// NEW with the server's password (`Setup::init` sets `test`), subscribed.
async fn new_queue(c: &smp_server::client::SmpClient) -> Recipient {
    common::binary::new_queue_with_password(c, SubscriptionMode::Subscribe).await
}

fn tls_cluster(pki: &Pki) -> Cluster {
    Cluster::start_tls(&pki.path("server.crt"), &pki.path("server.key"))
}

fn conn(c: &Cluster, db: &str, host: &str, tls: &str) -> String {
    format!(
        "host={host} port={} user=postgres dbname={db} {tls}",
        c.port
    )
}

fn try_open(connection: String) -> Result<smp_server::store::postgres::db::Db, String> {
    let opts = DbOptions {
        connection,
        schema: "smp_server".into(),
        pool_size: 2,
    };
    open_db(&opts, true).map_err(|e| e.to_string())
}

fn ca(p: &Path) -> String {
    format!("sslrootcert={}", p.display())
}

#[test]
fn sslmodes_check_what_libpq_checks() {
    if !common::require::tools("pg_tls", &["openssl"]) {
        return;
    }
    let pki = Pki::new();
    let c = tls_cluster(&pki);
    let (good, other) = (ca(&pki.path("ca.pem")), ca(&pki.path("other.pem")));
    let db = c.new_db();
    // verify-full: the chain and the name
    try_open(conn(
        &c,
        &db,
        "localhost",
        &format!("sslmode=verify-full {good}"),
    ))
    .expect("verify-full with the right CA and name");
    let e = try_open(conn(
        &c,
        &db,
        "127.0.0.1",
        &format!("sslmode=verify-full {good}"),
    ))
    .expect_err("the name is localhost, not 127.0.0.1");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let e = try_open(conn(
        &c,
        &db,
        "localhost",
        &format!("sslmode=verify-full {other}"),
    ))
    .expect_err("an unrelated CA");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // verify-ca: the chain only
    try_open(conn(
        &c,
        &db,
        "127.0.0.1",
        &format!("sslmode=verify-ca {good}"),
    ))
    .expect("verify-ca ignores the name");
    let e = try_open(conn(
        &c,
        &db,
        "127.0.0.1",
        &format!("sslmode=verify-ca {other}"),
    ))
    .expect_err("verify-ca with an unrelated CA");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let e = try_open(conn(
        &c,
        &db,
        "127.0.0.1",
        "sslmode=verify-ca sslrootcert=/nonexistent.pem",
    ))
    .expect_err("missing root file");
    assert!(e.contains("/nonexistent.pem"), "{e}");
    // require and the default (prefer) encrypt without a root certificate; the server takes
    // TCP only over TLS, so these connections are encrypted
    let open = try_open(conn(&c, &db, "127.0.0.1", "sslmode=require")).expect("require");
    try_open(conn(&c, &db, "127.0.0.1", "")).expect("prefer (the default)");
    try_open(format!(
        "postgresql://postgres@127.0.0.1:{}/{db}?sslmode=verify-ca&sslrootcert={}",
        c.port,
        pki.path("ca.pem").display()
    ))
    .expect("the URI form");
    // disable: plain TCP, which this server rejects (so the cases above really used TLS)
    let e = try_open(conn(&c, &db, "127.0.0.1", "sslmode=disable")).expect_err("plain TCP");
    assert!(e.contains("pg_hba") || e.contains("reject"), "{e}");
    let ssl = c.psql(
        &db,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'smp-server' AND s.ssl",
    );
    assert!(ssl.trim().parse::<u32>().expect("count") > 0, "{ssl}");
    drop(open);
    c.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_from_a_database_over_tls() {
    if !common::require::tools("pg_tls", &["openssl"]) {
        return;
    }
    let pki = Pki::new();
    let c = tls_cluster(&pki);
    let db = c.new_db();
    let good = conn(
        &c,
        &db,
        "localhost",
        &format!("sslmode=verify-full {}", ca(&pki.path("ca.pem"))),
    );
    try_open(good.clone()).expect("schema over TLS");
    let s = Setup::init(&["-l", "--store-messages", "memory"]);
    let use_conn = |conn: String| {
        s.edit_ini(move |k, _| match k {
            "store_queues" => Some("store_queues = database".into()),
            "store_messages" => Some("store_messages = database".into()),
            "db_connection" => Some(format!("db_connection = {conn}")),
            _ => None,
        })
    };
    // the wrong CA: start refuses and says why
    use_conn(conn(
        &c,
        &db,
        "localhost",
        &format!("sslmode=verify-full {}", ca(&pki.path("other.pem"))),
    ));
    let out = s.bin().arg("start").output().expect("start");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    use_conn(good);
    let (srv, client) = s.start().await;
    let r = new_queue(&client).await;
    let sc = s.client().await;
    let (_, ok) = sc
        .request(r.sid(), send_cmd(b"over TLS to the database"), None)
        .await
        .expect("SEND");
    assert_eq!(ok, BrokerMsg::Ok);
    let (_, m) = event(&client).await;
    assert_eq!(
        decrypt_msg(&r, &m).body.as_deref(),
        Some(&b"over TLS to the database"[..])
    );
    let ssl = c.psql(
        &db,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'smp-server' AND s.ssl",
    );
    assert!(ssl.trim().parse::<u32>().expect("count") > 0, "{ssl}");
    let rows = c.psql(&db, "SELECT count(*) FROM smp_server.msg_queues");
    assert_eq!(rows.trim(), "1");
    let _ = client.request(r.rid(), Cmd::Del, Some(&r.key)).await;
    drop(client);
    stop(srv).await;
    c.stop();
}
