-- Stuck detection: each reason at its boundary, rows that are never stuck,
-- reasons limited to the columns a table has, fail_stuck(), the in-flight
-- index (EXPLAIN), HOT heartbeats, privileges and dropped tables.
--
-- Timings are written by hand with stamping off, so that every clock is a
-- fixed time T = 2026-01-01 12:00:00+00 and every check passes an explicit
-- "as of" time.
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

CREATE TABLE stuck_jobs (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL,
    completed_items     integer,
    total_items         integer,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    failure_reason      text
);
SELECT relid, queue_deadline, phase_deadline, progress_deadline, heartbeat_deadline, columns ->> 'failure_reason' AS reason_column
  FROM deploy_progress.track('stuck_jobs', phase_deadline => '30 minutes');

SET deploy_progress.stamping = off;
-- q:  queued at T; the built-in lifecycle gives "queued" a 15 minute deadline
-- hb: building, nothing written since T (heartbeat deadline 5 minutes)
-- np: building, still writing (heartbeat T+20m) but no progress since T (10 minutes)
-- ph: building since T, progress and heartbeat at T+28m (phase deadline 30 minutes)
-- w:  waiting since T: never stuck
-- s:  succeeded at T: never stuck
INSERT INTO stuck_jobs VALUES
    (1, 'queued',    NULL, NULL, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', NULL, NULL, NULL),
    (2, 'building',  0,    10,   '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', NULL, NULL),
    (3, 'building',  0,    10,   '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:20+00', '2026-01-01 12:00+00', NULL, NULL),
    (4, 'building',  5,    10,   '2026-01-01 12:00+00', '2026-01-01 12:28+00', '2026-01-01 12:28+00', '2026-01-01 12:00+00', NULL, NULL),
    (5, 'waiting',   NULL, NULL, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 11:00+00', NULL, NULL),
    (6, 'succeeded', 10,   10,   '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 11:00+00', '2026-01-01 12:00+00', NULL);
RESET deploy_progress.stamping;

-- no_heartbeat: exactly at the deadline a row is not stuck, just past it it is
SELECT key, reason, clock_started_at, deadline, overdue_by
  FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:05:00+00');
SELECT key, reason, clock_started_at, deadline, overdue_by
  FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:05:00.000001+00');

-- no_progress: row 3 keeps writing heartbeats but its counters are frozen
SELECT key, reason, overdue_by
  FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:10:00+00') WHERE key = '3';
SELECT key, reason, overdue_by
  FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:10:01+00') WHERE key = '3';

-- queue_overdue: row 1, 15 minutes in the queue
SELECT key, reason, overdue_by
  FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:15:00+00') WHERE key = '1';
SELECT key, reason, overdue_by
  FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:15:01+00') WHERE key = '1';

-- phase_overdue: row 4 is moving (progress and heartbeat at 12:28) but has
-- been building for longer than the table's 30 minute phase deadline
SELECT key, reason, overdue_by
  FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:30:00+00') WHERE key = '4';
SELECT key, reason, overdue_by
  FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:30:01+00') WHERE key = '4';

-- a day later: every active and pending row is stuck, the waiting and the
-- succeeded rows still are not; each row is reported once, with its most
-- telling reason (no_heartbeat before no_progress before phase_overdue)
SELECT key, phase, reason, overdue_by
  FROM deploy_progress.stuck('stuck_jobs', '2026-01-02 12:00:00+00') ORDER BY key;

-- without the table's phase deadline the lifecycle's applies, and the
-- built-in lifecycle gives active phases none
SELECT relid FROM deploy_progress.track('stuck_jobs');
SELECT key, reason FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:30:01+00') WHERE key = '4';

-- deadlines switched off per table
SELECT relid FROM deploy_progress.track('stuck_jobs', heartbeat_deadline => NULL, progress_deadline => NULL,
                                        phase_deadline => '30 minutes');
SELECT key, reason FROM deploy_progress.stuck('stuck_jobs', '2026-01-01 12:30:01+00') ORDER BY key;

-- reasons are computed only from the columns a table has: no heartbeat or
-- progress columns here, so only phase and queue deadlines apply
CREATE TABLE stuck_lean (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, phase_updated_at timestamptz);
SELECT relid, columns ->> 'heartbeat_at' AS heartbeat_column, columns ->> 'progress_updated_at' AS progress_updated_column FROM deploy_progress.track('stuck_lean', phase_deadline => '1 hour');
SET deploy_progress.stamping = off;
INSERT INTO stuck_lean VALUES (1, 'building', '2026-01-01 12:00+00'), (2, 'queued', '2026-01-01 12:00+00');
RESET deploy_progress.stamping;
SELECT key, reason, deadline FROM deploy_progress.stuck('stuck_lean', '2026-01-01 12:59:00+00') ORDER BY key;
SELECT key, reason, deadline FROM deploy_progress.stuck('stuck_lean', '2026-01-01 13:00:01+00') ORDER BY key;

-- all tracked tables at once
SELECT relid, key, reason FROM deploy_progress.stuck(as_of => '2026-01-01 13:00:01+00') ORDER BY relid::text, key;

-- side-table storage: the clocks come from deploy_progress.timings
CREATE TABLE stuck_side (id integer PRIMARY KEY, phase text NOT NULL, completed_items integer, total_items integer);
SELECT count(*) FROM deploy_progress.define_lifecycle('stuck_simple', '[
    {"phase": "todo",    "kind": "pending", "deadline": "1 minute"},
    {"phase": "running", "kind": "active",  "deadline": "1 hour"},
    {"phase": "done",    "kind": "succeeded"},
    {"phase": "broken",  "kind": "failed"}]');
SELECT relid, storage FROM deploy_progress.track('stuck_side', lifecycle => 'stuck_simple');
INSERT INTO stuck_side VALUES (1, 'running', 0, 5), (2, 'todo', NULL, NULL), (3, 'done', 5, 5);
UPDATE deploy_progress.timings SET phase_updated_at = '2026-01-01 12:00+00', progress_updated_at = '2026-01-01 12:00+00',
                                   heartbeat_at = '2026-01-01 12:04+00'
 WHERE relid = 'stuck_side'::regclass;
-- 12:06: the queued row is past its 1 minute lifecycle deadline; the
-- running row wrote a heartbeat at 12:04 and is within every deadline
SELECT key, reason, clock_started_at, deadline FROM deploy_progress.stuck('stuck_side', '2026-01-01 12:06:00+00') ORDER BY key;
-- 13:00:01: past the running phase's 1 hour lifecycle deadline, but the
-- heartbeat (12:04 + 5 min) and progress (12:00 + 10 min) deadlines come first
SELECT key, reason, clock_started_at, deadline FROM deploy_progress.stuck('stuck_side', '2026-01-01 13:00:01+00') ORDER BY key;
SELECT relid FROM deploy_progress.track('stuck_side', lifecycle => 'stuck_simple', heartbeat_deadline => NULL, progress_deadline => NULL);
SELECT key, reason, clock_started_at, deadline FROM deploy_progress.stuck('stuck_side', '2026-01-01 13:00:01+00') ORDER BY key;

-- fail_stuck(): moves stuck rows to the lifecycle's failed phase, records
-- the reason in the reason column, returns what it did, and is idempotent
SELECT relid FROM deploy_progress.track('stuck_jobs', phase_deadline => '30 minutes');
SELECT * FROM deploy_progress.fail_stuck('stuck_jobs', as_of => '2026-01-01 12:10:01+00');
SELECT id, phase, failure_reason, finished_at IS NOT NULL AS finished FROM stuck_jobs ORDER BY id;
SELECT * FROM deploy_progress.fail_stuck('stuck_jobs', as_of => '2026-01-01 12:10:01+00');
-- small batches reach every stuck row
SELECT relid, key, reason FROM deploy_progress.fail_stuck(batch_size => 1, as_of => '2026-01-02 12:00:00+00')
 ORDER BY relid::text, key;
SELECT id, phase, failure_reason FROM stuck_jobs ORDER BY id;
SELECT id, phase FROM stuck_side ORDER BY id;

-- errors
SELECT * FROM deploy_progress.stuck('pg_class');
SELECT * FROM deploy_progress.fail_stuck('stuck_jobs', batch_size => 0);
SELECT * FROM deploy_progress.stuck('stuck_jobs', NULL);

-- The in-flight index: 100,000 rows, a handful in flight.  stuck() runs the
-- query that _stuck_query() gives; its plan reads the partial index.
CREATE TABLE stuck_big (
    id bigint PRIMARY KEY, phase deploy_progress.phase NOT NULL,
    completed_items bigint, total_items bigint,
    phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
    started_at timestamptz, finished_at timestamptz
) WITH (fillfactor = 90);
SELECT relid FROM deploy_progress.track('stuck_big');
INSERT INTO stuck_big (id, phase, completed_items, total_items)
SELECT g, CASE WHEN g % 20000 = 0 THEN 'transferring' ELSE 'succeeded' END::deploy_progress.phase, 0, 100
  FROM generate_series(1, 100000) g;
ANALYZE stuck_big;
SELECT indexrelid::regclass, pg_get_indexdef(indexrelid)
  FROM pg_index WHERE indrelid = 'stuck_big'::regclass AND NOT indisprimary;
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) ' || replace(q, '$1', 'now()');
END $$;
-- (only the scan of stuck_big is shown: the rest of the plan depends on
-- the statistics of the lifecycle table)
SELECT regexp_replace(p, '^\s*(->\s*)?', '') AS scan_of_stuck_big
  FROM pg_temp.plan_of((SELECT deploy_progress._stuck_query(t) FROM deploy_progress.tracked t
                         WHERE relid = 'stuck_big'::regclass)) AS p
 WHERE p ~ 'on stuck_big';
SELECT count(*) AS in_flight_stuck_in_a_day
  FROM deploy_progress.stuck('stuck_big', now() + interval '1 day');

-- heartbeats and counter updates change no indexed column: they are HOT
BEGIN;
UPDATE stuck_big SET completed_items = completed_items + 1 WHERE id = 20000;
UPDATE stuck_big SET completed_items = completed_items + 1 WHERE id = 20000;
UPDATE stuck_big SET total_items = 200 WHERE id = 40000;
SELECT pg_stat_get_xact_tuples_updated('stuck_big'::regclass) AS updated,
       pg_stat_get_xact_tuples_hot_updated('stuck_big'::regclass) AS hot_updated;
COMMIT;
-- a phase change updates the indexed column: not HOT
BEGIN;
UPDATE stuck_big SET phase = 'migrating' WHERE id = 20000;
SELECT pg_stat_get_xact_tuples_hot_updated('stuck_big'::regclass) AS hot_updated;
COMMIT;

-- track(create_index => false) leaves the index to the user and says how
CREATE TABLE stuck_noidx (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('stuck_noidx', create_index => false);
SELECT deploy_progress.in_flight_index_statement('stuck_noidx');
SELECT count(*) FROM pg_index WHERE indrelid = 'stuck_noidx'::regclass AND NOT indisprimary;

-- untrack() drops the in-flight index with the triggers
SELECT deploy_progress.untrack('stuck_big');
SELECT count(*) FROM pg_index WHERE indrelid = 'stuck_big'::regclass AND NOT indisprimary;

-- privileges: a role sees the stuck rows of the tables it can read, and
-- none of the others; fail_stuck() touches only tables it may update
SET deploy_progress.stamping = off;
INSERT INTO stuck_lean VALUES (3, 'queued', '2026-01-01 12:00+00');
INSERT INTO stuck_jobs (id, phase, phase_updated_at) VALUES (7, 'queued', '2026-01-01 12:00+00');
RESET deploy_progress.stamping;
CREATE ROLE stuck_reader;
GRANT SELECT ON stuck_lean TO stuck_reader;
SET ROLE stuck_reader;
SELECT relid, key, reason FROM deploy_progress.stuck(as_of => '2026-01-02 12:00:00+00') ORDER BY relid::text, key;
SELECT * FROM deploy_progress.fail_stuck(as_of => '2026-01-02 12:00:00+00');
RESET ROLE;
SELECT relid, key, reason FROM deploy_progress.stuck(as_of => '2026-01-02 12:00:00+00') ORDER BY relid::text, key;
REVOKE SELECT ON stuck_lean FROM stuck_reader;
DROP ROLE stuck_reader;

-- dropping a tracked table is not blocked and leaves no tracking behind
DROP TABLE stuck_lean;
SELECT count(*) FROM deploy_progress.tracked WHERE relid::text = 'stuck_lean';
SELECT relid, key, reason FROM deploy_progress.stuck(as_of => '2026-01-02 12:00:00+00') ORDER BY relid::text, key;

DROP TABLE stuck_jobs, stuck_side, stuck_big, stuck_noidx;
SELECT deploy_progress.drop_lifecycle('stuck_simple');
