-- stuck_tables(): a table whose queue waits past its deadline while no
-- active row works is reported once ("fleet_stall"), with the counts and
-- times an operator needs; the metric deploy_progress_fleet_stalled.
-- Timings are written by hand (stamping off) and read as of fixed times.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

CREATE TABLE fleet (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
                    completed_items bigint, total_items bigint,
                    phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
                    started_at timestamptz, finished_at timestamptz);
SELECT queue_deadline, phase_deadline, progress_deadline, heartbeat_deadline
  FROM deploy_progress.track('fleet', queue_deadline => '10 minutes', notify_channel => NULL);

SET deploy_progress.stamping = off;
-- three rows queued since 10:00, 10:05 and 10:20; one done
INSERT INTO fleet (id, phase, phase_updated_at) VALUES
    (1, 'queued', '2026-05-01 10:00+00'), (2, 'queued', '2026-05-01 10:05+00'),
    (3, 'queued', '2026-05-01 10:20+00'), (4, 'succeeded', '2026-05-01 09:00+00');

-- 10:09: nothing overdue yet
SELECT * FROM deploy_progress.stuck_tables('fleet', '2026-05-01 10:09+00');
-- 10:16: two rows overdue and no active row at all: stalled
SELECT * FROM deploy_progress.stuck_tables('fleet', '2026-05-01 10:16+00');
-- the same from the global form
SELECT relid, queue_overdue FROM deploy_progress.stuck_tables(as_of => '2026-05-01 10:16+00');

-- a worker picks a row up at 10:15 and reports at 10:15: the fleet works
UPDATE fleet SET phase = 'building', phase_updated_at = '2026-05-01 10:15+00', progress_updated_at = '2026-05-01 10:15+00',
                 heartbeat_at = '2026-05-01 10:15+00', started_at = '2026-05-01 10:15+00'
 WHERE id = 1;
SELECT count(*) AS stalled FROM deploy_progress.stuck_tables('fleet', '2026-05-01 10:16+00');
-- 10:21: its heartbeat is 6 minutes old (deadline 5): stuck, so nothing works
SELECT key, reason FROM deploy_progress.stuck('fleet', '2026-05-01 10:21+00') ORDER BY key;
SELECT * FROM deploy_progress.stuck_tables('fleet', '2026-05-01 10:21+00');

-- a slow row past its phase deadline that still beats and progresses works
SELECT relid FROM deploy_progress.track('fleet', queue_deadline => '10 minutes', phase_deadline => '3 minutes',
                                        notify_channel => NULL);
UPDATE fleet SET heartbeat_at = '2026-05-01 10:20+00', progress_updated_at = '2026-05-01 10:20+00' WHERE id = 1;
SELECT key, reason FROM deploy_progress.stuck('fleet', '2026-05-01 10:21+00') ORDER BY key;
SELECT count(*) AS stalled FROM deploy_progress.stuck_tables('fleet', '2026-05-01 10:21+00');
-- one that beats but has not progressed for 11 minutes (deadline 10) does not
SELECT key, reason FROM deploy_progress.stuck('fleet', '2026-05-01 10:31+00') ORDER BY key;
UPDATE fleet SET heartbeat_at = '2026-05-01 10:30+00' WHERE id = 1;
SELECT key, reason FROM deploy_progress.stuck('fleet', '2026-05-01 10:31+00') ORDER BY key;
SELECT relid, reason, queue_overdue, active, active_stuck, queued_since, last_activity_at
  FROM deploy_progress.stuck_tables('fleet', '2026-05-01 10:31+00');
-- a waiting row is neither queued nor working
UPDATE fleet SET phase = 'waiting' WHERE id = 1;
SELECT relid, queue_overdue, active, active_stuck FROM deploy_progress.stuck_tables('fleet', '2026-05-01 10:31+00');

-- the metric, as of now: rows queued an hour ago, none active
CREATE TABLE fleet_now (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
                        phase_updated_at timestamptz, heartbeat_at timestamptz, started_at timestamptz, finished_at timestamptz);
SELECT relid FROM deploy_progress.track('fleet_now', queue_deadline => '10 minutes', notify_channel => NULL);
INSERT INTO fleet_now VALUES (1, 'queued', now() - interval '1 hour');
SELECT labels ->> 'table' AS table, value FROM deploy_progress.metrics
 WHERE name = 'deploy_progress_fleet_stalled' AND labels ->> 'table' IN ('public.fleet_now', 'public.fleet')
 ORDER BY 1;
SELECT line FROM regexp_split_to_table(deploy_progress.metrics_prometheus(), E'\n') AS line
 WHERE line LIKE '%fleet_stalled%fleet_now%';
RESET deploy_progress.stamping;

-- Privileges and bad input: a role that cannot read the table sees no
-- stall, and asking for the table by name is refused
CREATE ROLE st_outsider;
SET ROLE st_outsider;
SELECT count(*) FROM deploy_progress.stuck_tables(as_of => '2026-05-01 10:16+00');
SELECT * FROM deploy_progress.stuck_tables('fleet', '2026-05-01 10:16+00');
RESET ROLE;
SELECT * FROM deploy_progress.stuck_tables('pg_class', now());
SELECT * FROM deploy_progress.stuck_tables('fleet', 'infinity');
SELECT * FROM deploy_progress.stuck_tables('fleet', NULL);
DROP ROLE st_outsider;
SELECT deploy_progress.untrack('fleet'), deploy_progress.untrack('fleet_now');
DROP TABLE fleet, fleet_now;
