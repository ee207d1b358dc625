-- The whole run's ETA: refresh_estimates() learns per phase how long
-- completed stays last and how often succeeded runs visit it, and the
-- readers add the current phase's time left to the expected time of the
-- phases ahead.  History rows are fixed, so every estimate is known:
-- 40 runs, queued 10 s, build 100 s (20 of them 80 s, 20 of them 120 s),
-- half of them test 200 s, deploy 50 s.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

SELECT count(*) FROM deploy_progress.define_lifecycle('re_life', $$[
    {"phase": "queued", "kind": "pending"}, {"phase": "build", "kind": "active"},
    {"phase": "test", "kind": "active"}, {"phase": "approval", "kind": "waiting"},
    {"phase": "deploy", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"}]$$);
CREATE TABLE re_runs (id integer PRIMARY KEY, phase text NOT NULL DEFAULT 'queued',
                      completed_items bigint, total_items bigint,
                      phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
                      started_at timestamptz, finished_at timestamptz);
SELECT relid FROM deploy_progress.track('re_runs', lifecycle => 're_life', notify_channel => NULL);

-- no estimates yet: no whole-run ETA.  Row 1 is in build since 10:00:00,
-- and is read as of 10:00:30.
SET deploy_progress.stamping = off;
INSERT INTO re_runs (id, phase, phase_updated_at, started_at, heartbeat_at, progress_updated_at)
VALUES (1, 'build', '2026-05-01 10:00:00+00', '2026-05-01 09:59:50+00', '2026-05-01 10:00:30+00', '2026-05-01 10:00:30+00');
SELECT key, overall_eta, overall_eta_p95, expected_finish_at FROM deploy_progress.in_flight('re_runs', '2026-05-01 10:00:30+00');

CREATE FUNCTION re_history(runs integer, first integer DEFAULT 1) RETURNS void LANGUAGE sql AS $$
    INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous)
    SELECT 're_runs', 'old' || g, v.f, v.t, p.kind,
           now() - interval '1 day' + v.o * interval '1 second', v.d * interval '1 second'
      FROM generate_series(first, first + runs - 1) g
     CROSS JOIN LATERAL (VALUES
            (NULL, 'queued', 0, NULL),
            ('queued', 'build', 10, 10),
            ('build', CASE WHEN g % 2 = 0 THEN 'test' ELSE 'deploy' END, 10 + CASE WHEN g % 4 < 2 THEN 80 ELSE 120 END,
                      CASE WHEN g % 4 < 2 THEN 80 ELSE 120 END),
            (CASE WHEN g % 2 = 0 THEN 'test' END, 'deploy', 10 + CASE WHEN g % 4 < 2 THEN 80 ELSE 120 END + 200, 200),
            ('deploy', 'done', 360, 50)) v(f, t, o, d)
      JOIN deploy_progress.lifecycle_phases p ON p.lifecycle = 're_life' AND p.phase = v.t
     WHERE v.f IS NOT NULL OR v.t = 'queued'
$$;
-- 19 runs: too few to tell
SELECT re_history(19);
SELECT deploy_progress.refresh_estimates('re_runs');
SELECT phase, stays, visit_share, runs FROM deploy_progress.phase_estimates WHERE relid = 're_runs'::regclass ORDER BY phase;
SELECT key, overall_eta FROM deploy_progress.in_flight('re_runs', '2026-05-01 10:00:30+00');

-- 40 runs
SELECT re_history(21, 20);
SELECT deploy_progress.refresh_estimates('re_runs');
SELECT phase, stays, quantiles[1] AS min, quantiles[11] AS p50, quantiles[20] AS p95, quantiles[21] AS max,
       visit_share, runs
  FROM deploy_progress.phase_estimates WHERE relid = 're_runs'::regclass ORDER BY phase;

-- in build for 30 s: the build stays that lasted longer are all of them
-- (80 s and 120 s), whose median is 100 s: 70 s left; then half a test
-- (0.5 x 200 s) and a deploy (50 s): 220 s.  The 95th percentile: 120 s -
-- 30 s + 0.5 x 200 s + 50 s = 240 s.
SELECT key, phase, overall_eta, overall_eta_p95, expected_finish_at
  FROM deploy_progress.in_flight('re_runs', '2026-05-01 10:00:30+00');
SELECT p ->> 'overall_eta_seconds' AS p50, p ->> 'overall_eta_p95_seconds' AS p95, p ->> 'expected_finish_at' AS finish
  FROM deploy_progress.progress('re_runs', '1', '2026-05-01 10:00:30+00') p;
SELECT deploy_progress.describe('re_runs', '1', '2026-05-01 10:00:30+00');
-- in build for 100 s: only the 120 s stays are longer, 20 s left, and 150 s after
SELECT * FROM deploy_progress._run_eta('re_runs', 're_life', 'build', 100, NULL);
-- longer than any build seen: no estimate rather than a guess
SELECT * FROM deploy_progress._run_eta('re_runs', 're_life', 'build', 121, NULL);
-- with counters, the phase's own ETA counts for the current phase: 7 s + 150 s
SELECT * FROM deploy_progress._run_eta('re_runs', 're_life', 'build', 30, 7);
-- queued: 10 s, a build of 100 s (120 s), then 150 s
SELECT * FROM deploy_progress._run_eta('re_runs', 're_life', 'queued', 0, NULL);
-- in test for 50 s: 150 s left, then the deploy
SELECT * FROM deploy_progress._run_eta('re_runs', 're_life', 'test', 50, NULL);
-- in a waiting phase no run went through: nothing is known of its length
SELECT * FROM deploy_progress._run_eta('re_runs', 're_life', 'approval', 0, NULL);
-- the last active phase: only its own time is left
SELECT * FROM deploy_progress._run_eta('re_runs', 're_life', 'deploy', 0, NULL);
-- a row with counters, half done in 50 s: 50 s left by its speed, then 150 s
UPDATE re_runs SET completed_items = 50, total_items = 100, progress_updated_at = '2026-05-01 10:00:50+00',
                   heartbeat_at = '2026-05-01 10:00:50+00' WHERE id = 1;
SELECT key, eta, overall_eta FROM deploy_progress.in_flight('re_runs', '2026-05-01 10:00:50+00');
-- a stalled one has no ETA of its own: the build's stays decide
SELECT key, stalled, overall_eta
  FROM deploy_progress.in_flight('re_runs', '2026-05-01 10:01:10+00') f
 CROSS JOIN LATERAL (SELECT (deploy_progress.progress('re_runs', f.key, '2026-05-01 10:01:10+00') ->> 'stalled')::boolean) s(stalled);
-- finished rows have none
INSERT INTO re_runs (id, phase, phase_updated_at, started_at, finished_at)
VALUES (2, 'done', '2026-05-01 10:00:00+00', '2026-05-01 09:55:00+00', '2026-05-01 10:00:00+00');
SELECT p ->> 'overall_eta_seconds' AS p50, p ->> 'expected_finish_at' AS finish
  FROM deploy_progress.progress('re_runs', '2', '2026-05-01 10:00:30+00') p;
RESET deploy_progress.stamping;

-- Who sees the estimates: a role that can read the table, unless row-level
-- security applies to it (the estimates come from every row)
CREATE ROLE re_reader;
CREATE ROLE re_tenant;
GRANT SELECT ON re_runs TO re_reader, re_tenant;
SET ROLE re_reader;
SELECT count(*) AS estimates FROM deploy_progress.phase_estimates WHERE relid = 're_runs'::regclass;
SELECT key, overall_eta FROM deploy_progress.in_flight('re_runs', '2026-05-01 10:00:30+00');
RESET ROLE;
ALTER TABLE re_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY re_all ON re_runs FOR SELECT TO re_tenant USING (true);
SET ROLE re_tenant;
SELECT count(*) AS estimates FROM deploy_progress.phase_estimates WHERE relid = 're_runs'::regclass;
SELECT key, overall_eta FROM deploy_progress.in_flight('re_runs', '2026-05-01 10:00:30+00');
RESET ROLE;
CREATE ROLE re_outsider;
SET ROLE re_outsider;
SELECT count(*) AS estimates FROM deploy_progress.phase_estimates;
-- refreshing needs the extension owner's rights
SELECT deploy_progress.refresh_estimates();
RESET ROLE;

-- Bad input
SELECT deploy_progress.refresh_estimates('re_runs', '0 seconds');
SELECT deploy_progress.refresh_estimates('re_runs', NULL);
SELECT deploy_progress.refresh_estimates('pg_class');
-- a refresh of every table keeps only tracked tables' estimates
SELECT deploy_progress.refresh_estimates() > 0 AS refreshed;
SELECT DISTINCT relid FROM deploy_progress.phase_estimates WHERE relid = 're_runs'::regclass;

-- untrack() and DROP TABLE leave no estimates behind to attach to a
-- table that later gets the same OID
CREATE TABLE re_other (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued');
SELECT relid FROM deploy_progress.track('re_other', notify_channel => NULL);
SELECT deploy_progress.refresh_estimates('re_other');
SELECT deploy_progress.untrack('re_other');
SELECT count(*) AS left_after_untrack FROM deploy_progress.phase_estimates WHERE relid = 're_other'::regclass;
DROP TABLE re_other;
SELECT count(*) AS before_drop FROM deploy_progress.phase_estimates WHERE relid = 're_runs'::regclass;
CREATE TEMP TABLE re_oid AS SELECT 're_runs'::regclass::oid AS oid;
DROP TABLE re_runs;
SELECT count(*) AS left_after_drop FROM deploy_progress.phase_estimates WHERE relid::oid = (SELECT oid FROM re_oid);
DROP FUNCTION re_history(integer, integer);
DROP ROLE re_reader;
DROP ROLE re_tenant;
DROP ROLE re_outsider;
SELECT deploy_progress.drop_lifecycle('re_life');
