-- deploy_progress 1.0: phase type, lifecycles, tracking configuration,
-- stamping triggers and the side table.
--
-- Every object is created in @extschema@ (the control file fixes it to
-- deploy_progress).  Functions written in SQL or PL/pgSQL run with a fixed
-- search_path and qualify what they use, so objects a role creates in
-- another schema cannot change what the extension does.

\echo Use "CREATE EXTENSION deploy_progress" to load this file. \quit

-- The triggers and the event trigger below run with the rights of the
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

--------------------------------------------------------------------------
-- Phase type and lifecycles
--------------------------------------------------------------------------

CREATE TYPE @extschema@.phase AS ENUM (
    'queued',
    'preparing',
    'fetching',
    'building',
    'transferring',
    'migrating',
    'starting',
    'health_check',
    'finishing',
    'waiting',
    'succeeded',
    'failed',
    'cancelled'
);
COMMENT ON TYPE @extschema@.phase IS
    'Phases of a deployment, in lifecycle order; the built-in lifecycle "default" gives each one a kind and a weight';

CREATE TABLE @extschema@.lifecycles (
    name        text PRIMARY KEY
                CHECK (name OPERATOR(pg_catalog.<>) '' AND pg_catalog.octet_length(name) OPERATOR(pg_catalog.<=) 63),
    owner       regrole NOT NULL DEFAULT pg_catalog.to_regrole(CURRENT_USER::text),
    builtin     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.lifecycles IS
    'Lifecycles: named, ordered lists of phases (see lifecycle_phases); written by define_lifecycle()';

CREATE TABLE @extschema@.lifecycle_phases (
    lifecycle   text NOT NULL REFERENCES @extschema@.lifecycles (name) ON DELETE CASCADE,
    position    integer NOT NULL CHECK (position OPERATOR(pg_catalog.>=) 1),
    phase       text NOT NULL
                CHECK (phase OPERATOR(pg_catalog.<>) '' AND pg_catalog.octet_length(phase) OPERATOR(pg_catalog.<=) 63),
    kind        text NOT NULL
                CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'active', 'waiting', 'succeeded', 'failed', 'cancelled'])),
    weight      double precision NOT NULL DEFAULT 0
                CHECK (weight OPERATOR(pg_catalog.>=) 0 AND weight OPERATOR(pg_catalog.<) 'Infinity'::double precision),
    deadline    interval CHECK (deadline OPERATOR(pg_catalog.>) '0'::interval),
    PRIMARY KEY (lifecycle, phase),
    UNIQUE (lifecycle, position)
);
COMMENT ON TABLE @extschema@.lifecycle_phases IS
    'One row per phase of a lifecycle: its position, kind (pending, active, waiting, succeeded, failed, cancelled), weight in overall progress and optional deadline';

INSERT INTO @extschema@.lifecycles (name, builtin) VALUES ('default', true);

INSERT INTO @extschema@.lifecycle_phases (lifecycle, position, phase, kind, weight, deadline)
VALUES
    ('default',  1, 'queued',       'pending',   0, '15 minutes'),
    ('default',  2, 'preparing',    'active',    1, NULL),
    ('default',  3, 'fetching',     'active',    2, NULL),
    ('default',  4, 'building',     'active',    3, NULL),
    ('default',  5, 'transferring', 'active',    3, NULL),
    ('default',  6, 'migrating',    'active',    2, NULL),
    ('default',  7, 'starting',     'active',    1, NULL),
    ('default',  8, 'health_check', 'active',    1, NULL),
    ('default',  9, 'finishing',    'active',    1, NULL),
    ('default', 10, 'waiting',      'waiting',   0, NULL),
    ('default', 11, 'succeeded',    'succeeded', 0, NULL),
    ('default', 12, 'failed',       'failed',    0, NULL),
    ('default', 13, 'cancelled',    'cancelled', 0, NULL);

--------------------------------------------------------------------------
-- Tracking configuration and the side table
--------------------------------------------------------------------------

CREATE TABLE @extschema@.tracked (
    relid                   regclass PRIMARY KEY,
    lifecycle               text NOT NULL REFERENCES @extschema@.lifecycles (name),
    phase_column            name NOT NULL,
    completed_column        name,
    total_column            name,
    phase_updated_column    name,
    progress_updated_column name,
    heartbeat_column        name,
    started_column          name,
    finished_column         name,
    speed_column            name,
    speed_updated_column    name,
    key_columns             name[] NOT NULL CHECK (pg_catalog.cardinality(key_columns) OPERATOR(pg_catalog.>=) 1),
    storage                 text NOT NULL CHECK (storage OPERATOR(pg_catalog.=) ANY (ARRAY['row', 'side'])),
    allow_restart           boolean NOT NULL DEFAULT false,
    speed_time_constant     interval NOT NULL DEFAULT '15 seconds'
                            CHECK (speed_time_constant OPERATOR(pg_catalog.>) '0'::interval),
    reason_column           name,
    queue_deadline          interval CHECK (queue_deadline OPERATOR(pg_catalog.>) '0'::interval),
    phase_deadline          interval CHECK (phase_deadline OPERATOR(pg_catalog.>) '0'::interval),
    progress_deadline       interval CHECK (progress_deadline OPERATOR(pg_catalog.>) '0'::interval),
    heartbeat_deadline      interval CHECK (heartbeat_deadline OPERATOR(pg_catalog.>) '0'::interval),
    history                 text NOT NULL DEFAULT 'all'
                            CHECK (history OPERATOR(pg_catalog.=) ANY (ARRAY['all', 'failures', 'off'])),
    notify_channel          text CHECK (notify_channel OPERATOR(pg_catalog.<>) ''),
    tracked_at              timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.tracked IS
    'One row per tracked table: its lifecycle, the column playing each role (NULL when absent) and its options; written by track() and untrack()';

CREATE TABLE @extschema@.timings (
    relid               regclass NOT NULL,
    key                 text NOT NULL,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    PRIMARY KEY (relid, key)
);
COMMENT ON TABLE @extschema@.timings IS
    'Side table: the timings of rows of tables tracked with storage => ''side'', keyed by table and primary key text; read it through side_timings or timings()';

-- pg_dump keeps user lifecycles, tracking configuration and side timings.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.lifecycles', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.lifecycle_phases', $$WHERE lifecycle OPERATOR(pg_catalog.<>) 'default'$$);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tracked', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.timings', '');

-- Configuration is readable by everyone and writable row by row by the owner
-- of what a row describes (checked by the guard triggers below, which run
-- with the caller's rights).  The side table is written by the triggers in C
-- as its owner and read through the side_timings view.
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.lifecycles, @extschema@.lifecycle_phases, @extschema@.tracked TO PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

--------------------------------------------------------------------------
-- C entry points
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@.stamp()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'dp_stamp';
COMMENT ON FUNCTION @extschema@.stamp() IS
    'BEFORE ROW trigger created by track(): validates phase and counters and stamps phase, progress, heartbeat, start and finish times';

CREATE FUNCTION @extschema@.stamp_side()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'dp_stamp_side';
COMMENT ON FUNCTION @extschema@.stamp_side() IS
    'AFTER ROW trigger created by track(storage => ''side''): keeps the row''s timings in deploy_progress.timings';

CREATE FUNCTION @extschema@._invalidate(regclass)
RETURNS void
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'dp_invalidate';
COMMENT ON FUNCTION @extschema@._invalidate(regclass) IS
    'Internal: makes every session reload the tracking configuration of a table at its next write';

--------------------------------------------------------------------------
-- Guards on the configuration tables
--------------------------------------------------------------------------

-- Whether the current role may administer a table: it owns it (or is a
-- member of the owning role).  A table that no longer exists is fair game,
-- so its leftover configuration can be removed.
CREATE FUNCTION @extschema@._owns(rel regclass)
RETURNS boolean
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
                       FROM pg_catalog.pg_class c
                      WHERE c.oid OPERATOR(pg_catalog.=) rel), true)
$$;
COMMENT ON FUNCTION @extschema@._owns(regclass) IS
    'Internal: whether the current role owns the table (true when the table no longer exists)';

CREATE FUNCTION @extschema@._guard_tracked()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT @extschema@._owns(OLD.relid) THEN
        RAISE EXCEPTION 'must be owner of table %', OLD.relid
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only the owner of a table can change how it is tracked.';
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

-- Whether the current role may change a lifecycle: built-in ones belong to
-- superusers, the others to the role that defined them.
CREATE FUNCTION @extschema@._may_edit_lifecycle(lc text)
RETURNS boolean
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT CASE WHEN l.builtin
                                 THEN (SELECT r.rolsuper FROM pg_catalog.pg_roles r
                                        WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
                                 ELSE pg_catalog.pg_has_role(l.owner, 'USAGE') END
                       FROM @extschema@.lifecycles l
                      WHERE l.name OPERATOR(pg_catalog.=) lc), true)
$$;
COMMENT ON FUNCTION @extschema@._may_edit_lifecycle(text) IS
    'Internal: whether the current role may change a lifecycle (its owner; superusers for built-in ones)';

CREATE FUNCTION @extschema@._guard_lifecycle()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lc text;
BEGIN
    FOREACH lc IN ARRAY CASE TG_OP WHEN 'INSERT' THEN ARRAY[NEW.name]
                                   WHEN 'DELETE' THEN ARRAY[OLD.name]
                                   ELSE ARRAY[OLD.name, NEW.name] END
    LOOP
        IF NOT @extschema@._may_edit_lifecycle(lc) THEN
            RAISE EXCEPTION 'must be owner of lifecycle "%"', lc
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Built-in lifecycles can only be changed by a superuser, others only by the role that defined them.',
                      HINT = 'Define a lifecycle of your own with deploy_progress.define_lifecycle().';
        END IF;
    END LOOP;
    IF TG_OP <> 'DELETE' AND NEW.builtin AND NOT @extschema@._may_edit_lifecycle('default') THEN
        RAISE EXCEPTION 'only a superuser can define a built-in lifecycle'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- like any object, a lifecycle is owned by its definer or a role it can act as
    IF TG_OP <> 'DELETE' AND NOT pg_catalog.pg_has_role(NEW.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be member of role "%"', NEW.owner
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Lifecycle "%s" cannot be given to a role the current role is not a member of.', NEW.name);
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @extschema@._guard_lifecycle() IS
    'Internal: lets only a lifecycle''s owner change it';

CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.lifecycles
    FOR EACH ROW EXECUTE FUNCTION @extschema@._guard_lifecycle();

CREATE FUNCTION @extschema@._guard_lifecycle_phase()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lc text := CASE TG_OP WHEN 'DELETE' THEN OLD.lifecycle ELSE NEW.lifecycle END;
BEGIN
    IF NOT @extschema@._may_edit_lifecycle(lc)
       OR (TG_OP = 'UPDATE' AND NOT @extschema@._may_edit_lifecycle(OLD.lifecycle)) THEN
        RAISE EXCEPTION 'must be owner of lifecycle "%"', lc
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Built-in lifecycles can only be changed by a superuser, others only by the role that defined them.',
                  HINT = 'Define a lifecycle of your own with deploy_progress.define_lifecycle().';
    END IF;
    -- sessions reload the lifecycle of every table that uses it
    PERFORM @extschema@._invalidate(t.relid)
       FROM @extschema@.tracked t
      WHERE t.lifecycle OPERATOR(pg_catalog.=) lc
        AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.relid);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @extschema@._guard_lifecycle_phase() IS
    'Internal: lets only a lifecycle''s owner change its phases, and makes sessions reload them';

CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.lifecycle_phases
    FOR EACH ROW EXECUTE FUNCTION @extschema@._guard_lifecycle_phase();

--------------------------------------------------------------------------
-- Lifecycles
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@.define_lifecycle(name text, phases jsonb)
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
    seen    text[] := '{}';
    kinds   text[] := '{}';
    weights double precision[] := '{}';
    deadlines interval[] := '{}';
    bad_key text;
    t       record;
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
         WHERE k NOT IN ('phase', 'kind', 'weight', 'deadline') LIMIT 1;
        IF bad_key IS NOT NULL THEN
            RAISE EXCEPTION 'unknown key "%" in phase % of lifecycle "%"', bad_key, pos, lc_name
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The keys of a phase are phase, kind, weight and deadline.';
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
        IF pkind IS NULL OR pkind NOT IN ('pending', 'active', 'waiting', 'succeeded', 'failed', 'cancelled') THEN
            RAISE EXCEPTION 'phase "%" of lifecycle "%" has an invalid kind "%"', pname, lc_name, coalesce(pkind, '(none)')
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The kinds are pending, active, waiting, succeeded, failed and cancelled.';
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
        seen := seen || pname;
        kinds := kinds || pkind;
        weights := weights || pweight;
        deadlines := deadlines || pdeadline;
    END LOOP;

    IF NOT 'succeeded' = ANY (kinds) OR NOT 'failed' = ANY (kinds) THEN
        RAISE EXCEPTION 'lifecycle "%" needs a succeeded phase and a failed phase', lc_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Its kinds are %s.', array_to_string(kinds, ', ')),
                  HINT = 'Add phases of kind "succeeded" and "failed": deployments must be able to end either way.';
    END IF;

    IF EXISTS (SELECT 1 FROM @extschema@.lifecycles l WHERE l.name = lc_name) THEN
        IF NOT @extschema@._may_edit_lifecycle(lc_name) THEN
            RAISE EXCEPTION 'must be owner of lifecycle "%"', lc_name
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Built-in lifecycles can only be changed by a superuser, others only by the role that defined them.',
                      HINT = 'Define a lifecycle of your own under another name.';
        END IF;
        DELETE FROM @extschema@.lifecycle_phases p WHERE p.lifecycle = lc_name;
    ELSE
        INSERT INTO @extschema@.lifecycles (name) VALUES (lc_name);
    END IF;
    INSERT INTO @extschema@.lifecycle_phases (lifecycle, position, phase, kind, weight, deadline)
    SELECT lc_name, u.ord, u.phase, u.kind, u.weight, u.deadline
      FROM unnest(seen, kinds, weights, deadlines) WITH ORDINALITY AS u(phase, kind, weight, deadline, ord);

    -- tables already tracked with this lifecycle must still fit it
    FOR t IN SELECT tr.relid, tr.phase_column FROM @extschema@.tracked tr
              WHERE tr.lifecycle = lc_name
    LOOP
        PERFORM @extschema@._check_phase_values(t.relid, t.phase_column, lc_name);
    END LOOP;

    RETURN QUERY SELECT * FROM @extschema@.lifecycle_phases p
                  WHERE p.lifecycle = lc_name ORDER BY p.position;
END
$$;
COMMENT ON FUNCTION @extschema@.define_lifecycle(text, jsonb) IS
    'Defines (or redefines) a lifecycle from a JSON array of {"phase", "kind", "weight", "deadline"} objects, in order';

CREATE FUNCTION @extschema@.drop_lifecycle(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lc_name ALIAS FOR name;
    users text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.lifecycles l WHERE l.name = lc_name) THEN
        RAISE EXCEPTION 'lifecycle "%" does not exist', lc_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See deploy_progress.lifecycles for the defined lifecycles.';
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.lifecycles l WHERE l.name = lc_name AND l.builtin) THEN
        RAISE EXCEPTION 'cannot drop built-in lifecycle "%"', lc_name
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'It belongs to the extension (it is the lifecycle of type deploy_progress.phase) and is not dumped.',
                  HINT = 'Define a lifecycle of your own instead.';
    END IF;
    SELECT string_agg(t.relid::text, ', ' ORDER BY t.relid::text) INTO users
      FROM @extschema@.tracked t WHERE t.lifecycle = lc_name;
    IF users IS NOT NULL THEN
        RAISE EXCEPTION 'lifecycle "%" is in use', lc_name
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = format('Tables tracked with it: %s.', users),
                  HINT = 'Untrack those tables or track them with another lifecycle first.';
    END IF;
    IF NOT @extschema@._may_edit_lifecycle(lc_name) THEN
        RAISE EXCEPTION 'must be owner of lifecycle "%"', lc_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM @extschema@.lifecycles l WHERE l.name = lc_name;
END
$$;
COMMENT ON FUNCTION @extschema@.drop_lifecycle(text) IS
    'Drops a lifecycle that no tracked table uses';

--------------------------------------------------------------------------
-- track() and untrack()
--------------------------------------------------------------------------

-- Type of a column of a table, NULL when there is no such (live) column.
CREATE FUNCTION @extschema@._column_type(rel regclass, col name)
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

-- Checks that every phase value a table can hold belongs to a lifecycle:
-- all labels of an enum phase column, or the values present in a text column.
CREATE FUNCTION @extschema@._check_phase_values(rel regclass, col name, lc text)
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
CREATE FUNCTION @extschema@._forget_timings(tbl regclass)
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

-- Drops the tracking triggers of a table (those of its partitions go with them).
CREATE FUNCTION @extschema@._drop_triggers(tbl regclass)
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

CREATE FUNCTION @extschema@.track(
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
    create_index            boolean  DEFAULT true)
RETURNS @extschema@.tracked
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg        @extschema@.tracked;
    lc         text := lifecycle;
    typ        regtype;
    role_name  text;
    col        name;
    dflt       name;
    wanted     text;
    roles      text[] := ARRAY['completed_items', 'total_items', 'phase_updated_at', 'progress_updated_at',
                               'heartbeat_at', 'started_at', 'finished_at', 'items_per_second', 'speed_updated_at',
                               'failure_reason'];
    given      name[] := ARRAY[completed_items, total_items, phase_updated_at, progress_updated_at,
                               heartbeat_at, started_at, finished_at, items_per_second, speed_updated_at,
                               failure_reason];
    resolved   name[] := '{}';
    relkind    "char";
    k          name;
    any_timing boolean;
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

    -- the other roles: a column named by its default name is optional, a
    -- column named otherwise must exist, NULL switches the role off
    FOR i IN 1 .. array_length(roles, 1) LOOP
        role_name := roles[i];
        col := given[i];
        dflt := role_name;
        IF col IS NULL THEN
            resolved := resolved || NULL::name;
            CONTINUE;
        END IF;
        typ := @extschema@._column_type(tbl, col);
        IF typ IS NULL THEN
            IF col <> dflt THEN
                RAISE EXCEPTION 'column "%" of table % does not exist', col, tbl
                    USING ERRCODE = 'undefined_column',
                          DETAIL = format('It was named as the %s column.', role_name),
                          HINT = format('Pass %s => NULL if the table has no such column.', role_name);
            END IF;
            resolved := resolved || NULL::name;
            CONTINUE;
        END IF;
        wanted := CASE WHEN role_name IN ('completed_items', 'total_items') THEN 'integer'
                       WHEN role_name = 'items_per_second' THEN 'double precision'
                       WHEN role_name = 'failure_reason' THEN 'text'
                       ELSE 'timestamp with time zone' END;
        IF NOT (CASE wanted
                  WHEN 'integer' THEN typ IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)
                  WHEN 'text' THEN typ IN ('text'::regtype, 'character varying'::regtype)
                  ELSE typ::text = wanted END) THEN
            RAISE EXCEPTION '% column "%" of table % has type %', role_name, col, tbl, typ
                USING ERRCODE = 'datatype_mismatch',
                      DETAIL = format('The %s column must be of type %s.', role_name,
                                      CASE wanted WHEN 'integer' THEN 'smallint, integer or bigint'
                                                  WHEN 'text' THEN 'text or varchar' ELSE wanted END),
                      HINT = format('Change the column''s type, or pass %s => NULL to leave the role out.', role_name);
        END IF;
        resolved := resolved || col;
    END LOOP;

    -- where timings live
    any_timing := resolved[3] IS NOT NULL OR resolved[4] IS NOT NULL OR resolved[5] IS NOT NULL
                  OR resolved[6] IS NOT NULL OR resolved[7] IS NOT NULL;
    IF storage IS NULL OR storage NOT IN ('auto', 'row', 'side') THEN
        RAISE EXCEPTION 'invalid storage "%"', coalesce(storage, '(null)')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Storage is "row" (timings in the table''s own columns), "side" (in deploy_progress.timings) or "auto" (row when the table has a timing column).';
    END IF;
    IF storage = 'auto' THEN
        storage := CASE WHEN any_timing THEN 'row' ELSE 'side' END;
    END IF;
    IF storage = 'side' THEN
        -- timings, and so the smoothed speed, live in the side table only
        resolved[3] := NULL; resolved[4] := NULL; resolved[5] := NULL;
        resolved[6] := NULL; resolved[7] := NULL; resolved[8] := NULL; resolved[9] := NULL;
    END IF;
    IF (resolved[8] IS NULL) <> (resolved[9] IS NULL) THEN
        RAISE EXCEPTION 'the smoothed speed needs both an items_per_second and a speed_updated_at column'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Found %s but not %s.', coalesce(resolved[8], resolved[9]),
                                  CASE WHEN resolved[8] IS NULL THEN 'items_per_second' ELSE 'speed_updated_at' END),
                  HINT = 'Add the missing column (double precision / timestamptz), or pass NULL for both roles.';
    END IF;
    IF resolved[8] IS NOT NULL AND resolved[1] IS NULL THEN
        RAISE EXCEPTION 'the smoothed speed needs a completed_items column'
            USING ERRCODE = 'invalid_parameter_value';
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

    cfg := ROW(tbl, lc, phase,
               resolved[1], resolved[2], resolved[3], resolved[4], resolved[5], resolved[6], resolved[7],
               resolved[8], resolved[9],
               key, storage, allow_restart, speed_time_constant,
               resolved[10], queue_deadline, phase_deadline, progress_deadline, heartbeat_deadline,
               history, notify_channel, now());

    INSERT INTO @extschema@.tracked AS t VALUES (cfg.*)
    ON CONFLICT (relid) DO UPDATE
       SET (lifecycle, phase_column, completed_column, total_column, phase_updated_column,
            progress_updated_column, heartbeat_column, started_column, finished_column,
            speed_column, speed_updated_column, key_columns, storage, allow_restart,
            speed_time_constant, reason_column, queue_deadline, phase_deadline, progress_deadline,
            heartbeat_deadline, history, notify_channel) =
           (EXCLUDED.lifecycle, EXCLUDED.phase_column, EXCLUDED.completed_column, EXCLUDED.total_column,
            EXCLUDED.phase_updated_column, EXCLUDED.progress_updated_column, EXCLUDED.heartbeat_column,
            EXCLUDED.started_column, EXCLUDED.finished_column, EXCLUDED.speed_column,
            EXCLUDED.speed_updated_column, EXCLUDED.key_columns, EXCLUDED.storage,
            EXCLUDED.allow_restart, EXCLUDED.speed_time_constant, EXCLUDED.reason_column,
            EXCLUDED.queue_deadline, EXCLUDED.phase_deadline, EXCLUDED.progress_deadline,
            EXCLUDED.heartbeat_deadline, EXCLUDED.history, EXCLUDED.notify_channel)
    RETURNING t.* INTO cfg;
    -- the side table keeps timings only while the table is tracked that way
    PERFORM @extschema@._forget_timings(tbl);

    -- the triggers; "zz_" makes them fire after the table's own BEFORE
    -- triggers, so the stamps describe the row as it is finally written
    PERFORM @extschema@._drop_triggers(tbl);
    EXECUTE format('CREATE TRIGGER zz_deploy_progress_stamp BEFORE INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION @extschema@.stamp()', tbl);
    IF storage = 'side' THEN
        EXECUTE format('CREATE TRIGGER zz_deploy_progress_side AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION @extschema@.stamp_side()', tbl);
        EXECUTE format('CREATE TRIGGER zz_deploy_progress_side_truncate AFTER TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.stamp_side()', tbl);
    END IF;
    -- history and events (see 30_history.sql)
    PERFORM @extschema@._install_history(cfg);
    -- the partial index over in-flight rows (see 20_stuck.sql)
    PERFORM @extschema@._ensure_in_flight_index(cfg, create_index);
    RETURN cfg;
END
$$;
COMMENT ON FUNCTION @extschema@.track(regclass, text, name, name, name, name, name, name, name, name, name, name, name[], text, boolean, interval, boolean, name, interval, interval, interval, interval, text, text, boolean) IS
    'Starts (or reconfigures) tracking of a table: checks its columns and phase values and installs the stamping triggers';

CREATE FUNCTION @extschema@.untrack(tbl regclass, missing_ok boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.tracked t WHERE t.relid = tbl) THEN
        IF missing_ok THEN
            RAISE NOTICE 'table % is not tracked, skipping', tbl;
            RETURN false;
        END IF;
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'See deploy_progress.tracked for the tracked tables.';
    END IF;
    IF NOT @extschema@._owns(tbl) THEN
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
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@.untrack(regclass, boolean) IS
    'Stops tracking a table: drops its triggers, configuration and side-table timings; the table''s rows and its history are left as they are';

--------------------------------------------------------------------------
-- Reading timings in either storage
--------------------------------------------------------------------------

CREATE VIEW @extschema@.side_timings
WITH (security_barrier)
AS
SELECT s.relid, s.key, s.phase_updated_at, s.progress_updated_at, s.heartbeat_at,
       s.started_at, s.finished_at
  FROM @extschema@.timings s
 WHERE pg_catalog.has_table_privilege(s.relid, 'SELECT');
COMMENT ON VIEW @extschema@.side_timings IS
    'Side-table timings of the tracked tables the current role can read';
GRANT SELECT ON @extschema@.side_timings TO PUBLIC;

-- The key text of a row as the triggers write it: the single key column's
-- text, or the row literal of a composite key.
CREATE FUNCTION @extschema@._key_expr(cfg @extschema@.tracked, alias text DEFAULT NULL)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.cardinality(cfg.key_columns) OPERATOR(pg_catalog.=) 1
                THEN pg_catalog.format('%s%I::pg_catalog.text', alias OPERATOR(pg_catalog.||) '.', cfg.key_columns[1])
                ELSE pg_catalog.format('ROW(%s)::pg_catalog.text',
                         (SELECT pg_catalog.string_agg(pg_catalog.concat(alias OPERATOR(pg_catalog.||) '.', pg_catalog.quote_ident(c)), ', ')
                            FROM pg_catalog.unnest(cfg.key_columns) AS c))
           END
$$;
COMMENT ON FUNCTION @extschema@._key_expr(@extschema@.tracked, text) IS
    'Internal: SQL expression giving a row''s key text';

-- The condition selecting a row by its key text ($1): a single key column
-- is compared in its own type, so that its index is used, and as text, so
-- that only its exact key text matches; a composite key as row text.
CREATE FUNCTION @extschema@._key_condition(cfg @extschema@.tracked)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.cardinality(cfg.key_columns) OPERATOR(pg_catalog.=) 1
                THEN pg_catalog.format('%1$I = $1::%2$s AND %1$I::pg_catalog.text = $1', cfg.key_columns[1],
                         (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
                            FROM pg_catalog.pg_attribute a
                           WHERE a.attrelid OPERATOR(pg_catalog.=) cfg.relid
                             AND a.attname OPERATOR(pg_catalog.=) cfg.key_columns[1]
                             AND NOT a.attisdropped))
                ELSE pg_catalog.format('%s = $1', @extschema@._key_expr(cfg))
           END
$$;
COMMENT ON FUNCTION @extschema@._key_condition(@extschema@.tracked) IS
    'Internal: SQL condition selecting a tracked table''s row by its key text ($1), through the key''s index when it has one column';

CREATE FUNCTION @extschema@.timings(tbl regclass, key text)
RETURNS TABLE (phase_updated_at timestamptz, progress_updated_at timestamptz,
               heartbeat_at timestamptz, started_at timestamptz, finished_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
    k   text := key;
BEGIN
    SELECT * INTO cfg FROM @extschema@.tracked t WHERE t.relid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'Track it with deploy_progress.track() first.';
    END IF;
    IF cfg.storage = 'side' THEN
        RETURN QUERY SELECT s.phase_updated_at, s.progress_updated_at, s.heartbeat_at, s.started_at, s.finished_at
                       FROM @extschema@.side_timings s WHERE s.relid = tbl AND s.key = k;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT %s::timestamptz, %s::timestamptz, %s::timestamptz, %s::timestamptz, %s::timestamptz FROM %s WHERE %s',
        coalesce(quote_ident(cfg.phase_updated_column), 'NULL'),
        coalesce(quote_ident(cfg.progress_updated_column), 'NULL'),
        coalesce(quote_ident(cfg.heartbeat_column), 'NULL'),
        coalesce(quote_ident(cfg.started_column), 'NULL'),
        coalesce(quote_ident(cfg.finished_column), 'NULL'),
        tbl, @extschema@._key_condition(cfg))
    USING k;
EXCEPTION
    -- a key text that is not a value of the key's type matches no row
    WHEN invalid_text_representation OR numeric_value_out_of_range
         OR invalid_datetime_format OR datetime_field_overflow THEN
        RETURN;
END
$$;
COMMENT ON FUNCTION @extschema@.timings(regclass, text) IS
    'The timings of one row of a tracked table, from its own columns or from the side table';

--------------------------------------------------------------------------
-- Dropped tables leave no tracking behind
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- the history of a dropped table is kept (audit data): only roles that
    -- read deploy_progress.history itself see it, and prune() removes it
    DELETE FROM @extschema@.timings s
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND s.relid = d.objid;
    DELETE FROM @extschema@.tracked t
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND t.relid = d.objid;
END
$$;
COMMENT ON FUNCTION @extschema@._on_sql_drop() IS
    'Internal: removes the configuration and side timings of dropped tables';
REVOKE ALL ON FUNCTION @extschema@._on_sql_drop() FROM PUBLIC;

CREATE EVENT TRIGGER deploy_progress_sql_drop ON sql_drop
    EXECUTE FUNCTION @extschema@._on_sql_drop();

--------------------------------------------------------------------------
-- Progress figures: percent, speeds, ETA, weighted overall progress, the
-- figures of one row and their one-line description
--------------------------------------------------------------------------
--
-- The figures are computed in C (src/figures.c) so that every client shows
-- the same numbers.  Pure functions take every input, including the time
-- "as of" which a figure is wanted, as arguments and are IMMUTABLE STRICT
-- PARALLEL SAFE; the few that default to the current time are separate,
-- STABLE overloads or STABLE readers with "as_of DEFAULT now()".

CREATE FUNCTION @extschema@.percent(completed bigint, total bigint)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_percent';
COMMENT ON FUNCTION @extschema@.percent(bigint, bigint) IS
    'Percent done, 0..100: clamped, 100 only when completed >= total, 100 for a total of 0 (nothing to do), NULL when the total is unknown (NULL or negative)';

CREATE FUNCTION @extschema@.transfer_speed(completed bigint, since timestamptz, as_of timestamptz)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_transfer_speed';
COMMENT ON FUNCTION @extschema@.transfer_speed(bigint, timestamptz, timestamptz) IS
    'Average items per second from since to as_of; NULL while no time has passed, when as_of is before since (clocks disagree), for infinite times and negative counts';

CREATE FUNCTION @extschema@.transfer_speed(completed bigint, since timestamptz)
RETURNS double precision
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.transfer_speed(completed, since, pg_catalog.now())
$$;
COMMENT ON FUNCTION @extschema@.transfer_speed(bigint, timestamptz) IS
    'Average items per second from since to now() (the transaction''s start); see transfer_speed(completed, since, as_of)';

CREATE FUNCTION @extschema@.smoothed_speed(items_per_second double precision,
                                           speed_updated_at timestamptz,
                                           as_of timestamptz,
                                           time_constant interval DEFAULT '15 seconds')
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_smoothed_speed';
COMMENT ON FUNCTION @extschema@.smoothed_speed(double precision, timestamptz, timestamptz, interval) IS
    'The smoothed speed kept by the trigger, decayed by exp(-(as_of - speed_updated_at) / time_constant) so that a stalled transfer''s speed falls toward zero; no decay when as_of is not later';

CREATE FUNCTION @extschema@._speed_step(items_per_second double precision,
                                        speed_updated_at timestamptz,
                                        delta bigint,
                                        as_of timestamptz,
                                        time_constant interval DEFAULT '15 seconds',
                                        estimate_started_at timestamptz DEFAULT NULL)
RETURNS double precision
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_speed_step_sql';
COMMENT ON FUNCTION @extschema@._speed_step(double precision, timestamptz, bigint, timestamptz, interval, timestamptz) IS
    'Internal: the trigger''s smoothed-speed update when delta items are counted at as_of (NULL delta or < 0 resets; estimate_started_at, the phase start, debiases)';

CREATE FUNCTION @extschema@.eta(completed bigint, total bigint, speed double precision)
RETURNS interval
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_eta';
COMMENT ON FUNCTION @extschema@.eta(bigint, bigint, double precision) IS
    'Time left at speed items per second: zero when done, NULL when the total is unknown, the speed is zero, negative or unknown, or the result does not fit an interval';

CREATE FUNCTION @extschema@._elapsed_seconds(since timestamptz, as_of timestamptz)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_elapsed_seconds';
COMMENT ON FUNCTION @extschema@._elapsed_seconds(timestamptz, timestamptz) IS
    'Internal: seconds from since to as_of, NULL when negative or infinite';

CREATE FUNCTION @extschema@.weighted_progress(weights double precision[], kinds text[],
                                              phase_position integer, fraction double precision)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_weighted_progress';
COMMENT ON FUNCTION @extschema@.weighted_progress(double precision[], text[], integer, double precision) IS
    'Overall progress 0..1 at a 1-based position of a lifecycle given as weights and kinds, fraction of the way through it: 1 only when succeeded, NULL when failed or cancelled (see README)';

-- The phases of a lifecycle as arrays, in order.
CREATE FUNCTION @extschema@._lifecycle_arrays(lifecycle text,
                                              OUT phases text[], OUT kinds text[],
                                              OUT weights double precision[])
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.array_agg(p.phase ORDER BY p.position),
           pg_catalog.array_agg(p.kind ORDER BY p.position),
           pg_catalog.array_agg(p.weight ORDER BY p.position)
      FROM @extschema@.lifecycle_phases p
     WHERE p.lifecycle OPERATOR(pg_catalog.=) _lifecycle_arrays.lifecycle
$$;
COMMENT ON FUNCTION @extschema@._lifecycle_arrays(text) IS
    'Internal: the phase names, kinds and weights of a lifecycle, in order';

CREATE FUNCTION @extschema@.overall_progress(lifecycle text, phase text,
                                             completed bigint DEFAULT NULL,
                                             total bigint DEFAULT NULL)
RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lc  record;
    pos integer;
BEGIN
    IF lifecycle IS NULL OR phase IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO lc FROM @extschema@._lifecycle_arrays(lifecycle);
    IF lc.phases IS NULL THEN
        RAISE EXCEPTION 'lifecycle "%" does not exist', lifecycle
            USING ERRCODE = 'undefined_object',
                  HINT = 'See deploy_progress.lifecycles for the defined lifecycles.';
    END IF;
    pos := array_position(lc.phases, phase);
    IF pos IS NULL THEN
        RAISE EXCEPTION '"%" is not a phase of lifecycle "%"', phase, lifecycle
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Valid phases: %s.', array_to_string(lc.phases, ', '));
    END IF;
    RETURN @extschema@.weighted_progress(lc.weights, lc.kinds, pos,
                                         coalesce(@extschema@.percent(completed, total) / 100, 0));
END
$$;
COMMENT ON FUNCTION @extschema@.overall_progress(text, text, bigint, bigint) IS
    'Overall progress 0..1 of a row in a phase of a lifecycle, with completed of total items of that phase done (an unknown total counts as 0 done); see weighted_progress()';

CREATE FUNCTION @extschema@.progress(tbl regclass, key text, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg      @extschema@.tracked;
    k        text := key;
    t        timestamptz := as_of;
    cond     text;
    query    text;
    r        record;
    tm       record;
    lc       record;
    pos      integer;
    kind     text;
    pct      double precision;
    avg_speed double precision;
    smooth   double precision;
    speed    double precision;
    eta      interval;
    since_progress double precision;
    stalled  boolean;
BEGIN
    -- the configuration of the table, or of the partitioned table it belongs to
    SELECT tr.* INTO cfg
      FROM @extschema@.tracked tr
      JOIN (SELECT tbl, 0::bigint
            UNION ALL
            SELECT * FROM pg_partition_ancestors(tbl) WITH ORDINALITY) AS a(relid, ord)
        ON tr.relid = a.relid
     ORDER BY a.ord LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'Figures are kept for the rows of tracked tables only.',
                  HINT = 'Track it with deploy_progress.track() first.';
    END IF;

    -- the row: a single key column is compared in its own type, so that its
    -- index is used, and as text, so that only its exact key text matches
    cond := @extschema@._key_condition(cfg);
    query := format(
        'SELECT tableoid::regclass AS relid, %s::text AS phase, %s::bigint AS completed, %s::bigint AS total,'
        ' %s::double precision AS items_per_second, %s::timestamptz AS speed_updated_at, %s::text AS reason,'
        ' %s::timestamptz AS phase_updated_at, %s::timestamptz AS progress_updated_at,'
        ' %s::timestamptz AS heartbeat_at, %s::timestamptz AS started_at, %s::timestamptz AS finished_at'
        ' FROM %s WHERE %s',
        quote_ident(cfg.phase_column),
        coalesce(quote_ident(cfg.completed_column), 'NULL'),
        coalesce(quote_ident(cfg.total_column), 'NULL'),
        coalesce(quote_ident(cfg.speed_column), 'NULL'),
        coalesce(quote_ident(cfg.speed_updated_column), 'NULL'),
        coalesce(quote_ident(cfg.reason_column), 'NULL'),
        coalesce(quote_ident(cfg.phase_updated_column), 'NULL'),
        coalesce(quote_ident(cfg.progress_updated_column), 'NULL'),
        coalesce(quote_ident(cfg.heartbeat_column), 'NULL'),
        coalesce(quote_ident(cfg.started_column), 'NULL'),
        coalesce(quote_ident(cfg.finished_column), 'NULL'),
        tbl, cond);
    BEGIN
        EXECUTE query INTO STRICT r USING k;
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

    -- timings from the row, or from the side table
    IF cfg.storage = 'side' THEN
        SELECT s.phase_updated_at, s.progress_updated_at, s.heartbeat_at, s.started_at, s.finished_at
          INTO tm
          FROM @extschema@.side_timings s
         WHERE s.relid = r.relid AND s.key = k;
    ELSE
        SELECT r.phase_updated_at, r.progress_updated_at, r.heartbeat_at, r.started_at, r.finished_at
          INTO tm;
    END IF;

    SELECT * INTO lc FROM @extschema@._lifecycle_arrays(cfg.lifecycle);
    pos := array_position(lc.phases, r.phase);
    kind := lc.kinds[pos];
    pct := @extschema@.percent(r.completed, r.total);

    -- speeds and ETA describe an active phase only
    IF kind = 'active' THEN
        avg_speed := @extschema@.transfer_speed(r.completed, tm.phase_updated_at, t);
        IF cfg.speed_column IS NOT NULL THEN
            smooth := @extschema@.smoothed_speed(r.items_per_second, r.speed_updated_at, t,
                                                  cfg.speed_time_constant);
        END IF;
        speed := coalesce(smooth, avg_speed);
        eta := @extschema@.eta(r.completed, r.total, speed);
        since_progress := @extschema@._elapsed_seconds(coalesce(tm.progress_updated_at, r.speed_updated_at), t);
        stalled := r.completed IS NOT NULL AND (r.total IS NULL OR r.completed < r.total)
                   AND since_progress >= date_part('epoch', cfg.speed_time_constant);
    END IF;

    RETURN jsonb_build_object(
        'table', tbl::text,
        'key', k,
        'as_of', t,
        'phase', r.phase,
        'kind', kind,
        'completed', r.completed,
        'total', r.total,
        'percent', pct,
        'average_speed', avg_speed,
        'smoothed_speed', smooth,
        'speed', speed,
        'eta_seconds', date_part('epoch', eta),
        'phase_elapsed_seconds', @extschema@._elapsed_seconds(tm.phase_updated_at, t),
        'elapsed_seconds', @extschema@._elapsed_seconds(tm.started_at, coalesce(tm.finished_at, t)),
        'since_progress_seconds', since_progress,
        'stalled', coalesce(stalled, false),
        'overall_progress', CASE WHEN pos IS NOT NULL
                                 THEN @extschema@.weighted_progress(lc.weights, lc.kinds, pos, coalesce(pct / 100, 0)) END,
        'reason', CASE WHEN kind IN ('failed', 'cancelled') THEN r.reason END,
        'phase_updated_at', tm.phase_updated_at,
        'progress_updated_at', tm.progress_updated_at,
        'heartbeat_at', tm.heartbeat_at,
        'started_at', tm.started_at,
        'finished_at', tm.finished_at);
END
$$;
COMMENT ON FUNCTION @extschema@.progress(regclass, text, timestamptz) IS
    'The figures of one row of a tracked table as of a time: phase, kind, counters, percent, average and smoothed speed, ETA, elapsed times, stall, overall progress';

CREATE FUNCTION @extschema@.describe(figures jsonb)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_describe';
COMMENT ON FUNCTION @extschema@.describe(jsonb) IS
    'One human line for a row''s figures as progress() returns them, e.g. "Transferring: 12,400/31,344 (39.6%) · 85 items/s · ETA 3m42s"';

CREATE FUNCTION @extschema@.describe(tbl regclass, key text, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.describe(@extschema@.progress(tbl, key, as_of))
$$;
COMMENT ON FUNCTION @extschema@.describe(regclass, text, timestamptz) IS
    'One human line describing a row of a tracked table as of a time (describe(progress(tbl, key, as_of)))';
--------------------------------------------------------------------------
-- Stuck detection, fail_stuck() and the in-flight index
--
-- A tracked table's in-flight rows are its rows in a non-terminal phase.
-- track() gives it a partial index over them, keyed on the phase column
-- only, so that heartbeats and counter updates (which change neither the
-- phase nor any other indexed column) stay HOT, and so that every query
-- below costs in proportion to the number of in-flight rows rather than to
-- the table size.  The queries are generated per table from the same
-- predicate text as the index, which is what lets the planner prove that
-- the index applies.
--------------------------------------------------------------------------

-- The in-flight predicate of a table: its phase is not a terminal phase.
CREATE FUNCTION @extschema@._in_flight_predicate(cfg @extschema@.tracked, alias text DEFAULT NULL)
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
                                 AND p.kind OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed', 'cancelled'])),
                             CASE WHEN t.oid OPERATOR(pg_catalog.=) 'pg_catalog.varchar'::pg_catalog.regtype
                                  THEN 'pg_catalog.text'
                                  ELSE pg_catalog.format_type(t.oid, NULL) END)
      FROM pg_catalog.pg_type t
     WHERE t.oid OPERATOR(pg_catalog.=) @extschema@._column_type(cfg.relid, cfg.phase_column)
$$;
COMMENT ON FUNCTION @extschema@._in_flight_predicate(@extschema@.tracked, text) IS
    'Internal: the SQL condition selecting a tracked table''s in-flight (non-terminal) rows, as its partial index states it';

-- Name of a table's in-flight index.
CREATE FUNCTION @extschema@._in_flight_index_name(tbl regclass)
RETURNS name
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.left(c.relname, 45)::text OPERATOR(pg_catalog.||) '_dp_in_flight_idx'
      FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) tbl
$$;
COMMENT ON FUNCTION @extschema@._in_flight_index_name(regclass) IS
    'Internal: the name track() gives a table''s partial index over in-flight rows';

-- The index a tracked table should have (and its marker comment).
CREATE FUNCTION @extschema@.in_flight_index_statement(tbl regclass, concurrent boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    SELECT * INTO cfg FROM @extschema@.tracked t WHERE t.relid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'Track it with deploy_progress.track() first.';
    END IF;
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
-- the marker comment it carries.
CREATE FUNCTION @extschema@._in_flight_index(tbl regclass)
RETURNS regclass
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.indexrelid::pg_catalog.regclass
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid
     WHERE i.indrelid OPERATOR(pg_catalog.=) tbl
       AND c.relname OPERATOR(pg_catalog.=) @extschema@._in_flight_index_name(tbl)
$$;
COMMENT ON FUNCTION @extschema@._in_flight_index(regclass) IS
    'Internal: the in-flight partial index of a tracked table, if it has one';

-- Creates the in-flight index, replacing one whose predicate is out of
-- date (after a lifecycle change); called by track().
CREATE FUNCTION @extschema@._ensure_in_flight_index(cfg @extschema@.tracked, create_it boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    idx  regclass := @extschema@._in_flight_index(cfg.relid);
    stmt text := @extschema@.in_flight_index_statement(cfg.relid, false);
BEGIN
    IF idx IS NOT NULL THEN
        IF obj_description(idx, 'pg_class') IS NOT DISTINCT FROM stmt THEN
            RETURN;
        END IF;
        IF NOT create_it THEN
            RAISE NOTICE 'in-flight index % of table % is out of date', idx, cfg.relid
                USING DETAIL = 'Its predicate no longer matches the lifecycle''s terminal phases.',
                      HINT = format('Drop it and run: %s', @extschema@.in_flight_index_statement(cfg.relid, true));
            RETURN;
        END IF;
        EXECUTE format('DROP INDEX %s', idx);
    END IF;
    IF NOT create_it THEN
        RAISE NOTICE 'table % has no in-flight index', cfg.relid
            USING HINT = format('Run outside a transaction: %s', @extschema@.in_flight_index_statement(cfg.relid, true));
        RETURN;
    END IF;
    EXECUTE stmt;
    idx := @extschema@._in_flight_index(cfg.relid);
    EXECUTE format('COMMENT ON INDEX %s IS %L', idx, stmt);
END
$$;
COMMENT ON FUNCTION @extschema@._ensure_in_flight_index(@extschema@.tracked, boolean) IS
    'Internal: creates (or reports) the partial index over a tracked table''s in-flight rows';

-- A SELECT over a tracked table's in-flight rows with every role under a
-- fixed name (NULL where the table has no such column; side-table timings
-- joined in), the kind, position and deadline of the row's phase, and the
-- reason the row is stuck as of $1 (NULL when healthy):
--   no_heartbeat   active, no write at all for heartbeat_deadline
--   no_progress    active, no phase change and no counter move for progress_deadline
--   phase_overdue  active, in the phase longer than its deadline
--   queue_overdue  pending, queued longer than its deadline
-- in that order of priority.  Waiting and terminal rows are never stuck; a
-- reason whose clock column the table lacks is never reported.  A row is
-- stuck when its clock plus the deadline is strictly before $1.
-- "extra" is ANDed to the WHERE clause and "tail" (LIMIT, FOR UPDATE ...)
-- appended.
CREATE FUNCTION @extschema@._rows_sql(cfg @extschema@.tracked, extra text DEFAULT NULL, tail text DEFAULT '')
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    side  boolean := cfg.storage = 'side';
    keyx  text := @extschema@._key_expr(cfg, 't');
    e_phase_upd text; e_prog text; e_hb text; e_start text; e_fin text;
BEGIN
    IF side THEN
        e_phase_upd := 's.phase_updated_at'; e_prog := 's.progress_updated_at'; e_hb := 's.heartbeat_at';
        e_start := 's.started_at'; e_fin := 's.finished_at';
    ELSE
        e_phase_upd := coalesce('t.' || quote_ident(cfg.phase_updated_column), 'NULL::pg_catalog.timestamptz');
        e_prog := coalesce('t.' || quote_ident(cfg.progress_updated_column), 'NULL::pg_catalog.timestamptz');
        e_hb := coalesce('t.' || quote_ident(cfg.heartbeat_column), 'NULL::pg_catalog.timestamptz');
        e_start := coalesce('t.' || quote_ident(cfg.started_column), 'NULL::pg_catalog.timestamptz');
        e_fin := coalesce('t.' || quote_ident(cfg.finished_column), 'NULL::pg_catalog.timestamptz');
    END IF;
    RETURN format(
        'SELECT t.tableoid AS dp_tableoid, t.ctid AS dp_ctid, %1$s AS key, t.%2$I::pg_catalog.text AS phase,'
        ' p.kind, p.position, p.deadline AS phase_deadline,'
        ' %3$s AS completed, %4$s AS total,'
        ' %5$s AS phase_updated_at, %6$s AS progress_updated_at, %7$s AS heartbeat_at,'
        ' %8$s AS started_at, %9$s AS finished_at, %10$s AS items_per_second, %11$s AS speed_updated_at,'
        ' st.reason AS stuck_reason, st.clock AS stuck_clock, st.deadline AS stuck_deadline'
        ' FROM %12$s t'
        ' JOIN @extschema@.lifecycle_phases p ON p.lifecycle OPERATOR(pg_catalog.=) %13$L'
        '  AND p.phase OPERATOR(pg_catalog.=) t.%2$I::pg_catalog.text'
        '%14$s'
        ' CROSS JOIN LATERAL (SELECT (ARRAY[''no_heartbeat'', ''no_progress'', ''phase_overdue'', ''queue_overdue''])[v.i] AS reason,'
        '         CASE v.i WHEN 1 THEN %7$s WHEN 2 THEN %6$s WHEN 3 THEN %5$s WHEN 4 THEN %5$s END AS clock,'
        '         CASE v.i WHEN 1 THEN %15$L::pg_catalog.interval WHEN 2 THEN %16$L::pg_catalog.interval'
        '                  WHEN 3 THEN coalesce(%17$L::pg_catalog.interval, p.deadline)'
        '                  WHEN 4 THEN coalesce(%18$L::pg_catalog.interval, p.deadline) END AS deadline'
        '    FROM (SELECT CASE'
        '      WHEN p.kind OPERATOR(pg_catalog.=) ''active'' AND %7$s OPERATOR(pg_catalog.+) %15$L::pg_catalog.interval OPERATOR(pg_catalog.<) $1 THEN 1'
        '      WHEN p.kind OPERATOR(pg_catalog.=) ''active'' AND %6$s OPERATOR(pg_catalog.+) %16$L::pg_catalog.interval OPERATOR(pg_catalog.<) $1 THEN 2'
        '      WHEN p.kind OPERATOR(pg_catalog.=) ''active'' AND %5$s OPERATOR(pg_catalog.+) coalesce(%17$L::pg_catalog.interval, p.deadline) OPERATOR(pg_catalog.<) $1 THEN 3'
        '      WHEN p.kind OPERATOR(pg_catalog.=) ''pending'' AND %5$s OPERATOR(pg_catalog.+) coalesce(%18$L::pg_catalog.interval, p.deadline) OPERATOR(pg_catalog.<) $1 THEN 4'
        '      END AS i) v) st'
        ' WHERE %19$s%20$s %21$s',
        keyx,
        cfg.phase_column,
        coalesce('t.' || quote_ident(cfg.completed_column) || '::pg_catalog.int8', 'NULL::pg_catalog.int8'),
        coalesce('t.' || quote_ident(cfg.total_column) || '::pg_catalog.int8', 'NULL::pg_catalog.int8'),
        e_phase_upd, e_prog, e_hb, e_start, e_fin,
        coalesce('t.' || quote_ident(cfg.speed_column), 'NULL::pg_catalog.float8'),
        coalesce('t.' || quote_ident(cfg.speed_updated_column), 'NULL::pg_catalog.timestamptz'),
        cfg.relid,
        cfg.lifecycle,
        CASE WHEN side
             THEN format(' LEFT JOIN @extschema@.side_timings s ON s.relid OPERATOR(pg_catalog.=) %L::pg_catalog.regclass'
                         ' AND s.key OPERATOR(pg_catalog.=) %s', cfg.relid::oid, keyx)
             ELSE '' END,
        cfg.heartbeat_deadline, cfg.progress_deadline, cfg.phase_deadline, cfg.queue_deadline,
        @extschema@._in_flight_predicate(cfg, 't'),
        CASE WHEN extra IS NULL THEN '' ELSE ' AND (' || extra || ')' END,
        tail);
END
$$;
COMMENT ON FUNCTION @extschema@._rows_sql(@extschema@.tracked, text, text) IS
    'Internal: SQL selecting a tracked table''s in-flight rows with their timings under fixed names and their stuck reason as of $1';

-- The query stuck() runs for one table ($1: as of).
CREATE FUNCTION @extschema@._stuck_query(cfg @extschema@.tracked)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
        'SELECT %L::pg_catalog.regclass, r.key, r.phase, r.stuck_reason, r.stuck_clock, r.stuck_deadline,'
        ' $1 OPERATOR(pg_catalog.-) (r.stuck_clock OPERATOR(pg_catalog.+) r.stuck_deadline)'
        ' FROM (%s) r ORDER BY 7 DESC, 2',
        cfg.relid::oid, @extschema@._rows_sql(cfg, 'st.reason IS NOT NULL'))
$$;
COMMENT ON FUNCTION @extschema@._stuck_query(@extschema@.tracked) IS
    'Internal: the query stuck() runs for one tracked table';

CREATE FUNCTION @extschema@.stuck(tbl regclass DEFAULT NULL, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (relid regclass, key text, phase text, reason text,
               clock_started_at timestamptz, deadline interval, overdue_by interval)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    IF tbl IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.tracked t WHERE t.relid = tbl) THEN
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'Call stuck() without a table to check every tracked table.';
    END IF;
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    FOR cfg IN SELECT * FROM @extschema@.tracked t
                WHERE (tbl IS NULL OR t.relid = tbl)
                  AND has_table_privilege(t.relid, 'SELECT')
                ORDER BY t.relid::text
    LOOP
        RETURN QUERY EXECUTE @extschema@._stuck_query(cfg) USING as_of;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.stuck(regclass, timestamptz) IS
    'Rows of tracked tables (all, or one) that are stuck as of a time, with the reason, the time the reason''s clock started, the deadline and how far past it';

CREATE FUNCTION @extschema@.fail_stuck(tbl regclass DEFAULT NULL, batch_size integer DEFAULT 1000,
                                       as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (relid regclass, key text, from_phase text, to_phase text, reason text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg       @extschema@.tracked;
    failed    text;
    col_type  text;
    reasons   text[] := ARRAY['no_heartbeat', 'no_progress', 'phase_overdue', 'queue_overdue'];
    why       text;
    tableoids oid[];
    ctids     tid[];
    keys      text[];
    phases    text[];
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
    IF tbl IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.tracked t WHERE t.relid = tbl) THEN
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'Call fail_stuck() without a table to sweep every tracked table.';
    END IF;
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    FOR cfg IN SELECT * FROM @extschema@.tracked t
                WHERE (tbl IS NULL OR t.relid = tbl)
                  AND has_table_privilege(t.relid, 'SELECT')
                  AND has_table_privilege(t.relid, 'UPDATE')
                ORDER BY t.relid::text
    LOOP
        SELECT p.phase INTO failed FROM @extschema@.lifecycle_phases p
         WHERE p.lifecycle = cfg.lifecycle AND p.kind = 'failed' ORDER BY p.position LIMIT 1;
        col_type := format_type(@extschema@._column_type(cfg.relid, cfg.phase_column), NULL);

        -- one reason at a time, so that each statement can name its reason
        -- (for the history and the reason column); a row is failed by the
        -- first reason that catches it, in stuck()'s order of priority
        FOREACH why IN ARRAY reasons LOOP
            LOOP
                -- 1. lock a batch of stuck rows, skipping rows a writer holds
                EXECUTE format(
                    'SELECT pg_catalog.array_agg(r.dp_tableoid), pg_catalog.array_agg(r.dp_ctid),'
                    '       pg_catalog.array_agg(r.key), pg_catalog.array_agg(r.phase) FROM (%s) r',
                    @extschema@._rows_sql(cfg, format('st.reason OPERATOR(pg_catalog.=) %L', why),
                                          format('LIMIT %s FOR UPDATE OF t SKIP LOCKED', batch_size)))
                INTO tableoids, ctids, keys, phases USING as_of;
                EXIT WHEN ctids IS NULL;

                -- 2. in a new statement (a fresh snapshot, with the rows
                -- locked) re-check and fail them; a row that progressed
                -- since the sweep started no longer matches and is left
                PERFORM set_config('deploy_progress.transition_reason', why, true)
                   FROM pg_catalog.pg_settings WHERE name = 'deploy_progress.transition_reason';
                RETURN QUERY EXECUTE format(
                    'WITH locked AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.oid[]), pg_catalog.unnest($3::pg_catalog.tid[]),'
                    '                                        pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[])) AS l(toid, tid, key, phase)),'
                    ' failed AS ('
                    '  UPDATE %1$s t SET %2$I = %3$L::%4$s%5$s'
                    '   WHERE t.ctid OPERATOR(pg_catalog.=) ANY ($3)'
                    '     AND (t.tableoid, t.ctid) IN (SELECT r.dp_tableoid, r.dp_ctid FROM (%6$s) r'
                    '                                   JOIN locked l ON l.toid OPERATOR(pg_catalog.=) r.dp_tableoid'
                    '                                                AND l.tid OPERATOR(pg_catalog.=) r.dp_ctid)'
                    '  RETURNING %7$s AS key)'
                    ' SELECT %8$L::pg_catalog.regclass, f.key, l.phase, %3$L::pg_catalog.text, %9$L::pg_catalog.text'
                    '   FROM failed f JOIN locked l ON l.key OPERATOR(pg_catalog.=) f.key ORDER BY f.key',
                    cfg.relid, cfg.phase_column, failed, col_type,
                    CASE WHEN cfg.reason_column IS NULL THEN ''
                         ELSE format(', %I = %L', cfg.reason_column, why) END,
                    @extschema@._rows_sql(cfg, format('t.ctid OPERATOR(pg_catalog.=) ANY ($3) AND st.reason OPERATOR(pg_catalog.=) %L', why)),
                    @extschema@._key_expr(cfg, 't'),
                    cfg.relid::oid, why)
                USING as_of, tableoids, ctids, keys, phases;
                EXIT WHEN cardinality(ctids) < batch_size;
            END LOOP;
        END LOOP;
    END LOOP;
    PERFORM set_config('deploy_progress.transition_reason', '', true)
       FROM pg_catalog.pg_settings WHERE name = 'deploy_progress.transition_reason';
END
$$;
COMMENT ON FUNCTION @extschema@.fail_stuck(regclass, integer, timestamptz) IS
    'Moves stuck rows to their lifecycle''s failed phase (locking with SKIP LOCKED and re-checking under the lock, in batches) and returns what it failed';
--------------------------------------------------------------------------
-- The in-flight view
--
-- deploy_progress.in_flight lists every non-terminal row of every tracked
-- table the current role can read, with its figures and stuck reason.  A
-- view cannot span tables that are only known at run time, so it reads a
-- set-returning function that runs, per tracked table, the same query as
-- stuck() (see _rows_sql()): its WHERE clause is the predicate of the
-- table's partial index, so the cost follows the number of in-flight rows,
-- not the size of the table.  Nothing in it depends on the tracked tables,
-- so dropping one is never blocked by the view.
--------------------------------------------------------------------------

-- The query in_flight() runs for one table ($1: as of; $2, $3: the
-- lifecycle's weights and kinds).
CREATE FUNCTION @extschema@._in_flight_query(cfg @extschema@.tracked)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
        'SELECT %1$L::pg_catalog.regclass, r.key, r.phase, r.kind, r.completed, r.total, f.pct,'
        '       f.average_speed, f.smoothed_speed, f.speed,'
        '       @extschema@.eta(r.completed, r.total, f.speed),'
        '       r.phase_updated_at, r.progress_updated_at, r.heartbeat_at, r.started_at,'
        '       CASE WHEN $1 OPERATOR(pg_catalog.>=) r.phase_updated_at THEN $1 OPERATOR(pg_catalog.-) r.phase_updated_at END,'
        '       CASE WHEN $1 OPERATOR(pg_catalog.>=) r.started_at THEN $1 OPERATOR(pg_catalog.-) r.started_at END,'
        '       @extschema@.weighted_progress($2, $3, r.position,'
        '           coalesce(f.pct OPERATOR(pg_catalog./) 100, 0)),'
        '       r.stuck_reason'
        '  FROM (%2$s) r'
        '  CROSS JOIN LATERAL (SELECT a.pct, a.average_speed, a.smoothed_speed,'
        '                             coalesce(a.smoothed_speed, a.average_speed) AS speed'
        '                        FROM (SELECT @extschema@.percent(r.completed, r.total) AS pct,'
        '                                     CASE WHEN r.kind OPERATOR(pg_catalog.=) ''active'''
        '                                          THEN @extschema@.transfer_speed(r.completed, r.phase_updated_at, $1) END AS average_speed,'
        '                                     CASE WHEN r.kind OPERATOR(pg_catalog.=) ''active'''
        '                                          THEN @extschema@.smoothed_speed(r.items_per_second, r.speed_updated_at, $1, %3$L::pg_catalog.interval) END AS smoothed_speed'
        '                             ) a) f',
        cfg.relid::oid, @extschema@._rows_sql(cfg), cfg.speed_time_constant)
$$;
COMMENT ON FUNCTION @extschema@._in_flight_query(@extschema@.tracked) IS
    'Internal: the query in_flight() runs for one tracked table';

CREATE FUNCTION @extschema@.in_flight(tbl regclass DEFAULT NULL, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (relid regclass, key text, phase text, kind text,
               completed bigint, total bigint, percent double precision,
               average_speed double precision, smoothed_speed double precision, speed double precision,
               eta interval,
               phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
               started_at timestamptz, in_phase interval, elapsed interval,
               overall_progress double precision, stuck_reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
    lc  record;
BEGIN
    IF tbl IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.tracked t WHERE t.relid = tbl) THEN
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'Select from the view deploy_progress.in_flight to see every tracked table.';
    END IF;
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    FOR cfg IN SELECT * FROM @extschema@.tracked t
                WHERE (tbl IS NULL OR t.relid = tbl)
                  AND has_table_privilege(t.relid, 'SELECT')
                ORDER BY t.relid::text
    LOOP
        SELECT * INTO lc FROM @extschema@._lifecycle_arrays(cfg.lifecycle);
        RETURN QUERY EXECUTE @extschema@._in_flight_query(cfg) USING as_of, lc.weights, lc.kinds;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.in_flight(regclass, timestamptz) IS
    'In-flight (non-terminal) rows of the tracked tables (all, or one) that the current role can read, with their figures and stuck reason as of a time';

CREATE VIEW @extschema@.in_flight AS
SELECT * FROM @extschema@.in_flight(NULL, pg_catalog.now());
COMMENT ON VIEW @extschema@.in_flight IS
    'Every in-flight (non-terminal) row of every tracked table the current role can read: phase, counters, percent, speeds, ETA, elapsed times, overall progress and stuck reason (NULL when healthy)';
GRANT SELECT ON @extschema@.in_flight TO PUBLIC;
--------------------------------------------------------------------------
-- Transition history, events, phase statistics, UI steps, retention and
-- metrics
--
-- The C trigger record_transition() (src/history.c) queues one row per
-- phase transition (INSERT included) and writes a statement's rows with
-- one INSERT into deploy_progress.history, in the transaction of the
-- change; it also sends the transition's NOTIFY event.  track() installs
-- it AFTER INSERT and AFTER UPDATE WHEN the phase changed, so heartbeats
-- and counter updates never reach it.  The history is kept when a table is
-- untracked or dropped (it is audit data); prune() removes it by age.
--------------------------------------------------------------------------

CREATE TABLE @extschema@.history (
    id                  bigint GENERATED ALWAYS AS IDENTITY (CACHE 100),
    relid               regclass NOT NULL,
    key                 text COLLATE "C" NOT NULL,
    from_phase          text,
    to_phase            text NOT NULL,
    to_kind             text NOT NULL,
    at                  timestamptz NOT NULL,
    time_in_previous    interval,
    completed           bigint,
    total               bigint,
    reason              text
);
COMMENT ON TABLE @extschema@.history IS
    'Transition log of the tracked tables: one row per phase entered (from_phase NULL for an INSERT), written by the record_transition() trigger; read it through the transitions view';

-- Every transition pays for each index of this table (its entries and
-- their WAL), so it has two: a B-tree for one row's transitions (timeline(),
-- steps()), on a key in the "C" collation so that its comparisons are
-- plain byte comparisons, and a BRIN index on the time, nearly free to
-- maintain since rows arrive in time order, for prune() and time windows.  "id" comes from a
-- cached sequence (unique, in insertion order within a session, with gaps)
-- and is not indexed.
CREATE INDEX history_relid_key_idx ON @extschema@.history (relid, key);
CREATE INDEX history_at_brin ON @extschema@.history USING brin (at);

-- Counts of pruned history, so that the metrics' counters and duration
-- sums never go down when prune() removes rows.
CREATE TABLE @extschema@.history_pruned (
    relid               regclass NOT NULL,
    phase               text NOT NULL,
    transitions         bigint NOT NULL DEFAULT 0,
    failures            bigint NOT NULL DEFAULT 0,
    stays               bigint NOT NULL DEFAULT 0,
    stay_seconds        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (relid, phase)
);
COMMENT ON TABLE @extschema@.history_pruned IS
    'Totals of the history rows prune() removed, per table and phase: transitions into the phase, failures in it, and completed stays in it with their summed duration; the metrics add them to what history holds';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.history', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.history_pruned', '');

-- The history is written by the trigger as the table's owner and read by
-- everyone through views that show the rows of the tables they can read.
CREATE VIEW @extschema@.transitions
WITH (security_barrier)
AS
SELECT h.id, h.relid, h.key, h.from_phase, h.to_phase, h.to_kind, h.at,
       h.time_in_previous, h.completed, h.total, h.reason
  FROM @extschema@.history h
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) h.relid
 WHERE pg_catalog.has_table_privilege(c.oid, 'SELECT');
COMMENT ON VIEW @extschema@.transitions IS
    'The transition history of the tables the current role can read: one row per phase entered, with the time spent in the previous phase, the counters and the reason';
GRANT SELECT ON @extschema@.transitions TO PUBLIC;

--------------------------------------------------------------------------
-- The trigger
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@.record_transition()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'dp_record_transition';
COMMENT ON FUNCTION @extschema@.record_transition() IS
    'AFTER ROW trigger created by track(): records phase transitions in deploy_progress.history and sends them as NOTIFY events';

CREATE FUNCTION @extschema@._history_flushes()
RETURNS bigint
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'dp_history_flushes';
COMMENT ON FUNCTION @extschema@._history_flushes() IS
    'Internal: how many history INSERT statements this session has run (one per statement that made transitions)';

-- Installs the history trigger of a table as its configuration says;
-- called by track() after _drop_triggers().  No trigger at all when both
-- the history and the events are off.
CREATE FUNCTION @extschema@._install_history(cfg @extschema@.tracked)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cfg.history = 'off' AND cfg.notify_channel IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER zz_deploy_progress_history_ins AFTER INSERT ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION @extschema@.record_transition()', cfg.relid);
    EXECUTE format('CREATE TRIGGER zz_deploy_progress_history_upd AFTER UPDATE ON %s '
                   'FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I) '
                   'EXECUTE FUNCTION @extschema@.record_transition()',
                   cfg.relid, cfg.phase_column, cfg.phase_column);
END
$$;
COMMENT ON FUNCTION @extschema@._install_history(@extschema@.tracked) IS
    'Internal: creates the history and event triggers of a tracked table (AFTER INSERT, and AFTER UPDATE when the phase changes)';

-- The configuration of a tracked table the caller may read, or an error.
CREATE FUNCTION @extschema@._readable_config(tbl regclass)
RETURNS @extschema@.tracked
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    SELECT * INTO cfg FROM @extschema@.tracked t WHERE t.relid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'Track it with deploy_progress.track() first.';
    END IF;
    PERFORM @extschema@._check_readable(tbl);
    RETURN cfg;
END
$$;
COMMENT ON FUNCTION @extschema@._readable_config(regclass) IS
    'Internal: the tracking configuration of a table, checking that it is tracked and that the caller can read it';

CREATE FUNCTION @extschema@._check_readable(tbl regclass)
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
                  DETAIL = 'The history of a table is visible to the roles that can read the table.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._check_readable(regclass) IS
    'Internal: raises an error unless the caller can read the table';

--------------------------------------------------------------------------
-- Statistics, timeline and steps
--------------------------------------------------------------------------

-- The suggested deadline of a phase from its completed stays: 1.5 times
-- their 95th percentile, rounded up to a whole minute (at least one), once
-- there are at least 20 of them; NULL below that, and for phases that take
-- no deadline (waiting and terminal ones).
CREATE FUNCTION @extschema@._suggested_deadline(kind text, stays bigint, p95_seconds double precision)
RETURNS interval
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN kind OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'active'])
                 AND stays OPERATOR(pg_catalog.>=) 20 AND p95_seconds IS NOT NULL
                THEN pg_catalog.make_interval(mins => GREATEST(1,
                         pg_catalog.ceil(p95_seconds OPERATOR(pg_catalog.*) 1.5 OPERATOR(pg_catalog./) 60)::integer))
           END
$$;
COMMENT ON FUNCTION @extschema@._suggested_deadline(text, bigint, double precision) IS
    'Internal: the deadline phase_stats() suggests: ceil(1.5 x p95) in whole minutes (at least 1) from at least 20 completed stays, for pending and active phases';

CREATE FUNCTION @extschema@.phase_stats(tbl regclass, since timestamptz DEFAULT NULL)
RETURNS TABLE (phase text, kind text, count bigint, mean interval, p50 interval, p95 interval,
               max interval, failures bigint, suggested_deadline interval)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked := @extschema@._readable_config(tbl);
BEGIN
    -- a stay in a phase ends with the transition out of it; a completed
    -- stay ends in a phase that is not failed or cancelled
    RETURN QUERY
    WITH stays AS (
        SELECT h.from_phase,
               h.to_kind NOT IN ('failed', 'cancelled') AND h.time_in_previous IS NOT NULL AS completed,
               h.to_kind = 'failed' AS failure,
               extract(epoch FROM h.time_in_previous)::double precision AS secs
          FROM @extschema@.transitions h
         WHERE h.relid = tbl AND h.from_phase IS NOT NULL
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

CREATE FUNCTION @extschema@.timeline(tbl regclass, key text, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (phase text, kind text, started_at timestamptz, ended_at timestamptz,
               duration interval, reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text := key;
BEGIN
    PERFORM @extschema@._check_readable(tbl);
    RETURN QUERY
    SELECT h.to_phase, h.to_kind, h.at, h.next_at,
           CASE WHEN h.next_at IS NOT NULL THEN h.next_at - h.at
                WHEN h.to_kind NOT IN ('succeeded', 'failed', 'cancelled') THEN as_of - h.at
           END,
           h.reason
      FROM (SELECT x.*, lead(x.at) OVER (ORDER BY x.at, x.id) AS next_at
              FROM @extschema@.transitions x
             WHERE x.relid = tbl AND x.key = k) h
     ORDER BY h.at, h.id;
END
$$;
COMMENT ON FUNCTION @extschema@.timeline(regclass, text, timestamptz) IS
    'The phases one row of a table went through, in order, with when each started and ended and how long it lasted (the current phase up to as_of; none for a final terminal phase)';

CREATE FUNCTION @extschema@.steps(tbl regclass, key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg      @extschema@.tracked := @extschema@._readable_config(tbl);
    k        text := key;
    cur      text;
    cur_kind text;
    cur_pos  integer;
    here     text;      -- the step the row is at (or was at when it ended)
    here_pos integer;
    v_phase  text[];    -- the visits of the current attempt, in order
    v_kind   text[];
    v_start  timestamptz[];
    v_end    timestamptz[];
    result   jsonb;
BEGIN
    EXECUTE format('SELECT t.%I::pg_catalog.text FROM %s t WHERE %s OPERATOR(pg_catalog.=) $1 LIMIT 1',
                   cfg.phase_column, tbl, @extschema@._key_expr(cfg, 't'))
       INTO cur USING k;
    IF cur IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT p.kind, p.position INTO cur_kind, cur_pos
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
                               OR lag(x.to_kind) OVER w IN ('succeeded', 'failed', 'cancelled') AS starts
                      FROM @extschema@.transitions x
                     WHERE x.relid = tbl AND x.key = k
                    WINDOW w AS (ORDER BY x.at, x.id)) h) a
     WHERE a.ord >= coalesce(a.attempt, 1);

    -- where the row is: its phase, or for a waiting, failed or cancelled
    -- row the last pending or active phase it was in
    IF cur_kind IN ('pending', 'active', 'succeeded') THEN
        here := cur;
    ELSE
        SELECT u.phase INTO here
          FROM unnest(v_phase, v_kind) WITH ORDINALITY AS u(phase, kind, ord)
         WHERE u.kind IN ('pending', 'active') ORDER BY u.ord DESC LIMIT 1;
    END IF;
    SELECT p.position INTO here_pos FROM @extschema@.lifecycle_phases p
     WHERE p.lifecycle = cfg.lifecycle AND p.phase = here;

    SELECT jsonb_agg(jsonb_build_object(
               'phase', s.phase, 'kind', s.kind, 'status', s.status,
               'started_at', s.started_at, 'ended_at', s.ended_at) ORDER BY s.position)
      INTO result
      FROM (SELECT p.phase, p.kind, p.position, v.started_at, v.ended_at,
                   CASE
                       WHEN p.phase = here THEN
                           CASE cur_kind WHEN 'succeeded' THEN 'completed'
                                         WHEN 'failed' THEN 'failed'
                                         WHEN 'cancelled' THEN 'skipped'
                                         ELSE 'active' END
                       WHEN p.kind = 'succeeded' OR here_pos IS NULL OR p.position > here_pos THEN
                           CASE WHEN cur_kind IN ('succeeded', 'failed', 'cancelled') THEN 'skipped'
                                ELSE 'pending' END
                       -- before the row's step: done, unless history shows it was not visited
                       WHEN v.phase IS NOT NULL OR v_phase IS NULL THEN 'completed'
                       ELSE 'skipped'
                   END AS status
              FROM @extschema@.lifecycle_phases p
              LEFT JOIN LATERAL (SELECT u.phase, u.started_at, u.ended_at
                                   FROM unnest(v_phase, v_start, v_end) WITH ORDINALITY AS u(phase, started_at, ended_at, ord)
                                  WHERE u.phase = p.phase ORDER BY u.ord DESC LIMIT 1) v ON true
             WHERE p.lifecycle = cfg.lifecycle AND p.kind IN ('pending', 'active', 'succeeded')
            UNION ALL
            -- a failed row whose history does not say where it failed
            SELECT cur, cur_kind, cur_pos, NULL, NULL, 'failed'
             WHERE cur_kind = 'failed' AND here IS NULL) s;
    RETURN coalesce(result, '[]'::jsonb);
END
$$;
COMMENT ON FUNCTION @extschema@.steps(regclass, text) IS
    'The steps of one row for a UI: a JSON array of the pending, active and succeeded phases of its lifecycle with status completed, active, pending, failed (where a failed row failed) or skipped, and when each started and ended';

--------------------------------------------------------------------------
-- Retention
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@.prune(older_than interval, keep_failures boolean DEFAULT true,
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
               AND NOT (keep_failures AND h.to_kind IN ('failed', 'cancelled'))
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
                      FROM gone g
                    UNION ALL
                    SELECT g.relid, coalesce(g.from_phase, g.to_phase), 0, 1, 0, 0
                      FROM gone g WHERE g.to_kind = 'failed'
                    UNION ALL
                    SELECT g.relid, g.from_phase, 0, 0, 1, extract(epoch FROM g.time_in_previous)::float8
                      FROM gone g
                     WHERE g.from_phase IS NOT NULL AND g.time_in_previous IS NOT NULL
                       AND g.to_kind NOT IN ('failed', 'cancelled')) c
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

--------------------------------------------------------------------------
-- Metrics
--------------------------------------------------------------------------

-- The name of a table in metric labels and events: schema-qualified,
-- quoted only where needed, whatever the search_path.
CREATE FUNCTION @extschema@._table_label(tbl regclass)
RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.oid OPERATOR(pg_catalog.=) tbl
$$;
COMMENT ON FUNCTION @extschema@._table_label(regclass) IS
    'Internal: the schema-qualified name of a table, as metric labels and events give it';

-- In-flight rows per phase of every tracked table the caller can read, each
-- non-terminal phase of the lifecycle listed (zero when empty).  The count
-- reads the in-flight partial index, through the predicate it was built with.
CREATE FUNCTION @extschema@._in_flight_counts()
RETURNS TABLE (relid regclass, phase text, phase_position integer, rows bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    FOR cfg IN SELECT * FROM @extschema@.tracked t
                WHERE has_table_privilege(t.relid, 'SELECT')
                ORDER BY t.relid::text
    LOOP
        RETURN QUERY EXECUTE format(
            'SELECT %L::pg_catalog.regclass, p.phase, p.position, coalesce(c.n, 0)'
            '  FROM @extschema@.lifecycle_phases p'
            '  LEFT JOIN (SELECT t.%I::pg_catalog.text AS phase, pg_catalog.count(*) AS n'
            '               FROM %s t WHERE %s GROUP BY 1) c ON c.phase OPERATOR(pg_catalog.=) p.phase'
            ' WHERE p.lifecycle OPERATOR(pg_catalog.=) %L'
            '   AND p.kind OPERATOR(pg_catalog.=) ANY (ARRAY[''pending'', ''active'', ''waiting''])'
            ' ORDER BY p.position',
            cfg.relid::oid, cfg.phase_column, cfg.relid,
            @extschema@._in_flight_predicate(cfg, 't'), cfg.lifecycle);
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@._in_flight_counts() IS
    'Internal: the number of rows in each non-terminal phase of every tracked table the caller can read';

CREATE VIEW @extschema@.metrics
WITH (security_barrier)
AS
WITH tables AS (
    SELECT t.relid, t.lifecycle, @extschema@._table_label(t.relid) AS label
      FROM @extschema@.tracked t
     WHERE pg_catalog.has_table_privilege(t.relid, 'SELECT')
), kept AS (
    SELECT h.relid, h.from_phase, h.to_phase, h.to_kind,
           h.from_phase IS NOT NULL AND h.time_in_previous IS NOT NULL
               AND h.to_kind OPERATOR(pg_catalog.<>) ALL (ARRAY['failed', 'cancelled']) AS completed_stay,
           pg_catalog.date_part('epoch', h.time_in_previous) AS secs
      FROM @extschema@.history h
      JOIN tables t ON t.relid OPERATOR(pg_catalog.=) h.relid
), counts AS (
    SELECT c.relid, c.phase, pg_catalog.sum(c.transitions) AS transitions, pg_catalog.sum(c.failures) AS failures
      FROM (SELECT k.relid, k.to_phase AS phase, 1 AS transitions, 0 AS failures FROM kept k
            UNION ALL
            SELECT k.relid, coalesce(k.from_phase, k.to_phase), 0, 1 FROM kept k
             WHERE k.to_kind OPERATOR(pg_catalog.=) 'failed'
            UNION ALL
            SELECT p.relid, p.phase, p.transitions, p.failures FROM @extschema@.history_pruned p
              JOIN tables t ON t.relid OPERATOR(pg_catalog.=) p.relid
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
            SELECT p.relid, p.phase, NULL FROM @extschema@.history_pruned p
              JOIN tables t ON t.relid OPERATOR(pg_catalog.=) p.relid
             WHERE p.stays OPERATOR(pg_catalog.>) 0) s
     GROUP BY s.relid, s.phase
), stays_total AS (
    SELECT s.relid, s.phase, s.p50, s.p95,
           coalesce(s.total_seconds, 0) OPERATOR(pg_catalog.+) coalesce(p.stay_seconds, 0) AS total_seconds,
           s.n OPERATOR(pg_catalog.+) coalesce(p.stays, 0) AS n
      FROM stays s
      LEFT JOIN @extschema@.history_pruned p
        ON p.relid OPERATOR(pg_catalog.=) s.relid AND p.phase OPERATOR(pg_catalog.=) s.phase
), stuck AS (
    SELECT s.relid, s.reason, pg_catalog.count(*) AS n
      FROM @extschema@.stuck() s
     GROUP BY s.relid, s.reason
)
SELECT 'deploy_progress_in_flight'::text AS name,
       pg_catalog.jsonb_build_object('table', t.label, 'phase', f.phase) AS labels,
       f.rows::double precision AS value
  FROM @extschema@._in_flight_counts() f
  JOIN tables t ON t.relid OPERATOR(pg_catalog.=) f.relid
UNION ALL
SELECT 'deploy_progress_stuck',
       pg_catalog.jsonb_build_object('table', t.label, 'reason', r.reason),
       coalesce(s.n, 0)
  FROM tables t
 CROSS JOIN (SELECT x.reason FROM pg_catalog.unnest(ARRAY['no_heartbeat', 'no_progress', 'phase_overdue', 'queue_overdue']) AS x(reason)
             UNION
             SELECT s2.reason FROM stuck s2) r
  LEFT JOIN stuck s ON s.relid OPERATOR(pg_catalog.=) t.relid AND s.reason OPERATOR(pg_catalog.=) r.reason
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
    'Metric samples (name, labels, value) of the tracked tables the current role can read: in-flight rows per phase, stuck rows per reason, transition and failure counters, phase-duration summaries; metrics_prometheus() renders them';
GRANT SELECT ON @extschema@.metrics TO PUBLIC;

-- Escapes a label value or help text for the Prometheus text format.
CREATE FUNCTION @extschema@._prometheus_escape(s text, quotes boolean DEFAULT true)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.replace(
               CASE WHEN quotes
                    THEN pg_catalog.replace(pg_catalog.replace(s, E'\\', E'\\\\'), '"', E'\\"')
                    ELSE pg_catalog.replace(s, E'\\', E'\\\\') END,
               E'\n', E'\\n')
$$;
COMMENT ON FUNCTION @extschema@._prometheus_escape(text, boolean) IS
    'Internal: escapes backslashes, newlines and (in label values) double quotes for the Prometheus text format';

CREATE FUNCTION @extschema@.metrics_prometheus()
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
         'Time rows spent in a phase, over stays that did not end in a failed or cancelled phase.', 5)
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
--------------------------------------------------------------------------
-- Dumps by the database owner
--
-- pg_dump copies the rows of every table registered with
-- pg_extension_config_dump() (and reads its sequences), so the role dumping
-- a database must be able to read them all.  Lifecycles and tracking
-- configuration are readable by everyone; the side timings (and whatever
-- else later parts register, such as the history) are not, so the database
-- owner gets SELECT on each of them: a database owner that is not a
-- superuser can then dump its database.  This part comes last so that it
-- sees every registered table.  (pg_database_owner exists from 14 on; on 13
-- grant SELECT on these tables to the dumping role by hand.)
--------------------------------------------------------------------------

DO $$
DECLARE
    rel regclass;
BEGIN
    IF pg_catalog.to_regrole('pg_database_owner') IS NULL THEN
        RETURN;
    END IF;
    FOR rel IN SELECT pg_catalog.unnest(e.extconfig)
                 FROM pg_catalog.pg_extension e
                WHERE e.extname OPERATOR(pg_catalog.=) 'deploy_progress'
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON %s TO pg_database_owner', rel);
    END LOOP;
END
$$;
