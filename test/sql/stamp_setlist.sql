-- When stamp() is a table's only BEFORE UPDATE trigger it trusts the
-- UPDATE's SET list (tg_updatedcols) to skip columns the statement cannot
-- have changed.  These cases check that shortcut and the cases where it
-- must not be taken.
CREATE TABLE sl (
    id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
    completed_items integer, total_items integer,
    phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
    started_at timestamptz, finished_at timestamptz,
    items_per_second double precision, speed_updated_at timestamptz);
SELECT relid FROM deploy_progress.track('sl');
INSERT INTO sl (id, phase, completed_items, total_items) VALUES (1, 'transferring', 0, 100);
CREATE TEMP TABLE sl_before AS SELECT * FROM sl;

-- a heartbeat: only heartbeat_at and progress_updated_at move
UPDATE sl SET completed_items = 10 WHERE id = 1;
SELECT s.heartbeat_at > b.heartbeat_at AS heartbeat_moved,
       s.progress_updated_at = s.heartbeat_at AS progress_stamped,
       s.phase_updated_at = b.phase_updated_at AS phase_kept,
       s.started_at = b.started_at AS started_kept,
       s.finished_at IS NULL AS not_finished,
       s.speed_updated_at = s.heartbeat_at AND s.items_per_second > 0 AS speed_stepped
  FROM sl s, sl_before b WHERE s.id = 1;

-- an UPDATE that writes owned columns gets them replaced (old values kept)
UPDATE sl_before SET phase_updated_at = s.phase_updated_at, started_at = s.started_at,
                     items_per_second = s.items_per_second FROM sl s;
UPDATE sl SET started_at = NULL, phase_updated_at = '2000-01-01', items_per_second = -1,
              finished_at = '2000-01-01' WHERE id = 1;
SELECT s.started_at = b.started_at AS started_kept,
       s.phase_updated_at = b.phase_updated_at AS phase_updated_kept,
       s.items_per_second = b.items_per_second AS speed_kept,
       s.finished_at IS NULL AS finished_kept_null
  FROM sl s, sl_before b WHERE s.id = 1;

-- a phase change in the SET list is seen
UPDATE sl SET phase = 'succeeded' WHERE id = 1;
SELECT phase, finished_at = phase_updated_at AS finished_stamped FROM sl WHERE id = 1;

-- Another BEFORE UPDATE trigger, firing first, can change columns the SET
-- list does not name: then the shortcut is off and every change counts.
CREATE TABLE sl2 (LIKE sl INCLUDING ALL);
CREATE FUNCTION sl2_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.completed_items >= 50 THEN
        NEW.phase := 'failed';              -- not in the statement's SET list
    END IF;
    NEW.started_at := NULL;                 -- an owned column the statement did not name
    RETURN NEW;
END $$;
CREATE TRIGGER a_rules BEFORE UPDATE ON sl2 FOR EACH ROW EXECUTE FUNCTION sl2_rules();
SELECT relid FROM deploy_progress.track('sl2');
INSERT INTO sl2 (id, phase, completed_items, total_items) VALUES (1, 'transferring', 0, 100);
UPDATE sl2 SET completed_items = 10 WHERE id = 1;
SELECT phase, started_at IS NOT NULL AS started_kept FROM sl2;
UPDATE sl2 SET completed_items = 60 WHERE id = 1;
SELECT phase, finished_at IS NOT NULL AND finished_at = phase_updated_at AS finished_stamped,
       started_at IS NOT NULL AS started_kept
  FROM sl2;
-- the other trigger's change of phase is checked like any other
CREATE OR REPLACE FUNCTION sl2_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.phase := 'building';
    RETURN NEW;
END $$;
UPDATE sl2 SET completed_items = 61 WHERE id = 1;
SELECT phase FROM sl2;

-- once that trigger is dropped the shortcut applies again: same results
DROP TRIGGER a_rules ON sl2;
INSERT INTO sl2 (id, phase, completed_items, total_items) VALUES (2, 'fetching', 0, 10);
UPDATE sl2 SET completed_items = 1 WHERE id = 2;
SELECT phase, started_at = phase_updated_at AS started_at_entry,
       progress_updated_at = heartbeat_at AS progress_stamped
  FROM sl2 WHERE id = 2;

-- a partition receives the SET list mapped to its own columns
CREATE TABLE slp (id integer, phase deploy_progress.phase NOT NULL, completed_items integer,
                  total_items integer, progress_updated_at timestamptz, heartbeat_at timestamptz,
                  phase_updated_at timestamptz, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE slp_b (phase_updated_at timestamptz, heartbeat_at timestamptz, progress_updated_at timestamptz,
                    completed_items integer, total_items integer, phase deploy_progress.phase NOT NULL,
                    id integer NOT NULL);
ALTER TABLE slp ATTACH PARTITION slp_b FOR VALUES FROM (0) TO (100);
SELECT relid FROM deploy_progress.track('slp');
INSERT INTO slp (id, phase, completed_items, total_items) VALUES (1, 'building', 0, 10);
CREATE TEMP TABLE slp_before AS SELECT * FROM slp;
UPDATE slp SET completed_items = 3 WHERE id = 1;
SELECT s.progress_updated_at > b.progress_updated_at AS progress_moved,
       s.phase_updated_at = b.phase_updated_at AS phase_kept
  FROM slp s, slp_before b;
UPDATE slp SET completed_items = 11 WHERE id = 1;

DROP TABLE sl, sl2, slp;
DROP FUNCTION sl2_rules();
