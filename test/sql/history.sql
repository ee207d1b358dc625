-- Transition history: what the record_transition() trigger writes, when,
-- and what it leaves alone.
SET TimeZone = 'UTC';

CREATE TABLE hist_jobs (
    id                  integer PRIMARY KEY,
    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
    completed_items     integer,
    total_items         integer,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    failure_reason      text
);
SELECT relid, history, notify_channel, columns ->> 'failure_reason' AS reason_column
  FROM deploy_progress.track('hist_jobs', allow_restart => true, notify_channel => NULL);
-- the triggers: AFTER INSERT, and AFTER UPDATE only when the phase changes
SELECT tgname, pg_get_triggerdef(oid) LIKE '%WHEN ((old.phase IS DISTINCT FROM new.phase))%' AS phase_change_only
  FROM pg_trigger WHERE tgrelid = 'hist_jobs'::regclass AND tgname LIKE '%history%' ORDER BY tgname;

-- What a row's history looks like, with its times checked through their
-- relationships: "at" is the row's phase_updated_at as stamped, and
-- time_in_previous is the time since the previous transition.
CREATE FUNCTION pg_temp.hist(tbl regclass)
RETURNS TABLE (key text, from_phase text, to_phase text, to_kind text, completed bigint, total bigint,
               reason text, tip_ok boolean)
LANGUAGE sql AS $$
    SELECT h.key, h.from_phase, h.to_phase, h.to_kind, h.completed, h.total, h.reason,
           h.time_in_previous IS NOT DISTINCT FROM h.at - lag(h.at) OVER (PARTITION BY h.key ORDER BY h.at, h.id)
      FROM deploy_progress.history h
     WHERE h.relid = tbl
     ORDER BY h.key, h.at, h.id
$$;

-- INSERT: the first phase, from nothing
INSERT INTO hist_jobs (id, total_items) VALUES (1, 10), (2, 10);
SELECT * FROM pg_temp.hist('hist_jobs');
SELECT count(*) AS at_is_phase_updated_at
  FROM deploy_progress.history h JOIN hist_jobs j ON h.key = j.id::text
 WHERE h.relid = 'hist_jobs'::regclass AND h.at = j.phase_updated_at;

-- each transition, with the counters as the row enters the phase
UPDATE hist_jobs SET phase = 'preparing' WHERE id = 1;
UPDATE hist_jobs SET phase = 'building', completed_items = 3 WHERE id = 1;
-- heartbeats and counter updates record nothing
SELECT deploy_progress._history_flushes() AS flushes_before \gset
UPDATE hist_jobs SET completed_items = 4 WHERE id = 1;
UPDATE hist_jobs SET total_items = 12 WHERE id = 1;
UPDATE hist_jobs SET phase = phase WHERE id = 1;
SELECT deploy_progress._history_flushes() - :flushes_before AS flushes_for_heartbeats;
UPDATE hist_jobs SET phase = 'succeeded', completed_items = 12 WHERE id = 1;
SELECT * FROM pg_temp.hist('hist_jobs') WHERE key = '1';
-- time_in_previous is the time spent in the phase left
SELECT count(*) FILTER (WHERE time_in_previous > '0'::interval) AS positive,
       count(*) FILTER (WHERE time_in_previous IS NULL) AS none_for_insert
  FROM deploy_progress.history WHERE relid = 'hist_jobs'::regclass AND key = '1';

-- a failure with its reason from the reason column
UPDATE hist_jobs SET phase = 'failed', failure_reason = 'disk full' WHERE id = 2;
-- a restart (the table allows them) records "restart", not the stale reason
UPDATE hist_jobs SET phase = 'queued' WHERE id = 2;
-- a reason written with a transition is recorded with it
UPDATE hist_jobs SET phase = 'preparing', failure_reason = 'retry 2' WHERE id = 2;
SELECT * FROM pg_temp.hist('hist_jobs') WHERE key = '2';

-- the reason from deploy_progress.transition_reason, as fail_stuck() sets it
CREATE TABLE hist_plain (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                         phase_updated_at timestamptz);
SELECT relid, columns ->> 'failure_reason' AS reason_column FROM deploy_progress.track('hist_plain', notify_channel => NULL);
INSERT INTO hist_plain VALUES (1, 'building'), (2, 'building');
BEGIN;
SELECT set_config('deploy_progress.transition_reason', 'no_progress', true);
UPDATE hist_plain SET phase = 'failed' WHERE id = 1;
COMMIT;
SHOW deploy_progress.transition_reason;
UPDATE hist_plain SET phase = 'failed' WHERE id = 2;
SELECT key, from_phase, to_phase, reason FROM deploy_progress.history
 WHERE relid = 'hist_plain'::regclass AND from_phase IS NOT NULL ORDER BY key;
-- fail_stuck() sets it for its own statements: stuck failures carry their reason
CREATE TABLE hist_stuck (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                         phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz);
SELECT relid FROM deploy_progress.track('hist_stuck', notify_channel => NULL,
                                        progress_deadline => NULL, heartbeat_deadline => NULL,
                                        phase_deadline => '1 hour');
INSERT INTO hist_stuck VALUES (1, 'building'), (2, 'building');
SELECT key, from_phase, to_phase, reason FROM deploy_progress.fail_stuck('hist_stuck', as_of => now() + interval '2 hours');
SELECT key, from_phase, to_phase, reason FROM deploy_progress.history
 WHERE relid = 'hist_stuck'::regclass AND from_phase IS NOT NULL ORDER BY key;

-- rolled back: no history
BEGIN;
UPDATE hist_jobs SET phase = 'building' WHERE id = 2;
SELECT count(*) AS inside_the_transaction FROM deploy_progress.history
 WHERE relid = 'hist_jobs'::regclass AND key = '2' AND to_phase = 'building';
ROLLBACK;
SELECT count(*) AS after_rollback FROM deploy_progress.history
 WHERE relid = 'hist_jobs'::regclass AND key = '2' AND to_phase = 'building';
-- a savepoint rolled back takes its transitions with it, a released one keeps them
BEGIN;
SAVEPOINT a;
UPDATE hist_jobs SET phase = 'building' WHERE id = 2;
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
UPDATE hist_jobs SET phase = 'fetching' WHERE id = 2;
RELEASE SAVEPOINT b;
COMMIT;
SELECT to_phase FROM deploy_progress.history
 WHERE relid = 'hist_jobs'::regclass AND key = '2' AND to_phase IN ('building', 'fetching');

-- a statement that fails after some of its rows were queued leaves nothing:
-- a trigger of the user's, after ours, fails on the third row
CREATE FUNCTION pg_temp.fail_on_3() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 3 THEN
        RAISE EXCEPTION 'row 3 refused';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER zzz_refuse AFTER UPDATE ON hist_jobs FOR EACH ROW EXECUTE FUNCTION pg_temp.fail_on_3();
INSERT INTO hist_jobs (id) VALUES (3), (4);
SELECT count(*) AS before_failed_statement FROM deploy_progress.history WHERE relid = 'hist_jobs'::regclass;
\set VERBOSITY terse
UPDATE hist_jobs SET phase = 'preparing' WHERE id IN (2, 3, 4);
\set VERBOSITY default
SELECT count(*) AS after_failed_statement FROM deploy_progress.history WHERE relid = 'hist_jobs'::regclass;
-- the same inside a PL/pgSQL exception block (a subtransaction) ...
DO $$
BEGIN
    UPDATE hist_jobs SET phase = 'preparing' WHERE id IN (2, 3, 4);
EXCEPTION WHEN raise_exception THEN
    RAISE NOTICE 'caught: %', SQLERRM;
END $$;
SELECT count(*) AS after_caught_failure FROM deploy_progress.history WHERE relid = 'hist_jobs'::regclass;
-- ... and the next statement writes its own rows only
UPDATE hist_jobs SET phase = 'preparing' WHERE id = 4;
SELECT key, from_phase, to_phase FROM deploy_progress.history
 WHERE relid = 'hist_jobs'::regclass AND to_phase = 'preparing' ORDER BY key;
DROP TRIGGER zzz_refuse ON hist_jobs;

-- Transitions queued by a statement whose own trigger then opens a
-- subtransaction that fails: the subtransaction's rows go, the statement's
-- rows stay.
CREATE TABLE hist_side_effect (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('hist_side_effect', notify_channel => NULL);
INSERT INTO hist_side_effect VALUES (1, 'queued');
CREATE FUNCTION pg_temp.side_effect() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        UPDATE hist_side_effect SET phase = 'preparing' WHERE id = 1;
        RAISE EXCEPTION 'undo the side effect';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    UPDATE hist_side_effect SET phase = 'fetching' WHERE id = 1;
    RETURN NULL;
END $$;
CREATE TRIGGER zzz_side_effect AFTER UPDATE ON hist_jobs FOR EACH ROW
    WHEN (NEW.id = 4) EXECUTE FUNCTION pg_temp.side_effect();
UPDATE hist_jobs SET phase = 'fetching' WHERE id IN (3, 4);
DROP TRIGGER zzz_side_effect ON hist_jobs;
SELECT h.relid, h.key, h.from_phase, h.to_phase FROM deploy_progress.history h
 WHERE (h.relid = 'hist_jobs'::regclass AND h.to_phase = 'fetching' AND h.key IN ('3', '4'))
    OR (h.relid = 'hist_side_effect'::regclass AND h.from_phase IS NOT NULL)
 ORDER BY h.relid::text, h.key;

-- INSERT ... ON CONFLICT DO UPDATE: the transition that happened, not the
-- insert that did not
INSERT INTO hist_jobs (id, phase) VALUES (3, 'building')
ON CONFLICT (id) DO UPDATE SET phase = EXCLUDED.phase;
SELECT key, from_phase, to_phase FROM deploy_progress.history
 WHERE relid = 'hist_jobs'::regclass AND key = '3' ORDER BY at, id;

-- A bulk UPDATE of 10,000 rows writes exactly 10,000 history rows, with
-- one write (one multi-row insert) for the whole statement.
CREATE TABLE hist_bulk (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                        completed_items integer, total_items integer, phase_updated_at timestamptz);
SELECT relid FROM deploy_progress.track('hist_bulk', notify_channel => NULL);
INSERT INTO hist_bulk SELECT g, 'building', g % 100, 100 FROM generate_series(1, 10000) g;
SELECT deploy_progress._history_flushes() AS flushes_before \gset
UPDATE hist_bulk SET phase = 'transferring';
SELECT deploy_progress._history_flushes() - :flushes_before AS flushes_for_bulk_update;
SELECT count(*) AS rows, count(DISTINCT key) AS keys, min(from_phase) AS from_phase, max(to_phase) AS to_phase,
       bool_and(h.completed = b.completed_items AND h.total = 100) AS counters_ok,
       bool_and(h.at = b.phase_updated_at) AS at_ok,
       count(DISTINCT h.at) AS distinct_times
  FROM deploy_progress.history h JOIN hist_bulk b ON h.key = b.id::text
 WHERE h.relid = 'hist_bulk'::regclass AND h.to_phase = 'transferring';
-- heartbeats on all of them: nothing
UPDATE hist_bulk SET completed_items = completed_items + 1;
SELECT deploy_progress._history_flushes() - :flushes_before AS flushes_after_bulk_heartbeat;
SELECT count(*) FROM deploy_progress.history WHERE relid = 'hist_bulk'::regclass;

-- COPY FROM writes its history at the end of the COPY, in its transaction
BEGIN;
COPY hist_bulk (id, phase) FROM stdin;
20001	queued
20002	preparing
\.
SELECT key, from_phase, to_phase FROM deploy_progress.history
 WHERE relid = 'hist_bulk'::regclass AND key::integer > 20000 ORDER BY key;
COMMIT;

-- deploy_progress.stamping = off writes no history either
SET deploy_progress.stamping = off;
UPDATE hist_jobs SET phase = 'building' WHERE id = 4;
RESET deploy_progress.stamping;
SELECT count(*) AS while_stamping_off FROM deploy_progress.history
 WHERE relid = 'hist_jobs'::regclass AND key = '4' AND to_phase = 'building';

-- history => 'failures': only transitions into failed and cancelled phases
CREATE TABLE hist_failures (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid, history FROM deploy_progress.track('hist_failures', history => 'failures', notify_channel => NULL);
INSERT INTO hist_failures VALUES (1, 'queued'), (2, 'queued'), (3, 'queued');
UPDATE hist_failures SET phase = 'building';
UPDATE hist_failures SET phase = CASE id WHEN 1 THEN 'failed' WHEN 2 THEN 'cancelled' ELSE 'succeeded' END::deploy_progress.phase;
SELECT key, from_phase, to_phase, to_kind FROM deploy_progress.history
 WHERE relid = 'hist_failures'::regclass ORDER BY key;
-- history => 'off' and no channel: no trigger at all
SELECT relid, history, notify_channel FROM deploy_progress.track('hist_failures', history => 'off', notify_channel => NULL);
SELECT count(*) AS history_triggers FROM pg_trigger
 WHERE tgrelid = 'hist_failures'::regclass AND tgname LIKE '%history%';
-- history => 'off' with a channel: the trigger stays for the events
SELECT relid, history, notify_channel FROM deploy_progress.track('hist_failures', history => 'off');
SELECT count(*) AS history_triggers FROM pg_trigger
 WHERE tgrelid = 'hist_failures'::regclass AND tgname LIKE '%history%';
INSERT INTO hist_failures VALUES (4, 'queued');
SELECT count(*) FROM deploy_progress.history WHERE relid = 'hist_failures'::regclass AND key = '4';

-- side-table storage: time_in_previous from deploy_progress.timings
CREATE TABLE hist_side (id integer PRIMARY KEY, phase text NOT NULL);
SELECT count(*) FROM deploy_progress.define_lifecycle('hist_simple', '[
    {"phase": "todo", "kind": "pending"}, {"phase": "doing", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "broken", "kind": "failed"}]');
SELECT relid, storage FROM deploy_progress.track('hist_side', lifecycle => 'hist_simple', notify_channel => NULL);
INSERT INTO hist_side VALUES (1, 'todo');
UPDATE hist_side SET phase = 'doing';
UPDATE hist_side SET phase = 'done';
SELECT h.key, h.from_phase, h.to_phase, h.to_kind,
       h.time_in_previous IS NOT DISTINCT FROM h.at - lag(h.at) OVER (ORDER BY h.at, h.id) AS tip_ok,
       h.at = s.phase_updated_at OR h.to_phase <> 'done' AS at_ok
  FROM deploy_progress.history h
  JOIN deploy_progress.timings s ON s.relid = h.relid AND s.key = h.key
 WHERE h.relid = 'hist_side'::regclass ORDER BY h.at, h.id;

-- a composite key is recorded as its row literal
CREATE TABLE hist_composite (region text, n integer, phase deploy_progress.phase NOT NULL,
                             PRIMARY KEY (region, n));
SELECT relid, key_columns FROM deploy_progress.track('hist_composite', notify_channel => NULL);
INSERT INTO hist_composite VALUES ('eu west', 1, 'queued');
SELECT key, to_phase FROM deploy_progress.history WHERE relid = 'hist_composite'::regclass;

-- a partitioned table: the history names the tracked (parent) table, also
-- for statements that write a partition directly
CREATE TABLE hist_parted (id integer, phase deploy_progress.phase NOT NULL, PRIMARY KEY (id))
    PARTITION BY RANGE (id);
CREATE TABLE hist_parted_1 PARTITION OF hist_parted FOR VALUES FROM (0) TO (100);
CREATE TABLE hist_parted_2 PARTITION OF hist_parted FOR VALUES FROM (100) TO (200);
SELECT relid FROM deploy_progress.track('hist_parted', notify_channel => NULL);
INSERT INTO hist_parted VALUES (1, 'queued'), (150, 'queued');
UPDATE hist_parted_2 SET phase = 'preparing';
SELECT relid, key, from_phase, to_phase FROM deploy_progress.history
 WHERE relid IN ('hist_parted'::regclass, 'hist_parted_1'::regclass, 'hist_parted_2'::regclass)
 ORDER BY key, at, id;

-- Privileges: writers need no privilege on the history; readers see the
-- rows of the tables they can read, through the transitions view only.
CREATE ROLE hist_writer;
CREATE ROLE hist_reader;
GRANT SELECT, INSERT, UPDATE ON hist_plain TO hist_writer;
SET ROLE hist_writer;
INSERT INTO hist_plain VALUES (3, 'queued');
SELECT count(*) FROM deploy_progress.history;
SELECT count(*) AS visible_to_writer, count(DISTINCT relid) AS tables
  FROM deploy_progress.transitions;
SET ROLE hist_reader;
SELECT count(*) AS visible_to_reader FROM deploy_progress.transitions;
RESET ROLE;
SELECT key, to_phase FROM deploy_progress.history WHERE relid = 'hist_plain'::regclass AND key = '3';

-- the view reads one row's transitions through the key index, checking
-- the privilege once for the table, not once per row
SET plan_cache_mode = force_generic_plan;
PREPARE one_row(regclass, text) AS
    SELECT * FROM deploy_progress.transitions WHERE relid = $1 AND key = $2;
EXPLAIN (COSTS OFF) EXECUTE one_row('hist_jobs', '2');
DEALLOCATE one_row;
RESET plan_cache_mode;

-- untrack() and DROP TABLE keep the history (it is audit data); a dropped
-- table's rows leave the view with the table, and keep its name but not
-- its OID, which another table may get later
SELECT deploy_progress.untrack('hist_plain');
SELECT count(*) AS kept_after_untrack FROM deploy_progress.transitions WHERE relid = 'hist_plain'::regclass;
SELECT 'hist_composite'::regclass::oid AS composite_oid \gset
SELECT count(*) AS composite_rows FROM deploy_progress.history WHERE relid = :composite_oid \gset
INSERT INTO deploy_progress.history_pruned (relid, phase, transitions) VALUES (:composite_oid, 'queued', 3);
DROP TABLE hist_composite;
SELECT count(*) AS under_old_oid FROM deploy_progress.history WHERE relid::oid = :composite_oid;
SELECT count(*) = :composite_rows AS all_kept, min(relid) IS NULL AS no_oid
  FROM deploy_progress.history WHERE dropped_table = 'public.hist_composite';
SELECT count(*) AS in_view_after_drop FROM deploy_progress.transitions WHERE relid = :composite_oid;
-- and the totals of its pruned history go with it
SELECT count(*) AS pruned_totals_of_dropped FROM deploy_progress.history_pruned WHERE relid::oid = :composite_oid;

-- the history is kept by pg_dump
SELECT c.relname, e.extconfig IS NOT NULL AS dumped
  FROM pg_extension e, unnest(e.extconfig) AS x(oid) JOIN pg_class c ON c.oid = x.oid
 WHERE e.extname = 'deploy_progress' AND c.relname LIKE 'history%' ORDER BY 1;

DROP TABLE hist_jobs, hist_plain, hist_stuck, hist_side_effect, hist_bulk, hist_failures, hist_side, hist_parted;
SELECT deploy_progress.drop_lifecycle('hist_simple');
DROP ROLE hist_writer;
DROP ROLE hist_reader;
