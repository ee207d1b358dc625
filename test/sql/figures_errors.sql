-- Bad input to the figure functions: each gets a clear error with its
-- SQLSTATE, detail and hint.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE TABLE fig_err (
    id               integer PRIMARY KEY,
    phase            deploy_progress.phase NOT NULL,
    completed_items  integer,
    total_items      integer,
    phase_updated_at timestamptz
);
SELECT storage FROM deploy_progress.track('fig_err');
INSERT INTO fig_err VALUES (42, 'fetching', 1, 10);
CREATE TABLE fig_untracked (id integer PRIMARY KEY, phase deploy_progress.phase);

-- progress() and describe() of a table that is not tracked
SELECT deploy_progress.progress('fig_untracked', '1', '2024-05-01 10:00:00+00');
SELECT deploy_progress.describe('fig_untracked', '1');
-- ... of a row that does not exist, or a key that is not the key's text
SELECT deploy_progress.progress('fig_err', '7', '2024-05-01 10:00:00+00');
SELECT deploy_progress.progress('fig_err', 'abc', '2024-05-01 10:00:00+00');
SELECT deploy_progress.progress('fig_err', '042', '2024-05-01 10:00:00+00');
SELECT deploy_progress.progress('fig_err', '99999999999', '2024-05-01 10:00:00+00');
SELECT deploy_progress.describe('fig_err', '', '2024-05-01 10:00:00+00');
-- the row is found by its exact key text
SELECT deploy_progress.progress('fig_err', '42', '2024-05-01 10:00:00+00')->>'phase' AS found;

-- a key that does not identify a row
CREATE TABLE fig_dupes (id integer, phase deploy_progress.phase NOT NULL, phase_updated_at timestamptz);
SELECT key_columns FROM deploy_progress.track('fig_dupes', key => ARRAY['id']::name[]);
INSERT INTO fig_dupes VALUES (1, 'queued'), (1, 'queued');
SELECT deploy_progress.progress('fig_dupes', '1', '2024-05-01 10:00:00+00');

-- a role that may not read the table cannot read its figures
CREATE ROLE fig_err_reader;
SET ROLE fig_err_reader;
SELECT deploy_progress.progress('fig_err', '42', '2024-05-01 10:00:00+00');
RESET ROLE;
DROP ROLE fig_err_reader;

-- time constants must be positive
SELECT deploy_progress.smoothed_speed(10, '2024-05-01 10:00:00+00', '2024-05-01 10:00:01+00', '0 seconds');
SELECT deploy_progress.smoothed_speed(10, '2024-05-01 10:00:00+00', '2024-05-01 10:00:01+00', '-1 minute');
SELECT deploy_progress._speed_step(10, '2024-05-01 10:00:00+00', 5, '2024-05-01 10:00:01+00', '0 seconds');

-- overall_progress: unknown lifecycle or phase
SELECT deploy_progress.overall_progress('no_such_lifecycle', 'queued', 1, 2);
SELECT deploy_progress.overall_progress('default', 'sleeping', 1, 2);

-- weighted_progress: malformed lifecycles
SELECT deploy_progress.weighted_progress('{1,1}', '{active}', 1, 0.5);
SELECT deploy_progress.weighted_progress('{}', '{}', 1, 0.5);
SELECT deploy_progress.weighted_progress('{1,1}', '{active,succeeded}', 0, 0.5);
SELECT deploy_progress.weighted_progress('{1,1}', '{active,succeeded}', 3, 0.5);
SELECT deploy_progress.weighted_progress('{1,1}', '{active,done}', 1, 0.5);
SELECT deploy_progress.weighted_progress('{1,1}', '{active,NULL}', 1, 0.5);
SELECT deploy_progress.weighted_progress('{-1,1}', '{active,succeeded}', 1, 0.5);
SELECT deploy_progress.weighted_progress('{NaN,1}', '{active,succeeded}', 1, 0.5);
SELECT deploy_progress.weighted_progress('{Infinity,1}', '{active,succeeded}', 1, 0.5);
SELECT deploy_progress.weighted_progress('{NULL,1}', '{active,succeeded}', 1, 0.5);
SELECT deploy_progress.weighted_progress('{{1,1}}', '{active,succeeded}', 1, 0.5);

-- describe(jsonb): figures that are not figures
SELECT deploy_progress.describe('[1, 2]');
SELECT deploy_progress.describe('"transferring"');
SELECT deploy_progress.describe('{"phase": "transferring"}');
SELECT deploy_progress.describe('{"phase": "transferring", "kind": "running"}');
SELECT deploy_progress.describe('{"phase": 5, "kind": "active"}');
SELECT deploy_progress.describe('{"phase": "transferring", "kind": "active", "completed": "12"}');
SELECT deploy_progress.describe('{"phase": "transferring", "kind": "active", "completed": 1e30}');
SELECT deploy_progress.describe('{"phase": "transferring", "kind": "active", "completed": 1, "stalled": "yes"}');

-- the SQLSTATE of each error above
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
    ($$SELECT deploy_progress.progress('fig_untracked', '1')$$),
    ($$SELECT deploy_progress.progress('fig_err', '7')$$),
    ($$SELECT deploy_progress.progress('fig_err', 'abc')$$),
    ($$SELECT deploy_progress.progress('fig_dupes', '1')$$),
    ($$SELECT deploy_progress.progress('fig_err', '42')$$),
    ($$SELECT deploy_progress.smoothed_speed(10, now(), now(), '0 seconds')$$),
    ($$SELECT deploy_progress.overall_progress('no_such_lifecycle', 'queued')$$),
    ($$SELECT deploy_progress.overall_progress('default', 'sleeping')$$),
    ($$SELECT deploy_progress.weighted_progress('{1,1}', '{active}', 1, 0.5)$$),
    ($$SELECT deploy_progress.weighted_progress('{1,1}', '{active,succeeded}', 3, 0.5)$$),
    ($$SELECT deploy_progress.weighted_progress('{-1,1}', '{active,succeeded}', 1, 0.5)$$),
    ($$SELECT deploy_progress.describe('[1, 2]')$$),
    ($$SELECT deploy_progress.describe('{"phase": "x", "kind": "active", "completed": 1e30}')$$)) AS v(q);

SELECT deploy_progress.untrack('fig_err'), deploy_progress.untrack('fig_dupes');
DROP TABLE fig_err, fig_untracked, fig_dupes;
