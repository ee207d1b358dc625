-- The in-flight view: which rows it lists, their figures at a fixed time,
-- the partial index its queries use, privileges, dropped tables.
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

CREATE TABLE if_deploys (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL,
    completed_items     bigint,
    total_items         bigint,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    items_per_second    double precision,
    speed_updated_at    timestamptz
);
SELECT relid FROM deploy_progress.track('if_deploys', speed_time_constant => '10 seconds');

-- T = 12:00; every row is looked at as of 12:10
SET deploy_progress.stamping = off;
INSERT INTO if_deploys VALUES
    -- transferring since 12:00, 3000 of 10000 items: average 5 items/s; the
    -- smoothed speed was 8 items/s at 12:09:50, decayed over 10 s by e^-1
    (1, 'transferring', 3000, 10000, '2026-01-01 12:00+00', '2026-01-01 12:09:50+00', '2026-01-01 12:09:50+00',
        '2026-01-01 11:50+00', NULL, 8, '2026-01-01 12:09:50+00'),
    -- building, no counters, silent since 12:00: stuck without heartbeat
    (2, 'building', NULL, NULL, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00',
        '2026-01-01 12:00+00', NULL, NULL, NULL),
    -- queued at 12:05 (deadline 15 minutes): healthy
    (3, 'queued', NULL, NULL, '2026-01-01 12:05+00', '2026-01-01 12:05+00', '2026-01-01 12:05+00',
        NULL, NULL, NULL, NULL),
    -- waiting since 11:00: listed, never stuck
    (4, 'waiting', 5, 10, '2026-01-01 11:00+00', '2026-01-01 11:00+00', '2026-01-01 11:00+00',
        '2026-01-01 10:00+00', NULL, NULL, NULL),
    -- finished rows are not in flight
    (5, 'succeeded', 10, 10, '2026-01-01 11:00+00', '2026-01-01 11:00+00', '2026-01-01 11:00+00',
        '2026-01-01 10:00+00', '2026-01-01 11:00+00', NULL, NULL),
    (6, 'failed', 1, 10, '2026-01-01 11:00+00', '2026-01-01 11:00+00', '2026-01-01 11:00+00',
        '2026-01-01 10:00+00', '2026-01-01 11:00+00', NULL, NULL);
RESET deploy_progress.stamping;

SELECT key, phase, kind, completed, total, round(percent::numeric, 2) AS percent,
       round(average_speed::numeric, 4) AS average_speed,
       round(smoothed_speed::numeric, 4) AS smoothed_speed,
       round(speed::numeric, 4) AS speed, date_trunc('second', eta) AS eta,
       in_phase, elapsed, round(overall_progress::numeric, 4) AS overall_progress, stuck_reason
  FROM deploy_progress.in_flight('if_deploys', '2026-01-01 12:10:00+00')
 ORDER BY key;

-- hand-computed: 8 * exp(-1) = 2.9430 items/s; 7000 left / 2.9430 = 2378.5 s;
-- overall = (preparing 1 + fetching 2 + building 3 + 3 * 0.3) / 14 = 0.4929
SELECT round((8 * exp(-1))::numeric, 4) AS smoothed, (7000 / (8 * exp(-1)))::integer AS eta_seconds,
       round(((1 + 2 + 3 + 3 * 0.3) / 14)::numeric, 4) AS overall;

-- the view is the function as of now(): same rows, same columns
SELECT (SELECT count(*) FROM deploy_progress.in_flight WHERE relid = 'if_deploys'::regclass) AS view_rows,
       (SELECT count(*) FROM deploy_progress.in_flight('if_deploys')) AS function_rows;
SELECT array_agg(attname ORDER BY attnum) AS view_columns
  FROM pg_attribute WHERE attrelid = 'deploy_progress.in_flight'::regclass;

-- side storage: timings come from the side table, and a text phase with a
-- custom lifecycle weighs its own phases
CREATE TABLE if_steps (id integer PRIMARY KEY, phase text NOT NULL, completed_items integer, total_items integer);
SELECT count(*) FROM deploy_progress.define_lifecycle('if_steps_lc', '[
    {"phase": "pending", "kind": "pending"},
    {"phase": "copy",    "kind": "active", "weight": 3},
    {"phase": "verify",  "kind": "active", "weight": 1},
    {"phase": "ok",      "kind": "succeeded"},
    {"phase": "error",   "kind": "failed"}]');
SELECT relid, storage FROM deploy_progress.track('if_steps', lifecycle => 'if_steps_lc');
INSERT INTO if_steps VALUES (1, 'verify', 1, 4), (2, 'ok', 4, 4);
UPDATE deploy_progress.timings
   SET phase_updated_at = '2026-01-01 12:00+00', progress_updated_at = '2026-01-01 12:08+00',
       heartbeat_at = '2026-01-01 12:09+00', started_at = '2026-01-01 11:00+00'
 WHERE relid = 'if_steps'::regclass AND key = '1';
-- overall = (copy 3 + verify 1 * 0.25) / 4 = 0.8125; average 1 item in 600 s
SELECT key, phase, round(percent::numeric, 2) AS percent, round(average_speed::numeric, 6) AS average_speed,
       smoothed_speed, in_phase, elapsed, overall_progress, stuck_reason
  FROM deploy_progress.in_flight('if_steps', '2026-01-01 12:10:00+00');

-- every tracked table at once, in table order
SELECT relid, key FROM deploy_progress.in_flight(as_of => '2026-01-01 12:10:00+00')
 WHERE relid IN ('if_deploys'::regclass, 'if_steps'::regclass) ORDER BY relid::text, key;

-- the query for a table reads its partial index: 100,000 rows, 5 in flight
CREATE TABLE if_big (id bigint PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                     completed_items bigint, total_items bigint, phase_updated_at timestamptz,
                     progress_updated_at timestamptz, heartbeat_at timestamptz,
                     started_at timestamptz, finished_at timestamptz);
SELECT relid FROM deploy_progress.track('if_big');
INSERT INTO if_big (id, phase, completed_items, total_items)
SELECT g, CASE WHEN g % 20000 = 0 THEN 'fetching' ELSE 'succeeded' END::deploy_progress.phase, 1, 2
  FROM generate_series(1, 100000) g;
ANALYZE if_big;
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) '
        || replace(replace(replace(q, '$1', 'now()'), '$2', '''{1}''::float8[]'), '$3', '''{active}''::text[]');
END $$;
SELECT regexp_replace(p, '^\s*(->\s*)?', '') AS scan_of_if_big
  FROM pg_temp.plan_of((SELECT deploy_progress._in_flight_query(t) FROM deploy_progress.tracked t
                         WHERE relid = 'if_big'::regclass)) AS p
 WHERE p ~ 'on if_big';
SELECT count(*) FROM deploy_progress.in_flight('if_big');

-- errors
SELECT * FROM deploy_progress.in_flight('pg_class');
SELECT * FROM deploy_progress.in_flight('if_big', NULL);

-- privileges: a role sees the rows of the tables it can read, no others
CREATE ROLE if_reader;
GRANT SELECT ON if_steps TO if_reader;
SET ROLE if_reader;
SELECT relid, key FROM deploy_progress.in_flight ORDER BY relid::text, key;
RESET ROLE;
REVOKE SELECT ON if_steps FROM if_reader;
DROP ROLE if_reader;

-- dropping a tracked table is not blocked by the view and leaves it working
DROP TABLE if_big;
SELECT count(*) FROM deploy_progress.in_flight WHERE relid::text = 'if_big';
SELECT count(*) > 0 AS still_lists_others FROM deploy_progress.in_flight;

DROP TABLE if_deploys, if_steps;
SELECT deploy_progress.drop_lifecycle('if_steps_lc');
