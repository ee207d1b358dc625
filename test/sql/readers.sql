-- The global readers keep each table's query prepared for the session
-- (src/readers.c): what they return must still follow every change of the
-- configuration, the tables, the roles and their privileges made in the
-- same session, and a table whose in-flight index is empty is passed over
-- without being read, which must not hide any row.
\set SHOW_CONTEXT never
SET timezone = 'UTC';

CREATE TABLE rd_a (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                   phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
                   tenant name);
CREATE TABLE rd_b (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                   phase_updated_at timestamptz, heartbeat_at timestamptz);
CREATE TABLE rd_idle (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('rd_a');
SELECT relid FROM deploy_progress.track('rd_b');
SELECT relid FROM deploy_progress.track('rd_idle');
SET deploy_progress.stamping = off;
INSERT INTO rd_a VALUES (1, 'building', '2026-01-01 12:00', '2026-01-01 12:00', '2026-01-01 12:00', 'rd_acme'),
                        (2, 'queued', '2026-01-01 12:00', '2026-01-01 12:00', '2026-01-01 12:00', 'rd_globex'),
                        (3, 'succeeded', '2026-01-01 12:00', '2026-01-01 12:00', '2026-01-01 12:00', 'rd_acme');
INSERT INTO rd_b VALUES (1, 'building', '2026-01-01 12:00', '2026-01-01 12:00');
INSERT INTO rd_idle VALUES (1, 'succeeded'), (2, 'failed');
RESET deploy_progress.stamping;

-- the readers, twice (the second call runs the prepared queries)
SELECT relid, key, phase, stuck_reason FROM deploy_progress.in_flight WHERE relid::text LIKE 'rd\_%' ORDER BY 1, 2;
SELECT relid, key, phase, stuck_reason FROM deploy_progress.in_flight WHERE relid::text LIKE 'rd\_%' ORDER BY 1, 2;
SELECT relid, key, reason FROM deploy_progress.stuck(NULL, '2026-01-01 12:06') WHERE relid::text LIKE 'rd\_%';
SELECT relid, key, reason FROM deploy_progress.stuck(NULL, '2026-01-01 12:06') WHERE relid::text LIKE 'rd\_%';

-- with no memory for prepared queries, every table is planned at each call:
-- the same rows
SET deploy_progress.reader_cache_size = 0;
SELECT relid, key, phase, stuck_reason FROM deploy_progress.in_flight WHERE relid::text LIKE 'rd\_%' ORDER BY 1, 2;
SELECT relid, key, reason FROM deploy_progress.stuck(NULL, '2026-01-01 12:06') WHERE relid::text LIKE 'rd\_%';
RESET deploy_progress.reader_cache_size;

-- a table without in-flight rows has none, and zeros in the metrics
SELECT name, labels ->> 'phase' AS phase, value FROM deploy_progress.metrics
 WHERE labels ->> 'table' = 'public.rd_idle'
   AND name IN ('deploy_progress_in_flight', 'deploy_progress_stuck', 'deploy_progress_fleet_stalled', 'deploy_progress_table_skipped')
 ORDER BY name, phase;
-- ... until it has one: a row of this very transaction, then a committed one
BEGIN;
INSERT INTO rd_idle VALUES (3, 'queued');
SELECT relid, key, phase FROM deploy_progress.in_flight WHERE relid = 'rd_idle'::regclass;
SELECT labels ->> 'phase' AS phase, value FROM deploy_progress.metrics
 WHERE labels ->> 'table' = 'public.rd_idle' AND name = 'deploy_progress_in_flight' AND value > 0 ORDER BY 1;
ROLLBACK;
SELECT count(*) AS rolled_back FROM deploy_progress.in_flight WHERE relid = 'rd_idle'::regclass;
UPDATE rd_idle SET phase = 'building' WHERE id = 1;
INSERT INTO rd_idle VALUES (4, 'building');
SELECT relid, key, phase FROM deploy_progress.in_flight WHERE relid = 'rd_idle'::regclass;
DELETE FROM rd_idle WHERE id = 4;
SELECT count(*) AS deleted FROM deploy_progress.in_flight WHERE relid = 'rd_idle'::regclass;

-- a table without an in-flight index, or with one whose predicate is out
-- of date, is read all the same
DROP INDEX rd_idle_dp_in_flight_idx;
INSERT INTO rd_idle VALUES (5, 'queued');
SELECT relid, key, phase FROM deploy_progress.in_flight WHERE relid = 'rd_idle'::regclass;
CREATE INDEX rd_idle_dp_in_flight_idx ON rd_idle (phase) WHERE phase <> 'queued';
SELECT relid, key, phase FROM deploy_progress.in_flight WHERE relid = 'rd_idle'::regclass;
DROP INDEX rd_idle_dp_in_flight_idx;
SELECT relid FROM deploy_progress.track('rd_idle');
SELECT relid, key, phase FROM deploy_progress.in_flight WHERE relid = 'rd_idle'::regclass;

-- a new deadline, in the same session: the prepared queries follow it
SELECT relid FROM deploy_progress.track('rd_b', heartbeat_deadline => '1 hour');
SELECT relid, key, reason FROM deploy_progress.stuck(NULL, '2026-01-01 12:06') WHERE relid::text LIKE 'rd\_%';
-- and a lifecycle's new deadline, for every table that uses it
SELECT count(*) FROM deploy_progress.define_lifecycle('rd_life', '[
    {"phase": "todo",  "kind": "pending", "deadline": "1 hour"},
    {"phase": "doing", "kind": "active"},
    {"phase": "done",  "kind": "succeeded"},
    {"phase": "oops",  "kind": "failed"}]');
CREATE TABLE rd_c (id integer PRIMARY KEY, phase text NOT NULL, phase_updated_at timestamptz);
SELECT relid FROM deploy_progress.track('rd_c', lifecycle => 'rd_life');
SET deploy_progress.stamping = off;
INSERT INTO rd_c VALUES (1, 'todo', '2026-01-01 12:00');
RESET deploy_progress.stamping;
SELECT relid, key, reason FROM deploy_progress.stuck('rd_c', '2026-01-01 12:06');
SELECT count(*) FROM deploy_progress.define_lifecycle('rd_life', '[
    {"phase": "todo",  "kind": "pending", "deadline": "5 minutes"},
    {"phase": "doing", "kind": "active"},
    {"phase": "done",  "kind": "succeeded"},
    {"phase": "oops",  "kind": "failed"}]');
SELECT relid, key, reason FROM deploy_progress.stuck('rd_c', '2026-01-01 12:06');

-- a table broken after its query was prepared is skipped with a warning,
-- the others are read; asked about by name, it raises the error
SELECT relid, key FROM deploy_progress.in_flight WHERE relid::text LIKE 'rd\_%' ORDER BY 1, 2;
ALTER TABLE rd_b DROP COLUMN heartbeat_at;
SELECT relid, key FROM deploy_progress.in_flight WHERE relid::text LIKE 'rd\_%' ORDER BY 1, 2;
SELECT relid, key FROM deploy_progress.stuck(NULL, '2026-01-01 12:06') WHERE relid::text LIKE 'rd\_%';
SELECT name, value FROM deploy_progress.metrics
 WHERE labels ->> 'table' = 'public.rd_b' AND name = 'deploy_progress_table_skipped';
SELECT count(*) FROM deploy_progress.fail_stuck(NULL, as_of => '2026-01-01 12:00');
DO $$
BEGIN
    PERFORM deploy_progress.in_flight('rd_b');
EXCEPTION WHEN undefined_column THEN
    RAISE NOTICE 'in_flight(rd_b) raised %: %', SQLSTATE, SQLERRM;
END
$$;
-- mended, it is read again
SELECT relid FROM deploy_progress.track('rd_b');
SELECT relid, key FROM deploy_progress.in_flight('rd_b');

-- fail_stuck() fails what stuck() reports, and nothing where nothing is stuck
SELECT relid, key, reason FROM deploy_progress.fail_stuck(NULL, as_of => '2026-01-01 12:01') WHERE relid::text LIKE 'rd\_%';
SELECT relid, key, from_phase, to_phase, reason FROM deploy_progress.fail_stuck(NULL, as_of => '2026-01-01 12:06')
 WHERE relid::text LIKE 'rd\_%' ORDER BY 1, 2;
SELECT relid, key FROM deploy_progress.stuck(NULL, '2026-01-01 12:06') WHERE relid::text LIKE 'rd\_%';

-- roles, in one session: each sees the rows its privileges and policies
-- let it read, whoever ran the prepared queries before it
CREATE ROLE rd_acme;
CREATE ROLE rd_globex;
SET deploy_progress.stamping = off;
INSERT INTO rd_a VALUES (4, 'building', '2026-01-01 12:00', '2026-01-01 12:00', '2026-01-01 12:00', 'rd_acme'),
                        (5, 'building', '2026-01-01 12:00', '2026-01-01 12:00', '2026-01-01 12:00', 'rd_globex');
RESET deploy_progress.stamping;
SELECT relid, key FROM deploy_progress.in_flight WHERE relid::text LIKE 'rd\_%' ORDER BY 1, 2;
ALTER TABLE rd_a ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON rd_a USING (tenant = current_user);
GRANT SELECT ON rd_a TO rd_acme, rd_globex;
SET ROLE rd_acme;
SELECT relid, key FROM deploy_progress.in_flight ORDER BY 1, 2;
SELECT relid, key, reason FROM deploy_progress.stuck(NULL, '2026-01-01 13:00') ORDER BY 1, 2;
SELECT labels ->> 'phase' AS phase, value FROM deploy_progress.metrics
 WHERE name = 'deploy_progress_in_flight' AND value > 0 ORDER BY 1;
SET ROLE rd_globex;
SELECT relid, key FROM deploy_progress.in_flight ORDER BY 1, 2;
SELECT relid, key, reason FROM deploy_progress.stuck(NULL, '2026-01-01 13:00') ORDER BY 1, 2;
SELECT labels ->> 'phase' AS phase, value FROM deploy_progress.metrics
 WHERE name = 'deploy_progress_in_flight' AND value > 0 ORDER BY 1;
RESET ROLE;
SELECT relid, key FROM deploy_progress.in_flight WHERE relid::text LIKE 'rd\_%' ORDER BY 1, 2;
-- a policy that calls a reader: the reader inside the reader plans its own
-- queries
GRANT SELECT ON rd_idle TO rd_globex;
CREATE POLICY nested ON rd_a AS RESTRICTIVE USING ((SELECT count(*) FROM deploy_progress.in_flight('rd_idle')) >= 0);
SET ROLE rd_globex;
SELECT relid, key FROM deploy_progress.in_flight ORDER BY 1, 2;
SELECT relid, key FROM deploy_progress.in_flight ORDER BY 1, 2;
RESET ROLE;
DROP POLICY nested ON rd_a;
-- a privilege revoked: the table is no longer read, and asked about by
-- name, the error says why
REVOKE SELECT ON rd_a FROM rd_acme;
SET ROLE rd_acme;
SELECT relid, key FROM deploy_progress.in_flight ORDER BY 1, 2;
SELECT relid, key FROM deploy_progress.in_flight('rd_a');
RESET ROLE;

DROP TABLE rd_a, rd_b, rd_c, rd_idle;
SELECT deploy_progress.drop_lifecycle('rd_life');
DROP ROLE rd_acme;
DROP ROLE rd_globex;
