-- One canonical key text, whatever the session's settings and the code
-- path.  Side rows and history are filed under a row's key text; on 1.0 the
-- triggers and the readers could make different texts for one row (a
-- char(n) key's padding), and the text of a date or timestamptz key
-- depended on the session's DateStyle and TimeZone, so that another
-- session saw no side timings, wrote a second side row and split the
-- history.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

-- a char(8) key, side storage
CREATE TABLE kt_char (id char(8) PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT storage FROM deploy_progress.track('kt_char');
INSERT INTO kt_char VALUES ('ab', 'queued');
UPDATE kt_char SET phase = 'building';
-- the key as the triggers and every reader write it, padded
SELECT '[' || key || ']' AS key, phase_updated_at IS NOT NULL AS timed FROM deploy_progress.in_flight('kt_char');
SELECT '[' || key || ']' AS key FROM deploy_progress.side_timings WHERE relid = 'kt_char'::regclass;
-- and found by the text a user types, unpadded or padded
SELECT string_agg(phase, ' ' ORDER BY started_at) FROM deploy_progress.timeline('kt_char', 'ab');
SELECT string_agg(phase, ' ' ORDER BY started_at) FROM deploy_progress.timeline('kt_char', 'ab      ');
SELECT count(*) AS timed FROM deploy_progress.timings('kt_char', 'ab') WHERE phase_updated_at IS NOT NULL;
SELECT deploy_progress.progress('kt_char', 'ab') ->> 'phase' AS phase;
SELECT deploy_progress.steps('kt_char', 'ab') -> 0 ->> 'status' AS first_step;
-- a text that is no value of the type is no key
SELECT count(*) FROM deploy_progress.timeline('kt_char', 'a much too long key');

-- a composite key with a date, side storage, written by sessions with
-- different DateStyles: one side row, one history, under the ISO text
CREATE TABLE kt_day (id integer, day date, phase deploy_progress.phase NOT NULL, PRIMARY KEY (id, day));
SELECT storage FROM deploy_progress.track('kt_day');
SET DateStyle = 'German';
INSERT INTO kt_day VALUES (1, '02.01.2026', 'queued');
SET DateStyle = 'SQL, DMY';
UPDATE kt_day SET phase = 'building';
SET DateStyle = 'Postgres, MDY';
UPDATE kt_day SET phase = 'starting';
SELECT key FROM deploy_progress.side_timings WHERE relid = 'kt_day'::regclass;
SELECT key, count(*) FROM deploy_progress.transitions WHERE relid = 'kt_day'::regclass GROUP BY key;
-- every session's readers agree
SET DateStyle = 'German';
SELECT key, phase, phase_updated_at IS NOT NULL AS timed FROM deploy_progress.in_flight('kt_day');
SET DateStyle = 'ISO, MDY';
SELECT key, phase, phase_updated_at IS NOT NULL AS timed FROM deploy_progress.in_flight('kt_day');
SELECT count(*) AS timed FROM deploy_progress.timings('kt_day', '(1,2026-01-02)') WHERE phase_updated_at IS NOT NULL;
SELECT string_agg(phase, ' ' ORDER BY started_at) FROM deploy_progress.timeline('kt_day', '(1,2026-01-02)');
RESET DateStyle;

-- a timestamptz key, row storage with history: filed in UTC whatever the
-- writer's TimeZone, and found by a time in the reader's
CREATE TABLE kt_at (at timestamptz PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                    phase_updated_at timestamptz);
SELECT storage FROM deploy_progress.track('kt_at');
SET TimeZone = 'Asia/Tokyo';
INSERT INTO kt_at VALUES ('2026-01-02 09:00+09', 'queued');
SET TimeZone = 'America/New_York';
UPDATE kt_at SET phase = 'building';
SELECT key, count(*) FROM deploy_progress.transitions WHERE relid = 'kt_at'::regclass GROUP BY key;
SELECT key FROM deploy_progress.in_flight('kt_at');
SELECT string_agg(phase, ' ' ORDER BY started_at) FROM deploy_progress.timeline('kt_at', '2026-01-01 19:00:00-05');
SELECT deploy_progress.progress('kt_at', '2026-01-01 19:00:00-05') ->> 'phase' AS phase;
RESET TimeZone;

-- keys whose text depends on no setting keep their plain text, and are
-- matched exactly ('042' is not the key 42)
SELECT deploy_progress._type_text_varies(t) AS varies, t
  FROM unnest(ARRAY['integer', 'text', 'character', 'uuid', 'numeric', 'date', 'timestamptz',
                    'interval', 'double precision', 'bytea', 'integer[]', 'date[]']::regtype[]) t;

-- the fields of a key text of several columns (what a reader of one row of
-- a Citus distributed table gives Citus to pick the shard): each field of
-- record_out's text reads back as the value it was written from
SELECT v, deploy_progress._key_field(pg_catalog.format('%s', ROW(v, 7)), 1) IS NOT DISTINCT FROM v AS first,
       deploy_progress._key_field(pg_catalog.format('%s', ROW(7, v)), 2) IS NOT DISTINCT FROM v AS second
  FROM unnest(ARRAY['plain', 'a b', 'x,y', 'q"uote', 'back\slash', '(paren)', '', ' ', NULL]) v;
SELECT deploy_progress._key_field(k, 3) AS absent, deploy_progress._key_field('42', 1) AS not_a_record
  FROM (VALUES ('(1,2)')) x(k);

DROP TABLE kt_char, kt_day, kt_at;
