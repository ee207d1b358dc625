-- Figures of rows of tracked tables: progress() and describe() with exact
-- timings, both timing storages, composite keys, custom lifecycles,
-- partitions, and the smoothed speed kept by the real trigger.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

CREATE TABLE fig_deploy (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL,
    completed_items     bigint,
    total_items         bigint,
    items_per_second    double precision,
    speed_updated_at    timestamptz,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    failure_reason      text
);
SELECT relid, storage, columns ->> 'items_per_second' AS speed_column, columns ->> 'speed_updated_at' AS speed_updated_column, columns ->> 'failure_reason' AS reason_column, speed_time_constant
  FROM deploy_progress.track('fig_deploy');

-- Rows with timings written by hand (stamping off lets a session write the
-- timing columns; phases and counters are still checked).  Every row is
-- read as of 10:10:00 below, unless said otherwise.
SET deploy_progress.stamping = off;
INSERT INTO fig_deploy (id, phase, completed_items, total_items, items_per_second, speed_updated_at,
                        phase_updated_at, progress_updated_at, heartbeat_at, started_at, finished_at, failure_reason)
VALUES
    -- running: transferring since 10:05:00, last progress 10:10:00
    (1, 'transferring', 12400, 31344, 85.2, '2024-05-01 10:10:00+00',
        '2024-05-01 10:05:00+00', '2024-05-01 10:10:00+00', '2024-05-01 10:10:00+00', '2024-05-01 10:00:00+00', NULL, NULL),
    -- stalled: no progress since 10:07:50
    (2, 'transferring', 12400, 31344, 85.2, '2024-05-01 10:07:50+00',
        '2024-05-01 10:05:00+00', '2024-05-01 10:07:50+00', '2024-05-01 10:09:59+00', '2024-05-01 10:00:00+00', NULL, NULL),
    -- waiting since 10:06:48
    (3, 'waiting', 500, 1000, NULL, '2024-05-01 10:03:00+00',
        '2024-05-01 10:06:48+00', '2024-05-01 10:06:48+00', '2024-05-01 10:09:00+00', '2024-05-01 10:00:00+00', NULL, NULL),
    -- succeeded: 09:50:00 to 10:02:05
    (4, 'succeeded', 31344, 31344, NULL, '2024-05-01 10:02:05+00',
        '2024-05-01 10:02:05+00', '2024-05-01 10:02:05+00', '2024-05-01 10:02:05+00', '2024-05-01 09:50:00+00', '2024-05-01 10:02:05+00', NULL),
    -- failed: 10:00:00 to 10:03:10, with a reason
    (5, 'failed', 10, 31344, NULL, '2024-05-01 10:03:10+00',
        '2024-05-01 10:03:10+00', '2024-05-01 10:03:10+00', '2024-05-01 10:03:10+00', '2024-05-01 10:00:00+00', '2024-05-01 10:03:10+00', 'connection reset'),
    -- queued since 10:09:15, never started
    (6, 'queued', NULL, NULL, NULL, '2024-05-01 10:09:15+00',
        '2024-05-01 10:09:15+00', '2024-05-01 10:09:15+00', '2024-05-01 10:09:15+00', NULL, NULL, NULL),
    -- building, without counters, since 10:07:50
    (7, 'building', NULL, NULL, NULL, '2024-05-01 10:07:50+00',
        '2024-05-01 10:07:50+00', '2024-05-01 10:07:50+00', '2024-05-01 10:09:59+00', '2024-05-01 10:00:00+00', NULL, NULL),
    -- transferring, no smoothed speed yet: the average is used
    (8, 'transferring', 600, 1200, NULL, '2024-05-01 10:08:00+00',
        '2024-05-01 10:08:00+00', '2024-05-01 10:09:55+00', '2024-05-01 10:09:55+00', '2024-05-01 10:00:00+00', NULL, NULL),
    -- cancelled while queued: no start, so no duration
    (9, 'cancelled', NULL, NULL, NULL, '2024-05-01 10:01:00+00',
        '2024-05-01 10:01:00+00', '2024-05-01 10:01:00+00', '2024-05-01 10:01:00+00', NULL, '2024-05-01 10:01:00+00', 'user request');
RESET deploy_progress.stamping;

-- every figure of the running row
SELECT jsonb_pretty(deploy_progress.progress('fig_deploy', '1', '2024-05-01 10:10:00+00'));
-- the CLI line of each row
SELECT id, deploy_progress.describe('fig_deploy', id::text, '2024-05-01 10:10:00+00')
  FROM fig_deploy ORDER BY id;
-- the main figures of each row
SELECT id, f->>'phase' AS phase, f->>'kind' AS kind, f->'percent' AS percent,
       f->'average_speed' AS average, round((f->>'smoothed_speed')::numeric, 6) AS smoothed,
       round((f->>'speed')::numeric, 6) AS speed, round((f->>'eta_seconds')::numeric, 1) AS eta,
       f->'phase_elapsed_seconds' AS in_phase, f->'elapsed_seconds' AS elapsed,
       f->'since_progress_seconds' AS since_progress, f->'stalled' AS stalled,
       f->'overall_progress' AS overall, f->'reason' AS reason
  FROM fig_deploy, deploy_progress.progress('fig_deploy', id::text, '2024-05-01 10:10:00+00') AS f
 ORDER BY id;

-- the figures are those of the pure functions
SELECT (f->>'percent')::float8 = deploy_progress.percent(12400, 31344) AS percent,
       (f->>'average_speed')::float8 = deploy_progress.transfer_speed(12400, '2024-05-01 10:05:00+00', '2024-05-01 10:10:05+00') AS average,
       (f->>'smoothed_speed')::float8 = deploy_progress.smoothed_speed(85.2, '2024-05-01 10:10:00+00', '2024-05-01 10:10:05+00') AS smoothed,
       (f->>'speed')::float8 = (f->>'smoothed_speed')::float8 AS eta_uses_smoothed,
       make_interval(secs => (f->>'eta_seconds')::float8)
         = deploy_progress.eta(12400, 31344, deploy_progress.smoothed_speed(85.2, '2024-05-01 10:10:00+00', '2024-05-01 10:10:05+00')) AS eta,
       (f->>'overall_progress')::float8 = deploy_progress.overall_progress('default', 'transferring', 12400, 31344) AS overall
  FROM deploy_progress.progress('fig_deploy', '1', '2024-05-01 10:10:05+00') AS f;

-- running to stalled: the same row read later; the smoothed speed decays,
-- and once no progress came for a time constant (15 s) the row is stalled
SELECT as_of, round((f->>'smoothed_speed')::numeric, 6) AS smoothed, f->'stalled' AS stalled,
       deploy_progress.describe(f)
  FROM (VALUES ('2024-05-01 10:10:00+00'::timestamptz), ('2024-05-01 10:10:14.999999+00'),
               ('2024-05-01 10:10:15+00'), ('2024-05-01 10:12:10+00')) AS v(as_of),
       deploy_progress.progress('fig_deploy', '1', as_of) AS f;
-- a reader whose clock is behind the writer's: no negative elapsed time
SELECT f->'phase_elapsed_seconds' AS in_phase, f->'average_speed' AS average,
       f->'smoothed_speed' AS smoothed, f->'since_progress_seconds' AS since_progress,
       deploy_progress.describe(f)
  FROM deploy_progress.progress('fig_deploy', '1', '2024-05-01 10:04:00+00') AS f;
-- the time constant of the table is the one used
SELECT speed_time_constant FROM deploy_progress.track('fig_deploy', speed_time_constant => '1 minute');
SELECT round((f->>'smoothed_speed')::numeric, 6) AS smoothed, f->'stalled' AS stalled, deploy_progress.describe(f)
  FROM deploy_progress.progress('fig_deploy', '1', '2024-05-01 10:10:15+00') AS f;
-- the default as_of is now()
SELECT deploy_progress.progress('fig_deploy', '4') = deploy_progress.progress('fig_deploy', '4', now()) AS as_of_now,
       deploy_progress.describe('fig_deploy', '4') AS described;
-- NULL in, NULL out
SELECT deploy_progress.progress('fig_deploy', NULL) IS NULL AS null_key,
       deploy_progress.describe(NULL::regclass, '1') IS NULL AS null_table;

--------------------------------------------------------------------------
-- side storage: timings in deploy_progress.timings, stamped by the trigger
--------------------------------------------------------------------------
CREATE TABLE fig_side (
    id              text PRIMARY KEY,
    phase           deploy_progress.phase NOT NULL,
    completed_items integer,
    total_items     integer
);
SELECT storage, columns ->> 'items_per_second' AS speed_column FROM deploy_progress.track('fig_side');
INSERT INTO fig_side VALUES ('a', 'fetching', 30, 120);
-- as of ten seconds after the phase began (the trigger's stamp)
SELECT f->'average_speed' AS average, f->'smoothed_speed' AS smoothed, f->'eta_seconds' AS eta,
       f->'phase_elapsed_seconds' AS in_phase, f->'elapsed_seconds' AS elapsed,
       (f->>'started_at')::timestamptz = s.phase_updated_at AS started_with_phase,
       deploy_progress.describe(f)
  FROM deploy_progress.side_timings s,
       deploy_progress.progress('fig_side', 'a', s.phase_updated_at + interval '10 seconds') AS f
 WHERE s.relid = 'fig_side'::regclass AND s.key = 'a';

--------------------------------------------------------------------------
-- a composite key and a custom lifecycle on a text phase column
--------------------------------------------------------------------------
SELECT count(*) FROM deploy_progress.define_lifecycle('figures_steps', '[
    {"phase": "todo",    "kind": "pending"},
    {"phase": "copy",    "kind": "active", "weight": 3},
    {"phase": "verify",  "kind": "active", "weight": 1},
    {"phase": "done",    "kind": "succeeded"},
    {"phase": "failed",  "kind": "failed"}]');
CREATE TABLE fig_steps (
    region              text,
    step                integer,
    status              text NOT NULL,
    done_items          integer,
    all_items           integer,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    PRIMARY KEY (region, step)
);
SELECT storage, key_columns FROM deploy_progress.track('fig_steps', lifecycle => 'figures_steps', phase => 'status',
                                                      completed_items => 'done_items', total_items => 'all_items',
                                                      heartbeat_at => NULL);
SET deploy_progress.stamping = off;
INSERT INTO fig_steps VALUES
    ('eu west', 1, 'copy', 25, 100, '2024-05-01 10:00:00+00', '2024-05-01 10:00:50+00', '2024-05-01 10:00:00+00', NULL),
    ('eu west', 2, 'verify', 1, 4, '2024-05-01 10:00:00+00', '2024-05-01 10:00:10+00', '2024-05-01 09:59:00+00', NULL);
RESET deploy_progress.stamping;
-- copy: (3 * 0.25) / 4; verify: (3 + 1 * 0.25) / 4
SELECT k, f->>'phase' AS phase, f->'overall_progress' AS overall, f->'average_speed' AS average,
       deploy_progress.describe(f)
  FROM unnest(ARRAY['("eu west",1)', '("eu west",2)']) AS k,
       deploy_progress.progress('fig_steps', k, '2024-05-01 10:01:00+00') AS f;

--------------------------------------------------------------------------
-- a partitioned table: read through the parent or the partition
--------------------------------------------------------------------------
CREATE TABLE fig_parts (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL,
    completed_items     integer,
    total_items         integer,
    phase_updated_at    timestamptz
) PARTITION BY RANGE (id);
CREATE TABLE fig_parts_1 PARTITION OF fig_parts FOR VALUES FROM (0) TO (100);
SELECT storage FROM deploy_progress.track('fig_parts');
SET deploy_progress.stamping = off;
INSERT INTO fig_parts VALUES (7, 'migrating', 20, 40, '2024-05-01 10:00:00+00');
RESET deploy_progress.stamping;
SELECT deploy_progress.describe('fig_parts', '7', '2024-05-01 10:00:04+00') AS parent,
       deploy_progress.describe('fig_parts_1', '7', '2024-05-01 10:00:04+00') AS partition;

--------------------------------------------------------------------------
-- the smoothed speed kept by the real trigger
--------------------------------------------------------------------------
-- Each write goes through write(), which logs the row as the trigger
-- stamped it.  Every CALL is a statement of its own, stamped with its own
-- start time, and pauses before returning so that stamps differ.  Every
-- stored speed must be the update rule applied to the previous row and the
-- new stamp, so the test is exact whatever the timings were.
SELECT speed_time_constant FROM deploy_progress.track('fig_deploy', speed_time_constant => '2 seconds');
CREATE TEMP TABLE fig_log (step integer, what text, phase text, completed bigint, ips float8,
                           speed_updated_at timestamptz, phase_updated_at timestamptz,
                           progress_updated_at timestamptz, heartbeat_at timestamptz);
CREATE PROCEDURE pg_temp.write(step integer, what text, sql text)
LANGUAGE plpgsql AS $$
DECLARE
    r fig_deploy;
BEGIN
    EXECUTE sql || ' RETURNING *' INTO r;
    INSERT INTO fig_log VALUES (step, what, r.phase, r.completed_items, r.items_per_second, r.speed_updated_at,
                                r.phase_updated_at, r.progress_updated_at, r.heartbeat_at);
    PERFORM pg_sleep(0.01);
END
$$;
CALL pg_temp.write(0, 'insert', $$INSERT INTO fig_deploy (id, phase, completed_items, total_items) VALUES (10, 'transferring', 0, 100000)$$);
CALL pg_temp.write(1, '+10', 'UPDATE fig_deploy SET completed_items = completed_items + 10 WHERE id = 10');
CALL pg_temp.write(2, '+10', 'UPDATE fig_deploy SET completed_items = completed_items + 10 WHERE id = 10');
CALL pg_temp.write(3, '+10', 'UPDATE fig_deploy SET completed_items = completed_items + 10 WHERE id = 10');
-- a heartbeat without progress leaves the speed and its clock alone
CALL pg_temp.write(4, 'heartbeat', 'UPDATE fig_deploy SET completed_items = completed_items WHERE id = 10');
-- the total moving is progress, but not a speed sample
CALL pg_temp.write(5, 'total', 'UPDATE fig_deploy SET total_items = total_items + 1 WHERE id = 10');
CALL pg_temp.write(6, '+500', 'UPDATE fig_deploy SET completed_items = completed_items + 500 WHERE id = 10');
-- a counter going backwards resets the estimate
CALL pg_temp.write(7, 'backwards', 'UPDATE fig_deploy SET completed_items = 5 WHERE id = 10');
CALL pg_temp.write(8, '+10', 'UPDATE fig_deploy SET completed_items = completed_items + 10 WHERE id = 10');
CALL pg_temp.write(9, '+10', 'UPDATE fig_deploy SET completed_items = completed_items + 10 WHERE id = 10');
-- a new phase starts a new estimate
CALL pg_temp.write(10, 'new phase', $$UPDATE fig_deploy SET phase = 'migrating', completed_items = 0, total_items = 50 WHERE id = 10$$);
CALL pg_temp.write(11, '+5', 'UPDATE fig_deploy SET completed_items = completed_items + 5 WHERE id = 10');
CALL pg_temp.write(12, '+5', 'UPDATE fig_deploy SET completed_items = completed_items + 5 WHERE id = 10');
-- each stored speed is the rule applied to the previous row and the new stamp
SELECT l.step, l.what,
       l.ips IS NOT NULL AS has_speed,
       l.ips IS NOT DISTINCT FROM
         CASE WHEN l.phase = p.phase
              THEN deploy_progress._speed_step(p.ips, p.speed_updated_at, l.completed - p.completed,
                                               l.heartbeat_at, '2 seconds', p.phase_updated_at) END AS follows_rule,
       CASE WHEN l.speed_updated_at = p.speed_updated_at THEN 'kept'
            WHEN l.speed_updated_at = l.heartbeat_at THEN 'this statement'
            ELSE 'wrong' END AS speed_clock,
       -- (only where the rule keeps it: elsewhere whether a new sample happens
       -- to give the same speed depends on the timings, not on the code)
       CASE WHEN l.what IN ('heartbeat', 'total') THEN l.ips IS NOT DISTINCT FROM p.ips END AS speed_kept
  FROM fig_log l JOIN fig_log p ON p.step = l.step - 1
 ORDER BY l.step;
-- the first sample of an estimate is the rate since it began, exactly
SELECT l.step, l.ips = (l.completed - p.completed) / date_part('epoch', l.heartbeat_at - p.speed_updated_at) AS seeded
  FROM fig_log l JOIN fig_log p ON p.step = l.step - 1
 WHERE l.step IN (1, 8, 11) ORDER BY l.step;
-- a phase entry stamps the speed clock with the phase
SELECT step, speed_updated_at = phase_updated_at AS clock_at_phase_entry
  FROM fig_log WHERE step IN (0, 10) ORDER BY step;
-- read through progress(): the stored speed, decayed by exp(-dt/tau) for
-- the time since its last update (here two time constants)
SELECT round((f->>'smoothed_speed')::numeric, 9) = round((l.ips * exp(-2::float8))::numeric, 9) AS decayed,
       (f->>'stalled')::boolean AS stalled,
       (f->>'speed')::float8 = (f->>'smoothed_speed')::float8 AS eta_uses_smoothed
  FROM fig_log l, deploy_progress.progress('fig_deploy', '10', l.speed_updated_at + interval '4 seconds') AS f
 WHERE l.step = 12;

-- with an empty search_path everything is still found
SET search_path = '';
SELECT deploy_progress.describe('public.fig_deploy', '1', '2024-05-01 10:10:00+00'),
       deploy_progress.overall_progress('default', 'transferring', 1, 2);
RESET search_path;

SELECT deploy_progress.untrack(t) FROM unnest(ARRAY['fig_deploy', 'fig_side', 'fig_steps', 'fig_parts']::regclass[]) AS t;
DROP TABLE fig_deploy, fig_side, fig_steps, fig_parts;
SELECT deploy_progress.drop_lifecycle('figures_steps');
