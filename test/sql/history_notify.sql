-- NOTIFY events of phase transitions, as a listening session receives them.
-- The listener is a second session opened with dblink; each check sends a
-- sentinel notification from a third session and reads everything the
-- listener received before it (notifications arrive in commit order).
SET TimeZone = 'UTC';
\i test/include/notify_listener.sql
SELECT dblink_exec('listener', 'LISTEN dp_events');

-- The same, with each payload's time checked against the row it describes
-- and shown as "...": the payload is otherwise exactly what listeners get.
CREATE FUNCTION pg_temp.events(tbl regclass)
RETURNS TABLE (channel text, payload text, at_ok boolean)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    stamped timestamptz;
BEGIN
    FOR r IN SELECT * FROM pg_temp.received() ORDER BY n LOOP
        EXECUTE format('SELECT phase_updated_at FROM %s WHERE id::text = $1', tbl)
           INTO stamped USING r.payload::jsonb ->> 'key';
        channel := r.channel;
        payload := regexp_replace(r.payload, '"at":"[^"]*"', '"at":"..."');
        at_ok := (r.payload::jsonb ->> 'at')::timestamptz = stamped;
        RETURN NEXT;
    END LOOP;
END $$;

CREATE TABLE notify_jobs (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
    completed_items     integer,
    total_items         integer,
    phase_updated_at    timestamptz,
    failure_reason      text
);
-- events are on by default, on the channel "deploy_progress"
SELECT relid, notify_channel FROM deploy_progress.track('notify_jobs');

-- an INSERT and each transition, delivered at commit
INSERT INTO notify_jobs (id, total_items) VALUES (1, 8), (2, NULL);
SELECT * FROM pg_temp.events('notify_jobs');
UPDATE notify_jobs SET phase = 'building', completed_items = 2 WHERE id = 1;
SELECT * FROM pg_temp.events('notify_jobs');
-- the payload is valid JSON with exactly the documented keys
UPDATE notify_jobs SET phase = 'fetching' WHERE id = 1;
SELECT n, array(SELECT jsonb_object_keys(payload::jsonb) ORDER BY 1) AS keys,
       (payload::jsonb ->> 'at')::timestamptz = (SELECT phase_updated_at FROM notify_jobs WHERE id = 1) AS at_ok
  FROM pg_temp.received();

-- counter updates and heartbeats send nothing
UPDATE notify_jobs SET completed_items = 5 WHERE id = 1;
UPDATE notify_jobs SET total_items = 10;
SELECT * FROM pg_temp.events('notify_jobs');

-- nothing before commit, nothing after a rollback
BEGIN;
UPDATE notify_jobs SET phase = 'transferring' WHERE id = 1;
SELECT * FROM pg_temp.events('notify_jobs');
COMMIT;
SELECT * FROM pg_temp.events('notify_jobs');
BEGIN;
UPDATE notify_jobs SET phase = 'migrating' WHERE id = 1;
ROLLBACK;
SELECT * FROM pg_temp.events('notify_jobs');
BEGIN;
SAVEPOINT s;
UPDATE notify_jobs SET phase = 'migrating' WHERE id = 1;
ROLLBACK TO SAVEPOINT s;
UPDATE notify_jobs SET phase = 'starting' WHERE id = 2;
COMMIT;
SELECT * FROM pg_temp.events('notify_jobs');
-- nor for a statement that failed
\set VERBOSITY terse
UPDATE notify_jobs SET phase = 'succeeded', completed_items = 100 WHERE id = 1;
\set VERBOSITY default
SELECT * FROM pg_temp.events('notify_jobs');

-- a failure carries its reason: from the reason column, or as fail_stuck() sets it
UPDATE notify_jobs SET phase = 'failed', failure_reason = 'image "web" not found' WHERE id = 2;
SELECT * FROM pg_temp.events('notify_jobs');
CREATE TABLE notify_stuck (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                           phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz);
SELECT relid FROM deploy_progress.track('notify_stuck', progress_deadline => '10 minutes', heartbeat_deadline => NULL);
INSERT INTO notify_stuck VALUES (1, 'building');
SELECT * FROM pg_temp.events('notify_stuck');
SELECT key, reason FROM deploy_progress.fail_stuck('notify_stuck', as_of => now() + interval '1 hour');
SELECT * FROM pg_temp.events('notify_stuck');

-- a channel of its own per table, or none
SELECT relid, notify_channel FROM deploy_progress.track('notify_jobs', notify_channel => 'dp_events');
UPDATE notify_jobs SET phase = 'succeeded', completed_items = 10 WHERE id = 1;
SELECT * FROM pg_temp.events('notify_jobs');
SELECT relid, notify_channel FROM deploy_progress.track('notify_jobs', notify_channel => NULL);
INSERT INTO notify_jobs (id) VALUES (3);
SELECT * FROM pg_temp.events('notify_jobs');

-- Payloads stay far below the 8000-byte limit whatever the key: a long key
-- is cut to at most 128 bytes (on a character boundary: 42 three-byte
-- characters) and flagged; control characters are escaped after the cut.
CREATE TABLE notify_keys (name text PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('notify_keys');
INSERT INTO notify_keys VALUES (repeat('k', 100000), 'queued'),
                               (repeat('€', 5000), 'queued'),
                               (repeat(E'\x01', 3000), 'queued'),
                               ('short', 'queued');
SELECT n, octet_length(payload) < 1000 AS under_1000_bytes,
       octet_length(regexp_replace(payload, '"at":"[^"]*"', '"at":""')) AS bytes_but_time,
       octet_length(payload::jsonb ->> 'key') AS key_bytes,
       ascii(payload::jsonb ->> 'key') AS key_char,
       payload::jsonb -> 'key_truncated' AS key_truncated,
       payload::jsonb ->> 'to' AS to_phase
  FROM pg_temp.received() ORDER BY n;
-- the history keeps the whole key
SELECT octet_length(key) FROM deploy_progress.history
 WHERE relid = 'notify_keys'::regclass ORDER BY 1;

SELECT dblink_disconnect('listener');
SELECT dblink_disconnect('sender');
DROP TABLE notify_jobs, notify_stuck, notify_keys;
DROP EXTENSION dblink;
