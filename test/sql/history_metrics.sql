-- The metrics view and its Prometheus text rendering, parsed back line by line.
SET TimeZone = 'UTC';

CREATE TABLE metrics_jobs (
    id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
    phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz
);
SELECT relid FROM deploy_progress.track('metrics_jobs', notify_channel => NULL,
                                        heartbeat_deadline => '5 minutes', progress_deadline => '10 minutes');
-- rows with their own times (no history of their own): one queued, two
-- building (one of them silent for an hour: stuck, no_heartbeat), one
-- waiting, two finished
SET deploy_progress.stamping = off;
INSERT INTO metrics_jobs VALUES
    (1, 'queued',    now(), now(), now()),
    (2, 'building',  now(), now(), now()),
    (3, 'building',  now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour'),
    (4, 'waiting',   now(), now(), now()),
    (5, 'succeeded', now(), now(), now()),
    (6, 'failed',    now(), now(), now());
RESET deploy_progress.stamping;
-- history: one insert, three queued -> building after 10, 20 and 30 s, one
-- building -> failed; and totals left by an earlier prune(): 2 transitions
-- into building, 1 failure in it, 2 completed stays in it lasting 50 s
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous)
VALUES ('metrics_jobs', '1', NULL,       'queued',   'pending', now(), NULL),
       ('metrics_jobs', '2', 'queued',   'building', 'active',  now(), '10 seconds'),
       ('metrics_jobs', '3', 'queued',   'building', 'active',  now(), '20 seconds'),
       ('metrics_jobs', '7', 'queued',   'building', 'active',  now(), '30 seconds'),
       ('metrics_jobs', '7', 'building', 'failed',   'failed',  now(), '100 seconds');
INSERT INTO deploy_progress.history_pruned (relid, phase, transitions, failures, stays, stay_seconds)
VALUES ('metrics_jobs', 'building', 2, 1, 2, 50);

-- The samples of this table.  Counters list every phase (zero included);
-- the duration summary has quantiles over the kept history and a sum and
-- count that include pruned stays.
SELECT name, labels - 'table' AS labels, value
  FROM deploy_progress.metrics
 WHERE labels ->> 'table' = 'public.metrics_jobs'
   AND (value <> 0 OR name IN ('deploy_progress_in_flight', 'deploy_progress_stuck'))
 ORDER BY name, labels ->> 'phase', labels ->> 'reason', labels ->> 'quantile';
SELECT name, count(*) AS series
  FROM deploy_progress.metrics WHERE labels ->> 'table' = 'public.metrics_jobs'
 GROUP BY name ORDER BY name;

-- a table whose name needs quoting, to exercise label escaping
CREATE TABLE "odd ""name"" \ here" (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('"odd ""name"" \ here"', notify_channel => NULL);
INSERT INTO "odd ""name"" \ here" VALUES (1, 'fetching');

-- The Prometheus text: HELP and TYPE lines, then each family's samples.
CREATE TEMP TABLE prom AS
SELECT n, l FROM regexp_split_to_table(deploy_progress.metrics_prometheus(), E'\n') WITH ORDINALITY AS t(l, n);
SELECT right(deploy_progress.metrics_prometheus(), 1) = E'\n' AS ends_with_newline;
SELECT l FROM prom WHERE l LIKE '#%' ORDER BY n;
-- every other line is a sample: name{label="value",...} value
SELECT count(*) AS malformed FROM prom
 WHERE l <> '' AND l NOT LIKE '#%'
   AND l !~ '^[a-zA-Z_:][a-zA-Z0-9_:]*\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,|(?=\})))*\} [-+0-9.eE]+(Inf)?$';
-- each sample follows the TYPE line of its family
SELECT count(*) AS out_of_family FROM prom s
 WHERE s.l <> '' AND s.l NOT LIKE '#%'
   AND NOT starts_with(s.l, (SELECT split_part(t.l, ' ', 3) FROM prom t
                              WHERE t.n < s.n AND t.l LIKE '# TYPE %' ORDER BY t.n DESC LIMIT 1));
-- parsed back (labels unescaped), the samples are the rows of the view
CREATE TEMP TABLE parsed AS
SELECT s.n, m[1] AS name,
       (SELECT jsonb_object_agg(kv[1], replace(replace(replace(kv[2], '\n', E'\n'), '\"', '"'), '\\', '\'))
          FROM regexp_matches(m[2], '([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', 'g') AS kv) AS labels,
       m[3]::double precision AS value
  FROM prom s, regexp_match(s.l, '^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$') AS m
 WHERE s.l <> '' AND s.l NOT LIKE '#%';
SELECT (SELECT count(*) FROM parsed) = (SELECT count(*) FROM deploy_progress.metrics) AS same_count;
SELECT count(*) AS differences FROM (
    (SELECT name, labels, value FROM parsed EXCEPT ALL SELECT name, labels, value FROM deploy_progress.metrics)
    UNION ALL
    (SELECT name, labels, value FROM deploy_progress.metrics EXCEPT ALL SELECT name, labels, value FROM parsed)) d;
-- the lines of the two tables
SELECT l FROM prom
 WHERE (l LIKE '%table="public.metrics_jobs"%' AND l !~ '} 0$') OR l LIKE '%odd%' AND l !~ '} 0$'
 ORDER BY n;
SELECT labels ->> 'table' AS unescaped FROM parsed WHERE labels ->> 'table' LIKE '%odd%' LIMIT 1;

-- only the tables the caller can read
CREATE ROLE metrics_reader;
GRANT SELECT ON metrics_jobs TO metrics_reader;
SET ROLE metrics_reader;
SELECT DISTINCT labels ->> 'table' AS visible FROM deploy_progress.metrics ORDER BY 1;
SELECT count(*) > 0 AS has_samples FROM regexp_split_to_table(deploy_progress.metrics_prometheus(), E'\n') l
 WHERE l LIKE 'deploy_progress_%';
RESET ROLE;
REVOKE SELECT ON metrics_jobs FROM metrics_reader;
DROP ROLE metrics_reader;

DELETE FROM deploy_progress.history WHERE relid IN ('metrics_jobs'::regclass, '"odd ""name"" \ here"'::regclass);
DELETE FROM deploy_progress.history_pruned WHERE relid = 'metrics_jobs'::regclass;
DROP TABLE metrics_jobs, "odd ""name"" \ here";
