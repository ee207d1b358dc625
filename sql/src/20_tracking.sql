--------------------------------------------------------------------------
-- Column roles, the tracking configuration and the side table
--------------------------------------------------------------------------

-- The roles a tracked table's columns can play besides the phase: the one
-- place a role is defined.  track() takes each role's column under the
-- role's name (and looks for a column of that name by default), the
-- configuration maps role names to column names (tracked.columns), and the
-- readers (40_rows.sql) give each role's value under the role's name.  The
-- C cache (src/track_cache.c) has the same names for the roles it stamps.
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
    ('phase_updated_at',     3, '{timestamptz,timestamp}', 'timestamp with or without time zone', 'timestamptz', 'side',
     'When the row entered its phase'),
    ('progress_updated_at',  4, '{timestamptz,timestamp}', 'timestamp with or without time zone', 'timestamptz', 'side',
     'When the row last changed phase or counters'),
    ('heartbeat_at',         5, '{timestamptz,timestamp}', 'timestamp with or without time zone', 'timestamptz', 'side',
     'When the row was last written'),
    ('started_at',           6, '{timestamptz,timestamp}', 'timestamp with or without time zone', 'timestamptz', 'side',
     'When the row first entered an active phase'),
    ('finished_at',          7, '{timestamptz,timestamp}', 'timestamp with or without time zone', 'timestamptz', 'side',
     'When the row entered a terminal phase'),
    ('items_per_second',     8, '{double precision}', 'double precision', 'double precision', 'none',
     'The smoothed speed the trigger keeps'),
    ('speed_updated_at',     9, '{timestamptz,timestamp}', 'timestamp with or without time zone', 'timestamptz', 'none',
     'When the smoothed speed was last updated'),
    ('failure_reason',      10, '{text,character varying}', 'text or varchar', 'text', 'row',
     'Why the row failed (written by fail_stuck())'),
    ('percent',             11, '{smallint,integer,bigint,numeric,real,double precision}',
     'smallint, integer, bigint, numeric, real or double precision', 'double precision', 'row',
     'How much of the current phase is done, 0..100, for a table without counters'),
    ('message',             12, '{text,character varying}', 'text or varchar', 'text', 'row',
     'The worker''s status line, kept with each transition and carried by events'),
    ('metadata',            13, '{jsonb}', 'jsonb', 'jsonb', 'row',
     'Details of the row, kept with each transition (never in events)'),
    ('label',               14, '{text,character varying}', 'text or varchar', 'text', 'row',
     'A human name for the row, shown instead of its key');

CREATE TABLE @extschema@.tracked (
    relid                   regclass PRIMARY KEY,
    lifecycle               text NOT NULL REFERENCES @extschema@.lifecycles (name),
    phase_column            name NOT NULL,
    key_columns             name[] NOT NULL CHECK (pg_catalog.cardinality(key_columns) OPERATOR(pg_catalog.>=) 1),
    storage                 text NOT NULL CHECK (storage OPERATOR(pg_catalog.=) ANY (ARRAY['row', 'side'])),
    allow_restart           boolean NOT NULL DEFAULT false,
    speed_time_constant     interval NOT NULL DEFAULT '15 seconds'
                            CHECK (speed_time_constant OPERATOR(pg_catalog.>) '0'::interval),
    queue_deadline          interval CHECK (queue_deadline OPERATOR(pg_catalog.>) '0'::interval),
    phase_deadline          interval CHECK (phase_deadline OPERATOR(pg_catalog.>) '0'::interval),
    progress_deadline       interval CHECK (progress_deadline OPERATOR(pg_catalog.>) '0'::interval),
    heartbeat_deadline      interval CHECK (heartbeat_deadline OPERATOR(pg_catalog.>) '0'::interval),
    history                 text NOT NULL DEFAULT 'all'
                            CHECK (history OPERATOR(pg_catalog.=) ANY (ARRAY['all', 'failures', 'off'])),
    notify_channel          text CHECK (notify_channel OPERATOR(pg_catalog.<>) ''),
    tracked_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    columns                 jsonb NOT NULL DEFAULT '{}'
                            CHECK (pg_catalog.jsonb_typeof(columns) OPERATOR(pg_catalog.=) 'object'),
    time_zone               text NOT NULL DEFAULT 'UTC',
    backward_moves          text NOT NULL DEFAULT 'allow'
                            CHECK (backward_moves OPERATOR(pg_catalog.=) ANY (ARRAY['allow', 'error', 'ignore']))
);
COMMENT ON TABLE @extschema@.tracked IS
    'One row per tracked table: its lifecycle, phase column, options and, in "columns", the column playing each role of deploy_progress.column_roles (roles the table lacks are absent); written by track() and untrack()';
COMMENT ON COLUMN @extschema@.tracked.time_zone IS
    'The time zone whose local time the table''s timestamp (without time zone) timing columns hold';
COMMENT ON COLUMN @extschema@.tracked.backward_moves IS
    'What a write that moves a row back to an earlier pending or active phase, or out of a terminal phase without allow_restart, does: allow (restarts aside, it is applied), error (refused) or ignore (the row keeps its phase, the rest of the write applies)';

CREATE TABLE @extschema@.timings (
    relid               regclass NOT NULL,
    key                 text NOT NULL,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    PRIMARY KEY (relid, key),
    partition           regclass
) WITH (fillfactor = 90);
COMMENT ON TABLE @extschema@.timings IS
    'Side table: the timings of rows of tables tracked with storage => ''side'', keyed by table and primary key text; read it through side_timings or timings()';
COMMENT ON COLUMN @extschema@.timings.partition IS
    'The partition the row was last written in (NULL for a table that is not partitioned): TRUNCATE, DROP TABLE and DETACH PARTITION of a partition remove its rows';
-- (fillfactor 90: room on each page for heartbeats to stay HOT updates)
-- the rows of one partition, for TRUNCATE, DROP and DETACH of that partition
CREATE INDEX timings_partition_idx ON @extschema@.timings (partition) WHERE partition IS NOT NULL;

-- pg_dump keeps user lifecycles, tracking configuration and side timings.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.lifecycles', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.lifecycle_phases', $$WHERE lifecycle OPERATOR(pg_catalog.<>) 'default'$$);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tracked', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.timings', '');

-- Configuration is readable by everyone and writable row by row by the owner
-- of what a row describes (checked by the guard triggers, which run with the
-- caller's rights).  The side table is written by the triggers in C as its
-- owner and read through the side_timings view.
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.lifecycles, @extschema@.lifecycle_phases, @extschema@.tracked TO PUBLIC;
GRANT SELECT ON @extschema@.column_roles TO PUBLIC;

--------------------------------------------------------------------------
-- The triggers (C) and the guard on the configuration
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION @extschema@.stamp()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'dp_stamp';
COMMENT ON FUNCTION @extschema@.stamp() IS
    'BEFORE ROW trigger created by track(): validates phase and counters and stamps phase, progress, heartbeat, start and finish times';

CREATE OR REPLACE FUNCTION @extschema@.stamp_side()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'dp_stamp_side';
COMMENT ON FUNCTION @extschema@.stamp_side() IS
    'AFTER ROW trigger created by track(storage => ''side''): keeps the row''s timings in deploy_progress.timings';

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

CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.tracked
    FOR EACH ROW EXECUTE FUNCTION @extschema@._guard_tracked();

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

--------------------------------------------------------------------------
-- track() and untrack()
--------------------------------------------------------------------------

-- Checks that every phase value a table can hold belongs to a lifecycle:
-- all labels of an enum phase column, or the values present in a text column.
CREATE OR REPLACE FUNCTION @extschema@._check_phase_values(rel regclass, col name, lc text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typ    oid := @extschema@._column_type(rel, col);
    valid  text[];
    bad    text[];
    nulls  boolean;
BEGIN
    SELECT array_agg(p.phase ORDER BY p.position) INTO valid
      FROM @extschema@.lifecycle_phases p WHERE p.lifecycle = lc;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid = typ AND t.typtype = 'e') THEN
        SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) INTO bad
          FROM pg_catalog.pg_enum e
         WHERE e.enumtypid = typ AND NOT e.enumlabel::text = ANY (valid);
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'enum type % has values that are not phases of lifecycle "%"', typ::regtype, lc
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Values not in the lifecycle: %s. Its phases are: %s.',
                                      array_to_string(bad, ', '), array_to_string(valid, ', ')),
                      HINT = 'Define a lifecycle that lists every value of the enum type.';
        END IF;
        RETURN;
    END IF;
    EXECUTE format('SELECT array_agg(DISTINCT v) FILTER (WHERE v IS NOT NULL), bool_or(v IS NULL) FROM (SELECT %I::text AS v FROM %s WHERE %I IS NULL OR NOT (%I::text = ANY ($1))) s',
                   col, rel, col, col)
       INTO bad, nulls USING valid;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'table % has % values that are not phases of lifecycle "%"', rel, quote_ident(col), lc
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Values not in the lifecycle: %s. Its phases are: %s.',
                                  array_to_string(bad[1:10], ', '), array_to_string(valid, ', ')),
                  HINT = 'Update those rows to a valid phase, or define a lifecycle that includes their values.';
    END IF;
    IF nulls THEN
        RAISE EXCEPTION 'table % has rows whose % is null', rel, quote_ident(col)
            USING ERRCODE = 'not_null_violation',
                  DETAIL = 'Every row of a tracked table must be in a phase.',
                  HINT = 'Set a phase on those rows first.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._check_phase_values(regclass, name, text) IS
    'Internal: raises an error when a table holds phase values that are not in a lifecycle';

-- Removes the side timings of a table that is not (or no longer) tracked in
-- side storage.  track() and untrack() run with the caller's rights, who
-- cannot write the side table; this runs as its owner, and since it only
-- removes timings no tracking configuration refers to, anyone may call it.
CREATE OR REPLACE FUNCTION @extschema@._forget_timings(tbl regclass)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM @extschema@.timings s
     WHERE s.relid OPERATOR(pg_catalog.=) tbl
       AND NOT EXISTS (SELECT 1 FROM @extschema@.tracked t
                        WHERE t.relid OPERATOR(pg_catalog.=) tbl
                          AND t.storage OPERATOR(pg_catalog.=) 'side')
$$;
COMMENT ON FUNCTION @extschema@._forget_timings(regclass) IS
    'Internal: removes the side timings of a table not tracked in side storage';

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

-- Drops the tracking triggers of a table (those of its partitions go with them).
CREATE OR REPLACE FUNCTION @extschema@._drop_triggers(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trg name;
BEGIN
    FOR trg IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg
                WHERE tg.tgrelid = tbl AND tg.tgparentid = 0
                  AND tg.tgname IN ('zz_deploy_progress_stamp', 'zz_deploy_progress_side',
                                    'zz_deploy_progress_side_truncate',
                                    'zz_deploy_progress_history_ins', 'zz_deploy_progress_history_upd')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trg, tbl);
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@._drop_triggers(regclass) IS
    'Internal: drops the tracking triggers of a table';

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

--------------------------------------------------------------------------
-- The configuration in the stamp trigger: schema-only dumps keep tracking
--
-- deploy_progress.tracked and the user lifecycles are configuration data,
-- which pg_dump writes only into dumps with data: a schema-only dump (Rails'
-- structure.sql, db:test:prepare) gives the triggers and no configuration.
-- So the stamp trigger carries the configuration itself, as its argument: a
-- versioned JSON text of the table's tracked row and, for a lifecycle that
-- is not built in, its phases.  When a trigger fires on a table that has no
-- tracked row, the C (src/track_cache.c) runs _retrack() as the table's
-- owner, which recreates the lifecycle if it is missing and the tracked row.
--
-- A role the owner grants the TRIGGER privilege can create triggers on the
-- table, arguments included, but only the owner can comment on them: the
-- trigger's comment holds the checksum of its argument, and _retrack()
-- refuses an argument that its comment does not confirm.  Every change of
-- the configuration rewrites both: track(), a direct UPDATE of tracked (the
-- sync trigger), define_lifecycle(); deleting the tracked row by hand
-- leaves a trigger without argument, as untrack() leaves no trigger.
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

--------------------------------------------------------------------------
-- Side storage and row keys
--------------------------------------------------------------------------

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

--------------------------------------------------------------------------
-- Dropped tables leave no tracking behind
--------------------------------------------------------------------------

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

CREATE EVENT TRIGGER deploy_progress_sql_drop ON sql_drop
    EXECUTE FUNCTION @extschema@._on_sql_drop();

