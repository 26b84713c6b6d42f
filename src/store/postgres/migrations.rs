//! The database schema, as the reference's numbered migrations: the same migration names, tables,
//! columns, types, indexes and server-side functions, so a schema either server created can be
//! served by the other. The SQL here is ours, written from the reference's schema description;
//! `tests/pg_schema.rs` compares the result with a hand-written description of the reference's.
//!
//! Applied migrations are recorded in `<schema>.migrations (name, ts, down)` as the reference
//! does; unknown names in that table (a newer reference) stop the start-up instead of guessing.

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The reference's migration name (recorded in the `migrations` table).
    pub name: &'static str,
    /// SQL to apply it.
    pub up: &'static str,
    /// SQL to undo it (recorded, as the reference records it; not run by this server).
    pub down: Option<&'static str>,
}

/// All migrations, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "20250207_initial",
        up: M_INITIAL,
        down: None,
    },
    Migration {
        name: "20250319_updated_index",
        up: M_UPDATED_INDEX,
        down: Some(D_UPDATED_INDEX),
    },
    Migration {
        name: "20250320_short_links",
        up: M_SHORT_LINKS,
        down: Some(D_SHORT_LINKS),
    },
    Migration {
        name: "20250514_service_certs",
        up: M_SERVICE_CERTS,
        down: Some(D_SERVICE_CERTS),
    },
    Migration {
        name: "20250903_store_messages",
        up: M_STORE_MESSAGES,
        down: Some(D_STORE_MESSAGES),
    },
    Migration {
        name: "20250915_queue_ids_hash",
        up: M_QUEUE_IDS_HASH,
        down: Some(D_QUEUE_IDS_HASH),
    },
];

/// The table of applied migrations (created before any migration runs).
pub const MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS migrations (name TEXT NOT NULL PRIMARY KEY, ts TIMESTAMP NOT NULL, down TEXT)";

const M_INITIAL: &str = r#"
CREATE TABLE msg_queues (
  recipient_id BYTEA NOT NULL PRIMARY KEY,
  recipient_key BYTEA NOT NULL,
  rcv_dh_secret BYTEA NOT NULL,
  sender_id BYTEA NOT NULL,
  sender_key BYTEA,
  snd_secure BOOLEAN NOT NULL,
  notifier_id BYTEA,
  notifier_key BYTEA,
  rcv_ntf_dh_secret BYTEA,
  status TEXT NOT NULL,
  updated_at BIGINT,
  deleted_at BIGINT
);
CREATE UNIQUE INDEX idx_msg_queues_sender_id ON msg_queues (sender_id);
CREATE UNIQUE INDEX idx_msg_queues_notifier_id ON msg_queues (notifier_id);
CREATE INDEX idx_msg_queues_deleted_at ON msg_queues (deleted_at);
"#;

const M_UPDATED_INDEX: &str = r#"
DROP INDEX idx_msg_queues_deleted_at;
CREATE INDEX idx_msg_queues_updated_at ON msg_queues (deleted_at, updated_at);
"#;

const D_UPDATED_INDEX: &str = r#"
DROP INDEX idx_msg_queues_updated_at;
CREATE INDEX idx_msg_queues_deleted_at ON msg_queues (deleted_at);
"#;

// Recipient keys become a list: a count byte, then each key with a length byte.
const M_SHORT_LINKS: &str = r#"
ALTER TABLE msg_queues
  ADD COLUMN queue_mode TEXT,
  ADD COLUMN link_id BYTEA,
  ADD COLUMN fixed_data BYTEA,
  ADD COLUMN user_data BYTEA;
UPDATE msg_queues SET queue_mode = 'M' WHERE snd_secure;
ALTER TABLE msg_queues DROP COLUMN snd_secure;
UPDATE msg_queues
  SET recipient_key = '\x01'::BYTEA || set_byte('\x00'::BYTEA, 0, length(recipient_key)) || recipient_key;
ALTER TABLE msg_queues RENAME COLUMN recipient_key TO recipient_keys;
CREATE UNIQUE INDEX idx_msg_queues_link_id ON msg_queues (link_id);
"#;

const D_SHORT_LINKS: &str = r#"
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM msg_queues
             WHERE get_byte(recipient_keys, 0) <> 1
                OR get_byte(recipient_keys, 1) <> length(recipient_keys) - 2) THEN
    RAISE EXCEPTION 'Cannot downgrade: a queue has several recipient keys';
  END IF;
END;
$$;
ALTER TABLE msg_queues ADD COLUMN snd_secure BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE msg_queues SET snd_secure = TRUE WHERE queue_mode = 'M';
DROP INDEX idx_msg_queues_link_id;
ALTER TABLE msg_queues
  DROP COLUMN queue_mode,
  DROP COLUMN link_id,
  DROP COLUMN fixed_data,
  DROP COLUMN user_data;
UPDATE msg_queues SET recipient_keys = substring(recipient_keys FROM 3);
ALTER TABLE msg_queues RENAME COLUMN recipient_keys TO recipient_key;
"#;

const M_SERVICE_CERTS: &str = r#"
CREATE TABLE services (
  service_id BYTEA NOT NULL PRIMARY KEY,
  service_role TEXT NOT NULL,
  service_cert BYTEA NOT NULL,
  service_cert_hash BYTEA NOT NULL UNIQUE,
  created_at BIGINT NOT NULL
);
CREATE INDEX idx_services_service_role ON services (service_role);
ALTER TABLE msg_queues
  ADD COLUMN rcv_service_id BYTEA REFERENCES services (service_id) ON DELETE SET NULL ON UPDATE RESTRICT,
  ADD COLUMN ntf_service_id BYTEA REFERENCES services (service_id) ON DELETE SET NULL ON UPDATE RESTRICT;
CREATE INDEX idx_msg_queues_rcv_service_id ON msg_queues (rcv_service_id, deleted_at);
CREATE INDEX idx_msg_queues_ntf_service_id ON msg_queues (ntf_service_id, deleted_at);
"#;

const D_SERVICE_CERTS: &str = r#"
DROP INDEX idx_msg_queues_rcv_service_id;
DROP INDEX idx_msg_queues_ntf_service_id;
ALTER TABLE msg_queues DROP COLUMN rcv_service_id, DROP COLUMN ntf_service_id;
DROP INDEX idx_services_service_role;
DROP TABLE services;
"#;

// Messages in the database. The queue row carries the bookkeeping the functions keep exact:
// its size (quota marker included), whether a message may be written (false once the quota
// marker is in) and whether it may have messages to expire. Every function locks the live
// queue row first, so the changes of one queue are serialized.
const M_STORE_MESSAGES: &str = r#"
CREATE TABLE messages (
  message_id BIGINT NOT NULL PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
  recipient_id BYTEA NOT NULL REFERENCES msg_queues ON DELETE CASCADE ON UPDATE RESTRICT,
  msg_id BYTEA NOT NULL,
  msg_ts BIGINT NOT NULL,
  msg_quota BOOLEAN NOT NULL,
  msg_ntf_flag BOOLEAN NOT NULL,
  msg_body BYTEA NOT NULL
);
ALTER TABLE msg_queues
  ADD COLUMN msg_can_write BOOLEAN NOT NULL DEFAULT TRUE,
  ADD COLUMN msg_queue_expire BOOLEAN NOT NULL DEFAULT FALSE,
  ADD COLUMN msg_queue_size BIGINT NOT NULL DEFAULT 0;
CREATE INDEX idx_messages_recipient_id_message_id ON messages (recipient_id, message_id);
CREATE INDEX idx_messages_recipient_id_msg_ts ON messages (recipient_id, msg_ts);
CREATE INDEX idx_messages_recipient_id_msg_quota ON messages (recipient_id, msg_quota);
DROP INDEX idx_msg_queues_updated_at;
CREATE INDEX idx_msg_queues_updated_at_recipient_id
  ON msg_queues (deleted_at, updated_at, msg_queue_expire, recipient_id);

CREATE FUNCTION write_message(
  p_recipient_id BYTEA, p_msg_id BYTEA, p_msg_ts BIGINT, p_msg_quota BOOLEAN,
  p_msg_ntf_flag BOOLEAN, p_msg_body BYTEA, p_quota INT
) RETURNS TABLE (quota_written BOOLEAN, was_empty BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
  writable BOOLEAN;
  size BIGINT;
  is_quota BOOLEAN;
BEGIN
  SELECT q.msg_can_write, q.msg_queue_size INTO writable, size
    FROM msg_queues q
    WHERE q.recipient_id = p_recipient_id AND q.deleted_at IS NULL
    FOR UPDATE;
  IF NOT FOUND OR NOT (writable OR size = 0) THEN
    RETURN;
  END IF;
  is_quota := p_msg_quota OR size >= p_quota;
  INSERT INTO messages (recipient_id, msg_id, msg_ts, msg_quota, msg_ntf_flag, msg_body)
    VALUES (p_recipient_id, p_msg_id, p_msg_ts, is_quota,
            p_msg_ntf_flag AND NOT is_quota,
            CASE WHEN is_quota THEN ''::BYTEA ELSE p_msg_body END);
  UPDATE msg_queues
    SET msg_can_write = NOT is_quota, msg_queue_expire = TRUE, msg_queue_size = msg_queue_size + 1
    WHERE recipient_id = p_recipient_id;
  RETURN QUERY SELECT is_quota, size = 0;
END;
$$;

CREATE FUNCTION try_del_msg(p_recipient_id BYTEA, p_msg_id BYTEA)
RETURNS TABLE (r_msg_id BYTEA, r_msg_ts BIGINT, r_msg_quota BOOLEAN, r_msg_ntf_flag BOOLEAN, r_msg_body BYTEA)
LANGUAGE plpgsql AS $$
DECLARE
  size BIGINT;
  m RECORD;
BEGIN
  SELECT q.msg_queue_size INTO size
    FROM msg_queues q
    WHERE q.recipient_id = p_recipient_id AND q.deleted_at IS NULL
    FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  SELECT x.message_id, x.msg_id, x.msg_ts, x.msg_quota, x.msg_ntf_flag, x.msg_body INTO m
    FROM messages x WHERE x.recipient_id = p_recipient_id
    ORDER BY x.message_id LIMIT 1;
  IF NOT FOUND THEN
    IF size <> 0 THEN
      UPDATE msg_queues SET msg_can_write = TRUE, msg_queue_expire = FALSE, msg_queue_size = 0
        WHERE recipient_id = p_recipient_id;
    END IF;
    RETURN;
  END IF;
  IF m.msg_id <> p_msg_id THEN
    RETURN;
  END IF;
  DELETE FROM messages WHERE message_id = m.message_id;
  IF FOUND THEN
    UPDATE msg_queues
      SET msg_can_write = msg_can_write OR msg_queue_size <= 1,
          msg_queue_expire = msg_queue_size > 1,
          msg_queue_size = GREATEST(msg_queue_size - 1, 0)
      WHERE recipient_id = p_recipient_id;
    RETURN QUERY SELECT m.msg_id, m.msg_ts, m.msg_quota, m.msg_ntf_flag, m.msg_body;
  END IF;
END;
$$;

CREATE FUNCTION try_del_peek_msg(p_recipient_id BYTEA, p_msg_id BYTEA)
RETURNS TABLE (r_msg_id BYTEA, r_msg_ts BIGINT, r_msg_quota BOOLEAN, r_msg_ntf_flag BOOLEAN, r_msg_body BYTEA)
LANGUAGE plpgsql AS $$
DECLARE
  size BIGINT;
  m RECORD;
  deleted BOOLEAN;
BEGIN
  SELECT q.msg_queue_size INTO size
    FROM msg_queues q
    WHERE q.recipient_id = p_recipient_id AND q.deleted_at IS NULL
    FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  SELECT x.message_id, x.msg_id, x.msg_ts, x.msg_quota, x.msg_ntf_flag, x.msg_body INTO m
    FROM messages x WHERE x.recipient_id = p_recipient_id
    ORDER BY x.message_id LIMIT 1;
  IF NOT FOUND THEN
    IF size <> 0 THEN
      UPDATE msg_queues SET msg_can_write = TRUE, msg_queue_expire = FALSE, msg_queue_size = 0
        WHERE recipient_id = p_recipient_id;
    END IF;
    RETURN;
  END IF;
  IF m.msg_id <> p_msg_id THEN
    -- not the oldest message: only peek
    RETURN QUERY SELECT m.msg_id, m.msg_ts, m.msg_quota, m.msg_ntf_flag, m.msg_body;
    RETURN;
  END IF;
  DELETE FROM messages WHERE message_id = m.message_id;
  deleted := FOUND;
  IF deleted THEN
    RETURN QUERY SELECT m.msg_id, m.msg_ts, m.msg_quota, m.msg_ntf_flag, m.msg_body;
  END IF;
  SELECT x.msg_id, x.msg_ts, x.msg_quota, x.msg_ntf_flag, x.msg_body INTO m
    FROM messages x WHERE x.recipient_id = p_recipient_id
    ORDER BY x.message_id LIMIT 1;
  IF FOUND THEN
    RETURN QUERY SELECT m.msg_id, m.msg_ts, m.msg_quota, m.msg_ntf_flag, m.msg_body;
    IF deleted THEN
      UPDATE msg_queues
        SET msg_can_write = msg_can_write OR msg_queue_size <= 1,
            msg_queue_expire = msg_queue_size > 1,
            msg_queue_size = GREATEST(msg_queue_size - 1, 0)
        WHERE recipient_id = p_recipient_id;
    END IF;
  ELSIF deleted OR size <> 0 THEN
    UPDATE msg_queues SET msg_can_write = TRUE, msg_queue_expire = FALSE, msg_queue_size = 0
      WHERE recipient_id = p_recipient_id;
  END IF;
END;
$$;

-- Removes messages older than p_old_ts up to the first one that is not (quota markers stay).
CREATE FUNCTION delete_expired_msgs(p_recipient_id BYTEA, p_old_ts BIGINT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
  size BIGINT;
  first_kept BIGINT;
  n BIGINT;
BEGIN
  SELECT q.msg_queue_size INTO size
    FROM msg_queues q
    WHERE q.recipient_id = p_recipient_id AND q.deleted_at IS NULL
    FOR UPDATE SKIP LOCKED;
  IF NOT FOUND OR size = 0 THEN
    RETURN 0;
  END IF;
  SELECT MIN(x.message_id) INTO first_kept
    FROM messages x
    WHERE x.recipient_id = p_recipient_id AND x.msg_ts >= p_old_ts AND NOT x.msg_quota;
  DELETE FROM messages x
    WHERE x.recipient_id = p_recipient_id AND NOT x.msg_quota
      AND (first_kept IS NULL OR x.message_id < first_kept);
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    UPDATE msg_queues
      SET msg_can_write = msg_can_write OR msg_queue_size <= n,
          msg_queue_expire = msg_queue_size > n AND first_kept IS NOT NULL,
          msg_queue_size = GREATEST(msg_queue_size - n, 0)
      WHERE recipient_id = p_recipient_id;
  END IF;
  RETURN n;
END;
$$;

-- Expires queue by queue, committing after each, in batches ordered by recipient ID.
CREATE PROCEDURE expire_old_messages(
  p_old_queue BIGINT, p_old_ts BIGINT, batch_size INT,
  OUT r_expired_msgs_count BIGINT, OUT r_stored_msgs_count BIGINT, OUT r_stored_queues BIGINT
)
LANGUAGE plpgsql AS $$
DECLARE
  batch BYTEA[];
  rid BYTEA;
  after_rid BYTEA := '\x';
  total BIGINT := 0;
BEGIN
  LOOP
    SELECT array_agg(s.recipient_id) INTO batch
      FROM (SELECT q.recipient_id FROM msg_queues q
            WHERE q.deleted_at IS NULL AND q.updated_at > p_old_queue
              AND q.msg_queue_expire AND q.recipient_id > after_rid
            ORDER BY q.recipient_id
            LIMIT batch_size) s;
    EXIT WHEN batch IS NULL OR cardinality(batch) = 0;
    FOREACH rid IN ARRAY batch LOOP
      BEGIN
        total := total + delete_expired_msgs(rid, p_old_ts);
      EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'STORE, expire_old_messages, error expiring queue %: %', encode(rid, 'base64'), SQLERRM;
        CONTINUE;
      END;
      COMMIT;
    END LOOP;
    after_rid := batch[cardinality(batch)];
  END LOOP;
  r_expired_msgs_count := total;
  r_stored_msgs_count := (SELECT COUNT(1) FROM messages);
  r_stored_queues := (SELECT COUNT(1) FROM msg_queues WHERE deleted_at IS NULL);
END;
$$;
"#;

const D_STORE_MESSAGES: &str = r#"
DROP FUNCTION write_message;
DROP FUNCTION try_del_msg;
DROP FUNCTION try_del_peek_msg;
DROP FUNCTION delete_expired_msgs;
DROP PROCEDURE expire_old_messages;
DROP INDEX idx_msg_queues_updated_at_recipient_id;
CREATE INDEX idx_msg_queues_updated_at ON msg_queues (deleted_at, updated_at);
DROP INDEX idx_messages_recipient_id_message_id;
DROP INDEX idx_messages_recipient_id_msg_ts;
DROP INDEX idx_messages_recipient_id_msg_quota;
ALTER TABLE msg_queues
  DROP COLUMN msg_can_write,
  DROP COLUMN msg_queue_expire,
  DROP COLUMN msg_queue_size;
DROP TABLE messages;
"#;

// Per-service queue counts and an XOR of the MD5 hashes of their queue IDs, kept by triggers
// (the reference's service subscriptions). MD5 comes from pgcrypto's `public.digest`.
const M_QUEUE_IDS_HASH: &str = r#"
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;

CREATE OR REPLACE FUNCTION xor_combine(state BYTEA, value BYTEA) RETURNS BYTEA
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
  acc BYTEA := state;
  n INTEGER := octet_length(value);
BEGIN
  IF octet_length(state) <> n THEN
    RAISE EXCEPTION 'Inputs must be equal length (% != %)', octet_length(state), n;
  END IF;
  FOR i IN 0 .. n - 1 LOOP
    acc := set_byte(acc, i, get_byte(state, i) # get_byte(value, i));
  END LOOP;
  RETURN acc;
END;
$$;

CREATE OR REPLACE AGGREGATE xor_aggregate(BYTEA) (
  SFUNC = xor_combine,
  STYPE = BYTEA,
  INITCOND = '\x00000000000000000000000000000000'
);

ALTER TABLE services
  ADD COLUMN queue_count BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN queue_ids_hash BYTEA NOT NULL DEFAULT '\x00000000000000000000000000000000';

CREATE FUNCTION update_all_aggregates() RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
  WITH per_service AS (
    SELECT s.service_id,
           count(1) AS n,
           xor_aggregate(public.digest(
             CASE WHEN s.service_role = 'M' THEN q.recipient_id
                  ELSE COALESCE(q.notifier_id, '\x00000000000000000000000000000000') END,
             'md5')) AS h
      FROM services s
      JOIN msg_queues q
        ON (s.service_role = 'M' AND q.rcv_service_id = s.service_id)
        OR (s.service_role = 'N' AND q.ntf_service_id = s.service_id)
      WHERE q.deleted_at IS NULL
      GROUP BY s.service_id
  )
  UPDATE services s
    SET queue_count = COALESCE(p.n, 0),
        queue_ids_hash = COALESCE(p.h, '\x00000000000000000000000000000000')
    FROM per_service p
    WHERE s.service_id = p.service_id;
END;
$$;

SELECT update_all_aggregates();

CREATE FUNCTION update_aggregates(p_service_id BYTEA, p_role TEXT, p_queue_id BYTEA, p_change BIGINT) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE services
    SET queue_count = queue_count + p_change,
        queue_ids_hash = xor_combine(queue_ids_hash, public.digest(p_queue_id, 'md5'))
    WHERE service_id = p_service_id AND service_role = p_role;
END;
$$;

CREATE FUNCTION on_queue_insert() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.rcv_service_id IS NOT NULL THEN
    PERFORM update_aggregates(NEW.rcv_service_id, 'M', NEW.recipient_id, 1);
  END IF;
  IF NEW.ntf_service_id IS NOT NULL AND NEW.notifier_id IS NOT NULL THEN
    PERFORM update_aggregates(NEW.ntf_service_id, 'N', NEW.notifier_id, 1);
  END IF;
  RETURN NEW;
END;
$$;

CREATE FUNCTION on_queue_delete() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.deleted_at IS NULL THEN
    IF OLD.rcv_service_id IS NOT NULL THEN
      PERFORM update_aggregates(OLD.rcv_service_id, 'M', OLD.recipient_id, -1);
    END IF;
    IF OLD.ntf_service_id IS NOT NULL AND OLD.notifier_id IS NOT NULL THEN
      PERFORM update_aggregates(OLD.ntf_service_id, 'N', OLD.notifier_id, -1);
    END IF;
  END IF;
  RETURN OLD;
END;
$$;

-- A queue counts for a service while it is live and linked to it; an update that changes
-- either side moves it out of the old aggregate and into the new one.
CREATE FUNCTION on_queue_update() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
  old_rcv BOOLEAN := OLD.deleted_at IS NULL AND OLD.rcv_service_id IS NOT NULL;
  new_rcv BOOLEAN := NEW.deleted_at IS NULL AND NEW.rcv_service_id IS NOT NULL;
  old_ntf BOOLEAN := OLD.deleted_at IS NULL AND OLD.ntf_service_id IS NOT NULL AND OLD.notifier_id IS NOT NULL;
  new_ntf BOOLEAN := NEW.deleted_at IS NULL AND NEW.ntf_service_id IS NOT NULL AND NEW.notifier_id IS NOT NULL;
BEGIN
  IF old_rcv AND (NOT new_rcv OR OLD.rcv_service_id IS DISTINCT FROM NEW.rcv_service_id) THEN
    PERFORM update_aggregates(OLD.rcv_service_id, 'M', OLD.recipient_id, -1);
  END IF;
  IF new_rcv AND (NOT old_rcv OR OLD.rcv_service_id IS DISTINCT FROM NEW.rcv_service_id) THEN
    PERFORM update_aggregates(NEW.rcv_service_id, 'M', NEW.recipient_id, 1);
  END IF;
  IF old_ntf AND (NOT new_ntf OR OLD.ntf_service_id IS DISTINCT FROM NEW.ntf_service_id
                  OR OLD.notifier_id IS DISTINCT FROM NEW.notifier_id) THEN
    PERFORM update_aggregates(OLD.ntf_service_id, 'N', OLD.notifier_id, -1);
  END IF;
  IF new_ntf AND (NOT old_ntf OR OLD.ntf_service_id IS DISTINCT FROM NEW.ntf_service_id
                  OR OLD.notifier_id IS DISTINCT FROM NEW.notifier_id) THEN
    PERFORM update_aggregates(NEW.ntf_service_id, 'N', NEW.notifier_id, 1);
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER tr_queue_insert AFTER INSERT ON msg_queues FOR EACH ROW EXECUTE PROCEDURE on_queue_insert();
CREATE TRIGGER tr_queue_delete AFTER DELETE ON msg_queues FOR EACH ROW EXECUTE PROCEDURE on_queue_delete();
CREATE TRIGGER tr_queue_update AFTER UPDATE ON msg_queues FOR EACH ROW EXECUTE PROCEDURE on_queue_update();
"#;

const D_QUEUE_IDS_HASH: &str = r#"
DROP TRIGGER tr_queue_insert ON msg_queues;
DROP TRIGGER tr_queue_delete ON msg_queues;
DROP TRIGGER tr_queue_update ON msg_queues;
DROP FUNCTION on_queue_insert;
DROP FUNCTION on_queue_delete;
DROP FUNCTION on_queue_update;
DROP FUNCTION update_aggregates;
DROP FUNCTION update_all_aggregates;
ALTER TABLE services DROP COLUMN queue_count, DROP COLUMN queue_ids_hash;
DROP AGGREGATE xor_aggregate(BYTEA);
DROP FUNCTION xor_combine;
"#;
