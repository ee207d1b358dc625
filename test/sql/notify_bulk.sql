-- Events at bulk scale: a statement that moves more than
-- deploy_progress.notify_bulk_threshold rows of one table sends one summary
-- event per phase entered instead of one event per row; at or below the
-- threshold each transition keeps its own event.  The history keeps every
-- transition either way.  The listener is a dblink session
-- (test/include/notify_listener.sql).
SET TimeZone = 'UTC';
\i test/include/notify_listener.sql

-- what the listener got, with the times checked against the rows and shown
-- as "...": the first row of a summary entered the phase at "at"
CREATE FUNCTION pg_temp.events(tbl regclass)
RETURNS TABLE (payload text, at_ok boolean)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    stamped timestamptz;
BEGIN
    FOR r IN SELECT * FROM pg_temp.received() ORDER BY n LOOP
        EXECUTE format('SELECT phase_updated_at FROM %s WHERE id::text = $1', tbl)
           INTO stamped USING coalesce(r.payload::jsonb ->> 'key', r.payload::jsonb ->> 'first_key');
        payload := regexp_replace(r.payload, '"at":"[^"]*"', '"at":"..."');
        at_ok := (r.payload::jsonb ->> 'at')::timestamptz = stamped;
        RETURN NEXT;
    END LOOP;
END $$;

CREATE TABLE bulk_jobs (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
    phase_updated_at    timestamptz,
    failure_reason      text
);
SELECT relid FROM deploy_progress.track('bulk_jobs');
-- the default (the library is loaded now)
SHOW deploy_progress.notify_bulk_threshold;
SET deploy_progress.notify_bulk_threshold = 3;

-- at the threshold: one event per row, as always
INSERT INTO bulk_jobs (id) SELECT g FROM generate_series(1, 3) g;
SELECT * FROM pg_temp.events('bulk_jobs');
-- above it: one summary, with the first and last key the statement moved
INSERT INTO bulk_jobs (id) SELECT g FROM generate_series(4, 10) g;
SELECT * FROM pg_temp.events('bulk_jobs');
UPDATE bulk_jobs SET phase = 'building' WHERE id >= 4;
SELECT * FROM pg_temp.events('bulk_jobs');
-- the summary's keys, exactly
UPDATE bulk_jobs SET phase = 'fetching' WHERE id >= 4;
SELECT array(SELECT jsonb_object_keys(payload::jsonb) ORDER BY 1) AS keys
  FROM pg_temp.received();
-- the history has every transition
SELECT to_phase, count(*), min(key::integer), max(key::integer)
  FROM deploy_progress.history WHERE relid = 'bulk_jobs'::regclass
 GROUP BY to_phase ORDER BY min(id);

-- several phases in one statement: one summary per phase, in the order the
-- statement first entered each; the reason when all of its rows share it
UPDATE bulk_jobs
   SET phase = CASE WHEN id % 3 = 0 THEN 'failed' ELSE 'building' END::deploy_progress.phase,
       failure_reason = CASE WHEN id % 3 = 0 THEN 'disk full' END;
SELECT * FROM pg_temp.events('bulk_jobs');
UPDATE bulk_jobs SET phase = 'failed', failure_reason = 'reason ' || (id % 2) WHERE phase = 'building';
SELECT * FROM pg_temp.events('bulk_jobs');
SELECT to_phase, count(*) FROM deploy_progress.history
 WHERE relid = 'bulk_jobs'::regclass AND at = (SELECT max(at) FROM deploy_progress.history
                                              WHERE relid = 'bulk_jobs'::regclass)
 GROUP BY to_phase ORDER BY 1;

-- the threshold counts all the table's transitions of the statement, in
-- every phase: 2 + 2 rows, above 3, are two summaries of 2
TRUNCATE bulk_jobs;
INSERT INTO bulk_jobs (id, phase) VALUES (1, 'queued'), (2, 'building'), (3, 'queued'), (4, 'building');
SELECT * FROM pg_temp.events('bulk_jobs');

-- per table: one statement moving 4 rows of one table and 2 of another
CREATE TABLE bulk_other (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                         phase_updated_at timestamptz);
SELECT relid FROM deploy_progress.track('bulk_other');
INSERT INTO bulk_other VALUES (1, 'queued'), (2, 'queued');
SELECT count(*) FROM pg_temp.received();
WITH o AS (UPDATE bulk_other SET phase = 'starting' RETURNING id)
UPDATE bulk_jobs SET phase = 'starting' WHERE phase <> 'starting';
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;

-- threshold -1: one event per row whatever their number
SET deploy_progress.notify_bulk_threshold = -1;
UPDATE bulk_jobs SET phase = 'health_check';
SELECT count(*) AS events, count(*) FILTER (WHERE payload::jsonb ? 'bulk') AS summaries
  FROM pg_temp.received();
-- threshold 0: every statement is summarized, a one-row statement too
SET deploy_progress.notify_bulk_threshold = 0;
UPDATE bulk_jobs SET phase = 'transferring' WHERE id = 1;
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;
UPDATE bulk_jobs SET phase = 'health_check' WHERE id = 1;
SELECT count(*) FROM pg_temp.received();
SET deploy_progress.notify_bulk_threshold = 3;

-- the setting is per session: "sender" has the default, 100
SELECT dblink_exec('sender', 'UPDATE bulk_jobs SET phase = ''finishing''');
SELECT count(*) AS events, count(*) FILTER (WHERE payload::jsonb ? 'bulk') AS summaries
  FROM pg_temp.received();
SELECT dblink_exec('sender', 'SET deploy_progress.notify_bulk_threshold = 2');
SELECT dblink_exec('sender', 'UPDATE bulk_jobs SET phase = ''starting''');
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;
-- ... and per transaction
BEGIN;
SET LOCAL deploy_progress.notify_bulk_threshold = 10;
UPDATE bulk_jobs SET phase = 'finishing';
COMMIT;
SHOW deploy_progress.notify_bulk_threshold;
SELECT count(*) AS events, count(*) FILTER (WHERE payload::jsonb ? 'bulk') AS summaries
  FROM pg_temp.received();

-- per statement: two bulk statements in one transaction send a summary
-- each; many small statements keep their own events
BEGIN;
UPDATE bulk_jobs SET phase = 'building';
UPDATE bulk_jobs SET phase = 'transferring';
COMMIT;
SELECT payload::jsonb ->> 'to' AS to_phase, payload::jsonb ->> 'count' AS count
  FROM pg_temp.received() ORDER BY n;
DO $$
BEGIN
    FOR i IN 1..4 LOOP
        UPDATE bulk_jobs SET phase = 'migrating' WHERE id = i;
    END LOOP;
END $$;
SELECT count(*) AS events, count(*) FILTER (WHERE payload::jsonb ? 'bulk') AS summaries
  FROM pg_temp.received();

-- a statement whose rows fire statements of their own (an audit trigger) is
-- still one statement: one summary, one history flush
CREATE TABLE bulk_audit (id integer, phase text);
CREATE FUNCTION bulk_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bulk_audit VALUES (NEW.id, NEW.phase);
    RETURN NULL;
END $$;
CREATE TRIGGER audit AFTER UPDATE ON bulk_jobs FOR EACH ROW EXECUTE FUNCTION bulk_audit();
SELECT deploy_progress._history_flushes() AS flushes_before \gset
UPDATE bulk_jobs SET phase = 'starting';
SELECT deploy_progress._history_flushes() - :flushes_before AS flushes;
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;
SELECT count(*) FROM bulk_audit;
DROP TRIGGER audit ON bulk_jobs;

-- subtransactions: a rolled-back savepoint sends nothing, neither a bulk
-- statement that ended inside it nor one that failed
BEGIN;
SAVEPOINT s;
UPDATE bulk_jobs SET phase = 'health_check';
ROLLBACK TO SAVEPOINT s;
SAVEPOINT t;
UPDATE bulk_jobs SET phase = 'finishing';
RELEASE SAVEPOINT t;
SAVEPOINT u;
\set VERBOSITY terse
UPDATE bulk_jobs SET phase = 'migrating', id = 1;
\set VERBOSITY default
ROLLBACK TO SAVEPOINT u;
COMMIT;
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;
-- an EXCEPTION block that catches an error after a bulk statement
DO $$
BEGIN
    BEGIN
        UPDATE bulk_jobs SET phase = 'health_check';
        RAISE EXCEPTION 'undo';
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
    UPDATE bulk_jobs SET phase = 'succeeded';
END $$;
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;
SELECT to_phase, count(*) FROM deploy_progress.history
 WHERE relid = 'bulk_jobs'::regclass AND to_phase IN ('health_check', 'succeeded')
 GROUP BY to_phase ORDER BY 1;

-- fail_stuck() of many rows: one summary with the stuck reason
CREATE TABLE bulk_stuck (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                         phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz);
SELECT relid FROM deploy_progress.track('bulk_stuck', progress_deadline => '10 minutes', heartbeat_deadline => NULL);
INSERT INTO bulk_stuck SELECT g, 'building' FROM generate_series(1, 5) g;
SELECT count(*) FROM pg_temp.received();
SELECT count(*) FROM deploy_progress.fail_stuck('bulk_stuck', as_of => now() + interval '1 hour');
SELECT payload::jsonb - 'at' - 'first_key' - 'last_key' AS payload FROM pg_temp.received() ORDER BY n;

-- partitions: counted under the tracked partitioned table, whichever
-- partitions the rows are in
CREATE TABLE bulk_parts (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
                         phase_updated_at timestamptz) PARTITION BY RANGE (id);
CREATE TABLE bulk_parts_1 PARTITION OF bulk_parts FOR VALUES FROM (1) TO (3);
CREATE TABLE bulk_parts_2 PARTITION OF bulk_parts FOR VALUES FROM (3) TO (5);
SELECT relid FROM deploy_progress.track('bulk_parts');
INSERT INTO bulk_parts (id) VALUES (1), (2), (3), (4);
SELECT * FROM pg_temp.events('bulk_parts');
-- a statement on one partition moves 2 rows: per-row events, under the parent
UPDATE bulk_parts_2 SET phase = 'building';
SELECT * FROM pg_temp.events('bulk_parts');
UPDATE bulk_parts SET phase = 'succeeded';
SELECT * FROM pg_temp.events('bulk_parts');
SELECT count(*) FROM deploy_progress.history WHERE relid = 'bulk_parts'::regclass;

-- history off: events only, summarized the same way
SELECT relid, history FROM deploy_progress.track('bulk_other', history => 'off');
INSERT INTO bulk_other SELECT g, 'queued' FROM generate_series(3, 6) g;
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;
SELECT count(*) FROM deploy_progress.history WHERE relid = 'bulk_other'::regclass AND key::integer > 2;

-- a summary's keys are cut like an event's key
CREATE TABLE bulk_keys (name text PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('bulk_keys');
INSERT INTO bulk_keys SELECT repeat('k', 1000) || g, 'queued' FROM generate_series(1, 4) g;
SELECT octet_length(payload) < 1000 AS under_1000_bytes,
       octet_length(payload::jsonb ->> 'first_key') AS first_key_bytes,
       payload::jsonb -> 'first_key_truncated' AS first_key_truncated,
       payload::jsonb -> 'last_key_truncated' AS last_key_truncated,
       payload::jsonb -> 'count' AS count
  FROM pg_temp.received() ORDER BY n;

-- COPY FROM is one statement like any other
CREATE TABLE bulk_copy (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                        phase_updated_at timestamptz);
SELECT relid FROM deploy_progress.track('bulk_copy');
COPY bulk_copy (id, phase) FROM STDIN;
1	queued
2	queued
3	building
4	queued
5	queued
\.
SELECT * FROM pg_temp.events('bulk_copy');
-- ... at the threshold, one event per row
COPY bulk_copy (id, phase) FROM STDIN;
6	queued
7	queued
8	queued
\.
SELECT count(*) AS events, count(*) FILTER (WHERE payload::jsonb ? 'bulk') AS summaries
  FROM pg_temp.received();
-- ... and in a savepoint rolled back later, nothing
BEGIN;
SAVEPOINT s;
COPY bulk_copy (id, phase) FROM STDIN;
9	queued
10	queued
11	queued
12	queued
\.
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) FROM pg_temp.received();
SELECT count(*) FROM deploy_progress.history WHERE relid = 'bulk_copy'::regclass AND key::integer > 8;

-- nested statements: the triggers of a bulk statement move rows of another
-- tracked table; each statement they run is counted on its own, and the
-- outer statement's rows wait for its end
CREATE TABLE bulk_child (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                         phase_updated_at timestamptz);
SELECT relid FROM deploy_progress.track('bulk_child');
INSERT INTO bulk_child SELECT g, 'queued' FROM generate_series(1, 8) g;
SELECT count(*) FROM pg_temp.received();
-- a row trigger: one-row statements, one event each
CREATE FUNCTION bulk_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE bulk_child SET phase = NEW.phase WHERE id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER cascade AFTER UPDATE ON bulk_copy FOR EACH ROW EXECUTE FUNCTION bulk_cascade();
UPDATE bulk_copy SET phase = 'fetching' WHERE id <= 5;
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;
DROP TRIGGER cascade ON bulk_copy;
-- a statement trigger moving 8 rows: their summary, then the outer statement's 2 events
CREATE FUNCTION bulk_cascade_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE bulk_child SET phase = 'building' WHERE phase <> 'building';
    RETURN NULL;
END $$;
CREATE TRIGGER cascade_all AFTER UPDATE ON bulk_copy FOR EACH STATEMENT EXECUTE FUNCTION bulk_cascade_all();
UPDATE bulk_copy SET phase = 'building' WHERE id <= 2;
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;
DROP TRIGGER cascade_all ON bulk_copy;
-- a row trigger whose EXCEPTION block rolls back every other nested update:
-- their events are not sent, and their history is not kept
CREATE FUNCTION bulk_cascade_some() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        UPDATE bulk_child SET phase = NEW.phase WHERE id = NEW.id;
        IF NEW.id % 2 = 0 THEN
            RAISE EXCEPTION 'undo';
        END IF;
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
    RETURN NULL;
END $$;
CREATE TRIGGER cascade_some AFTER UPDATE ON bulk_copy FOR EACH ROW EXECUTE FUNCTION bulk_cascade_some();
UPDATE bulk_copy SET phase = 'transferring' WHERE id <= 5;
SELECT regexp_replace(payload, '"at":"[^"]*"', '"at":"..."') FROM pg_temp.received() ORDER BY n;
SELECT key, to_phase FROM deploy_progress.history
 WHERE relid = 'bulk_child'::regclass AND to_phase = 'transferring' ORDER BY key::integer;
DROP TRIGGER cascade_some ON bulk_copy;

-- a procedure that commits between two bulk statements: a summary each,
-- the first one delivered at the procedure's COMMIT
CREATE PROCEDURE bulk_two_commits() LANGUAGE plpgsql AS $$
BEGIN
    UPDATE bulk_child SET phase = 'health_check';
    COMMIT;
    UPDATE bulk_child SET phase = 'succeeded';
END $$;
CALL bulk_two_commits();
SELECT payload::jsonb ->> 'to' AS to_phase, payload::jsonb ->> 'count' AS count,
       payload::jsonb ->> 'bulk' AS bulk
  FROM pg_temp.received() ORDER BY n;
DROP PROCEDURE bulk_two_commits();

-- bad values are refused and change nothing
\set VERBOSITY terse
SET deploy_progress.notify_bulk_threshold = -2;
SET deploy_progress.notify_bulk_threshold = 'many';
SET deploy_progress.notify_bulk_threshold = 1e10;
\set VERBOSITY default
SHOW deploy_progress.notify_bulk_threshold;
-- before a session loads the library, PostgreSQL takes any value; the
-- library checks it when it loads, and a bad one leaves the default
SELECT dblink_connect('fresh', :'connstr');
SELECT dblink_exec('fresh', 'SET deploy_progress.notify_bulk_threshold = -5');
SELECT * FROM dblink('fresh', 'SELECT deploy_progress.percent(1, 4)') AS t(p double precision);
SELECT * FROM dblink('fresh', 'SHOW deploy_progress.notify_bulk_threshold') AS t(threshold text);
SELECT dblink_disconnect('fresh');

SELECT dblink_disconnect('listener');
SELECT dblink_disconnect('sender');
DROP TABLE bulk_jobs, bulk_other, bulk_audit, bulk_stuck, bulk_parts, bulk_keys, bulk_copy, bulk_child;
DROP FUNCTION bulk_audit(), bulk_cascade(), bulk_cascade_all(), bulk_cascade_some();
DROP EXTENSION dblink;
