-- track() and untrack(): phase column types, column roles, re-tracking,
-- untracking, and dropped tables.

-- What a table's tracking looks like: its configuration and its triggers.
CREATE FUNCTION tr_show(tbl regclass)
RETURNS TABLE (item text, value text)
LANGUAGE sql AS $$
    SELECT 'config', format('lifecycle=%s phase=%s completed=%s total=%s phase_updated=%s progress_updated=%s heartbeat=%s started=%s finished=%s key=%s storage=%s restart=%s',
                            t.lifecycle, t.phase_column, (t.columns ->> 'completed_items'), (t.columns ->> 'total_items'),
                            (t.columns ->> 'phase_updated_at'), (t.columns ->> 'progress_updated_at'), (t.columns ->> 'heartbeat_at'),
                            (t.columns ->> 'started_at'), (t.columns ->> 'finished_at'), t.key_columns, t.storage, t.allow_restart)
      FROM deploy_progress.tracked t WHERE t.relid = tbl
    UNION ALL
    -- (the stamp trigger's argument is the configuration: schema_only_dump.sql)
    SELECT 'trigger', regexp_replace(pg_get_triggerdef(g.oid), 'stamp\(''.*''\)$', 'stamp(<configuration>)')
                      || CASE WHEN g.tgnargs = 1 AND deploy_progress._trigger_arg(g.tgargs, g.tgnargs)
                                  IS DISTINCT FROM deploy_progress._trigger_config(tbl) THEN ' (stale)' ELSE '' END
      FROM pg_trigger g WHERE g.tgrelid = tbl AND NOT g.tgisinternal
    ORDER BY 1, 2
$$;

-- 1. deploy_progress.phase: the built-in lifecycle is the default, every
-- role found under its default name, timings kept in the row
CREATE TABLE tr_deploys (
    id                  bigint PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
    completed_items     integer,
    total_items         bigint,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz
);
INSERT INTO tr_deploys (id, phase) VALUES (1, 'building'), (2, 'succeeded');
SELECT relid, lifecycle, storage FROM deploy_progress.track('tr_deploys');
SELECT * FROM tr_show('tr_deploys');
-- rows that were there before are left as they were
SELECT id, phase, phase_updated_at, started_at, finished_at FROM tr_deploys ORDER BY id;
INSERT INTO tr_deploys (id) VALUES (3);
SELECT id, phase, phase_updated_at IS NOT NULL AS stamped FROM tr_deploys ORDER BY id;

-- 2. a text phase column with a lifecycle of the user's
SELECT count(*) FROM deploy_progress.define_lifecycle('tr_jobs', $$[
    {"phase": "new", "kind": "pending"}, {"phase": "run", "kind": "active"},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]$$);
CREATE TABLE tr_text (id int PRIMARY KEY, phase text NOT NULL, started_at timestamptz, finished_at timestamptz);
INSERT INTO tr_text VALUES (1, 'ok', NULL, NULL);
SELECT lifecycle, storage FROM deploy_progress.track('tr_text', lifecycle => 'tr_jobs');
INSERT INTO tr_text (id, phase) VALUES (2, 'run');
UPDATE tr_text SET phase = 'error' WHERE id = 2;
SELECT id, phase, started_at IS NOT NULL AS started, finished_at IS NOT NULL AS finished FROM tr_text ORDER BY id;
INSERT INTO tr_text (id, phase) VALUES (3, 'OK');  -- phases are case-sensitive
SELECT count(*) FROM tr_text;

-- 3. varchar, with a phase column under another name
CREATE TABLE tr_varchar (id int PRIMARY KEY, state varchar(10) NOT NULL, finished_at timestamptz);
SELECT phase_column, storage FROM deploy_progress.track('tr_varchar', lifecycle => 'tr_jobs', phase => 'state');
INSERT INTO tr_varchar (id, state) VALUES (1, 'new'), (2, 'ok');
SELECT id, state, finished_at IS NOT NULL AS finished FROM tr_varchar ORDER BY id;
UPDATE tr_varchar SET state = 'nope' WHERE id = 1;

-- 4. a custom enum
CREATE TYPE tr_state AS ENUM ('waiting', 'running', 'done', 'failed', 'aborted');
SELECT count(*) FROM deploy_progress.define_lifecycle('tr_state', $$[
    {"phase": "waiting", "kind": "pending"}, {"phase": "running", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"},
    {"phase": "aborted", "kind": "cancelled"}]$$);
CREATE TABLE tr_enum (id int PRIMARY KEY, phase tr_state NOT NULL DEFAULT 'waiting',
                      started_at timestamptz, finished_at timestamptz);
SELECT lifecycle FROM deploy_progress.track('tr_enum', lifecycle => 'tr_state');
INSERT INTO tr_enum (id) VALUES (1), (2);
UPDATE tr_enum SET phase = 'running' WHERE id = 1;
UPDATE tr_enum SET phase = 'aborted' WHERE id = 2;
SELECT id, phase, started_at IS NOT NULL AS started, finished_at IS NOT NULL AS finished FROM tr_enum ORDER BY id;
-- a label added to the enum later is not a phase until the lifecycle says so
ALTER TYPE tr_state ADD VALUE 'paused' BEFORE 'done';
UPDATE tr_enum SET phase = 'paused' WHERE id = 1;
SELECT count(*) FROM deploy_progress.define_lifecycle('tr_state', $$[
    {"phase": "waiting", "kind": "pending"}, {"phase": "running", "kind": "active"},
    {"phase": "paused", "kind": "waiting"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"},
    {"phase": "aborted", "kind": "cancelled"}]$$);
UPDATE tr_enum SET phase = 'paused' WHERE id = 1;
SELECT id, phase FROM tr_enum ORDER BY id;

-- 5. column roles: defaults, names of the user's, NULL switches a role off
CREATE TABLE tr_roles (
    job_id       int PRIMARY KEY,
    step         deploy_progress.phase NOT NULL DEFAULT 'queued',
    done         int,
    todo         int,
    changed_at   timestamptz,
    moved_at     timestamptz,
    heartbeat_at timestamptz,   -- default name, switched off below
    began_at     timestamptz,
    finished_at  timestamptz    -- default name, found
);
SELECT phase_column, columns ->> 'completed_items' AS completed_column, columns ->> 'total_items' AS total_column, columns ->> 'phase_updated_at' AS phase_updated_column, columns ->> 'progress_updated_at' AS progress_updated_column,
       columns ->> 'heartbeat_at' AS heartbeat_column, columns ->> 'started_at' AS started_column, columns ->> 'finished_at' AS finished_column, columns ->> 'items_per_second' AS speed_column, columns ->> 'speed_updated_at' AS speed_updated_column,
       key_columns, storage
  FROM deploy_progress.track('tr_roles', phase => 'step', completed_items => 'done', total_items => 'todo',
                             phase_updated_at => 'changed_at', progress_updated_at => 'moved_at',
                             heartbeat_at => NULL, started_at => 'began_at') \gx
INSERT INTO tr_roles (job_id, step, done, todo) VALUES (1, 'building', 0, 10);
UPDATE tr_roles SET done = 5;
UPDATE tr_roles SET step = 'succeeded', done = 10;
SELECT changed_at IS NOT NULL AS changed, moved_at IS NOT NULL AS moved,
       heartbeat_at IS NULL AS heartbeat_off, began_at <= changed_at AS began_first,
       finished_at = changed_at AS finished_on_entry
  FROM tr_roles;
-- counters are checked under their names of the user's
UPDATE tr_roles SET done = 11;

-- 6. calling track() again updates the configuration in place
SELECT tracked_at AS roles_tracked_at FROM deploy_progress.tracked WHERE relid = 'tr_roles'::regclass \gset
SELECT allow_restart, columns ->> 'heartbeat_at' AS heartbeat_column, columns ->> 'started_at' AS started_column
  FROM deploy_progress.track('tr_roles', phase => 'step', completed_items => 'done', total_items => 'todo',
                             phase_updated_at => 'changed_at', progress_updated_at => 'moved_at',
                             started_at => 'began_at', allow_restart => true);
SELECT count(*) AS configs, bool_and(tracked_at = :'roles_tracked_at') AS same_row
  FROM deploy_progress.tracked WHERE relid = 'tr_roles'::regclass;
SELECT * FROM tr_show('tr_roles');
-- the new configuration is in force at once: restarts are allowed, and the
-- heartbeat column is now stamped
UPDATE tr_roles SET step = 'building';
SELECT step, finished_at IS NULL AS finished_cleared, heartbeat_at = changed_at AS heartbeat_stamped FROM tr_roles;

-- 7. untrack() removes triggers and configuration, and leaves rows alone
SELECT * INTO TEMP tr_before FROM tr_deploys;
SELECT deploy_progress.untrack('tr_deploys');
SELECT * FROM tr_show('tr_deploys');
SELECT count(*) AS changed_rows FROM (SELECT * FROM tr_deploys EXCEPT SELECT * FROM tr_before) d;
-- writes are no longer checked or stamped
UPDATE tr_deploys SET phase = 'queued', completed_items = -1, heartbeat_at = NULL WHERE id = 2;
SELECT id, phase, completed_items, heartbeat_at FROM tr_deploys WHERE id = 2;
SELECT deploy_progress.untrack('tr_deploys', missing_ok => true);
-- and the table can be tracked again
DELETE FROM tr_deploys WHERE id = 2;
SELECT storage FROM deploy_progress.track('tr_deploys');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'tr_deploys'::regclass;

-- 8. a dropped table leaves no configuration (nor side timings) behind
CREATE TABLE tr_side (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued');
SELECT storage FROM deploy_progress.track('tr_side');
INSERT INTO tr_side (id) VALUES (1), (2);
SELECT 'tr_side'::regclass::oid AS tr_side_oid \gset
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = :tr_side_oid;
DROP TABLE tr_side, tr_deploys;
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = :tr_side_oid;
SELECT relid::text FROM deploy_progress.tracked WHERE relid::text LIKE 'tr\_%' ORDER BY 1;
-- dropping a schema with a tracked table in it, too
CREATE SCHEMA tr_schema;
CREATE TABLE tr_schema.t (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('tr_schema.t');
DROP SCHEMA tr_schema CASCADE;
SELECT relid::text FROM deploy_progress.tracked WHERE relid::text LIKE 'tr\_%' ORDER BY 1;
-- a role column dropped from the table stops writes until track() runs again
ALTER TABLE tr_text DROP COLUMN started_at;
UPDATE tr_text SET phase = 'run' WHERE id = 2;
SELECT columns ->> 'started_at' AS started_column FROM deploy_progress.track('tr_text', lifecycle => 'tr_jobs');

DROP TABLE tr_text, tr_varchar, tr_enum, tr_roles;
DROP TYPE tr_state;
SELECT deploy_progress.drop_lifecycle('tr_jobs');
SELECT deploy_progress.drop_lifecycle('tr_state');
DROP FUNCTION tr_show(regclass);
SELECT count(*) AS tracked_left FROM deploy_progress.tracked WHERE relid::text LIKE 'tr\_%';
