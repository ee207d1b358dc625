-- Side storage keeps exactly one side row per row, under the row's current
-- key: keys swapped or shifted in one statement, a key re-used after a
-- stamping-off DELETE, rows moving between partitions, and partitions
-- truncated, dropped or detached (issue 12 #11).  Also: the partition-move
-- rule of row storage applies to the statement that moved the row only, and
-- side storage writes a statement's history at the statement's end.
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- the side rows of the si_* tables, with their fixed test times shown as is
-- and stamps made by the extension (today) as "now"
CREATE FUNCTION si_t(ts timestamptz) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN ts IS NULL THEN '-' WHEN ts > '2026-11-01' THEN 'now' ELSE ts::text END
$$;
CREATE VIEW si_side AS
SELECT relid, key, partition, si_t(phase_updated_at) AS phase_upd, si_t(started_at) AS started,
       si_t(finished_at) AS finished, si_t(heartbeat_at) AS heartbeat
  FROM deploy_progress.timings WHERE relid::text LIKE 'si\_%'
 ORDER BY relid::text, key COLLATE "C";
-- give the side rows of a table distinct, recognisable timings (as a
-- restore would): started_at tells which row a side row came from
CREATE FUNCTION si_mark(tbl regclass) RETURNS void LANGUAGE sql AS $$
    UPDATE deploy_progress.timings
       SET phase_updated_at = '2026-01-01'::timestamptz + key_day * interval '1 day',
           started_at = '2026-01-01'::timestamptz + key_day * interval '1 day',
           heartbeat_at = '2026-01-01'::timestamptz + key_day * interval '1 day'
      FROM (SELECT key AS k, (regexp_match(key, '\d+'))[1]::int AS key_day
              FROM deploy_progress.timings WHERE relid = tbl) m
     WHERE relid = tbl AND key = m.k
$$;

--------------------------------------------------------------------------
-- 1. keys swapped and shifted in one statement (deferrable key)
--------------------------------------------------------------------------

CREATE TABLE si_swap (id int PRIMARY KEY DEFERRABLE INITIALLY IMMEDIATE,
                      phase deploy_progress.phase NOT NULL, note text);
SELECT storage FROM deploy_progress.track('si_swap');
INSERT INTO si_swap VALUES (1, 'building', 'one'), (2, 'fetching', 'two'), (3, 'queued', 'three');
SELECT si_mark('si_swap');
SELECT key, started, heartbeat FROM si_side;
-- rows 1 and 2 exchange their keys: each keeps its own timings
UPDATE si_swap SET id = 3 - id WHERE id IN (1, 2);
SELECT s.id, s.note, v.started, v.heartbeat
  FROM si_swap s JOIN si_side v ON v.relid = 'si_swap'::regclass AND v.key = s.id::text ORDER BY s.id;
-- every key moves up by one in one statement
UPDATE si_swap SET id = id + 1;
SELECT s.id, s.note, v.started, v.heartbeat
  FROM si_swap s JOIN si_side v ON v.relid = 'si_swap'::regclass AND v.key = s.id::text ORDER BY s.id;
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'si_swap'::regclass;
-- a swap that also changes a phase stamps it on the row's own timings
SELECT si_mark('si_swap');
UPDATE si_swap SET id = 5 - id, phase = CASE WHEN note = 'one' THEN 'succeeded'::deploy_progress.phase ELSE phase END
 WHERE id IN (2, 3);
SELECT s.id, s.note, s.phase, v.phase_upd, v.started, v.finished
  FROM si_swap s JOIN si_side v ON v.relid = 'si_swap'::regclass AND v.key = s.id::text ORDER BY s.id;
-- inside a transaction the queued re-keys follow savepoints
SELECT si_mark('si_swap');
BEGIN;
SAVEPOINT a;
UPDATE si_swap SET id = 5 - id WHERE id IN (2, 3);
ROLLBACK TO a;
UPDATE si_swap SET id = id + 10 WHERE id = 4;
COMMIT;
SELECT s.id, s.note, v.started
  FROM si_swap s JOIN si_side v ON v.relid = 'si_swap'::regclass AND v.key = s.id::text ORDER BY s.id;
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'si_swap'::regclass;

--------------------------------------------------------------------------
-- 2. a key re-used after a DELETE made with stamping off
--------------------------------------------------------------------------

CREATE TABLE si_stale (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT storage FROM deploy_progress.track('si_stale');
INSERT INTO si_stale VALUES (4, 'building'), (5, 'failed');
SELECT si_mark('si_stale');
SET deploy_progress.stamping = off;
DELETE FROM si_stale WHERE id = 5;
RESET deploy_progress.stamping;
-- the stale side row of 5 is still there
SELECT key, started, finished FROM si_side WHERE relid = 'si_stale'::regclass;
-- re-keying 4 onto 5 replaces it with the timings of row 4
UPDATE si_stale SET id = 5 WHERE id = 4;
SELECT key, started, finished FROM si_side WHERE relid = 'si_stale'::regclass;
-- and a new row on a stale key starts afresh (as before)
SET deploy_progress.stamping = off;
DELETE FROM si_stale WHERE id = 5;
RESET deploy_progress.stamping;
INSERT INTO si_stale VALUES (5, 'queued');
SELECT key, phase_upd, started, finished FROM si_side WHERE relid = 'si_stale'::regclass;

--------------------------------------------------------------------------
-- 3. partitions: moves, TRUNCATE, DROP TABLE, DETACH PARTITION
--------------------------------------------------------------------------

CREATE TABLE si_parts (id int, region text, phase deploy_progress.phase NOT NULL,
                       completed_items int, total_items int, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE si_parts_eu PARTITION OF si_parts FOR VALUES IN ('eu');
CREATE TABLE si_parts_us PARTITION OF si_parts FOR VALUES IN ('us');
CREATE TABLE si_parts_ap PARTITION OF si_parts FOR VALUES IN ('ap');
CREATE TABLE si_parts_sa PARTITION OF si_parts FOR VALUES IN ('sa', 'sb') PARTITION BY LIST (region);
CREATE TABLE si_parts_sa_a PARTITION OF si_parts_sa FOR VALUES IN ('sa');
CREATE TABLE si_parts_sa_b PARTITION OF si_parts_sa FOR VALUES IN ('sb');
SELECT storage FROM deploy_progress.track('si_parts');
INSERT INTO si_parts (id, region, phase) VALUES (1, 'eu', 'building'), (2, 'eu', 'queued'), (3, 'us', 'building'),
    (4, 'us', 'queued'), (5, 'ap', 'building'), (6, 'ap', 'queued'), (7, 'sa', 'building'), (8, 'sb', 'queued');
UPDATE si_parts SET completed_items = 0, total_items = 10 WHERE id = 1;
SELECT si_mark('si_parts');
-- every side row knows its partition
SELECT key, partition, started FROM si_side WHERE relid = 'si_parts'::regclass;

-- a row moved to another partition keeps its timings under its new key ...
UPDATE si_parts SET region = 'us', completed_items = 5 WHERE id = 1;
SELECT key, partition, phase_upd, started, heartbeat FROM si_side WHERE key LIKE '(1,%';
-- ... and a move that changes the phase stamps the phase change
UPDATE si_parts SET region = 'eu', phase = 'succeeded' WHERE id = 1;
SELECT key, partition, phase_upd, started, finished FROM si_side WHERE key LIKE '(1,%';
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'si_parts'::regclass;
-- a statement moving several rows both ways keeps each row's own timings
SELECT si_mark('si_parts');
UPDATE si_parts SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END WHERE id IN (2, 3);
SELECT key, partition, started FROM si_side WHERE key LIKE '(2,%' OR key LIKE '(3,%';

-- TRUNCATE of one partition removes its side rows, and only those
TRUNCATE si_parts_us;
SELECT key, partition FROM si_side WHERE relid = 'si_parts'::regclass;
-- also for the partitions of a truncated sub-partitioned partition
TRUNCATE si_parts_sa;
SELECT key, partition FROM si_side WHERE relid = 'si_parts'::regclass;
-- also when a partition is truncated by CASCADE
CREATE TABLE si_ref (id int PRIMARY KEY);
INSERT INTO si_ref VALUES (5), (6);
ALTER TABLE si_parts_ap ADD FOREIGN KEY (id) REFERENCES si_ref;
TRUNCATE si_ref CASCADE;
SELECT key, partition FROM si_side WHERE relid = 'si_parts'::regclass;
-- DROP TABLE of a partition removes its side rows
INSERT INTO si_parts (id, region, phase) VALUES (3, 'us', 'building'), (7, 'sa', 'building'), (8, 'sb', 'queued');
DROP TABLE si_parts_us;
SELECT key, partition FROM si_side WHERE relid = 'si_parts'::regclass;
-- DETACH PARTITION too: the detached table is no longer tracked under the
-- parent, and its rows have no side timings
ALTER TABLE si_parts DETACH PARTITION si_parts_sa;
SELECT key, partition FROM si_side WHERE relid = 'si_parts'::regclass;
SELECT count(*) AS rows_kept FROM si_parts_sa;
-- (CONCURRENTLY exists since PostgreSQL 14; 13 detaches plainly)
SELECT current_setting('server_version_num')::int >= 140000 AS detach_concurrently \gset
\if :detach_concurrently
ALTER TABLE si_parts DETACH PARTITION si_parts_eu CONCURRENTLY;
\else
ALTER TABLE si_parts DETACH PARTITION si_parts_eu;
\endif
SELECT key, partition FROM si_side WHERE relid = 'si_parts'::regclass;
-- what is left is written as before
INSERT INTO si_ref VALUES (9);
INSERT INTO si_parts (id, region, phase) VALUES (9, 'ap', 'building');
SELECT key, partition, phase_upd FROM si_side WHERE relid = 'si_parts'::regclass;
-- TRUNCATE of the tracked table removes every row
TRUNCATE si_parts;
SELECT count(*) AS side_rows FROM deploy_progress.timings WHERE relid = 'si_parts'::regclass;
DROP TABLE si_parts, si_parts_sa, si_parts_eu, si_ref;

--------------------------------------------------------------------------
-- 4. row storage: a row copied after a move is a new row
--------------------------------------------------------------------------

CREATE TABLE si_rows (id int, month date, phase deploy_progress.phase NOT NULL,
                      phase_updated_at timestamptz, progress_updated_at timestamptz,
                      heartbeat_at timestamptz, started_at timestamptz, finished_at timestamptz,
                      PRIMARY KEY (id, month)) PARTITION BY RANGE (month);
CREATE TABLE si_rows_01 PARTITION OF si_rows FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE si_rows_02 PARTITION OF si_rows FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
SELECT storage FROM deploy_progress.track('si_rows');
INSERT INTO si_rows (id, month, phase) VALUES (1, '2026-01-10', 'building');
UPDATE si_rows SET phase = 'transferring' WHERE id = 1;
-- the next statement inserts a copy of the row, stamps and all, in a
-- terminal phase: it is a new row, stamped as one
INSERT INTO si_rows (id, month, phase, phase_updated_at, progress_updated_at, heartbeat_at, started_at, finished_at)
SELECT 2, '2026-02-10', 'succeeded', phase_updated_at, progress_updated_at, heartbeat_at, started_at, finished_at
  FROM si_rows WHERE id = 1;
SELECT id, phase, finished_at IS NOT NULL AS finished, finished_at = phase_updated_at AS finished_on_entry
  FROM si_rows ORDER BY id;
-- the same inside one statement, through a CTE
WITH u AS (UPDATE si_rows SET phase = 'building' WHERE id = 1 RETURNING *)
INSERT INTO si_rows (id, month, phase, phase_updated_at, progress_updated_at, heartbeat_at, started_at, finished_at)
SELECT 3, '2026-02-11', 'failed', phase_updated_at, progress_updated_at, heartbeat_at, started_at, finished_at FROM u;
SELECT id, phase, finished_at IS NOT NULL AS finished FROM si_rows ORDER BY id;
-- while a row that really moves keeps its stamps
SET deploy_progress.stamping = off;
UPDATE si_rows SET started_at = '2026-01-10 09:00+00' WHERE id = 1;
RESET deploy_progress.stamping;
UPDATE si_rows SET month = '2026-02-12' WHERE id = 1;
SELECT id, tableoid::regclass AS partition, started_at FROM si_rows WHERE id = 1;
DROP TABLE si_rows;

--------------------------------------------------------------------------
-- 5. side storage writes a statement's history at the statement's end
--------------------------------------------------------------------------

CREATE TABLE si_hist (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT storage, history FROM deploy_progress.track('si_hist', notify_channel => NULL);
INSERT INTO si_hist SELECT g, 'queued' FROM generate_series(1, 5) g;
SELECT deploy_progress._history_flushes() AS flushes_before \gset
UPDATE si_hist SET phase = 'building';
SELECT deploy_progress._history_flushes() - :flushes_before AS flushes,
       (SELECT count(*) FROM deploy_progress.history WHERE relid = 'si_hist'::regclass) AS history_rows;
-- the time spent in the previous phase comes from each row's side row
SELECT count(*) FILTER (WHERE time_in_previous IS NOT NULL) AS with_time_in_previous
  FROM deploy_progress.history WHERE relid = 'si_hist'::regclass AND from_phase = 'queued';
DROP TABLE si_hist;

DROP TABLE si_swap, si_stale;
SELECT count(*) AS side_rows_left FROM deploy_progress.timings WHERE relid::text LIKE 'si\_%';
DROP VIEW si_side;
DROP FUNCTION si_t(timestamptz), si_mark(regclass);
