--------------------------------------------------------------------------
-- The in-flight view
--
-- deploy_progress.in_flight lists every non-terminal row of every tracked
-- table the current role can read, with its figures and stuck reason.  A
-- view cannot span tables that are only known at run time, so it reads a
-- set-returning function that runs, per tracked table, the row generator's
-- query (40_rows.sql), as stuck() does: its WHERE clause is the predicate of the
-- table's partial index, so the cost follows the number of in-flight rows,
-- not the size of the table.  Nothing in it depends on the tracked tables,
-- so dropping one is never blocked by the view.
--------------------------------------------------------------------------

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
