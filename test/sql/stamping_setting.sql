-- The settings: deploy_progress.stamping (off for bulk loads and restores)
-- and deploy_progress.clock (which "now" the triggers stamp).

-- A restore script sets stamping off first thing in its session, before
-- anything has loaded the extension's library there: the value is kept and
-- taken over when the library loads (at the first write of a tracked table).
SET deploy_progress.stamping = off;
SELECT count(*) AS library_loaded FROM pg_settings WHERE name = 'deploy_progress.clock';
CREATE TABLE ss_restore (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL, heartbeat_at timestamptz);
SELECT storage FROM deploy_progress.track('ss_restore');
INSERT INTO ss_restore VALUES (1, 'succeeded', NULL);
SELECT heartbeat_at IS NULL AS not_stamped FROM ss_restore;
DROP TABLE ss_restore;
RESET deploy_progress.stamping;

SELECT name, setting, context, vartype, enumvals
  FROM pg_settings WHERE name LIKE 'deploy\_progress.%' ORDER BY name;

CREATE TABLE ss_rows (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
                      completed_items int, total_items int, note text,
                      phase_updated_at timestamptz, progress_updated_at timestamptz,
                      heartbeat_at timestamptz, started_at timestamptz, finished_at timestamptz);
SELECT storage FROM deploy_progress.track('ss_rows');
CREATE TABLE ss_side (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
                      completed_items int, total_items int, note text);
SELECT storage FROM deploy_progress.track('ss_side');
INSERT INTO ss_rows (id) VALUES (1);
INSERT INTO ss_side (id) VALUES (1);
CREATE TEMP TABLE ss_rows_before AS SELECT * FROM ss_rows;
CREATE TEMP TABLE ss_side_before AS SELECT * FROM deploy_progress.timings WHERE relid = 'ss_side'::regclass;

-- 1. stamping off: nothing is stamped, and a backfill writes its own timings
SET deploy_progress.stamping = off;
INSERT INTO ss_rows (id, phase, phase_updated_at, progress_updated_at, heartbeat_at, started_at, finished_at)
VALUES (2, 'succeeded', '2024-01-01 10:00+00', '2024-01-01 10:05+00', '2024-01-01 10:06+00',
        '2024-01-01 09:00+00', '2024-01-01 10:06+00');
INSERT INTO ss_rows (id, phase) VALUES (3, 'building');
SELECT id, phase, phase_updated_at, heartbeat_at, started_at, finished_at FROM ss_rows WHERE id IN (2, 3) ORDER BY id;
UPDATE ss_rows SET phase = 'building', completed_items = 1, total_items = 2, note = 'x' WHERE id = 1;
UPDATE ss_rows SET heartbeat_at = '2024-01-02 00:00+00' WHERE id = 2;
SELECT id, r.phase, (r.phase_updated_at, r.progress_updated_at, r.started_at, r.finished_at)
               IS NOT DISTINCT FROM (b.phase_updated_at, b.progress_updated_at, b.started_at, b.finished_at) AS timings_unchanged,
       r.heartbeat_at = b.heartbeat_at AS same_heartbeat
  FROM ss_rows r JOIN ss_rows_before b USING (id);
-- (rows 2 and 3 were not there before; row 2 took the heartbeat it was given)
SELECT heartbeat_at FROM ss_rows WHERE id = 2;

-- ... and the side table is left alone
INSERT INTO ss_side (id, phase) VALUES (2, 'building');
UPDATE ss_side SET phase = 'succeeded' WHERE id = 1;
SELECT (SELECT count(*) FROM (SELECT * FROM deploy_progress.timings WHERE relid = 'ss_side'::regclass
                               EXCEPT SELECT * FROM ss_side_before) d) AS side_rows_changed,
       (SELECT count(*) FROM deploy_progress.timings WHERE relid = 'ss_side'::regclass) AS side_rows;

-- 2. the checks still apply with stamping off
UPDATE ss_rows SET phase = 'building' WHERE id = 2;
UPDATE ss_rows SET completed_items = 3 WHERE id = 1;
UPDATE ss_rows SET total_items = -1 WHERE id = 1;
INSERT INTO ss_side (id, phase) VALUES (3, NULL);
UPDATE ss_side SET phase = 'queued' WHERE id = 1;
SELECT id, phase, completed_items, total_items FROM ss_rows ORDER BY id;
SELECT id, phase FROM ss_side ORDER BY id;

-- 3. SET LOCAL switches stamping off for one transaction only
RESET deploy_progress.stamping;
BEGIN;
SET LOCAL deploy_progress.stamping = off;
UPDATE ss_rows SET note = 'local' WHERE id = 3;
COMMIT;
SHOW deploy_progress.stamping;
SELECT heartbeat_at IS NULL AS not_stamped FROM ss_rows WHERE id = 3;
UPDATE ss_rows SET note = 'on again' WHERE id = 3;
SELECT heartbeat_at IS NOT NULL AS stamped, phase_updated_at IS NULL AS phase_time_unknown FROM ss_rows WHERE id = 3;
-- a side row first written while stamping was on is created on its next write
UPDATE ss_side SET note = 'seen' WHERE id = 2;
SELECT key, phase_updated_at = heartbeat_at AS first_seen, started_at IS NULL AS start_unknown
  FROM deploy_progress.timings WHERE relid = 'ss_side'::regclass AND key = '2';

-- 4. the clock: statement start (the default), transaction start, or the
-- wall clock at each row
CREATE FUNCTION ss_pause() RETURNS int LANGUAGE sql VOLATILE AS $$ SELECT 0 FROM pg_sleep(0.002) $$;
INSERT INTO ss_rows (id) VALUES (10), (11);

BEGIN;
SET LOCAL deploy_progress.clock = 'transaction';
UPDATE ss_rows SET note = 'a' WHERE id = 10;
UPDATE ss_rows SET note = 'b' WHERE id = 11
RETURNING heartbeat_at = now() AS transaction_start, heartbeat_at < statement_timestamp() AS before_statement;
SELECT count(DISTINCT heartbeat_at) AS distinct_stamps FROM ss_rows WHERE id IN (10, 11);
COMMIT;
SHOW deploy_progress.clock;

SET deploy_progress.clock = 'clock';
UPDATE ss_rows SET completed_items = ss_pause() WHERE id IN (10, 11)
RETURNING id, heartbeat_at > statement_timestamp() AS after_statement_start,
          heartbeat_at = progress_updated_at AS one_time_per_row;
SELECT count(DISTINCT heartbeat_at) AS distinct_stamps FROM ss_rows WHERE id IN (10, 11);

SET deploy_progress.clock = 'statement';
UPDATE ss_rows SET completed_items = 1 + ss_pause() WHERE id IN (10, 11)
RETURNING id, heartbeat_at = statement_timestamp() AS statement_start;
SELECT count(DISTINCT heartbeat_at) AS distinct_stamps FROM ss_rows WHERE id IN (10, 11);

-- the side table follows the same clock
SET deploy_progress.clock = 'transaction';
BEGIN;
SELECT pg_sleep(0.002);
UPDATE ss_side SET note = 'tx' WHERE id = 2;
SELECT heartbeat_at = now() AS transaction_start FROM deploy_progress.timings
 WHERE relid = 'ss_side'::regclass AND key = '2';
COMMIT;
RESET deploy_progress.clock;

-- 5. stamping off also leaves deleted rows' side timings behind; a new row
-- with the same key then starts afresh, not from the old row's timings
INSERT INTO ss_side (id, phase) VALUES (5, 'building');
UPDATE ss_side SET phase = 'succeeded' WHERE id = 5;
SET deploy_progress.stamping = off;
DELETE FROM ss_side WHERE id = 5;
RESET deploy_progress.stamping;
SELECT key, started_at IS NOT NULL AS started, finished_at IS NOT NULL AS finished
  FROM deploy_progress.timings WHERE relid = 'ss_side'::regclass AND key = '5';
INSERT INTO ss_side (id) VALUES (5);
SELECT key, finished_at IS NULL AS not_finished, started_at IS NULL AS not_started,
       phase_updated_at = heartbeat_at AS entered_now
  FROM deploy_progress.timings WHERE relid = 'ss_side'::regclass AND key = '5';

-- Only the table's owner, or a role it grants TRIGGER on the table, may
-- write it with stamping off: such a write leaves no stamps and no history,
-- which the README calls audit data.  Another writer is refused (42501) and
-- nothing changes.
\set SHOW_CONTEXT never
CREATE ROLE ss_writer;
CREATE ROLE ss_loader;
GRANT SELECT, INSERT, UPDATE, DELETE ON ss_rows, ss_side TO ss_writer, ss_loader;
GRANT TRIGGER ON ss_rows, ss_side TO ss_loader;
SELECT count(*) AS history_before FROM deploy_progress.transitions WHERE relid IN ('ss_rows'::regclass, 'ss_side'::regclass) \gset
SET ROLE ss_writer;
SET deploy_progress.stamping = off;
UPDATE ss_rows SET phase = 'failed' WHERE id = 1;
INSERT INTO ss_side (id) VALUES (77);
DELETE FROM ss_side WHERE id = 5;
RESET deploy_progress.stamping;
-- with stamping on, the same writer writes as usual
UPDATE ss_rows SET phase = phase WHERE id = 1;
RESET ROLE;
SELECT count(*) AS side_77 FROM ss_side WHERE id = 77;
SELECT count(*) AS side_5 FROM ss_side WHERE id = 5;
-- a role granted TRIGGER may
SET ROLE ss_loader;
SET deploy_progress.stamping = off;
INSERT INTO ss_side (id) VALUES (78);
DELETE FROM ss_side WHERE id = 78;
RESET deploy_progress.stamping;
RESET ROLE;
SELECT count(*) - :history_before AS new_history FROM deploy_progress.transitions WHERE relid IN ('ss_rows'::regclass, 'ss_side'::regclass);
REVOKE ALL ON ss_rows, ss_side FROM ss_writer, ss_loader;
DROP ROLE ss_writer, ss_loader;

-- bad values are refused
SET deploy_progress.clock = 'sundial';
SET deploy_progress.stamping = 'maybe';

DROP TABLE ss_rows, ss_side;
DROP FUNCTION ss_pause();
