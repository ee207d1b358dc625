--------------------------------------------------------------------------
-- The row generator
--
-- Every reader of a tracked table's rows (timings(), progress(), stuck(),
-- fail_stuck(), in_flight) runs SQL made here, so they take each role's
-- column, the phase's kind, the stuck reason and the figures from one
-- place and cannot disagree.  _rows_sql() gives the rows with every role
-- under its role name and the stuck reason; _figures_sql() adds the
-- figures computed from them.  The generated SQL reads the time "as of"
-- which rows are wanted from $1.
--------------------------------------------------------------------------

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

--------------------------------------------------------------------------
-- One row: timings(), progress(), describe()
--------------------------------------------------------------------------

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

CREATE OR REPLACE FUNCTION @extschema@.describe(tbl regclass, key text, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.describe(@extschema@.progress(tbl, key, as_of))
$$;
COMMENT ON FUNCTION @extschema@.describe(regclass, text, timestamptz) IS
    'One human line describing a row of a tracked table as of a time (describe(progress(tbl, key, as_of)))';
