-- Privileges: a role that is not a superuser tracks the tables it owns and
-- no others (whatever privileges it holds on them), and every reader of
-- figures (stuck(), in_flight, progress(), describe(), timings(),
-- fail_stuck()) sees only what the role may read: nothing from tables it
-- cannot read, nothing from a table it can read only some columns of, and,
-- under row-level security, only the rows the policies show it.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';
-- errors raised by the generated queries carry them as context: leave it out
\set SHOW_CONTEXT never

CREATE ROLE pv_owner;
CREATE ROLE pv_other;
CREATE ROLE pv_reader;
GRANT CREATE ON SCHEMA public TO pv_owner, pv_other;

--------------------------------------------------------------------------
-- 1. tracking is for owners
--------------------------------------------------------------------------

SET ROLE pv_owner;
CREATE TABLE pv_jobs (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
    completed_items     integer,
    total_items         integer,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    failure_reason      text
);
-- the owner, not a superuser, tracks its table: triggers and partial index
SELECT relid, lifecycle, storage FROM deploy_progress.track('pv_jobs');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'pv_jobs'::regclass AND NOT tgisinternal ORDER BY 1;
SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'pv_jobs'::regclass AND NOT indisprimary;
RESET ROLE;

-- another role holding every privilege on the table is still not its owner
GRANT ALL ON pv_jobs TO pv_other;
SET ROLE pv_other;
SELECT deploy_progress.track('pv_jobs', allow_restart => true);
SELECT deploy_progress.untrack('pv_jobs');
SELECT deploy_progress.in_flight_index_statement('pv_jobs') IS NOT NULL AS can_read_statement;
-- the tables it owns are its to track
CREATE TABLE pv_mine (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid, storage FROM deploy_progress.track('pv_mine');
SELECT deploy_progress.untrack('pv_mine');
DROP TABLE pv_mine;
-- writing the owner's table is fine: the triggers stamp as the writer
INSERT INTO pv_jobs (id, phase, completed_items, total_items) VALUES (100, 'building', 0, 10);
SELECT phase, started_at IS NOT NULL AS started, heartbeat_at IS NOT NULL AS beat FROM pv_jobs WHERE id = 100;
DELETE FROM pv_jobs WHERE id = 100;
RESET ROLE;
REVOKE ALL ON pv_jobs FROM pv_other;
SELECT allow_restart FROM deploy_progress.tracked WHERE relid = 'pv_jobs'::regclass;

--------------------------------------------------------------------------
-- 2. readers see what they may read
--------------------------------------------------------------------------

-- T = 12:00; every reader looks as of 13:00, when rows 1 to 3 are stuck
SET deploy_progress.stamping = off;
INSERT INTO pv_jobs (id, phase, completed_items, total_items, phase_updated_at, progress_updated_at, heartbeat_at, started_at) VALUES
    (1, 'building',     1, 10, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00'),
    (2, 'transferring', 2, 10, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00'),
    (3, 'migrating',    3, 10, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00'),
    (4, 'succeeded',   10, 10, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 11:00+00');
RESET deploy_progress.stamping;

-- what the owner sees
SET ROLE pv_owner;
SELECT key, reason FROM deploy_progress.stuck('pv_jobs', '2026-01-01 13:00+00') ORDER BY key;
SELECT key, phase, stuck_reason FROM deploy_progress.in_flight('pv_jobs', '2026-01-01 13:00+00') ORDER BY key;
SELECT deploy_progress.describe('pv_jobs', '2', '2026-01-01 13:00+00');
RESET ROLE;

-- a role without any privilege on the table: stuck() and in_flight skip
-- the table, the functions reading one row refuse, fail_stuck() leaves it
SET ROLE pv_reader;
SELECT count(*) AS stuck_rows FROM deploy_progress.stuck(as_of => '2026-01-01 13:00+00') WHERE relid = 'pv_jobs'::regclass;
SELECT count(*) AS stuck_rows FROM deploy_progress.stuck('pv_jobs', '2026-01-01 13:00+00');
SELECT count(*) AS in_flight_rows FROM deploy_progress.in_flight WHERE relid = 'pv_jobs'::regclass;
SELECT count(*) AS in_flight_rows FROM deploy_progress.in_flight('pv_jobs', '2026-01-01 13:00+00');
SELECT deploy_progress.progress('pv_jobs', '1', '2026-01-01 13:00+00');
SELECT deploy_progress.describe('pv_jobs', '1', '2026-01-01 13:00+00');
SELECT * FROM deploy_progress.timings('pv_jobs', '1');
SELECT count(*) AS failed FROM deploy_progress.fail_stuck(as_of => '2026-01-01 13:00+00');
SELECT count(*) AS failed FROM deploy_progress.fail_stuck('pv_jobs', as_of => '2026-01-01 13:00+00');
RESET ROLE;

-- a role that may read some columns only cannot read the table: the same
GRANT SELECT (id, phase) ON pv_jobs TO pv_reader;
SET ROLE pv_reader;
SELECT count(*) AS visible_rows FROM pv_jobs;
SELECT count(*) AS stuck_rows FROM deploy_progress.stuck('pv_jobs', '2026-01-01 13:00+00');
SELECT count(*) AS in_flight_rows FROM deploy_progress.in_flight('pv_jobs', '2026-01-01 13:00+00');
SELECT deploy_progress.progress('pv_jobs', '1', '2026-01-01 13:00+00');
RESET ROLE;
REVOKE SELECT (id, phase) ON pv_jobs FROM pv_reader;

-- row-level security: a reader allowed rows 1 and 4 only sees row 1 stuck
-- and in flight, cannot read the figures of row 2, and a sweep with UPDATE
-- privilege fails row 1 only
ALTER TABLE pv_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY pv_some ON pv_jobs TO pv_reader USING (id IN (1, 4));
GRANT SELECT, UPDATE ON pv_jobs TO pv_reader;
SET ROLE pv_reader;
SELECT key, reason FROM deploy_progress.stuck(as_of => '2026-01-01 13:00+00') WHERE relid = 'pv_jobs'::regclass ORDER BY key;
SELECT key, phase, stuck_reason FROM deploy_progress.in_flight('pv_jobs', '2026-01-01 13:00+00') ORDER BY key;
SELECT deploy_progress.progress('pv_jobs', '1', '2026-01-01 13:00+00') ->> 'phase' AS row_1;
SELECT deploy_progress.progress('pv_jobs', '2', '2026-01-01 13:00+00');
SELECT key, from_phase, to_phase, reason FROM deploy_progress.fail_stuck('pv_jobs', as_of => '2026-01-01 13:00+00');
RESET ROLE;
SELECT id, phase, failure_reason FROM pv_jobs ORDER BY id;
-- the owner is not subject to its policies (unless forced)
SET ROLE pv_owner;
SELECT key, reason FROM deploy_progress.stuck('pv_jobs', '2026-01-01 13:00+00') ORDER BY key;
RESET ROLE;

DROP TABLE pv_jobs;
REVOKE CREATE ON SCHEMA public FROM pv_owner, pv_other;
DROP ROLE pv_owner;
DROP ROLE pv_other;
DROP ROLE pv_reader;
