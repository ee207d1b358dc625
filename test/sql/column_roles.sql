-- Column roles: the catalogue deploy_progress.column_roles, track()'s
-- "columns" map, the configuration it writes (tracked.columns), and the
-- readers, which all take each role's column from that configuration and
-- their figures from one row generator, so they agree.
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never

-- 1. the catalogue: every role with its accepted types and where side
-- storage keeps it
SELECT role, position, types, value_type, under_side FROM deploy_progress.column_roles ORDER BY position;
-- everyone can read it, nobody but the extension's owner write it
CREATE ROLE cr_user;
SET ROLE cr_user;
SELECT count(*) AS roles FROM deploy_progress.column_roles;
INSERT INTO deploy_progress.column_roles VALUES ('nope', 99, '{text}', 'text', 'text', 'row', 'x');
RESET ROLE;
DROP ROLE cr_user;

-- 2. track(columns => ...): any role by its catalogue name
CREATE TABLE cr_jobs (
    id        integer PRIMARY KEY,
    phase     deploy_progress.phase NOT NULL,
    done      integer,
    todo      integer,
    changed   timestamptz,
    moved     timestamptz,
    beat      timestamptz,
    why       text
);
SELECT columns FROM deploy_progress.track('cr_jobs',
    columns => '{"completed_items": "done", "total_items": "todo", "phase_updated_at": "changed",
                 "progress_updated_at": "moved", "heartbeat_at": "beat", "failure_reason": "why"}');
-- the same as naming them by track()'s parameters
SELECT columns = (SELECT columns FROM deploy_progress.tracked WHERE relid = 'cr_jobs'::regclass) AS same
  FROM deploy_progress.track('cr_jobs', completed_items => 'done', total_items => 'todo',
                             phase_updated_at => 'changed', progress_updated_at => 'moved',
                             heartbeat_at => 'beat', failure_reason => 'why');
-- null switches a role off, like passing NULL to its parameter
SELECT columns FROM deploy_progress.track('cr_jobs',
    columns => '{"completed_items": "done", "total_items": "todo", "phase_updated_at": "changed",
                 "progress_updated_at": "moved", "heartbeat_at": null}');
-- the trigger stamps the columns the map names
INSERT INTO cr_jobs (id, phase, done, todo) VALUES (1, 'transferring', 1, 4);
SELECT changed IS NOT NULL AS phase_stamped, moved = changed AS progress_stamped, beat IS NULL AS heartbeat_off
  FROM cr_jobs WHERE id = 1;

-- 3. bad maps change nothing
SELECT deploy_progress.track('cr_jobs', columns => '["done"]');
SELECT deploy_progress.track('cr_jobs', columns => '{"completed": "done"}');
SELECT deploy_progress.track('cr_jobs', columns => '{"completed_items": 3}');
SELECT deploy_progress.track('cr_jobs', completed_items => 'done', columns => '{"completed_items": "todo"}');
SELECT deploy_progress.track('cr_jobs', columns => '{"completed_items": "nope"}');
SELECT deploy_progress.track('cr_jobs', columns => '{"heartbeat_at": "why"}');
SELECT columns ->> 'heartbeat_at' AS heartbeat_still_off FROM deploy_progress.tracked WHERE relid = 'cr_jobs'::regclass;
-- naming a role by its own name again is not a conflict
SELECT columns ->> 'completed_items' AS completed
  FROM deploy_progress.track('cr_jobs', completed_items => 'completed_items', columns => '{"completed_items": "done"}');

-- 4. the readers agree: in_flight and progress() show the same figures for
-- every in-flight row, including a row that is not in an active phase
-- (no speed, so no ETA, even with every item done), and a stalled row
-- (no ETA from a decayed speed)
SELECT storage FROM deploy_progress.track('cr_jobs',
    columns => '{"completed_items": "done", "total_items": "todo", "phase_updated_at": "changed",
                 "progress_updated_at": "moved", "heartbeat_at": "beat"}');
SET deploy_progress.stamping = off;
INSERT INTO cr_jobs (id, phase, done, todo, changed, moved) VALUES
    (2, 'transferring', 50, 200, '2026-01-01 10:00+00', '2026-01-01 10:04:55+00'),
    (3, 'queued', 5, 5, '2026-01-01 10:00+00', '2026-01-01 10:00+00'),
    (4, 'waiting', 0, NULL, '2026-01-01 10:01+00', '2026-01-01 10:01+00'),
    (5, 'transferring', 50, 200, '2026-01-01 10:00+00', '2026-01-01 10:04+00');
RESET deploy_progress.stamping;
SELECT f.key, f.kind, f.percent, f.average_speed, f.speed, f.eta, (p ->> 'stalled')::boolean AS stalled, f.overall_progress,
       f.eta IS NOT DISTINCT FROM (p ->> 'eta_seconds')::float8 * interval '1 second' AS eta_agrees,
       f.percent IS NOT DISTINCT FROM (p ->> 'percent')::float8 AS percent_agrees,
       f.speed IS NOT DISTINCT FROM (p ->> 'speed')::float8 AS speed_agrees,
       f.overall_progress IS NOT DISTINCT FROM (p ->> 'overall_progress')::float8 AS overall_agrees
  FROM deploy_progress.in_flight('cr_jobs', '2026-01-01 10:05+00') f
 CROSS JOIN LATERAL deploy_progress.progress('cr_jobs', f.key, '2026-01-01 10:05+00') p
 WHERE f.key IN ('2', '3', '4', '5')
 ORDER BY f.key;
-- and timings() gives what the row holds
SELECT * FROM deploy_progress.timings('cr_jobs', '2');

-- 5. progress() of a row of a partitioned table in side storage, asked
-- through the partition, reads the side timings the trigger keeps for the
-- partitioned table
CREATE TABLE cr_parts (id integer, region text, phase deploy_progress.phase NOT NULL,
                       PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE cr_parts_eu PARTITION OF cr_parts FOR VALUES IN ('eu');
SELECT storage FROM deploy_progress.track('cr_parts');
INSERT INTO cr_parts VALUES (1, 'eu', 'building');
SELECT (p ->> 'phase_updated_at') IS NOT NULL AS side_timings_found,
       (p ->> 'started_at')::timestamptz = s.started_at AS same_as_side_table
  FROM deploy_progress.progress('cr_parts_eu', '(1,eu)') p,
       deploy_progress.side_timings s
 WHERE s.relid = 'cr_parts'::regclass AND s.key = '(1,eu)';
SELECT (deploy_progress.progress('cr_parts', '(1,eu)') ->> 'started_at') IS NOT NULL AS through_the_parent;

DROP TABLE cr_jobs, cr_parts;
SELECT count(*) AS tracked_left FROM deploy_progress.tracked WHERE relid::text LIKE 'cr\_%';
