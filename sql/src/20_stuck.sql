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
