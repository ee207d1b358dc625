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
                CHECK (kind OPERATOR(pg_catalog.=) ANY (@extschema@._kinds())),
    weight      double precision NOT NULL DEFAULT 0
                CHECK (weight OPERATOR(pg_catalog.>=) 0 AND weight OPERATOR(pg_catalog.<) 'Infinity'::double precision),
    deadline    interval CHECK (deadline OPERATOR(pg_catalog.>) '0'::interval),
    step        text
                CHECK (step OPERATOR(pg_catalog.<>) '' AND pg_catalog.char_length(step) OPERATOR(pg_catalog.<=) 100),
    PRIMARY KEY (lifecycle, phase),
    UNIQUE (lifecycle, position)
);
COMMENT ON TABLE @extschema@.lifecycle_phases IS
    'One row per phase of a lifecycle: its position, kind (pending, active, waiting, succeeded, failed, cancelled), weight in overall progress, optional deadline and optional UI step label (consecutive phases with one label are one step of steps())';

INSERT INTO @extschema@.lifecycles (name, builtin) VALUES ('default', true);

INSERT INTO @extschema@.lifecycle_phases (lifecycle, position, phase, kind, weight, deadline, step)
VALUES
    ('default',  1, 'queued',       'pending',   0, '15 minutes', 'Queued'),
    ('default',  2, 'preparing',    'active',    1, NULL,         'Preparing'),
    ('default',  3, 'fetching',     'active',    2, NULL,         'Fetching sources'),
    ('default',  4, 'building',     'active',    3, NULL,         'Building'),
    ('default',  5, 'transferring', 'active',    3, NULL,         'Transferring'),
    ('default',  6, 'migrating',    'active',    2, NULL,         'Migrating'),
    ('default',  7, 'starting',     'active',    1, NULL,         'Starting'),
    ('default',  8, 'health_check', 'active',    1, NULL,         'Health check'),
    ('default',  9, 'finishing',    'active',    1, NULL,         'Finishing'),
    ('default', 10, 'waiting',      'waiting',   0, NULL,         NULL),
    ('default', 11, 'succeeded',    'succeeded', 0, NULL,         'Done'),
    ('default', 12, 'failed',       'failed',    0, NULL,         NULL),
    ('default', 13, 'cancelled',    'cancelled', 0, NULL,         NULL);

--------------------------------------------------------------------------
-- Guards: lifecycles belong to their definers
--------------------------------------------------------------------------

-- Whether the current role may change a lifecycle: built-in ones belong to
-- superusers, the others to the role that defined them.
CREATE OR REPLACE FUNCTION @extschema@._may_edit_lifecycle(lc text)
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

CREATE OR REPLACE FUNCTION @extschema@._guard_lifecycle()
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

CREATE OR REPLACE FUNCTION @extschema@._guard_lifecycle_phase()
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

CREATE OR REPLACE FUNCTION @extschema@.drop_lifecycle(name text)
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

