-- The message, metadata and label column roles: the worker's status line,
-- details of the row, and a human name for it.  Each history row keeps
-- the three as the transition wrote them; progress(), describe() and
-- in_flight show the current label and message; events (NOTIFY payloads
-- and events_since()) carry the label and the message, capped like keys,
-- never the metadata; readers apply the table's rights and row security.
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- 1. the roles, in the catalogue of column roles
SELECT role, position, types, value_type, under_side FROM deploy_progress.column_roles
 WHERE role IN ('message', 'metadata', 'label') ORDER BY position;

SELECT count(*) FROM deploy_progress.define_lifecycle('mr_lc', '[
    {"phase": "queued", "kind": "pending"}, {"phase": "pulling", "kind": "active"},
    {"phase": "starting", "kind": "active"}, {"phase": "done", "kind": "succeeded"},
    {"phase": "failed", "kind": "failed"}]');

-- row storage: message and metadata by their own names, the label from
-- the table's "service" column
CREATE TABLE mr_jobs (
    id                  integer PRIMARY KEY,
    phase               text NOT NULL,
    completed_items     integer,
    total_items         integer,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    message             text,
    metadata            jsonb,
    service             varchar(200)
);
SELECT storage, columns ->> 'message' AS message, columns ->> 'metadata' AS metadata, columns ->> 'label' AS label
  FROM deploy_progress.track('mr_jobs', lifecycle => 'mr_lc', columns => '{"label": "service"}');
-- side storage: the three stay in the table's columns
CREATE TABLE mr_side (
    id       integer PRIMARY KEY,
    phase    text NOT NULL,
    message  varchar(300),
    metadata jsonb,
    label    text
);
SELECT storage, columns ->> 'message' AS message, columns ->> 'metadata' AS metadata, columns ->> 'label' AS label
  FROM deploy_progress.track('mr_side', lifecycle => 'mr_lc', storage => 'side');
-- the stamp trigger's configuration (schema-only dumps) names them too
SELECT deploy_progress._trigger_config('mr_side')::jsonb -> 'tracked' -> 'columns' AS trigger_columns;

-- 2. each transition keeps the message and metadata written with it; a
-- write that only changes them records nothing
\i test/include/notify_listener.sql
INSERT INTO mr_jobs (id, phase, service, message) VALUES (1, 'queued', 'web', 'waiting for a runner');
UPDATE mr_jobs SET phase = 'pulling', completed_items = 2, total_items = 4,
                   message = 'Pulling image web:1.2', metadata = '{"image": "web:1.2"}' WHERE id = 1;
UPDATE mr_jobs SET message = 'Pulling layer 3 of 4', metadata = '{"image": "web:1.2", "layer": 3}' WHERE id = 1;
INSERT INTO mr_side (id, phase, label, message, metadata) VALUES (7, 'queued', 'api', 'queued behind web', '{"run": 7}');
UPDATE mr_side SET phase = 'starting', message = E'Starting\ncontainer api', metadata = NULL WHERE id = 7;
SELECT relid, key, to_phase, label, message, metadata FROM deploy_progress.transitions
 WHERE relid IN ('mr_jobs'::regclass, 'mr_side'::regclass) ORDER BY id;

-- 3. the events carry the label and the message, never the metadata
SELECT n, payload::jsonb - 'at' AS event, payload::jsonb ? 'metadata' AS has_metadata
  FROM pg_temp.received() ORDER BY n;

-- 4. readers: progress() gives the current label and message (of a table
-- that has such columns), describe() shows them, in_flight has them
SELECT j ->> 'label' AS label, j ->> 'message' AS message, j ? 'metadata' AS has_metadata
  FROM deploy_progress.progress('mr_jobs', '1') j;
SELECT deploy_progress.describe('mr_jobs', '1', (SELECT phase_updated_at FROM mr_jobs WHERE id = 1));
-- (side storage: a newline of the message is shown as a space)
SELECT deploy_progress.describe('mr_side', '7', (SELECT phase_updated_at FROM deploy_progress.timings('mr_side', '7')));
SELECT relid, key, phase, label, message FROM deploy_progress.in_flight
 WHERE relid IN ('mr_jobs'::regclass, 'mr_side'::regclass) ORDER BY relid::text, key;
-- a table without the roles: no label or message keys, NULL columns
CREATE TABLE mr_plain (id integer PRIMARY KEY, phase text NOT NULL);
SELECT columns FROM deploy_progress.track('mr_plain', lifecycle => 'mr_lc');
INSERT INTO mr_plain VALUES (1, 'queued');
SELECT j ? 'label' AS has_label, j ? 'message' AS has_message FROM deploy_progress.progress('mr_plain', '1') j;
SELECT label, message FROM deploy_progress.in_flight WHERE relid = 'mr_plain'::regclass;
SELECT n, payload::jsonb - 'at' AS event FROM pg_temp.received() ORDER BY n;
-- describe() of figures: an empty label or message is left out
SELECT deploy_progress.describe('{"phase": "pulling", "kind": "active", "completed": 2, "total": 4,
                                  "label": "", "message": "Pulling image web:1.2"}');
SELECT deploy_progress.describe('{"phase": "done", "kind": "succeeded", "elapsed_seconds": 65,
                                  "label": "web", "message": ""}');

-- 5. long labels and messages: events cap them (at 128 bytes, on a
-- character boundary) and say so; the history keeps them whole
UPDATE mr_jobs SET phase = 'starting', service = repeat('é', 150), message = repeat('m', 300) WHERE id = 1;
SELECT n, length(payload::jsonb ->> 'label') AS label_chars, length(payload::jsonb ->> 'message') AS message_chars,
       payload::jsonb -> 'label_truncated' AS label_truncated, payload::jsonb -> 'message_truncated' AS message_truncated,
       payload::jsonb ? 'key_truncated' AS key_truncated
  FROM pg_temp.received() ORDER BY n;
SELECT length(label) AS label_chars, length(message) AS message_chars FROM deploy_progress.transitions
 WHERE relid = 'mr_jobs'::regclass AND to_phase = 'starting';
UPDATE mr_jobs SET service = 'web', message = 'Starting web' WHERE id = 1;

-- 6. the durable event stream: label and message, no metadata column
-- (an event appears once every older transaction has ended: wait, boundedly)
DO $$
BEGIN
    FOR i IN 1 .. 1200 LOOP
        EXIT WHEN (SELECT count(*) FROM deploy_progress.events_since(NULL, 1000, 'mr_jobs')) >= 3
              AND (SELECT count(*) FROM deploy_progress.events_since(NULL, 1000, 'mr_side')) >= 2;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT relid, key, to_phase, left(label, 5) AS label, left(message, 25) AS message
  FROM deploy_progress.events_since(NULL, 1000)
 WHERE relid IN ('mr_jobs'::regclass, 'mr_side'::regclass) ORDER BY split_part(cursor, ':', 1)::bigint, id;
SELECT count(*) AS metadata_columns FROM pg_catalog.pg_proc p, unnest(p.proargnames) a
 WHERE p.oid = 'deploy_progress.events_since(text, integer, regclass)'::regprocedure AND a = 'metadata';
-- a finished row that is deleted keeps its name in the history
UPDATE mr_side SET phase = 'done', message = 'api is up' WHERE id = 7;
DELETE FROM mr_side WHERE id = 7;
SELECT key, to_phase, label, message FROM deploy_progress.transitions
 WHERE relid = 'mr_side'::regclass ORDER BY id DESC LIMIT 1;
SELECT count(*) AS events FROM pg_temp.received();

-- 7. rights: a role that cannot read the table sees none of its messages;
-- under row-level security, only those of the rows it can see
CREATE ROLE mr_outsider;
CREATE ROLE mr_web;
INSERT INTO mr_jobs (id, phase, service, message) VALUES (2, 'queued', 'db', 'secret: db password rotation');
GRANT SELECT ON mr_jobs TO mr_web;
ALTER TABLE mr_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY web_only ON mr_jobs TO mr_web USING (service = 'web');
DO $$
BEGIN
    FOR i IN 1 .. 1200 LOOP
        EXIT WHEN (SELECT count(*) FROM deploy_progress.events_since(NULL, 1000, 'mr_jobs')) >= 4;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SET ROLE mr_outsider;
SELECT count(*) AS events FROM deploy_progress.events_since(NULL, 1000)
 WHERE relid = 'mr_jobs'::regclass OR message LIKE 'secret%';
SELECT count(*) AS transitions FROM deploy_progress.transitions WHERE relid = 'mr_jobs'::regclass;
SELECT count(*) FROM deploy_progress.events_since(NULL, 1000, 'mr_jobs');
SELECT count(*) AS in_flight FROM deploy_progress.in_flight WHERE relid = 'mr_jobs'::regclass;
SELECT deploy_progress.describe('mr_jobs', '2');
RESET ROLE;
SET ROLE mr_web;
SELECT key, to_phase, left(label, 5) AS label, left(message, 25) AS message
  FROM deploy_progress.events_since(NULL, 1000, 'mr_jobs') ORDER BY split_part(cursor, ':', 1)::bigint, id;
SELECT key, label, message FROM deploy_progress.in_flight WHERE relid = 'mr_jobs'::regclass;
RESET ROLE;
ALTER TABLE mr_jobs DISABLE ROW LEVEL SECURITY;

-- 8. bad input: a column of the wrong type, a missing column, a column
-- that already plays another role; each changes nothing
CREATE TABLE mr_bad (
    id       integer PRIMARY KEY,
    phase    text NOT NULL,
    message  text,
    meta_js  json,
    owner_id integer,
    title    text
);
SELECT columns FROM deploy_progress.track('mr_bad', lifecycle => 'mr_lc');
CREATE TEMP TABLE mr_bad_before AS
    SELECT t.*, deploy_progress._trigger_config('mr_bad') AS trigger_config FROM deploy_progress.tracked t
     WHERE t.relid = 'mr_bad'::regclass;
SELECT deploy_progress.track('mr_bad', lifecycle => 'mr_lc', columns => '{"metadata": "meta_js"}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT deploy_progress.track('mr_bad', lifecycle => 'mr_lc', columns => '{"label": "owner_id"}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT deploy_progress.track('mr_bad', lifecycle => 'mr_lc', columns => '{"message": "owner_id"}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT deploy_progress.track('mr_bad', lifecycle => 'mr_lc', columns => '{"message": "status_line"}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT deploy_progress.track('mr_bad', lifecycle => 'mr_lc', columns => '{"label": "message"}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT deploy_progress.track('mr_bad', lifecycle => 'mr_lc', columns => '{"label": "phase"}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT deploy_progress.track('mr_bad', lifecycle => 'mr_lc', columns => '{"label": "title", "message": "title"}');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- (a column named "metadata" of another type than jsonb is refused even
-- by default; the role is left out by name)
CREATE TABLE mr_json (id integer PRIMARY KEY, phase text NOT NULL, metadata json);
SELECT deploy_progress.track('mr_json', lifecycle => 'mr_lc');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT columns FROM deploy_progress.track('mr_json', lifecycle => 'mr_lc', columns => '{"metadata": null}');
SELECT t.columns = b.columns AS columns_kept,
       deploy_progress._trigger_config('mr_bad') = b.trigger_config AS trigger_kept
  FROM deploy_progress.tracked t, mr_bad_before b WHERE t.relid = 'mr_bad'::regclass;
SELECT count(*) AS metadata_role FROM deploy_progress.tracked WHERE relid = 'mr_json'::regclass AND columns ? 'metadata';

-- 9. schema-only dumps: the stamp trigger's configuration carries the
-- roles, and the first write after a restore recreates them (imitated:
-- the configuration removed, the triggers put back as pg_dump writes them)
CREATE TEMP TABLE mr_cfg AS
    SELECT to_jsonb(t) - 'relid' - 'tracked_at' AS config FROM deploy_progress.tracked t
     WHERE t.relid = 'mr_jobs'::regclass;
DO $$
DECLARE
    defs text[];
    comments text[];
BEGIN
    SELECT array_agg(pg_get_triggerdef(g.oid) ORDER BY g.tgname),
           array_agg(coalesce(format('COMMENT ON TRIGGER %I ON mr_jobs IS %L', g.tgname,
                                     obj_description(g.oid, 'pg_trigger')), '') ORDER BY g.tgname)
      INTO defs, comments
      FROM pg_trigger g WHERE g.tgrelid = 'mr_jobs'::regclass AND g.tgname LIKE 'zz_deploy_progress%';
    PERFORM deploy_progress.untrack('mr_jobs');
    FOR i IN 1 .. cardinality(defs) LOOP
        EXECUTE defs[i];
        IF comments[i] <> '' THEN
            EXECUTE comments[i];
        END IF;
    END LOOP;
END
$$;
SELECT count(*) AS tracked FROM deploy_progress.tracked WHERE relid = 'mr_jobs'::regclass;
UPDATE mr_jobs SET phase = 'done', message = 'web is up', metadata = '{"url": "https://web.example"}' WHERE id = 1;
SELECT (to_jsonb(t) - 'relid' - 'tracked_at') = c.config AS config_restored,
       t.columns ->> 'label' AS label, t.columns ->> 'message' AS message, t.columns ->> 'metadata' AS metadata
  FROM deploy_progress.tracked t, mr_cfg c WHERE t.relid = 'mr_jobs'::regclass;
SELECT to_phase, label, message, metadata FROM deploy_progress.transitions
 WHERE relid = 'mr_jobs'::regclass ORDER BY id DESC LIMIT 1;

DROP TABLE mr_jobs, mr_side, mr_plain, mr_bad, mr_json;
DROP ROLE mr_outsider, mr_web;
SELECT count(*) FROM deploy_progress.drop_lifecycle('mr_lc');
SELECT dblink_disconnect('listener'), dblink_disconnect('sender');
DROP EXTENSION dblink;
