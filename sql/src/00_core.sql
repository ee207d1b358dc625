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
