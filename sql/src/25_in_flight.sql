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
