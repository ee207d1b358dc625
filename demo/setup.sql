-- demo/setup.sql: the demo's tables, tracked by deploy_progress.
--
-- deployments: one row per deployment, phase column of the built-in type
--   deploy_progress.phase, with counters and every timing column in the row.
-- steps: the rollout of a deployment to its hosts, one row per host, with a
--   text phase column whose lifecycle is defined below, tracked with
--   storage => 'side' so that the table itself has no timing columns.

\o /dev/null
CREATE EXTENSION deploy_progress;

CREATE TABLE deployments (
    id                  integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
    completed_items     bigint,
    total_items         bigint,
    items_per_second    double precision,   -- smoothed speed, kept by the trigger
    speed_updated_at    timestamptz,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    failure_reason      text,
    message             text                -- what the worker says it is doing (the message role)
);

-- Short deadlines so that the demo's crashed worker is noticed within
-- seconds; a short speed time constant so that speeds react quickly.
SELECT FROM deploy_progress.track('deployments',
                             speed_time_constant => '3 seconds',
                             progress_deadline   => '10 seconds',
                             heartbeat_deadline  => '5 seconds');

SELECT FROM deploy_progress.define_lifecycle('host_rollout', '[
    {"phase": "pending",   "kind": "pending"},
    {"phase": "draining",  "kind": "active"},
    {"phase": "updating",  "kind": "active"},
    {"phase": "verifying", "kind": "active"},
    {"phase": "done",      "kind": "succeeded"},
    {"phase": "error",     "kind": "failed"},
    {"phase": "skipped",   "kind": "cancelled"}
  ]');

CREATE TABLE steps (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id integer NOT NULL REFERENCES deployments ON DELETE CASCADE,
    position      integer NOT NULL,
    host          text NOT NULL,
    phase         text NOT NULL DEFAULT 'pending',
    UNIQUE (deployment_id, position)
);
-- rows are added when a deployment starts rolling out

SELECT FROM deploy_progress.track('steps', lifecycle => 'host_rollout', storage => 'side');

-- "4.2s", "1m05s": durations as the progress table shows them.
CREATE FUNCTION demo_age(i interval) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT CASE WHEN s < 60 THEN to_char(s, 'FM990.0') || 's'
                ELSE floor(s / 60)::int || 'm' || to_char(floor(s)::int % 60, 'FM00') || 's' END
      FROM (SELECT extract(epoch FROM i) AS s) AS x
$$;

\o
\echo 'Tracked tables:'
SELECT relid AS "table", lifecycle, storage, key_columns AS key,
       CASE storage WHEN 'row' THEN 'in the table''s own columns' ELSE 'in deploy_progress.timings' END AS timings,
       heartbeat_deadline, speed_time_constant
  FROM deploy_progress.tracked
 ORDER BY relid;
