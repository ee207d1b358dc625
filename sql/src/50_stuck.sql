--------------------------------------------------------------------------
-- Stuck detection, fail_stuck() and the in-flight index
--
-- A tracked table's in-flight rows are its rows in a non-terminal phase.
-- track() gives it a partial index over them, keyed on the phase column
-- only, so that heartbeats and counter updates (which change neither the
-- phase nor any other indexed column) stay HOT, and so that every query
-- below costs in proportion to the number of in-flight rows rather than to
-- the table size.  The queries come from the row generator (40_rows.sql),
-- whose WHERE clause states the same predicate as the index.
--------------------------------------------------------------------------

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

-- Creates the in-flight index, replacing one whose predicate is out of
-- date (after a lifecycle change); called by track().
CREATE OR REPLACE FUNCTION @extschema@._ensure_in_flight_index(cfg @extschema@.tracked, create_it boolean)
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
