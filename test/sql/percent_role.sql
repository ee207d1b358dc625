-- The percent column role: a 0..100 progress column for tables without
-- counters.  The trigger keeps it within 0..100 and stamps
-- progress_updated_at when it moves; the readers take percent, overall
-- progress, the smoothed speed (percent per second) and the ETA from it.
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';
\i test/include/stamp_rel.sql

-- 1. the role, by the name a table already has (columns => ...) or by its
-- own name, like every role
SELECT role, types, value_type, under_side FROM deploy_progress.column_roles WHERE role = 'percent';
CREATE TABLE pc_jobs (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL,
    phase_progress      integer,
    items_per_second    double precision,
    speed_updated_at    timestamptz,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    note                text
);
SELECT columns ->> 'percent' AS percent_column, columns ? 'items_per_second' AS smoothed_speed
  FROM deploy_progress.track('pc_jobs', columns => '{"percent": "phase_progress"}');
CREATE TABLE pc_named (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, percent numeric(5,2));
SELECT storage, columns ->> 'percent' AS percent_column FROM deploy_progress.track('pc_named');

-- 2. stamping: a move of the percent stamps progress_updated_at, another
-- write only the heartbeat
INSERT INTO pc_jobs (id, phase, phase_progress) VALUES (1, 'building', 10);
SELECT phase_progress, progress_updated_at = phase_updated_at AS progress_stamped, items_per_second
  FROM pc_jobs WHERE id = 1;
SET deploy_progress.stamping = off;
UPDATE pc_jobs SET phase_updated_at = '2024-05-01 10:00:00+00', progress_updated_at = '2024-05-01 10:00:00+00',
                   heartbeat_at = '2024-05-01 10:00:00+00', speed_updated_at = '2024-05-01 10:00:00+00',
                   started_at = '2024-05-01 10:00:00+00' WHERE id = 1;
RESET deploy_progress.stamping;
CREATE TEMP TABLE pc_before AS SELECT * FROM pc_jobs WHERE id = 1;
UPDATE pc_jobs SET note = 'still going' WHERE id = 1;
SELECT stamp_rel(b.progress_updated_at, j.progress_updated_at, j.heartbeat_at) AS progress_updated_at,
       stamp_rel(b.heartbeat_at, j.heartbeat_at, j.heartbeat_at) AS heartbeat_at, j.items_per_second
  FROM pc_jobs j, pc_before b WHERE j.id = 1;
UPDATE pc_jobs SET phase_progress = 30 WHERE id = 1;
SELECT stamp_rel(b.progress_updated_at, j.progress_updated_at, j.heartbeat_at) AS progress_updated_at,
       stamp_rel(b.phase_updated_at, j.phase_updated_at, j.heartbeat_at) AS phase_updated_at,
       stamp_rel(b.speed_updated_at, j.speed_updated_at, j.heartbeat_at) AS speed_updated_at
  FROM pc_jobs j, pc_before b WHERE j.id = 1;
-- the smoothed speed, in percent per second: the trigger's step for 20
-- points since the estimate began (the same function the trigger runs)
SELECT j.items_per_second = deploy_progress._speed_step(NULL, b.speed_updated_at, 20, j.speed_updated_at,
                                                        '15 seconds', b.phase_updated_at) AS trigger_step,
       j.items_per_second > 0 AS positive
  FROM pc_jobs j, pc_before b WHERE j.id = 1;
-- a percent going back starts the estimate over; a new phase does too
UPDATE pc_jobs SET phase_progress = 20 WHERE id = 1;
SELECT phase_progress, items_per_second FROM pc_jobs WHERE id = 1;
UPDATE pc_jobs SET phase = 'transferring', phase_progress = 0 WHERE id = 1;
SELECT phase, phase_progress, items_per_second, progress_updated_at = phase_updated_at AS progress_stamped
  FROM pc_jobs WHERE id = 1;
-- null is an unknown percent; 0 and 100 are in range
UPDATE pc_jobs SET phase_progress = NULL WHERE id = 1;
UPDATE pc_jobs SET phase_progress = 100 WHERE id = 1;
INSERT INTO pc_named VALUES (1, 'building', 0), (2, 'building', 99.99), (3, 'building', 100.00);
SELECT id, percent FROM pc_named ORDER BY id;

-- 3. the figures, with timings written by hand, read as of 10:10:00
SET deploy_progress.stamping = off;
INSERT INTO pc_jobs (id, phase, phase_progress, items_per_second, speed_updated_at, phase_updated_at,
                     progress_updated_at, heartbeat_at, started_at, finished_at)
VALUES
    -- building since 10:05:00, 40% done, 0.2 %/s smoothed at 10:10:00
    (2, 'building', 40, 0.2, '2024-05-01 10:10:00+00', '2024-05-01 10:05:00+00',
        '2024-05-01 10:10:00+00', '2024-05-01 10:10:00+00', '2024-05-01 10:00:00+00', NULL),
    -- building since 10:08:00, 25% done, no smoothed speed yet: the average
    (3, 'building', 25, NULL, NULL, '2024-05-01 10:08:00+00',
        '2024-05-01 10:09:00+00', '2024-05-01 10:09:00+00', '2024-05-01 10:00:00+00', NULL),
    -- stalled: no progress since 10:05:00
    (4, 'building', 60, 0.5, '2024-05-01 10:05:00+00', '2024-05-01 10:00:00+00',
        '2024-05-01 10:05:00+00', '2024-05-01 10:09:59+00', '2024-05-01 10:00:00+00', NULL),
    -- done with the phase: ETA zero
    (5, 'finishing', 100, 1.0, '2024-05-01 10:10:00+00', '2024-05-01 10:09:00+00',
        '2024-05-01 10:10:00+00', '2024-05-01 10:10:00+00', '2024-05-01 10:00:00+00', NULL),
    -- percent unknown
    (6, 'building', NULL, NULL, NULL, '2024-05-01 10:07:50+00',
        '2024-05-01 10:07:50+00', '2024-05-01 10:09:59+00', '2024-05-01 10:00:00+00', NULL),
    -- succeeded
    (7, 'succeeded', 100, NULL, NULL, '2024-05-01 10:02:05+00',
        '2024-05-01 10:02:05+00', '2024-05-01 10:02:05+00', '2024-05-01 09:50:00+00', '2024-05-01 10:02:05+00');
RESET deploy_progress.stamping;
SELECT jsonb_pretty(deploy_progress.progress('pc_jobs', '2', '2024-05-01 10:10:00+00'));
SELECT id, f->'completed' AS completed, f->'total' AS total, f->'percent' AS percent,
       round((f->>'average_speed')::numeric, 6) AS average, round((f->>'speed')::numeric, 6) AS speed,
       round((f->>'eta_seconds')::numeric, 1) AS eta, f->'stalled' AS stalled,
       round((f->>'overall_progress')::numeric, 6) AS overall
  FROM generate_series(2, 7) AS id, deploy_progress.progress('pc_jobs', id::text, '2024-05-01 10:10:00+00') AS f
 ORDER BY id;
SELECT id, deploy_progress.describe('pc_jobs', id::text, '2024-05-01 10:10:00+00')
  FROM generate_series(2, 7) AS id ORDER BY id;
-- the figures are those of the pure functions
SELECT (f->>'overall_progress')::float8
         = deploy_progress.weighted_progress(l.weights, l.kinds, array_position(l.phases, 'building'), 0.4) AS overall,
       make_interval(secs => (f->>'eta_seconds')::float8)
         = deploy_progress.eta(40, deploy_progress.smoothed_speed(0.2, '2024-05-01 10:10:00+00', '2024-05-01 10:10:05+00')) AS eta,
       (f->>'average_speed')::float8 = 40.0 / 305 AS average
  FROM deploy_progress.progress('pc_jobs', '2', '2024-05-01 10:10:05+00') AS f,
       deploy_progress._lifecycle_arrays('default') AS l;
-- eta(percent, speed) on its own
SELECT deploy_progress.eta(40, 2) AS at_2_per_s, deploy_progress.eta(100, NULL) AS done,
       deploy_progress.eta(40, 0) AS no_speed, deploy_progress.eta(NULL, 2) AS unknown,
       deploy_progress.eta(101, 2) AS out_of_range, deploy_progress.eta('NaN', 2) AS nan,
       deploy_progress.eta(0, 1e-300) AS too_long;
-- in_flight agrees
SELECT f.key, f.percent = (deploy_progress.progress('pc_jobs', f.key)->>'percent')::float8 AS same_percent
  FROM deploy_progress.in_flight f WHERE f.relid = 'pc_jobs'::regclass AND f.key IN ('2', '3') ORDER BY f.key;

-- 4. side storage: the percent stays in the row, its moves stamp the side row
CREATE TABLE pc_side (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, done double precision);
SELECT storage, columns FROM deploy_progress.track('pc_side', columns => '{"percent": "done"}');
INSERT INTO pc_side VALUES (1, 'building', 12.5);
CREATE TEMP TABLE pc_side_before AS SELECT * FROM deploy_progress.timings WHERE relid = 'pc_side'::regclass;
UPDATE pc_side SET done = 12.5 WHERE id = 1;
SELECT stamp_rel(b.progress_updated_at, s.progress_updated_at, s.heartbeat_at) AS unchanged_percent
  FROM deploy_progress.timings s, pc_side_before b WHERE s.relid = 'pc_side'::regclass AND s.key = '1';
UPDATE pc_side SET done = 37.5 WHERE id = 1;
SELECT stamp_rel(b.progress_updated_at, s.progress_updated_at, s.heartbeat_at) AS moved_percent
  FROM deploy_progress.timings s, pc_side_before b WHERE s.relid = 'pc_side'::regclass AND s.key = '1';
SELECT deploy_progress.progress('pc_side', '1')->'percent' AS percent;

-- 5. values out of range, NaN and infinity are refused with 23514, and
-- change nothing
UPDATE pc_jobs SET phase_progress = 101 WHERE id = 2;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
UPDATE pc_jobs SET phase_progress = -1 WHERE id = 2;
INSERT INTO pc_jobs (id, phase, phase_progress) VALUES (8, 'building', 250);
INSERT INTO pc_named VALUES (4, 'building', 'NaN');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
INSERT INTO pc_named VALUES (4, 'building', 100.01);
UPDATE pc_side SET done = 'NaN' WHERE id = 1;
UPDATE pc_side SET done = 'Infinity' WHERE id = 1;
UPDATE pc_side SET done = '-Infinity' WHERE id = 1;
UPDATE pc_side SET done = 100.000000001 WHERE id = 1;
CREATE TABLE pc_exact (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, percent numeric);
SELECT columns ->> 'percent' AS percent_column FROM deploy_progress.track('pc_exact');
-- a numeric is compared exactly, before it is rounded to a double
INSERT INTO pc_exact VALUES (1, 'building', 100.0000000000000000000001);
INSERT INTO pc_exact VALUES (1, 'building', '-0.0000000000000000000001');
SELECT (SELECT phase_progress FROM pc_jobs WHERE id = 2) AS pc_jobs_2, (SELECT count(*) FROM pc_jobs WHERE id = 8) AS pc_jobs_8,
       (SELECT count(*) FROM pc_named WHERE id = 4) AS pc_named_4, (SELECT done FROM pc_side WHERE id = 1) AS pc_side_1,
       (SELECT count(*) FROM pc_exact) AS pc_exact;
-- with stamping off too: values are checked either way
SET deploy_progress.stamping = off;
UPDATE pc_jobs SET phase_progress = 200 WHERE id = 2;
RESET deploy_progress.stamping;

-- 6. bad configurations change nothing
-- counters and a percent column: one or the other
CREATE TABLE pc_both (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                      completed_items integer, total_items integer, percent integer, pct integer);
SELECT deploy_progress.track('pc_both');
SELECT deploy_progress.track('pc_both', columns => '{"percent": "pct"}', total_items => NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS tracked FROM deploy_progress.tracked WHERE relid = 'pc_both'::regclass;
-- ... either one is fine
SELECT columns ->> 'completed_items' AS completed, columns ->> 'percent' AS percent
  FROM deploy_progress.track('pc_both', columns => '{"percent": null}');
SELECT columns ->> 'completed_items' AS completed, columns ->> 'percent' AS percent
  FROM deploy_progress.track('pc_both', completed_items => NULL, total_items => NULL);
-- a column of another type
CREATE TABLE pc_text (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, progress text);
SELECT deploy_progress.track('pc_text', columns => '{"percent": "progress"}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- a column that does not exist
SELECT deploy_progress.track('pc_text', columns => '{"percent": "nope"}');
-- a smoothed speed needs completed items or a percent
CREATE TABLE pc_speed (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                       items_per_second double precision, speed_updated_at timestamptz, phase_updated_at timestamptz);
SELECT deploy_progress.track('pc_speed');
SELECT count(*) AS tracked FROM deploy_progress.tracked WHERE relid IN ('pc_text'::regclass, 'pc_speed'::regclass);

DROP TABLE pc_jobs, pc_named, pc_side, pc_exact, pc_both, pc_text, pc_speed;
DROP FUNCTION stamp_rel(timestamptz, timestamptz, timestamptz);
