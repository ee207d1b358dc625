-- Row-level security holds in every reader: a role that sees some rows of
-- a tracked table sees in the extension's readers, views and metrics only
-- what it could read in the table itself.  On 1.0 the history and
-- side-timing readers showed the other tenant's keys, phases and failure
-- reasons (transitions, timeline(), side_timings, timings()) and counted
-- its rows (phase_stats, metrics).  The history of a row that no longer
-- exists (or that the role cannot see) is not shown to a role whose row
-- security applies to the table: which tenant it belonged to is not known.
\set SHOW_CONTEXT never

CREATE ROLE rs_owner;
CREATE ROLE rs_acme;
CREATE ROLE rs_globex;
GRANT CREATE ON SCHEMA public TO rs_owner;
SET ROLE rs_owner;
-- row storage and side storage, each with both tenants' rows
CREATE TABLE rs_jobs (id integer PRIMARY KEY, tenant name NOT NULL, phase deploy_progress.phase NOT NULL,
                      completed_items integer, total_items integer,
                      phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
                      failure_reason text);
CREATE TABLE rs_side (id integer PRIMARY KEY, tenant name NOT NULL, phase deploy_progress.phase NOT NULL);
SELECT storage FROM deploy_progress.track('rs_jobs');
SELECT storage FROM deploy_progress.track('rs_side');
INSERT INTO rs_jobs (id, tenant, phase) VALUES (1, 'rs_acme', 'queued'), (2, 'rs_globex', 'queued'), (3, 'rs_globex', 'queued');
UPDATE rs_jobs SET phase = 'building';
UPDATE rs_jobs SET phase = 'failed', failure_reason = 'globex secret' WHERE id = 2;
INSERT INTO rs_side VALUES (1, 'rs_acme', 'building'), (2, 'rs_globex', 'building');
UPDATE rs_side SET phase = 'succeeded' WHERE id = 2;
-- a globex row that is gone: its history stays
DELETE FROM rs_jobs WHERE id = 3;
ALTER TABLE rs_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE rs_side ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON rs_jobs USING (tenant = current_user);
CREATE POLICY tenant ON rs_side USING (tenant = current_user);
GRANT SELECT ON rs_jobs, rs_side TO rs_acme, rs_globex;
RESET ROLE;

-- (the event stream shows an event once every older transaction has
-- ended: wait, boundedly, until all ten are in it)
DO $$
BEGIN
    FOR i IN 1 .. 1200 LOOP
        EXIT WHEN (SELECT count(*) FROM deploy_progress.events_since(NULL, 1000, 'rs_jobs'))
                + (SELECT count(*) FROM deploy_progress.events_since(NULL, 1000, 'rs_side')) >= 10;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;

-- what acme can read in the tables themselves
SET ROLE rs_acme;
SELECT id, tenant FROM rs_jobs UNION ALL SELECT id, tenant FROM rs_side ORDER BY 1, 2;
-- and in every reader
SELECT relid, key, to_phase, reason FROM deploy_progress.transitions
 WHERE relid::text LIKE 'rs\_%' ORDER BY relid::text, key, id;
SELECT relid, key FROM deploy_progress.side_timings WHERE relid::text LIKE 'rs\_%' ORDER BY key;
SELECT count(*) AS globex_timings FROM deploy_progress.timings('rs_side', '2');
SELECT count(*) AS acme_timings FROM deploy_progress.timings('rs_side', '1');
SELECT phase, started_at FROM deploy_progress.timeline('rs_jobs', '2');
SELECT phase FROM deploy_progress.timeline('rs_jobs', '3');
SELECT phase FROM deploy_progress.timeline('rs_jobs', '1');
SELECT phase, count, failures FROM deploy_progress.phase_stats('rs_jobs') WHERE count > 0 OR failures > 0;
SELECT deploy_progress.steps('rs_jobs', '2') AS globex_steps;
SELECT relid, key FROM deploy_progress.in_flight WHERE relid::text LIKE 'rs\_%' ORDER BY relid::text, key;
SELECT relid, key FROM deploy_progress.stuck(NULL, now() + interval '1 day') WHERE relid::text LIKE 'rs\_%' ORDER BY key;
SELECT deploy_progress.progress('rs_jobs', '2');
SELECT relid, key, to_phase, reason FROM deploy_progress.events_since(NULL, 1000, 'rs_jobs')
UNION ALL SELECT relid, key, to_phase, reason FROM deploy_progress.events_since(NULL, 1000, 'rs_side');
SELECT name, labels ->> 'phase' AS phase, value FROM deploy_progress.metrics
 WHERE labels ->> 'table' = 'public.rs_jobs' AND name IN ('deploy_progress_transitions_total', 'deploy_progress_failures_total', 'deploy_progress_in_flight')
   AND value > 0 ORDER BY name, phase;
RESET ROLE;

-- the same readers as the owner (row security does not apply to it): everything
SET ROLE rs_owner;
SELECT relid, key, to_phase FROM deploy_progress.transitions WHERE relid::text LIKE 'rs\_%' ORDER BY relid::text, key, id;
SELECT count(*) AS side_rows FROM deploy_progress.side_timings WHERE relid::text LIKE 'rs\_%';
SELECT count(*) AS events FROM deploy_progress.events_since(NULL, 1000) WHERE relid::text LIKE 'rs\_%';
SELECT name, labels ->> 'phase' AS phase, value FROM deploy_progress.metrics
 WHERE labels ->> 'table' = 'public.rs_jobs' AND name = 'deploy_progress_failures_total' AND value > 0;
RESET ROLE;

DROP TABLE rs_jobs, rs_side;
REVOKE CREATE ON SCHEMA public FROM rs_owner;
DROP ROLE rs_owner;
DROP ROLE rs_acme;
DROP ROLE rs_globex;
