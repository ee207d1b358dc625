-- Partitioned tables: track() on a table partitioned by month covers the
-- partitions it has and those created or attached later (their triggers
-- are cloned, the in-flight partial index is created on each); stamping,
-- a row moving between partitions, side storage, stuck(), fail_stuck(),
-- progress() and in_flight work across partitions, and each partition's
-- query reads that partition's partial index.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

-- What tracking installed on each partition of a table: its stamping
-- trigger (cloned from the parent's) and its part of the in-flight index.
CREATE FUNCTION pt_show(parent regclass)
RETURNS TABLE (partition regclass, stamp_trigger boolean, side_trigger boolean, in_flight_index boolean)
LANGUAGE sql AS $$
    SELECT p.relid,
           EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = p.relid AND g.tgname = 'zz_deploy_progress_stamp'
                      AND g.tgparentid <> 0),
           EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = p.relid AND g.tgname = 'zz_deploy_progress_side'
                      AND g.tgparentid <> 0),
           EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid
                    WHERE x.indrelid = p.relid
                      AND i.inhparent = (SELECT c.oid FROM pg_class c
                                          WHERE c.relname = parent::text || '_dp_in_flight_idx'))
      FROM pg_partition_tree(parent) p
     WHERE p.isleaf
     ORDER BY p.relid::text
$$;

--------------------------------------------------------------------------
-- 1. one partition per month, tracked in the row
--------------------------------------------------------------------------

CREATE TABLE pt_deploys (
    id                  integer NOT NULL,
    created_at          timestamptz NOT NULL,
    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
    completed_items     integer,
    total_items         integer,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    failure_reason      text,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE pt_deploys_2026_01 PARTITION OF pt_deploys FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE pt_deploys_2026_02 PARTITION OF pt_deploys FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
INSERT INTO pt_deploys (id, created_at, phase) VALUES (1, '2026-01-10', 'building');

SELECT relid, storage, key_columns FROM deploy_progress.track('pt_deploys');
SELECT * FROM pt_show('pt_deploys');
-- (to build by hand: not concurrently, which a partitioned table cannot do)
SELECT deploy_progress.in_flight_index_statement('pt_deploys');

-- a partition created after track(), and a table of its own (columns in
-- another order) attached later, are tracked the same way
CREATE TABLE pt_deploys_2026_03 PARTITION OF pt_deploys FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
CREATE TABLE pt_deploys_2026_04 (
    failure_reason text, finished_at timestamptz, started_at timestamptz, heartbeat_at timestamptz,
    progress_updated_at timestamptz, phase_updated_at timestamptz, total_items integer,
    completed_items integer, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
    created_at timestamptz NOT NULL, id integer NOT NULL);
ALTER TABLE pt_deploys ATTACH PARTITION pt_deploys_2026_04 FOR VALUES FROM ('2026-04-01') TO ('2026-05-01');
SELECT * FROM pt_show('pt_deploys');

-- every partition stamps and checks
INSERT INTO pt_deploys (id, created_at, phase, completed_items, total_items) VALUES
    (2, '2026-02-10', 'building', 0, 10), (3, '2026-03-10', 'building', 0, 10), (4, '2026-04-10', 'building', 0, 10);
UPDATE pt_deploys SET phase = 'succeeded' WHERE id IN (2, 4);
SELECT tableoid::regclass AS partition, id, phase, heartbeat_at IS NOT NULL AS beat,
       started_at IS NOT NULL AS started, finished_at IS NOT NULL AS finished
  FROM pt_deploys WHERE id > 1 ORDER BY id;
UPDATE pt_deploys SET phase = 'queued' WHERE id = 4;
UPDATE pt_deploys SET completed_items = 11 WHERE id = 3;

-- a row moved to another partition by an UPDATE (a DELETE and an INSERT
-- underneath) keeps its stamps: its phase clock and start time go on
SET deploy_progress.stamping = off;
UPDATE pt_deploys SET phase_updated_at = '2026-03-10 10:00+00', progress_updated_at = '2026-03-10 10:00+00',
                      heartbeat_at = '2026-03-10 10:00+00', started_at = '2026-03-10 09:00+00'
 WHERE id = 3;
RESET deploy_progress.stamping;
UPDATE pt_deploys SET created_at = '2026-04-20', completed_items = 5 WHERE id = 3;
SELECT tableoid::regclass AS partition, phase, phase_updated_at, started_at,
       progress_updated_at > phase_updated_at AS progressed, progress_updated_at = heartbeat_at AS beat_with_it
  FROM pt_deploys WHERE id = 3;
-- ... and when the move changes its phase, that is a phase change
UPDATE pt_deploys SET created_at = '2026-01-20', phase = 'succeeded' WHERE id = 3;
SELECT tableoid::regclass AS partition, phase, started_at, finished_at = phase_updated_at AS finished_on_entry
  FROM pt_deploys WHERE id = 3;
-- while a new row inserted in the same statement as a move is stamped anew
WITH moved AS (UPDATE pt_deploys SET created_at = '2026-02-20' WHERE id = 3 RETURNING *)
INSERT INTO pt_deploys (id, created_at, phase, started_at)
SELECT 30, '2026-03-20', 'building', '2020-01-01' FROM moved;
SELECT id, tableoid::regclass AS partition, started_at = '2020-01-01' AS kept_written_start
  FROM pt_deploys WHERE id IN (3, 30) ORDER BY id;
DELETE FROM pt_deploys WHERE id = 30;

--------------------------------------------------------------------------
-- 2. stuck rows across partitions, and the partial index of each
--------------------------------------------------------------------------

SET deploy_progress.stamping = off;
INSERT INTO pt_deploys (id, created_at, phase, completed_items, total_items,
                        phase_updated_at, progress_updated_at, heartbeat_at, started_at)
SELECT g, '2026-01-01'::timestamptz + (g % 120) * interval '1 day',
       CASE WHEN g % 5000 = 0 THEN 'transferring' ELSE 'succeeded' END::deploy_progress.phase,
       1, 10, '2026-05-01 12:00+00', '2026-05-01 12:00+00', '2026-05-01 12:00+00', '2026-05-01 11:00+00'
  FROM generate_series(100, 40099) g;
RESET deploy_progress.stamping;
ANALYZE pt_deploys;
SELECT tableoid::regclass AS partition, count(*) AS in_flight
  FROM pt_deploys WHERE phase NOT IN ('succeeded', 'failed', 'cancelled') GROUP BY 1 ORDER BY 1;
SELECT relid, key, phase, reason FROM deploy_progress.stuck('pt_deploys', '2026-05-01 13:00+00') ORDER BY key;
SELECT key, phase, stuck_reason FROM deploy_progress.in_flight('pt_deploys', '2026-05-01 13:00+00') ORDER BY key;
-- the figures of a row, asked through the parent or its partition
SELECT deploy_progress.describe('pt_deploys', '(5000,"2026-03-22 00:00:00+00")', '2026-05-01 12:30+00') AS parent,
       deploy_progress.describe('pt_deploys_2026_03', '(5000,"2026-03-22 00:00:00+00")', '2026-05-01 12:30+00') AS partition;

-- each partition is read through its own part of the partial index
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) '
        || replace(replace(replace(q, '$1', '''2026-05-01 13:00+00''::timestamptz'),
                           '$2', '''{1}''::float8[]'), '$3', '''{active}''::text[]');
END $$;
SELECT regexp_replace(p, '^\s*(->\s*)?', '') AS in_flight_scans
  FROM pg_temp.plan_of((SELECT deploy_progress._in_flight_query(t) FROM deploy_progress.tracked t
                         WHERE relid = 'pt_deploys'::regclass)) AS p
 WHERE p ~ 'on pt_deploys';
SELECT regexp_replace(p, '^\s*(->\s*)?', '') AS stuck_scans
  FROM pg_temp.plan_of((SELECT deploy_progress._stuck_query(t) FROM deploy_progress.tracked t
                         WHERE relid = 'pt_deploys'::regclass)) AS p
 WHERE p ~ 'on pt_deploys';

-- a sweep fails the stuck rows of every partition
SELECT key, from_phase, to_phase, reason
  FROM deploy_progress.fail_stuck('pt_deploys', as_of => '2026-05-01 13:00+00') ORDER BY key;
SELECT tableoid::regclass AS partition, phase, failure_reason, count(*)
  FROM pt_deploys WHERE failure_reason IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1;

--------------------------------------------------------------------------
-- 3. detaching and untracking
--------------------------------------------------------------------------

-- a detached partition loses the cloned triggers: its writes are its own
ALTER TABLE pt_deploys DETACH PARTITION pt_deploys_2026_04;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'pt_deploys_2026_04'::regclass AND NOT tgisinternal;
UPDATE pt_deploys_2026_04 SET phase = 'queued', heartbeat_at = NULL WHERE id = 4;
SELECT phase, heartbeat_at FROM pt_deploys_2026_04 WHERE id = 4;
DROP TABLE pt_deploys_2026_04;
-- untrack() removes the triggers and the index of every partition
SELECT deploy_progress.untrack('pt_deploys');
SELECT * FROM pt_show('pt_deploys');
SELECT count(*) AS indexes FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indrelid
 WHERE i.inhparent = 'pt_deploys'::regclass AND NOT x.indisprimary;
DROP TABLE pt_deploys;

--------------------------------------------------------------------------
-- 4. side storage across partitions
--------------------------------------------------------------------------

CREATE TABLE pt_side (id integer, month date, phase deploy_progress.phase NOT NULL,
                      completed_items integer, total_items integer, PRIMARY KEY (id, month))
    PARTITION BY RANGE (month);
CREATE TABLE pt_side_2026_01 PARTITION OF pt_side FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
SELECT storage FROM deploy_progress.track('pt_side');
CREATE TABLE pt_side_2026_02 PARTITION OF pt_side FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
SELECT * FROM pt_show('pt_side');
INSERT INTO pt_side VALUES (1, '2026-01-05', 'building', 0, 10), (2, '2026-02-05', 'building', 0, 10);
UPDATE pt_side SET phase = 'failed' WHERE id = 2;
-- the timings of every partition's rows are filed under the tracked table
SELECT relid, key, started_at IS NOT NULL AS started, finished_at IS NOT NULL AS finished
  FROM deploy_progress.side_timings WHERE relid = 'pt_side'::regclass ORDER BY key;
SELECT finished_at IS NOT NULL AS finished FROM deploy_progress.timings('pt_side', '(2,2026-02-05)');
-- stuck() and in_flight read them for the rows of every partition
SET deploy_progress.stamping = off;
INSERT INTO pt_side VALUES (3, '2026-02-06', 'transferring', 1, 10);
RESET deploy_progress.stamping;
SELECT key, phase, stuck_reason IS NOT NULL AS stuck FROM deploy_progress.in_flight('pt_side') ORDER BY key;
SELECT key, reason FROM deploy_progress.stuck('pt_side', now() + interval '1 day') ORDER BY key;
-- TRUNCATE of the tracked table empties its side timings
TRUNCATE pt_side;
SELECT count(*) AS side_rows FROM deploy_progress.side_timings WHERE relid = 'pt_side'::regclass;
DROP TABLE pt_side;
SELECT count(*) AS left_behind FROM deploy_progress.tracked WHERE relid::text LIKE 'pt\_%';

-- The history of rows that move between partitions: PostgreSQL runs such
-- an UPDATE as a DELETE and an INSERT (firing the new partition's AFTER
-- INSERT), but the history records the transition the UPDATE made, from
-- the old phase with the time spent in it, and a move that keeps the
-- phase is no transition; in row and in side storage.
CREATE TABLE pt_moves (id integer, phase deploy_progress.phase NOT NULL, region text NOT NULL,
                       phase_updated_at timestamptz, PRIMARY KEY (id, phase))
    PARTITION BY LIST (phase);
CREATE TABLE pt_moves_live PARTITION OF pt_moves FOR VALUES IN ('queued', 'building');
CREATE TABLE pt_moves_done PARTITION OF pt_moves DEFAULT;
CREATE TABLE pt_moves_side (LIKE pt_moves) PARTITION BY LIST (region);
ALTER TABLE pt_moves_side ADD PRIMARY KEY (id, region);
CREATE TABLE pt_moves_side_eu PARTITION OF pt_moves_side FOR VALUES IN ('eu');
CREATE TABLE pt_moves_side_us PARTITION OF pt_moves_side FOR VALUES IN ('us');
SELECT relid FROM deploy_progress.track('pt_moves', key => '{id}');
SELECT relid FROM deploy_progress.track('pt_moves_side', key => '{id}', storage => 'side',
                                        columns => '{"phase_updated_at": null}');
SET deploy_progress.stamping = off;
INSERT INTO pt_moves VALUES (1, 'queued', 'eu', '2026-01-01 10:00+00'), (2, 'building', 'eu', '2026-01-01 11:00+00'),
                            (3, 'queued', 'eu', '2026-01-01 10:00+00');
RESET deploy_progress.stamping;
INSERT INTO pt_moves_side VALUES (1, 'queued', 'eu'), (2, 'queued', 'eu');
SELECT max(id) AS before_moves FROM deploy_progress.history \gset
-- into another partition with a new phase (1, 2), in the same partition (3)
UPDATE pt_moves SET phase = (CASE id WHEN 1 THEN 'succeeded' WHEN 2 THEN 'failed' ELSE 'building' END)::deploy_progress.phase;
-- into another partition keeping the phase (1), and with a new one (2)
UPDATE pt_moves_side SET region = 'us', phase = (CASE id WHEN 1 THEN 'queued' ELSE 'building' END)::deploy_progress.phase;
-- a move rolled back to a savepoint leaves nothing behind it: the row
-- inserted afterwards under the same key is an insertion
BEGIN;
SAVEPOINT s;
UPDATE pt_moves SET phase = 'failed' WHERE id = 3;
ROLLBACK TO s;
DELETE FROM pt_moves WHERE id = 3;
INSERT INTO pt_moves VALUES (3, 'cancelled', 'eu');
COMMIT;
-- (side storage stamped its rows' phases: their time in the previous
-- phase is the time between the two stamps)
SELECT h.relid, h.key, h.from_phase, h.to_phase,
       CASE WHEN h.relid = 'pt_moves'::regclass
            THEN h.time_in_previous = h.at - CASE h.key WHEN '2' THEN timestamptz '2026-01-01 11:00+00'
                                                         ELSE timestamptz '2026-01-01 10:00+00' END
            ELSE h.time_in_previous = h.at - (SELECT p.at FROM deploy_progress.history p
                                               WHERE p.relid = h.relid AND p.key = h.key AND p.id < h.id
                                               ORDER BY p.id DESC LIMIT 1)
       END AS time_in_previous_right
  FROM deploy_progress.history h
 WHERE h.id > :before_moves
 ORDER BY h.relid::text, h.key, h.id;
SELECT deploy_progress.untrack('pt_moves_side');
DROP TABLE pt_moves, pt_moves_side;

DROP FUNCTION pt_show(regclass);
