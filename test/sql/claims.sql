-- Owners and leases: claim() and release(), the owners view, the stuck
-- reason owner_gone (stuck(), in_flight, fail_stuck()), taking over the
-- claim of a session that is gone, the lease (an owner's write to a row
-- someone else ended is refused), the owner ending its own row, who may
-- claim, untrack() and DROP TABLE, and every error.
--
-- A session that is gone is a claim row written by hand whose process ID
-- and start time name no session (this session's process ID with another
-- start time, or a process ID no backend has); a live session other than
-- this one is a server process that stays up (the logical replication
-- launcher).  Timings are written with stamping off at T = 2026-01-01
-- 12:00:00+00 and stuck() is asked as of T + 1 hour.
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

CREATE TABLE claim_jobs (
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
SELECT relid FROM deploy_progress.track('claim_jobs');

SET deploy_progress.stamping = off;
-- 1 queued, 2-3 and 5-6 building, 4 succeeded, 7 failed (by fail_stuck, say)
-- row 6's heartbeat is recent (T + 59 minutes): only owner_gone can catch it
INSERT INTO claim_jobs VALUES
    (1, 'queued',    NULL, NULL, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', NULL, NULL, NULL),
    (2, 'building',  0,    10,   '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:59+00', '2026-01-01 12:00+00', NULL, NULL),
    (3, 'building',  0,    10,   '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', NULL, NULL),
    (4, 'succeeded', 10,   10,   '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 11:00+00', '2026-01-01 12:00+00', NULL),
    (5, 'waiting',   NULL, NULL, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 11:00+00', NULL, NULL),
    (6, 'building',  0,    10,   '2026-01-01 12:00+00', '2026-01-01 12:59+00', '2026-01-01 12:59+00', '2026-01-01 12:00+00', NULL, NULL),
    (7, 'failed',    3,    10,   '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 11:00+00', '2026-01-01 12:00+00', 'no_heartbeat');
RESET deploy_progress.stamping;

-- this session's start time, as pg_stat_activity shows it
SELECT backend_start AS my_start FROM pg_stat_activity WHERE pid = pg_backend_pid() \gset

--------------------------------------------------------------------------
-- claim() and release()
--------------------------------------------------------------------------

SELECT deploy_progress.claim('claim_jobs', '2');
SELECT relid, key, pid = pg_backend_pid() AS mine_pid, backend_start = :'my_start' AS mine_start, alive
  FROM deploy_progress.owners;
-- claiming it again keeps the claim as it is
SELECT claimed_at AS first_claimed FROM deploy_progress.claims WHERE key = '2' \gset
SELECT deploy_progress.claim('claim_jobs', '2');
SELECT claimed_at = :'first_claimed' AS unchanged FROM deploy_progress.claims WHERE key = '2';
-- a live owner's row is not stuck, and its worker's writes go on
SELECT key, reason FROM deploy_progress.stuck('claim_jobs', '2026-01-01 13:00+00') ORDER BY key;
UPDATE claim_jobs SET completed_items = 4 WHERE id = 2;
SELECT deploy_progress.release('claim_jobs', '2');
SELECT deploy_progress.release('claim_jobs', '2');
SELECT count(*) FROM deploy_progress.owners;

--------------------------------------------------------------------------
-- owner_gone: claims of sessions that are gone
--------------------------------------------------------------------------

-- row 3: this session's process ID with another start time (the pid was
-- reused); row 5 (waiting): a process ID no backend has; row 6: the same
-- with a recent heartbeat
INSERT INTO deploy_progress.claims VALUES
    ('claim_jobs', '3', pg_backend_pid(), '2000-01-01 00:00+00', '2026-01-01 12:00+00'),
    ('claim_jobs', '5', 2147483647,       '2000-01-01 00:00+00', '2026-01-01 12:10+00'),
    ('claim_jobs', '6', 2147483647,       '2000-01-01 00:00+00', '2026-01-01 12:20+00');
SELECT key, alive FROM deploy_progress.owners ORDER BY key;
-- owner_gone comes first (row 3 is past its heartbeat deadline too), in
-- every in-flight kind, with no deadline: the clock is the claim's time
SELECT key, phase, reason, clock_started_at, deadline, overdue_by
  FROM deploy_progress.stuck('claim_jobs', '2026-01-01 13:00+00');
SELECT key, stuck_reason FROM deploy_progress.in_flight('claim_jobs', '2026-01-01 13:00+00') ORDER BY key;
SELECT labels ->> 'reason' AS reason, value FROM deploy_progress.metrics
 WHERE name = 'deploy_progress_stuck' AND labels ->> 'table' = 'public.claim_jobs' AND labels ->> 'reason' = 'owner_gone';
-- fail_stuck() fails them with reason owner_gone
SELECT key, from_phase, to_phase, reason
  FROM deploy_progress.fail_stuck('claim_jobs', as_of => '2026-01-01 13:00+00') ORDER BY key;
SELECT id, phase, failure_reason FROM claim_jobs WHERE id IN (3, 5, 6) ORDER BY id;
SELECT key, to_phase, reason FROM deploy_progress.transitions
 WHERE relid = 'claim_jobs'::regclass AND to_phase = 'failed' ORDER BY key;
-- and their claims, held by nobody, went with them
SELECT count(*) FROM deploy_progress.claims WHERE key IN ('3', '5', '6');

-- rows 9 (building) and 10 (queued), stamped now: never stuck as of T + 1 hour
INSERT INTO claim_jobs (id, phase, completed_items, total_items) VALUES (9, 'building', 0, 10), (10, 'queued', NULL, NULL);

-- a claim of a session that is gone is taken over
SET deploy_progress.stamping = off;
INSERT INTO claim_jobs VALUES
    (8, 'building', 0, 10, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:59+00', '2026-01-01 12:00+00', NULL, NULL);
RESET deploy_progress.stamping;
INSERT INTO deploy_progress.claims VALUES ('claim_jobs', '8', 2147483647, '2000-01-01 00:00+00', '2026-01-01 12:00+00');
SELECT key, reason FROM deploy_progress.stuck('claim_jobs', '2026-01-01 13:00+00');
SELECT deploy_progress.claim('claim_jobs', '8');
SELECT key, pid = pg_backend_pid() AS mine, claimed_at > '2026-01-01 12:00+00' AS new_claim, alive
  FROM deploy_progress.owners WHERE key = '8';
SELECT key, reason FROM deploy_progress.stuck('claim_jobs', '2026-01-01 13:00+00');

--------------------------------------------------------------------------
-- The lease, and the owner ending its own row
--------------------------------------------------------------------------

-- row 7 failed while this session claimed it (the claim row stands for a
-- claim() made before fail_stuck() failed the row in another session):
-- the worker's next write is refused, whatever it writes, and changes nothing
INSERT INTO deploy_progress.claims VALUES ('claim_jobs', '7', pg_backend_pid(), :'my_start', '2026-01-01 11:00+00');
UPDATE claim_jobs SET completed_items = 7 WHERE id = 7;
UPDATE claim_jobs SET phase = 'succeeded' WHERE id = 7;
SELECT id, phase, completed_items, heartbeat_at FROM claim_jobs WHERE id = 7;
-- the reason comes from the history where the table has no failure reason column
ALTER TABLE claim_jobs RENAME COLUMN failure_reason TO why;
SELECT relid FROM deploy_progress.track('claim_jobs');
UPDATE claim_jobs SET completed_items = 7 WHERE id = 3;
INSERT INTO deploy_progress.claims VALUES ('claim_jobs', '3', pg_backend_pid(), :'my_start', '2026-01-01 11:00+00');
UPDATE claim_jobs SET completed_items = 7 WHERE id = 3;
-- once released, the row is an ordinary ended row again
SELECT deploy_progress.release('claim_jobs', '7');
UPDATE claim_jobs SET completed_items = 7 WHERE id = 7;
SELECT id, completed_items FROM claim_jobs WHERE id = 7;

-- the owner moving its row to a terminal phase ends its claim
SELECT key FROM deploy_progress.owners WHERE key = '8';
UPDATE claim_jobs SET completed_items = 10 WHERE id = 8;
UPDATE claim_jobs SET phase = 'succeeded' WHERE id = 8;
SELECT count(*) FROM deploy_progress.owners WHERE key = '8';
UPDATE claim_jobs SET completed_items = 10 WHERE id = 8;

--------------------------------------------------------------------------
-- A new run of a row removes the claims of the earlier one
--------------------------------------------------------------------------

-- a deleted row whose owner is gone: its key used again is a new row, not
-- owner_gone
INSERT INTO claim_jobs (id, phase, completed_items, total_items) VALUES (11, 'building', 0, 10);
INSERT INTO deploy_progress.claims VALUES ('claim_jobs', '11', 2147483647, '2000-01-01 00:00+00', '2026-01-01 12:00+00');
SELECT key, reason FROM deploy_progress.stuck('claim_jobs', now()) WHERE key = '11';
DELETE FROM claim_jobs WHERE id = 11;
SELECT key, alive FROM deploy_progress.owners WHERE key = '11';
INSERT INTO claim_jobs (id, phase, completed_items, total_items) VALUES (11, 'building', 0, 10);
SELECT count(*) FROM deploy_progress.owners WHERE key = '11';
SELECT key, reason FROM deploy_progress.stuck('claim_jobs', now()) WHERE key = '11';
-- a deleted row this session claimed: the new row is free to claim
SELECT deploy_progress.claim('claim_jobs', '11');
DELETE FROM claim_jobs WHERE id = 11;
INSERT INTO claim_jobs (id, phase, completed_items, total_items) VALUES (11, 'building', 0, 10);
SELECT count(*) FROM deploy_progress.owners WHERE key = '11';
SELECT deploy_progress.claim('claim_jobs', '11');
SELECT key, pid = pg_backend_pid() AS mine FROM deploy_progress.owners WHERE key = '11';
SELECT deploy_progress.release('claim_jobs', '11');
-- an ended row restarted by anyone: the claim of its last run (its owner
-- gone without release()) goes, the restarted row is not owner_gone
CREATE TABLE claim_restart (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('claim_restart', allow_restart => true);
INSERT INTO claim_restart VALUES (1, 'failed');
INSERT INTO deploy_progress.claims VALUES ('claim_restart', '1', 2147483647, '2000-01-01 00:00+00', '2026-01-01 12:00+00');
UPDATE claim_restart SET phase = 'cancelled' WHERE id = 1;
SELECT count(*) FROM deploy_progress.owners WHERE relid = 'claim_restart'::regclass;
UPDATE claim_restart SET phase = 'queued' WHERE id = 1;
SELECT count(*) FROM deploy_progress.owners WHERE relid = 'claim_restart'::regclass;
SELECT key, reason FROM deploy_progress.stuck('claim_restart', now());
SELECT deploy_progress.untrack('claim_restart');
DROP TABLE claim_restart;
-- a row inserted into a partition may have moved there with its claim:
-- only the claims of owners that are gone are removed
CREATE TABLE claim_parts (id integer NOT NULL, region text NOT NULL, phase deploy_progress.phase NOT NULL)
    PARTITION BY LIST (region);
CREATE TABLE claim_parts_eu PARTITION OF claim_parts FOR VALUES IN ('eu');
CREATE UNIQUE INDEX ON claim_parts (id, region);
SELECT relid FROM deploy_progress.track('claim_parts', key => '{id,region}');
INSERT INTO deploy_progress.claims VALUES
    ('claim_parts', '(1,eu)', 2147483647, '2000-01-01 00:00+00', '2026-01-01 12:00+00'),
    ('claim_parts', '(2,eu)', pg_backend_pid(), :'my_start', '2026-01-01 12:00+00');
INSERT INTO claim_parts VALUES (1, 'eu', 'building'), (2, 'eu', 'building');
SELECT key, alive FROM deploy_progress.owners WHERE relid = 'claim_parts'::regclass ORDER BY key;
SELECT deploy_progress.untrack('claim_parts');
DROP TABLE claim_parts;

--------------------------------------------------------------------------
-- Errors: each changes nothing
--------------------------------------------------------------------------

CREATE TABLE claim_untracked (id integer PRIMARY KEY, phase text);
INSERT INTO claim_untracked VALUES (1, 'queued');
SELECT deploy_progress.claim('claim_untracked', '1');
SELECT deploy_progress.release('claim_untracked', '1');
SELECT deploy_progress.claim('claim_jobs', '99');
SELECT deploy_progress.claim('claim_jobs', 'x');
SELECT deploy_progress.claim('claim_jobs', NULL);
SELECT deploy_progress.release(NULL, '1');
-- an ended row: succeeded, and failed (with its reason)
SELECT deploy_progress.claim('claim_jobs', '4');
SELECT deploy_progress.claim('claim_jobs', '5');
-- a row a live session claimed (the message names no process: the detail does)
SELECT pid AS live_pid, backend_start AS live_start FROM pg_stat_activity
 WHERE backend_type = 'logical replication launcher' \gset
INSERT INTO deploy_progress.claims VALUES ('claim_jobs', '9', :live_pid, :'live_start', '2026-01-01 12:00+00');
SELECT key, alive FROM deploy_progress.owners WHERE key = '9';
\set VERBOSITY terse
SELECT deploy_progress.claim('claim_jobs', '9');
\set VERBOSITY default
SELECT key, pid = :live_pid AS still_theirs FROM deploy_progress.claims WHERE key = '9';
SELECT key, reason FROM deploy_progress.stuck('claim_jobs', '2026-01-01 13:00+00');
-- release() removes only this session's claim
SELECT deploy_progress.release('claim_jobs', '9');
SELECT count(*) FROM deploy_progress.claims WHERE key = '9';
DELETE FROM deploy_progress.claims WHERE key = '9';

--------------------------------------------------------------------------
-- Who may claim: the worker (UPDATE), not a reader
--------------------------------------------------------------------------

CREATE ROLE claims_reader;
CREATE ROLE claims_worker;
CREATE ROLE claims_other;
GRANT SELECT ON claim_jobs TO claims_reader;
GRANT SELECT, UPDATE ON claim_jobs TO claims_worker;
SELECT deploy_progress.claim('claim_jobs', '10');
SET ROLE claims_reader;
SELECT deploy_progress.claim('claim_jobs', '9');
SELECT * FROM deploy_progress.claims;
INSERT INTO deploy_progress.claims VALUES ('claim_jobs', '1', pg_backend_pid(), now(), now());
SELECT deploy_progress._claim_write('claim_jobs', '1', pg_backend_pid(), now());
-- readers see the owners of the rows they can read
SELECT key, alive FROM deploy_progress.owners ORDER BY key;
SET ROLE claims_other;
SELECT count(*) FROM deploy_progress.owners;
SET ROLE claims_worker;
SELECT deploy_progress.claim('claim_jobs', '9');
SELECT key, alive FROM deploy_progress.owners ORDER BY key;
SELECT deploy_progress.release('claim_jobs', '9');
RESET ROLE;

--------------------------------------------------------------------------
-- untrack() and DROP TABLE remove a table's claims
--------------------------------------------------------------------------

CREATE TABLE claim_dropped (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('claim_dropped');
INSERT INTO claim_dropped VALUES (1, 'building');
SELECT deploy_progress.claim('claim_dropped', '1');
SELECT relid, key FROM deploy_progress.claims ORDER BY relid::text, key;
DROP TABLE claim_dropped;
SELECT relid, key FROM deploy_progress.claims ORDER BY relid::text, key;
SELECT deploy_progress.untrack('claim_jobs');
SELECT count(*) FROM deploy_progress.claims;

DROP TABLE claim_jobs, claim_untracked;
DROP ROLE claims_reader, claims_worker, claims_other;
