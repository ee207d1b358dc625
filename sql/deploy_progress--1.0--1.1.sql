-- deploy_progress 1.0 -> 1.1
--
-- Written by hand: the current definitions live in sql/src/*.sql, and
-- test/t/012_upgrade.pl proves that 1.0 plus this script gives what a
-- fresh install of 1.1 gives, object by object.  What changes:
--
--   * phase kinds and stuck reasons are defined once (_kinds(),
--     _stuck_reasons()); lifecycle_phases.kind is checked against _kinds()
--   * lifecycle phases take a UI step label (lifecycle_phases.step,
--     define_lifecycle()'s "step"); steps() lists steps, not phases
--   * column roles get a catalogue, deploy_progress.column_roles, and the
--     tracking configuration maps role names to column names in
--     tracked.columns (jsonb) instead of ten *_column columns; existing
--     rows are migrated
--   * track() takes "columns" for any role of the catalogue
--   * timing columns may be timestamp (without time zone), read and stamped
--     in the table's time zone (tracked.time_zone, track(..., time_zone))
--   * a percent column role for tables without counters, and what a write
--     moving a row back does (tracked.backward_moves, track(..., backward_moves))
--   * every reader takes its columns and figures from one row generator
--     (_rows_sql(), _figures_sql())
--   * side rows record the partition they were written in
--     (timings.partition), filled in for the rows 1.0 wrote
--   * history rows record their transaction (history.txid), the order of
--     the durable event stream events_since()
--   * phase estimates for the whole run's ETA (phase_estimates,
--     refresh_estimates(); in_flight and progress() gain overall_eta)
--   * the stamp trigger of a tracked table carries its configuration as
--     its argument (confirmed by the trigger's comment), and recreates it
--     after a schema-only restore; existing triggers are rewritten
--   * owners and leases: claim(), release(), the claims table and the
--     owners view; the stuck reason owner_gone, first in priority

\echo Use "ALTER EXTENSION deploy_progress UPDATE TO '1.1'" to load this file. \quit

--------------------------------------------------------------------------
-- Phase kinds and stuck reasons
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

ALTER TABLE @extschema@.lifecycle_phases
    DROP CONSTRAINT lifecycle_phases_kind_check,
    ADD CONSTRAINT lifecycle_phases_kind_check CHECK (kind OPERATOR(pg_catalog.=) ANY (@extschema@._kinds()));

-- UI step labels: consecutive phases with one label are one step of steps();
-- the built-in lifecycle's phases get human ones
ALTER TABLE @extschema@.lifecycle_phases
    ADD COLUMN step text
        CHECK (step OPERATOR(pg_catalog.<>) '' AND pg_catalog.char_length(step) OPERATOR(pg_catalog.<=) 100);
COMMENT ON TABLE @extschema@.lifecycle_phases IS
    'One row per phase of a lifecycle: its position, kind (pending, active, waiting, succeeded, failed, cancelled), weight in overall progress, optional deadline and optional UI step label (consecutive phases with one label are one step of steps())';
UPDATE @extschema@.lifecycle_phases p
   SET step = l.step
  FROM (VALUES ('queued', 'Queued'), ('preparing', 'Preparing'), ('fetching', 'Fetching sources'),
               ('building', 'Building'), ('transferring', 'Transferring'), ('migrating', 'Migrating'),
               ('starting', 'Starting'), ('health_check', 'Health check'), ('finishing', 'Finishing'),
               ('succeeded', 'Done')) AS l(phase, step)
 WHERE p.lifecycle OPERATOR(pg_catalog.=) 'default' AND p.phase OPERATOR(pg_catalog.=) l.phase;

--------------------------------------------------------------------------
-- Column roles and the tracking configuration
--------------------------------------------------------------------------

CREATE TABLE @extschema@.column_roles (
    role        name PRIMARY KEY,
    position    integer NOT NULL UNIQUE,
    types       regtype[] NOT NULL,
    types_text  text NOT NULL,
    value_type  regtype NOT NULL,
    under_side  text NOT NULL CHECK (under_side OPERATOR(pg_catalog.=) ANY (ARRAY['row', 'side', 'none'])),
    description text NOT NULL
);
COMMENT ON TABLE @extschema@.column_roles IS
    'The roles a tracked table''s columns can play besides the phase: accepted column types, the type readers give, and where the value is kept under side storage (row: the table''s column; side: deploy_progress.timings; none: not kept)';

INSERT INTO @extschema@.column_roles (role, position, types, types_text, value_type, under_side, description)
VALUES
    ('completed_items',      1, '{smallint,integer,bigint}', 'smallint, integer or bigint', 'bigint', 'row',
     'Items done in the current phase'),
    ('total_items',          2, '{smallint,integer,bigint}', 'smallint, integer or bigint', 'bigint', 'row',
     'Items to do in the current phase'),
    ('phase_updated_at',     3, '{timestamptz}', 'timestamp with time zone', 'timestamptz', 'side',
     'When the row entered its phase'),
    ('progress_updated_at',  4, '{timestamptz}', 'timestamp with time zone', 'timestamptz', 'side',
     'When the row last changed phase or counters'),
    ('heartbeat_at',         5, '{timestamptz}', 'timestamp with time zone', 'timestamptz', 'side',
     'When the row was last written'),
    ('started_at',           6, '{timestamptz}', 'timestamp with time zone', 'timestamptz', 'side',
     'When the row first entered an active phase'),
    ('finished_at',          7, '{timestamptz}', 'timestamp with time zone', 'timestamptz', 'side',
     'When the row entered a terminal phase'),
    ('items_per_second',     8, '{double precision}', 'double precision', 'double precision', 'none',
     'The smoothed speed the trigger keeps'),
    ('speed_updated_at',     9, '{timestamptz}', 'timestamp with time zone', 'timestamptz', 'none',
     'When the smoothed speed was last updated'),
    ('failure_reason',      10, '{text,character varying}', 'text or varchar', 'text', 'row',
     'Why the row failed (written by fail_stuck())');
GRANT SELECT ON @extschema@.column_roles TO PUBLIC;

-- one map of role names to column names instead of a column per role; the
-- guard trigger makes every session reload each table's configuration
ALTER TABLE @extschema@.tracked
    ADD COLUMN columns jsonb NOT NULL DEFAULT '{}'
        CHECK (pg_catalog.jsonb_typeof(columns) OPERATOR(pg_catalog.=) 'object');
UPDATE @extschema@.tracked
   SET columns = pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
           'completed_items', completed_column, 'total_items', total_column,
           'phase_updated_at', phase_updated_column, 'progress_updated_at', progress_updated_column,
           'heartbeat_at', heartbeat_column, 'started_at', started_column, 'finished_at', finished_column,
           'items_per_second', speed_column, 'speed_updated_at', speed_updated_column,
           'failure_reason', reason_column));
ALTER TABLE @extschema@.tracked
    DROP COLUMN completed_column, DROP COLUMN total_column,
    DROP COLUMN phase_updated_column, DROP COLUMN progress_updated_column,
    DROP COLUMN heartbeat_column, DROP COLUMN started_column, DROP COLUMN finished_column,
    DROP COLUMN speed_column, DROP COLUMN speed_updated_column, DROP COLUMN reason_column;
COMMENT ON TABLE @extschema@.tracked IS
    'One row per tracked table: its lifecycle, phase column, options and, in "columns", the column playing each role of deploy_progress.column_roles (roles the table lacks are absent); written by track() and untrack()';

-- timing columns may be timestamp (without time zone), holding local times
-- of the table's time zone; the tables 1.0 tracked have timestamptz ones
UPDATE @extschema@.column_roles
   SET types = '{timestamptz,timestamp}', types_text = 'timestamp with or without time zone'
 WHERE types OPERATOR(pg_catalog.=) '{timestamptz}'::pg_catalog.regtype[];
ALTER TABLE @extschema@.tracked
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
COMMENT ON COLUMN @extschema@.tracked.time_zone IS
    'The time zone whose local time the table''s timestamp (without time zone) timing columns hold';

-- a percent column for tables without counters
INSERT INTO @extschema@.column_roles (role, position, types, types_text, value_type, under_side, description)
VALUES
    ('percent',             11, '{smallint,integer,bigint,numeric,real,double precision}',
     'smallint, integer, bigint, numeric, real or double precision', 'double precision', 'row',
     'How much of the current phase is done, 0..100, for a table without counters');

-- the worker's status line, details and a human name for the row
INSERT INTO @extschema@.column_roles (role, position, types, types_text, value_type, under_side, description)
VALUES
    ('message',             12, '{text,character varying}', 'text or varchar', 'text', 'row',
     'The worker''s status line, kept with each transition and carried by events'),
    ('metadata',            13, '{jsonb}', 'jsonb', 'jsonb', 'row',
     'Details of the row, kept with each transition (never in events)'),
    ('label',               14, '{text,character varying}', 'text or varchar', 'text', 'row',
     'A human name for the row, shown instead of its key');

-- what a late or out-of-order phase write does; 1.0 applied it
ALTER TABLE @extschema@.tracked
    ADD COLUMN backward_moves text NOT NULL DEFAULT 'allow'
        CHECK (backward_moves OPERATOR(pg_catalog.=) ANY (ARRAY['allow', 'error', 'ignore']));
COMMENT ON COLUMN @extschema@.tracked.backward_moves IS
    'What a write that moves a row back to an earlier pending or active phase, or out of a terminal phase without allow_restart, does: allow (restarts aside, it is applied), error (refused) or ignore (the row keeps its phase, the rest of the write applies)';

--------------------------------------------------------------------------
-- What is kept of dropped tables never attaches to another table
--------------------------------------------------------------------------

-- the history of a dropped table keeps its name, not its OID
ALTER TABLE @extschema@.history
    ALTER COLUMN relid DROP NOT NULL,
    ADD COLUMN dropped_table text;
COMMENT ON TABLE @extschema@.history IS
    'Transition log of the tracked tables: one row per phase entered (from_phase NULL for an INSERT), written by the record_transition() trigger; read it through the transitions view. The rows of a dropped table keep its name in dropped_table and lose their relid, so that they never attach to a table that later gets the same OID';
-- 1.0 kept the OIDs of dropped tables (and of temporary tables, whose end
-- fires no event trigger): detach or remove what refers to no relation now
UPDATE @extschema@.history h
   SET relid = NULL, dropped_table = pg_catalog.format('(dropped table with OID %s)', h.relid::pg_catalog.oid)
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) h.relid);
DELETE FROM @extschema@.history_pruned p
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) p.relid);
DELETE FROM @extschema@.timings s
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) s.relid);
DELETE FROM @extschema@.tracked t
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.relid);

--------------------------------------------------------------------------
-- Side rows know their partition
--------------------------------------------------------------------------

ALTER TABLE @extschema@.timings ADD COLUMN partition regclass;
-- room on each page for heartbeats to stay HOT updates (pages written from now on)
ALTER TABLE @extschema@.timings SET (fillfactor = 90);
COMMENT ON COLUMN @extschema@.timings.partition IS
    'The partition the row was last written in (NULL for a table that is not partitioned): TRUNCATE, DROP TABLE and DETACH PARTITION of a partition remove its rows';
CREATE INDEX timings_partition_idx ON @extschema@.timings (partition) WHERE partition IS NOT NULL;
-- the side rows of partitioned tables written by 1.0: the partition of the
-- row with that key (the key text as the 1.0 triggers wrote it, through the
-- key types' output functions); a side row whose row is gone stays NULL
DO $dp$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tr.relid, tr.key_columns FROM @extschema@.tracked tr
               JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) tr.relid
              WHERE tr.storage OPERATOR(pg_catalog.=) 'side' AND c.relkind OPERATOR(pg_catalog.=) 'p'
    LOOP
        EXECUTE pg_catalog.format(
            'UPDATE @extschema@.timings s SET partition = r.tableoid::pg_catalog.regclass FROM %s r'
            ' WHERE s.relid OPERATOR(pg_catalog.=) %L::pg_catalog.regclass AND s.key OPERATOR(pg_catalog.=) %s',
            t.relid, t.relid,
            CASE WHEN pg_catalog.cardinality(t.key_columns) OPERATOR(pg_catalog.=) 1
                 THEN pg_catalog.format('pg_catalog.format(''%%s'', r.%I)', t.key_columns[1])
                 ELSE pg_catalog.format('pg_catalog.format(''%%s'', ROW(%s))',
                          (SELECT pg_catalog.string_agg(pg_catalog.format('r.%I', k), ', ')
                             FROM pg_catalog.unnest(t.key_columns) AS k))
            END);
    END LOOP;
END
$dp$;

-- Key texts no longer depend on the writer's settings
--------------------------------------------------------------------------

-- A value's text through its type's output function (format's %s), under
-- fixed settings, so that it is the same in every session: the key text of
-- a row whose key type's text depends on settings (a date's on DateStyle, a
-- timestamptz's on TimeZone, ...).  src/side.c sets the same ones.
CREATE OR REPLACE FUNCTION @extschema@._canonical_text(value anyelement)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET "DateStyle" = 'ISO, MDY'
SET "IntervalStyle" = 'postgres'
SET "TimeZone" = 'UTC'
SET extra_float_digits = 1
SET bytea_output = 'hex'
AS $$
    SELECT pg_catalog.format('%s', value)
$$;
COMMENT ON FUNCTION @extschema@._canonical_text(anyelement) IS
    'Internal: a value''s text under fixed DateStyle, IntervalStyle, TimeZone, extra_float_digits and bytea_output (the key text of a key whose type''s text depends on settings)';

-- Whether the text of a type may depend on settings: every type but the
-- built-in ones known not to, enums, and domains, arrays and composites of
-- those (dp_type_text_depends_on_settings() in src/util.c decides the same).
-- An array is what get_element_type() takes for one: on PostgreSQL 14 and
-- later a type whose subscript handler is array_subscript_handler, on 13
-- (no pg_type.typsubscript, hence to_jsonb()) one with an element type and
-- variable length.
CREATE OR REPLACE FUNCTION @extschema@._type_text_varies(typ regtype)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE parts(oid) AS (
        SELECT typ::pg_catalog.oid
        UNION
        SELECT n.oid
          FROM parts p
          JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) p.oid
         CROSS JOIN LATERAL (
               SELECT ty.typbasetype WHERE ty.typtype OPERATOR(pg_catalog.=) 'd'
               UNION ALL
               SELECT ty.typelem WHERE ty.typtype OPERATOR(pg_catalog.<>) 'd' AND coalesce((pg_catalog.to_jsonb(ty) OPERATOR(pg_catalog.->>) 'typsubscript') OPERATOR(pg_catalog.=) 'array_subscript_handler',
                                  ty.typelem OPERATOR(pg_catalog.<>) 0 AND ty.typlen OPERATOR(pg_catalog.=) -1)
               UNION ALL
               SELECT a.atttypid FROM pg_catalog.pg_attribute a
                WHERE ty.typtype OPERATOR(pg_catalog.=) 'c' AND a.attrelid OPERATOR(pg_catalog.=) ty.typrelid
                  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) AS n(oid)
    )
    SELECT EXISTS (
        SELECT FROM parts p JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) p.oid
         WHERE ty.typtype OPERATOR(pg_catalog.<>) ALL (ARRAY['d', 'c', 'e']::"char"[])
           AND NOT (coalesce((pg_catalog.to_jsonb(ty) OPERATOR(pg_catalog.->>) 'typsubscript') OPERATOR(pg_catalog.=) 'array_subscript_handler',
                                  ty.typelem OPERATOR(pg_catalog.<>) 0 AND ty.typlen OPERATOR(pg_catalog.=) -1))
           AND p.oid OPERATOR(pg_catalog.<>) ALL (ARRAY['boolean', '"char"', 'name', 'smallint', 'integer', 'bigint', 'oid',
                                                  'text', 'character', 'character varying', 'numeric', 'uuid']::pg_catalog.regtype[]::pg_catalog.oid[]))
$$;
COMMENT ON FUNCTION @extschema@._type_text_varies(regtype) IS
    'Internal: whether the text of a type''s values may depend on session settings (keys of such types are written under fixed ones)';

-- 1.0 filed side rows and history under the key's text in the writer's
-- session (DateStyle, TimeZone, ...); 1.1 files them under fixed settings.
-- The rows of single-column keys whose text varies are re-keyed, read in
-- this session's settings (the writers' when they are the server's); where
-- two texts name one row, the side row written last is kept.  A table whose
-- keys cannot be read so is left as it is, with a WARNING.
DO $$
DECLARE
    t   record;
BEGIN
    FOR t IN SELECT tr.relid, pg_catalog.format_type(a.atttypid, a.atttypmod) AS typ
               FROM @extschema@.tracked tr
               JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) tr.relid
                                            AND a.attname OPERATOR(pg_catalog.=) tr.key_columns[1]
              WHERE pg_catalog.cardinality(tr.key_columns) OPERATOR(pg_catalog.=) 1
                AND @extschema@._type_text_varies(a.atttypid::pg_catalog.regtype)
    LOOP
        BEGIN
            EXECUTE pg_catalog.format(
                'DELETE FROM @extschema@.timings s USING @extschema@.timings o'
                ' WHERE s.relid OPERATOR(pg_catalog.=) $1 AND o.relid OPERATOR(pg_catalog.=) $1'
                '   AND s.key OPERATOR(pg_catalog.<>) o.key'
                '   AND @extschema@._canonical_text(s.key::%1$s) OPERATOR(pg_catalog.=) @extschema@._canonical_text(o.key::%1$s)'
                '   AND (COALESCE(s.heartbeat_at, s.progress_updated_at, s.phase_updated_at), s.key)'
                '       OPERATOR(pg_catalog.<) (COALESCE(o.heartbeat_at, o.progress_updated_at, o.phase_updated_at), o.key)', t.typ)
            USING t.relid;
            EXECUTE pg_catalog.format(
                'UPDATE @extschema@.timings SET key = @extschema@._canonical_text(key::%1$s)'
                ' WHERE relid OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.<>) @extschema@._canonical_text(key::%1$s)', t.typ)
            USING t.relid;
            EXECUTE pg_catalog.format(
                'UPDATE @extschema@.history SET key = @extschema@._canonical_text(key::%1$s)'
                ' WHERE relid OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.<>) @extschema@._canonical_text(key::%1$s)', t.typ)
            USING t.relid;
        EXCEPTION WHEN data_exception THEN
            RAISE WARNING 'deploy_progress: the key texts of table % were left as they are', t.relid
                USING DETAIL = SQLERRM,
                      HINT = 'Its side timings and history may be filed under texts that no longer match its rows.';
        END;
    END LOOP;
END
$$;

--------------------------------------------------------------------------
-- The durable event stream: history rows know their transaction
--------------------------------------------------------------------------

-- (rows recorded before 1.1 keep a NULL txid and are not in the stream)
ALTER TABLE @extschema@.history ADD COLUMN txid bigint;
CREATE INDEX history_txid_brin ON @extschema@.history USING brin (txid);
COMMENT ON COLUMN @extschema@.history.txid IS
    'The id of the top-level transaction that recorded the row (pg_current_xact_id()), the order of the event stream; NULL for rows recorded before 1.1';

--------------------------------------------------------------------------
-- The ETA of a whole run: phase estimates learned from the history
--------------------------------------------------------------------------

CREATE TABLE @extschema@.phase_estimates (
    relid        regclass NOT NULL,
    phase        text NOT NULL,
    stays        bigint NOT NULL,     -- completed stays in the window
    quantiles    double precision[],  -- their durations in seconds at 0, 5, ..., 100 %
    visit_share  double precision NOT NULL,  -- share of the window's succeeded runs that visited it
    runs         bigint NOT NULL,     -- succeeded runs in the window
    computed_at  timestamptz NOT NULL,
    PRIMARY KEY (relid, phase)
);
COMMENT ON TABLE @extschema@.phase_estimates IS
    'Per tracked table and phase, learned from the history by refresh_estimates(): completed stays and their duration quantiles, and the share of succeeded runs that visited the phase; the readers'' whole-run ETA comes from it';
-- derived from the history: shown to the roles that may read the table,
-- and not where row-level security applies to them (the figures would
-- include rows they cannot see)
ALTER TABLE @extschema@.phase_estimates ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable ON @extschema@.phase_estimates FOR SELECT
    USING (pg_catalog.has_table_privilege(relid, 'SELECT') AND NOT pg_catalog.row_security_active(relid));
GRANT SELECT ON @extschema@.phase_estimates TO PUBLIC;

--------------------------------------------------------------------------
-- History rows keep the row's label, message and metadata
--------------------------------------------------------------------------

ALTER TABLE @extschema@.history
    ADD COLUMN label text,
    ADD COLUMN message text,
    ADD COLUMN metadata jsonb;
COMMENT ON COLUMN @extschema@.history.label IS
    'The row''s label (its label role column) as the transition wrote it, kept after the row is gone; NULL when the table has no label column';
COMMENT ON COLUMN @extschema@.history.message IS
    'The row''s message (its message role column) as the transition wrote it; NULL when the table has no message column';
COMMENT ON COLUMN @extschema@.history.metadata IS
    'The row''s metadata (its metadata role column) as the transition wrote it; never carried by events';

--------------------------------------------------------------------------
-- Stamp triggers carry the tracking configuration (schema-only dumps)
--------------------------------------------------------------------------

-- The argument of a trigger that has one (tgargs holds each argument
-- followed by a zero byte), NULL otherwise.
CREATE OR REPLACE FUNCTION @extschema@._trigger_arg(tgargs bytea, tgnargs smallint)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN tgnargs OPERATOR(pg_catalog.=) 1
                THEN pg_catalog.convert_from(pg_catalog.substr(tgargs, 1, pg_catalog.length(tgargs) OPERATOR(pg_catalog.-) 1),
                                             pg_catalog.getdatabaseencoding())
           END
$$;
COMMENT ON FUNCTION @extschema@._trigger_arg(bytea, smallint) IS
    'Internal: the text of the single argument of a trigger, NULL when it has not exactly one';

-- The comment of a stamp trigger whose argument is "arg": it confirms the
-- argument, since only the table's owner can comment on its triggers.
CREATE OR REPLACE FUNCTION @extschema@._trigger_comment(arg text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'deploy_progress: stamps the rows of this table; its argument is the table''s tracking configuration, '
           'restored from it by the first write after a schema-only restore (sha256 '
           OPERATOR(pg_catalog.||) pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(arg, pg_catalog.getdatabaseencoding())), 'hex')
           OPERATOR(pg_catalog.||) ')'
$$;
COMMENT ON FUNCTION @extschema@._trigger_comment(text) IS
    'Internal: the comment of a stamp trigger, with the checksum of its argument (only the table''s owner can write it)';

-- The argument of a tracked table's stamp trigger: {"v": 1, "tracked": the
-- tracked row but its relid, "phases": the phases of a lifecycle that is
-- not built in (as define_lifecycle() takes them)}; NULL when the table is
-- not tracked.  Written under fixed settings, so that it is the same text
-- in every session.
CREATE OR REPLACE FUNCTION @extschema@._trigger_config(tbl regclass)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET "IntervalStyle" = 'postgres'
SET extra_float_digits = 1
AS $$
    SELECT pg_catalog.jsonb_build_object(
               'v', 1,
               'tracked', pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.-) 'relid',
               'phases', (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.to_jsonb(p)
                                                          OPERATOR(pg_catalog.-) 'lifecycle' OPERATOR(pg_catalog.-) 'position')
                                                      ORDER BY p.position)
                            FROM @extschema@.lifecycle_phases p
                            JOIN @extschema@.lifecycles l ON l.name OPERATOR(pg_catalog.=) p.lifecycle
                           WHERE p.lifecycle OPERATOR(pg_catalog.=) t.lifecycle AND NOT l.builtin))::text
      FROM @extschema@.tracked t
     WHERE t.relid OPERATOR(pg_catalog.=) tbl
$$;
COMMENT ON FUNCTION @extschema@._trigger_config(regclass) IS
    'Internal: the tracking configuration of a table as its stamp trigger carries it (versioned JSON text), NULL when it is not tracked';

-- (Re)creates the stamp trigger of a table, with the table's configuration
-- as its argument and the comment that confirms it, or without argument
-- when the table is not tracked; leaves a trigger that is already so alone.
-- With the caller's rights: the caller owns the table.
CREATE OR REPLACE FUNCTION @extschema@._write_stamp_trigger(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (the stamp and history triggers on a Citus distributed table: see _citus_kind())
SET citus.enable_unsafe_triggers = on
AS $$
DECLARE
    arg text := @extschema@._trigger_config(tbl);
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_trigger tg
                WHERE tg.tgrelid = tbl AND tg.tgname = 'zz_deploy_progress_stamp' AND tg.tgparentid = 0
                  AND @extschema@._trigger_arg(tg.tgargs, tg.tgnargs) IS NOT DISTINCT FROM arg
                  AND obj_description(tg.oid, 'pg_trigger') IS NOT DISTINCT FROM @extschema@._trigger_comment(arg)) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_trigger tg
                WHERE tg.tgrelid = tbl AND tg.tgname = 'zz_deploy_progress_stamp' AND tg.tgparentid = 0) THEN
        EXECUTE format('DROP TRIGGER zz_deploy_progress_stamp ON %s', tbl);
    END IF;
    EXECUTE format('CREATE TRIGGER zz_deploy_progress_stamp BEFORE INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION @extschema@.stamp(%s)', tbl, coalesce(quote_literal(arg), ''));
    IF arg IS NOT NULL THEN
        EXECUTE format('COMMENT ON TRIGGER zz_deploy_progress_stamp ON %s IS %L', tbl, @extschema@._trigger_comment(arg));
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._write_stamp_trigger(regclass) IS
    'Internal: (re)creates the stamp trigger of a table with its tracking configuration as argument, confirmed by the trigger''s comment';

-- After a direct UPDATE or DELETE of deploy_progress.tracked (the guard has
-- checked that the caller owns the table): the stamp trigger follows.
CREATE OR REPLACE FUNCTION @extschema@._sync_tracked()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT DISTINCT r.relid FROM (VALUES (OLD.relid), (CASE TG_OP WHEN 'UPDATE' THEN NEW.relid END)) AS r(relid)
                WHERE EXISTS (SELECT FROM pg_catalog.pg_trigger tg
                               WHERE tg.tgrelid = r.relid AND tg.tgname = 'zz_deploy_progress_stamp' AND tg.tgparentid = 0)
    LOOP
        PERFORM @extschema@._write_stamp_trigger(rel);
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@._sync_tracked() IS
    'Internal: rewrites the stamp trigger of a table whose tracked row was updated or deleted, so that its argument follows';

CREATE TRIGGER sync AFTER UPDATE OR DELETE ON @extschema@.tracked
    FOR EACH ROW EXECUTE FUNCTION @extschema@._sync_tracked();

-- the stamp triggers of the tables tracked under 1.0 get their argument
-- and comment (after every change above to the tracked table's shape)
DO $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT t.relid FROM @extschema@.tracked t
                WHERE EXISTS (SELECT FROM pg_catalog.pg_trigger tg
                               WHERE tg.tgrelid OPERATOR(pg_catalog.=) t.relid
                                 AND tg.tgname OPERATOR(pg_catalog.=) 'zz_deploy_progress_stamp'
                                 AND tg.tgparentid OPERATOR(pg_catalog.=) 0)
                ORDER BY t.relid::pg_catalog.oid
    LOOP
        PERFORM @extschema@._write_stamp_trigger(rel);
    END LOOP;
END
$$;

-- functions whose signature changes
DROP FUNCTION @extschema@.track(regclass, text, name, name, name, name, name, name, name, name, name, name, name[], text, boolean, interval, boolean, name, interval, interval, interval, interval, text, text, boolean);
DROP FUNCTION @extschema@._key_condition(@extschema@.tracked);
DROP FUNCTION @extschema@._rows_sql(@extschema@.tracked, text, text);
DROP FUNCTION @extschema@._check_readable(regclass);
-- the metrics view reads _table_metrics() instead of _in_flight_counts()
DROP VIEW @extschema@.metrics;
DROP FUNCTION @extschema@._in_flight_counts();
-- in_flight gains the label and message columns
DROP VIEW @extschema@.in_flight;
DROP FUNCTION @extschema@.in_flight(regclass, timestamptz);

--------------------------------------------------------------------------
-- Owners and leases: the claims table (55_claims.sql)
--------------------------------------------------------------------------

CREATE TABLE @extschema@.claims (
    relid           regclass NOT NULL,
    key             text NOT NULL,
    pid             integer NOT NULL,
    backend_start   timestamptz NOT NULL,
    claimed_at      timestamptz NOT NULL,
    PRIMARY KEY (relid, key)
);
COMMENT ON TABLE @extschema@.claims IS
    'The owners of claimed rows of tracked tables: the session (process ID and start time) that called claim() on the row, and when; written by claim() and the triggers as the extension''s owner, read through the owners view';

--------------------------------------------------------------------------
-- Functions and views as sql/src defines them in 1.1
--------------------------------------------------------------------------

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

-- Locks the tables tracked with a lifecycle against writes until the end
-- of the transaction (SHARE ROW EXCLUSIVE, as track() takes), for its
-- redefinition: with the caller's rights, so a role redefining a lifecycle
-- that another role's tables use needs a privilege that lets it lock them.
CREATE OR REPLACE FUNCTION @extschema@._lock_lifecycle_tables(lc text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT t.relid FROM @extschema@.tracked t
                 JOIN pg_catalog.pg_class c ON c.oid = t.relid
                WHERE t.lifecycle = lc ORDER BY t.relid::oid
    LOOP
        BEGIN
            EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', rel);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'cannot redefine lifecycle "%": table % uses it', lc, rel
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'A redefinition locks the tables that use the lifecycle against writes until it commits, and the current role may not lock that table.',
                      HINT = 'Redefine it as the table''s owner, or grant UPDATE on the table to the lifecycle''s owner.';
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@._lock_lifecycle_tables(text) IS
    'Internal: locks the tables tracked with a lifecycle against writes until the end of the transaction, for its redefinition';

CREATE OR REPLACE FUNCTION @extschema@.define_lifecycle(name text, phases jsonb)
RETURNS SETOF @extschema@.lifecycle_phases
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lc_name ALIAS FOR name;
    elem    jsonb;
    pos     integer := 0;
    pname   text;
    pkind   text;
    pweight double precision;
    pdeadline interval;
    pstep   text;
    seen    text[] := '{}';
    kinds   text[] := '{}';
    weights double precision[] := '{}';
    deadlines interval[] := '{}';
    step_labels text[] := '{}';
    split_step text;
    split_phases text;
    bad_key text;
    t       record;
    all_kinds text[] := @extschema@._kinds();
BEGIN
    IF lc_name IS NULL OR lc_name = '' OR octet_length(lc_name) > 63 THEN
        RAISE EXCEPTION 'invalid lifecycle name "%"', coalesce(lc_name, '(null)')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A lifecycle name is a non-empty string of at most 63 bytes.';
    END IF;
    IF phases IS NULL OR jsonb_typeof(phases) <> 'array' OR jsonb_array_length(phases) = 0 THEN
        RAISE EXCEPTION 'lifecycle "%" has no phases', lc_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The phases argument must be a non-empty JSON array of objects.',
                  HINT = 'Pass for example ''[{"phase": "queued", "kind": "pending"}, {"phase": "running", "kind": "active"}, {"phase": "done", "kind": "succeeded"}, {"phase": "failed", "kind": "failed"}]''.';
    END IF;

    FOR elem IN SELECT value FROM jsonb_array_elements(phases)
    LOOP
        pos := pos + 1;
        IF jsonb_typeof(elem) <> 'object' THEN
            RAISE EXCEPTION 'phase % of lifecycle "%" is not a JSON object', pos, lc_name
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Element %s is %s.', pos, elem),
                      HINT = 'Write each phase as {"phase": "name", "kind": "active", "weight": 1, "deadline": "10 minutes"}.';
        END IF;
        SELECT k INTO bad_key FROM jsonb_object_keys(elem) k
         WHERE k NOT IN ('phase', 'kind', 'weight', 'deadline', 'step') LIMIT 1;
        IF bad_key IS NOT NULL THEN
            RAISE EXCEPTION 'unknown key "%" in phase % of lifecycle "%"', bad_key, pos, lc_name
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The keys of a phase are phase, kind, weight, deadline and step.',
                      HINT = 'Write each phase as {"phase": "name", "kind": "active", "weight": 1, "deadline": "10 minutes", "step": "Building"}; all but phase and kind are optional.';
        END IF;
        IF jsonb_typeof(elem -> 'phase') IS DISTINCT FROM 'string' OR elem ->> 'phase' = ''
           OR octet_length(elem ->> 'phase') > 63 THEN
            RAISE EXCEPTION 'phase % of lifecycle "%" has no valid name', pos, lc_name
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Element %s is %s.', pos, elem),
                      HINT = 'Give each phase a "phase" key holding a non-empty string of at most 63 bytes.';
        END IF;
        pname := elem ->> 'phase';
        IF pname = ANY (seen) THEN
            RAISE EXCEPTION 'phase "%" appears twice in lifecycle "%"', pname, lc_name
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Phase names must be unique within a lifecycle.';
        END IF;
        pkind := elem ->> 'kind';
        IF pkind IS NULL OR NOT pkind = ANY (all_kinds) THEN
            RAISE EXCEPTION 'phase "%" of lifecycle "%" has an invalid kind "%"', pname, lc_name, coalesce(pkind, '(none)')
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The kinds are %s and %s.',
                                      array_to_string(all_kinds[1:cardinality(all_kinds) - 1], ', '),
                                      all_kinds[cardinality(all_kinds)]);
        END IF;
        IF elem ? 'weight' THEN
            IF jsonb_typeof(elem -> 'weight') <> 'number' THEN
                RAISE EXCEPTION 'phase "%" of lifecycle "%" has a weight that is not a number', pname, lc_name
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('The weight given is %s.', elem -> 'weight');
            END IF;
            BEGIN
                pweight := (elem ->> 'weight')::double precision;
            EXCEPTION WHEN numeric_value_out_of_range THEN
                pweight := 'Infinity';
            END;
            IF pweight < 0 OR pweight = 'Infinity' THEN
                RAISE EXCEPTION 'phase "%" of lifecycle "%" has %', pname, lc_name,
                                CASE WHEN pweight < 0 THEN 'a negative weight' ELSE 'too large a weight' END
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('The weight given is %s; weights must be finite and >= 0.', elem -> 'weight');
            END IF;
        ELSE
            -- by default every active phase counts the same in overall progress
            pweight := CASE WHEN pkind = 'active' THEN 1 ELSE 0 END;
        END IF;
        pdeadline := NULL;
        IF elem ? 'deadline' AND jsonb_typeof(elem -> 'deadline') <> 'null' THEN
            BEGIN
                pdeadline := (elem ->> 'deadline')::interval;
            EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
                pdeadline := NULL;
            END;
            IF pdeadline IS NULL OR pdeadline <= '0'::interval THEN
                RAISE EXCEPTION 'phase "%" of lifecycle "%" has an invalid deadline', pname, lc_name
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('The deadline given is %s.', elem -> 'deadline'),
                          HINT = 'Write a positive interval such as "10 minutes".';
            END IF;
        END IF;
        pstep := NULL;
        IF elem ? 'step' AND jsonb_typeof(elem -> 'step') <> 'null' THEN
            pstep := elem ->> 'step';
            IF jsonb_typeof(elem -> 'step') <> 'string' OR btrim(pstep) = '' OR char_length(pstep) > 100
               OR pstep ~ '[[:cntrl:]]' OR pstep <> btrim(pstep) THEN
                RAISE EXCEPTION 'phase "%" of lifecycle "%" has an invalid step label', pname, lc_name
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('The step given is %s.', elem -> 'step'),
                          HINT = 'A step label is a string of 1 to 100 characters without control characters or surrounding spaces, such as "Installing dependencies"; leave "step" out for a phase that is a step of its own.';
            END IF;
        END IF;
        seen := seen || pname;
        kinds := kinds || pkind;
        step_labels := step_labels || pstep;
        weights := weights || pweight;
        deadlines := deadlines || pdeadline;
    END LOOP;

    IF NOT 'succeeded' = ANY (kinds) OR NOT 'failed' = ANY (kinds) THEN
        RAISE EXCEPTION 'lifecycle "%" needs a succeeded phase and a failed phase', lc_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Its kinds are %s.', array_to_string(kinds, ', ')),
                  HINT = 'Add phases of kind "succeeded" and "failed": deployments must be able to end either way.';
    END IF;

    -- a UI step is one run of consecutive phases: among the phases steps()
    -- lists in order (all but failed and cancelled ones, and waiting ones
    -- without a label), a label may not come back after another step
    SELECT r.step, string_agg(format('"%s"', r.phase), ', ' ORDER BY r.ord)
      INTO split_step, split_phases
      FROM (SELECT u.*, lag(u.step) OVER (ORDER BY u.ord) AS prev
              FROM unnest(seen, kinds, step_labels) WITH ORDINALITY AS u(phase, kind, step, ord)
             WHERE u.kind NOT IN ('failed', 'cancelled') AND (u.kind <> 'waiting' OR u.step IS NOT NULL)) r
     WHERE r.step IS NOT NULL
     GROUP BY r.step
    HAVING count(*) FILTER (WHERE r.step IS DISTINCT FROM r.prev) > 1
     LIMIT 1;
    IF split_step IS NOT NULL THEN
        RAISE EXCEPTION 'step "%" of lifecycle "%" is split by other steps', split_step, lc_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Phases %s have that step label, but phases of other steps come between them.', split_phases),
                  HINT = 'Give the phases of one step consecutive positions, or give the parts different labels.';
    END IF;

    IF EXISTS (SELECT 1 FROM @extschema@.lifecycles l WHERE l.name = lc_name) THEN
        IF NOT @extschema@._may_edit_lifecycle(lc_name) THEN
            RAISE EXCEPTION 'must be owner of lifecycle "%"', lc_name
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Built-in lifecycles can only be changed by a superuser, others only by the role that defined them.',
                      HINT = 'Define a lifecycle of your own under another name.';
        END IF;
        -- keep the writers of the tables that use it out until this
        -- transaction ends, as track() does: a writer that went on with the
        -- old phases could commit a row in a phase the lifecycle loses
        PERFORM @extschema@._lock_lifecycle_tables(lc_name);
        DELETE FROM @extschema@.lifecycle_phases p WHERE p.lifecycle = lc_name;
    ELSE
        INSERT INTO @extschema@.lifecycles (name) VALUES (lc_name);
    END IF;
    INSERT INTO @extschema@.lifecycle_phases (lifecycle, position, phase, kind, weight, deadline, step)
    SELECT lc_name, u.ord, u.phase, u.kind, u.weight, u.deadline, u.step
      FROM unnest(seen, kinds, weights, deadlines, step_labels) WITH ORDINALITY AS u(phase, kind, weight, deadline, step, ord);

    -- tables already tracked with this lifecycle must still fit it
    FOR t IN SELECT tr.relid, tr.phase_column FROM @extschema@.tracked tr
              WHERE tr.lifecycle = lc_name
    LOOP
        PERFORM @extschema@._check_phase_values(t.relid, t.phase_column, lc_name);
    END LOOP;
    -- their stamp triggers carry the lifecycle's phases (schema-only dumps)
    PERFORM @extschema@._sync_stamp_triggers(lc_name);

    RETURN QUERY SELECT * FROM @extschema@.lifecycle_phases p
                  WHERE p.lifecycle = lc_name ORDER BY p.position;
END
$$;
COMMENT ON FUNCTION @extschema@.define_lifecycle(text, jsonb) IS
    'Defines (or redefines) a lifecycle from a JSON array of {"phase", "kind", "weight", "deadline", "step"} objects, in order';

CREATE OR REPLACE FUNCTION @extschema@._guard_tracked()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT @extschema@._may_forget(OLD.relid) THEN
        RAISE EXCEPTION 'must be owner of table %', OLD.relid
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only the owner of a table can change how it is tracked.';
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = NEW.relid) THEN
        RAISE EXCEPTION 'relation with OID % does not exist', NEW.relid::oid
            USING ERRCODE = 'undefined_table',
                  DETAIL = 'Tracking configuration can only describe an existing table.';
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NOT @extschema@._owns(NEW.relid) THEN
        RAISE EXCEPTION 'must be owner of table %', NEW.relid
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only the owner of a table can change how it is tracked.';
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM @extschema@._invalidate(OLD.relid)
           FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) OLD.relid;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM @extschema@._invalidate(NEW.relid);
        RETURN NEW;
    END IF;
    RETURN OLD;
END
$$;
COMMENT ON FUNCTION @extschema@._guard_tracked() IS
    'Internal: lets only a table''s owner write its tracking configuration, and makes sessions reload it';

-- The configuration of a tracked table (or, with ancestors, of the
-- partitioned table it is a partition of); the one place that reports a
-- table that is not tracked, with the caller's hint.
CREATE OR REPLACE FUNCTION @extschema@._config(tbl regclass,
                                               hint text DEFAULT 'Track it with deploy_progress.track() first.',
                                               ancestors boolean DEFAULT false,
                                               detail text DEFAULT NULL)
RETURNS @extschema@.tracked
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    SELECT tr.* INTO cfg
      FROM @extschema@.tracked tr
      JOIN (SELECT tbl, 0::bigint
            UNION ALL
            SELECT * FROM pg_partition_ancestors(tbl) WITH ORDINALITY WHERE ancestors) AS a(relid, ord)
        ON tr.relid = a.relid
     ORDER BY a.ord LIMIT 1;
    IF NOT FOUND THEN
        IF @extschema@._citus_kind(tbl) IS NOT DISTINCT FROM 'local' THEN
            -- (its configuration is under its shard: _citus_adopt_local())
            RAISE EXCEPTION 'table % is not tracked', tbl
                USING ERRCODE = 'undefined_object',
                      DETAIL = 'It is a Citus local table. If it was tracked before citus_add_local_table_to_metadata(), its tracking configuration is filed under its shard.',
                      HINT = 'Run deploy_progress.track() on the table again.';
        END IF;
        IF detail IS NULL THEN
            RAISE EXCEPTION 'table % is not tracked', tbl
                USING ERRCODE = 'undefined_object', HINT = hint;
        END IF;
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object', DETAIL = detail, HINT = hint;
    END IF;
    RETURN cfg;
END
$$;
COMMENT ON FUNCTION @extschema@._config(regclass, text, boolean, text) IS
    'Internal: the tracking configuration of a table (or of its nearest tracked ancestor), or an error with the given hint when it is not tracked';

-- Raises an error unless the caller can read a table; what is derived from
-- a table (timings, history, figures) is never visible wider than the table.
CREATE OR REPLACE FUNCTION @extschema@._check_readable(tbl regclass,
                                                       detail text DEFAULT 'The history of a table is visible to the roles that can read the table.')
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT has_table_privilege(tbl, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = detail;
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._check_readable(regclass, text) IS
    'Internal: raises an error unless the caller can read the table';

-- The column playing a role in a tracked table, NULL when it has none.
CREATE OR REPLACE FUNCTION @extschema@._role_column(cfg @extschema@.tracked, role text)
RETURNS name
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (cfg.columns OPERATOR(pg_catalog.->>) role)::pg_catalog.name
$$;
COMMENT ON FUNCTION @extschema@._role_column(@extschema@.tracked, text) IS
    'Internal: the column playing a role of deploy_progress.column_roles in a tracked table, NULL when it has none';

-- Removes the phase estimates (75_estimates.sql) of a table that is not
-- tracked, as its owner, for untrack().
CREATE OR REPLACE FUNCTION @extschema@._forget_estimates(tbl regclass)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM @extschema@.phase_estimates e
     WHERE e.relid OPERATOR(pg_catalog.=) tbl
       AND NOT EXISTS (SELECT 1 FROM @extschema@.tracked t WHERE t.relid OPERATOR(pg_catalog.=) tbl)
$$;
COMMENT ON FUNCTION @extschema@._forget_estimates(regclass) IS
    'Internal: removes the phase estimates of a table that is not tracked';

-- Raises an error unless a time zone name is one PostgreSQL knows, read as
-- the triggers and readers read it ("ts AT TIME ZONE zone").
CREATE OR REPLACE FUNCTION @extschema@._check_time_zone(zone text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF zone IS NULL THEN
        RAISE EXCEPTION 'time_zone must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Leave it out for UTC, or name a zone of pg_timezone_names such as ''Europe/Berlin''.';
    END IF;
    PERFORM pg_catalog.now() AT TIME ZONE zone;
EXCEPTION
    WHEN invalid_parameter_value OR feature_not_supported THEN
        RAISE EXCEPTION 'invalid time zone "%"', zone
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The time zone of timestamp (without time zone) timing columns must be a name PostgreSQL knows (pg_timezone_names, pg_timezone_abbrevs).',
                  HINT = 'Leave it out for UTC, or name a zone such as ''Europe/Berlin''.';
END
$$;
COMMENT ON FUNCTION @extschema@._check_time_zone(text) IS
    'Internal: raises an error unless a name is a time zone PostgreSQL knows';

-- How a caller of track() leaves a column role out: by the role's own
-- parameter (one of "params") set to NULL, or with a null in "columns".
CREATE OR REPLACE FUNCTION @extschema@._role_off(role text, params text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN role OPERATOR(pg_catalog.=) ANY (params) THEN pg_catalog.format('%s => NULL', role)
                ELSE pg_catalog.format('columns => ''{"%s": null}''', role) END
$$;
COMMENT ON FUNCTION @extschema@._role_off(text, text[]) IS
    'Internal: the argument of track() that leaves a column role out, for its hints';

-- What Citus makes of a table: 'distributed' (hash, range or append
-- distributed, or a single-shard table), 'reference', 'local' (a Citus
-- local table), NULL for a table Citus does not manage or without Citus.
-- Citus creates the triggers of a distributed table on each of its shards
-- only with citus.enable_unsafe_triggers on, which the functions that
-- create or drop our triggers set for their own duration (our triggers
-- touch the row and this node's deploy_progress tables only, which is what
-- the setting is about); src/track_cache.c configures a shard from its
-- stamp trigger's argument.
CREATE OR REPLACE FUNCTION @extschema@._citus_kind(tbl regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT CASE WHEN p.partmethod = ''n'' AND p.repmodel = ''t'' THEN ''reference'''
            '            WHEN p.partmethod = ''n'' AND p.colocationid = 0 THEN ''local'''
            '            ELSE ''distributed'' END'
            '  FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
       INTO kind USING tbl;
    RETURN kind;
END
$$;
COMMENT ON FUNCTION @extschema@._citus_kind(regclass) IS
    'Internal: what Citus makes of a table (distributed, reference, local), NULL when Citus does not manage it';

-- The distribution column of a Citus distributed table (NULL for a table
-- without one).
CREATE OR REPLACE FUNCTION @extschema@._citus_distribution_column(tbl regclass)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col name;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)'
            '  FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1 AND p.partkey IS NOT NULL'
       INTO col USING tbl;
    RETURN col;
END
$$;
COMMENT ON FUNCTION @extschema@._citus_distribution_column(regclass) IS
    'Internal: the distribution column of a Citus distributed table, NULL for other tables';

-- A table tracked before citus_add_local_table_to_metadata() made it a
-- Citus local table: Citus renamed the table itself (its OID) to the name
-- of the table's shard and created a new table under the old name, so what
-- the extension keeps of the table is under the shard's OID.  Moves its
-- configuration (unless the table has one of its own), history,
-- pruned-history totals, side timings, phase estimates and claims to the table, as
-- the extension's owner, and returns the shard (NULL when there is nothing
-- to adopt).  The shard is the one Citus' metadata gives for the table and
-- everything moves together, so the result is what the owner's track()
-- makes of it, and anyone may call it.
CREATE OR REPLACE FUNCTION @extschema@._citus_adopt_local(tbl regclass)
RETURNS regclass
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    shard regclass;
BEGIN
    IF @extschema@._citus_kind(tbl) IS DISTINCT FROM 'local' THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT pg_catalog.to_regclass(pg_catalog.shard_name(s.logicalrelid, s.shardid, false))'
            '  FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = $1'
       INTO shard USING tbl;
    IF shard IS NULL OR shard = tbl
       OR NOT EXISTS (SELECT FROM @extschema@.tracked t WHERE t.relid = shard) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT FROM @extschema@.tracked t WHERE t.relid = tbl) THEN
        DELETE FROM @extschema@.tracked t WHERE t.relid = shard;
    ELSE
        -- (_sync_tracked() rewrites the table's stamp trigger, and Citus its shard's)
        UPDATE @extschema@.tracked t SET relid = tbl WHERE t.relid = shard;
    END IF;
    UPDATE @extschema@.history h SET relid = tbl WHERE h.relid = shard;
    DELETE FROM @extschema@.history_pruned p WHERE p.relid = tbl;
    UPDATE @extschema@.history_pruned p SET relid = tbl WHERE p.relid = shard;
    DELETE FROM @extschema@.timings s WHERE s.relid = tbl;
    UPDATE @extschema@.timings s SET relid = tbl WHERE s.relid = shard;
    DELETE FROM @extschema@.phase_estimates e WHERE e.relid = tbl;
    UPDATE @extschema@.phase_estimates e SET relid = tbl WHERE e.relid = shard;
    DELETE FROM @extschema@.claims c WHERE c.relid = tbl;
    UPDATE @extschema@.claims c SET relid = tbl WHERE c.relid = shard;
    RETURN shard;
END
$$;
COMMENT ON FUNCTION @extschema@._citus_adopt_local(regclass) IS
    'Internal: moves the configuration and what the extension keeps of a table tracked before it became a Citus local table from its shard (which has the table''s old OID) to the table, and returns the shard';

CREATE OR REPLACE FUNCTION @extschema@.track(
    tbl                     regclass,
    lifecycle               text     DEFAULT NULL,
    phase                   name     DEFAULT 'phase',
    completed_items         name     DEFAULT 'completed_items',
    total_items             name     DEFAULT 'total_items',
    phase_updated_at        name     DEFAULT 'phase_updated_at',
    progress_updated_at     name     DEFAULT 'progress_updated_at',
    heartbeat_at            name     DEFAULT 'heartbeat_at',
    started_at              name     DEFAULT 'started_at',
    finished_at             name     DEFAULT 'finished_at',
    items_per_second        name     DEFAULT 'items_per_second',
    speed_updated_at        name     DEFAULT 'speed_updated_at',
    key                     name[]   DEFAULT NULL,
    storage                 text     DEFAULT 'auto',
    allow_restart           boolean  DEFAULT false,
    speed_time_constant     interval DEFAULT '15 seconds',
    validate                boolean  DEFAULT true,
    failure_reason          name     DEFAULT 'failure_reason',
    queue_deadline          interval DEFAULT NULL,
    phase_deadline          interval DEFAULT NULL,
    progress_deadline       interval DEFAULT '10 minutes',
    heartbeat_deadline      interval DEFAULT '5 minutes',
    history                 text     DEFAULT 'all',
    notify_channel          text     DEFAULT 'deploy_progress',
    create_index            boolean  DEFAULT true,
    columns                 jsonb    DEFAULT NULL,
    time_zone               text     DEFAULT 'UTC',
    backward_moves          text     DEFAULT 'allow')
RETURNS @extschema@.tracked
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (the stamp and history triggers on a Citus distributed table: see _citus_kind())
SET citus.enable_unsafe_triggers = on
AS $$
DECLARE
    cfg        @extschema@.tracked;
    prev       @extschema@.tracked;
    lc         text := lifecycle;
    typ        regtype;
    r          @extschema@.column_roles;
    col        name;
    -- the column named for each role: by its parameter of track(), or in
    -- "columns" for any role of deploy_progress.column_roles
    given      jsonb := pg_catalog.jsonb_build_object(
                   'completed_items', completed_items, 'total_items', total_items,
                   'phase_updated_at', phase_updated_at, 'progress_updated_at', progress_updated_at,
                   'heartbeat_at', heartbeat_at, 'started_at', started_at, 'finished_at', finished_at,
                   'items_per_second', items_per_second, 'speed_updated_at', speed_updated_at,
                   'failure_reason', failure_reason);
    -- the roles with a parameter of their own
    params     text[] := ARRAY(SELECT pg_catalog.jsonb_object_keys(given));
    resolved   jsonb := '{}';
    -- how the user leaves a role out: by its parameter, or in "columns"
    role_off   text;
    relkind    "char";
    k          name;
    bad        text;
    other      text;
    width      integer;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind INTO relkind FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    IF relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Only ordinary and partitioned tables can be tracked.';
    END IF;
    IF NOT @extschema@._owns(tbl) THEN
        RAISE EXCEPTION 'must be owner of table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only the owner of a table can track it.';
    END IF;
    IF @extschema@._citus_kind(tbl) = 'reference' THEN
        RAISE EXCEPTION 'cannot track reference table %', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Citus keeps a copy of a reference table on every node, and each copy''s triggers would stamp its rows with that node''s clock and record the history once per node.',
                  HINT = 'Track a distributed table (create_distributed_table()) or a table local to the coordinator.';
    END IF;
    -- a table tracked before it became a Citus local table: tracked from
    -- now on under its own name (_citus_adopt_local())
    PERFORM @extschema@._citus_adopt_local(tbl);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = tbl AND c.relpersistence = 't') THEN
        RAISE EXCEPTION 'cannot track temporary table %', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'PostgreSQL drops a temporary table at the end of its session without firing event triggers, so its configuration, side timings and history would be left behind under an OID that another table may get.',
                  HINT = 'Track an ordinary or unlogged table.';
    END IF;
    IF columns IS NOT NULL THEN
        IF pg_catalog.jsonb_typeof(columns) <> 'object' THEN
            RAISE EXCEPTION 'columns must be a JSON object'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The value given is %s.', columns),
                      HINT = 'Map role names to column names, for example ''{"completed_items": "done"}''.';
        END IF;
        SELECT c.key INTO bad FROM pg_catalog.jsonb_each(columns) c
         WHERE NOT EXISTS (SELECT 1 FROM @extschema@.column_roles cr WHERE cr.role = c.key)
         ORDER BY c.key LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'unknown column role "%"', bad
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The column roles are %s.',
                                      (SELECT string_agg(cr.role, ', ' ORDER BY cr.position) FROM @extschema@.column_roles cr));
        END IF;
        SELECT c.key INTO bad FROM pg_catalog.jsonb_each(columns) c
         WHERE pg_catalog.jsonb_typeof(c.value) NOT IN ('string', 'null')
         ORDER BY c.key LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'column of role "%" must be a string or null', bad
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The value given is %s.', columns -> bad);
        END IF;
        SELECT c.key INTO bad FROM pg_catalog.jsonb_each(columns) c
         WHERE given ? c.key AND (given ->> c.key) IS DISTINCT FROM c.key
         ORDER BY c.key LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'column of role "%" is given twice', bad
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('track() was passed both %s => %s and columns => ''{"%s": ...}''.',
                                      bad, coalesce(quote_literal(given ->> bad), 'NULL'), bad),
                      HINT = 'Name each role''s column once.';
        END IF;
        given := given || columns;
    END IF;
    PERFORM @extschema@._check_time_zone(time_zone);
    IF backward_moves IS NULL OR backward_moves NOT IN ('allow', 'error', 'ignore') THEN
        RAISE EXCEPTION 'invalid backward_moves "%"', coalesce(backward_moves, '(null)')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'backward_moves says what a write that moves a row back to an earlier pending or active phase, or out of a terminal phase without allow_restart, does.',
                  HINT = 'Pass ''allow'' (apply it; the default), ''error'' (refuse it) or ''ignore'' (keep the row''s phase and apply the rest of the write).';
    END IF;
    -- keep writers out while the table is checked and its triggers replaced
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);

    -- the phase column and the lifecycle
    IF phase IS NULL THEN
        RAISE EXCEPTION 'a phase column is required'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    typ := @extschema@._column_type(tbl, phase);
    IF typ IS NULL THEN
        RAISE EXCEPTION 'column "%" of table % does not exist', phase, tbl
            USING ERRCODE = 'undefined_column',
                  HINT = 'Name the phase column with track(..., phase => ''column_name'').';
    END IF;
    IF NOT (typ IN ('text'::regtype, 'character varying'::regtype)
            OR EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid = typ AND t.typtype = 'e')) THEN
        RAISE EXCEPTION 'phase column "%" of table % has type %', phase, tbl, typ
            USING ERRCODE = 'datatype_mismatch',
                  DETAIL = 'A phase column must be of type text, varchar or an enum type.';
    END IF;
    IF lc IS NULL THEN
        IF typ = '@extschema@.phase'::regtype THEN
            lc := 'default';
        ELSE
            RAISE EXCEPTION 'a lifecycle is required for phase column "%" of type %', phase, typ
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Only columns of type deploy_progress.phase have a lifecycle by default.',
                      HINT = 'Define one with deploy_progress.define_lifecycle() and pass track(..., lifecycle => ''name'').';
        END IF;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.lifecycles l WHERE l.name = lc) THEN
        RAISE EXCEPTION 'lifecycle "%" does not exist', lc
            USING ERRCODE = 'undefined_object',
                  HINT = 'Define it with deploy_progress.define_lifecycle() first.';
    END IF;
    IF validate THEN
        PERFORM @extschema@._check_phase_values(tbl, phase, lc);
    END IF;

    -- the other roles, in the order of deploy_progress.column_roles: a
    -- column named by its default name (the role's) is optional, a column
    -- named otherwise must exist, NULL switches the role off
    FOR r IN SELECT * FROM @extschema@.column_roles cr ORDER BY cr.position LOOP
        col := CASE WHEN given ? r.role THEN given ->> r.role ELSE r.role END;
        IF col IS NULL THEN
            CONTINUE;
        END IF;
        role_off := @extschema@._role_off(r.role, params);
        typ := @extschema@._column_type(tbl, col);
        IF typ IS NULL THEN
            IF col <> r.role THEN
                RAISE EXCEPTION 'column "%" of table % does not exist', col, tbl
                    USING ERRCODE = 'undefined_column',
                          DETAIL = format('It was named as the %s column.', r.role),
                          HINT = format('Pass %s if the table has no such column.', role_off);
            END IF;
            CONTINUE;
        END IF;
        IF NOT typ = ANY (r.types) THEN
            RAISE EXCEPTION '% column "%" of table % has type %', r.role, col, tbl, typ
                USING ERRCODE = 'datatype_mismatch',
                      DETAIL = format('The %s column must be of type %s.', r.role, r.types_text),
                      HINT = format('Change the column''s type, or pass %s to leave the role out.', role_off);
        END IF;
        resolved := resolved || pg_catalog.jsonb_build_object(r.role, col);
    END LOOP;

    -- where timings live
    IF storage IS NULL OR storage NOT IN ('auto', 'row', 'side') THEN
        RAISE EXCEPTION 'invalid storage "%"', coalesce(storage, '(null)')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Storage is "row" (timings in the table''s own columns), "side" (in deploy_progress.timings) or "auto" (row when the table has a timing column).';
    END IF;
    IF storage = 'auto' THEN
        storage := CASE WHEN EXISTS (SELECT 1 FROM @extschema@.column_roles cr
                                      WHERE cr.under_side = 'side' AND resolved ? cr.role)
                        THEN 'row' ELSE 'side' END;
    END IF;
    IF storage = 'side' AND @extschema@._citus_kind(tbl) = 'distributed' THEN
        RAISE EXCEPTION 'cannot track distributed table % in side storage', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'The side timings of a distributed table''s rows would be kept on the workers that hold its shards, where the readers on the coordinator do not see them.',
                  HINT = 'Add timing columns to the table (for example phase_updated_at and heartbeat_at) and track it with storage => ''row''.';
    END IF;
    IF storage = 'side' THEN
        -- timings live in the side table only, and so there is no smoothed speed
        resolved := resolved - ARRAY(SELECT cr.role::text FROM @extschema@.column_roles cr
                                      WHERE cr.under_side <> 'row');
    END IF;
    -- a column plays one role: the phase, or one of column_roles
    SELECT cr.role INTO bad FROM @extschema@.column_roles cr
     WHERE (resolved ->> cr.role) = phase ORDER BY cr.position LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of table % cannot be both the phase column and the % column', phase, tbl, bad
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It was named as the %s column; a column plays one role.', bad),
                  HINT = format('Name another column for the %s role, or pass %s to leave it out.', bad,
                                @extschema@._role_off(bad, params));
    END IF;
    SELECT ra.role, rb.role INTO bad, other
      FROM @extschema@.column_roles ra
      JOIN @extschema@.column_roles rb ON rb.position > ra.position
     WHERE (resolved ->> ra.role) = (resolved ->> rb.role)
     ORDER BY ra.position, rb.position LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of table % cannot be both the % column and the % column',
                        resolved ->> bad, tbl, bad, other
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It was named for the roles %s and %s; a column plays one role.', bad, other),
                  HINT = format('Name another column for one of the roles, or pass %s to leave the %s role out.',
                                @extschema@._role_off(other, params), other);
    END IF;
    IF (resolved ? 'items_per_second') <> (resolved ? 'speed_updated_at') THEN
        RAISE EXCEPTION 'the smoothed speed needs both an items_per_second and a speed_updated_at column'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Found %s but not %s.',
                                  coalesce(resolved ->> 'items_per_second', resolved ->> 'speed_updated_at'),
                                  CASE WHEN resolved ? 'items_per_second' THEN 'speed_updated_at' ELSE 'items_per_second' END),
                  HINT = 'Add the missing column (double precision / timestamptz or timestamp), or pass NULL for both roles.';
    END IF;
    -- the reason column must hold every reason fail_stuck() writes
    IF resolved ? 'failure_reason' THEN
        SELECT a.atttypmod - 4 INTO width FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = tbl AND a.attname = (resolved ->> 'failure_reason') AND a.atttypmod > 4;
        IF width < (SELECT max(octet_length(sr.reason)) FROM @extschema@._stuck_reasons() sr) THEN
            RAISE EXCEPTION 'failure_reason column "%" of table % is too short', resolved ->> 'failure_reason', tbl
                USING ERRCODE = 'datatype_mismatch',
                      DETAIL = format('It holds %s characters; fail_stuck() writes reasons of up to %s.', width,
                                      (SELECT max(octet_length(sr.reason)) FROM @extschema@._stuck_reasons() sr)),
                      HINT = 'Make it text or a longer varchar, or pass failure_reason => NULL.';
        END IF;
    END IF;
    -- progress is counted (completed of total items) or given as a percent
    IF resolved ? 'percent' AND (resolved ? 'completed_items' OR resolved ? 'total_items') THEN
        RAISE EXCEPTION 'table % has both counters and a percent column', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Counter columns: %s; percent column: %s. A table''s progress comes from its counters (completed_items, total_items) or from its percent column, not both.',
                                  concat_ws(', ', quote_ident(resolved ->> 'completed_items'), quote_ident(resolved ->> 'total_items')),
                                  quote_ident(resolved ->> 'percent')),
                  HINT = 'Pass completed_items => NULL, total_items => NULL to track the percent column, or columns => ''{"percent": null}'' to track the counters.';
    END IF;
    IF resolved ? 'items_per_second' AND NOT (resolved ? 'completed_items' OR resolved ? 'percent') THEN
        RAISE EXCEPTION 'the smoothed speed needs a completed_items or a percent column'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Columns %s and %s would hold the smoothed speed, but the table has no completed_items or percent column for it to measure.',
                                  resolved ->> 'items_per_second', resolved ->> 'speed_updated_at'),
                  HINT = 'Add a completed_items or percent column, or pass items_per_second => NULL, speed_updated_at => NULL.';
    END IF;
    IF speed_time_constant IS NULL OR speed_time_constant <= '0'::interval THEN
        RAISE EXCEPTION 'speed_time_constant must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', coalesce(speed_time_constant::text, 'NULL'));
    END IF;
    IF queue_deadline <= '0'::interval OR phase_deadline <= '0'::interval
       OR progress_deadline <= '0'::interval OR heartbeat_deadline <= '0'::interval THEN
        RAISE EXCEPTION 'deadlines must be positive intervals'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Given: queue_deadline %s, phase_deadline %s, progress_deadline %s, heartbeat_deadline %s.',
                                  queue_deadline, phase_deadline, progress_deadline, heartbeat_deadline),
                  HINT = 'Pass NULL to switch a check off.';
    END IF;
    IF history IS NULL OR history NOT IN ('all', 'failures', 'off') THEN
        RAISE EXCEPTION 'invalid history "%"', coalesce(history, '(null)')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'History is "all" (every transition), "failures" (transitions into failed or cancelled phases) or "off".';
    END IF;
    IF notify_channel = '' OR octet_length(notify_channel) > 63 THEN
        RAISE EXCEPTION 'invalid notify channel "%"', notify_channel
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A channel name is a non-empty string of at most 63 bytes.',
                  HINT = 'Pass notify_channel => NULL to switch notifications off.';
    END IF;

    -- the row key: the primary key unless named
    IF key IS NULL THEN
        SELECT array_agg(a.attname ORDER BY k.ord) INTO key
          FROM pg_catalog.pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = tbl AND i.indisprimary;
        IF key IS NULL THEN
            RAISE EXCEPTION 'table % has no primary key', tbl
                USING ERRCODE = 'invalid_table_definition',
                      DETAIL = 'Tracking identifies rows by their key (in the side table, history and reports).',
                      HINT = 'Add a primary key, or name unique not-null key columns with track(..., key => ARRAY[''id'']).';
        END IF;
    ELSE
        IF cardinality(key) = 0 THEN
            RAISE EXCEPTION 'key must name at least one column'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF cardinality(key) > 32 THEN
            RAISE EXCEPTION 'key names % columns', cardinality(key)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'A key has at most 32 columns, like an index.';
        END IF;
        FOREACH k IN ARRAY key LOOP
            IF k IS NULL OR @extschema@._column_type(tbl, k) IS NULL THEN
                RAISE EXCEPTION 'key column "%" of table % does not exist', coalesce(k, '(null)'), tbl
                    USING ERRCODE = 'undefined_column';
            END IF;
        END LOOP;
    END IF;

    -- the configuration row, replaced as a whole on a second track()
    SELECT * INTO prev FROM @extschema@.tracked tr WHERE tr.relid = tbl FOR UPDATE;
    cfg.relid := tbl;
    cfg.lifecycle := lc;
    cfg.phase_column := phase;
    cfg.key_columns := key;
    cfg.storage := storage;
    cfg.allow_restart := allow_restart;
    cfg.speed_time_constant := speed_time_constant;
    cfg.queue_deadline := queue_deadline;
    cfg.phase_deadline := phase_deadline;
    cfg.progress_deadline := progress_deadline;
    cfg.heartbeat_deadline := heartbeat_deadline;
    cfg.history := history;
    cfg.notify_channel := notify_channel;
    cfg.tracked_at := coalesce(prev.tracked_at, now());
    cfg.columns := resolved;
    cfg.time_zone := time_zone;
    cfg.backward_moves := backward_moves;
    DELETE FROM @extschema@.tracked tr WHERE tr.relid = tbl;
    INSERT INTO @extschema@.tracked SELECT cfg.* RETURNING * INTO cfg;
    -- the side table keeps timings only while the table is tracked that way
    PERFORM @extschema@._forget_timings(tbl);

    -- the triggers; "zz_" makes them fire after the table's own BEFORE
    -- triggers, so the stamps describe the row as it is finally written
    PERFORM @extschema@._drop_triggers(tbl);
    -- (its argument and comment carry the configuration: schema-only dumps)
    PERFORM @extschema@._write_stamp_trigger(tbl);
    IF storage = 'side' THEN
        EXECUTE format('CREATE TRIGGER zz_deploy_progress_side AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION @extschema@.stamp_side()', tbl);
        EXECUTE format('CREATE TRIGGER zz_deploy_progress_side_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.stamp_side()', tbl);
    END IF;
    -- history and events (70_history.sql)
    PERFORM @extschema@._install_history(cfg);
    -- the partial index over in-flight rows (50_stuck.sql)
    PERFORM @extschema@._ensure_in_flight_index(cfg, create_index);
    RETURN cfg;
END
$$;
COMMENT ON FUNCTION @extschema@.track(regclass, text, name, name, name, name, name, name, name, name, name, name, name[], text, boolean, interval, boolean, name, interval, interval, interval, interval, text, text, boolean, jsonb, text, text) IS
    'Starts (or reconfigures) tracking of a table: checks its columns and phase values and installs the stamping triggers';

CREATE OR REPLACE FUNCTION @extschema@.untrack(tbl regclass, missing_ok boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- (the stamp and history triggers on a Citus distributed table: see _citus_kind())
SET citus.enable_unsafe_triggers = on
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.tracked t WHERE t.relid = tbl) THEN
        IF missing_ok THEN
            RAISE NOTICE 'table % is not tracked, skipping', tbl;
            RETURN false;
        END IF;
        PERFORM @extschema@._config(tbl, 'See deploy_progress.tracked for the tracked tables.');
    END IF;
    IF NOT @extschema@._may_forget(tbl) THEN
        RAISE EXCEPTION 'must be owner of table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only the owner of a table can untrack it.';
    END IF;
    PERFORM @extschema@._drop_triggers(tbl);
    IF @extschema@._in_flight_index(tbl) IS NOT NULL THEN
        EXECUTE format('DROP INDEX %s', @extschema@._in_flight_index(tbl));
    END IF;
    -- the table's history stays: it is audit data, removed by prune()
    DELETE FROM @extschema@.tracked t WHERE t.relid = tbl;
    PERFORM @extschema@._forget_timings(tbl);
    PERFORM @extschema@._forget_claims(tbl);
    PERFORM @extschema@._forget_estimates(tbl);
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@.untrack(regclass, boolean) IS
    'Stops tracking a table: drops its triggers, configuration, side-table timings, phase estimates and claims; the table''s rows and its history are left as they are';

-- Keeps the stamp triggers of the tables tracked with a lifecycle in step
-- with its phases, after define_lifecycle().  As the extension's owner,
-- since the lifecycle's owner need not own those tables; what it writes is
-- the tables' own configuration, so it may be called by anyone.  Only
-- existing stamp triggers are rewritten.
CREATE OR REPLACE FUNCTION @extschema@._sync_stamp_triggers(lc text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT t.relid FROM @extschema@.tracked t
                WHERE t.lifecycle = lc
                  AND EXISTS (SELECT FROM pg_catalog.pg_trigger tg
                               WHERE tg.tgrelid = t.relid AND tg.tgname = 'zz_deploy_progress_stamp' AND tg.tgparentid = 0)
                ORDER BY t.relid::oid
    LOOP
        PERFORM @extschema@._write_stamp_trigger(rel);
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@._sync_stamp_triggers(text) IS
    'Internal: rewrites the stamp triggers of the tables tracked with a lifecycle, so that their arguments carry its current phases';

-- The stamp trigger (on a partition: the one it was cloned from) that
-- fires on a table, NULL when it has none.
CREATE OR REPLACE FUNCTION @extschema@._stamp_trigger(tbl regclass)
RETURNS oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE up(oid, parent) AS (
        SELECT tg.oid, tg.tgparentid FROM pg_catalog.pg_trigger tg
         WHERE tg.tgrelid OPERATOR(pg_catalog.=) tbl AND tg.tgname OPERATOR(pg_catalog.=) 'zz_deploy_progress_stamp'
           AND tg.tgfoid OPERATOR(pg_catalog.=) '@extschema@.stamp()'::pg_catalog.regprocedure
        UNION ALL
        SELECT tg.oid, tg.tgparentid FROM up JOIN pg_catalog.pg_trigger tg ON tg.oid OPERATOR(pg_catalog.=) up.parent
    )
    SELECT up.oid FROM up WHERE up.parent OPERATOR(pg_catalog.=) 0
$$;
COMMENT ON FUNCTION @extschema@._stamp_trigger(regclass) IS
    'Internal: the stamp trigger that fires on a table (on a partition, the partitioned table''s), NULL when it has none';

-- Recreates the configuration of the table whose stamp trigger fires on
-- "tbl" from the trigger's argument, when it has none: the lifecycle if it
-- is missing (owned by the caller), then the tracked row, as the table's
-- owner could write them by hand.  The stamp trigger calls it (through the
-- C, as the table's owner in a security-restricted operation) when it
-- finds no configuration; false when another transaction recreated it
-- first.
CREATE OR REPLACE FUNCTION @extschema@._retrack(tbl regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trg     pg_catalog.pg_trigger;
    arg     text;
    cfg     jsonb;
    lc      text;
    cols    text;
    inserted bigint;
    hint    text := 'Run deploy_progress.track() on the table as its owner.';
BEGIN
    SELECT tg.* INTO trg FROM pg_catalog.pg_trigger tg WHERE tg.oid = @extschema@._stamp_trigger(tbl);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % has no deploy_progress stamp trigger', tbl
            USING ERRCODE = 'undefined_object', HINT = hint;
    END IF;
    tbl := trg.tgrelid;
    IF NOT @extschema@._owns(tbl) THEN
        RAISE EXCEPTION 'must be owner of table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only the owner of a table can restore its tracking configuration.';
    END IF;
    IF EXISTS (SELECT FROM @extschema@.tracked t WHERE t.relid = tbl) THEN
        RETURN false;
    END IF;
    arg := @extschema@._trigger_arg(trg.tgargs, trg.tgnargs);
    IF arg IS NULL THEN
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Its trigger zz_deploy_progress_stamp carries no tracking configuration.',
                  HINT = 'Run deploy_progress.track() on the table, or drop its zz_deploy_progress triggers.';
    END IF;
    IF obj_description(trg.oid, 'pg_trigger') IS DISTINCT FROM @extschema@._trigger_comment(arg) THEN
        RAISE EXCEPTION 'the tracking configuration in trigger zz_deploy_progress_stamp of table % is not confirmed by the trigger''s comment', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A role with the TRIGGER privilege can create triggers on a table, but only its owner can comment on them: track() writes a comment with the checksum of the configuration, which pg_dump keeps (unless run with --no-comments).',
                  HINT = hint;
    END IF;
    BEGIN
        cfg := arg::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        cfg := NULL;
    END;
    IF cfg IS NULL OR jsonb_typeof(cfg) <> 'object' OR cfg -> 'v' IS DISTINCT FROM '1'::jsonb
       OR jsonb_typeof(cfg -> 'tracked') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'the argument of trigger zz_deploy_progress_stamp of table % is not a tracking configuration this version reads', tbl
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It begins %s.', left(arg, 40)),
                  HINT = hint;
    END IF;

    -- the lifecycle, when missing (two tables restored with it may be
    -- written at once: one defines it, the other waits and finds it)
    lc := cfg -> 'tracked' ->> 'lifecycle';
    PERFORM pg_advisory_xact_lock(hashtext('deploy_progress lifecycle'), hashtext(coalesce(lc, '')));
    IF lc IS NOT NULL AND NOT EXISTS (SELECT FROM @extschema@.lifecycles l WHERE l.name = lc) THEN
        IF jsonb_typeof(cfg -> 'phases') IS DISTINCT FROM 'array' THEN
            RAISE EXCEPTION 'lifecycle "%" of table % does not exist', lc, tbl
                USING ERRCODE = 'undefined_object',
                      DETAIL = 'The configuration in its trigger zz_deploy_progress_stamp names a lifecycle it does not define.',
                      HINT = 'Define it with deploy_progress.define_lifecycle().';
        END IF;
        BEGIN
            PERFORM @extschema@.define_lifecycle(lc, cfg -> 'phases');
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'lifecycle "%" was defined by a concurrent transaction', lc
                USING ERRCODE = 'serialization_failure',
                      HINT = 'Retry the transaction.';
        END;
    END IF;

    -- the tracked row: the columns the argument gives, the defaults for the others
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = '@extschema@.tracked'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname <> 'relid' AND (cfg -> 'tracked') ? a.attname::text;
    EXECUTE format('INSERT INTO @extschema@.tracked (relid, %1$s) SELECT $1, %1$s'
                   ' FROM pg_catalog.jsonb_populate_record(NULL::@extschema@.tracked, $2)'
                   ' ON CONFLICT (relid) DO NOTHING', cols)
       USING tbl, cfg -> 'tracked';
    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted = 0 THEN
        RETURN false;
    END IF;
    RAISE LOG 'deploy_progress: restored the tracking configuration of table % from its trigger', tbl;
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@._retrack(regclass) IS
    'Internal: recreates the tracking configuration (and a missing lifecycle) of a table from its stamp trigger''s argument, as the table''s owner';

-- Whether the current role can read the row of a tracked table with a given
-- key text, through the table's privileges and row-level security: what
-- the extension keeps of a row (side timings, history) is shown to a role
-- whose row security applies to the table only where it can see the row
-- itself.  Runs with the caller's rights (it only tells the caller what it
-- could select itself).  False for a table that is no longer tracked (its
-- key columns are not known).
CREATE OR REPLACE FUNCTION @extschema@._row_visible(tbl regclass, key text)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg     @extschema@.tracked;
    visible boolean;
BEGIN
    SELECT * INTO cfg FROM @extschema@.tracked t WHERE t.relid = tbl;
    IF NOT FOUND OR NOT has_table_privilege(tbl, 'SELECT') THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT FROM %s t WHERE %s)', tbl, @extschema@._key_condition(cfg, 't', 1))
       INTO visible USING key;
    RETURN visible;
EXCEPTION
    -- a key text that is not a value of the key's type names no row
    WHEN invalid_text_representation OR numeric_value_out_of_range
         OR invalid_datetime_format OR datetime_field_overflow THEN
        RETURN false;
END
$$;
COMMENT ON FUNCTION @extschema@._row_visible(regclass, text) IS
    'Internal: whether the current role can read the row of a tracked table with a given key text (privileges and row-level security)';

-- Everyone reads the side timings through this view: those of the tables
-- it may read, and of a table whose row-level security applies to the
-- role, those of the rows it can see.
CREATE OR REPLACE VIEW @extschema@.side_timings
WITH (security_barrier)
AS
SELECT s.relid, s.key, s.phase_updated_at, s.progress_updated_at, s.heartbeat_at,
       s.started_at, s.finished_at
  FROM @extschema@.timings s
 WHERE pg_catalog.has_table_privilege(s.relid, 'SELECT')
   AND (NOT pg_catalog.row_security_active(s.relid) OR @extschema@._row_visible(s.relid, s.key));
COMMENT ON VIEW @extschema@.side_timings IS
    'Side-table timings of the tracked tables the current role can read (of a table under row-level security, of the rows it can see)';
GRANT SELECT ON @extschema@.side_timings TO PUBLIC;

-- The key text of a row as the triggers write it: the single key column's
-- text, or the row literal of a composite key, made by the types' output
-- functions as the C code makes it (format's %s), under the fixed settings
-- of _canonical_text() where a key type's text depends on settings.  Never
-- a ::text cast: the owner of a key's type could attach a cast of their
-- own, which would run with the rights of whoever reads the table.
CREATE OR REPLACE FUNCTION @extschema@._key_expr(cfg @extschema@.tracked, alias text DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
               CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                  WHERE a.attrelid OPERATOR(pg_catalog.=) cfg.relid
                                    AND a.attname OPERATOR(pg_catalog.=) ANY (cfg.key_columns)
                                    AND NOT a.attisdropped
                                    AND @extschema@._type_text_varies(a.atttypid::pg_catalog.regtype))
                    THEN '@extschema@._canonical_text(%s)' ELSE 'pg_catalog.format(''%%s'', %s)' END,
               CASE WHEN pg_catalog.cardinality(cfg.key_columns) OPERATOR(pg_catalog.=) 1
                    THEN pg_catalog.format('%s%I', alias OPERATOR(pg_catalog.||) '.', cfg.key_columns[1])
                    ELSE pg_catalog.format('ROW(%s)',
                             (SELECT pg_catalog.string_agg(pg_catalog.concat(alias OPERATOR(pg_catalog.||) '.', pg_catalog.quote_ident(c)), ', ')
                                FROM pg_catalog.unnest(cfg.key_columns) AS c))
               END)
$$;
COMMENT ON FUNCTION @extschema@._key_expr(@extschema@.tracked, text) IS
    'Internal: SQL expression giving a row''s key text, through the key types'' output functions';

-- The phase of a row as text: a text or varchar column as it is, an enum
-- through its output function (never a ::text cast, which the enum's owner
-- could replace).
CREATE OR REPLACE FUNCTION @extschema@._phase_expr(cfg @extschema@.tracked, alias text DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN @extschema@._column_type(cfg.relid, cfg.phase_column)
                     OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype])
                THEN pg_catalog.format('%s%I::pg_catalog.text', alias OPERATOR(pg_catalog.||) '.', cfg.phase_column)
                ELSE pg_catalog.format('pg_catalog.format(''%%s'', %s%I)', alias OPERATOR(pg_catalog.||) '.', cfg.phase_column)
           END
$$;
COMMENT ON FUNCTION @extschema@._phase_expr(@extschema@.tracked, text) IS
    'Internal: SQL expression giving a row''s phase as text, through the enum''s output function for an enum column';

CREATE OR REPLACE FUNCTION @extschema@._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the history of a dropped table is kept (audit data): only roles that
    -- read deploy_progress.history itself see it, and prune() removes it.
    -- It keeps the table's name but not its OID, which another table may
    -- get later (in this cluster, or in one its dump is restored into).
    UPDATE @extschema@.history h
       SET relid = NULL, dropped_table = d.object_identity
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND h.relid = d.objid;
    DELETE FROM @extschema@.history_pruned p
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND p.relid = d.objid;
    DELETE FROM @extschema@.timings s
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND s.relid = d.objid;
    -- the side rows of a dropped partition are filed under its partitioned table
    DELETE FROM @extschema@.timings s
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND s.partition = d.objid;
    DELETE FROM @extschema@.claims c
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND c.relid = d.objid;
    DELETE FROM @extschema@.phase_estimates e
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND e.relid = d.objid;
    DELETE FROM @extschema@.tracked t
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND t.relid = d.objid;
END
$$;
COMMENT ON FUNCTION @extschema@._on_sql_drop() IS
    'Internal: removes the configuration, side timings, phase estimates, claims and pruned-history totals of dropped tables (and the side timings of dropped partitions), and detaches their history from their OID';
REVOKE ALL ON FUNCTION @extschema@._on_sql_drop() FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.eta(percent double precision, speed double precision)
RETURNS interval
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_eta_percent';
COMMENT ON FUNCTION @extschema@.eta(double precision, double precision) IS
    'Time left from percent done (0..100) at speed percent per second: zero at 100, NULL when the percent is unknown or not within 0..100, the speed is zero, negative or unknown, or the result does not fit an interval';

-- The in-flight predicate of a table: its phase is not a terminal phase.
-- The partial index track() creates is stated with the same text, which is
-- what lets the planner prove that the index applies.
CREATE OR REPLACE FUNCTION @extschema@._in_flight_predicate(cfg @extschema@.tracked, alias text DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format('%s%I OPERATOR(pg_catalog.<>) ALL (%L::%s[])',
                             CASE WHEN alias IS NULL THEN '' ELSE alias OPERATOR(pg_catalog.||) '.' END,
                             cfg.phase_column,
                             (SELECT coalesce(pg_catalog.array_agg(p.phase ORDER BY p.position), '{}')
                                FROM @extschema@.lifecycle_phases p
                               WHERE p.lifecycle OPERATOR(pg_catalog.=) cfg.lifecycle
                                 AND p.kind OPERATOR(pg_catalog.=) ANY (@extschema@._kinds('terminal'))),
                             CASE WHEN t.oid OPERATOR(pg_catalog.=) 'pg_catalog.varchar'::pg_catalog.regtype
                                  THEN 'pg_catalog.text'
                                  ELSE pg_catalog.format_type(t.oid, NULL) END)
      FROM pg_catalog.pg_type t
     WHERE t.oid OPERATOR(pg_catalog.=) @extschema@._column_type(cfg.relid, cfg.phase_column)
$$;
COMMENT ON FUNCTION @extschema@._in_flight_predicate(@extschema@.tracked, text) IS
    'Internal: the SQL condition selecting a tracked table''s in-flight (non-terminal) rows, as its partial index states it';

-- The SQL expression of every column role in a tracked table's rows (alias
-- t; the side table's row, when joined, is s): the table's column, the
-- side table's column for the timings of a table in side storage, or a
-- typed NULL where the table has no column for the role; the percent of a
-- table without a percent column is that of its counters.  A timestamp
-- (without time zone) timing column holds local times of the table's time
-- zone, and is read as the timestamptz it stands for, as the triggers read
-- it (dp_timing_from_column()), whatever the session's TimeZone.
CREATE OR REPLACE FUNCTION @extschema@._role_exprs(cfg @extschema@.tracked)
RETURNS TABLE (role name, expr text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH e AS (
    SELECT r.role, r.position, c.col,
           CASE WHEN cfg.storage OPERATOR(pg_catalog.=) 'side' AND r.under_side OPERATOR(pg_catalog.=) 'side'
                THEN pg_catalog.format('s.%I', r.role)
                WHEN c.col IS NOT NULL
                     AND r.value_type OPERATOR(pg_catalog.=) 'pg_catalog.timestamptz'::pg_catalog.regtype
                     AND @extschema@._column_type(cfg.relid, c.col) OPERATOR(pg_catalog.=) 'pg_catalog.timestamp'::pg_catalog.regtype
                THEN pg_catalog.format('(t.%I AT TIME ZONE %L)', c.col, cfg.time_zone)
                WHEN c.col IS NOT NULL
                THEN pg_catalog.format('t.%I::%I.%I', c.col, n.nspname, ty.typname)
                ELSE pg_catalog.format('NULL::%I.%I', n.nspname, ty.typname)
           END AS expr
      FROM @extschema@.column_roles r
      JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) r.value_type
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) ty.typnamespace
     CROSS JOIN LATERAL (SELECT @extschema@._role_column(cfg, r.role)) AS c(col)
    )
    -- the percent is the percent column's value where it is within 0..100
    -- (the trigger keeps it there), else the percent of the counters
    SELECT e.role,
           CASE WHEN e.role OPERATOR(pg_catalog.<>) 'percent' THEN e.expr
                WHEN e.col IS NOT NULL
                THEN pg_catalog.format('CASE WHEN %1$s OPERATOR(pg_catalog.>=) 0::pg_catalog.float8'
                                       ' AND %1$s OPERATOR(pg_catalog.<=) 100::pg_catalog.float8 THEN %1$s END', e.expr)
                ELSE pg_catalog.format('@extschema@.percent(%s, %s)',
                                       (SELECT c.expr FROM e c WHERE c.role OPERATOR(pg_catalog.=) 'completed_items'),
                                       (SELECT c.expr FROM e c WHERE c.role OPERATOR(pg_catalog.=) 'total_items'))
           END
      FROM e
     ORDER BY e.position
$$;
COMMENT ON FUNCTION @extschema@._role_exprs(@extschema@.tracked) IS
    'Internal: the SQL expression giving each column role''s value in a tracked table''s rows (NULL where the table has no such column)';

-- Field n of a key text of several columns (the text of a record, as
-- record_out writes it: (1,"a b")), NULL when it is null or absent.
-- A reader of one row of a Citus distributed table gives Citus the
-- distribution column's value from it, so that it reads one shard.
CREATE OR REPLACE FUNCTION @extschema@._key_field(key text, n integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    len    integer := length(key);
    i      integer := 2;
    field  integer := 1;
    buf    text := '';
    quoted boolean := false;
    empty  boolean := true;
    c      text;
BEGIN
    IF len < 2 OR left(key, 1) <> '(' OR right(key, 1) <> ')' THEN
        RETURN NULL;
    END IF;
    WHILE i < len LOOP
        c := substr(key, i, 1);
        IF quoted AND c = '\' THEN
            i := i + 1;
            buf := buf || substr(key, i, 1);
        ELSIF quoted AND c = '"' AND substr(key, i + 1, 1) = '"' THEN
            i := i + 1;
            buf := buf || '"';
        ELSIF c = '"' THEN
            quoted := NOT quoted;
            empty := false;
        ELSIF c = ',' AND NOT quoted THEN
            IF field = n THEN
                EXIT;
            END IF;
            field := field + 1;
            buf := '';
            empty := true;
        ELSE
            buf := buf || c;
            empty := false;
        END IF;
        i := i + 1;
    END LOOP;
    RETURN CASE WHEN field = n AND NOT empty THEN buf END;
END
$$;
COMMENT ON FUNCTION @extschema@._key_field(text, integer) IS
    'Internal: field n of the text of a record (a key of several columns), NULL when null or absent';

-- A SELECT over a tracked table's rows (its in-flight rows, or all of them)
-- giving:
--   dp_tableoid, dp_ctid  the row's physical address (fail_stuck() locks by it)
--   key, phase            the key text and the phase as text
--   kind, position, phase_deadline   of the phase in the lifecycle
--   one column per role of deploy_progress.column_roles, under the role's name
--   stuck_reason, stuck_clock, stuck_deadline   why the row is stuck as of $1
--                         (NULL when healthy; see _stuck_reasons()), when the
--                         reason's clock started and its deadline
-- Waiting and terminal rows are never stuck; a reason whose clock column
-- the table lacks is never reported.  "extra" is ANDed to the WHERE clause
-- and "tail" (ORDER BY, LIMIT, FOR UPDATE ...) appended; "source" reads a
-- partition of the tracked table instead of the whole table.
CREATE OR REPLACE FUNCTION @extschema@._rows_sql(cfg @extschema@.tracked, extra text DEFAULT NULL, tail text DEFAULT '',
                                                 in_flight boolean DEFAULT true, source regclass DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    exprs    jsonb;
    roles    text;
    reasons  text;
    clocks   text;
    deadlines text;
    checks   text;
    opts     jsonb := to_jsonb(cfg);
    src      text := coalesce(source, cfg.relid)::text;
    dist     text := 'NULL::pg_catalog.text';
    by_key   text;
BEGIN
    -- a Citus distributed table: its rows come from the shards through a
    -- subquery that Citus runs on the workers (filtered there, through each
    -- shard's in-flight index, and for a single-row reader by its key),
    -- and the rest of the query runs on this node, where the lifecycles
    -- are; xmin (dp_xmin) is the row version fail_stuck() re-checks there
    -- (_fail_batch())
    IF @extschema@._citus_kind(coalesce(source, cfg.relid)) = 'distributed' THEN
        dist := @extschema@._citus_distribution_column(cfg.relid);
        IF extra IS NOT NULL AND extra = @extschema@._key_condition(cfg, 't', 2) THEN
            by_key := '(' || extra || ')';
            -- the distribution column among several key columns: its
            -- value from the key text ($2), for Citus to pick the shard
            -- (of the built-in types whose text reads back as the value)
            IF cardinality(cfg.key_columns) > 1 AND dist = ANY (cfg.key_columns)
               AND @extschema@._column_type(cfg.relid, dist) IN
                   ('pg_catalog.int2'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.int8'::regtype,
                    'pg_catalog.text'::regtype, 'pg_catalog.varchar'::regtype, 'pg_catalog.uuid'::regtype) THEN
                by_key := by_key || format(' AND t.%I OPERATOR(pg_catalog.=) @extschema@._key_field($2, %s)::%s',
                                           dist, array_position(cfg.key_columns, dist),
                                           @extschema@._column_type(cfg.relid, dist)::regtype);
            END IF;
        END IF;
        src := format('(SELECT t.tableoid, t.ctid, t.xmin, t.%I::pg_catalog.text AS dp_dist, t.*'
                      '   FROM %s t WHERE %s AND %s OFFSET 0)',
                      dist, coalesce(source, cfg.relid),
                      CASE WHEN in_flight THEN @extschema@._in_flight_predicate(cfg, 't') ELSE 'true' END,
                      coalesce(by_key, 'true'));
        dist := 't.dp_dist';
    END IF;
    SELECT jsonb_object_agg(e.role, e.expr),
           string_agg(format('%s AS %I', e.expr, e.role), ', ' ORDER BY e.ord)
      INTO exprs, roles
      FROM @extschema@._role_exprs(cfg) WITH ORDINALITY AS e(role, expr, ord);
    -- owner_gone's clock: the time of the row's claim when its owner
    -- session has ended (the owners view, joined as o, holds those only)
    exprs := exprs || jsonb_build_object('claimed_at', 'o.claimed_at');

    -- the stuck reason: the first of _stuck_reasons() whose clock plus
    -- deadline is before $1 (v.i is its priority)
    SELECT string_agg(quote_literal(x.reason), ', ' ORDER BY x.priority),
           string_agg(format(' WHEN %s THEN %s', x.priority, exprs ->> x.clock), '' ORDER BY x.priority),
           string_agg(format(' WHEN %s THEN %s', x.priority, x.dl), '' ORDER BY x.priority),
           string_agg(format('      WHEN p.kind OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.text[]) AND %s OPERATOR(pg_catalog.+) %s OPERATOR(pg_catalog.<) $1 THEN %s',
                             CASE WHEN x.kind IS NULL THEN @extschema@._kinds('in_flight') ELSE ARRAY[x.kind] END, exprs ->> x.clock, x.dl, x.priority),
                      '' ORDER BY x.priority)
      INTO reasons, clocks, deadlines, checks
      FROM (SELECT sr.*, CASE WHEN sr.deadline IS NULL
                              THEN '''0''::pg_catalog.interval'
                              WHEN sr.phase_deadline
                              THEN format('coalesce(%L::pg_catalog.interval, p.deadline)', opts ->> sr.deadline)
                              ELSE format('%L::pg_catalog.interval', opts ->> sr.deadline) END AS dl
              FROM @extschema@._stuck_reasons() sr) x;

    RETURN format(
        'SELECT t.tableoid AS dp_tableoid, t.ctid AS dp_ctid, t.xmin AS dp_xmin, %s AS dp_dist, %s AS key, %s AS phase,'
        ' p.kind, p.position, p.deadline AS phase_deadline, %s,'
        ' st.reason AS stuck_reason, st.clock AS stuck_clock, st.deadline AS stuck_deadline'
        ' FROM %s t'
        ' %s @extschema@.lifecycle_phases p ON p.lifecycle OPERATOR(pg_catalog.=) %L'
        '  AND p.phase OPERATOR(pg_catalog.=) %s'
        '%s%s'
        ' CROSS JOIN LATERAL (SELECT (ARRAY[%s])[v.i] AS reason,'
        '         CASE v.i%s END AS clock,'
        '         CASE v.i%s END AS deadline'
        '    FROM (SELECT CASE%s'
        '      END AS i) v) st'
        ' WHERE %s%s %s',
        dist, @extschema@._key_expr(cfg, 't'), @extschema@._phase_expr(cfg, 't'), roles,
        src,
        CASE WHEN in_flight THEN 'JOIN' ELSE 'LEFT JOIN' END, cfg.lifecycle, @extschema@._phase_expr(cfg, 't'),
        CASE WHEN cfg.storage = 'side'
             THEN format(' LEFT JOIN @extschema@.side_timings s ON s.relid OPERATOR(pg_catalog.=) %L::pg_catalog.regclass'
                         ' AND s.key OPERATOR(pg_catalog.=) %s', cfg.relid::oid, @extschema@._key_expr(cfg, 't'))
             ELSE '' END,
        format(' LEFT JOIN @extschema@.owners o ON o.relid OPERATOR(pg_catalog.=) %L::pg_catalog.regclass'
               ' AND o.key OPERATOR(pg_catalog.=) %s AND NOT o.alive', cfg.relid::oid, @extschema@._key_expr(cfg, 't')),
        reasons, clocks, deadlines, checks,
        CASE WHEN in_flight THEN @extschema@._in_flight_predicate(cfg, 't') ELSE 'true' END,
        CASE WHEN extra IS NULL THEN '' ELSE ' AND (' || extra || ')' END,
        tail);
END
$$;
COMMENT ON FUNCTION @extschema@._rows_sql(@extschema@.tracked, text, text, boolean, regclass) IS
    'Internal: SQL selecting a tracked table''s rows (in-flight ones by default) with every column role under its name and the stuck reason as of $1';

-- _rows_sql()'s rows (given as "rows") with the figures of each as of $1:
--   average_speed, smoothed_speed, speed, eta   speeds and ETA of an active phase only
--                         (items per second, or percent per second for a table with a
--                         percent column; the percent is a role, from _rows_sql());
--                         no ETA for a stalled row (its decayed speed would give one
--                         of years: fiction)
--   since_progress, stalled   seconds since the counters or phase last moved; whether
--                         an active row with work left has not moved for the
--                         smoothing time constant
--   overall_progress      weighted over the lifecycle's phases
--   overall_eta(_seconds), overall_eta_p95(_seconds), expected_finish_at
--                         the time left for the whole run, from phase_estimates
--                         (_phase_eta_sql(), joined once per query, and _run_eta_part()):
--                         median and 95th percentile; NULL where the history is
--                         too thin
--   phase_elapsed_seconds, elapsed_seconds   in the phase; since the start (to the finish)
--   in_phase, elapsed     the same as intervals, NULL when negative; a -infinity
--                         stamp raises (_infinite_stamp())
--   reason                the failure reason of a failed or cancelled row
CREATE OR REPLACE FUNCTION @extschema@._figures_sql(cfg @extschema@.tracked, rows text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
        'SELECT r.*, f.average_speed, f.smoothed_speed, f.speed, g.eta,'
        '       f.since_progress, f.stalled,'
        '       w.p50 AS overall_eta_seconds, w.p95 AS overall_eta_p95_seconds,'
        '       pg_catalog.make_interval(secs => w.p50) AS overall_eta,'
        '       pg_catalog.make_interval(secs => w.p95) AS overall_eta_p95,'
        '       $1 OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => w.p50) AS expected_finish_at,'
        '       CASE WHEN r.position IS NOT NULL'
        '            THEN @extschema@.weighted_progress(%4$L::pg_catalog.float8[], %5$L::pg_catalog.text[], r.position,'
        '                                               coalesce(r.percent OPERATOR(pg_catalog./) 100, 0)) END AS overall_progress,'
        '       @extschema@._elapsed_seconds(r.phase_updated_at, $1) AS phase_elapsed_seconds,'
        '       @extschema@._elapsed_seconds(r.started_at, coalesce(r.finished_at, $1)) AS elapsed_seconds,'
        '       CASE WHEN $1 OPERATOR(pg_catalog.>=) r.phase_updated_at'
        '            THEN CASE WHEN pg_catalog.isfinite(r.phase_updated_at) THEN $1 OPERATOR(pg_catalog.-) r.phase_updated_at'
        '                      ELSE @extschema@._infinite_stamp(r.key, ''phase_updated_at'', r.phase_updated_at) END END AS in_phase,'
        '       CASE WHEN $1 OPERATOR(pg_catalog.>=) r.started_at'
        '            THEN CASE WHEN pg_catalog.isfinite(r.started_at) THEN $1 OPERATOR(pg_catalog.-) r.started_at'
        '                      ELSE @extschema@._infinite_stamp(r.key, ''started_at'', r.started_at) END END AS elapsed,'
        '       CASE WHEN r.kind OPERATOR(pg_catalog.=) ANY (%6$L::pg_catalog.text[]) THEN r.failure_reason END AS reason'
        '  FROM (%1$s) r'
        '  CROSS JOIN LATERAL (SELECT b.*,'
        '                             coalesce(b.since_progress OPERATOR(pg_catalog.>=) %3$L::pg_catalog.float8'
        '                                      AND %8$s, false) AS stalled'
        '                        FROM (SELECT a.average_speed, a.smoothed_speed,'
        '                             CASE WHEN r.kind OPERATOR(pg_catalog.=) ''active'''
        '                                  THEN coalesce(a.smoothed_speed, a.average_speed) END AS speed,'
        '                             CASE WHEN r.kind OPERATOR(pg_catalog.=) ''active'''
        '                                  THEN @extschema@._elapsed_seconds(coalesce(r.progress_updated_at, r.speed_updated_at), $1) END AS since_progress'
        '                        FROM (SELECT CASE WHEN r.kind OPERATOR(pg_catalog.=) ''active'''
        '                                          THEN %9$s END AS average_speed,'
        '                                     CASE WHEN r.kind OPERATOR(pg_catalog.=) ''active'''
        '                                          THEN @extschema@.smoothed_speed(r.items_per_second, r.speed_updated_at, $1, %2$L::pg_catalog.interval) END AS smoothed_speed'
        '                             ) a) b) f'
        '  CROSS JOIN LATERAL (SELECT CASE WHEN r.kind OPERATOR(pg_catalog.=) ''active'' AND NOT f.stalled'
        '                                  THEN %7$s END AS eta) g'
        '  LEFT JOIN (%10$s) est'
        '         ON est.phase OPERATOR(pg_catalog.=) r.phase AND r.kind OPERATOR(pg_catalog.=) ANY (%11$L::pg_catalog.text[])'
        '  CROSS JOIN LATERAL (SELECT @extschema@._run_eta_part(est.quantiles, est.stays, est.runs, est.ahead_p50, est.thin, h.s, h.e, 0.5) AS p50,'
        '                             @extschema@._run_eta_part(est.quantiles, est.stays, est.runs, est.ahead_p95, est.thin, h.s, h.e, 0.95) AS p95'
        '                        FROM (SELECT @extschema@._elapsed_seconds(r.phase_updated_at, $1) AS s,'
        '                                     pg_catalog.date_part(''epoch'', g.eta) AS e) h) w',
        rows, cfg.speed_time_constant, pg_catalog.date_part('epoch', cfg.speed_time_constant),
        lc.weights, lc.kinds, @extschema@._kinds('unsuccessful'),
        -- ETA, work left and average speed: of the percent column (percent
        -- per second), or of the counters (items per second)
        CASE WHEN p.by_percent THEN '@extschema@.eta(r.percent, f.speed)'
             ELSE '@extschema@.eta(r.completed_items, r.total_items, f.speed)' END,
        CASE WHEN p.by_percent THEN 'r.percent OPERATOR(pg_catalog.<) 100::pg_catalog.float8'
             ELSE 'r.completed_items IS NOT NULL'
                  ' AND (r.total_items IS NULL OR r.completed_items OPERATOR(pg_catalog.<) r.total_items)' END,
        CASE WHEN p.by_percent
             THEN '(SELECT r.percent OPERATOR(pg_catalog./) e.s'
                  '   FROM (SELECT @extschema@._elapsed_seconds(r.phase_updated_at, $1)) e(s)'
                  '  WHERE e.s OPERATOR(pg_catalog.>) 0::pg_catalog.float8)'
             ELSE '@extschema@.transfer_speed(r.completed_items, r.phase_updated_at, $1)' END,
        @extschema@._phase_eta_sql(cfg.relid, cfg.lifecycle), @extschema@._kinds('in_flight'))
      FROM @extschema@._lifecycle_arrays(cfg.lifecycle) lc
     CROSS JOIN (SELECT cfg.columns OPERATOR(pg_catalog.?) 'percent') AS p(by_percent)
$$;
COMMENT ON FUNCTION @extschema@._figures_sql(@extschema@.tracked, text) IS
    'Internal: SQL adding the figures (percent, speeds, ETA, stall, overall progress, elapsed times) as of $1 to _rows_sql()''s rows';

-- The condition selecting a row by its key text (parameter $param): the
-- row's key text must be _key_text() of $param (which is $param itself but
-- for keys whose text varies with settings, or pads).  A single key column
-- whose type (or a domain's base type) is a built-in one is also compared in
-- that type, so that its index is used; the cast of $param to a type of a
-- user's, or to a domain (whose checks are a user's code), would run that
-- user's code.
CREATE OR REPLACE FUNCTION @extschema@._key_condition(cfg @extschema@.tracked, alias text DEFAULT NULL, param integer DEFAULT 1)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE key_type AS (
        SELECT ty.oid, ty.typname, ty.typtype, ty.typbasetype, ty.typnamespace
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) a.atttypid
         WHERE a.attrelid OPERATOR(pg_catalog.=) cfg.relid
           AND a.attname OPERATOR(pg_catalog.=) cfg.key_columns[1]
           AND NOT a.attisdropped
           AND pg_catalog.cardinality(cfg.key_columns) OPERATOR(pg_catalog.=) 1
        UNION ALL
        SELECT ty.oid, ty.typname, ty.typtype, ty.typbasetype, ty.typnamespace
          FROM key_type k JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) k.typbasetype
         WHERE k.typtype OPERATOR(pg_catalog.=) 'd'
    )
    SELECT coalesce(
               (SELECT pg_catalog.format(CASE WHEN k.oid OPERATOR(pg_catalog.=) 'pg_catalog.bpchar'::pg_catalog.regtype
                                                   OR @extschema@._type_text_varies(k.oid::pg_catalog.regtype)
                                              THEN '%1$s%2$I OPERATOR(pg_catalog.=) $%4$s::%3$s'
                                                   ' AND %5$s OPERATOR(pg_catalog.=) @extschema@._key_text(%6$L::pg_catalog.regclass, $%4$s)'
                                              ELSE '%1$s%2$I OPERATOR(pg_catalog.=) $%4$s::%3$s AND %5$s OPERATOR(pg_catalog.=) $%4$s' END,
                                         alias OPERATOR(pg_catalog.||) '.', cfg.key_columns[1],
                                         pg_catalog.format('pg_catalog.%I', k.typname), param, @extschema@._key_expr(cfg, alias),
                                         cfg.relid::pg_catalog.text)
                  FROM key_type k
                 WHERE k.typtype OPERATOR(pg_catalog.<>) 'd'
                   AND k.typnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace),
               pg_catalog.format('%s OPERATOR(pg_catalog.=) $%s', @extschema@._key_expr(cfg, alias), param))
$$;
COMMENT ON FUNCTION @extschema@._key_condition(@extschema@.tracked, text, integer) IS
    'Internal: SQL condition selecting a tracked table''s row by its key text (parameter $param), through the key''s index when it has one column';

-- The key text under which the triggers file a row given by a caller's key
-- text: for a single key column of a built-in type whose text varies with
-- settings, or of type character(n), the caller's text read as that type
-- (in the caller's session) and written as the triggers write it ('ab' for
-- a char(8) key gives 'ab      ', a date in DateStyle German its ISO text);
-- otherwise, and for a text that is no value of the type, the caller's
-- text as it is ('042' is not the key 42).  The readers look rows up by it.
CREATE OR REPLACE FUNCTION @extschema@._key_text(tbl regclass, key text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg    @extschema@.tracked;
    result text;
BEGIN
    SELECT * INTO cfg FROM @extschema@.tracked t WHERE t.relid = tbl;
    IF NOT FOUND OR cardinality(cfg.key_columns) <> 1 OR key IS NULL THEN
        RETURN key;
    END IF;
    SELECT format(CASE WHEN @extschema@._type_text_varies(ty.oid::regtype)
                       THEN 'SELECT @extschema@._canonical_text($1::%s)' ELSE 'SELECT pg_catalog.format(''%%s'', $1::%s)' END,
                  format_type(a.atttypid, a.atttypmod))
      INTO result
      FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
     WHERE a.attrelid = cfg.relid AND a.attname = cfg.key_columns[1] AND NOT a.attisdropped
       AND ty.typtype <> 'd' AND ty.typnamespace = 'pg_catalog'::regnamespace
       AND (ty.oid = 'bpchar'::regtype OR @extschema@._type_text_varies(ty.oid::regtype));
    IF result IS NULL THEN
        RETURN key;
    END IF;
    EXECUTE result INTO result USING key;
    RETURN result;
EXCEPTION
    WHEN invalid_text_representation OR numeric_value_out_of_range
         OR invalid_datetime_format OR datetime_field_overflow OR string_data_right_truncation THEN
        RETURN key;
END
$$;
COMMENT ON FUNCTION @extschema@._key_text(regclass, text) IS
    'Internal: the key text the triggers file a row under, given a caller''s key text (read as the key''s built-in type where it has one column)';

CREATE OR REPLACE FUNCTION @extschema@.timings(tbl regclass, key text)
RETURNS TABLE (phase_updated_at timestamptz, progress_updated_at timestamptz,
               heartbeat_at timestamptz, started_at timestamptz, finished_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    cfg := @extschema@._config(tbl);
    PERFORM @extschema@._check_readable(tbl, 'The timings of a table are visible to the roles that can read the table.');
    RETURN QUERY EXECUTE format(
        'SELECT r.phase_updated_at, r.progress_updated_at, r.heartbeat_at, r.started_at, r.finished_at FROM (%s) r',
        @extschema@._rows_sql(cfg, @extschema@._key_condition(cfg, 't', 2), in_flight => false))
    USING now(), key;
EXCEPTION
    -- a key text that is not a value of the key's type matches no row
    WHEN invalid_text_representation OR numeric_value_out_of_range
         OR invalid_datetime_format OR datetime_field_overflow THEN
        RETURN;
END
$$;
COMMENT ON FUNCTION @extschema@.timings(regclass, text) IS
    'The timings of one row of a tracked table, from its own columns or from the side table';

CREATE OR REPLACE FUNCTION @extschema@.progress(tbl regclass, key text, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- the configuration of the table, or of the partitioned table it belongs to
    cfg @extschema@.tracked;
    k   text := key;
    r   record;
BEGIN
    cfg := @extschema@._config(tbl, ancestors => true,
                               detail => 'Figures are kept for the rows of tracked tables only.');
    PERFORM @extschema@._check_readable(tbl, 'The figures of a table are visible to the roles that can read the table.');
    PERFORM @extschema@._check_as_of(as_of);
    BEGIN
        -- only the figures progress() shows are computed
        EXECUTE format('SELECT x.phase, x.kind, x.completed_items, x.total_items, x.percent, x.average_speed,'
                       ' x.smoothed_speed, x.speed, x.eta, x.phase_elapsed_seconds, x.elapsed_seconds,'
                       ' x.since_progress, x.stalled, x.overall_progress, x.reason, x.phase_updated_at,'
                       ' x.progress_updated_at, x.heartbeat_at, x.started_at, x.finished_at, x.label, x.message,'
                       ' x.overall_eta_seconds, x.overall_eta_p95_seconds, x.expected_finish_at FROM (%s) x',
                       @extschema@._figures_sql(cfg, @extschema@._rows_sql(cfg, @extschema@._key_condition(cfg, 't', 2),
                                                                           in_flight => false, source => tbl)))
           INTO STRICT r USING as_of, k;
    EXCEPTION
        WHEN no_data_found OR data_exception THEN
            RAISE EXCEPTION 'table % has no row with key %', tbl, quote_literal(k)
                USING ERRCODE = 'no_data_found',
                      DETAIL = format('Rows are identified by the text of %s.',
                                      CASE WHEN cardinality(cfg.key_columns) = 1
                                           THEN format('their %I column', cfg.key_columns[1])
                                           ELSE format('the row (%s)', array_to_string(cfg.key_columns, ', ')) END),
                      HINT = 'Pass the key as text, for example ''42'' or, for a composite key, ''(42,eu)''.';
        WHEN too_many_rows THEN
            RAISE EXCEPTION 'table % has more than one row with key %', tbl, quote_literal(k)
                USING ERRCODE = 'cardinality_violation',
                      DETAIL = format('The key columns (%s) do not identify a row.', array_to_string(cfg.key_columns, ', ')),
                      HINT = 'Track the table with key columns that are unique.';
    END;

    RETURN jsonb_build_object(
        'table', tbl::text,
        'key', k,
        'as_of', as_of,
        'phase', r.phase,
        'kind', r.kind,
        'completed', r.completed_items,
        'total', r.total_items,
        'percent', r.percent,
        'average_speed', r.average_speed,
        'smoothed_speed', r.smoothed_speed,
        'speed', r.speed,
        'eta_seconds', date_part('epoch', r.eta),
        'phase_elapsed_seconds', r.phase_elapsed_seconds,
        'elapsed_seconds', r.elapsed_seconds,
        'since_progress_seconds', r.since_progress,
        'stalled', r.stalled,
        'overall_progress', r.overall_progress,
        'overall_eta_seconds', r.overall_eta_seconds,
        'overall_eta_p95_seconds', r.overall_eta_p95_seconds,
        'expected_finish_at', r.expected_finish_at,
        'reason', r.reason,
        'phase_updated_at', r.phase_updated_at,
        'progress_updated_at', r.progress_updated_at,
        'heartbeat_at', r.heartbeat_at,
        'started_at', r.started_at,
        'finished_at', r.finished_at)
        -- the label and the message of a table that has such columns
        OPERATOR(pg_catalog.||) CASE WHEN cfg.columns ? 'label' THEN jsonb_build_object('label', r.label) ELSE '{}' END
        OPERATOR(pg_catalog.||) CASE WHEN cfg.columns ? 'message' THEN jsonb_build_object('message', r.message) ELSE '{}' END;
END
$$;
COMMENT ON FUNCTION @extschema@.progress(regclass, text, timestamptz) IS
    'The figures of one row of a tracked table as of a time: phase, kind, counters, percent, average and smoothed speed, ETA, elapsed times, stall, overall progress, and the label and message of a table with such columns';

-- Name of a table's in-flight index: the name of the one it has, or a free
-- name in its schema: its name, cut (at a character boundary) to leave room
-- for the suffix within 63 bytes, then "_dp_in_flight_idx"; when another
-- relation has that name (two tables sharing their first 45 characters), a
-- number before the suffix.
CREATE OR REPLACE FUNCTION @extschema@._in_flight_index_name(tbl regclass)
RETURNS name
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prefix text;
    nsp    oid;
    cand   text;
    n      integer := 1;
BEGIN
    SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = @extschema@._in_flight_index(tbl) INTO cand;
    IF cand IS NOT NULL THEN
        RETURN cand;
    END IF;
    SELECT left(c.relname, 45), c.relnamespace INTO prefix, nsp FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    LOOP
        WHILE octet_length(prefix) + CASE WHEN n = 1 THEN 0 ELSE length(n::text) + 1 END > 46 LOOP
            prefix := left(prefix, -1);
        END LOOP;
        cand := prefix || CASE WHEN n = 1 THEN '' ELSE '_' || n END || '_dp_in_flight_idx';
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = nsp AND c.relname = cand);
        n := n + 1;
    END LOOP;
    RETURN cand;
END
$$;
COMMENT ON FUNCTION @extschema@._in_flight_index_name(regclass) IS
    'Internal: the name of a tracked table''s partial index over in-flight rows (a free one when it has none yet)';

-- The index a tracked table should have (and its marker comment).
CREATE OR REPLACE FUNCTION @extschema@.in_flight_index_statement(tbl regclass, concurrent boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    cfg := @extschema@._config(tbl);
    RETURN format('CREATE INDEX %sIF NOT EXISTS %I ON %s (%I) WHERE %s',
                  -- a partitioned table's index cannot be built concurrently
                  CASE WHEN concurrent AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                                        WHERE c.oid = tbl AND c.relkind = 'p')
                       THEN 'CONCURRENTLY ' ELSE '' END,
                  @extschema@._in_flight_index_name(tbl), tbl, cfg.phase_column,
                  @extschema@._in_flight_predicate(cfg));
END
$$;
COMMENT ON FUNCTION @extschema@.in_flight_index_statement(regclass, boolean) IS
    'The CREATE INDEX statement of a tracked table''s partial index over in-flight rows, to run by hand (CONCURRENTLY, outside a transaction) on large tables';

-- Finds the in-flight index of a table: the index track() created, found by
-- the suffix of its name (its comment is the statement that created it).
CREATE OR REPLACE FUNCTION @extschema@._in_flight_index(tbl regclass)
RETURNS regclass
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.indexrelid::pg_catalog.regclass
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid
     WHERE i.indrelid OPERATOR(pg_catalog.=) tbl
       AND c.relname::pg_catalog.text OPERATOR(pg_catalog.~) '_dp_in_flight_idx$'
     ORDER BY c.relname LIMIT 1
$$;
COMMENT ON FUNCTION @extschema@._in_flight_index(regclass) IS
    'Internal: the in-flight partial index of a tracked table, if it has one';

-- Reports a table that a global reader or sweep had to skip (it raised an
-- error: a column it was tracked with is gone, a value the extension
-- cannot write, ...), so that one bad table never stops the others.  A
-- reader asked about that one table raises the error instead.
CREATE OR REPLACE FUNCTION @extschema@._skipped(tbl regclass, reader text, state text, message text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE WARNING 'deploy_progress.%() skipped table %', reader, tbl
        USING DETAIL = format('It raised %s: %s', state, message),
              HINT = 'Fix the table, or run deploy_progress.track() on it again; the other tables were read.';
END
$$;
COMMENT ON FUNCTION @extschema@._skipped(regclass, text, text, text) IS
    'Internal: the warning of a global reader or sweep that skips a table whose query failed';

-- The configurations the global readers and sweeps go through, in table
-- name order: every tracked table (or only tbl, which must be tracked) on
-- which the caller has all of "privileges".  hint is for a tbl that is not
-- tracked.
CREATE OR REPLACE FUNCTION @extschema@._configs(tbl regclass, as_of timestamptz, hint text,
                                                privileges text[] DEFAULT ARRAY['SELECT'])
RETURNS SETOF @extschema@.tracked
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tbl IS NOT NULL THEN
        PERFORM @extschema@._config(tbl, hint);
        -- a table asked for by name is an error where the caller lacks a
        -- privilege; a global reader passes over it
        IF NOT (SELECT bool_and(has_table_privilege(tbl, p)) FROM unnest(privileges) p) THEN
            RAISE EXCEPTION 'permission denied for table %', tbl
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('This needs the %s privileges on the table.', array_to_string(privileges, ' and ')),
                      HINT = 'Ask the table''s owner to grant them.';
        END IF;
    END IF;
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM @extschema@._check_as_of(as_of);
    RETURN QUERY
    SELECT * FROM @extschema@.tracked t
     WHERE (tbl IS NULL OR t.relid = tbl)
       AND (SELECT bool_and(has_table_privilege(t.relid, p)) FROM unnest(privileges) p)
     ORDER BY t.relid::text;
END
$$;
COMMENT ON FUNCTION @extschema@._configs(regclass, timestamptz, text, text[]) IS
    'Internal: the tracking configurations a global reader or sweep goes through (all tables, or one), those on which the caller has the given privileges';

-- The query stuck() runs for one table ($1: as of).
CREATE OR REPLACE FUNCTION @extschema@._stuck_query(cfg @extschema@.tracked)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
        'SELECT %L::pg_catalog.regclass, r.key, r.phase, r.stuck_reason, r.stuck_clock, r.stuck_deadline,'
        ' CASE WHEN pg_catalog.isfinite(r.stuck_clock)'
        '      THEN $1 OPERATOR(pg_catalog.-) (r.stuck_clock OPERATOR(pg_catalog.+) r.stuck_deadline)'
        '      ELSE @extschema@._infinite_stamp(r.key, (SELECT sr.clock FROM @extschema@._stuck_reasons() sr'
        '                                              WHERE sr.reason OPERATOR(pg_catalog.=) r.stuck_reason), r.stuck_clock) END'
        ' FROM (%s) r ORDER BY 7 DESC, 2',
        cfg.relid::oid, @extschema@._rows_sql(cfg, 'st.reason IS NOT NULL'))
$$;
COMMENT ON FUNCTION @extschema@._stuck_query(@extschema@.tracked) IS
    'Internal: the query stuck() runs for one tracked table';

-- The query of a global reader for one table ($1: as of): stuck() and
-- in_flight's rows (_stuck_query(), _in_flight_query()), the metrics read
-- from the table (_table_metrics_query()), and for fail_stuck() the table
-- once when it has a stuck row.
CREATE OR REPLACE FUNCTION @extschema@._reader_query(cfg @extschema@.tracked, reader text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE reader
        WHEN 'stuck' THEN @extschema@._stuck_query(cfg)
        WHEN 'in_flight' THEN @extschema@._in_flight_query(cfg)
        WHEN 'metrics' THEN @extschema@._table_metrics_query(cfg)
        WHEN 'sweep' THEN format('SELECT %L::pg_catalog.regclass FROM (%s) r',
                                 cfg.relid::oid, @extschema@._rows_sql(cfg, 'st.reason IS NOT NULL', 'LIMIT 1'))
    END;
END
$$;
COMMENT ON FUNCTION @extschema@._reader_query(@extschema@.tracked, text) IS
    'Internal: the query a global reader (stuck, in_flight, metrics, sweep) runs for one tracked table';

-- The in-flight index of a table when it holds exactly the table's
-- in-flight rows: valid, of a plain table (a partitioned table's rows are
-- in its partitions' indexes), and made for the lifecycle's current
-- terminal phases (its comment is the statement that would make it now).
-- _read_each() passes over a table whose such index has no entry.  Not
-- of a table Citus manages: its rows are in its shards, not in the table
-- this node sees (20_tracking.sql, _citus_kind()).
CREATE OR REPLACE FUNCTION @extschema@._in_flight_index_current(tbl regclass)
RETURNS regclass
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.indexrelid::pg_catalog.regclass
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indrelid
     WHERE i.indexrelid OPERATOR(pg_catalog.=) @extschema@._in_flight_index(tbl)
       AND i.indisvalid AND i.indisready AND i.indislive
       AND c.relkind OPERATOR(pg_catalog.=) 'r'
       AND @extschema@._citus_kind(tbl) IS NULL
       AND pg_catalog.obj_description(i.indexrelid, 'pg_class')
           IS NOT DISTINCT FROM @extschema@.in_flight_index_statement(tbl, false)
$$;
COMMENT ON FUNCTION @extschema@._in_flight_index_current(regclass) IS
    'Internal: the in-flight index of a tracked table when it holds exactly the table''s in-flight rows (valid, of a plain table, with the current predicate)';

-- The rows a global reader (stuck, in_flight, metrics, sweep) returns: its
-- query for each table _configs() gives, prepared once per session (see
-- src/readers.c); a table whose query fails is skipped with a warning (or,
-- asked about that one table, raises its error); each query sorts, so that
-- an error leaves none of its rows behind.
CREATE OR REPLACE FUNCTION @extschema@._read_each(tbl regclass, as_of timestamptz, reader text)
RETURNS SETOF record
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'dp_read_each';
COMMENT ON FUNCTION @extschema@._read_each(regclass, timestamptz, text) IS
    'Internal: the rows of a global reader (stuck, in_flight, metrics, sweep) over every tracked table the caller can read, or one';

CREATE OR REPLACE FUNCTION @extschema@.stuck(tbl regclass DEFAULT NULL, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (relid regclass, key text, phase text, reason text,
               clock_started_at timestamptz, deadline interval, overdue_by interval)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@._read_each(tbl, as_of, 'stuck')
        AS r(relid regclass, key text, phase text, reason text,
             clock_started_at timestamptz, deadline interval, overdue_by interval)
$$;
COMMENT ON FUNCTION @extschema@.stuck(regclass, timestamptz) IS
    'Rows of tracked tables (all, or one) that are stuck as of a time, with the reason, the time the reason''s clock started, the deadline and how far past it';

-- One batch of fail_stuck() in one table for one reason: locks up to
-- batch_size rows stuck for "why" (skipping rows a writer holds and the
-- addresses in seen_oids/seen_tids, which this sweep locked already), then,
-- in a new statement (a fresh snapshot, with the rows locked), re-checks and
-- fails them; a row that progressed since the sweep started no longer
-- matches and is left.  Returns {"oids": [...], "tids": [...]} (the rows
-- locked) and "rows": [{"key", "from_phase"}] (the rows failed).
-- fail_stuck() calls it through _fail_batch_as_owner(), which runs it as the
-- table's owner so that the table's triggers, defaults, constraints and
-- index expressions never run with the sweeper's rights.
CREATE OR REPLACE FUNCTION @extschema@._fail_batch(tbl regclass, why text, batch_size integer,
                                                   as_of timestamptz, seen_oids oid[], seen_tids tid[])
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg       @extschema@.tracked := @extschema@._config(tbl);
    failed    text;
    col_type  text := format_type(@extschema@._column_type(cfg.relid, cfg.phase_column), NULL);
    tableoids oid[];
    ctids     tid[];
    keys      text[];
    phases    text[];
    done      jsonb;
BEGIN
    SELECT p.phase INTO failed FROM @extschema@.lifecycle_phases p
     WHERE p.lifecycle = cfg.lifecycle AND p.kind = 'failed' ORDER BY p.position LIMIT 1;
    IF @extschema@._citus_kind(tbl) = 'distributed' THEN
        RETURN @extschema@._fail_batch_citus(cfg, failed, why, batch_size, as_of);
    END IF;
    -- 1. lock a batch of stuck rows, skipping rows a writer holds
    EXECUTE format(
        'SELECT pg_catalog.array_agg(r.dp_tableoid), pg_catalog.array_agg(r.dp_ctid),'
        '       pg_catalog.array_agg(r.key), pg_catalog.array_agg(r.phase) FROM (%s) r',
        @extschema@._rows_sql(cfg, format('st.reason OPERATOR(pg_catalog.=) %L AND NOT EXISTS ('
                                          'SELECT FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.oid[]), pg_catalog.unnest($3::pg_catalog.tid[])) AS s(toid, tid)'
                                          ' WHERE s.toid OPERATOR(pg_catalog.=) t.tableoid AND s.tid OPERATOR(pg_catalog.=) t.ctid)', why),
                              format('LIMIT %s FOR UPDATE OF t SKIP LOCKED', batch_size)))
    INTO tableoids, ctids, keys, phases USING as_of, seen_oids, seen_tids;
    IF ctids IS NULL THEN
        RETURN jsonb_build_object('oids', '[]'::jsonb, 'tids', '[]'::jsonb, 'rows', '[]'::jsonb);
    END IF;

    -- 2. re-check and fail them, naming the reason for the history
    PERFORM set_config('deploy_progress.transition_reason', why, true)
       FROM pg_catalog.pg_settings WHERE name = 'deploy_progress.transition_reason';
    EXECUTE format(
        'WITH locked AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.oid[]), pg_catalog.unnest($3::pg_catalog.tid[]),'
        '                                        pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[])) AS l(toid, tid, key, phase)),'
        ' failed AS ('
        '  UPDATE %1$s t SET %2$I = %3$L::%4$s%5$s'
        '   WHERE t.ctid OPERATOR(pg_catalog.=) ANY ($3)'
        '     AND (t.tableoid, t.ctid) IN (SELECT r.dp_tableoid, r.dp_ctid FROM (%6$s) r'
        '                                   JOIN locked l ON l.toid OPERATOR(pg_catalog.=) r.dp_tableoid'
        '                                                AND l.tid OPERATOR(pg_catalog.=) r.dp_ctid)'
        '  RETURNING %7$s AS key)'
        ' SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(''key'', f.key, ''from_phase'', l.phase) ORDER BY f.key), ''[]'')'
        '   FROM failed f JOIN locked l ON l.key OPERATOR(pg_catalog.=) f.key',
        cfg.relid, cfg.phase_column, failed, col_type,
        CASE WHEN @extschema@._role_column(cfg, 'failure_reason') IS NULL THEN ''
             ELSE format(', %I = %L', @extschema@._role_column(cfg, 'failure_reason'), why) END,
        @extschema@._rows_sql(cfg, format('t.ctid OPERATOR(pg_catalog.=) ANY ($3) AND st.reason OPERATOR(pg_catalog.=) %L', why)),
        @extschema@._key_expr(cfg, 't'))
    INTO done USING as_of, tableoids, ctids, keys, phases;
    PERFORM set_config('deploy_progress.transition_reason', '', true)
       FROM pg_catalog.pg_settings WHERE name = 'deploy_progress.transition_reason';
    RETURN jsonb_build_object('oids', to_jsonb(tableoids), 'tids', to_jsonb(ctids::text[]), 'rows', done);
END
$$;
COMMENT ON FUNCTION @extschema@._fail_batch(regclass, text, integer, timestamptz, oid[], tid[]) IS
    'Internal: one batch of fail_stuck() in one table for one reason (call it through _fail_batch_as_owner())';

-- _fail_batch() on a Citus distributed table, from the coordinator: a
-- tableoid names a shard on one worker only, and Citus cannot lock the rows
-- of a query over several shards (FOR UPDATE).  So it reads up to
-- batch_size rows stuck for "why" across the shards, each with its
-- distribution column's value and its row version (ctid and xmin on its
-- shard), and fails each with an UPDATE routed to its shard by the
-- distribution column, re-checked there under the row lock the UPDATE
-- takes: the row version must be the one read, so a row written since (a
-- heartbeat, progress, another sweep that failed it first) is left.  Two overlapping sweeps fail each row
-- once: the second waits for the first's lock, then finds a newer version.
-- The failure reason reaches the shards' history through a SET LOCAL that
-- Citus propagates (citus.propagate_set_commands, set by fail_stuck()).
-- One batch per reason and sweep: rows past batch_size go to the next sweep
-- ("tids" is empty, so fail_stuck() does not ask again).
CREATE OR REPLACE FUNCTION @extschema@._fail_batch_citus(cfg @extschema@.tracked, failed text, why text,
                                                         batch_size integer, as_of timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dist      name := @extschema@._citus_distribution_column(cfg.relid);
    dist_type text := format_type(@extschema@._column_type(cfg.relid, dist), NULL);
    col_type  text := format_type(@extschema@._column_type(cfg.relid, cfg.phase_column), NULL);
    r         record;
    done      jsonb := '[]';
    hit       boolean;
BEGIN
    EXECUTE format('SET LOCAL deploy_progress.transition_reason = %L', why);
    FOR r IN EXECUTE format(
        'SELECT r.key, r.phase, r.dp_ctid, r.dp_xmin, r.dp_dist FROM (%s) r'
        ' ORDER BY r.key LIMIT %s',
        @extschema@._rows_sql(cfg, format('st.reason OPERATOR(pg_catalog.=) %L', why)), batch_size)
        USING as_of
    LOOP
        EXECUTE format(
            'UPDATE %1$s t SET %2$I = %3$L::%4$s%5$s'
            ' WHERE t.%6$I OPERATOR(pg_catalog.=) $1::%7$s'
            '   AND t.ctid OPERATOR(pg_catalog.=) $2 AND t.xmin OPERATOR(pg_catalog.=) $3'
            ' RETURNING true',
            cfg.relid, cfg.phase_column, failed, col_type,
            CASE WHEN @extschema@._role_column(cfg, 'failure_reason') IS NULL THEN ''
                 ELSE format(', %I = %L', @extschema@._role_column(cfg, 'failure_reason'), why) END,
            dist, dist_type)
        INTO hit USING r.dp_dist, r.dp_ctid, r.dp_xmin;
        IF hit THEN
            done := done || jsonb_build_array(jsonb_build_object('key', r.key, 'from_phase', r.phase));
        END IF;
    END LOOP;
    EXECUTE 'SET LOCAL deploy_progress.transition_reason = ''''';
    RETURN jsonb_build_object('oids', '[]'::jsonb, 'tids', '[]'::jsonb, 'rows', done);
END
$$;
COMMENT ON FUNCTION @extschema@._fail_batch_citus(@extschema@.tracked, text, text, integer, timestamptz) IS
    'Internal: one batch of fail_stuck() in a Citus distributed table for one reason: rows read across the shards, failed by key on their shard if their row version is unchanged';

-- _fail_batch() as the table's owner, inside a security-restricted
-- operation with search_path pg_catalog, pg_temp (as VACUUM and REFRESH
-- MATERIALIZED VIEW run another role's code), after checking that the caller
-- may select and update the table.  Where row-level security applies to the
-- caller it runs as the caller instead, so that the caller's policies
-- decide which rows it fails, as for any UPDATE it makes.
CREATE OR REPLACE FUNCTION @extschema@._fail_batch_as_owner(tbl regclass, why text, batch_size integer,
                                                            as_of timestamptz, seen_oids oid[], seen_tids tid[])
RETURNS jsonb
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'dp_fail_batch_as_owner';
COMMENT ON FUNCTION @extschema@._fail_batch_as_owner(regclass, text, integer, timestamptz, oid[], tid[]) IS
    'Internal: _fail_batch() run as the table''s owner in a security-restricted operation (as the caller where row-level security applies to it)';

CREATE OR REPLACE FUNCTION @extschema@.fail_stuck(tbl regclass DEFAULT NULL, batch_size integer DEFAULT 1000,
                                       as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (relid regclass, key text, from_phase text, to_phase text, reason text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- (on a Citus distributed table, the failure reason reaches the shards'
-- history through SET LOCAL: _fail_batch_citus())
SET citus.propagate_set_commands = 'local'
AS $$
DECLARE
    cfg       @extschema@.tracked;
    failed    text;
    reasons   text[] := ARRAY(SELECT sr.reason FROM @extschema@._stuck_reasons() sr ORDER BY sr.priority);
    why       text;
    batch     jsonb;
    seen_oids oid[];
    seen_tids tid[];
    broken    boolean;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot fail stuck rows on a standby'
            USING ERRCODE = 'read_only_sql_transaction',
                  DETAIL = 'fail_stuck() changes rows, and this server is in recovery (read-only).',
                  HINT = 'Run fail_stuck() on the primary; stuck() reports stuck rows on a standby too.';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', coalesce(batch_size::text, 'NULL'));
    END IF;
    -- the tables that have a stuck row as of as_of (or whose query failed:
    -- their batch reports it), read as stuck() reads them, so that tables
    -- with nothing to fail cost one prepared query each
    FOR cfg IN SELECT t.* FROM ROWS FROM (@extschema@._read_each(tbl, as_of, 'sweep') AS (relid regclass))
                               WITH ORDINALITY AS s(relid, n)
                 JOIN @extschema@.tracked t ON t.relid OPERATOR(pg_catalog.=) s.relid
                ORDER BY s.n
    LOOP
        SELECT p.phase INTO failed FROM @extschema@.lifecycle_phases p
         WHERE p.lifecycle = cfg.lifecycle AND p.kind = 'failed' ORDER BY p.position LIMIT 1;
        -- the rows this sweep locked in this table: a row that could not
        -- be failed (a trigger of the table's skipped its update) keeps its
        -- address and is not locked again, so every batch makes progress
        seen_oids := '{}';
        seen_tids := '{}';
        broken := false;

        -- one reason at a time, so that each statement can name its reason
        -- (for the history and the reason column); a row is failed by the
        -- first reason that catches it, in stuck()'s order of priority
        FOREACH why IN ARRAY reasons LOOP
            EXIT WHEN broken;
            LOOP
                -- each batch is all or nothing: a table whose batch fails
                -- is reported and left, and the sweep goes on
                BEGIN
                    batch := @extschema@._fail_batch_as_owner(cfg.relid, why, batch_size, as_of, seen_oids, seen_tids);
                    seen_oids := seen_oids || ARRAY(SELECT pg_catalog.jsonb_array_elements_text(batch->'oids'))::oid[];
                    seen_tids := seen_tids || ARRAY(SELECT pg_catalog.jsonb_array_elements_text(batch->'tids'))::tid[];
                    RETURN QUERY
                        SELECT cfg.relid, r->>'key', r->>'from_phase', failed, why
                          FROM pg_catalog.jsonb_array_elements(batch->'rows') AS r;
                EXCEPTION WHEN OTHERS THEN
                    IF tbl IS NOT NULL THEN
                        RAISE;
                    END IF;
                    PERFORM @extschema@._skipped(cfg.relid, 'fail_stuck', SQLSTATE, SQLERRM);
                    broken := true;
                END;
                EXIT WHEN broken OR jsonb_array_length(batch->'tids') < batch_size;
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.fail_stuck(regclass, integer, timestamptz) IS
    'Moves stuck rows to their lifecycle''s failed phase (locking with SKIP LOCKED and re-checking under the lock, in batches, as each table''s owner) and returns what it failed';

-- Whether the session with a process ID and start time is still connected
-- (src/claims.c: the process array, and pg_stat_activity's start time);
-- NULL on a standby, which cannot see the primary's sessions.
CREATE OR REPLACE FUNCTION @extschema@._owner_alive(pid integer, backend_start timestamptz)
RETURNS boolean
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'dp_owner_alive';
COMMENT ON FUNCTION @extschema@._owner_alive(integer, timestamptz) IS
    'Internal: whether the server session with this process ID and start time (pg_stat_activity.backend_start) still exists (NULL on a standby)';

-- Everyone reads the claims through this view: those of the tables it may
-- read, and of a table whose row-level security applies to the role, those
-- of the rows it can see.
CREATE OR REPLACE VIEW @extschema@.owners
WITH (security_barrier)
AS
SELECT c.relid, c.key, c.pid, c.backend_start, c.claimed_at,
       @extschema@._owner_alive(c.pid, c.backend_start) AS alive
  FROM @extschema@.claims c
 WHERE pg_catalog.has_table_privilege(c.relid, 'SELECT')
   AND (NOT pg_catalog.row_security_active(c.relid) OR @extschema@._row_visible(c.relid, c.key));
COMMENT ON VIEW @extschema@.owners IS
    'The claimed rows of the tracked tables the current role can read (of a table under row-level security, of the rows it can see): the owner session''s process ID and start time, when it claimed the row, and whether it is still connected';
GRANT SELECT ON @extschema@.owners TO PUBLIC;

-- claim()'s check, with the caller's rights: the table is tracked, the
-- caller may update the row (it is locked FOR UPDATE, which applies the
-- table's privileges and UPDATE policies), and the row has not ended.
-- Gives the tracked table (a partition's partitioned table) and the row's
-- key text as the triggers write it.
CREATE OR REPLACE FUNCTION @extschema@._claim_row(tbl regclass, key text, OUT relid regclass, OUT row_key text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
    k   text := key;
    r   record;
BEGIN
    cfg := @extschema@._config(tbl, 'Only the rows of tracked tables can be claimed; track it with deploy_progress.track() first.',
                               ancestors => true);
    IF NOT has_any_column_privilege(tbl, 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied to claim rows of table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'claim() makes the calling session the owner of the row, as the worker that updates it: it needs the UPDATE privilege on the table.',
                  HINT = 'Claim rows as the role that works on them; readers use stuck() and the owners view.';
    END IF;
    BEGIN
        EXECUTE format('SELECT x.key, x.phase, x.kind, x.failure_reason FROM (%s) x',
                       @extschema@._rows_sql(cfg, @extschema@._key_condition(cfg, 't', 2), 'FOR UPDATE OF t',
                                             in_flight => false, source => tbl))
           INTO STRICT r USING pg_catalog.now(), k;
    EXCEPTION
        WHEN no_data_found OR data_exception THEN
            RAISE EXCEPTION 'table % has no row with key %', tbl, quote_literal(k)
                USING ERRCODE = 'no_data_found',
                      DETAIL = 'Only an existing row can be claimed.',
                      HINT = 'Insert the row first, then claim it with its key text, for example ''42'' or, for a composite key, ''(42,eu)''.';
        WHEN too_many_rows THEN
            RAISE EXCEPTION 'table % has more than one row with key %', tbl, quote_literal(k)
                USING ERRCODE = 'cardinality_violation',
                      DETAIL = format('The key columns (%s) do not identify a row.', array_to_string(cfg.key_columns, ', ')),
                      HINT = 'Track the table with key columns that are unique.';
    END;
    IF r.kind = ANY (@extschema@._kinds('terminal')) THEN
        RAISE EXCEPTION 'cannot claim row % of table %: it has ended', quote_literal(r.key), tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('It is in %s phase "%s"%s.', r.kind, r.phase,
                                  CASE WHEN r.failure_reason IS NOT NULL THEN format('; reason: %s', r.failure_reason) ELSE '' END),
                  HINT = 'Claim a row that has not ended; insert a new row for a new attempt.';
    END IF;
    relid := cfg.relid;
    row_key := r.key;
END
$$;
COMMENT ON FUNCTION @extschema@._claim_row(regclass, text) IS
    'Internal: claim()''s check and lock of the row, as the caller; gives the tracked table and the row''s key text';

-- claim()'s write, run as the extension's owner (REVOKEd from PUBLIC):
-- records the session as the row's owner, taking the row over from an
-- owner whose session has ended; a live owner's claim is an error, this
-- session's own claim is kept as it is.
CREATE OR REPLACE FUNCTION @extschema@._claim_write(tbl regclass, key text, pid integer, backend_start timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    held @extschema@.claims;
BEGIN
    INSERT INTO @extschema@.claims AS c (relid, key, pid, backend_start, claimed_at)
    VALUES (tbl, key, pid, backend_start, pg_catalog.now())
    ON CONFLICT ON CONSTRAINT claims_pkey DO UPDATE
       SET pid = excluded.pid, backend_start = excluded.backend_start, claimed_at = excluded.claimed_at
     WHERE NOT @extschema@._owner_alive(c.pid, c.backend_start);
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO held FROM @extschema@.claims c
     WHERE c.relid = _claim_write.tbl AND c.key = _claim_write.key;
    IF held.pid = _claim_write.pid AND held.backend_start = _claim_write.backend_start THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'row % of table % is claimed by another session', quote_literal(key), tbl
        USING ERRCODE = 'object_in_use',
              DETAIL = format('The session with process ID %s (started %s) claimed it at %s and is still connected.',
                              held.pid, held.backend_start, held.claimed_at),
              HINT = 'Claim another row; this one can be claimed again once that session calls release() on it or ends.';
END
$$;
COMMENT ON FUNCTION @extschema@._claim_write(regclass, text, integer, timestamptz) IS
    'Internal: records a claim for claim() (run as the extension''s owner)';
REVOKE ALL ON FUNCTION @extschema@._claim_write(regclass, text, integer, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.claim(tbl regclass, key text)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'dp_claim';
COMMENT ON FUNCTION @extschema@.claim(regclass, text) IS
    'Makes the calling session the owner of a row of a tracked table (it must be allowed to update the row): stuck() reports the row as owner_gone as soon as the session ends, and the session''s writes to the row fail once someone else ends it';

-- Ends this session's claim on a row; false when it held none.  Runs as
-- the extension's owner, and removes only a claim of the calling session.
CREATE OR REPLACE FUNCTION @extschema@.release(tbl regclass, key text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    IF tbl IS NULL OR key IS NULL THEN
        RAISE EXCEPTION 'table and key must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the tracked table and the row''s key text, as to claim().';
    END IF;
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot release rows on a standby'
            USING ERRCODE = 'read_only_sql_transaction',
                  DETAIL = 'Claims are recorded on the primary, and this server is in recovery (read-only).',
                  HINT = 'Connect the worker to the primary.';
    END IF;
    cfg := @extschema@._config(tbl, 'Only the rows of tracked tables can be claimed and released.', ancestors => true);
    DELETE FROM @extschema@.claims c
     WHERE c.relid = cfg.relid
       AND c.key = @extschema@._key_text(cfg.relid, release.key)
       AND c.pid = pg_catalog.pg_backend_pid()
       AND c.backend_start = (SELECT a.backend_start FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a);
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION @extschema@.release(regclass, text) IS
    'Ends the calling session''s claim on a row of a tracked table; false when the session did not claim it';

-- Removes the claims of a table that is not (or no longer) tracked;
-- untrack() runs with the caller's rights, who cannot write the claims, so
-- this runs as their owner, and since it only removes claims of a table
-- that no tracking configuration refers to, anyone may call it.
CREATE OR REPLACE FUNCTION @extschema@._forget_claims(tbl regclass)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM @extschema@.claims c
     WHERE c.relid OPERATOR(pg_catalog.=) tbl
       AND NOT EXISTS (SELECT 1 FROM @extschema@.tracked t WHERE t.relid OPERATOR(pg_catalog.=) tbl)
$$;
COMMENT ON FUNCTION @extschema@._forget_claims(regclass) IS
    'Internal: removes the claims of a table that is not tracked';

-- The query in_flight() runs for one table ($1: as of), in key order.
CREATE OR REPLACE FUNCTION @extschema@._in_flight_query(cfg @extschema@.tracked)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
        'SELECT %L::pg_catalog.regclass, r.key, r.phase, r.kind, r.completed_items, r.total_items, r.percent,'
        '       r.average_speed, r.smoothed_speed, r.speed, r.eta,'
        '       r.phase_updated_at, r.progress_updated_at, r.heartbeat_at, r.started_at,'
        '       r.in_phase, r.elapsed, r.overall_progress, r.stuck_reason, r.label, r.message,'
        '       r.overall_eta, r.overall_eta_p95, r.expected_finish_at'
        '  FROM (%s) r ORDER BY r.key',
        cfg.relid::oid, @extschema@._figures_sql(cfg, @extschema@._rows_sql(cfg)))
$$;
COMMENT ON FUNCTION @extschema@._in_flight_query(@extschema@.tracked) IS
    'Internal: the query in_flight() runs for one tracked table';

CREATE OR REPLACE FUNCTION @extschema@.in_flight(tbl regclass DEFAULT NULL, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (relid regclass, key text, phase text, kind text,
               completed bigint, total bigint, percent double precision,
               average_speed double precision, smoothed_speed double precision, speed double precision,
               eta interval,
               phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
               started_at timestamptz, in_phase interval, elapsed interval,
               overall_progress double precision, stuck_reason text, label text, message text,
               overall_eta interval, overall_eta_p95 interval, expected_finish_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@._read_each(tbl, as_of, 'in_flight')
        AS r(relid regclass, key text, phase text, kind text,
             completed bigint, total bigint, percent double precision,
             average_speed double precision, smoothed_speed double precision, speed double precision,
             eta interval,
             phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
             started_at timestamptz, in_phase interval, elapsed interval,
             overall_progress double precision, stuck_reason text, label text, message text,
             overall_eta interval, overall_eta_p95 interval, expected_finish_at timestamptz)
$$;
COMMENT ON FUNCTION @extschema@.in_flight(regclass, timestamptz) IS
    'In-flight (non-terminal) rows of the tracked tables (all, or one) that the current role can read, with their figures, stuck reason, label and message, and the whole run''s ETA as of a time';

CREATE OR REPLACE VIEW @extschema@.in_flight AS
SELECT * FROM @extschema@.in_flight(NULL, pg_catalog.now());
COMMENT ON VIEW @extschema@.in_flight IS
    'Every in-flight (non-terminal) row of every tracked table the current role can read: phase, counters, percent, speeds, ETA, elapsed times, overall progress, stuck reason (NULL when healthy), the row''s label and message (NULL when the table has no such column), and the ETA of the whole run (NULL where the history is too thin)';
GRANT SELECT ON @extschema@.in_flight TO PUBLIC;

-- A stalled fleet: a table whose queue waits while nothing works on it,
-- the "23 queued, 0 in progress" of a dead runner pool, as one row instead
-- of one stuck row per queued row.  A table is stalled as of a time when at
-- least one of its pending rows is queue_overdue and none of its active rows
-- is working: an active row works unless it is stuck for a reason that says
-- its worker is gone or silent (every reason but phase_overdue, which a slow
-- row that still reports progress can have).
CREATE OR REPLACE FUNCTION @extschema@.stuck_tables(tbl regclass DEFAULT NULL, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (relid regclass, reason text, queue_overdue bigint, active bigint, active_stuck bigint,
               queued_since timestamptz, last_activity_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.relid, 'fleet_stall'::text,
           pg_catalog.count(*) FILTER (WHERE f.stuck_reason OPERATOR(pg_catalog.=) 'queue_overdue'),
           pg_catalog.count(*) FILTER (WHERE f.kind OPERATOR(pg_catalog.=) 'active'),
           pg_catalog.count(*) FILTER (WHERE f.kind OPERATOR(pg_catalog.=) 'active' AND f.stuck_reason IS NOT NULL),
           pg_catalog.min(f.phase_updated_at) FILTER (WHERE f.stuck_reason OPERATOR(pg_catalog.=) 'queue_overdue'),
           pg_catalog.max(GREATEST(f.phase_updated_at, f.progress_updated_at, f.heartbeat_at))
               FILTER (WHERE f.kind OPERATOR(pg_catalog.=) 'active')
      FROM @extschema@.in_flight(tbl, as_of) f
     GROUP BY f.relid
    HAVING pg_catalog.count(*) FILTER (WHERE f.stuck_reason OPERATOR(pg_catalog.=) 'queue_overdue') OPERATOR(pg_catalog.>) 0
       AND pg_catalog.count(*) FILTER (WHERE f.kind OPERATOR(pg_catalog.=) 'active'
                                        AND (f.stuck_reason IS NULL
                                             OR f.stuck_reason OPERATOR(pg_catalog.=) 'phase_overdue')) OPERATOR(pg_catalog.=) 0
     ORDER BY f.relid::text
$$;
COMMENT ON FUNCTION @extschema@.stuck_tables(regclass, timestamptz) IS
    'Tracked tables (all, or one) whose fleet is stalled as of a time: rows wait past the queue deadline while no active row works (each active row is stuck for no_heartbeat, no_progress or another reason that says its worker is gone), with the counts and times an operator needs';

-- The history is written by the trigger as the table's owner and read by
-- everyone through views that show the rows of the tables they can read.
CREATE OR REPLACE VIEW @extschema@.transitions
WITH (security_barrier)
AS
SELECT h.id, h.relid, h.key, h.from_phase, h.to_phase, h.to_kind, h.at,
       h.time_in_previous, h.completed, h.total, h.reason, h.txid,
       h.label, h.message, h.metadata
  FROM @extschema@.history h
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) h.relid
 WHERE pg_catalog.has_table_privilege(c.oid, 'SELECT')
   AND (NOT pg_catalog.row_security_active(c.oid) OR @extschema@._row_visible(h.relid, h.key));
COMMENT ON VIEW @extschema@.transitions IS
    'The transition history of the tables the current role can read (of a table under row-level security, of the rows it can see): one row per phase entered, with the time spent in the previous phase, the counters, the reason, and the row''s label, message and metadata as the transition wrote them';
GRANT SELECT ON @extschema@.transitions TO PUBLIC;

-- The two numbers of a cursor, or an error.
CREATE OR REPLACE FUNCTION @extschema@._event_cursor(cursor text)
RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m text[];
BEGIN
    m := pg_catalog.regexp_match(cursor, '^([0-9]{1,19}):([0-9]{1,19})$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'invalid event cursor "%"', cursor
              USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = 'A cursor is the text "transaction:id" that events_since() returns in its "cursor" column.',
                    HINT = 'Pass the cursor of the last event you processed, or NULL to start from the oldest event; events_cursor() gives one that starts now.';
    END IF;
    BEGIN
        RETURN ARRAY[m[1]::bigint, m[2]::bigint];
    EXCEPTION WHEN numeric_value_out_of_range THEN
        RAISE EXCEPTION 'event cursor "%" is out of range', cursor
              USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = 'Both numbers of a cursor fit in a bigint.',
                    HINT = 'Pass a cursor that events_since() or events_cursor() returned.';
    END;
END
$$;
COMMENT ON FUNCTION @extschema@._event_cursor(text) IS
    'Internal: the transaction and the id of an event cursor, checked';

CREATE OR REPLACE FUNCTION @extschema@.events_since(after text DEFAULT NULL, max_events integer DEFAULT 1000,
                                                    tbl regclass DEFAULT NULL)
RETURNS TABLE (cursor text, id bigint, relid regclass, key text, from_phase text, to_phase text,
               to_kind text, at timestamptz, completed bigint, total bigint, percent double precision,
               reason text, label text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos bigint[] := ARRAY[-1, -1];
    horizon bigint;
BEGIN
    IF max_events IS NULL OR max_events OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'max_events must be at least 1'
              USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = pg_catalog.format('max_events is %s.', coalesce(max_events::text, 'NULL')),
                    HINT = 'Pass how many events to return at most, such as 1000; call again with the last cursor for more.';
    END IF;
    IF after IS NOT NULL THEN
        pos := @extschema@._event_cursor(after);
    END IF;
    IF tbl IS NOT NULL THEN
        PERFORM @extschema@._readable_config(tbl);
    END IF;
    -- every transaction below the horizon has ended: its rows are visible
    -- to this statement's snapshot, or gone for good
    horizon := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint;
    RETURN QUERY
        SELECT h.txid::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) h.id::text,
               h.id, h.relid, h.key, h.from_phase, h.to_phase, h.to_kind, h.at, h.completed, h.total,
               @extschema@.percent(h.completed, h.total), h.reason, h.label, h.message
          FROM @extschema@.transitions h
         WHERE h.txid OPERATOR(pg_catalog.>=) pos[1] AND h.txid OPERATOR(pg_catalog.<) horizon
           AND (h.txid OPERATOR(pg_catalog.>) pos[1] OR h.id OPERATOR(pg_catalog.>) pos[2])
           AND (tbl IS NULL OR h.relid OPERATOR(pg_catalog.=) tbl)
         ORDER BY h.txid, h.id
         LIMIT max_events;
END
$$;
COMMENT ON FUNCTION @extschema@.events_since(text, integer, regclass) IS
    'The durable event stream: the transitions after a cursor (NULL: from the oldest), of every table the caller can read or of one, in an order that never changes, each with the cursor to resume after it and the row''s label and message (never its metadata); an event appears once every transaction older than it has ended';

CREATE OR REPLACE FUNCTION @extschema@.events_cursor()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint OPERATOR(pg_catalog.-) 1)::text
           OPERATOR(pg_catalog.||) ':9223372036854775807'
$$;
COMMENT ON FUNCTION @extschema@.events_cursor() IS
    'A cursor for events_since() that skips every event already in the stream: a consumer that starts with it receives the events that appear from now on';

-- The configuration of a tracked table the caller may read, or an error.
CREATE OR REPLACE FUNCTION @extschema@._readable_config(tbl regclass)
RETURNS @extschema@.tracked
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    cfg := @extschema@._config(tbl);
    PERFORM @extschema@._check_readable(tbl);
    RETURN cfg;
END
$$;
COMMENT ON FUNCTION @extschema@._readable_config(regclass) IS
    'Internal: the tracking configuration of a table, checking that it is tracked and that the caller can read it';

-- The transitions of one table (of one row of it when k is not NULL) that
-- the caller can read, as the transitions view gives them.  A Citus
-- distributed table's history is on the workers, where its shards' triggers
-- write it under the table's name (on this node: what was written before
-- the table was distributed, and that of shards placed here): it is also
-- read there, through each worker's
-- transitions view (so with the caller's rights and row-level security on
-- that worker), one query per worker, and given under this node's relid.
-- History ids are unique per node only; the readers order by time first.
-- A worker that cannot be read is an error, or for a global reader (named
-- by "reader") a warning, and its history is left out.
CREATE OR REPLACE FUNCTION @extschema@._transitions(tbl regclass, k text DEFAULT NULL, reader text DEFAULT NULL)
RETURNS SETOF @extschema@.transitions
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w record;
BEGIN
    RETURN QUERY SELECT * FROM @extschema@.transitions x
                  WHERE x.relid OPERATOR(pg_catalog.=) tbl AND (k IS NULL OR x.key OPERATOR(pg_catalog.=) k);
    IF @extschema@._citus_kind(tbl) IS DISTINCT FROM 'distributed' THEN
        RETURN;
    END IF;
    FOR w IN EXECUTE 'SELECT r.nodename, r.nodeport, r.success, r.result FROM pg_catalog.run_command_on_workers($1) r'
        USING format('SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x) OPERATOR(pg_catalog.-) ''relid''), ''[]'')'
                     '  FROM deploy_progress.transitions x'
                     ' WHERE x.relid OPERATOR(pg_catalog.=) %L::pg_catalog.regclass%s',
                     tbl::text,
                     CASE WHEN k IS NULL THEN ''
                          ELSE format(' AND x.key OPERATOR(pg_catalog.=) %L COLLATE "C"', k) END)
    LOOP
        IF NOT w.success AND reader IS NOT NULL THEN
            -- a global reader goes on without that worker's history
            PERFORM @extschema@._skipped(tbl, reader, '08006',
                                         format('the history on worker %s:%s cannot be read: %s', w.nodename, w.nodeport, w.result));
            CONTINUE;
        END IF;
        IF NOT w.success THEN
            RAISE EXCEPTION 'cannot read the history of table % on worker %:%', tbl, w.nodename, w.nodeport
                USING ERRCODE = 'connection_failure',
                      DETAIL = format('The worker answered: %s', w.result),
                      HINT = 'The history of a distributed table is kept on the workers that hold its shards; check that this one is up.';
        END IF;
        RETURN QUERY
            SELECT x.id, tbl, x.key, x.from_phase, x.to_phase, x.to_kind, x.at, x.time_in_previous,
                   x.completed, x.total, x.reason, x.txid, x.label, x.message, x.metadata
              FROM pg_catalog.jsonb_populate_recordset(NULL::@extschema@.transitions, w.result::pg_catalog.jsonb) x;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@._transitions(regclass, text, text) IS
    'Internal: the readable transitions of one table (or of one of its rows), those of a Citus distributed table read from the workers';

-- The suggested deadline of a phase from its completed stays: 1.5 times
-- their 95th percentile, rounded up to a whole minute (at least one), once
-- there are at least 20 of them; NULL below that, and for phases that take
-- no deadline (waiting and terminal ones).
CREATE OR REPLACE FUNCTION @extschema@._suggested_deadline(kind text, stays bigint, p95_seconds double precision)
RETURNS interval
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN kind OPERATOR(pg_catalog.=) ANY (@extschema@._kinds('clocked'))
                 AND stays OPERATOR(pg_catalog.>=) 20 AND p95_seconds IS NOT NULL
                THEN pg_catalog.make_interval(mins => GREATEST(1,
                         pg_catalog.ceil(p95_seconds OPERATOR(pg_catalog.*) 1.5 OPERATOR(pg_catalog./) 60)::integer))
           END
$$;
COMMENT ON FUNCTION @extschema@._suggested_deadline(text, bigint, double precision) IS
    'Internal: the deadline phase_stats() suggests: ceil(1.5 x p95) in whole minutes (at least 1) from at least 20 completed stays, for pending and active phases';

CREATE OR REPLACE FUNCTION @extschema@.phase_stats(tbl regclass, since timestamptz DEFAULT NULL)
RETURNS TABLE (phase text, kind text, count bigint, mean interval, p50 interval, p95 interval,
               max interval, failures bigint, suggested_deadline interval)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    cfg := @extschema@._readable_config(tbl);
    -- a stay in a phase ends with the transition out of it; a completed
    -- stay ends in a phase that is not failed or cancelled
    RETURN QUERY
    WITH stays AS (
        SELECT h.from_phase,
               h.to_kind <> ALL (@extschema@._kinds('unsuccessful')) AND h.time_in_previous IS NOT NULL AS completed,
               h.to_kind = 'failed' AS failure,
               extract(epoch FROM h.time_in_previous)::double precision AS secs
          FROM @extschema@._transitions(tbl) h
         WHERE h.from_phase IS NOT NULL
           AND (since IS NULL OR h.at >= since)
    ), agg AS (
        SELECT s.from_phase,
               count(*) FILTER (WHERE s.completed) AS n,
               avg(s.secs) FILTER (WHERE s.completed) AS mean,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY s.secs) FILTER (WHERE s.completed) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY s.secs) FILTER (WHERE s.completed) AS p95,
               max(s.secs) FILTER (WHERE s.completed) AS max,
               count(*) FILTER (WHERE s.failure) AS failures
          FROM stays s
         GROUP BY s.from_phase
    )
    SELECT p.phase, p.kind, coalesce(a.n, 0),
           justify_hours(a.mean * interval '1 second'),
           justify_hours(a.p50 * interval '1 second'),
           justify_hours(a.p95 * interval '1 second'),
           justify_hours(a.max * interval '1 second'),
           coalesce(a.failures, 0),
           @extschema@._suggested_deadline(p.kind, a.n, a.p95)
      FROM @extschema@.lifecycle_phases p
      LEFT JOIN agg a ON a.from_phase = p.phase
     WHERE p.lifecycle = cfg.lifecycle
     ORDER BY p.position;
END
$$;
COMMENT ON FUNCTION @extschema@.phase_stats(regclass, timestamptz) IS
    'Per phase of a tracked table''s lifecycle, from its history (stays that ended at or after "since"): completed stays with their mean, median, 95th percentile and longest duration, failures in the phase, and a suggested deadline';

CREATE OR REPLACE FUNCTION @extschema@.timeline(tbl regclass, key text, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (phase text, kind text, started_at timestamptz, ended_at timestamptz,
               duration interval, reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text := @extschema@._key_text(tbl, key);
BEGIN
    PERFORM @extschema@._check_readable(tbl);
    PERFORM @extschema@._check_as_of(as_of);
    RETURN QUERY
    SELECT h.to_phase, h.to_kind, h.at, h.next_at,
           CASE WHEN h.next_at IS NOT NULL THEN h.next_at - h.at
                WHEN h.to_kind <> ALL (@extschema@._kinds('terminal')) THEN as_of - h.at
           END,
           h.reason
      FROM (SELECT x.*, lead(x.at) OVER (ORDER BY x.at, x.id) AS next_at
              FROM @extschema@._transitions(tbl, k) x) h
     ORDER BY h.at, h.id;
END
$$;
COMMENT ON FUNCTION @extschema@.timeline(regclass, text, timestamptz) IS
    'The phases one row of a table went through, in order, with when each started and ended and how long it lasted (the current phase up to as_of; none for a final terminal phase)';

CREATE OR REPLACE FUNCTION @extschema@.steps(tbl regclass, key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg      @extschema@.tracked;
    k        text := @extschema@._key_text(tbl, key);
    cur      text;
    cur_kind text;
    cur_pos  integer;
    cur_step text;
    here     text;      -- the step the row is at (or was at when it ended)
    here_pos integer;
    v_phase  text[];    -- the visits of the current attempt, in order
    v_kind   text[];
    v_start  timestamptz[];
    v_end    timestamptz[];
    result   jsonb;
BEGIN
    cfg := @extschema@._readable_config(tbl);
    EXECUTE format('SELECT %s FROM %s t WHERE %s OPERATOR(pg_catalog.=) $1 LIMIT 1',
                   @extschema@._phase_expr(cfg, 't'), tbl, @extschema@._key_expr(cfg, 't'))
       INTO cur USING k;
    IF cur IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT p.kind, p.position, p.step INTO cur_kind, cur_pos, cur_step
      FROM @extschema@.lifecycle_phases p
     WHERE p.lifecycle = cfg.lifecycle AND p.phase = cur;

    -- the current attempt: the transitions since the row was inserted or
    -- last left a terminal phase (a restart)
    SELECT array_agg(a.to_phase ORDER BY a.ord), array_agg(a.to_kind ORDER BY a.ord),
           array_agg(a.at ORDER BY a.ord), array_agg(a.next_at ORDER BY a.ord)
      INTO v_phase, v_kind, v_start, v_end
      FROM (SELECT h.*, max(h.ord) FILTER (WHERE h.starts) OVER () AS attempt
              FROM (SELECT x.to_phase, x.to_kind, x.at,
                           lead(x.at) OVER w AS next_at,
                           row_number() OVER w AS ord,
                           x.from_phase IS NULL
                               OR lag(x.to_kind) OVER w = ANY (@extschema@._kinds('terminal')) AS starts
                      FROM @extschema@._transitions(tbl, k) x
                    WINDOW w AS (ORDER BY x.at, x.id)) h) a
     WHERE a.ord >= coalesce(a.attempt, 1);

    -- where the row is: its phase when that is a step's (a pending, active
    -- or succeeded phase, or one with a step label), or for a waiting,
    -- failed or cancelled row the last such phase it was in
    IF cur_kind IN ('pending', 'active', 'succeeded') OR cur_step IS NOT NULL THEN
        here := cur;
    ELSE
        SELECT u.phase INTO here
          FROM unnest(v_phase, v_kind) WITH ORDINALITY AS u(phase, kind, ord)
          JOIN @extschema@.lifecycle_phases p ON p.lifecycle = cfg.lifecycle AND p.phase = u.phase
         WHERE u.kind IN ('pending', 'active') OR (u.kind = 'waiting' AND p.step IS NOT NULL)
         ORDER BY u.ord DESC LIMIT 1;
    END IF;
    SELECT p.position INTO here_pos FROM @extschema@.lifecycle_phases p
     WHERE p.lifecycle = cfg.lifecycle AND p.phase = here;

    -- the status of each phase that belongs to a step, then one entry per
    -- step: consecutive phases with one label (define_lifecycle() keeps
    -- them together), or a phase without a label on its own
    SELECT jsonb_agg(jsonb_build_object(
               'step', st.step, 'phases', st.phases, 'phase', st.phase, 'kind', st.kind,
               'status', st.status, 'started_at', st.started_at, 'ended_at', st.ended_at) ORDER BY st.position)
      INTO result
      FROM (SELECT coalesce(s.step, s.phase) AS step,
                   jsonb_agg(s.phase ORDER BY s.position) AS phases,
                   -- the phase the row is in, else the one it was in last, else the first
                   (array_agg(s.phase ORDER BY s.phase = here DESC, s.started_at DESC NULLS LAST, s.position))[1] AS phase,
                   (array_agg(s.kind ORDER BY s.phase = here DESC, s.started_at DESC NULLS LAST, s.position))[1] AS kind,
                   CASE WHEN bool_or(s.status = 'failed') THEN 'failed'
                        WHEN bool_or(s.status = 'active')
                             OR (bool_or(s.status = 'completed') AND bool_or(s.status = 'pending')) THEN 'active'
                        WHEN bool_or(s.status = 'completed') THEN 'completed'
                        WHEN bool_or(s.status = 'pending') THEN 'pending'
                        ELSE 'skipped'
                   END AS status,
                   min(s.started_at) AS started_at,
                   -- a failed step ended when the row failed
                   CASE WHEN bool_or(s.status IN ('active', 'pending')) THEN NULL
                        WHEN bool_or(s.status = 'failed') THEN max(coalesce(s.ended_at, s.started_at))
                        ELSE max(s.ended_at) END AS ended_at,
                   coalesce(min(s.position) FILTER (WHERE s.kind NOT IN ('failed', 'cancelled')), min(s.position)) AS position
              FROM (SELECT p.phase, p.kind, p.position, p.step, v.started_at, v.ended_at,
                           CASE
                               WHEN p.phase = here THEN
                                   CASE cur_kind WHEN 'succeeded' THEN 'completed'
                                                 WHEN 'failed' THEN 'failed'
                                                 -- a cancelled phase with a step of its own is
                                                 -- reached; the step a row was cancelled in is not
                                                 WHEN 'cancelled' THEN CASE WHEN p.phase = cur AND NOT x.shared
                                                                            THEN 'completed' ELSE 'skipped' END
                                                 ELSE 'active' END
                               -- a failed or cancelled phase that shares another step's
                               -- label counts only when the row ended in it
                               WHEN x.shared THEN NULL
                               WHEN p.kind = 'succeeded' OR here_pos IS NULL OR p.position > here_pos
                                    OR p.kind IN ('failed', 'cancelled') THEN
                                   CASE WHEN cur_kind = ANY (@extschema@._kinds('terminal')) THEN 'skipped'
                                        ELSE 'pending' END
                               -- before the row's step: done, unless history shows it was not visited
                               WHEN v.phase IS NOT NULL OR v_phase IS NULL THEN 'completed'
                               ELSE 'skipped'
                           END AS status
                      FROM @extschema@.lifecycle_phases p
                      LEFT JOIN LATERAL (SELECT u.phase, u.started_at, u.ended_at
                                           FROM unnest(v_phase, v_start, v_end) WITH ORDINALITY AS u(phase, started_at, ended_at, ord)
                                          WHERE u.phase = p.phase ORDER BY u.ord DESC LIMIT 1) v ON true
                      CROSS JOIN LATERAL (SELECT p.kind IN ('failed', 'cancelled')
                                                 AND EXISTS (SELECT FROM @extschema@.lifecycle_phases q
                                                              WHERE q.lifecycle = p.lifecycle AND q.step = p.step
                                                                AND q.kind NOT IN ('failed', 'cancelled')) AS shared) x
                     WHERE p.lifecycle = cfg.lifecycle
                       AND (p.kind IN ('pending', 'active', 'succeeded') OR p.step IS NOT NULL)
                    UNION ALL
                    -- a failed row whose history does not say where it failed
                    SELECT cur, cur_kind, cur_pos, NULL, NULL, NULL, 'failed'
                     WHERE cur_kind = 'failed' AND here IS NULL) s
             GROUP BY s.step IS NULL, coalesce(s.step, s.phase)) st;
    RETURN coalesce(result, '[]'::jsonb);
END
$$;
COMMENT ON FUNCTION @extschema@.steps(regclass, text) IS
    'The steps of one row for a UI: a JSON array of its lifecycle''s steps (consecutive phases with one step label, or a pending, active or succeeded phase without one) with status completed, active, pending, failed (where a failed row failed) or skipped, and when each started and ended';

CREATE OR REPLACE FUNCTION @extschema@.prune(older_than interval, keep_failures boolean DEFAULT true,
                                  batch_size integer DEFAULT 10000, max_batches integer DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff   timestamptz;
    removed  bigint := 0;
    n        bigint;
    batches  integer := 0;
BEGIN
    IF older_than IS NULL OR older_than < '0'::interval THEN
        RAISE EXCEPTION 'older_than must be an interval of zero or more'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', coalesce(older_than::text, 'NULL'));
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', coalesce(batch_size::text, 'NULL'));
    END IF;
    IF max_batches < 1 THEN
        RAISE EXCEPTION 'max_batches must be at least 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', max_batches),
                  HINT = 'Pass NULL to remove every row older than older_than.';
    END IF;
    IF keep_failures IS NULL THEN
        RAISE EXCEPTION 'keep_failures must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT (has_table_privilege('@extschema@.history', 'SELECT')
            AND has_table_privilege('@extschema@.history', 'DELETE')
            AND has_table_privilege('@extschema@.history_pruned', 'SELECT')
            AND has_table_privilege('@extschema@.history_pruned', 'INSERT')
            AND has_table_privilege('@extschema@.history_pruned', 'UPDATE')) THEN
        RAISE EXCEPTION 'permission denied to prune the transition history'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'prune() runs with its caller''s rights and deletes from @extschema@.history, which belongs to the extension''s owner.',
                  HINT = 'Run it as the owner of the extension (for example from pg_cron), or grant SELECT, DELETE on @extschema@.history and SELECT, INSERT, UPDATE on @extschema@.history_pruned.';
    END IF;
    cutoff := now() - older_than;

    -- each batch is one statement that deletes at most batch_size rows
    -- and adds them to history_pruned
    LOOP
        WITH victims AS (
            SELECT h.ctid FROM @extschema@.history h
             WHERE h.at < cutoff
               AND NOT (keep_failures AND h.to_kind = ANY (@extschema@._kinds('unsuccessful')))
             LIMIT batch_size
        ), gone AS (
            DELETE FROM @extschema@.history h
             WHERE h.ctid = ANY (ARRAY(SELECT v.ctid FROM victims v))
            RETURNING h.relid, h.from_phase, h.to_phase, h.to_kind, h.time_in_previous
        ), counts AS (
            INSERT INTO @extschema@.history_pruned AS p
                   (relid, phase, transitions, failures, stays, stay_seconds)
            SELECT c.relid, c.phase, sum(c.transitions), sum(c.failures), sum(c.stays), sum(c.secs)
              FROM (SELECT g.relid, g.to_phase AS phase, 1 AS transitions, 0 AS failures, 0 AS stays, 0::float8 AS secs
                      FROM gone g WHERE g.relid IS NOT NULL
                    UNION ALL
                    SELECT g.relid, coalesce(g.from_phase, g.to_phase), 0, 1, 0, 0
                      FROM gone g WHERE g.relid IS NOT NULL AND g.to_kind = 'failed'
                    UNION ALL
                    SELECT g.relid, g.from_phase, 0, 0, 1, extract(epoch FROM g.time_in_previous)::float8
                      FROM gone g
                     WHERE g.relid IS NOT NULL AND g.from_phase IS NOT NULL AND g.time_in_previous IS NOT NULL
                       AND g.to_kind <> ALL (@extschema@._kinds('unsuccessful'))) c
             GROUP BY c.relid, c.phase
            ON CONFLICT (relid, phase) DO UPDATE
               SET transitions = p.transitions + EXCLUDED.transitions,
                   failures = p.failures + EXCLUDED.failures,
                   stays = p.stays + EXCLUDED.stays,
                   stay_seconds = p.stay_seconds + EXCLUDED.stay_seconds
        )
        SELECT count(*) INTO n FROM gone;
        removed := removed + n;
        batches := batches + 1;
        EXIT WHEN n < batch_size OR batches >= max_batches;
    END LOOP;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION @extschema@.prune(interval, boolean, integer, integer) IS
    'Removes history rows older than older_than (all tables, batch_size rows per statement, at most max_batches batches), keeping transitions into failed and cancelled phases unless keep_failures is false; returns how many rows it removed';

CREATE OR REPLACE FUNCTION @extschema@.refresh_estimates(tbl regclass DEFAULT NULL, since interval DEFAULT '30 days')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff  timestamptz;
    n       bigint;
BEGIN
    IF since IS NULL OR since <= '0'::interval OR NOT isfinite(since) THEN
        RAISE EXCEPTION 'since must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', coalesce(since::text, 'NULL')),
                  HINT = 'Pass how far back the history is read, such as ''30 days''.';
    END IF;
    IF tbl IS NOT NULL THEN
        PERFORM @extschema@._config(tbl, 'Estimates are learned for tracked tables only.');
    END IF;
    IF NOT (has_table_privilege('@extschema@.history', 'SELECT')
            AND has_table_privilege('@extschema@.phase_estimates', 'INSERT')
            AND has_table_privilege('@extschema@.phase_estimates', 'DELETE')) THEN
        RAISE EXCEPTION 'permission denied to refresh the phase estimates'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'refresh_estimates() runs with its caller''s rights and reads @extschema@.history, which belongs to the extension''s owner.',
                  HINT = 'Run it as the owner of the extension (for example from pg_cron), or grant SELECT on @extschema@.history and INSERT, DELETE on @extschema@.phase_estimates.';
    END IF;
    cutoff := now() - since;

    DELETE FROM @extschema@.phase_estimates e
     WHERE tbl IS NULL OR e.relid = tbl;
    WITH h AS (
        SELECT x.relid, x.key, x.from_phase, x.to_phase, x.to_kind, x.time_in_previous
          FROM @extschema@.history x
          JOIN @extschema@.tracked t ON t.relid = x.relid
         WHERE x.at >= cutoff AND (tbl IS NULL OR x.relid = tbl)
    ), runs AS (
        -- the rows that reached a succeeded phase in the window
        SELECT DISTINCT h.relid, h.key FROM h WHERE h.to_kind = 'succeeded'
    ), nruns AS (
        SELECT r.relid, count(*) AS n FROM runs r GROUP BY r.relid
    ), visits AS (
        SELECT v.relid, v.phase, count(DISTINCT v.key) AS n
          FROM (SELECT h.relid, h.key, h.to_phase AS phase FROM h
                UNION ALL
                SELECT h.relid, h.key, h.from_phase FROM h WHERE h.from_phase IS NOT NULL) v
          JOIN runs r ON r.relid = v.relid AND r.key = v.key
         GROUP BY v.relid, v.phase
    ), stays AS (
        -- completed stays: left for a phase that is not failed or cancelled
        SELECT h.relid, h.from_phase AS phase, count(*) AS n,
               percentile_cont(ARRAY[0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
                                     0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1]::double precision[])
                   WITHIN GROUP (ORDER BY extract(epoch FROM h.time_in_previous)::double precision) AS q
          FROM h
         WHERE h.from_phase IS NOT NULL AND h.time_in_previous IS NOT NULL
           AND h.to_kind <> ALL (@extschema@._kinds('unsuccessful'))
         GROUP BY h.relid, h.from_phase
    )
    INSERT INTO @extschema@.phase_estimates (relid, phase, stays, quantiles, visit_share, runs, computed_at)
    SELECT t.relid, p.phase, coalesce(s.n, 0), s.q,
           coalesce(v.n::double precision / nullif(r.n, 0), 0), coalesce(r.n, 0), now()
      FROM @extschema@.tracked t
      JOIN pg_catalog.pg_class c ON c.oid = t.relid
      JOIN @extschema@.lifecycle_phases p ON p.lifecycle = t.lifecycle
                                          AND p.kind = ANY (@extschema@._kinds('in_flight'))
      LEFT JOIN stays s ON s.relid = t.relid AND s.phase = p.phase
      LEFT JOIN visits v ON v.relid = t.relid AND v.phase = p.phase
      LEFT JOIN nruns r ON r.relid = t.relid
     WHERE tbl IS NULL OR t.relid = tbl;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.refresh_estimates(regclass, interval) IS
    'Learns from the history of the last "since" how long each in-flight phase of the tracked tables (all, or one) takes and how often runs visit it, for the whole-run ETA; returns the rows written to phase_estimates';

-- Per phase of a tracked table's lifecycle, what the whole run's ETA
-- needs, computed once per query: the phase's stay quantiles, stays and
-- the table's runs, and the expected time of the phases after it (each
-- visited by 5 % of the runs or more: its share times its median, and times
-- its 95th percentile), with "thin" when one of them has fewer than 20
-- stays.  _run_eta_part() (C) adds the current phase's time left.  The
-- readers' queries (_figures_sql()) join this SQL itself, so that it is
-- planned with them, once.
CREATE OR REPLACE FUNCTION @extschema@._phase_eta_sql(tbl regclass, lc text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
        'SELECT lp.phase, e.quantiles, e.stays, e.runs,'
        '       coalesce(a.p50, 0) AS ahead_p50, coalesce(a.p95, 0) AS ahead_p95, coalesce(a.thin, false) AS thin'
        '  FROM @extschema@.lifecycle_phases lp'
        '  JOIN @extschema@.phase_estimates e ON e.relid OPERATOR(pg_catalog.=) %1$L::pg_catalog.regclass'
        '                                    AND e.phase OPERATOR(pg_catalog.=) lp.phase'
        ' CROSS JOIN LATERAL ('
        '        SELECT pg_catalog.sum(x.visit_share OPERATOR(pg_catalog.*) x.quantiles[11]) AS p50,'
        '               pg_catalog.sum(x.visit_share OPERATOR(pg_catalog.*) x.quantiles[20]) AS p95,'
        '               pg_catalog.bool_or(x.stays OPERATOR(pg_catalog.<) 20) AS thin'
        '          FROM @extschema@.lifecycle_phases lx'
        '          JOIN @extschema@.phase_estimates x ON x.relid OPERATOR(pg_catalog.=) %1$L::pg_catalog.regclass'
        '                                            AND x.phase OPERATOR(pg_catalog.=) lx.phase'
        '         WHERE lx.lifecycle OPERATOR(pg_catalog.=) %2$L AND lx.position OPERATOR(pg_catalog.>) lp.position'
        '           AND x.visit_share OPERATOR(pg_catalog.>=) 0.05) a'
        ' WHERE lp.lifecycle OPERATOR(pg_catalog.=) %2$L',
        tbl::pg_catalog.oid, lc)
$$;
COMMENT ON FUNCTION @extschema@._phase_eta_sql(regclass, text) IS
    'Internal: SQL giving, per phase of a tracked table, its stay quantiles, stays, the runs, and the expected time of the phases after it, for the whole run''s ETA';

CREATE OR REPLACE FUNCTION @extschema@._phase_eta_table(tbl regclass, lc text)
RETURNS TABLE (phase text, quantiles double precision[], stays bigint, runs bigint,
               ahead_p50 double precision, ahead_p95 double precision, thin boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE @extschema@._phase_eta_sql(tbl, lc);
END
$$;
COMMENT ON FUNCTION @extschema@._phase_eta_table(regclass, text) IS
    'Internal: per phase of a tracked table, its stay quantiles, stays, the runs, and the expected time of the phases after it, for the whole run''s ETA';

CREATE OR REPLACE FUNCTION @extschema@._run_eta_part(quantiles double precision[], stays bigint, runs bigint,
                                                     ahead double precision, thin boolean,
                                                     in_phase double precision, own_eta double precision,
                                                     q double precision)
RETURNS double precision
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_run_eta_part';
COMMENT ON FUNCTION @extschema@._run_eta_part(double precision[], bigint, bigint, double precision, boolean, double precision, double precision, double precision) IS
    'Internal: one bound (quantile q) of the whole run''s time left in seconds: the current phase''s own ETA, or the q-quantile of its stays longer than in_phase less in_phase, plus the time of the phases ahead; NULL where the estimates cannot tell';

-- The time left for a row of table tbl (lifecycle lc) in phase at_phase,
-- in it for in_phase seconds, whose own ETA (from its counters or percent)
-- is own_eta seconds or NULL: {p50, p95} in seconds, each NULL when the
-- estimates cannot tell.  The readers compute the same from
-- _phase_eta_table() joined once per query.
CREATE OR REPLACE FUNCTION @extschema@._run_eta(tbl regclass, lc text, at_phase text,
                                                in_phase double precision, own_eta double precision,
                                                OUT p50 double precision, OUT p95 double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._run_eta_part(e.quantiles, e.stays, e.runs, e.ahead_p50, e.thin, in_phase, own_eta, 0.5),
           @extschema@._run_eta_part(e.quantiles, e.stays, e.runs, e.ahead_p95, e.thin, in_phase, own_eta, 0.95)
      FROM (SELECT 1) one
      LEFT JOIN @extschema@._phase_eta_table(tbl, lc) e ON e.phase OPERATOR(pg_catalog.=) at_phase
$$;
COMMENT ON FUNCTION @extschema@._run_eta(regclass, text, text, double precision, double precision) IS
    'Internal: the median and 95th-percentile time left, in seconds, for a row of a tracked table in a phase for in_phase seconds with its own ETA (or NULL), from phase_estimates; NULL where the history is too thin';

-- The metrics read from a table itself ($1: as of), in one pass over its
-- in-flight rows (through the in-flight partial index):
--   in_flight  rows per non-terminal phase of the lifecycle (zero when
--              empty)
--   stuck      stuck rows per reason, as stuck() reports them
--   stalled    1 when the table's fleet is stalled (as stuck_tables()
--              decides it), else 0
--   skipped    0 (1 when the table's query raised: _read_each() then
--              reports it with a WARNING, and it has no other rows here)
CREATE OR REPLACE FUNCTION @extschema@._table_metrics_query(cfg @extschema@.tracked)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
        'WITH r AS MATERIALIZED (SELECT r.phase, r.kind, r.stuck_reason FROM (%2$s) r)'
        ' SELECT %1$L::pg_catalog.regclass, ''in_flight'', p.phase, p.position, coalesce(c.n, 0)'
        '  FROM @extschema@.lifecycle_phases p'
        '  LEFT JOIN (SELECT r.phase, pg_catalog.count(*) AS n FROM r GROUP BY 1) c ON c.phase OPERATOR(pg_catalog.=) p.phase'
        ' WHERE p.lifecycle OPERATOR(pg_catalog.=) %3$L'
        '   AND p.kind OPERATOR(pg_catalog.=) ANY (%4$L::pg_catalog.text[])'
        ' UNION ALL'
        ' SELECT %1$L::pg_catalog.regclass, ''stuck'', r.stuck_reason, NULL, pg_catalog.count(*)'
        '   FROM r WHERE r.stuck_reason IS NOT NULL GROUP BY r.stuck_reason'
        ' UNION ALL'
        ' SELECT %1$L::pg_catalog.regclass, ''stalled'', NULL, NULL,'
        '        (pg_catalog.count(*) FILTER (WHERE r.stuck_reason OPERATOR(pg_catalog.=) ''queue_overdue'') OPERATOR(pg_catalog.>) 0'
        '         AND pg_catalog.count(*) FILTER (WHERE r.kind OPERATOR(pg_catalog.=) ''active'''
        '                                          AND (r.stuck_reason IS NULL OR r.stuck_reason OPERATOR(pg_catalog.=) ''phase_overdue''))'
        '             OPERATOR(pg_catalog.=) 0)::integer::pg_catalog.int8'
        '   FROM r'
        ' UNION ALL'
        ' SELECT %1$L::pg_catalog.regclass, ''skipped'', NULL, NULL, 0'
        ' ORDER BY 2, 4, 3',
        cfg.relid::oid, @extschema@._rows_sql(cfg), cfg.lifecycle, @extschema@._kinds('in_flight'))
$$;
COMMENT ON FUNCTION @extschema@._table_metrics_query(@extschema@.tracked) IS
    'Internal: the query of the metrics read from one tracked table: in-flight rows per phase, stuck rows per reason, whether the fleet is stalled';

-- What _table_metrics_query() gives for a table ($2) without in-flight
-- rows, without reading it: zero rows in each in-flight phase, not
-- stalled, not skipped.  _read_each() runs it for a table whose in-flight
-- index is empty.
CREATE OR REPLACE FUNCTION @extschema@._table_metrics_empty_query()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'SELECT t.relid, ''in_flight''::pg_catalog.text, p.phase, p.position, 0::pg_catalog.int8'
           '  FROM @extschema@.tracked t'
           '  JOIN @extschema@.lifecycle_phases p ON p.lifecycle OPERATOR(pg_catalog.=) t.lifecycle'
           ' WHERE t.relid OPERATOR(pg_catalog.=) $2'
           '   AND p.kind OPERATOR(pg_catalog.=) ANY (@extschema@._kinds(''in_flight''))'
           ' UNION ALL SELECT $2, ''stalled'', NULL, NULL, 0'
           ' UNION ALL SELECT $2, ''skipped'', NULL, NULL, 0'
           ' ORDER BY 2, 4, 3'::pg_catalog.text
$$;
COMMENT ON FUNCTION @extschema@._table_metrics_empty_query() IS
    'Internal: the query of the metrics of a tracked table ($2) without in-flight rows (zeros), run without reading the table';

-- The metrics read from the tables themselves, for every tracked table the
-- caller can read, one table at a time (all or nothing for a table; a
-- table whose query raised gives only skipped = 1).
CREATE OR REPLACE FUNCTION @extschema@._table_metrics()
RETURNS TABLE (relid regclass, metric text, label text, label_position integer, value bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@._read_each(NULL, pg_catalog.now(), 'metrics')
        AS r(relid regclass, metric text, label text, label_position integer, value bigint)
$$;
COMMENT ON FUNCTION @extschema@._table_metrics() IS
    'Internal: in-flight rows per phase, stuck rows per reason, whether the fleet is stalled, and whether the table had to be skipped, for every tracked table the caller can read';

CREATE OR REPLACE VIEW @extschema@.metrics
WITH (security_barrier)
AS
WITH tables AS (
    -- rls: the table's row-level security applies to the current role, so
    -- only the history of the rows it can see counts, and none of the
    -- pruned totals (which cannot be split by row)
    SELECT t.relid, t.lifecycle, @extschema@._table_label(t.relid) AS label,
           pg_catalog.row_security_active(t.relid) AS rls,
           @extschema@._citus_kind(t.relid) IS NOT DISTINCT FROM 'distributed' AS distributed
      FROM @extschema@.tracked t
     WHERE pg_catalog.has_table_privilege(t.relid, 'SELECT')
), pruned AS (
    SELECT p.* FROM @extschema@.history_pruned p
      JOIN tables t ON t.relid OPERATOR(pg_catalog.=) p.relid
     WHERE NOT t.rls
), kept AS (
    SELECT h.relid, h.from_phase, h.to_phase, h.to_kind,
           h.from_phase IS NOT NULL AND h.time_in_previous IS NOT NULL
               AND h.to_kind OPERATOR(pg_catalog.<>) ALL (@extschema@._kinds('unsuccessful')) AS completed_stay,
           pg_catalog.date_part('epoch', h.time_in_previous) AS secs
      FROM (SELECT h.relid, h.from_phase, h.to_phase, h.to_kind, h.time_in_previous
              FROM @extschema@.history h
              JOIN tables t ON t.relid OPERATOR(pg_catalog.=) h.relid
             WHERE (NOT t.rls OR @extschema@._row_visible(h.relid, h.key))
               AND NOT t.distributed
            UNION ALL
            -- a Citus distributed table's history is on the workers too
            SELECT x.relid, x.from_phase, x.to_phase, x.to_kind, x.time_in_previous
              FROM tables t
             CROSS JOIN LATERAL @extschema@._transitions(t.relid, reader => 'metrics') x
             WHERE t.distributed) h
), counts AS (
    SELECT c.relid, c.phase, pg_catalog.sum(c.transitions) AS transitions, pg_catalog.sum(c.failures) AS failures
      FROM (SELECT k.relid, k.to_phase AS phase, 1 AS transitions, 0 AS failures FROM kept k
            UNION ALL
            SELECT k.relid, coalesce(k.from_phase, k.to_phase), 0, 1 FROM kept k
             WHERE k.to_kind OPERATOR(pg_catalog.=) 'failed'
            UNION ALL
            SELECT p.relid, p.phase, p.transitions, p.failures FROM pruned p
            UNION ALL
            -- every phase of the lifecycle, so that counters start at zero
            SELECT t.relid, lp.phase, 0, 0 FROM tables t
              JOIN @extschema@.lifecycle_phases lp ON lp.lifecycle OPERATOR(pg_catalog.=) t.lifecycle) c
     GROUP BY c.relid, c.phase
), stays AS (
    SELECT s.relid, s.phase,
           pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY s.secs) AS p50,
           pg_catalog.percentile_cont(0.95) WITHIN GROUP (ORDER BY s.secs) AS p95,
           pg_catalog.sum(s.secs) AS total_seconds, pg_catalog.count(s.secs) AS n
      FROM (SELECT k.relid, k.from_phase AS phase, k.secs FROM kept k WHERE k.completed_stay
            UNION ALL
            -- pruned stays count in the sum and count, not in the quantiles
            SELECT p.relid, p.phase, NULL FROM pruned p
             WHERE p.stays OPERATOR(pg_catalog.>) 0) s
     GROUP BY s.relid, s.phase
), stays_total AS (
    SELECT s.relid, s.phase, s.p50, s.p95,
           coalesce(s.total_seconds, 0) OPERATOR(pg_catalog.+) coalesce(p.stay_seconds, 0) AS total_seconds,
           s.n OPERATOR(pg_catalog.+) coalesce(p.stays, 0) AS n
      FROM stays s
      LEFT JOIN pruned p
        ON p.relid OPERATOR(pg_catalog.=) s.relid AND p.phase OPERATOR(pg_catalog.=) s.phase
), live AS (
    SELECT * FROM @extschema@._table_metrics()
)
SELECT 'deploy_progress_in_flight'::text AS name,
       pg_catalog.jsonb_build_object('table', t.label, 'phase', f.label) AS labels,
       f.value::double precision AS value
  FROM live f
  JOIN tables t ON t.relid OPERATOR(pg_catalog.=) f.relid
 WHERE f.metric OPERATOR(pg_catalog.=) 'in_flight'
UNION ALL
SELECT 'deploy_progress_stuck',
       pg_catalog.jsonb_build_object('table', t.label, 'reason', r.reason),
       coalesce(s.value, 0)
  FROM tables t
 CROSS JOIN (SELECT x.reason FROM @extschema@._stuck_reasons() x) r
  LEFT JOIN live s ON s.relid OPERATOR(pg_catalog.=) t.relid AND s.metric OPERATOR(pg_catalog.=) 'stuck'
                  AND s.label OPERATOR(pg_catalog.=) r.reason
 WHERE EXISTS (SELECT FROM live k WHERE k.relid OPERATOR(pg_catalog.=) t.relid
                                    AND k.metric OPERATOR(pg_catalog.=) 'skipped' AND k.value OPERATOR(pg_catalog.=) 0)
UNION ALL
SELECT 'deploy_progress_fleet_stalled',
       pg_catalog.jsonb_build_object('table', t.label),
       k.value
  FROM live k JOIN tables t ON t.relid OPERATOR(pg_catalog.=) k.relid
 WHERE k.metric OPERATOR(pg_catalog.=) 'stalled'
UNION ALL
SELECT 'deploy_progress_table_skipped',
       pg_catalog.jsonb_build_object('table', t.label),
       k.value
  FROM live k JOIN tables t ON t.relid OPERATOR(pg_catalog.=) k.relid
 WHERE k.metric OPERATOR(pg_catalog.=) 'skipped'
UNION ALL
SELECT 'deploy_progress_transitions_total',
       pg_catalog.jsonb_build_object('table', t.label, 'phase', c.phase),
       c.transitions
  FROM counts c JOIN tables t ON t.relid OPERATOR(pg_catalog.=) c.relid
UNION ALL
SELECT 'deploy_progress_failures_total',
       pg_catalog.jsonb_build_object('table', t.label, 'phase', c.phase),
       c.failures
  FROM counts c JOIN tables t ON t.relid OPERATOR(pg_catalog.=) c.relid
UNION ALL
SELECT 'deploy_progress_phase_duration_seconds',
       pg_catalog.jsonb_build_object('table', t.label, 'phase', s.phase, 'quantile', q.quantile),
       CASE q.quantile WHEN '0.5' THEN s.p50 ELSE s.p95 END
  FROM stays_total s
  JOIN tables t ON t.relid OPERATOR(pg_catalog.=) s.relid
 CROSS JOIN (VALUES ('0.5'), ('0.95')) AS q(quantile)
 WHERE s.p50 IS NOT NULL
UNION ALL
SELECT 'deploy_progress_phase_duration_seconds_sum',
       pg_catalog.jsonb_build_object('table', t.label, 'phase', s.phase),
       s.total_seconds
  FROM stays_total s JOIN tables t ON t.relid OPERATOR(pg_catalog.=) s.relid
UNION ALL
SELECT 'deploy_progress_phase_duration_seconds_count',
       pg_catalog.jsonb_build_object('table', t.label, 'phase', s.phase),
       s.n
  FROM stays_total s JOIN tables t ON t.relid OPERATOR(pg_catalog.=) s.relid;
COMMENT ON VIEW @extschema@.metrics IS
    'Metric samples (name, labels, value) of the tracked tables the current role can read: in-flight rows per phase, stuck rows per reason, stalled fleets, transition and failure counters, phase-duration summaries; metrics_prometheus() renders them';
GRANT SELECT ON @extschema@.metrics TO PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.metrics_prometheus()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH families (family, type, help, ord) AS (VALUES
        ('deploy_progress_in_flight', 'gauge',
         'Rows in a non-terminal phase, per tracked table and phase.', 1),
        ('deploy_progress_stuck', 'gauge',
         'In-flight rows that are stuck now, per tracked table and reason.', 2),
        ('deploy_progress_transitions_total', 'counter',
         'Phase transitions recorded in the history (pruned ones included), per tracked table and phase entered.', 3),
        ('deploy_progress_failures_total', 'counter',
         'Transitions into a failed phase, per tracked table and phase the row failed in.', 4),
        ('deploy_progress_phase_duration_seconds', 'summary',
         'Time rows spent in a phase, over stays that did not end in a failed or cancelled phase.', 5),
        ('deploy_progress_table_skipped', 'gauge',
         '1 when the tracked table could not be read at this scrape (its query raised; the server log has the warning), so that its other samples are missing; else 0.', 6),
        ('deploy_progress_fleet_stalled', 'gauge',
         '1 when rows of the tracked table wait past the queue deadline while none of its active rows works (stuck_tables()); else 0.', 7)
    ), samples AS (
        SELECT f.ord, m.name, m.labels - 'quantile' AS series,
               m.name OPERATOR(pg_catalog.||)
               '{' OPERATOR(pg_catalog.||)
               (SELECT pg_catalog.string_agg(pg_catalog.format('%s="%s"', l.key, @extschema@._prometheus_escape(l.value)), ','
                                             ORDER BY l.key OPERATOR(pg_catalog.<>) 'table', l.key)
                  FROM pg_catalog.jsonb_each_text(m.labels) AS l) OPERATOR(pg_catalog.||)
               '} ' OPERATOR(pg_catalog.||)
               CASE WHEN m.value OPERATOR(pg_catalog.=) 'Infinity'::float8 THEN '+Inf'
                    WHEN m.value OPERATOR(pg_catalog.=) '-Infinity'::float8 THEN '-Inf'
                    ELSE m.value::text END OPERATOR(pg_catalog.||)
               E'\n' AS line,
               m.labels ->> 'quantile' AS quantile
          FROM @extschema@.metrics m
          JOIN families f ON m.name OPERATOR(pg_catalog.=) ANY (ARRAY[f.family,
                                                                      f.family OPERATOR(pg_catalog.||) '_sum',
                                                                      f.family OPERATOR(pg_catalog.||) '_count'])
         WHERE m.value IS NOT NULL
    )
    SELECT pg_catalog.string_agg(
               '# HELP ' OPERATOR(pg_catalog.||) f.family OPERATOR(pg_catalog.||) ' '
               OPERATOR(pg_catalog.||) @extschema@._prometheus_escape(f.help, false) OPERATOR(pg_catalog.||) E'\n'
               OPERATOR(pg_catalog.||) '# TYPE ' OPERATOR(pg_catalog.||) f.family OPERATOR(pg_catalog.||) ' '
               OPERATOR(pg_catalog.||) f.type OPERATOR(pg_catalog.||) E'\n'
               OPERATOR(pg_catalog.||) coalesce((SELECT pg_catalog.string_agg(s.line, '' ORDER BY s.series::text, s.name, s.quantile)
                                                   FROM samples s WHERE s.ord OPERATOR(pg_catalog.=) f.ord), ''),
               '' ORDER BY f.ord)
      FROM families f
$$;
COMMENT ON FUNCTION @extschema@.metrics_prometheus() IS
    'The metrics view in the Prometheus text exposition format (HELP and TYPE lines, then the samples of each family)';
