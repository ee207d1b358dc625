-- Progress figures as pure functions: exact arithmetic with fixed times.
-- Results that go through exp() are rounded to 9 decimals so that they do
-- not depend on the last bit of the platform's libm.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

-- labels: pure functions IMMUTABLE STRICT PARALLEL SAFE, readers STABLE
SELECT p.oid::regprocedure AS function, p.provolatile AS vol, p.proisstrict AS strict,
       p.proparallel AS par, obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
  FROM pg_proc p
 WHERE p.pronamespace = 'deploy_progress'::regnamespace
   AND p.proname IN ('percent', 'transfer_speed', 'smoothed_speed', '_speed_step', 'eta',
                     '_elapsed_seconds', 'weighted_progress', 'overall_progress',
                     '_lifecycle_arrays', 'progress', 'describe')
 ORDER BY 1::text;

--------------------------------------------------------------------------
-- percent
--------------------------------------------------------------------------
SELECT c, t, deploy_progress.percent(c, t)
  FROM (VALUES (12400::bigint, 31344::bigint),  -- the CLI example: 39.6%
               (0, 10),
               (10, 10),
               (0, 0),        -- nothing to do is done
               (5, 0),
               (40000, 31344),  -- completed > total: clamped
               (-5, 10),        -- negative completed: clamped
               (1, -1),         -- a negative total is not a total
               (NULL, 10),
               (10, NULL),      -- total unknown
               (9223372036854775807, 9223372036854775807),
               (9223372036854775806, 9223372036854775807),  -- not done: stays below 100
               (1, 9223372036854775807),
               (9223372036854775807, 1),
               (-9223372036854775808, 9223372036854775807)) AS v(c, t);

-- only a row that is done reaches 100
SELECT deploy_progress.percent(9223372036854775806, 9223372036854775807) < 100 AS below_100,
       deploy_progress.percent(999999999, 1000000000) < 100 AS below_100_too;

--------------------------------------------------------------------------
-- transfer_speed: average items per second
--------------------------------------------------------------------------
SELECT c, since, as_of, deploy_progress.transfer_speed(c, since, as_of)
  FROM (VALUES (100::bigint, '2024-05-01 10:00:00+00'::timestamptz, '2024-05-01 10:00:10+00'::timestamptz),
               (12400, '2024-05-01 10:05:00+00', '2024-05-01 10:07:25+00'),
               (0, '2024-05-01 10:00:00+00', '2024-05-01 10:00:10+00'),
               (100, '2024-05-01 10:00:00+00', '2024-05-01 10:00:00+00'),  -- no time passed
               (100, '2024-05-01 10:00:10+00', '2024-05-01 10:00:00+00'),  -- clocks disagree
               (-1, '2024-05-01 10:00:00+00', '2024-05-01 10:00:10+00'),
               (1, '2024-05-01 10:00:00+00', '2024-05-01 10:00:00.000001+00'),
               (9223372036854775807, '2024-05-01 10:00:00+00', '2024-05-01 10:00:01+00'),
               (100, '-infinity', '2024-05-01 10:00:00+00'),
               (100, '2024-05-01 10:00:00+00', 'infinity')) AS v(c, since, as_of);
-- the widest finite span does not overflow
SELECT deploy_progress.transfer_speed(9223372036854775807, '4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59+00') > 0 AS finite;
-- the overload without as_of reads now(), the transaction's start
SELECT deploy_progress.transfer_speed(100, now() - interval '10 seconds') = 10 AS as_of_now;

--------------------------------------------------------------------------
-- eta
--------------------------------------------------------------------------
SELECT c, t, s, deploy_progress.eta(c, t, s)
  FROM (VALUES (12400::bigint, 31344::bigint, 85.2::float8),
               (0, 100, 10),
               (31344, 31344, NULL),     -- done: zero, whatever the speed
               (40000, 31344, 0),
               (0, 0, NULL),
               (0, NULL, 5),             -- total unknown
               (0, 10, 0),               -- no speed: no fiction
               (0, 10, -1),
               (0, 10, NULL),
               (0, 10, 'NaN'),
               (0, 10, 'Infinity'),
               (-5, 10, 1),              -- negative completed counts as 0
               (5, -1, 1),
               (0, 9223372036854775807, 1),          -- does not fit an interval
               (0, 9223372036854775807, 10000000),
               (9223372036854775806, 9223372036854775807, 1e-6)) AS v(c, t, s);

--------------------------------------------------------------------------
-- smoothed_speed: the stored rate, decayed while no progress arrives
--------------------------------------------------------------------------
SELECT after, round(deploy_progress.smoothed_speed(100, '2024-05-01 10:00:00+00',
                                                   '2024-05-01 10:00:00+00'::timestamptz + after)::numeric, 9) AS speed
  FROM (VALUES (interval '0'), ('-5 seconds'), ('1 second'), ('15 seconds'), ('30 seconds'),
               ('1 minute'), ('10 minutes')) AS v(after);
-- exactly exp(-dt/tau), and the time constant is a parameter
SELECT round(deploy_progress.smoothed_speed(100, '2024-05-01 10:00:00+00', '2024-05-01 10:00:15+00')::numeric, 9)
         = round((100 * exp(-1::float8))::numeric, 9) AS one_tau,
       round(deploy_progress.smoothed_speed(100, '2024-05-01 10:00:00+00', '2024-05-01 10:01:00+00', '1 minute')::numeric, 9)
         = round((100 * exp(-1::float8))::numeric, 9) AS one_minute_tau,
       deploy_progress.smoothed_speed(100, '2024-05-01 10:00:00+00', 'infinity') IS NULL AS infinite_unknown;

--------------------------------------------------------------------------
-- _speed_step: the trigger's update rule
--------------------------------------------------------------------------
-- first sample of an estimate: taken as it is (no bias toward zero)
SELECT deploy_progress._speed_step(NULL, '2024-05-01 10:00:00+00', 50, '2024-05-01 10:00:02+00') AS first_sample;
-- reset and no-op cases
SELECT deploy_progress._speed_step(80, '2024-05-01 10:00:00+00', -5, '2024-05-01 10:00:01+00') AS backwards,
       deploy_progress._speed_step(80, '2024-05-01 10:00:00+00', NULL, '2024-05-01 10:00:01+00') AS counter_nulled,
       deploy_progress._speed_step(80, '2024-05-01 10:00:00+00', 0, '2024-05-01 10:00:01+00') AS no_move,
       deploy_progress._speed_step(80, '2024-05-01 10:00:00+00', 10, '2024-05-01 10:00:00+00') AS no_time,
       deploy_progress._speed_step(80, '2024-05-01 10:00:01+00', 10, '2024-05-01 10:00:00+00') AS clock_behind,
       deploy_progress._speed_step(80, NULL, 10, '2024-05-01 10:00:00+00') AS no_clock,
       deploy_progress._speed_step(NULL, NULL, 10, '2024-05-01 10:00:00+00') AS nothing_yet;
-- bigint extremes
SELECT deploy_progress._speed_step(NULL, '2024-05-01 10:00:00+00', 9223372036854775807, '2024-05-01 10:00:01+00') AS huge_first,
       deploy_progress._speed_step(9.2e18, '2024-05-01 10:00:00+00', 9223372036854775807, '2024-05-01 10:00:01+00',
                                   '15 seconds', '2024-04-01 00:00:00+00')
         / (9.2e18 + (1 - exp(-1/15::float8)) * (9223372036854775807::float8 - 9.2e18)) - 1 < 1e-12
         AS huge_step_no_overflow;
-- one step by hand: alpha = 1 - exp(-dt/tau), debiased by 1 - exp(-elapsed/tau)
SELECT round(deploy_progress._speed_step(100, '2024-05-01 10:00:10+00', 20, '2024-05-01 10:00:11+00',
                                         '15 seconds', '2024-05-01 10:00:00+00')::numeric, 9) AS rule,
       round((100 + (1 - exp(-1/15::float8)) / (1 - exp(-11/15::float8)) * (20 - 100))::numeric, 9) AS by_hand,
       round(deploy_progress._speed_step(100, '2024-05-01 10:00:10+00', 20, '2024-05-01 10:00:11+00',
                                         '15 seconds')::numeric, 9) AS plain,
       round((100 + (1 - exp(-1/15::float8)) * (20 - 100))::numeric, 9) AS plain_by_hand;

-- A feed of counter values: (n, seconds since the phase began, completed).
CREATE TEMP TABLE feed (scenario text, n integer, s numeric, completed bigint);
-- steady 100 items/s reported every second, after a first report 0.05 s in
-- that counted a single item (a noisy 20 items/s start)
INSERT INTO feed SELECT 'steady', 0, 0, 0;
INSERT INTO feed SELECT 'steady', 1, 0.05, 1;
INSERT INTO feed SELECT 'steady', n, n - 1 + 0.05, 1 + (n - 1) * 100 FROM generate_series(2, 31) n;
-- 100 items/s for a minute, then 20 items/s
INSERT INTO feed SELECT 'change', n, n, n * 100 FROM generate_series(0, 60) n;
INSERT INTO feed SELECT 'change', n, n, 6000 + (n - 60) * 20 FROM generate_series(61, 90) n;

-- the smoothed speed as the trigger would keep it, step by step, with and
-- without debiasing, next to the average speed since the phase began
CREATE TEMP VIEW smoothed AS
WITH RECURSIVE t0(at) AS (SELECT '2024-05-01 10:00:00+00'::timestamptz),
s AS (
    SELECT f.scenario, f.n, f.completed, t0.at + make_interval(secs => f.s) AS at,
           NULL::float8 AS rate, NULL::float8 AS plain, t0.at AS updated
      FROM feed f, t0 WHERE f.n = 0
    UNION ALL
    SELECT f.scenario, f.n, f.completed, t0.at + make_interval(secs => f.s),
           deploy_progress._speed_step(s.rate, s.updated, f.completed - s.completed,
                                       t0.at + make_interval(secs => f.s), '15 seconds', t0.at),
           deploy_progress._speed_step(s.plain, s.updated, f.completed - s.completed,
                                       t0.at + make_interval(secs => f.s), '15 seconds'),
           t0.at + make_interval(secs => f.s)
      FROM s JOIN feed f ON f.scenario = s.scenario AND f.n = s.n + 1, t0
)
SELECT s.scenario, s.n, s.at, s.completed, s.rate, s.plain, s.updated,
       deploy_progress.transfer_speed(s.completed, t0.at, s.at) AS average
  FROM s, t0;

-- converging on a steady rate: the debiased estimate forgets the noisy
-- first report within a few samples; the plain EWMA would lean on it for
-- tens of seconds
SELECT n, completed, round(rate::numeric, 3) AS smoothed, round(plain::numeric, 3) AS plain,
       round(average::numeric, 3) AS average
  FROM smoothed WHERE scenario = 'steady' AND n IN (1, 2, 3, 4, 6, 11, 21, 31) ORDER BY n;
SELECT bool_and(abs(rate - 100) < 1) AS within_1_percent_from_5s
  FROM smoothed WHERE scenario = 'steady' AND n >= 6;
SELECT bool_and(abs(rate - 100) <= abs(plain - 100)) AS debiased_never_worse
  FROM smoothed WHERE scenario = 'steady' AND n >= 1;

-- reacting to a rate change faster than the average: 100/s for a minute,
-- then 20/s; the smoothed speed approaches 20 with time constant 15 s
SELECT n, round(rate::numeric, 3) AS smoothed, round(average::numeric, 3) AS average
  FROM smoothed WHERE scenario = 'change' AND n IN (60, 61, 65, 75, 90) ORDER BY n;
-- after one time constant the smoothed speed has covered more than 1 - 1/e
-- of the way to the new rate, the average not a quarter of it
SELECT n, rate < average AS smoothed_closer_to_20,
       (100 - rate) / 80 > 1 - exp(-(n - 60) / 15::float8) AS at_least_exponential,
       round(((100 - average) / 80)::numeric, 3) AS average_share
  FROM smoothed WHERE scenario = 'change' AND n IN (61, 75, 90) ORDER BY n;

-- decaying during a stall: read 15, 30 and 60 seconds after the last
-- update of the steady feed, no progress since
SELECT stall, round(deploy_progress.smoothed_speed(rate, updated, updated + stall)::numeric, 6) AS smoothed,
       round(deploy_progress.transfer_speed(completed, '2024-05-01 10:00:00+00', updated + stall)::numeric, 6) AS average
  FROM smoothed, (VALUES (interval '0'), ('15 seconds'), ('30 seconds'), ('1 minute')) AS v(stall)
 WHERE scenario = 'steady' AND n = 31 ORDER BY stall;
-- when progress resumes after the stall, the step covers the whole gap
SELECT round(deploy_progress._speed_step(rate, updated, 100, updated + interval '30 seconds', '15 seconds',
                                         '2024-05-01 10:00:00+00')::numeric, 6) AS after_stall
  FROM smoothed WHERE scenario = 'steady' AND n = 31;

-- a backwards counter resets the estimate; the next sample starts it again
SELECT deploy_progress._speed_step(rate, updated, -100, updated + interval '1 second') AS reset,
       deploy_progress._speed_step(deploy_progress._speed_step(rate, updated, -100, updated + interval '1 second'),
                                   updated + interval '1 second', 30, updated + interval '3 seconds') AS restarted
  FROM smoothed WHERE scenario = 'steady' AND n = 31;

--------------------------------------------------------------------------
-- weighted_progress and overall_progress
--------------------------------------------------------------------------
-- built-in lifecycle: weights preparing 1, fetching 2, building 3,
-- transferring 3, migrating 2, starting 1, health_check 1, finishing 1,
-- 14 in all; queued, waiting and the terminal phases weigh nothing
SELECT position, phase, kind, weight FROM deploy_progress.lifecycle_phases
 WHERE lifecycle = 'default' ORDER BY position;
SELECT phase, c, t, deploy_progress.overall_progress('default', phase, c, t) AS overall, by_hand
  FROM (VALUES ('queued', NULL::bigint, NULL::bigint, 0::float8),
               ('preparing', 0, 10, 0 / 14.0),
               ('preparing', 5, 10, 0.5 / 14),
               ('fetching', 10, NULL, 1 / 14.0),          -- total unknown: the phase counts as begun
               ('building', 3, 0, 6 / 14.0),              -- a total of 0 is done
               ('transferring', 12400, 31344, (6 + 3 * 12400 / 31344.0) / 14),
               ('transferring', 31344, 31344, 9 / 14.0),
               ('migrating', 1, 4, (9 + 2 * 0.25) / 14),
               ('health_check', NULL, NULL, 12 / 14.0),
               ('finishing', 1, 1, 1),                    -- all done but not succeeded: below 1
               ('waiting', 5, 10, NULL),                  -- a pause entered from anywhere: unknown
               ('succeeded', NULL, NULL, 1),
               ('failed', 5, 10, NULL),
               ('cancelled', NULL, NULL, NULL)) AS v(phase, c, t, by_hand);
SELECT abs(deploy_progress.overall_progress('default', 'transferring', 12400, 31344)
           - (6 + 3 * 12400 / 31344.0) / 14) < 1e-15 AS matches_by_hand,
       deploy_progress.overall_progress('default', 'finishing', 1, 1) < 1 AS only_succeeded_reaches_1,
       deploy_progress.overall_progress('default', 'finishing', 1, 1) = 1 - 2 ^ -53 AS largest_below_1,
       deploy_progress.overall_progress('default', 'building') = 3 / 14::float8 AS counters_optional,
       deploy_progress.overall_progress('default', NULL, 1, 2) IS NULL AS null_phase;

-- a custom lifecycle: a queue, a build, a second queue, an approval gate
-- with a weight of its own, a deploy, a pause that can happen anywhere
SELECT count(*) FROM deploy_progress.define_lifecycle('figures_pipeline', '[
    {"phase": "queued",   "kind": "pending"},
    {"phase": "build",    "kind": "active",  "weight": 2},
    {"phase": "staged",   "kind": "pending"},
    {"phase": "approval", "kind": "waiting", "weight": 1},
    {"phase": "deploy",   "kind": "active",  "weight": 5},
    {"phase": "paused",   "kind": "waiting"},
    {"phase": "done",     "kind": "succeeded"},
    {"phase": "failed",   "kind": "failed"},
    {"phase": "aborted",  "kind": "cancelled"}]');
-- W = 2 + 1 + 5 = 8
SELECT phase, c, t, deploy_progress.overall_progress('figures_pipeline', phase, c, t) AS overall, by_hand
  FROM (VALUES ('queued', NULL::bigint, NULL::bigint, 0::float8),
               ('build', 1, 4, 0.5 / 8),
               ('staged', NULL, NULL, 2 / 8.0),     -- a queue after the build: the position reached
               ('approval', NULL, NULL, 2 / 8.0),   -- a gate before an active phase: its own weight not yet earned
               ('deploy', 3, 5, 6 / 8.0),
               ('deploy', 5, 5, 1),                 -- below 1 until done
               ('paused', NULL, NULL, NULL),
               ('done', NULL, NULL, 1),
               ('failed', NULL, NULL, NULL),
               ('aborted', NULL, NULL, NULL)) AS v(phase, c, t, by_hand);

-- the core over explicit arrays
SELECT deploy_progress.weighted_progress('{1,1}', '{active,succeeded}', 1, 0.5) AS half,
       deploy_progress.weighted_progress('{1,1}', '{active,succeeded}', 1, 'NaN') AS nan_fraction,
       deploy_progress.weighted_progress('{1,1}', '{active,succeeded}', 1, -3) AS negative_fraction,
       deploy_progress.weighted_progress('{1,1}', '{active,succeeded}', 1, 7) AS fraction_above_1,
       deploy_progress.weighted_progress('{0,0,0}', '{pending,active,succeeded}', 1, 0) AS no_weight_pending,
       deploy_progress.weighted_progress('{0,0,0}', '{pending,active,succeeded}', 2, 0.5) AS no_weight_active,
       deploy_progress.weighted_progress('{1e300,1e300,0}', '{active,active,failed}', 2, 0.5) AS huge_weights;

--------------------------------------------------------------------------
-- describe(figures jsonb): the pure formatter
--------------------------------------------------------------------------
SELECT label, deploy_progress.describe(f::jsonb)
  FROM (VALUES
    ('running',      '{"phase": "transferring", "kind": "active", "completed": 12400, "total": 31344, "speed": 85.2, "eta_seconds": 222.347418}'),
    ('stalled',      '{"phase": "transferring", "kind": "active", "completed": 12400, "total": 31344, "speed": 0.02, "eta_seconds": 947200, "stalled": true, "since_progress_seconds": 130}'),
    ('no total',     '{"phase": "fetching", "kind": "active", "completed": 120, "speed": 3.26}'),
    ('no speed yet', '{"phase": "fetching", "kind": "active", "completed": 0, "total": 50}'),
    ('no counters',  '{"phase": "building", "kind": "active", "phase_elapsed_seconds": 130.4}'),
    ('done, active', '{"phase": "finishing", "kind": "active", "completed": 7, "total": 7, "speed": 2, "eta_seconds": 0}'),
    ('nearly done',  '{"phase": "transferring", "kind": "active", "completed": 99999, "total": 100000}'),
    ('waiting',      '{"phase": "waiting", "kind": "waiting", "phase_elapsed_seconds": 192}'),
    ('pending',      '{"phase": "queued", "kind": "pending", "phase_elapsed_seconds": 45}'),
    ('succeeded',    '{"phase": "succeeded", "kind": "succeeded", "elapsed_seconds": 725}'),
    ('failed',       '{"phase": "failed", "kind": "failed", "elapsed_seconds": 190, "reason": "connection reset"}'),
    ('cancelled',    '{"phase": "cancelled", "kind": "cancelled"}'),
    ('custom',       '{"phase": "health_check", "kind": "active", "phase_elapsed_seconds": 59.5}'),
    ('clock skew',   '{"phase": "queued", "kind": "pending", "phase_elapsed_seconds": -5}'),
    ('nulls',        '{"phase": "deploy", "kind": "active", "completed": null, "total": null, "speed": null}'),
    ('extremes',     '{"phase": "transferring", "kind": "active", "completed": 9223372036854775807, "total": 9223372036854775807}'),
    ('extremes -1',  '{"phase": "transferring", "kind": "active", "completed": 9223372036854775806, "total": 9223372036854775807}')
  ) AS v(label, f);
-- speeds and durations
SELECT speed, deploy_progress.describe(jsonb_build_object('phase', 'transferring', 'kind', 'active',
                                                          'completed', 1, 'speed', speed))
  FROM unnest(ARRAY[0, 0.001, 0.01, 0.5, 1, 9.94, 9.96, 10, 85.5, 1234567.8, 1e20]::float8[]) AS speed;
SELECT secs, deploy_progress.describe(jsonb_build_object('phase', 'waiting', 'kind', 'waiting',
                                                         'phase_elapsed_seconds', secs))
  FROM unnest(ARRAY[0, 0.4, 59.4, 59.5, 222.35, 3599.5, 18065, 90061, 1e20]::float8[]) AS secs;
-- figures from the pure functions, described
SELECT deploy_progress.describe(jsonb_build_object(
           'phase', 'transferring', 'kind', 'active', 'completed', 12400, 'total', 31344,
           'speed', 85.2, 'eta_seconds', date_part('epoch', deploy_progress.eta(12400, 31344, 85.2))));

DROP VIEW smoothed;
DROP TABLE feed;
SELECT deploy_progress.drop_lifecycle('figures_pipeline');
