//! The PostgreSQL schema our migrations create equals the reference's (tables, columns, types,
//! defaults, indexes, constraints, functions and their signatures, triggers, migration names),
//! compared through the catalog against `tests/fixtures/reference_pg_schema.txt`, a description
//! written by hand from the reference's schema. And rows written in the reference's encodings
//! are served. Needs Debian's postgresql (`.ci/setup-postgres.sh`); a throwaway cluster.

mod common;

use common::pg::{fresh_db_options, Cluster};
use smp_server::protocol::command::{Party, QueueMode};
use smp_server::store::postgres::{setup, PgStore};
use smp_server::store::{Message, QueueStatus, Store, WriteResult};

const CATALOG: &str = "
SELECT 'column ' || table_name || ' ' || ordinal_position || ' ' || column_name || ' ' || data_type
       || ' ' || is_nullable || ' ' || COALESCE(column_default, '-')
  FROM information_schema.columns WHERE table_schema = 'smp_server'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes
  WHERE schemaname = 'smp_server' AND indexname NOT IN (SELECT conname FROM pg_constraint)
UNION ALL
SELECT 'constraint ' || r.relname || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
  FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
  JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'smp_server'
UNION ALL
SELECT 'routine ' || p.proname || ' ' || p.prokind::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'smp_server'
UNION ALL
SELECT 'signature ' || p.proname || ' ' || pg_get_function_arguments(p.oid) || ' => '
       || COALESCE(pg_get_function_result(p.oid), '-')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'smp_server'
UNION ALL
SELECT 'trigger ' || event_object_table || ' ' || trigger_name || ' ' || action_timing || ' '
       || event_manipulation
  FROM information_schema.triggers WHERE trigger_schema = 'smp_server'
UNION ALL
SELECT 'migration ' || name FROM smp_server.migrations
";

/// The database name of options from `fresh_db_options` (the last `dbname=` of the string).
fn db_name(opts: &smp_server::store::postgres::db::DbOptions) -> String {
    opts.connection
        .rsplit('=')
        .next()
        .expect("dbname")
        .to_string()
}

fn sorted(lines: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = lines.filter(|l| !l.is_empty()).collect();
    v.sort();
    v
}

#[test]
fn schema_equals_the_reference_schema() {
    let opts = fresh_db_options();
    let db = setup::open_db(&opts, true).expect("open and migrate");
    drop(db);
    let dbname = db_name(&opts);
    let ours = sorted(
        Cluster::get()
            .psql(&dbname, CATALOG)
            .lines()
            .map(str::to_string),
    );
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/reference_pg_schema.txt"),
    )
    .expect("fixture");
    let reference = sorted(
        fixture
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string),
    );
    let missing: Vec<_> = reference.iter().filter(|l| !ours.contains(l)).collect();
    let extra: Vec<_> = ours.iter().filter(|l| !reference.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "schema differs from the reference\nmissing:\n{missing:#?}\nextra:\n{extra:#?}"
    );
    // Opening again applies nothing and keeps the data.
    let db = setup::open_db(&opts, false).expect("reopen");
    assert!(setup::migrate(&db).expect("migrate").is_empty());
}

#[test]
fn unknown_migration_stops_start_up() {
    let opts = fresh_db_options();
    drop(setup::open_db(&opts, true).expect("open"));
    let dbname = db_name(&opts);
    Cluster::get().psql(
        &dbname,
        "INSERT INTO smp_server.migrations (name, ts) VALUES ('29990101_future', now())",
    );
    let e = setup::open_db(&opts, false).expect_err("a newer schema must be refused");
    assert!(e.to_string().contains("29990101_future"), "{e}");
}

#[test]
fn missing_schema_is_a_clear_error() {
    let opts = fresh_db_options();
    let e = setup::open_db(&opts, false).expect_err("no schema");
    assert!(e.to_string().contains("create schema smp_server"), "{e}");
}

/// A queue and messages inserted with SQL in the reference's column encodings (as its server
/// writes them) are served; our writes read back in those encodings.
#[test]
fn rows_in_the_reference_encodings_are_served() {
    let opts = fresh_db_options();
    let db = setup::open_db(&opts, true).expect("open");
    let dbname = db_name(&opts);
    // Ed25519 SubjectPublicKeyInfo DER = 302a300506032b6570032100 || 32 key bytes.
    let der = format!("302a300506032b6570032100{}", "11".repeat(32));
    let keys = format!("012c{der}");
    let sql = format!(
        "INSERT INTO smp_server.msg_queues (recipient_id, recipient_keys, rcv_dh_secret, sender_id, \
         sender_key, queue_mode, status, updated_at, msg_can_write, msg_queue_expire, msg_queue_size) \
         VALUES ('\\x{rid}', '\\x{keys}', '\\x{dh}', '\\x{sid}', '\\x{der}', 'M', \
         'blocked,reason=spam', 1700006400, TRUE, TRUE, 2); \
         INSERT INTO smp_server.messages (recipient_id, msg_id, msg_ts, msg_quota, msg_ntf_flag, msg_body) \
         VALUES ('\\x{rid}', '\\x{m1}', 1700000000, FALSE, TRUE, '\\x68656c6c6f'), \
                ('\\x{rid}', '\\x{m2}', 1700000001, FALSE, FALSE, '\\x');",
        rid = "01".repeat(24),
        sid = "02".repeat(24),
        dh = "03".repeat(32),
        m1 = "0a".repeat(24),
        m2 = "0b".repeat(24),
    );
    Cluster::get().psql(&dbname, &sql);
    let st = PgStore::new(db, None, 86400);
    let q = st
        .get_queue(Party::Sender, &[2; 24])
        .expect("served by sender ID");
    let rec = q.rec().expect("rec");
    assert_eq!(rec.recipient_id, vec![1; 24]);
    assert_eq!(rec.queue_mode, Some(QueueMode::Messaging));
    assert_eq!(rec.recipient_keys.len(), 1);
    assert_eq!(rec.sender_key, rec.recipient_keys.first().cloned());
    assert_eq!(rec.rcv_dh_secret, [3; 32]);
    assert_eq!(rec.updated_at.get(), Some(1_700_006_400));
    assert!(matches!(rec.status, QueueStatus::Blocked(_)));
    assert_eq!(st.queue_size(&q).expect("size"), 2);
    match st.peek_msg(&q).expect("peek") {
        Some(Message::Msg {
            msg_id,
            body,
            flags,
            ts,
        }) => {
            assert_eq!(msg_id, vec![10; 24]);
            assert_eq!(body, b"hello");
            assert!(flags.notification);
            assert_eq!(ts, 1_700_000_000);
        }
        other => panic!("unexpected {other:?}"),
    }
    let (d, next) = st.del_peek_msg(&q, &[10; 24]).expect("ack");
    assert!(d.is_some());
    assert_eq!(next.map(|m| m.msg_id().to_vec()), Some(vec![11; 24]));
    // Our write goes through the reference's write_message and its bookkeeping.
    st.set_status(&q, QueueStatus::Active).expect("unblock");
    let m = Message::Msg {
        msg_id: vec![12; 24],
        ts: 1_700_000_002,
        flags: Default::default(),
        body: b"x".to_vec(),
    };
    assert_eq!(
        st.write_msg(&q, m, 128).expect("write"),
        WriteResult::Stored { was_empty: false }
    );
    let row = Cluster::get().psql(
        &dbname,
        "SELECT status, msg_queue_size, msg_can_write FROM smp_server.msg_queues",
    );
    assert_eq!(row.trim(), "active|2|t");
}

/// The calls a block of SUBs makes in one query each (`find_queues`, `update_times`,
/// `peek_msgs`) answer as their one-by-one forms: a missing or deleted queue is `None` /
/// `AUTH`, each queue gets its own first message, and the day of use reaches the rows.
#[test]
fn batched_calls_answer_as_single_ones() {
    let opts = fresh_db_options();
    let db = setup::open_db(&opts, true).expect("open");
    let dbname = db_name(&opts);
    let der = format!("302a300506032b6570032100{}", "11".repeat(32));
    let keys = format!("012c{der}");
    let mut sql = String::new();
    for i in 1..=3u8 {
        sql.push_str(&format!(
            "INSERT INTO smp_server.msg_queues (recipient_id, recipient_keys, rcv_dh_secret, \
             sender_id, queue_mode, status, updated_at, msg_can_write, msg_queue_expire, \
             msg_queue_size) VALUES ('\\x{rid}', '\\x{keys}', '\\x{dh}', '\\x{sid}', 'M', \
             'active', 1700006400, TRUE, TRUE, 0);",
            rid = format!("{i:02x}").repeat(24),
            sid = format!("{:02x}", i + 10).repeat(24),
            dh = "03".repeat(32),
        ));
    }
    Cluster::get().psql(&dbname, &sql);
    let st = PgStore::new(db, None, 86400);
    let ids: Vec<Vec<u8>> = [1u8, 9, 2, 3, 1].iter().map(|&b| vec![b; 24]).collect();
    let refs: Vec<&[u8]> = ids.iter().map(|v| v.as_slice()).collect();
    let found = st.find_queues(Party::Recipient, &refs).expect("one query");
    let got: Vec<Option<Vec<u8>>> = found
        .iter()
        .map(|q| q.as_ref().map(|q| q.recipient_id().to_vec()))
        .collect();
    assert_eq!(
        got,
        vec![
            Some(ids[0].clone()),
            None,
            Some(ids[2].clone()),
            Some(ids[3].clone()),
            Some(ids[0].clone())
        ]
    );
    let by_sender = st
        .find_queues(Party::Sender, &[&[12u8; 24][..]])
        .expect("sender IDs");
    assert_eq!(
        by_sender[0].as_ref().map(|q| q.recipient_id().to_vec()),
        Some(vec![2; 24])
    );
    let (q1, q2, q3) = (
        found[0].clone().expect("q1"),
        found[2].clone().expect("q2"),
        found[3].clone().expect("q3"),
    );
    for (q, id, body) in [
        (&q1, 21u8, &b"one"[..]),
        (&q1, 22, b"two"),
        (&q3, 23, b"three"),
    ] {
        let m = Message::Msg {
            msg_id: vec![id; 24],
            ts: 1_700_000_000 + i64::from(id),
            flags: Default::default(),
            body: body.to_vec(),
        };
        st.write_msg(q, m, 128).expect("write");
    }
    // q3 deleted behind the handle's back: AUTH from both batched calls
    let (_, n) = st.delete_queue(&q3).expect("delete");
    assert_eq!(n, 1);
    let days = st.update_times(&[&q1, &q2, &q3], 1_700_092_800);
    assert_eq!(days[0], Ok(()));
    assert_eq!(days[1], Ok(()));
    assert!(days[2].is_err(), "{:?}", days[2]);
    assert_eq!(q1.rec().expect("rec").updated_at.get(), Some(1_700_092_800));
    let rows = Cluster::get().psql(
        &dbname,
        "SELECT count(*) FROM smp_server.msg_queues WHERE updated_at = 1700092800",
    );
    assert_eq!(rows.trim(), "2");
    let heads = st.peek_msgs(&[&q1, &q2, &q1, &q3]);
    let ids: Vec<Result<Option<Vec<u8>>, _>> = heads
        .into_iter()
        .map(|h| h.map(|m| m.map(|m| m.msg_id().to_vec())))
        .collect();
    assert_eq!(ids[0], Ok(Some(vec![21; 24])));
    assert_eq!(ids[1], Ok(None));
    assert_eq!(ids[2], Ok(Some(vec![21; 24])));
    assert!(ids[3].is_err(), "{:?}", ids[3]);
}
