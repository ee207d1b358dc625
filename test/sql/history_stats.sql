-- phase_stats(), timeline() and steps() against hand-computed results on
-- fixed history rows (written directly into deploy_progress.history).
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

CREATE TABLE stats_jobs (id text PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('stats_jobs', notify_channel => NULL);

-- Fixed history.  Durations of completed stays (stays that end in a phase
-- that is not failed or cancelled):
--   queued    20 stays of 10 s
--   fetching  19 stays of 30 s (on 2 January)
--   building  19 stays of 1, 2, ..., 19 minutes and one of 100 minutes,
--             plus 2 failures (after 3 hours) and 1 cancellation
--   transferring  1 failure
--   waiting   25 stays of 1 hour
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous)
SELECT 'stats_jobs', 'q' || g, 'queued', 'preparing', 'active',
       '2026-01-01 00:00+00'::timestamptz + g * interval '1 minute', interval '10 seconds'
  FROM generate_series(1, 20) g
UNION ALL
SELECT 'stats_jobs', 'f' || g, 'fetching', 'building', 'active',
       '2026-01-02 00:00+00'::timestamptz + g * interval '1 minute', interval '30 seconds'
  FROM generate_series(1, 19) g
UNION ALL
SELECT 'stats_jobs', 'b' || g, 'building', 'transferring', 'active',
       '2026-01-01 01:00+00'::timestamptz + g * interval '1 minute',
       CASE WHEN g = 20 THEN interval '100 minutes' ELSE g * interval '1 minute' END
  FROM generate_series(1, 20) g
UNION ALL
SELECT 'stats_jobs', 'x' || g, 'building', 'failed', 'failed',
       '2026-01-01 02:00+00'::timestamptz + g * interval '1 minute', interval '3 hours'
  FROM generate_series(1, 2) g
UNION ALL
SELECT 'stats_jobs', 'c1', 'building', 'cancelled', 'cancelled', '2026-01-01 03:00+00', interval '5 minutes'
UNION ALL
SELECT 'stats_jobs', 't1', 'transferring', 'failed', 'failed', '2026-01-01 04:00+00', interval '1 minute'
UNION ALL
SELECT 'stats_jobs', 'w' || g, 'waiting', 'building', 'active',
       '2026-01-01 05:00+00'::timestamptz + g * interval '1 minute', interval '1 hour'
  FROM generate_series(1, 25) g;

-- building: mean (60 * 190 + 6000) / 20 = 870 s; median (600 + 660) / 2 =
-- 630 s; p95 at rank 0.95 * 19 = 18.05: 1140 + 0.05 * (6000 - 1140) = 1383 s;
-- max 6000 s; suggested deadline ceil(1.5 * 1383 s = 34.6 min) = 35 min.
-- queued: p95 10 s, 1.5 x = 15 s, at least a minute: 1 min.
-- fetching: 19 stays, under 20: no suggestion.  waiting: never a deadline.
SELECT * FROM deploy_progress.phase_stats('stats_jobs');
-- since: stays that ended at or after the given time (only fetching's)
SELECT phase, count, mean, failures FROM deploy_progress.phase_stats('stats_jobs', since => '2026-01-02')
 WHERE count > 0 OR failures > 0;
-- the rule of the suggestion, at its edges
SELECT deploy_progress._suggested_deadline('active', 20, 40) AS "20 stays, p95 40 s",
       deploy_progress._suggested_deadline('active', 19, 40) AS "19 stays",
       deploy_progress._suggested_deadline('active', 20, 80) AS "p95 80 s",
       deploy_progress._suggested_deadline('pending', 500, 3600) AS "p95 1 h",
       deploy_progress._suggested_deadline('waiting', 500, 3600) AS waiting;

-- timeline(): one row through an attempt that failed and a restart (the
-- rows are inserted with stamping off, so they record no history of their own)
SET deploy_progress.stamping = off;
INSERT INTO stats_jobs VALUES ('k1', 'building');
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous, reason)
VALUES ('stats_jobs', 'k1', NULL,        'queued',    'pending', '2026-03-01 10:00+00', NULL, NULL),
       ('stats_jobs', 'k1', 'queued',    'preparing', 'active',  '2026-03-01 10:05+00', '5 minutes', NULL),
       ('stats_jobs', 'k1', 'preparing', 'building',  'active',  '2026-03-01 10:15+00', '10 minutes', NULL),
       ('stats_jobs', 'k1', 'building',  'failed',    'failed',  '2026-03-01 10:45+00', '30 minutes', 'out of memory'),
       ('stats_jobs', 'k1', 'failed',    'queued',    'pending', '2026-03-01 11:00+00', '15 minutes', 'restart'),
       ('stats_jobs', 'k1', 'queued',    'preparing', 'active',  '2026-03-01 11:02+00', '2 minutes', NULL),
       ('stats_jobs', 'k1', 'preparing', 'building',  'active',  '2026-03-01 11:10+00', '8 minutes', NULL);
SELECT * FROM deploy_progress.timeline('stats_jobs', 'k1', as_of => '2026-03-01 11:30+00');
-- a row that ended: its terminal phase has no duration
INSERT INTO stats_jobs VALUES ('k2', 'failed');
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous, reason)
VALUES ('stats_jobs', 'k2', NULL,        'queued',    'pending', '2026-03-01 10:00+00', NULL, NULL),
       ('stats_jobs', 'k2', 'queued',    'preparing', 'active',  '2026-03-01 10:01+00', '1 minute', NULL),
       ('stats_jobs', 'k2', 'preparing', 'fetching',  'active',  '2026-03-01 10:02+00', '1 minute', NULL),
       ('stats_jobs', 'k2', 'fetching',  'building',  'active',  '2026-03-01 10:10+00', '8 minutes', NULL),
       ('stats_jobs', 'k2', 'building',  'failed',    'failed',  '2026-03-02 12:20+00', '26:10:00', 'no_progress');
SELECT * FROM deploy_progress.timeline('stats_jobs', 'k2', as_of => '2026-03-05');
-- a key without history
SELECT count(*) FROM deploy_progress.timeline('stats_jobs', 'nope');

-- steps(): the shape a UI renders
SELECT jsonb_pretty(deploy_progress.steps('stats_jobs', 'k2'));
-- and in short, phase:status, for rows in every situation
INSERT INTO stats_jobs VALUES ('k3', 'waiting'), ('k4', 'succeeded'), ('k5', 'failed'), ('k6', 'queued'),
                              ('k7', 'cancelled');
RESET deploy_progress.stamping;
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous)
VALUES ('stats_jobs', 'k3', NULL,        'queued',    'pending',   '2026-03-01 10:00+00', NULL),
       ('stats_jobs', 'k3', 'queued',    'preparing', 'active',    '2026-03-01 10:01+00', '1 minute'),
       ('stats_jobs', 'k3', 'preparing', 'waiting',   'waiting',   '2026-03-01 10:02+00', '1 minute'),
       ('stats_jobs', 'k4', NULL,        'queued',    'pending',   '2026-03-01 10:00+00', NULL),
       ('stats_jobs', 'k4', 'queued',    'building',  'active',    '2026-03-01 10:01+00', '1 minute'),
       ('stats_jobs', 'k4', 'building',  'succeeded', 'succeeded', '2026-03-01 10:02+00', '1 minute'),
       ('stats_jobs', 'k7', NULL,        'queued',    'pending',   '2026-03-01 10:00+00', NULL),
       ('stats_jobs', 'k7', 'queued',    'preparing', 'active',    '2026-03-01 10:01+00', '1 minute'),
       ('stats_jobs', 'k7', 'preparing', 'cancelled', 'cancelled', '2026-03-01 10:02+00', '1 minute');
SELECT k.id AS key, j.phase AS row_phase,
       (SELECT string_agg(s.phase || ':' || s.status, ' ' ORDER BY s.ord)
          FROM jsonb_array_elements(deploy_progress.steps('stats_jobs', k.id)) WITH ORDINALITY AS e(step, ord),
               LATERAL (SELECT e.step ->> 'phase' AS phase, e.step ->> 'status' AS status, e.ord) s) AS steps
  FROM unnest(ARRAY['k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7']) AS k(id)
  JOIN stats_jobs j ON j.id = k.id
 ORDER BY k.id;
-- k1 is in its second attempt: the visits of the first do not count, and
-- each step carries the times of its visit in the current attempt
SELECT e ->> 'phase' AS phase, e ->> 'status' AS status, e ->> 'started_at' AS started_at, e ->> 'ended_at' AS ended_at
  FROM jsonb_array_elements(deploy_progress.steps('stats_jobs', 'k1')) e
 WHERE e ->> 'started_at' IS NOT NULL;
-- a row that does not exist
SELECT deploy_progress.steps('stats_jobs', 'nope') IS NULL AS no_row;

-- errors
SELECT * FROM deploy_progress.phase_stats('pg_class');
CREATE TABLE stats_secret (id text PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('stats_secret', notify_channel => NULL);
CREATE ROLE stats_outsider;
SET ROLE stats_outsider;
SELECT * FROM deploy_progress.phase_stats('stats_secret');
SELECT * FROM deploy_progress.timeline('stats_secret', 'k1');
SELECT deploy_progress.steps('stats_secret', 'k1');
RESET ROLE;
DROP ROLE stats_outsider;

DELETE FROM deploy_progress.history WHERE relid = 'stats_jobs'::regclass;
DROP TABLE stats_jobs, stats_secret;
