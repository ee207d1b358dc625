-- The stamping rules of the BEFORE ROW trigger, in row storage.
--
-- Timestamps are never printed.  st_diff shows, for each timing column of
-- each row, how it moved since the last snapshot (st_snap()), in the words
-- of stamp_rel(): -, set, same, later, cleared, EARLIER (a bug), and "=hb"
-- for a stamp made by the same write as the row's heartbeat.
\i test/include/stamp_rel.sql

CREATE TABLE st (
    id                  int PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
    completed_items     bigint,
    total_items         smallint,
    note                text,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz
);
SELECT storage, allow_restart FROM deploy_progress.track('st');

CREATE TABLE st_prev AS SELECT * FROM st;
CREATE FUNCTION st_snap() RETURNS void LANGUAGE sql AS $$
    DELETE FROM st_prev; INSERT INTO st_prev SELECT * FROM st;
$$;
CREATE VIEW st_diff AS
SELECT n.id, n.phase, n.completed_items AS done, n.total_items AS total,
       stamp_rel(p.phase_updated_at, n.phase_updated_at, n.heartbeat_at) AS phase_upd,
       stamp_rel(p.progress_updated_at, n.progress_updated_at, n.heartbeat_at) AS progress_upd,
       stamp_rel(p.heartbeat_at, n.heartbeat_at, NULL) AS heartbeat,
       stamp_rel(p.started_at, n.started_at, n.heartbeat_at) AS started,
       stamp_rel(p.finished_at, n.finished_at, n.heartbeat_at) AS finished
  FROM st n LEFT JOIN st_prev p USING (id)
 ORDER BY n.id;

-- The invariants that hold whatever happened: no row starts after its
-- current phase began, only terminal rows are finished, and a finished row
-- finished when it entered its terminal phase.
CREATE VIEW st_invariants AS
SELECT count(*) FILTER (WHERE s.started_at > s.phase_updated_at) AS started_after_phase,
       count(*) FILTER (WHERE s.finished_at IS NOT NULL AND l.kind NOT IN ('succeeded', 'failed', 'cancelled')) AS finished_not_terminal,
       count(*) FILTER (WHERE s.finished_at IS NULL AND l.kind IN ('succeeded', 'failed', 'cancelled')) AS terminal_not_finished,
       count(*) FILTER (WHERE s.finished_at <> s.phase_updated_at) AS finished_not_on_entry,
       count(*) FILTER (WHERE s.phase_updated_at > s.progress_updated_at OR s.progress_updated_at > s.heartbeat_at) AS out_of_order
  FROM st s JOIN deploy_progress.lifecycle_phases l ON l.lifecycle = 'default' AND l.phase = s.phase::text;

-- INSERT: the phase is entered, so phase, progress and heartbeat are stamped
-- with one time, the statement's; started only in an active phase, finished
-- only in a terminal one; one statement gives every row the same time
INSERT INTO st (id, phase) VALUES (1, 'queued'), (2, 'building'), (3, 'cancelled'), (4, 'waiting')
RETURNING id, heartbeat_at = statement_timestamp() AS statement_time;
SELECT * FROM st_diff;
SELECT count(DISTINCT heartbeat_at) AS distinct_stamps FROM st;
SELECT st_snap();

-- a later statement stamps later; rows it does not touch keep their stamps
UPDATE st SET phase = 'preparing' WHERE id = 1;
SELECT * FROM st_diff;
SELECT st_snap();

-- a second active phase does not move started_at
UPDATE st SET phase = 'fetching' WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();

-- counters moving stamp progress (and heartbeat) only
UPDATE st SET total_items = 100 WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();
UPDATE st SET completed_items = 10 WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();
-- from NULL to a value and back are moves too
UPDATE st SET completed_items = NULL WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();
UPDATE st SET completed_items = 20 WHERE id = 1;
SELECT st_snap();

-- any other update is a heartbeat: only heartbeat_at moves
UPDATE st SET note = 'still alive' WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();
-- writing the same phase and counters again is not a move either
UPDATE st SET phase = 'fetching', completed_items = 20, total_items = 100 WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();

-- phase and counters in one statement: one time for all of them
UPDATE st SET phase = 'building', completed_items = 0, total_items = 5 WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();

-- waiting is neither a start nor a finish; leaving it keeps started_at
UPDATE st SET phase = 'waiting' WHERE id = 1;
UPDATE st SET phase = 'building' WHERE id = 4;
SELECT * FROM st_diff WHERE id IN (1, 4);
SELECT st_snap();
UPDATE st SET phase = 'building' WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();

-- entering a terminal phase stamps finished_at with the phase time
UPDATE st SET phase = 'succeeded', completed_items = 5 WHERE id IN (1, 2);
SELECT * FROM st_diff;
SELECT st_snap();

-- terminal rows cannot move on: the table is tracked without restarts
UPDATE st SET phase = 'building' WHERE id = 1;
UPDATE st SET phase = 'failed' WHERE id = 3;
-- (a terminal row still takes heartbeats and counters)
UPDATE st SET note = 'done', completed_items = 4 WHERE id = 1;
SELECT * FROM st_diff WHERE id IN (1, 3);
SELECT st_snap();

-- with restarts allowed, leaving a terminal phase clears finished_at and
-- keeps the first start; finishing again stamps it anew
SELECT allow_restart FROM deploy_progress.track('st', allow_restart => true);
UPDATE st SET phase = 'building' WHERE id = 1;
UPDATE st SET phase = 'queued' WHERE id = 3;
SELECT * FROM st_diff WHERE id IN (1, 3);
SELECT st_snap();
UPDATE st SET phase = 'failed' WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();
-- one terminal phase to another is a restart too, and stamps a new finish
UPDATE st SET phase = 'cancelled' WHERE id = 1;
SELECT * FROM st_diff WHERE id = 1;
SELECT st_snap();

-- while stamping is on, the timing columns belong to the extension: what a
-- statement writes into them is replaced by what the rules give
INSERT INTO st (id, phase, phase_updated_at, progress_updated_at, heartbeat_at, started_at, finished_at)
VALUES (5, 'queued', '2000-01-01', '2000-01-01', '2000-01-01', '2000-01-01', '2000-01-01')
RETURNING phase_updated_at = statement_timestamp() AS phase_now,
          heartbeat_at = statement_timestamp() AS heartbeat_now,
          started_at IS NULL AS not_started, finished_at IS NULL AS not_finished;
SELECT st_snap();
UPDATE st SET phase_updated_at = '2000-01-01', progress_updated_at = '2100-01-01', heartbeat_at = NULL,
              started_at = '2000-01-01', finished_at = '2000-01-01'
 WHERE id = 5;
SELECT * FROM st_diff WHERE id = 5;
SELECT st_snap();
UPDATE st SET phase = 'building', started_at = NULL WHERE id = 5;
SELECT * FROM st_diff WHERE id = 5;
SELECT st_snap();
UPDATE st SET started_at = NULL, finished_at = now() WHERE id = 5;
SELECT * FROM st_diff WHERE id = 5;
SELECT st_snap();

-- statements are stamped with their start time: in one transaction, each
-- statement stamps later than the one before, and every row of one
-- statement gets the same time
BEGIN;
INSERT INTO st (id) VALUES (6), (7);
UPDATE st SET phase = 'preparing' WHERE id = 6;
SELECT (SELECT heartbeat_at FROM st WHERE id = 6) > (SELECT heartbeat_at FROM st WHERE id = 7) AS second_statement_later;
WITH u AS (
    UPDATE st SET note = 'tick' WHERE id IN (6, 7)
    RETURNING id, heartbeat_at = statement_timestamp() AS this_statement,
              heartbeat_at > now() AS after_transaction_start)
SELECT * FROM u ORDER BY id;
SELECT count(DISTINCT heartbeat_at) AS distinct_stamps FROM st WHERE id IN (6, 7);
COMMIT;
SELECT st_snap();

-- the table's own BEFORE triggers run first ("zz_" sorts last), so the
-- stamps describe the row as finally written
CREATE FUNCTION st_fail_on_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.note = 'abort' THEN NEW.phase := 'failed'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER st_fail BEFORE UPDATE ON st FOR EACH ROW EXECUTE FUNCTION st_fail_on_note();
UPDATE st SET note = 'abort' WHERE id = 6;
SELECT * FROM st_diff WHERE id = 6;
SELECT st_snap();
DROP TRIGGER st_fail ON st;

-- ON CONFLICT DO UPDATE goes through the same rules
INSERT INTO st (id, phase) VALUES (7, 'starting'), (8, 'starting')
ON CONFLICT (id) DO UPDATE SET phase = EXCLUDED.phase;
SELECT * FROM st_diff WHERE id IN (7, 8);
SELECT st_snap();

-- whatever the history, the invariants hold
SELECT * FROM st_invariants;

-- a table with no timing column at all still has its phases and counters checked
CREATE TABLE st_bare (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL, completed_items int, total_items int);
SELECT storage FROM deploy_progress.track('st_bare', storage => 'row');
INSERT INTO st_bare VALUES (1, 'building', 1, 2);
UPDATE st_bare SET completed_items = 3;
UPDATE st_bare SET phase = 'succeeded';
UPDATE st_bare SET phase = 'building';
SELECT * FROM st_bare;

DROP TABLE st_bare;
DROP VIEW st_diff, st_invariants;
DROP TABLE st, st_prev;
DROP FUNCTION st_snap(), stamp_rel(timestamptz, timestamptz, timestamptz), st_fail_on_note();
