-- Timing columns of type timestamp (without time zone), as Rails'
-- t.datetime / t.timestamps and Drizzle's timestamp() create them: they hold
-- local times of the table's time zone (track(..., time_zone), 'UTC' by
-- default), whatever the writer's or the reader's TimeZone.  The session
-- runs in Asia/Tokyo (UTC+9) throughout, so that a column read or stamped
-- in the session's zone instead of the table's shows up as hours off.
--
-- Stamps are compared with the statement's own time in the same statement
-- (RETURNING); figures are computed from times written with stamping off,
-- at fixed "as of" times.
\set SHOW_CONTEXT never
SET timezone = 'Asia/Tokyo';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

SELECT count(*) FROM deploy_progress.define_lifecycle('ts_lc', $$[
    {"phase": "queued", "kind": "pending"}, {"phase": "building", "kind": "active"},
    {"phase": "deploying", "kind": "active"}, {"phase": "live", "kind": "succeeded"},
    {"phase": "failed", "kind": "failed"}]$$);

--------------------------------------------------------------------------
-- A Rails-style table, tracked with the defaults (time zone UTC)
--------------------------------------------------------------------------
CREATE TABLE ts_rails (
    id               bigserial PRIMARY KEY,
    phase            character varying NOT NULL DEFAULT 'queued',
    phase_updated_at timestamp(6) without time zone,
    heartbeat_at     timestamp(6) without time zone,
    started_at       timestamp(6) without time zone,
    finished_at      timestamp(6) without time zone,
    created_at       timestamp(6) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       timestamp(6) without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP
);
SELECT relid, storage, time_zone, columns
  FROM deploy_progress.track('ts_rails', lifecycle => 'ts_lc');
-- created_at and updated_at play no role: they stay the application's
SELECT role FROM deploy_progress.column_roles
 WHERE 'timestamp without time zone'::regtype = ANY (types) ORDER BY position;

-- an INSERT stamps the UTC time of the statement (not Tokyo's)
INSERT INTO ts_rails DEFAULT VALUES
RETURNING id, phase_updated_at = (statement_timestamp() AT TIME ZONE 'UTC') AS phase_stamped_utc,
          heartbeat_at = (statement_timestamp() AT TIME ZONE 'UTC') AS heartbeat_stamped_utc,
          started_at IS NULL AS not_started, finished_at IS NULL AS not_finished;
-- entering an active phase stamps the start; a value the statement writes
-- into a timing column is replaced by the rules' (started_at: now)
UPDATE ts_rails SET phase = 'building', started_at = '2000-01-01 00:00:00' WHERE id = 1
RETURNING phase_updated_at = (statement_timestamp() AT TIME ZONE 'UTC') AS phase_stamped_utc,
          started_at = (statement_timestamp() AT TIME ZONE 'UTC') AS started_utc,
          finished_at IS NULL AS not_finished;

-- the readers give the timestamptz each column stands for, in UTC
SELECT t.phase_updated_at = (r.phase_updated_at AT TIME ZONE 'UTC') AS phase_read_utc,
       t.started_at = (r.started_at AT TIME ZONE 'UTC') AS started_read_utc,
       t.heartbeat_at = (r.heartbeat_at AT TIME ZONE 'UTC') AS heartbeat_read_utc
  FROM ts_rails r, deploy_progress.timings('ts_rails', '1') t WHERE r.id = 1;
SELECT f.phase_updated_at = (r.phase_updated_at AT TIME ZONE 'UTC') AS in_flight_utc
  FROM ts_rails r JOIN deploy_progress.in_flight('ts_rails') f ON f.key = r.id::text;

-- the history files each transition at the time the row was stamped, and
-- the time in the previous phase from the two stamps
SELECT h.from_phase, h.to_phase, h.at = (r.phase_updated_at AT TIME ZONE 'UTC') AS at_is_stamp
  FROM deploy_progress.history h JOIN ts_rails r ON h.key = r.id::text
 WHERE h.relid = 'ts_rails'::regclass AND h.to_phase = 'building';
SELECT (SELECT at FROM deploy_progress.history WHERE relid = 'ts_rails'::regclass AND to_phase = 'building')
       - (SELECT at FROM deploy_progress.history WHERE relid = 'ts_rails'::regclass AND to_phase = 'queued')
       = (SELECT time_in_previous FROM deploy_progress.history WHERE relid = 'ts_rails'::regclass AND to_phase = 'building')
       AS time_in_previous_from_stamps;

-- stamps never go back, read in the table's zone: a heartbeat an hour
-- ahead (UTC), written with stamping off, is the latest stamp, and the next
-- phase is stamped with it.  Misread in Tokyo time it would be 8 hours
-- behind and the phase would be stamped with the statement's time.
SET deploy_progress.stamping = off;
UPDATE ts_rails SET heartbeat_at = (statement_timestamp() AT TIME ZONE 'UTC') + interval '1 hour' WHERE id = 1;
SET deploy_progress.stamping = on;
UPDATE ts_rails SET phase = 'deploying' WHERE id = 1
RETURNING phase_updated_at > (statement_timestamp() AT TIME ZONE 'UTC') + interval '59 minutes' AS stamped_at_latest,
          heartbeat_at = phase_updated_at AS heartbeat_with_it;
-- a terminal phase stamps the finish, never before the start
UPDATE ts_rails SET phase = 'live' WHERE id = 1
RETURNING finished_at >= started_at AS finished_after_start, finished_at = phase_updated_at AS finished_with_phase;

--------------------------------------------------------------------------
-- A Drizzle-style table (text phases, timestamp() columns) in Europe/Berlin
--------------------------------------------------------------------------
CREATE TABLE ts_berlin (
    id                  integer PRIMARY KEY,
    phase               text NOT NULL DEFAULT 'queued',
    completed_items     integer,
    total_items         integer,
    phase_updated_at    timestamp DEFAULT CURRENT_TIMESTAMP,
    progress_updated_at timestamp,
    heartbeat_at        timestamp,
    started_at          timestamp
);
SELECT relid, storage, time_zone
  FROM deploy_progress.track('ts_berlin', lifecycle => 'ts_lc', time_zone => 'Europe/Berlin');
SELECT time_zone FROM deploy_progress.tracked WHERE relid = 'ts_berlin'::regclass;
INSERT INTO ts_berlin (id, completed_items, total_items) VALUES (1, 0, 100)
RETURNING phase_updated_at = (statement_timestamp() AT TIME ZONE 'Europe/Berlin') AS phase_stamped_berlin,
          progress_updated_at = (statement_timestamp() AT TIME ZONE 'Europe/Berlin') AS progress_stamped_berlin;

-- figures at fixed times: 12:00 in Berlin on 1 July is 10:00 UTC (summer
-- time); 1 January is winter time (UTC+1)
SET deploy_progress.stamping = off;
UPDATE ts_berlin SET phase = 'building', completed_items = 50, total_items = 100,
       phase_updated_at = '2026-07-01 12:00:00', progress_updated_at = '2026-07-01 12:00:00',
       heartbeat_at = '2026-07-01 12:00:00', started_at = '2026-07-01 11:50:00'
 WHERE id = 1;
INSERT INTO ts_berlin VALUES (2, 'building', 10, 100, '2026-01-01 12:00:00', '2026-01-01 12:00:00',
                              '2026-01-01 12:00:00', '2026-01-01 12:00:00');
SET deploy_progress.stamping = on;
SET timezone = 'UTC';  -- only so that the timestamptz values print in UTC
SELECT * FROM deploy_progress.timings('ts_berlin', '1');
SELECT * FROM deploy_progress.timings('ts_berlin', '2');
SELECT key, phase, completed, total, percent, average_speed, phase_updated_at, started_at, in_phase, elapsed, stuck_reason
  FROM deploy_progress.in_flight('ts_berlin', '2026-07-01 10:10:00+00') ORDER BY key;
SELECT p ->> 'phase' AS phase, p ->> 'percent' AS percent, p ->> 'average_speed' AS average_speed,
       p ->> 'phase_updated_at' AS phase_updated_at, p ->> 'eta' AS eta
  FROM deploy_progress.progress('ts_berlin', '1', '2026-07-01 10:10:00+00') AS p;
-- the heartbeat deadline (5 minutes) of row 1 runs from 10:00 UTC: not yet
-- stuck at 10:05:00, stuck a microsecond later (read as UTC, its clock
-- would start at 12:00)
SELECT key, reason, clock_started_at, deadline, overdue_by
  FROM deploy_progress.stuck('ts_berlin', '2026-07-01 10:05:00+00') WHERE key = '1';
SELECT key, reason, clock_started_at, deadline, overdue_by
  FROM deploy_progress.stuck('ts_berlin', '2026-07-01 10:05:00.000001+00') WHERE key = '1';
-- row 2's clock started at 11:00 UTC on 1 January (winter time)
SELECT key, reason, clock_started_at, deadline, overdue_by
  FROM deploy_progress.stuck('ts_berlin', '2026-01-01 11:05:00+00');
SELECT key, reason, clock_started_at, deadline, overdue_by
  FROM deploy_progress.stuck('ts_berlin', '2026-01-01 11:05:00.000001+00');
-- fail_stuck() finds the same rows: row 2 only, at that time
SELECT relid, key, from_phase, to_phase, reason
  FROM deploy_progress.fail_stuck('ts_berlin', as_of => '2026-01-01 11:05:00.000001+00');
SELECT id, phase FROM ts_berlin ORDER BY id;
SET timezone = 'Asia/Tokyo';

--------------------------------------------------------------------------
-- Mixed column types in one table, with the smoothed speed
--------------------------------------------------------------------------
CREATE TABLE ts_mixed (
    id                  integer PRIMARY KEY,
    phase               text NOT NULL,
    completed_items     bigint,
    total_items         bigint,
    phase_updated_at    timestamptz,
    progress_updated_at timestamp,
    heartbeat_at        timestamp,
    started_at          timestamptz,
    finished_at         timestamp,
    items_per_second    double precision,
    speed_updated_at    timestamp
);
SELECT relid, storage, time_zone
  FROM deploy_progress.track('ts_mixed', lifecycle => 'ts_lc', time_zone => 'Europe/Berlin');
INSERT INTO ts_mixed (id, phase, completed_items, total_items) VALUES (1, 'building', 0, 100)
RETURNING phase_updated_at = statement_timestamp() AS phase_tz,
          started_at = statement_timestamp() AS started_tz,
          heartbeat_at = (statement_timestamp() AT TIME ZONE 'Europe/Berlin') AS heartbeat_berlin,
          progress_updated_at = (statement_timestamp() AT TIME ZONE 'Europe/Berlin') AS progress_berlin,
          speed_updated_at = (statement_timestamp() AT TIME ZONE 'Europe/Berlin') AS speed_clock_berlin;

-- the trigger's speed step reads speed_updated_at and phase_updated_at in
-- the table's zone: 50 items 10 seconds after both is 5 items per second
-- (read in Tokyo time, the interval would be hours and the speed ~0)
BEGIN;
SET LOCAL deploy_progress.clock = 'transaction';
SET LOCAL deploy_progress.stamping = off;
UPDATE ts_mixed SET phase_updated_at = now() - interval '10 seconds',
       progress_updated_at = (now() AT TIME ZONE 'Europe/Berlin') - interval '10 seconds',
       heartbeat_at = (now() AT TIME ZONE 'Europe/Berlin') - interval '10 seconds',
       speed_updated_at = (now() AT TIME ZONE 'Europe/Berlin') - interval '10 seconds',
       items_per_second = NULL
 WHERE id = 1;
SET LOCAL deploy_progress.stamping = on;
UPDATE ts_mixed SET completed_items = 50 WHERE id = 1
RETURNING items_per_second, speed_updated_at = (now() AT TIME ZONE 'Europe/Berlin') AS speed_clock_moved,
          progress_updated_at = (now() AT TIME ZONE 'Europe/Berlin') AS progress_moved,
          phase_updated_at = now() - interval '10 seconds' AS phase_kept;
COMMIT;

-- finishing stamps the tz-less finish in Berlin time, after the tz start
UPDATE ts_mixed SET phase = 'live', completed_items = 100 WHERE id = 1
RETURNING finished_at = (statement_timestamp() AT TIME ZONE 'Europe/Berlin') AS finished_berlin,
          (finished_at AT TIME ZONE 'Europe/Berlin') >= started_at AS finished_after_start;
SELECT t.finished_at = (m.finished_at AT TIME ZONE 'Europe/Berlin') AS finished_read_berlin,
       t.phase_updated_at = m.phase_updated_at AS phase_read_as_is
  FROM ts_mixed m, deploy_progress.timings('ts_mixed', '1') t WHERE m.id = 1;

--------------------------------------------------------------------------
-- A partitioned table: a row that moves to another partition keeps its
-- stamps (the new partition's INSERT recognizes them in the column's form)
--------------------------------------------------------------------------
CREATE TABLE ts_parts (
    id               integer,
    region           text,
    phase            text NOT NULL,
    phase_updated_at timestamp,
    heartbeat_at     timestamp,
    started_at       timestamp,
    PRIMARY KEY (id, region)
) PARTITION BY LIST (region);
CREATE TABLE ts_parts_eu PARTITION OF ts_parts FOR VALUES IN ('eu');
CREATE TABLE ts_parts_us PARTITION OF ts_parts FOR VALUES IN ('us');
SELECT relid, storage, time_zone
  FROM deploy_progress.track('ts_parts', lifecycle => 'ts_lc', time_zone => 'Europe/Berlin');
INSERT INTO ts_parts VALUES (1, 'eu', 'building') RETURNING started_at AS started \gset
UPDATE ts_parts SET region = 'us' WHERE id = 1
RETURNING tableoid::regclass AS partition, started_at = :'started' AS start_kept,
          phase_updated_at = :'started' AS phase_start_kept,
          heartbeat_at = (statement_timestamp() AT TIME ZONE 'Europe/Berlin') AS heartbeat_berlin;

--------------------------------------------------------------------------
-- Side storage: the side table keeps timestamptz; the table's own timing
-- columns, timestamp or not, are not used (accepted by the same rule)
--------------------------------------------------------------------------
CREATE TABLE ts_side (id integer PRIMARY KEY, phase text NOT NULL, heartbeat_at timestamp);
SELECT relid, storage, time_zone, columns
  FROM deploy_progress.track('ts_side', lifecycle => 'ts_lc', storage => 'side');
INSERT INTO ts_side VALUES (1, 'queued', NULL) RETURNING heartbeat_at IS NULL AS own_column_untouched;
SELECT heartbeat_at = phase_updated_at AS side_stamped FROM deploy_progress.timings('ts_side', '1');

--------------------------------------------------------------------------
-- Bad input: nothing changes
--------------------------------------------------------------------------
SELECT deploy_progress.track('ts_berlin', lifecycle => 'ts_lc', time_zone => 'Mars/Olympus_Mons');
SELECT deploy_progress.track('ts_berlin', lifecycle => 'ts_lc', time_zone => '');
SELECT deploy_progress.track('ts_berlin', lifecycle => 'ts_lc', time_zone => NULL);
SELECT time_zone FROM deploy_progress.tracked WHERE relid = 'ts_berlin'::regclass;
CREATE TABLE ts_new (id integer PRIMARY KEY, phase text NOT NULL, heartbeat_at timestamp);
SELECT deploy_progress.track('ts_new', lifecycle => 'ts_lc', time_zone => 'Europe/Berlim');
SELECT count(*) AS new_tracked FROM deploy_progress.tracked WHERE relid = 'ts_new'::regclass;
SELECT count(*) AS new_triggers FROM pg_trigger WHERE tgrelid = 'ts_new'::regclass;
-- a date (or a time of day) is still no timing column
CREATE TABLE ts_dates (id integer PRIMARY KEY, phase text NOT NULL, started_at date, heartbeat_at time);
SELECT deploy_progress.track('ts_dates', lifecycle => 'ts_lc');
SELECT deploy_progress.track('ts_dates', lifecycle => 'ts_lc', heartbeat_at => NULL);
SELECT count(*) AS dates_tracked FROM deploy_progress.tracked WHERE relid = 'ts_dates'::regclass;
-- zone names as PostgreSQL reads them, abbreviations too (EST: UTC-5 all year)
SELECT time_zone FROM deploy_progress.track('ts_new', lifecycle => 'ts_lc', time_zone => 'EST');
INSERT INTO ts_new VALUES (1, 'queued', NULL)
RETURNING heartbeat_at = (statement_timestamp() AT TIME ZONE 'UTC') - interval '5 hours' AS est_is_utc_minus_5;

CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
SELECT pg_temp.sqlstate_of(q) AS sqlstate, q
  FROM (VALUES
    ($$SELECT deploy_progress.track('ts_berlin', lifecycle => 'ts_lc', time_zone => 'Mars/Olympus_Mons')$$),
    ($$SELECT deploy_progress.track('ts_berlin', lifecycle => 'ts_lc', time_zone => '')$$),
    ($$SELECT deploy_progress.track('ts_berlin', lifecycle => 'ts_lc', time_zone => NULL)$$),
    ($$SELECT deploy_progress.track('ts_dates', lifecycle => 'ts_lc')$$)) AS v(q);

DROP TABLE ts_rails, ts_berlin, ts_mixed, ts_parts, ts_side, ts_new, ts_dates;
SELECT deploy_progress.drop_lifecycle('ts_lc');
