-- Integrity: no configuration for a table that does not exist, a sweep
-- that always ends, one bad table never stops the global readers and the
-- sweep, track() refuses a reason column too short for what fail_stuck()
-- writes, and a lifecycle's redefinition waits for the writers of the
-- tables that use it (the waiting itself is in test/specs/define_lifecycle_race.spec).
\set SHOW_CONTEXT never

CREATE ROLE ig_owner;
CREATE ROLE ig_mallory;
GRANT CREATE ON SCHEMA public TO ig_owner;

--------------------------------------------------------------------------
-- 1. configuration only for tables that exist and that the writer owns
--------------------------------------------------------------------------
-- On 1.0 an OID that named no relation counted as "owned" by everyone, so
-- a role could plant configuration for the next table created with that
-- OID, which a superuser's sweep would then rewrite.
SET ROLE ig_mallory;
DO $$
DECLARE
    future oid := (SELECT max(oid::bigint) + 100000 FROM pg_class);
BEGIN
    INSERT INTO deploy_progress.tracked (relid, lifecycle, phase_column, key_columns, storage)
    VALUES (future, 'default', 'phase', '{id}', 'row');
    RAISE NOTICE 'planted';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'refused: % %', SQLSTATE, regexp_replace(SQLERRM, '[0-9]+', 'N');
END $$;
RESET ROLE;
SELECT count(*) AS rows_for_missing_tables
  FROM deploy_progress.tracked t WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.relid);
-- nor for another role's table
SET ROLE ig_owner;
CREATE TABLE ig_jobs (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                      heartbeat_at timestamptz, progress_updated_at timestamptz, phase_updated_at timestamptz,
                      failure_reason varchar(20), blocked boolean NOT NULL DEFAULT false);
SET ROLE ig_mallory;
INSERT INTO deploy_progress.tracked (relid, lifecycle, phase_column, key_columns, storage)
VALUES ('ig_jobs', 'default', 'phase', '{id}', 'row');
RESET ROLE;
-- what is left of a table that is gone can still be removed (here the
-- event trigger that removes it is off, as during a restore)
SET ROLE ig_owner;
CREATE TABLE ig_gone (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT storage FROM deploy_progress.track('ig_gone');
SELECT 'ig_gone'::regclass::oid AS gone_oid \gset
RESET ROLE;
ALTER EVENT TRIGGER deploy_progress_sql_drop DISABLE;
DROP TABLE ig_gone;
ALTER EVENT TRIGGER deploy_progress_sql_drop ENABLE;
SET ROLE ig_mallory;
SELECT deploy_progress.untrack(:gone_oid);
RESET ROLE;
SELECT count(*) AS left_of_gone FROM deploy_progress.tracked WHERE relid::oid = :gone_oid;

-- temporary tables are dropped at the end of their session without event
-- triggers, which would leave their configuration behind: refused
CREATE TEMPORARY TABLE ig_temp (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT deploy_progress.track('ig_temp');
DROP TABLE ig_temp;

--------------------------------------------------------------------------
-- 2. the reason column must hold every reason
--------------------------------------------------------------------------
SET ROLE ig_owner;
CREATE TABLE ig_short (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, failure_reason varchar(10));
SELECT deploy_progress.track('ig_short');
SELECT count(*) AS tracked FROM deploy_progress.tracked WHERE relid = 'ig_short'::regclass;
SELECT columns ->> 'failure_reason' AS reason FROM deploy_progress.track('ig_short', failure_reason => NULL);
-- varchar(20) holds them all
SELECT columns ->> 'failure_reason' AS reason FROM deploy_progress.track('ig_jobs');

--------------------------------------------------------------------------
-- 3. a sweep always ends, even when rows cannot be failed
--------------------------------------------------------------------------
-- A trigger of the table skips the update of "blocked" rows.  On 1.0, with
-- at least batch_size such rows, fail_stuck() locked the same rows again
-- and again and never returned.
CREATE FUNCTION ig_skip_blocked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.blocked THEN RETURN NULL; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER a_skip_blocked BEFORE UPDATE ON ig_jobs FOR EACH ROW EXECUTE FUNCTION ig_skip_blocked();
SET deploy_progress.stamping = off;
INSERT INTO ig_jobs (id, phase, heartbeat_at, progress_updated_at, phase_updated_at, blocked)
SELECT g, 'building', '2026-01-01 10:00+00', '2026-01-01 10:00+00', '2026-01-01 10:00+00', g <= 5
  FROM generate_series(1, 7) g;
RESET deploy_progress.stamping;
GRANT SELECT, UPDATE ON ig_jobs TO PUBLIC;
RESET ROLE;
-- (a guard: were the sweep to loop again, this fails instead of hanging)
SET statement_timeout = '10min';
SELECT key, from_phase, to_phase, reason FROM deploy_progress.fail_stuck('ig_jobs', 2, '2026-01-01 11:00+00') ORDER BY key::int;
RESET statement_timeout;
SELECT id, phase, failure_reason FROM ig_jobs ORDER BY id;

--------------------------------------------------------------------------
-- 4. one bad table never stops the global readers and the sweep
--------------------------------------------------------------------------
SET ROLE ig_owner;
CREATE TABLE ig_good (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                      heartbeat_at timestamptz, progress_updated_at timestamptz, phase_updated_at timestamptz);
SELECT storage FROM deploy_progress.track('ig_good');
CREATE TABLE ig_bad (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                     heartbeat_at timestamptz, progress_updated_at timestamptz, phase_updated_at timestamptz);
SELECT storage FROM deploy_progress.track('ig_bad');
SET deploy_progress.stamping = off;
INSERT INTO ig_good VALUES (1, 'building', '2026-01-01 10:00+00', '2026-01-01 10:00+00', '2026-01-01 10:00+00');
-- a stamp no age can be measured from, written with stamping off
INSERT INTO ig_bad VALUES (1, 'building', '-infinity', '-infinity', '-infinity');
RESET deploy_progress.stamping;
RESET ROLE;
-- the global readers warn about ig_bad and serve ig_good
SELECT relid, key, stuck_reason FROM deploy_progress.in_flight(NULL, '2026-01-01 11:00+00') WHERE relid::text IN ('ig_good', 'ig_bad');
SELECT relid, key, reason FROM deploy_progress.stuck(NULL, '2026-01-01 11:00+00') WHERE relid::text IN ('ig_good', 'ig_bad');
-- asked about that one table, they raise its error
SELECT relid, key FROM deploy_progress.in_flight('ig_bad', '2026-01-01 11:00+00');
SELECT relid, key FROM deploy_progress.stuck('ig_bad', '2026-01-01 11:00+00');
-- progress() of that row has no elapsed times (the same on every version)
SELECT p ->> 'phase_updated_at' AS phase_updated_at, p -> 'phase_elapsed_seconds' AS phase_elapsed_seconds,
       p -> 'since_progress_seconds' AS since_progress_seconds, p -> 'stalled' AS stalled
  FROM deploy_progress.progress('ig_bad', '1', '2026-01-01 11:00+00') p;
-- a dropped role column breaks only its table
ALTER TABLE ig_bad DROP COLUMN heartbeat_at;
SELECT name, labels ->> 'phase' AS phase, value FROM deploy_progress.metrics
 WHERE name = 'deploy_progress_in_flight' AND labels ->> 'table' IN ('public.ig_good', 'public.ig_bad') AND value > 0;
-- and the metric says which table was skipped
SET client_min_messages = error;
SELECT labels ->> 'table' AS table_name, value AS skipped FROM deploy_progress.metrics
 WHERE name = 'deploy_progress_table_skipped' AND labels ->> 'table' IN ('public.ig_good', 'public.ig_bad') ORDER BY 1;
RESET client_min_messages;
SELECT relid, key, to_phase, reason FROM deploy_progress.fail_stuck(NULL, 100, '2026-01-01 11:00+00')
 WHERE relid::text IN ('ig_good', 'ig_bad');
SELECT phase FROM ig_good;
-- infinite "as of" times are refused, the same on every PostgreSQL version
SELECT count(*) FROM deploy_progress.in_flight(NULL, 'infinity');
SELECT count(*) FROM deploy_progress.stuck('ig_good', '-infinity');
SELECT deploy_progress.progress('ig_good', '1', 'infinity');
SELECT count(*) FROM deploy_progress.timeline('ig_good', '1', '-infinity');

--------------------------------------------------------------------------
-- 5. in-flight index names: long names and shared prefixes
--------------------------------------------------------------------------
-- On 1.0 the second table whose name shared its first 45 characters with a
-- tracked table's, and a name of 63 bytes of non-ASCII letters, made track()
-- fail (the index name collided or was cut mid-character).
CREATE TABLE ig_a_very_long_table_name_that_shares_its_prefix_one (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
CREATE TABLE ig_a_very_long_table_name_that_shares_its_prefix_two (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
CREATE TABLE "ig_ääääääääääääääääääääääääääääää" (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('ig_a_very_long_table_name_that_shares_its_prefix_one');
SELECT relid FROM deploy_progress.track('ig_a_very_long_table_name_that_shares_its_prefix_two');
SELECT relid FROM deploy_progress.track('"ig_ääääääääääääääääääääääääääääää"');
SELECT c.relname AS table_name, i.relname AS index_name, octet_length(i.relname::text) AS bytes
  FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
 WHERE (c.relname::text LIKE 'ig\_a\_very%' OR c.relname::text LIKE 'ig\_ä%')
   AND i.relname::text LIKE '%dp_in_flight_idx' ORDER BY 1, 2;
-- tracking again keeps each table's index
SELECT relid FROM deploy_progress.track('ig_a_very_long_table_name_that_shares_its_prefix_two');
SELECT count(*) AS in_flight_indexes FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
 WHERE x.indrelid = 'ig_a_very_long_table_name_that_shares_its_prefix_two'::regclass AND i.relname::text LIKE '%dp_in_flight_idx';
DROP TABLE ig_a_very_long_table_name_that_shares_its_prefix_one, ig_a_very_long_table_name_that_shares_its_prefix_two,
           "ig_ääääääääääääääääääääääääääääää";

DROP TABLE ig_jobs, ig_short, ig_good, ig_bad;
DROP FUNCTION ig_skip_blocked();
REVOKE CREATE ON SCHEMA public FROM ig_owner;
DROP ROLE ig_owner;
DROP ROLE ig_mallory;
