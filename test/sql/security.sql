-- Hardening: every function has a fixed search_path, the main functions
-- work with an empty search_path, look-alike objects a hostile role plants
-- change nothing, and the extension is not trusted (with the reason).
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

--------------------------------------------------------------------------
-- 1. the catalog: fixed search_path everywhere
--------------------------------------------------------------------------

-- every function of the extension that is not written in C runs with a
-- fixed search_path (expected: none listed)
SELECT p.oid::regprocedure AS without_search_path
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'deploy_progress'
  JOIN pg_language l ON l.oid = p.prolang
 WHERE l.lanname <> 'c'
   AND NOT coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp']
 ORDER BY 1;

-- the functions that run with their owner's rights, and who may call them
SELECT p.oid::regprocedure AS security_definer,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'deploy_progress'
 WHERE p.prosecdef
 ORDER BY 1;

-- views read with the rights of the caller's privileges (a security
-- barrier keeps the side timings' filter ahead of a caller's functions)
SELECT c.oid::regclass AS view, c.reloptions
  FROM pg_class c
 WHERE c.relnamespace = 'deploy_progress'::regnamespace AND c.relkind = 'v'
 ORDER BY 1;

--------------------------------------------------------------------------
-- 2. the main functions, under three search_paths
--------------------------------------------------------------------------

-- (the passes run quietly: what they saw is shown below from sec_out, and
-- an error would still show)
CREATE TABLE sec_out (tag text, step text, val text, n serial);

\set tag baseline
\set ECHO none
\o /dev/null
\i test/include/security_scenario.sql
\o
\set ECHO all

SET search_path = '';
\set tag empty
\set ECHO none
\o /dev/null
\i test/include/security_scenario.sql
\o
\set ECHO all
RESET search_path;

-- what the baseline pass saw
SELECT step, val FROM sec_out WHERE tag = 'baseline' ORDER BY n;

--------------------------------------------------------------------------
-- 3. a hostile role plants look-alikes in public
--------------------------------------------------------------------------

-- Each look-alike records its call in sec_calls and raises a NOTICE; where
-- it returns a value, the value is wrong.  Some are exact matches of
-- built-ins (they win when public comes first in the search_path), some
-- are closer matches than polymorphic or "any" built-ins (they would win
-- anywhere public is searched at all).
CREATE TABLE sec_calls (fn text);
GRANT INSERT ON sec_calls TO PUBLIC;
CREATE ROLE sec_hostile;
GRANT CREATE ON SCHEMA public TO sec_hostile;
SET ROLE sec_hostile;
CREATE FUNCTION public.sec_called(fn text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    RAISE NOTICE 'hostile % called', fn;
    INSERT INTO public.sec_calls VALUES (fn);
END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('now()'); RETURN '1999-01-01'; END $$;
CREATE FUNCTION public.format(text, text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('format(text, text)'); RETURN 'hostile'; END $$;
CREATE FUNCTION public.format(text, text, text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('format(text, text, text)'); RETURN 'hostile'; END $$;
CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('quote_ident(name)'); RETURN 'hostile'; END $$;
CREATE FUNCTION public.left(name, integer) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('left(name, integer)'); RETURN 'hostile'; END $$;
CREATE FUNCTION public.cardinality(name[]) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('cardinality(name[])'); RETURN 99; END $$;
CREATE FUNCTION public.array_to_string(name[], text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('array_to_string(name[], text)'); RETURN 'hostile'; END $$;
CREATE FUNCTION public.array_position(text[], text) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('array_position(text[], text)'); RETURN 1; END $$;
CREATE FUNCTION public.unnest(name[]) RETURNS SETOF name LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('unnest(name[])'); RETURN NEXT 'hostile'; END $$;
CREATE FUNCTION public.has_table_privilege(regclass, text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('has_table_privilege(regclass, text)'); RETURN true; END $$;
CREATE FUNCTION public.date_part(text, interval) RETURNS double precision LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('date_part(text, interval)'); RETURN -1; END $$;
CREATE FUNCTION public.coalesce(text, text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('coalesce(text, text)'); RETURN 'hostile'; END $$;
CREATE FUNCTION public.sec_agg_step(text[], text) RETURNS text[] LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('array_agg(text)'); RETURN ARRAY['hostile']; END $$;
CREATE AGGREGATE public.array_agg(text) (sfunc = public.sec_agg_step, stype = text[]);
-- operators on text, name, regclass, the phase enum and timestamps
CREATE FUNCTION public.sec_text_eq(text, text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('text = text'); RETURN $1 IS DISTINCT FROM $2; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.sec_text_eq);
CREATE FUNCTION public.sec_text_ne(text, text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('text <> text'); RETURN $1 IS NOT DISTINCT FROM $2; END $$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.sec_text_ne);
CREATE FUNCTION public.sec_text_cat(text, text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('text || text'); RETURN 'hostile'; END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = public.sec_text_cat);
CREATE FUNCTION public.sec_name_eq(name, name) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('name = name'); RETURN $1 IS DISTINCT FROM $2; END $$;
CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = name, FUNCTION = public.sec_name_eq);
CREATE FUNCTION public.sec_regclass_eq(regclass, regclass) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('regclass = regclass'); RETURN $1 IS DISTINCT FROM $2; END $$;
CREATE OPERATOR public.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = public.sec_regclass_eq);
CREATE FUNCTION public.sec_phase_eq(deploy_progress.phase, deploy_progress.phase) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('phase = phase'); RETURN $1 IS DISTINCT FROM $2; END $$;
CREATE OPERATOR public.= (LEFTARG = deploy_progress.phase, RIGHTARG = deploy_progress.phase, FUNCTION = public.sec_phase_eq);
CREATE FUNCTION public.sec_phase_ne(deploy_progress.phase, deploy_progress.phase) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('phase <> phase'); RETURN $1 IS NOT DISTINCT FROM $2; END $$;
CREATE OPERATOR public.<> (LEFTARG = deploy_progress.phase, RIGHTARG = deploy_progress.phase, FUNCTION = public.sec_phase_ne);
CREATE FUNCTION public.sec_ts_plus(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('timestamptz + interval'); RETURN 'infinity'; END $$;
CREATE OPERATOR public.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = public.sec_ts_plus);
CREATE FUNCTION public.sec_ts_lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.sec_called('timestamptz < timestamptz'); RETURN true; END $$;
CREATE OPERATOR public.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.sec_ts_lt);
RESET ROLE;
-- the look-alikes work: called directly, they record their call
SET search_path = public, pg_catalog;
SELECT 'a'::text = 'a'::text AS hostile_equal, now() AS hostile_now;
RESET search_path;
SELECT fn FROM sec_calls ORDER BY fn;
TRUNCATE sec_calls;

-- a session whose search_path puts public first, with functions of its
-- own in pg_temp besides (never searched for functions), runs the same pass
CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '1999-01-01'::timestamptz $$;
CREATE FUNCTION pg_temp.format(text, text) RETURNS text LANGUAGE sql AS $$ SELECT 'hostile'::text $$;
SET search_path = public, pg_catalog;
\set tag hostile
\set ECHO none
\o /dev/null
\i test/include/security_scenario.sql
\o
\set ECHO all
RESET search_path;

-- no look-alike was called, and every pass saw the same (table names are
-- qualified or not depending on the search_path, so compared without)
SELECT count(*) AS hostile_calls FROM sec_calls;
SELECT tag, count(*) AS results FROM sec_out GROUP BY tag ORDER BY tag;
SELECT o.tag, o.step, replace(o.val, 'public.', '') AS differs
  FROM sec_out o
 WHERE o.tag <> 'baseline'
   AND (o.step, replace(o.val, 'public.', '')) NOT IN (SELECT b.step, replace(b.val, 'public.', '') FROM sec_out b WHERE b.tag = 'baseline')
 ORDER BY o.n;

--------------------------------------------------------------------------
-- 4. the hostile role's own session: temporary look-alikes
--------------------------------------------------------------------------

-- The functions that run with raised rights (the side-table trigger
-- writes as the side table's owner, the sql_drop event trigger and
-- _forget_timings() are security definers) run in the session of whoever
-- sets them off, with that session's temporary schema in their
-- search_path.  Temporary tables named like the extension's, and a
-- search_path that puts pg_temp first, catch nothing.
GRANT USAGE ON SCHEMA public TO sec_hostile;
SET ROLE sec_hostile;
CREATE TABLE public.sec_mine (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT storage FROM deploy_progress.track('public.sec_mine');
CREATE TEMP TABLE timings (relid regclass, key text);
CREATE TEMP TABLE tracked (relid regclass);
CREATE TEMP TABLE lifecycle_phases (lifecycle text, phase text, kind text, position integer);
CREATE TEMP TABLE pg_settings (name text);
SET search_path = pg_temp, public, pg_catalog;
INSERT INTO public.sec_mine VALUES (1, 'queued'), (2, 'building');
UPDATE public.sec_mine SET phase = 'succeeded' WHERE id = 2;
SELECT deploy_progress._forget_timings('public.sec_mine');
SELECT count(*) AS failed FROM deploy_progress.fail_stuck('public.sec_mine');
CREATE TABLE public.sec_dropped (id integer);
DROP TABLE public.sec_dropped;
RESET search_path;
-- (public is in the default search_path, and the look-alike regclass = is
-- a closer match than the built-in oid =: this test's own queries qualify)
SELECT key, started_at IS NOT NULL AS started, finished_at IS NOT NULL AS finished
  FROM deploy_progress.side_timings WHERE relid OPERATOR(pg_catalog.=) 'sec_mine'::regclass ORDER BY key;
SELECT (SELECT count(*) FROM pg_temp.timings) + (SELECT count(*) FROM pg_temp.tracked)
       + (SELECT count(*) FROM pg_temp.lifecycle_phases) + (SELECT count(*) FROM pg_temp.pg_settings) AS temp_rows;
SELECT 'public.sec_mine'::regclass::oid AS sec_mine \gset
DROP TABLE public.sec_mine;
RESET ROLE;
SELECT count(*) AS hostile_calls FROM sec_calls;
SELECT count(*) AS left_behind FROM deploy_progress.timings WHERE relid::oid OPERATOR(pg_catalog.=) :sec_mine;

--------------------------------------------------------------------------
-- 5. not trusted: a database owner who is not a superuser cannot install
--------------------------------------------------------------------------

-- Were it trusted, the script would run as a superuser but the schema
-- deploy_progress would be created by, and belong to, the installing
-- role, who could rename it and create a look-alike schema whose tables
-- the side-table trigger and the sql_drop event trigger (running as a
-- superuser) would then write, with triggers of that role's choosing.
SELECT version, superuser, trusted FROM pg_available_extension_versions WHERE name = 'deploy_progress' ORDER BY version;
CREATE ROLE sec_dbowner;
CREATE DATABASE sec_db OWNER sec_dbowner;
\c sec_db
SET ROLE sec_dbowner;
CREATE EXTENSION deploy_progress;
RESET ROLE;
-- nor will a superuser install it into a schema such a role owns
CREATE SCHEMA deploy_progress AUTHORIZATION sec_dbowner;
CREATE EXTENSION deploy_progress;
ALTER SCHEMA deploy_progress OWNER TO CURRENT_USER;
CREATE EXTENSION deploy_progress;
SELECT extname, extversion FROM pg_extension WHERE extname = 'deploy_progress';
\c contrib_regression
DROP DATABASE sec_db;
DROP ROLE sec_dbowner;

DROP OWNED BY sec_hostile;
REVOKE ALL ON SCHEMA public FROM sec_hostile;
DROP ROLE sec_hostile;
DROP TABLE sec_out, sec_calls;
