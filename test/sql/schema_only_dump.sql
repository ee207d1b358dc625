-- Schema-only dumps keep tracking: the stamp trigger carries the table's
-- configuration as its argument, confirmed by the trigger's comment, and
-- the first write to a table that has the trigger but no configuration
-- recreates it (and a missing lifecycle) as the table's owner.  Here a
-- schema-only restore is imitated in one database: the configuration is
-- removed with untrack() and the triggers are put back as pg_dump writes
-- them (test/t/016_schema_only_dump.pl does the real round trip).  Then:
-- every change of the configuration keeps the argument in step, and no
-- role can make the extension recreate configuration for a table it does
-- not own.
SET timezone = 'UTC';
SET intervalstyle = 'postgres';
\set SHOW_CONTEXT never

-- The triggers of a table as a schema-only dump has them, and the
-- configuration gone: what a restore of structure.sql gives.
CREATE FUNCTION so_forget(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    defs text[];
    comments text[];
BEGIN
    SELECT array_agg(pg_get_triggerdef(g.oid) ORDER BY g.tgname),
           array_agg(coalesce(format('COMMENT ON TRIGGER %I ON %s IS %L', g.tgname, tbl,
                                     obj_description(g.oid, 'pg_trigger')), '') ORDER BY g.tgname)
      INTO defs, comments
      FROM pg_trigger g WHERE g.tgrelid = tbl AND g.tgparentid = 0 AND g.tgname LIKE 'zz_deploy_progress%';
    PERFORM deploy_progress.untrack(tbl);
    FOR i IN 1 .. cardinality(defs) LOOP
        EXECUTE defs[i];
        IF comments[i] <> '' THEN
            EXECUTE comments[i];
        END IF;
    END LOOP;
END
$$;
-- the configuration of a table as text, and whether its stamp trigger carries it
CREATE FUNCTION so_config(tbl regclass) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce((SELECT (to_jsonb(t) - 'relid')::text FROM deploy_progress.tracked t WHERE t.relid = tbl), 'not tracked')
$$;
CREATE FUNCTION so_in_step(tbl regclass) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce((SELECT CASE WHEN g.tgnargs = 0 THEN 'no argument'
                                 WHEN deploy_progress._trigger_arg(g.tgargs, g.tgnargs) IS NOT DISTINCT FROM deploy_progress._trigger_config(tbl)
                                      AND obj_description(g.oid, 'pg_trigger') = deploy_progress._trigger_comment(deploy_progress._trigger_config(tbl))
                                 THEN 'in step' ELSE 'stale' END
                       FROM pg_trigger g WHERE g.tgrelid = tbl AND g.tgname = 'zz_deploy_progress_stamp' AND g.tgparentid = 0),
                    'no trigger')
$$;

CREATE ROLE so_owner;
CREATE ROLE so_writer;
CREATE ROLE so_attacker;
GRANT CREATE ON SCHEMA public TO so_owner, so_attacker;

--------------------------------------------------------------------------
-- 1. a table of a role that is not a superuser, with a lifecycle of its own
--------------------------------------------------------------------------

SET ROLE so_owner;
SELECT count(*) FROM deploy_progress.define_lifecycle('so_job', '[
    {"phase": "todo", "kind": "pending", "deadline": "2 hours"},
    {"phase": "running", "kind": "active", "weight": 2.5},
    {"phase": "done", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
CREATE TABLE so_jobs (id integer PRIMARY KEY, phase text NOT NULL, completed_items integer, total_items integer,
                      phase_updated_at timestamp, heartbeat_at timestamp, started_at timestamp);
SELECT storage FROM deploy_progress.track('so_jobs', lifecycle => 'so_job', time_zone => 'Europe/Berlin',
                                          heartbeat_deadline => '2 minutes', notify_channel => NULL);
-- the argument: the tracked row (but its relid) and the lifecycle's phases
SELECT jsonb_pretty(deploy_progress._trigger_config('so_jobs')::jsonb - 'tracked' || '{"tracked": "..."}');
SELECT so_in_step('so_jobs');
CREATE TEMP TABLE so_before AS
    SELECT so_config('so_jobs') AS config,
           (SELECT jsonb_agg(to_jsonb(p) ORDER BY p.position) FROM deploy_progress.lifecycle_phases p WHERE p.lifecycle = 'so_job') AS phases;
GRANT SELECT, INSERT, UPDATE ON so_jobs TO so_writer;
RESET ROLE;

-- as after the restore of a schema-only dump: triggers, no configuration,
-- no lifecycle
SET ROLE so_owner;
SELECT so_forget('so_jobs');
SELECT deploy_progress.drop_lifecycle('so_job');
RESET ROLE;
SELECT so_config('so_jobs'), so_in_step('so_jobs'),
       (SELECT count(*) FROM deploy_progress.lifecycles WHERE name = 'so_job') AS lifecycles;

-- the first write, by a role that may not write the configuration, is
-- stamped: the configuration is back as it was, the lifecycle is the
-- table owner's
SET ROLE so_writer;
INSERT INTO so_jobs (id, phase, completed_items, total_items) VALUES (1, 'running', 0, 10);
SELECT phase, started_at = phase_updated_at AS started, heartbeat_at IS NOT NULL AS beat FROM so_jobs;
RESET ROLE;
SELECT so_config('so_jobs') = config AS same_config,
       (SELECT jsonb_agg(to_jsonb(p) ORDER BY p.position) FROM deploy_progress.lifecycle_phases p WHERE p.lifecycle = 'so_job') = phases AS same_phases,
       (SELECT owner FROM deploy_progress.lifecycles WHERE name = 'so_job') AS lifecycle_owner,
       so_in_step('so_jobs')
  FROM so_before;
-- and it is checked as before
UPDATE so_jobs SET phase = 'lost' WHERE id = 1;
UPDATE so_jobs SET completed_items = 11 WHERE id = 1;

-- a lifecycle that exists is used as it is; side storage; a partitioned
-- table (the write lands in a partition, whose trigger is a clone)
CREATE TABLE so_side (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT storage FROM deploy_progress.track('so_side', allow_restart => true);
CREATE TABLE so_parts (id integer, month date, phase text NOT NULL, phase_updated_at timestamptz,
                       PRIMARY KEY (id, month)) PARTITION BY RANGE (month);
CREATE TABLE so_parts_1 PARTITION OF so_parts FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
SELECT storage FROM deploy_progress.track('so_parts', lifecycle => 'so_job');
-- (the lifecycle's owner may lock and read it, for redefinitions below)
GRANT SELECT, UPDATE ON so_parts TO so_owner;
CREATE TEMP TABLE so_before2 AS SELECT so_config('so_side') AS side, so_config('so_parts') AS parts;
SELECT so_forget('so_side');
SELECT so_forget('so_parts');
TRUNCATE so_side;  -- the side table's TRUNCATE trigger fires first here
INSERT INTO so_side VALUES (1, 'building');
INSERT INTO so_parts VALUES (1, '2026-01-15', 'todo');
SELECT so_config('so_side') = side AS side_same, so_config('so_parts') = parts AS parts_same FROM so_before2;
SELECT (SELECT count(*) FROM deploy_progress.timings WHERE relid = 'so_side'::regclass AND started_at IS NOT NULL) AS side_timings,
       (SELECT phase_updated_at IS NOT NULL FROM so_parts) AS partition_stamped;

--------------------------------------------------------------------------
-- 2. every change of the configuration keeps the argument in step
--------------------------------------------------------------------------

-- track() again
SELECT relid FROM deploy_progress.track('so_side', heartbeat_deadline => '1 minute');
SELECT so_in_step('so_side'), (deploy_progress._trigger_config('so_side')::jsonb -> 'tracked' ->> 'heartbeat_deadline');
-- a direct update of the configuration by the owner
SET ROLE so_owner;
UPDATE deploy_progress.tracked SET progress_deadline = '42 minutes' WHERE relid = 'so_jobs'::regclass;
SELECT so_in_step('so_jobs'), (deploy_progress._trigger_config('so_jobs')::jsonb -> 'tracked' ->> 'progress_deadline');
-- a redefined lifecycle, also in the trigger of a table another role owns
SELECT count(*) FROM deploy_progress.define_lifecycle('so_job', '[
    {"phase": "todo", "kind": "pending"}, {"phase": "running", "kind": "active"},
    {"phase": "paused", "kind": "waiting"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
RESET ROLE;
SELECT so_in_step('so_jobs') AS jobs, so_in_step('so_parts') AS parts,
       jsonb_array_length(deploy_progress._trigger_config('so_parts')::jsonb -> 'phases') AS phases;
-- deleting the configuration by hand leaves a trigger without argument:
-- the next write says the table is not tracked, and nothing comes back
CREATE TABLE so_gone (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT storage FROM deploy_progress.track('so_gone');
DELETE FROM deploy_progress.tracked WHERE relid = 'so_gone'::regclass;
SELECT so_in_step('so_gone');
INSERT INTO so_gone VALUES (1, 'queued');
SELECT so_config('so_gone');
-- untrack() leaves no trigger
SELECT deploy_progress.untrack('so_parts');
SELECT so_in_step('so_parts');

--------------------------------------------------------------------------
-- 3. nobody recreates configuration for a table it does not own
--------------------------------------------------------------------------

SET ROLE so_owner;
CREATE TABLE so_victim (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
GRANT TRIGGER, INSERT ON so_victim TO so_attacker;
RESET ROLE;
CREATE TEMP TABLE so_arg AS SELECT deploy_progress._trigger_config('so_side') AS arg;
GRANT SELECT ON so_arg TO so_attacker;

-- a role with the TRIGGER privilege plants a stamp trigger with a
-- configuration of its choosing (a notify channel it listens on): it
-- cannot comment on the trigger, and the write is refused
SET ROLE so_attacker;
DO $$ BEGIN
    EXECUTE format('CREATE TRIGGER zz_deploy_progress_stamp BEFORE INSERT OR UPDATE ON so_victim '
                   'FOR EACH ROW EXECUTE FUNCTION deploy_progress.stamp(%L)',
                   jsonb_set((SELECT arg FROM so_arg)::jsonb, '{tracked,notify_channel}', '"stolen"')::text);
END $$;
DO $$ BEGIN
    EXECUTE format('COMMENT ON TRIGGER zz_deploy_progress_stamp ON so_victim IS %L',
                   deploy_progress._trigger_comment(jsonb_set((SELECT arg FROM so_arg)::jsonb, '{tracked,notify_channel}', '"stolen"')::text));
END $$;
INSERT INTO so_victim VALUES (1, 'queued');
-- nor may it ask for the recreation itself
SELECT deploy_progress._retrack('so_victim');
SELECT deploy_progress._retrack('so_jobs');
RESET ROLE;
-- the owner's write is refused the same way: the argument is not confirmed
SET ROLE so_owner;
INSERT INTO so_victim VALUES (1, 'queued');
RESET ROLE;
SELECT so_config('so_victim');

-- the configuration of another table, copied onto a table the role owns,
-- configures that table only: the argument names no table
SET ROLE so_attacker;
CREATE TABLE so_mine (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
DO $$ BEGIN
    EXECUTE format('CREATE TRIGGER zz_deploy_progress_stamp BEFORE INSERT OR UPDATE ON so_mine '
                   'FOR EACH ROW EXECUTE FUNCTION deploy_progress.stamp(%L)', (SELECT arg FROM so_arg));
    EXECUTE format('COMMENT ON TRIGGER zz_deploy_progress_stamp ON so_mine IS %L',
                   deploy_progress._trigger_comment((SELECT arg FROM so_arg)));
END $$;
INSERT INTO so_mine VALUES (1, 'queued');
RESET ROLE;
SELECT relid, storage, allow_restart FROM deploy_progress.tracked WHERE relid IN ('so_mine'::regclass, 'so_side'::regclass) ORDER BY relid::text;

-- an argument edited without its comment, one that is not a configuration,
-- a lifecycle that is neither there nor in the argument
SET ROLE so_owner;
CREATE TABLE so_bad (id integer PRIMARY KEY, phase text NOT NULL);
CREATE FUNCTION so_plant(arg text, confirm boolean) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'so_bad'::regclass AND tgname = 'zz_deploy_progress_stamp') THEN
        DROP TRIGGER zz_deploy_progress_stamp ON so_bad;
    END IF;
    EXECUTE format('CREATE TRIGGER zz_deploy_progress_stamp BEFORE INSERT OR UPDATE ON so_bad '
                   'FOR EACH ROW EXECUTE FUNCTION deploy_progress.stamp(%L)', arg);
    IF confirm THEN
        EXECUTE format('COMMENT ON TRIGGER zz_deploy_progress_stamp ON so_bad IS %L', deploy_progress._trigger_comment(arg));
    END IF;
END
$$;
SELECT so_plant('{"v": 1, "tracked": {"lifecycle": "so_job", "phase_column": "phase", "key_columns": ["id"], "storage": "side"}}', false);
INSERT INTO so_bad VALUES (1, 'todo');
SELECT so_plant('not json', true);
INSERT INTO so_bad VALUES (1, 'todo');
SELECT so_plant('{"v": 2, "tracked": {}}', true);
INSERT INTO so_bad VALUES (1, 'todo');
SELECT so_plant('{"v": 1, "tracked": {"lifecycle": "so_nowhere", "phase_column": "phase", "key_columns": ["id"], "storage": "side"}}', true);
INSERT INTO so_bad VALUES (1, 'todo');
-- (nothing was written by any of them)
SELECT count(*) FROM so_bad;
-- a confirmed, hand-written one works: the columns it leaves out get their defaults
SELECT so_plant('{"v": 1, "tracked": {"lifecycle": "so_job", "phase_column": "phase", "key_columns": ["id"], "storage": "side"}}', true);
INSERT INTO so_bad VALUES (1, 'todo');
SELECT storage, history, notify_channel, progress_deadline, time_zone FROM deploy_progress.tracked WHERE relid = 'so_bad'::regclass;
RESET ROLE;

DROP TABLE so_jobs, so_side, so_parts, so_gone, so_victim, so_mine, so_bad, so_before, so_before2, so_arg;
DROP FUNCTION so_plant(text, boolean);
SELECT deploy_progress.drop_lifecycle('so_job');
DROP FUNCTION so_forget(regclass), so_config(regclass), so_in_step(regclass);
REVOKE CREATE ON SCHEMA public FROM so_owner, so_attacker;
DROP ROLE so_owner, so_writer, so_attacker;
