-- Accuracy of the whole-run ETA (refresh_estimates(), _run_eta()) against
-- the naive extrapolation elapsed / overall_progress, on simulated
-- deployments with known per-phase distributions: log-normal stay times,
-- phases that a share of the runs skip, and stalls (one build in ten takes
-- three times as long).  500 runs are the history; 300 others are asked
-- about at 25, 50 and 75 % of their actual duration.  Run by
-- test/bench/eta.sh; the numbers are in docs/performance.md.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SELECT setseed(0.42);

SELECT count(*) FROM deploy_progress.define_lifecycle('eta_bench', $$[
    {"phase": "queued", "kind": "pending"}, {"phase": "fetch", "kind": "active"},
    {"phase": "build", "kind": "active"}, {"phase": "test", "kind": "active"},
    {"phase": "migrate", "kind": "active"}, {"phase": "deploy", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"}]$$);
CREATE TABLE eta_runs (id integer PRIMARY KEY, phase text NOT NULL DEFAULT 'queued');
SELECT relid FROM deploy_progress.track('eta_runs', lifecycle => 'eta_bench', notify_channel => NULL);

-- the phases: position, median stay (s), log-normal sigma, share of runs that skip it
CREATE TABLE eta_model (position integer, phase text, median double precision, sigma double precision, skip double precision);
INSERT INTO eta_model VALUES
    (1, 'queued',  20, 0.8, 0), (2, 'fetch',  30, 0.4, 0), (3, 'build', 240, 0.5, 0),
    (4, 'test',   180, 0.6, 0.3), (5, 'migrate', 60, 0.7, 0.6), (6, 'deploy', 90, 0.3, 0);

-- 800 runs: each visited phase's stay (Box-Muller normal draws); a stalled
-- run's build takes three times as long
CREATE TABLE eta_stays AS
SELECT r.run, m.position, m.phase,
       exp(ln(m.median) + m.sigma * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))
           * CASE WHEN m.phase = 'build' AND r.stalled THEN 3 ELSE 1 END AS secs
  FROM (SELECT g AS run, random() < 0.1 AS stalled FROM generate_series(1, 800) g) r
 CROSS JOIN eta_model m
 WHERE random() >= m.skip;
CREATE TABLE eta_runs_timed AS
SELECT s.run, s.position, s.phase, s.secs,
       sum(s.secs) OVER (PARTITION BY s.run ORDER BY s.position) - s.secs AS starts,
       sum(s.secs) OVER (PARTITION BY s.run) AS total
  FROM eta_stays s;

-- runs 1..500 are the history, each started a day ago plus its number in minutes
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous)
SELECT 'eta_runs', t.run::text, lag(t.phase) OVER w, t.phase, 'active',
       now() - interval '1 day' + t.run * interval '1 minute' + t.starts * interval '1 second',
       (lag(t.secs) OVER w) * interval '1 second'
  FROM eta_runs_timed t WHERE t.run <= 500
WINDOW w AS (PARTITION BY t.run ORDER BY t.position);
UPDATE deploy_progress.history SET to_kind = 'pending' WHERE relid = 'eta_runs'::regclass AND to_phase = 'queued';
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous)
SELECT 'eta_runs', t.run::text, t.phase, 'done', 'succeeded',
       now() - interval '1 day' + t.run * interval '1 minute' + t.total * interval '1 second', t.secs * interval '1 second'
  FROM eta_runs_timed t
 WHERE t.run <= 500 AND t.position = (SELECT max(u.position) FROM eta_runs_timed u WHERE u.run = t.run);
SELECT deploy_progress.refresh_estimates('eta_runs');

-- runs 501..800, asked about at 25, 50 and 75 % of their duration: the
-- phase they are in then and for how long
CREATE TABLE eta_cases AS
SELECT t.run, f.frac, t.phase, t.position, f.frac * t.total - t.starts AS in_phase,
       f.frac * t.total AS elapsed, t.total - f.frac * t.total AS actual
  FROM eta_runs_timed t
 CROSS JOIN (VALUES (0.25), (0.5), (0.75)) f(frac)
 WHERE t.run > 500 AND f.frac * t.total >= t.starts AND f.frac * t.total < t.starts + t.secs;

CREATE TABLE eta_predictions AS
SELECT c.*, e.p50 AS dp_p50, e.p95 AS dp_p95,
       -- naive: the whole run takes elapsed / overall_progress (no counters:
       -- a phase counts as not begun until it ends)
       CASE WHEN o.progress > 0 THEN c.elapsed / o.progress - c.elapsed END AS naive
  FROM eta_cases c
 CROSS JOIN LATERAL deploy_progress._run_eta('eta_runs', 'eta_bench', c.phase, c.in_phase, NULL) e
 CROSS JOIN LATERAL (SELECT deploy_progress.overall_progress('eta_bench', c.phase, 0, 1) AS progress) o;

\pset footer off
\echo
\echo Whole-run ETA at 25/50/75 % of the run: median absolute percentage error (MdAPE) of the time left,
\echo share of cases with an estimate, and share of cases whose actual time left is within the p95 bound
SELECT frac AS at_share_of_run, count(*) AS cases,
       round((100 * percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(dp_p50 - actual) / actual))::numeric, 1) AS dp_mdape_pct,
       round((100.0 * count(dp_p50) / count(*))::numeric, 1) AS dp_coverage_pct,
       round((100.0 * count(*) FILTER (WHERE actual <= dp_p95) / nullif(count(dp_p95), 0))::numeric, 1) AS dp_within_p95_pct,
       round((100 * percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(naive - actual) / actual))::numeric, 1) AS naive_mdape_pct,
       round((100.0 * count(naive) / count(*))::numeric, 1) AS naive_coverage_pct
  FROM eta_predictions GROUP BY frac ORDER BY frac;
\echo Stalled runs only (the build took three times as long)
SELECT p.frac AS at_share_of_run, count(*) AS cases,
       round((100 * percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(p.dp_p50 - p.actual) / p.actual))::numeric, 1) AS dp_mdape_pct,
       round((100.0 * count(p.dp_p50) / count(*))::numeric, 1) AS dp_coverage_pct,
       round((100 * percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(p.naive - p.actual) / p.actual))::numeric, 1) AS naive_mdape_pct
  FROM eta_predictions p
 WHERE EXISTS (SELECT FROM eta_runs_timed t, eta_model m
                WHERE t.run = p.run AND t.phase = 'build' AND m.phase = 'build' AND t.secs > 2.5 * m.median)
 GROUP BY p.frac ORDER BY p.frac;
