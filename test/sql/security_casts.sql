-- A table owner's code never runs with a reader's or a sweeper's rights
-- through the values of the table's types.  The owner of an enum type may
-- attach casts of their own to it (to and from text); on 1.0 the readers
-- converted phases and keys with ::text and ran such a cast with the
-- rights of whoever read the table, a superuser included.  The readers
-- now convert with the types' output functions, as the triggers do, and
-- compare keys of a user's type as text.

CREATE ROLE sc_owner;
CREATE ROLE sc_reader;
GRANT CREATE ON SCHEMA public TO sc_owner;

SET ROLE sc_owner;
-- every call of the owner's functions is logged with the role it ran as
CREATE TABLE sc_calls (who name, fn text);
GRANT INSERT ON sc_calls TO PUBLIC;
CREATE TYPE sc_phase AS ENUM ('queued', 'running', 'done', 'failed');
CREATE TYPE sc_region AS ENUM ('eu', 'us');
CREATE FUNCTION sc_phase_text(sc_phase) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sc_calls VALUES (current_user, 'phase to text'); RETURN format('%s', $1); END $$;
CREATE FUNCTION sc_text_phase(text) RETURNS sc_phase LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sc_calls VALUES (current_user, 'text to phase');
      RETURN (SELECT v FROM unnest(enum_range(NULL::sc_phase)) v WHERE format('%s', v) = $1); END $$;
CREATE FUNCTION sc_region_text(sc_region) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sc_calls VALUES (current_user, 'region to text'); RETURN format('%s', $1); END $$;
CREATE FUNCTION sc_text_region(text) RETURNS sc_region LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sc_calls VALUES (current_user, 'text to region');
      RETURN (SELECT v FROM unnest(enum_range(NULL::sc_region)) v WHERE format('%s', v) = $1); END $$;
CREATE CAST (sc_phase AS text) WITH FUNCTION sc_phase_text(sc_phase);
CREATE CAST (text AS sc_phase) WITH FUNCTION sc_text_phase(text);
CREATE CAST (sc_region AS text) WITH FUNCTION sc_region_text(sc_region);
CREATE CAST (text AS sc_region) WITH FUNCTION sc_text_region(text);
-- and operators of their own on the types, in the schema everyone's
-- search_path starts with: comparisons the readers make must not reach them
CREATE FUNCTION sc_phase_eq(sc_phase, sc_phase) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sc_calls VALUES (current_user, 'phase ='); RETURN format('%s', $1) = format('%s', $2); END $$;
CREATE FUNCTION sc_phase_ne(sc_phase, sc_phase) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sc_calls VALUES (current_user, 'phase <>'); RETURN format('%s', $1) <> format('%s', $2); END $$;
CREATE FUNCTION sc_region_eq(sc_region, sc_region) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.sc_calls VALUES (current_user, 'region ='); RETURN format('%s', $1) = format('%s', $2); END $$;
CREATE OPERATOR public.= (LEFTARG = sc_phase, RIGHTARG = sc_phase, FUNCTION = sc_phase_eq);
CREATE OPERATOR public.<> (LEFTARG = sc_phase, RIGHTARG = sc_phase, FUNCTION = sc_phase_ne);
CREATE OPERATOR public.= (LEFTARG = sc_region, RIGHTARG = sc_region, FUNCTION = sc_region_eq);
-- the casts work, and log: called here, by their owner
SELECT 'running'::sc_phase::text AS phase, 'eu'::text::sc_region AS region, 'done'::text::sc_phase AS phase2, 'us'::sc_region::text AS region2;
SELECT 'running'::sc_phase = 'running'::sc_phase AS eq, 'eu'::sc_region = 'us'::sc_region AS eq2, 'done'::sc_phase <> 'queued'::sc_phase AS ne;
SELECT who, fn FROM sc_calls ORDER BY fn;

SELECT count(*) FROM deploy_progress.define_lifecycle('sc_lc', '[
    {"phase": "queued", "kind": "pending"}, {"phase": "running", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"}]');
-- row storage, a composite key with an enum in it
CREATE TABLE sc_jobs (id integer, region sc_region, phase sc_phase NOT NULL,
                      completed_items integer, total_items integer,
                      phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
                      failure_reason text, PRIMARY KEY (id, region));
SELECT storage FROM deploy_progress.track('sc_jobs', lifecycle => 'sc_lc');
-- side storage, a key of the owner's enum type
CREATE TABLE sc_side (region sc_region PRIMARY KEY, phase sc_phase NOT NULL);
SELECT storage FROM deploy_progress.track('sc_side', lifecycle => 'sc_lc');
SET deploy_progress.stamping = off;
INSERT INTO sc_jobs VALUES (1, 'eu', 'running', 1, 10, now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'),
                           (2, 'us', 'queued', NULL, NULL, now(), now(), now());
RESET deploy_progress.stamping;
INSERT INTO sc_side VALUES ('eu', 'running'), ('us', 'queued');
UPDATE sc_side SET phase = 'done' WHERE region = 'us';
GRANT SELECT, UPDATE ON sc_jobs, sc_side TO PUBLIC;
DELETE FROM sc_calls;
RESET ROLE;

-- every reader and the sweep, as a superuser and as an ordinary reader;
-- the results are shown once, from the superuser's pass
CREATE TEMPORARY TABLE sc_seen (pass text, what text, value text);
GRANT INSERT ON sc_seen TO sc_reader;
CREATE FUNCTION pg_temp.sc_pass(pass text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sc_seen SELECT pass, 'in_flight', string_agg(format('%s %s %s %s', relid::regclass, key, phase, stuck_reason), '; ' ORDER BY relid::text, key)
      FROM deploy_progress.in_flight WHERE relid::text LIKE 'sc\_%';
    INSERT INTO sc_seen SELECT pass, 'in_flight()', string_agg(format('%s %s', key, phase), '; ' ORDER BY key)
      FROM deploy_progress.in_flight('sc_side');
    INSERT INTO sc_seen SELECT pass, 'stuck', string_agg(format('%s %s %s', relid::regclass, key, reason), '; ' ORDER BY key)
      FROM deploy_progress.stuck() WHERE relid::text LIKE 'sc\_%';
    INSERT INTO sc_seen SELECT pass, 'progress', deploy_progress.progress('sc_jobs', '(1,eu)') ->> 'phase';
    INSERT INTO sc_seen SELECT pass, 'progress side', deploy_progress.progress('sc_side', 'eu') ->> 'phase';
    INSERT INTO sc_seen SELECT pass, 'describe', deploy_progress.describe('sc_side', 'us');
    INSERT INTO sc_seen SELECT pass, 'timings', count(*)::text FROM deploy_progress.timings('sc_side', 'us') WHERE finished_at IS NOT NULL;
    INSERT INTO sc_seen SELECT pass, 'steps', deploy_progress.steps('sc_side', 'us') -> 0 ->> 'status';
    INSERT INTO sc_seen SELECT pass, 'timeline', string_agg(phase, ' ' ORDER BY started_at) FROM deploy_progress.timeline('sc_side', 'us');
    INSERT INTO sc_seen SELECT pass, 'phase_stats', string_agg(format('%s %s', phase, count), '; ') FROM deploy_progress.phase_stats('sc_side');
    INSERT INTO sc_seen SELECT pass, 'metrics', count(*)::text FROM deploy_progress.metrics WHERE labels ->> 'table' LIKE '%sc\_%';
    INSERT INTO sc_seen SELECT pass, 'prometheus', (deploy_progress.metrics_prometheus() LIKE '%sc_side%')::text;
    INSERT INTO sc_seen SELECT pass, 'fail_stuck', string_agg(format('%s %s %s', key, to_phase, reason), '; ' ORDER BY key)
      FROM deploy_progress.fail_stuck('sc_jobs');
END $$;
SELECT pg_temp.sc_pass('superuser');
SELECT what, value FROM sc_seen ORDER BY what;
-- the reader's pass (nothing left to fail: the superuser failed it)
GRANT EXECUTE ON FUNCTION pg_temp.sc_pass(text) TO sc_reader;
SET ROLE sc_reader;
SELECT pg_temp.sc_pass('reader');
RESET ROLE;
SELECT s.what, s.value AS superuser_saw, r.value AS reader_saw
  FROM sc_seen s JOIN sc_seen r ON r.what = s.what AND r.pass = 'reader'
 WHERE s.pass = 'superuser' AND s.value IS DISTINCT FROM r.value ORDER BY s.what;

-- the owner's casts and operators never ran, neither as the superuser nor as the reader
SELECT who, fn, count(*) FROM sc_calls GROUP BY who, fn ORDER BY who, fn;

DROP TABLE sc_jobs, sc_side, sc_calls, sc_seen;
DROP FUNCTION pg_temp.sc_pass(text);
SELECT deploy_progress.drop_lifecycle('sc_lc');
SET client_min_messages = warning;
DROP TYPE sc_phase, sc_region CASCADE;
RESET client_min_messages;
REVOKE CREATE ON SCHEMA public FROM sc_owner;
DROP ROLE sc_owner;
DROP ROLE sc_reader;
