-- Side-table mode: the timings of a table with no timing columns live in
-- deploy_progress.timings, keyed by the table and the row's key.
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never

-- sd_diff shows how each side timing moved since the last sd_snap(), in the
-- words of stamp_rel(): -, set, same, later, cleared, EARLIER (a bug), and
-- "=hb" for a stamp made by the same write as the row's heartbeat.  Both
-- look at the timings of this file's tables (sd_*) only.
\i test/include/stamp_rel.sql
CREATE TABLE sd_prev AS SELECT * FROM deploy_progress.timings WITH NO DATA;
CREATE FUNCTION sd_snap() RETURNS void LANGUAGE sql AS $$
    DELETE FROM sd_prev;
    INSERT INTO sd_prev SELECT * FROM deploy_progress.timings WHERE relid::text LIKE 'sd\_%';
$$;
CREATE VIEW sd_diff AS
SELECT coalesce(n.relid, p.relid) AS relid, coalesce(n.key, p.key) AS key,
       CASE WHEN n.key IS NULL THEN 'gone' WHEN p.key IS NULL THEN 'new' ELSE '' END AS side_row,
       stamp_rel(p.phase_updated_at, n.phase_updated_at, n.heartbeat_at) AS phase_upd,
       stamp_rel(p.progress_updated_at, n.progress_updated_at, n.heartbeat_at) AS progress_upd,
       stamp_rel(p.heartbeat_at, n.heartbeat_at, NULL) AS heartbeat,
       stamp_rel(p.started_at, n.started_at, n.heartbeat_at) AS started,
       stamp_rel(p.finished_at, n.finished_at, n.heartbeat_at) AS finished
  FROM (SELECT * FROM deploy_progress.timings WHERE relid::text LIKE 'sd\_%') n
  FULL JOIN sd_prev p USING (relid, key)
 ORDER BY 1, key COLLATE "C";

-- 1. a table with no timing column is tracked in side mode by default; its
-- rows' timings are inserted, updated and deleted with them
CREATE TABLE sd_jobs (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
                      completed_items int, total_items int, note text);
SELECT storage, columns ->> 'phase_updated_at' AS phase_updated_column, columns ->> 'heartbeat_at' AS heartbeat_column FROM deploy_progress.track('sd_jobs');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'sd_jobs'::regclass ORDER BY tgname;

INSERT INTO sd_jobs (id, phase) VALUES (1, 'queued'), (2, 'building'), (3, 'failed');
SELECT * FROM sd_diff;
SELECT count(DISTINCT heartbeat_at) AS distinct_stamps,
       bool_and(heartbeat_at = phase_updated_at AND phase_updated_at = progress_updated_at) AS one_time
  FROM deploy_progress.timings WHERE relid = 'sd_jobs'::regclass;
SELECT sd_snap();

-- the same rules as in row storage
UPDATE sd_jobs SET phase = 'fetching' WHERE id = 1;
SELECT * FROM sd_diff;
SELECT sd_snap();
UPDATE sd_jobs SET phase = 'building' WHERE id = 1;
SELECT * FROM sd_diff WHERE key = '1';
SELECT sd_snap();
UPDATE sd_jobs SET total_items = 10, completed_items = 3 WHERE id = 1;
SELECT * FROM sd_diff WHERE key = '1';
SELECT sd_snap();
UPDATE sd_jobs SET note = 'alive' WHERE id = 1;
SELECT * FROM sd_diff WHERE key = '1';
SELECT sd_snap();
UPDATE sd_jobs SET phase = 'succeeded', completed_items = 10 WHERE id IN (1, 2);
SELECT * FROM sd_diff;
SELECT sd_snap();
-- checks apply as in row storage, and a rejected write leaves the side table alone
UPDATE sd_jobs SET phase = 'building' WHERE id = 1;
UPDATE sd_jobs SET completed_items = 11 WHERE id = 1;
SELECT * FROM sd_diff WHERE side_row <> '' OR heartbeat <> 'same';

-- a key change carries the timings along (sd_carried compares the timings
-- under the new key with those under the old one)
CREATE FUNCTION sd_carried(tbl regclass, old_key text, new_key text)
RETURNS TABLE (carried boolean, heartbeat_later boolean, old_key_gone boolean)
LANGUAGE sql AS $$
    SELECT (n.phase_updated_at, n.progress_updated_at, n.started_at, n.finished_at)
           IS NOT DISTINCT FROM (p.phase_updated_at, p.progress_updated_at, p.started_at, p.finished_at),
           n.heartbeat_at > p.heartbeat_at,
           NOT EXISTS (SELECT FROM deploy_progress.timings o WHERE o.relid = tbl AND o.key = old_key)
      FROM deploy_progress.timings n, sd_prev p
     WHERE n.relid = tbl AND n.key = new_key AND p.relid = tbl AND p.key = old_key
$$;
UPDATE sd_jobs SET id = 10 WHERE id = 1;
SELECT * FROM sd_carried('sd_jobs', '1', '10');
SELECT * FROM sd_diff;
SELECT sd_snap();

-- a deleted row takes its timings with it
DELETE FROM sd_jobs WHERE id = 3;
SELECT * FROM sd_diff;
SELECT sd_snap();

-- reading: timings(table, key) and the side_timings view
SELECT started_at IS NOT NULL AS started, finished_at = phase_updated_at AS finished_on_entry
  FROM deploy_progress.timings('sd_jobs', '10');
SELECT count(*) AS no_such_key FROM deploy_progress.timings('sd_jobs', '1');
SELECT key, finished_at IS NOT NULL AS finished FROM deploy_progress.side_timings
 WHERE relid = 'sd_jobs'::regclass ORDER BY key COLLATE "C";

-- TRUNCATE clears the table's timings, and a new row with an old key starts afresh
TRUNCATE sd_jobs;
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'sd_jobs'::regclass;
INSERT INTO sd_jobs (id, phase) VALUES (10, 'queued');
SELECT started_at IS NULL AS not_started, finished_at IS NULL AS not_finished
  FROM deploy_progress.timings('sd_jobs', '10');
SELECT sd_snap();

-- 2. composite keys: the key text is the row literal
CREATE TABLE sd_steps (deploy int, step text, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
                       PRIMARY KEY (deploy, step));
SELECT key_columns, storage FROM deploy_progress.track('sd_steps');
INSERT INTO sd_steps VALUES (1, 'build', 'building'), (1, 'ship it', 'queued'), (2, 'a,b', 'queued');
SELECT * FROM sd_diff WHERE relid = 'sd_steps'::regclass;
SELECT sd_snap();
UPDATE sd_steps SET step = 'compile' WHERE deploy = 1 AND step = 'build';
UPDATE sd_steps SET deploy = 3 WHERE step = 'a,b';
SELECT * FROM sd_carried('sd_steps', '(1,build)', '(1,compile)');
SELECT * FROM sd_carried('sd_steps', '(2,"a,b")', '(3,"a,b")');
SELECT * FROM sd_diff WHERE relid = 'sd_steps'::regclass;
SELECT sd_snap();
SELECT started_at IS NOT NULL AS started FROM deploy_progress.timings('sd_steps', '(1,compile)');
SELECT count(*) FROM deploy_progress.timings('sd_steps', '(1,"ship it")');
SELECT count(*) FROM deploy_progress.timings('sd_steps', '(3,"a,b")');
DELETE FROM sd_steps WHERE deploy = 1;
SELECT key FROM deploy_progress.side_timings WHERE relid = 'sd_steps'::regclass;

-- 3. a table that has timing columns can still ask for side storage: its
-- own columns are then left alone
CREATE TABLE sd_cols (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                      phase_updated_at timestamptz, started_at timestamptz);
SELECT storage, columns ->> 'phase_updated_at' AS phase_updated_column, columns ->> 'started_at' AS started_column FROM deploy_progress.track('sd_cols', storage => 'side');
INSERT INTO sd_cols (id, phase, started_at) VALUES (1, 'building', '2000-01-01');
SELECT phase_updated_at IS NULL AS own_column_untouched, started_at = '2000-01-01' AS own_value_kept FROM sd_cols;
SELECT started_at IS NOT NULL AS side_started FROM deploy_progress.timings('sd_cols', '1');
-- re-tracking in side mode keeps the timings
SELECT storage FROM deploy_progress.track('sd_cols', storage => 'side', allow_restart => true);
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'sd_cols'::regclass;
-- switching to row storage drops them, and timings() then reads the row
SELECT storage FROM deploy_progress.track('sd_cols');
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'sd_cols'::regclass;
UPDATE sd_cols SET phase = 'succeeded';
SELECT phase_updated_at = (SELECT phase_updated_at FROM sd_cols) AS from_row, started_at = '2000-01-01' AS kept,
       heartbeat_at IS NULL AS no_heartbeat_column
  FROM deploy_progress.timings('sd_cols', '1');
-- untrack drops side timings too
SELECT storage FROM deploy_progress.track('sd_cols', storage => 'side');
INSERT INTO sd_cols (id, phase) VALUES (2, 'queued');
SELECT deploy_progress.untrack('sd_cols');
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'sd_cols'::regclass;

-- 4. a partitioned table: the timings of every partition are filed under the
-- tracked table, and a row moving between partitions keeps a timings row
CREATE TABLE sd_parts (id int, region text, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
                       PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE sd_parts_eu PARTITION OF sd_parts FOR VALUES IN ('eu');
CREATE TABLE sd_parts_us PARTITION OF sd_parts FOR VALUES IN ('us');
SELECT storage FROM deploy_progress.track('sd_parts');
INSERT INTO sd_parts VALUES (1, 'eu', 'building'), (2, 'us', 'queued');
SELECT relid, key, started_at IS NOT NULL AS started FROM deploy_progress.side_timings
 WHERE relid::text LIKE 'sd_parts%' ORDER BY key COLLATE "C";
UPDATE sd_parts SET region = 'us' WHERE id = 1;
SELECT relid, key FROM deploy_progress.side_timings WHERE relid::text LIKE 'sd_parts%' ORDER BY key COLLATE "C";
UPDATE sd_parts SET phase = 'failed' WHERE id = 2;
SELECT finished_at = phase_updated_at AS finished FROM deploy_progress.timings('sd_parts', '(2,us)');
TRUNCATE sd_parts;
SELECT count(*) AS side_rows FROM deploy_progress.side_timings WHERE relid::text LIKE 'sd_parts%';

-- 5. writers need no privilege on the side table, and readers of the view
-- see the timings of the tables they can read only
CREATE ROLE sd_writer;
CREATE ROLE sd_stranger;
GRANT SELECT, INSERT, UPDATE, DELETE ON sd_jobs TO sd_writer;
SET ROLE sd_writer;
INSERT INTO sd_jobs (id) VALUES (20);
UPDATE sd_jobs SET phase = 'preparing' WHERE id = 20;
SELECT relid, key, started_at IS NOT NULL AS started FROM deploy_progress.side_timings
 WHERE relid::text LIKE 'sd\_%' ORDER BY key COLLATE "C";
SELECT * FROM deploy_progress.timings WHERE false;
SET ROLE sd_stranger;
SELECT count(*) AS visible FROM deploy_progress.side_timings WHERE relid::text LIKE 'sd\_%';
-- timings() reads the row through the table in either storage, so a role
-- that cannot read the table cannot read its timings
SELECT count(*) FROM deploy_progress.timings('sd_jobs', '20');
RESET ROLE;
DELETE FROM sd_jobs WHERE id = 20;
REVOKE ALL ON sd_jobs FROM sd_writer;
DROP ROLE sd_writer;
DROP ROLE sd_stranger;

-- 6. tracking a large table in side mode rewrites nothing: the table
-- keeps its relfilenode and no row is touched (how long it takes is
-- measured in test/bench, not here)
CREATE TABLE sd_big (id bigint PRIMARY KEY, phase text NOT NULL, payload text);
INSERT INTO sd_big SELECT g, CASE WHEN g % 10 = 0 THEN 'done' ELSE 'todo' END, 'row ' || g
  FROM generate_series(1, 100000) g;
SELECT count(*) FROM deploy_progress.define_lifecycle('sd_big', $$[
    {"phase": "todo", "kind": "pending"}, {"phase": "doing", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"}]$$);
SELECT relfilenode AS big_before FROM pg_class WHERE oid = 'sd_big'::regclass \gset
SELECT storage FROM deploy_progress.track('sd_big', lifecycle => 'sd_big');
SELECT relfilenode = :big_before AS same_relfilenode FROM pg_class WHERE oid = 'sd_big'::regclass;
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'sd_big'::regclass;
-- rows get their timings when they are next written
UPDATE sd_big SET phase = 'doing' WHERE id = 1;
SELECT started_at IS NOT NULL AS started FROM deploy_progress.timings('sd_big', '1');
SELECT deploy_progress.untrack('sd_big');
SELECT relfilenode = :big_before AS same_relfilenode FROM pg_class WHERE oid = 'sd_big'::regclass;

DROP TABLE sd_big, sd_jobs, sd_steps, sd_cols, sd_parts;
SELECT deploy_progress.drop_lifecycle('sd_big');
DROP VIEW sd_diff;
DROP TABLE sd_prev;
DROP FUNCTION sd_snap(), stamp_rel(timestamptz, timestamptz, timestamptz), sd_carried(regclass, text, text);
SELECT count(*) AS side_rows_left FROM deploy_progress.timings WHERE relid::text LIKE 'sd\_%';
