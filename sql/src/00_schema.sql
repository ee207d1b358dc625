-- deploy_progress: phase, timing, progress and stuck-row tracking for
-- deployment and job tables.
--
-- This is the living source of the current install script.  The Makefile
-- concatenates sql/src/NN_<concern>.sql, in order, into
-- sql/deploy_progress--<default_version>.sql; released scripts are frozen
-- and each release adds one hand-written update script.  The parts:
--
--   00_schema        the schema check, phase kinds, stuck reasons, shared helpers
--   10_lifecycles    the phase type, lifecycles and their guards
--   20_tracking      column roles, the tracked table, track(), untrack(), side storage
--   30_figures       percent, speeds, ETA, overall progress (C)
--   40_rows          the row generator every reader takes its columns and figures from
--   50_stuck         the in-flight index, stuck(), fail_stuck()
--   60_in_flight     the in-flight view
--   70_history       transition history, events, statistics, timeline, steps, prune
--   80_metrics       the metrics view and its Prometheus rendering
--   90_dump_access   what a database owner needs to dump the database
--
-- Every object is created in @extschema@ (the control file fixes it to
-- deploy_progress).  Functions written in SQL or PL/pgSQL run with a fixed
-- search_path and qualify what they use, so objects a role creates in
-- another schema cannot change what the extension does.

\echo Use "CREATE EXTENSION deploy_progress" to load this file. \quit

-- The triggers and the event trigger run with the rights of the
-- extension's owner and find its objects by schema-qualified name, so the
-- schema must not belong to a role that could rename it and plant
-- look-alikes: refuse a schema that a role other than a superuser owns.
DO $$
DECLARE
    owner_name pg_catalog.text;
BEGIN
    SELECT r.rolname INTO owner_name
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
     WHERE n.nspname OPERATOR(pg_catalog.=) '@extschema@' AND NOT r.rolsuper;
    IF owner_name IS NOT NULL THEN
        RAISE EXCEPTION 'schema "@extschema@" is owned by role "%", which is not a superuser', owner_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The extension runs code with elevated rights that refers to the objects of its schema by name; the owner of the schema could replace them.',
                  HINT = 'Drop the schema, or give it to a superuser with ALTER SCHEMA ... OWNER TO, before CREATE EXTENSION.';
    END IF;
END
$$;

GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

--------------------------------------------------------------------------
-- Phase kinds and stuck reasons: defined here once, used everywhere
--------------------------------------------------------------------------

-- The phase kinds, in order, or those of one class:
--   all          every kind
--   terminal     succeeded, failed, cancelled: the row is done
--   in_flight    pending, active, waiting: the row is not done
--   unsuccessful failed, cancelled: the row ended without succeeding
--   clocked      pending, active: deadlines apply
-- (src/track_cache.c has the same names, in the same order, for the C.)
CREATE OR REPLACE FUNCTION @extschema@._kinds(class text DEFAULT 'all')
RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.array_agg(k.kind ORDER BY k.ord)
      FROM (VALUES (1, 'pending',   false, false, true),
                   (2, 'active',    false, false, true),
                   (3, 'waiting',   false, false, false),
                   (4, 'succeeded', true,  false, false),
                   (5, 'failed',    true,  true,  false),
                   (6, 'cancelled', true,  true,  false))
           AS k(ord, kind, terminal, unsuccessful, clocked)
     WHERE CASE class WHEN 'all' THEN true
                      WHEN 'terminal' THEN k.terminal
                      WHEN 'in_flight' THEN NOT k.terminal
                      WHEN 'unsuccessful' THEN k.unsuccessful
                      WHEN 'clocked' THEN k.clocked
           END
$$;
COMMENT ON FUNCTION @extschema@._kinds(text) IS
    'Internal: the phase kinds in order, all or of one class (terminal, in_flight, unsuccessful, clocked)';

-- The reasons a row can be stuck, in order of priority: the kind of phase
-- the reason applies to (NULL: every in-flight kind), the timing role whose
-- time starts its clock, and the tracked option holding its deadline (the
-- phase's own deadline when that option is NULL and phase_deadline says
-- so; no option at all: no deadline).  A row is stuck when its clock plus
-- the deadline is strictly before the time asked about.  owner_gone's
-- clock, claimed_at, is the time of the row's claim when its owner session
-- has ended, else NULL (55_claims.sql).
CREATE OR REPLACE FUNCTION @extschema@._stuck_reasons()
RETURNS TABLE (priority integer, reason text, kind text, clock text, deadline text, phase_deadline boolean)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES (1, 'owner_gone',    NULL,      'claimed_at',          NULL,                 false),
           (2, 'no_heartbeat',  'active',  'heartbeat_at',        'heartbeat_deadline', false),
           (3, 'no_progress',   'active',  'progress_updated_at', 'progress_deadline',  false),
           (4, 'phase_overdue', 'active',  'phase_updated_at',    'phase_deadline',     true),
           (5, 'queue_overdue', 'pending', 'phase_updated_at',    'queue_deadline',     true)
$$;
COMMENT ON FUNCTION @extschema@._stuck_reasons() IS
    'Internal: the stuck reasons in order of priority, with the kind of phase each applies to, its clock (a timing role) and its deadline (a tracked option)';

-- The readers measure ages and deadlines from as_of: an infinite as_of has
-- none.  PostgreSQL 17 and later would compute infinite intervals where
-- earlier versions raise halfway; this gives the same error on every
-- version, checked before anything is read.  (NULL passes.)
CREATE OR REPLACE FUNCTION @extschema@._check_as_of(as_of timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT isfinite(as_of) THEN
        RAISE EXCEPTION 'as_of must be a finite time'
            USING ERRCODE = 'datetime_field_overflow',
                  DETAIL = format('The value given is %s.', as_of),
                  HINT = 'Pass a time such as now() or now() + interval ''1 hour''.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._check_as_of(timestamptz) IS
    'Internal: refuses an infinite as_of of a reader (22008)';

-- The error of an age measured from an infinite stamp of a row (-infinity,
-- written with stamping off): the same on every version (PostgreSQL 17 and
-- later would give an infinite age, earlier versions "cannot subtract
-- infinite timestamps").  The generated SQL calls it only for such a row.
CREATE OR REPLACE FUNCTION @extschema@._infinite_stamp(key text, role text, value timestamptz)
RETURNS interval
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'the row with key % has an infinite %', quote_literal(key), role
        USING ERRCODE = 'datetime_field_overflow',
              DETAIL = format('%s is %s: no age or deadline is measured from an infinite time.', role, value),
              HINT = format('Set %s of the row to a finite time, or to NULL.', role);
END
$$;
COMMENT ON FUNCTION @extschema@._infinite_stamp(text, text, timestamptz) IS
    'Internal: raises the error (22008) of an age measured from an infinite stamp of a row';

--------------------------------------------------------------------------
-- Shared helpers
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION @extschema@._invalidate(regclass)
RETURNS void
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'dp_invalidate';
COMMENT ON FUNCTION @extschema@._invalidate(regclass) IS
    'Internal: makes every session reload the tracking configuration of a table at its next write';

-- Whether the current role may administer a table: it exists and the role
-- owns it (or is a member of the owning role).  An OID that names no
-- relation is owned by nobody: configuration for a table that does not
-- exist yet could otherwise be planted for the next table created with
-- that OID.  (Leftovers of a table that is gone may still be removed: see
-- _guard_tracked() and untrack().)
CREATE OR REPLACE FUNCTION @extschema@._owns(rel regclass)
RETURNS boolean
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
                       FROM pg_catalog.pg_class c
                      WHERE c.oid OPERATOR(pg_catalog.=) rel), false)
$$;
COMMENT ON FUNCTION @extschema@._owns(regclass) IS
    'Internal: whether the table exists and the current role owns it';

-- Whether the current role may remove what the extension keeps of a table:
-- it owns the table, or the table is gone.
CREATE OR REPLACE FUNCTION @extschema@._may_forget(rel regclass)
RETURNS boolean
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._owns(rel)
           OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) rel)
$$;
COMMENT ON FUNCTION @extschema@._may_forget(regclass) IS
    'Internal: whether the current role owns the table or the table no longer exists';

-- Type of a column of a table, NULL when there is no such (live) column.
CREATE OR REPLACE FUNCTION @extschema@._column_type(rel regclass, col name)
RETURNS regtype
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.atttypid::pg_catalog.regtype
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) rel
       AND a.attname OPERATOR(pg_catalog.=) col
       AND a.attnum OPERATOR(pg_catalog.>) 0
       AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION @extschema@._column_type(regclass, name) IS
    'Internal: the type of a column, NULL when the table has no such column';
