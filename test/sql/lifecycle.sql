-- Lifecycles: the built-in one, define_lifecycle(), redefinition,
-- drop_lifecycle(), in-use protection and what pg_dump keeps.
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never

-- the built-in lifecycle covers every label of deploy_progress.phase, in order
SELECT position, phase, kind, weight, deadline
  FROM deploy_progress.lifecycle_phases
 WHERE lifecycle = 'default'
 ORDER BY position;
SELECT name, builtin, owner = 'postgres'::regrole AS owned_by_installer
  FROM deploy_progress.lifecycles WHERE name = 'default';
SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
       = (SELECT array_agg(p.phase ORDER BY p.position)
            FROM deploy_progress.lifecycle_phases p WHERE p.lifecycle = 'default')
       AS enum_matches_lifecycle
  FROM pg_enum e WHERE e.enumtypid = 'deploy_progress.phase'::regtype;

-- pg_dump keeps user lifecycles and configuration, not the built-in rows
SELECT c.relname, x.cond
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS x(cfg, cond)
  JOIN pg_class c ON c.oid = x.cfg
 WHERE e.extname = 'deploy_progress'
 ORDER BY c.relname;

-- a valid definition: weights default to 1 for active phases and 0 for the
-- others, a deadline is any positive interval, names are free text
SELECT position, phase, kind, weight, deadline
  FROM deploy_progress.define_lifecycle('lc_build', $$[
    {"phase": "queued",   "kind": "pending", "deadline": "5 minutes"},
    {"phase": "compile",  "kind": "active"},
    {"phase": "Link It",  "kind": "active", "weight": 2.5, "deadline": "1 hour"},
    {"phase": "approval", "kind": "waiting"},
    {"phase": "done",     "kind": "succeeded"},
    {"phase": "broken",   "kind": "failed"},
    {"phase": "stopped",  "kind": "cancelled", "deadline": null}
  ]$$);
SELECT name, builtin, owner = current_user::regrole AS owned_by_definer
  FROM deploy_progress.lifecycles WHERE name = 'lc_build';

-- the smallest lifecycle: one succeeded and one failed phase
SELECT position, phase, kind, weight
  FROM deploy_progress.define_lifecycle('lc_min',
       '[{"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');

-- redefinition replaces the phases (and keeps the lifecycle's identity)
SELECT created_at AS lc_build_created FROM deploy_progress.lifecycles WHERE name = 'lc_build' \gset
SELECT position, phase, kind, weight, deadline
  FROM deploy_progress.define_lifecycle('lc_build', $$[
    {"phase": "queued",  "kind": "pending"},
    {"phase": "compile", "kind": "active", "weight": 0},
    {"phase": "test",    "kind": "active", "weight": 3, "deadline": "600"},
    {"phase": "done",    "kind": "succeeded"},
    {"phase": "broken",  "kind": "failed"}
  ]$$);
SELECT count(*) AS lifecycles_named_lc_build, bool_and(created_at = :'lc_build_created') AS same_row
  FROM deploy_progress.lifecycles WHERE name = 'lc_build';

-- in use: a table tracked with a lifecycle keeps it alive, and a
-- redefinition must still fit the table's rows
CREATE TABLE lc_jobs (id int PRIMARY KEY, phase text NOT NULL);
INSERT INTO lc_jobs VALUES (1, 'queued'), (2, 'test');
SELECT relid, lifecycle FROM deploy_progress.track('lc_jobs', lifecycle => 'lc_build');
-- (a partitioned table too: its triggers fire on its partitions)
CREATE TABLE lc_parts (id int, region text, phase text NOT NULL, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE lc_parts_eu PARTITION OF lc_parts FOR VALUES IN ('eu');
SELECT relid, lifecycle FROM deploy_progress.track('lc_parts', lifecycle => 'lc_build');
INSERT INTO lc_parts VALUES (1, 'eu', 'queued');
SELECT deploy_progress.drop_lifecycle('lc_build');
-- "test" is in use by row 2: it cannot go
SELECT * FROM deploy_progress.define_lifecycle('lc_build', $$[
    {"phase": "queued", "kind": "pending"},
    {"phase": "done",   "kind": "succeeded"},
    {"phase": "broken", "kind": "failed"}]$$);
-- nothing changed
SELECT string_agg(phase, ', ' ORDER BY position) FROM deploy_progress.lifecycle_phases WHERE lifecycle = 'lc_build';
-- a redefinition the rows fit is taken, and the trigger sees it at once
SELECT string_agg(phase, ', ' ORDER BY position)
  FROM deploy_progress.define_lifecycle('lc_build', $$[
    {"phase": "queued", "kind": "pending"},
    {"phase": "test",   "kind": "active"},
    {"phase": "deploy", "kind": "active"},
    {"phase": "done",   "kind": "succeeded"},
    {"phase": "broken", "kind": "failed"}]$$);
UPDATE lc_jobs SET phase = 'deploy' WHERE id = 2;
UPDATE lc_jobs SET phase = 'compile' WHERE id = 1;
SELECT * FROM lc_jobs ORDER BY id;
UPDATE lc_parts SET phase = 'deploy';
SELECT * FROM lc_parts;
DROP TABLE lc_parts;
-- untracked, the lifecycle can go
SELECT deploy_progress.untrack('lc_jobs');
SELECT deploy_progress.drop_lifecycle('lc_build');
SELECT count(*) AS lc_build_phases_left FROM deploy_progress.lifecycle_phases WHERE lifecycle = 'lc_build';
SELECT deploy_progress.drop_lifecycle('lc_build');

-- a table whose own enum is its phase type
CREATE TYPE lc_step AS ENUM ('todo', 'doing', 'done', 'failed');
SELECT string_agg(phase || ':' || kind, ', ' ORDER BY position)
  FROM deploy_progress.define_lifecycle('lc_step', $$[
    {"phase": "todo", "kind": "pending"}, {"phase": "doing", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"}]$$);
CREATE TABLE lc_steps (id int PRIMARY KEY, phase lc_step NOT NULL DEFAULT 'todo');
SELECT lifecycle FROM deploy_progress.track('lc_steps', lifecycle => 'lc_step');
-- every label of the enum must stay a phase, even one no row holds
SELECT * FROM deploy_progress.define_lifecycle('lc_step', $$[
    {"phase": "todo", "kind": "pending"}, {"phase": "done", "kind": "succeeded"},
    {"phase": "failed", "kind": "failed"}]$$);
SELECT count(*) AS lc_step_phases FROM deploy_progress.lifecycle_phases WHERE lifecycle = 'lc_step';
-- a dropped table no longer holds its lifecycle
DROP TABLE lc_steps;
SELECT deploy_progress.drop_lifecycle('lc_step');
DROP TYPE lc_step;

-- the built-in lifecycle belongs to the extension: it cannot be dropped
-- (errors.sql), but a superuser may redefine it; its rows stay marked
-- built-in and so are left out of dumps (see extcondition above)
SELECT count(*) FROM deploy_progress.define_lifecycle('default', (
    SELECT jsonb_agg(jsonb_build_object('phase', phase, 'kind', kind, 'weight', weight, 'step', step,
                                        'deadline', CASE WHEN phase = 'queued' THEN '30 minutes' END)
                     ORDER BY position)
      FROM deploy_progress.lifecycle_phases WHERE lifecycle = 'default'));
SELECT phase, deadline FROM deploy_progress.lifecycle_phases WHERE lifecycle = 'default' AND deadline IS NOT NULL;
SELECT builtin FROM deploy_progress.lifecycles WHERE name = 'default';
-- (and back)
SELECT count(*) FROM deploy_progress.define_lifecycle('default', (
    SELECT jsonb_agg(jsonb_build_object('phase', phase, 'kind', kind, 'weight', weight, 'step', step,
                                        'deadline', CASE WHEN phase = 'queued' THEN '15 minutes' END)
                     ORDER BY position)
      FROM deploy_progress.lifecycle_phases WHERE lifecycle = 'default'));

SELECT deploy_progress.drop_lifecycle('lc_min');
SELECT count(*) AS lc_lifecycles_left FROM deploy_progress.lifecycles WHERE name LIKE 'lc\_%';
