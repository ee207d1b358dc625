-- track(..., backward_moves): what a write that moves a row back does.  A
-- move back goes from a pending or active phase to an earlier pending or
-- active one, or out of a terminal phase without allow_restart; waiting
-- phases are entered and left freely.  'allow' (the default) applies it
-- (leaving a terminal phase is refused, as always), 'error' refuses it,
-- 'ignore' keeps the row's phase and applies the rest of the write, with
-- no error, no history row and no event.
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never
\i test/include/stamp_rel.sql

CREATE TABLE bm_jobs (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL,
    completed_items     integer,
    total_items         integer,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    note                text
);
-- the history of a row, one transition a word
CREATE FUNCTION bm_history(k integer) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(concat(coalesce(from_phase, '-'), '>', to_phase), ' ' ORDER BY id), '')
      FROM deploy_progress.history WHERE relid = 'bm_jobs'::regclass AND key = k::text
$$;

-- 1. the default is 'allow', today's behaviour: a move back is applied
SELECT backward_moves FROM deploy_progress.track('bm_jobs');
INSERT INTO bm_jobs (id, phase) VALUES (1, 'building');
UPDATE bm_jobs SET phase = 'fetching' WHERE id = 1;
SELECT phase, bm_history(1) AS history FROM bm_jobs WHERE id = 1;
-- ... and leaving a terminal phase is refused, as without the option
UPDATE bm_jobs SET phase = 'succeeded' WHERE id = 1;
UPDATE bm_jobs SET phase = 'building' WHERE id = 1;

-- 2. 'error': a move back is refused with 23514, and changes nothing
SELECT backward_moves FROM deploy_progress.track('bm_jobs', backward_moves => 'error');
INSERT INTO bm_jobs (id, phase, completed_items, total_items) VALUES (2, 'transferring', 3, 10);
UPDATE bm_jobs SET phase = 'building', completed_items = 4 WHERE id = 2;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
UPDATE bm_jobs SET phase = 'queued' WHERE id = 2;
SELECT phase, completed_items, bm_history(2) AS history FROM bm_jobs WHERE id = 2;
-- forward moves, staying in the phase and waiting phases are fine: into
-- waiting, and out of it to an earlier active phase
UPDATE bm_jobs SET phase = 'migrating' WHERE id = 2;
UPDATE bm_jobs SET completed_items = 5 WHERE id = 2;
UPDATE bm_jobs SET phase = 'waiting' WHERE id = 2;
UPDATE bm_jobs SET phase = 'building' WHERE id = 2;
SELECT phase, completed_items, bm_history(2) AS history FROM bm_jobs WHERE id = 2;
-- out of a terminal phase: refused (with allow_restart, a restart)
UPDATE bm_jobs SET phase = 'failed' WHERE id = 2;
UPDATE bm_jobs SET phase = 'building' WHERE id = 2;
SELECT backward_moves, allow_restart FROM deploy_progress.track('bm_jobs', backward_moves => 'error', allow_restart => true);
UPDATE bm_jobs SET phase = 'building' WHERE id = 2;
SELECT phase, finished_at IS NULL AS restarted, bm_history(2) AS history FROM bm_jobs WHERE id = 2;

-- 3. 'ignore': the row keeps its phase, the rest of the write applies
SELECT backward_moves FROM deploy_progress.track('bm_jobs', backward_moves => 'ignore');
INSERT INTO bm_jobs (id, phase, completed_items, total_items) VALUES (3, 'transferring', 3, 10);
SET deploy_progress.stamping = off;
UPDATE bm_jobs SET phase_updated_at = '2024-05-01 10:00:00+00', progress_updated_at = '2024-05-01 10:00:00+00',
                   heartbeat_at = '2024-05-01 10:00:00+00' WHERE id = 3;
RESET deploy_progress.stamping;
CREATE TEMP TABLE bm_before AS SELECT * FROM bm_jobs WHERE id = 3;
UPDATE bm_jobs SET phase = 'building', completed_items = 4, note = 'late' WHERE id = 3;
-- the phase and its clock stay; the counters moved, so did progress; a heartbeat
SELECT j.phase, j.completed_items, j.note,
       stamp_rel(b.phase_updated_at, j.phase_updated_at, j.heartbeat_at) AS phase_updated_at,
       stamp_rel(b.progress_updated_at, j.progress_updated_at, j.heartbeat_at) AS progress_updated_at,
       stamp_rel(b.heartbeat_at, j.heartbeat_at, j.heartbeat_at) AS heartbeat_at,
       bm_history(3) AS history
  FROM bm_jobs j, bm_before b WHERE j.id = 3;
-- the counters are still checked on an ignored move
UPDATE bm_jobs SET phase = 'building', completed_items = 11 WHERE id = 3;
-- a move back to the pending phase, and several rows in one statement
INSERT INTO bm_jobs (id, phase) VALUES (4, 'starting');
UPDATE bm_jobs SET phase = 'queued' WHERE id IN (3, 4);
SELECT id, phase, bm_history(id) AS history FROM bm_jobs WHERE id IN (3, 4) ORDER BY id;
-- forward moves and waiting phases as ever
UPDATE bm_jobs SET phase = 'waiting' WHERE id = 3;
UPDATE bm_jobs SET phase = 'building' WHERE id = 3;
UPDATE bm_jobs SET phase = 'finishing' WHERE id = 3;
SELECT phase, bm_history(3) AS history FROM bm_jobs WHERE id = 3;

-- 4. a callback-driven pipeline: callbacks arrive late and out of order.
-- The row has finished; a late callback for an earlier step comes in.
\i test/include/notify_listener.sql
INSERT INTO bm_jobs (id, phase) VALUES (5, 'building');
UPDATE bm_jobs SET phase = 'health_check' WHERE id = 5;
UPDATE bm_jobs SET phase = 'succeeded', note = 'done' WHERE id = 5;
SELECT count(*) AS events_so_far FROM pg_temp.received();
CREATE TEMP TABLE bm_done AS SELECT * FROM bm_jobs WHERE id = 5;
-- 'ignore': no error, the row stays succeeded, its finish time stays, no
-- history row, no event; the callback's other columns are written
UPDATE bm_jobs SET phase = 'transferring', note = 'late: transferring' WHERE id = 5;
SELECT j.phase, j.note, j.finished_at = d.finished_at AS finish_kept,
       j.phase_updated_at = d.phase_updated_at AS phase_clock_kept, bm_history(5) AS history
  FROM bm_jobs j, bm_done d WHERE j.id = 5;
SELECT count(*) AS events FROM pg_temp.received();
-- a late "failed" leaves the terminal phase too: ignored as well
UPDATE bm_jobs SET phase = 'failed', note = 'late: failed' WHERE id = 5;
SELECT phase, note, bm_history(5) AS history FROM bm_jobs WHERE id = 5;
SELECT count(*) AS events FROM pg_temp.received();
-- 'error': the same late callback is refused
SELECT backward_moves FROM deploy_progress.track('bm_jobs', backward_moves => 'error');
UPDATE bm_jobs SET phase = 'transferring', note = 'late again' WHERE id = 5;
SELECT phase, note FROM bm_jobs WHERE id = 5;
-- an out-of-order callback on a running row: the later step came first
INSERT INTO bm_jobs (id, phase) VALUES (6, 'migrating');
UPDATE bm_jobs SET phase = 'building' WHERE id = 6;
SELECT backward_moves FROM deploy_progress.track('bm_jobs', backward_moves => 'ignore');
UPDATE bm_jobs SET phase = 'building' WHERE id = 6;
SELECT phase, bm_history(6) AS history FROM bm_jobs WHERE id = 6;
-- one event: the row's INSERT
SELECT count(*) AS events FROM pg_temp.received();
SELECT dblink_disconnect('listener'), dblink_disconnect('sender');
DROP EXTENSION dblink;

-- 5. side storage: an ignored move stamps no phase in the side table
CREATE TABLE bm_side (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT storage, backward_moves FROM deploy_progress.track('bm_side', backward_moves => 'ignore');
INSERT INTO bm_side VALUES (1, 'transferring');
CREATE TEMP TABLE bm_side_before AS SELECT * FROM deploy_progress.timings WHERE relid = 'bm_side'::regclass;
UPDATE bm_side SET phase = 'fetching' WHERE id = 1;
SELECT b.phase, stamp_rel(s0.phase_updated_at, s.phase_updated_at, s.heartbeat_at) AS phase_updated_at,
       stamp_rel(s0.heartbeat_at, s.heartbeat_at, s.heartbeat_at) AS heartbeat_at
  FROM bm_side b, deploy_progress.timings s, bm_side_before s0
 WHERE s.relid = 'bm_side'::regclass AND s.key = '1' AND b.id = 1;

-- 6. a custom lifecycle with two pending phases, text phases
SELECT count(*) FROM deploy_progress.define_lifecycle('bm_lc', '[
    {"phase": "received", "kind": "pending"}, {"phase": "scheduled", "kind": "pending"},
    {"phase": "paused", "kind": "waiting"},
    {"phase": "vm_created", "kind": "active"}, {"phase": "ansible_started", "kind": "active"},
    {"phase": "ready", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
CREATE TABLE bm_vms (id integer PRIMARY KEY, phase text NOT NULL);
SELECT backward_moves FROM deploy_progress.track('bm_vms', lifecycle => 'bm_lc', backward_moves => 'error');
INSERT INTO bm_vms VALUES (1, 'scheduled');
UPDATE bm_vms SET phase = 'received' WHERE id = 1;
UPDATE bm_vms SET phase = 'paused' WHERE id = 1;
UPDATE bm_vms SET phase = 'received' WHERE id = 1;
UPDATE bm_vms SET phase = 'ansible_started' WHERE id = 1;
UPDATE bm_vms SET phase = 'vm_created' WHERE id = 1;
SELECT phase FROM bm_vms WHERE id = 1;

-- 7. bad values change nothing
SELECT deploy_progress.track('bm_jobs', backward_moves => 'sometimes');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT deploy_progress.track('bm_jobs', backward_moves => NULL);
SELECT deploy_progress.track('bm_jobs', backward_moves => 'Ignore');
SELECT backward_moves FROM deploy_progress.tracked WHERE relid = 'bm_jobs'::regclass;
-- the configuration table checks it too (terse: the failing row holds a time)
\set VERBOSITY terse
UPDATE deploy_progress.tracked SET backward_moves = 'never' WHERE relid = 'bm_jobs'::regclass;
\set VERBOSITY default

DROP TABLE bm_jobs, bm_side, bm_vms;
DROP FUNCTION bm_history(integer);
DROP FUNCTION stamp_rel(timestamptz, timestamptz, timestamptz);
SELECT count(*) FROM deploy_progress.drop_lifecycle('bm_lc');
