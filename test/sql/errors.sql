-- Every bad input gets a clear error, and changes nothing.
--
-- er_fingerprint() digests everything a bad call could change: the
-- extension's configuration tables, the side table, the triggers and rows of
-- the er_* tables.  After each error, "unchanged" compares it with the
-- fingerprint taken before (:'fp').
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never

CREATE FUNCTION er_fingerprint() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    parts text[] := ARRAY[
        (SELECT string_agg(t::text, '|' ORDER BY t.relid::text) FROM deploy_progress.tracked t),
        (SELECT string_agg(l::text, '|' ORDER BY l.name) FROM deploy_progress.lifecycles l),
        (SELECT string_agg(p::text, '|' ORDER BY p.lifecycle, p.position) FROM deploy_progress.lifecycle_phases p),
        (SELECT string_agg(s::text, '|' ORDER BY s.relid::text, s.key) FROM deploy_progress.timings s),
        (SELECT string_agg(g.tgrelid::regclass || '.' || g.tgname, '|' ORDER BY 1)
           FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid WHERE c.relname LIKE 'er\_%')];
    tbl regclass;
    rows text;
BEGIN
    FOR tbl IN SELECT c.oid FROM pg_class c
                WHERE c.relname LIKE 'er\_%' AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
                ORDER BY c.relname
    LOOP
        EXECUTE format('SELECT string_agg(t::text, ''|'' ORDER BY t::text) FROM %s t', tbl) INTO rows;
        parts := parts || (tbl::text || ':' || coalesce(rows, ''));
    END LOOP;
    RETURN md5(array_to_string(parts, '#', '-'));
END $$;

CREATE TYPE er_state AS ENUM ('todo', 'doing', 'done', 'failed');
SELECT count(*) FROM deploy_progress.define_lifecycle('er_lc', $$[
    {"phase": "todo", "kind": "pending"}, {"phase": "doing", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"}]$$);
CREATE TABLE er_jobs (id int PRIMARY KEY, phase deploy_progress.phase,
                      completed_items int, total_items int, heartbeat_at timestamptz);
CREATE TABLE er_text (id int PRIMARY KEY, phase text NOT NULL);
CREATE TABLE er_enum (id int PRIMARY KEY, phase er_state NOT NULL DEFAULT 'todo');
CREATE TABLE er_nokey (phase deploy_progress.phase NOT NULL);
CREATE TABLE er_badtypes (id int PRIMARY KEY, phase integer, state deploy_progress.phase,
                          completed_items text, started_at time, heartbeat_at date);
CREATE VIEW er_view AS SELECT * FROM er_jobs;
SELECT relid FROM deploy_progress.track('er_jobs', allow_restart => false);
SELECT relid FROM deploy_progress.track('er_text', lifecycle => 'er_lc');
SELECT relid FROM deploy_progress.track('er_enum', lifecycle => 'er_lc');
INSERT INTO er_jobs (id, phase, completed_items, total_items) VALUES (1, 'building', 5, 10), (2, 'succeeded', NULL, NULL);
INSERT INTO er_text VALUES (1, 'doing');
INSERT INTO er_enum VALUES (1, 'doing');
SELECT er_fingerprint() AS fp \gset

--------------------------------------------------------------------------
-- track() and untrack(): tables and columns
--------------------------------------------------------------------------

-- missing table
SELECT deploy_progress.track('er_no_such_table');
SELECT deploy_progress.untrack('er_no_such_table');
-- not a table
SELECT deploy_progress.track('er_view');
SELECT deploy_progress.track(NULL);
SELECT er_fingerprint() = :'fp' AS unchanged;

-- missing phase column, missing role columns named explicitly, missing key column
SELECT deploy_progress.track('er_text', lifecycle => 'er_lc', phase => 'status');
SELECT deploy_progress.track('er_jobs', completed_items => 'done_count');
SELECT deploy_progress.track('er_jobs', started_at => 'began');
SELECT deploy_progress.track('er_jobs', key => ARRAY['job_id']::name[]);
SELECT deploy_progress.track('er_jobs', key => '{}'::name[]);
SELECT deploy_progress.track('er_jobs', phase => NULL);
SELECT er_fingerprint() = :'fp' AS unchanged;

-- wrong column types
SELECT deploy_progress.track('er_badtypes', lifecycle => 'er_lc');
SELECT deploy_progress.track('er_badtypes', phase => 'state');
SELECT deploy_progress.track('er_badtypes', phase => 'state', completed_items => NULL);
SELECT deploy_progress.track('er_badtypes', phase => 'state', completed_items => NULL, heartbeat_at => NULL);
SELECT er_fingerprint() = :'fp' AS unchanged;

-- no primary key (and no key named)
SELECT deploy_progress.track('er_nokey');
SELECT er_fingerprint() = :'fp' AS unchanged;

-- lifecycle missing or unknown
SELECT deploy_progress.track('er_text');
SELECT deploy_progress.track('er_text', lifecycle => 'er_no_such_lifecycle');
SELECT er_fingerprint() = :'fp' AS unchanged;

-- existing rows whose phase is not in the lifecycle, or null; an enum with
-- labels the lifecycle lacks
CREATE TABLE er_legacy (id int PRIMARY KEY, phase text);
INSERT INTO er_legacy VALUES (1, 'todo'), (2, 'Running'), (3, 'archived'), (4, 'Running');
SELECT er_fingerprint() AS fp \gset
SELECT deploy_progress.track('er_legacy', lifecycle => 'er_lc');
UPDATE er_legacy SET phase = NULL WHERE id > 1;
SELECT er_fingerprint() AS fp \gset
SELECT deploy_progress.track('er_legacy', lifecycle => 'er_lc');
CREATE TYPE er_wide AS ENUM ('todo', 'doing', 'done', 'failed', 'archived');
CREATE TABLE er_wide_jobs (id int PRIMARY KEY, phase er_wide NOT NULL);
SELECT er_fingerprint() AS fp \gset
SELECT deploy_progress.track('er_wide_jobs', lifecycle => 'er_lc');
SELECT er_fingerprint() = :'fp' AS unchanged;

-- other options
SELECT deploy_progress.track('er_jobs', storage => 'disk');
SELECT deploy_progress.track('er_jobs', speed_time_constant => '-1 second');
SELECT deploy_progress.track('er_jobs', progress_deadline => '0');
SELECT deploy_progress.track('er_jobs', history => 'some');
SELECT deploy_progress.track('er_jobs', notify_channel => '');
SELECT er_fingerprint() = :'fp' AS unchanged;

-- untrack of a table that is not tracked; timings of a table that is not tracked
SELECT deploy_progress.untrack('er_legacy');
SELECT * FROM deploy_progress.timings('er_legacy', '1');
SELECT er_fingerprint() = :'fp' AS unchanged;

--------------------------------------------------------------------------
-- Lifecycle definitions
--------------------------------------------------------------------------

SELECT deploy_progress.define_lifecycle('er_bad', '[]');
SELECT deploy_progress.define_lifecycle('er_bad', '{"phase": "todo", "kind": "pending"}');
SELECT deploy_progress.define_lifecycle('er_bad', NULL);
SELECT deploy_progress.define_lifecycle('', '[{"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
SELECT deploy_progress.define_lifecycle(NULL, '[{"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
-- duplicate names
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active"}, {"phase": "ok", "kind": "succeeded"},
    {"phase": "run", "kind": "active"}, {"phase": "ko", "kind": "failed"}]$$);
-- no succeeded phase, no failed phase
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active"}, {"phase": "ko", "kind": "failed"}, {"phase": "stop", "kind": "cancelled"}]$$);
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active"}, {"phase": "ok", "kind": "succeeded"}]$$);
-- unknown kind, missing kind
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "running"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
-- weights: negative, not a number, too large
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active", "weight": -1}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active", "weight": "heavy"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active", "weight": 1e400}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
-- deadlines: not an interval, negative, zero
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active", "deadline": "soon"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active", "deadline": "-5 minutes"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active", "deadline": "0"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
-- unknown keys
SELECT deploy_progress.define_lifecycle('er_bad', $$[
    {"phase": "run", "kind": "active", "timeout": "5 minutes"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
-- elements that are not objects, phases without a usable name
SELECT deploy_progress.define_lifecycle('er_bad', '["run", {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
SELECT deploy_progress.define_lifecycle('er_bad', '[{"phase": "ok", "kind": "succeeded"}, null, {"phase": "ko", "kind": "failed"}]');
SELECT deploy_progress.define_lifecycle('er_bad', '[{"kind": "active"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
SELECT deploy_progress.define_lifecycle('er_bad', '[{"phase": "", "kind": "active"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
SELECT deploy_progress.define_lifecycle('er_bad', '[{"phase": 7, "kind": "active"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
SELECT er_fingerprint() = :'fp' AS unchanged;
-- a bad redefinition leaves the lifecycle as it was
SELECT deploy_progress.define_lifecycle('er_lc', '[{"phase": "ok", "kind": "succeeded"}]');
SELECT deploy_progress.define_lifecycle('er_lc', $$[
    {"phase": "todo", "kind": "pending"}, {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"}]$$);
SELECT er_fingerprint() = :'fp' AS unchanged;

-- dropping: unknown, in use, built in
SELECT deploy_progress.drop_lifecycle('er_no_such_lifecycle');
SELECT deploy_progress.drop_lifecycle('er_lc');
SELECT deploy_progress.drop_lifecycle('default');
SELECT er_fingerprint() = :'fp' AS unchanged;

--------------------------------------------------------------------------
-- Writes to tracked tables
--------------------------------------------------------------------------

-- unknown phase: text (any string can be written) and enum (a label the
-- lifecycle does not have, added after tracking)
INSERT INTO er_text VALUES (2, 'Doing');
UPDATE er_text SET phase = 'doing ' WHERE id = 1;
ALTER TYPE er_state ADD VALUE 'archived';
SELECT er_fingerprint() AS fp \gset
INSERT INTO er_enum VALUES (2, 'archived');
UPDATE er_enum SET phase = 'archived' WHERE id = 1;
SELECT er_fingerprint() = :'fp' AS unchanged;

-- null phase
INSERT INTO er_jobs (id, phase) VALUES (3, NULL);
UPDATE er_jobs SET phase = NULL WHERE id = 1;
SELECT er_fingerprint() = :'fp' AS unchanged;

-- counters out of range: negative, completed beyond the total
INSERT INTO er_jobs (id, phase, completed_items) VALUES (3, 'building', -1);
INSERT INTO er_jobs (id, phase, total_items) VALUES (3, 'building', -10);
INSERT INTO er_jobs (id, phase, completed_items, total_items) VALUES (3, 'building', 11, 10);
UPDATE er_jobs SET completed_items = -1 WHERE id = 1;
UPDATE er_jobs SET total_items = 4 WHERE id = 1;
UPDATE er_jobs SET completed_items = 11 WHERE id = 1;
-- one bad row fails the whole statement
UPDATE er_jobs SET completed_items = completed_items + 6, total_items = 10;
SELECT er_fingerprint() = :'fp' AS unchanged;

-- leaving a terminal phase without restarts allowed
UPDATE er_jobs SET phase = 'queued' WHERE id = 2;
UPDATE er_jobs SET phase = 'failed' WHERE id = 2;
SELECT er_fingerprint() = :'fp' AS unchanged;

-- the trigger functions are only for the triggers track() creates
SELECT deploy_progress.stamp();
CREATE TABLE er_misuse (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL);
CREATE TRIGGER er_after AFTER INSERT ON er_misuse FOR EACH ROW EXECUTE FUNCTION deploy_progress.stamp();
CREATE TRIGGER er_side_before BEFORE DELETE ON er_misuse FOR EACH ROW EXECUTE FUNCTION deploy_progress.stamp_side();
SELECT er_fingerprint() AS fp \gset
INSERT INTO er_misuse VALUES (1, 'queued');
DROP TRIGGER er_after ON er_misuse;
CREATE TRIGGER er_before BEFORE INSERT ON er_misuse FOR EACH ROW EXECUTE FUNCTION deploy_progress.stamp();
SELECT er_fingerprint() AS fp \gset
INSERT INTO er_misuse VALUES (1, 'queued');
SELECT er_fingerprint() = :'fp' AS unchanged;
DROP TABLE er_misuse;

--------------------------------------------------------------------------
-- Roles: only owners may track, untrack, or change configuration
--------------------------------------------------------------------------

CREATE ROLE er_owner;
CREATE ROLE er_other;
GRANT CREATE ON SCHEMA public TO er_owner;
SET ROLE er_owner;
CREATE TABLE er_owned (id int PRIMARY KEY, phase text NOT NULL, heartbeat_at timestamptz);
SELECT count(*) FROM deploy_progress.define_lifecycle('er_owner_lc', $$[
    {"phase": "todo", "kind": "pending"}, {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT relid, storage FROM deploy_progress.track('er_owned', lifecycle => 'er_owner_lc', storage => 'side');
INSERT INTO er_owned VALUES (1, 'todo');
RESET ROLE;
SELECT er_fingerprint() AS fp \gset

SET ROLE er_other;
-- through the functions
SELECT deploy_progress.track('er_owned', lifecycle => 'er_owner_lc', allow_restart => true);
SELECT deploy_progress.untrack('er_owned');
SELECT deploy_progress.track('er_jobs');
SELECT deploy_progress.define_lifecycle('er_owner_lc', '[{"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
SELECT deploy_progress.drop_lifecycle('er_owner_lc');
SELECT deploy_progress.define_lifecycle('default', '[{"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
-- writing the configuration tables directly
UPDATE deploy_progress.tracked SET allow_restart = true WHERE relid = 'er_owned'::regclass;
DELETE FROM deploy_progress.tracked WHERE relid = 'er_owned'::regclass;
INSERT INTO deploy_progress.tracked (relid, lifecycle, phase_column, key_columns, storage)
VALUES ('er_jobs', 'default', 'phase', '{id}', 'row');
UPDATE deploy_progress.lifecycle_phases SET kind = 'active' WHERE lifecycle = 'er_owner_lc' AND phase = 'todo';
DELETE FROM deploy_progress.lifecycle_phases WHERE lifecycle = 'er_owner_lc';
INSERT INTO deploy_progress.lifecycle_phases (lifecycle, position, phase, kind) VALUES ('er_owner_lc', 9, 'extra', 'active');
UPDATE deploy_progress.lifecycles SET owner = 'er_other' WHERE name = 'er_owner_lc';
DELETE FROM deploy_progress.lifecycles WHERE name = 'er_owner_lc';
UPDATE deploy_progress.lifecycle_phases SET weight = 100 WHERE lifecycle = 'default';
-- nor define a lifecycle in another role's name, or a built-in one
INSERT INTO deploy_progress.lifecycles (name, owner) VALUES ('er_spoof', 'er_owner');
INSERT INTO deploy_progress.lifecycles (name, builtin) VALUES ('er_spoof', true);
-- the side table is not theirs to write, and what they may call to clean
-- it up leaves the timings of tracked tables alone
DELETE FROM deploy_progress.timings;
SELECT deploy_progress._forget_timings('er_owned');
RESET ROLE;
SELECT er_fingerprint() = :'fp' AS unchanged;

-- an owner cannot make its lifecycle a built-in one either, nor give it away
-- to a role it is not a member of
SET ROLE er_owner;
UPDATE deploy_progress.lifecycles SET builtin = true WHERE name = 'er_owner_lc';
UPDATE deploy_progress.lifecycles SET owner = 'er_other' WHERE name = 'er_owner_lc';
RESET ROLE;
SELECT er_fingerprint() = :'fp' AS unchanged;

-- the owner may do all of it, in either storage
SET ROLE er_owner;
SELECT allow_restart FROM deploy_progress.track('er_owned', lifecycle => 'er_owner_lc', storage => 'side', allow_restart => true);
SELECT count(*) AS side_rows FROM deploy_progress.side_timings WHERE relid = 'er_owned'::regclass;
SELECT storage FROM deploy_progress.track('er_owned', lifecycle => 'er_owner_lc');
SELECT count(*) AS side_rows FROM deploy_progress.side_timings WHERE relid = 'er_owned'::regclass;
UPDATE er_owned SET phase = 'ok';
SELECT heartbeat_at IS NOT NULL AS stamped FROM er_owned;
SELECT storage FROM deploy_progress.track('er_owned', lifecycle => 'er_owner_lc', storage => 'side');
INSERT INTO er_owned VALUES (2, 'todo');
SELECT deploy_progress.untrack('er_owned');
RESET ROLE;
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'er_owned'::regclass;
SET ROLE er_owner;
SELECT deploy_progress.drop_lifecycle('er_owner_lc');
DROP TABLE er_owned;
RESET ROLE;

REVOKE CREATE ON SCHEMA public FROM er_owner;
DROP ROLE er_owner;
DROP ROLE er_other;

DROP VIEW er_view;
DROP TABLE er_jobs, er_text, er_enum, er_nokey, er_badtypes, er_legacy, er_wide_jobs;
DROP TYPE er_state, er_wide;
SELECT deploy_progress.drop_lifecycle('er_lc');
DROP FUNCTION er_fingerprint();
