--------------------------------------------------------------------------
-- The ETA of a whole run
--
-- refresh_estimates() learns from the history how long each phase of a
-- tracked table takes (the quantiles of its completed stays) and how often
-- a run goes through it (the share of the runs that succeeded in the window
-- that visited it), into deploy_progress.phase_estimates, a small table
-- that the readers join, so that no reader scans the history.  _run_eta()
-- turns them into the time left for a row: the current phase's remaining
-- time (from its speed when it has counters, else from how long such stays
-- last given how long this one has lasted) plus the expected time of the
-- phases still ahead, each weighted by its share.  It is NULL where the
-- history is too thin: fewer than 20 runs, or a phase that matters with
-- fewer than 20 stays, or a current stay longer than any seen.
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

-- The time left for a row of table tbl (lifecycle lc) in phase at_phase,
-- in it for in_phase seconds, whose own ETA (from its counters or percent)
-- is own_eta seconds or NULL: {p50, p95} in seconds, each NULL when the
-- estimates cannot tell.  The current phase: its ETA when it has one, else
-- the median (and 95th percentile) of the stays that lasted longer than
-- this one so far, minus its time so far.  Each phase ahead adds its share
-- times its median (95th percentile).  Phases visited by fewer than 5 % of
-- the runs are left out.
CREATE OR REPLACE FUNCTION @extschema@._run_eta(tbl regclass, lc text, at_phase text,
                                                in_phase double precision, own_eta double precision,
                                                OUT p50 double precision, OUT p95 double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH cur AS (
        SELECT lp.position, e.runs,
               -- the quantiles of the stays longer than this one so far
               (SELECT array_agg(q.v OPERATOR(pg_catalog.-) greatest(in_phase, 0) ORDER BY q.v)
                  FROM unnest(e.quantiles) AS q(v)
                 WHERE q.v OPERATOR(pg_catalog.>) greatest(in_phase, 0)) AS rest,
               e.stays
          FROM @extschema@.lifecycle_phases lp
          JOIN @extschema@.phase_estimates e ON e.relid OPERATOR(pg_catalog.=) tbl AND e.phase OPERATOR(pg_catalog.=) lp.phase
         WHERE lp.lifecycle OPERATOR(pg_catalog.=) lc AND lp.phase OPERATOR(pg_catalog.=) at_phase
    ), now_part AS (
        SELECT c.position, c.runs,
               CASE WHEN own_eta IS NOT NULL THEN own_eta
                    WHEN c.stays OPERATOR(pg_catalog.>=) 20 AND cardinality(c.rest) OPERATOR(pg_catalog.>) 0
                    THEN c.rest[ceil(cardinality(c.rest) OPERATOR(pg_catalog.*) 0.5)::integer] END AS p50,
               CASE WHEN own_eta IS NOT NULL THEN own_eta
                    WHEN c.stays OPERATOR(pg_catalog.>=) 20 AND cardinality(c.rest) OPERATOR(pg_catalog.>) 0
                    THEN c.rest[ceil(cardinality(c.rest) OPERATOR(pg_catalog.*) 0.95)::integer] END AS p95
          FROM cur c
    ), ahead AS (
        SELECT sum(e.visit_share OPERATOR(pg_catalog.*) e.quantiles[11]) AS p50,
               sum(e.visit_share OPERATOR(pg_catalog.*) e.quantiles[20]) AS p95,
               -- a phase that matters without enough stays to tell
               bool_or(e.stays OPERATOR(pg_catalog.<) 20) AS thin
          FROM now_part n
          JOIN @extschema@.lifecycle_phases lp ON lp.lifecycle OPERATOR(pg_catalog.=) lc
                                               AND lp.position OPERATOR(pg_catalog.>) n.position
          JOIN @extschema@.phase_estimates e ON e.relid OPERATOR(pg_catalog.=) tbl AND e.phase OPERATOR(pg_catalog.=) lp.phase
         WHERE e.visit_share OPERATOR(pg_catalog.>=) 0.05
    )
    SELECT CASE WHEN n.runs OPERATOR(pg_catalog.>=) 20 AND NOT coalesce(a.thin, false)
                THEN n.p50 OPERATOR(pg_catalog.+) coalesce(a.p50, 0) END,
           CASE WHEN n.runs OPERATOR(pg_catalog.>=) 20 AND NOT coalesce(a.thin, false)
                THEN n.p95 OPERATOR(pg_catalog.+) coalesce(a.p95, 0) END
      FROM now_part n CROSS JOIN ahead a
$$;
COMMENT ON FUNCTION @extschema@._run_eta(regclass, text, text, double precision, double precision) IS
    'Internal: the median and 95th-percentile time left, in seconds, for a row of a tracked table in a phase for in_phase seconds with its own ETA (or NULL), from phase_estimates; NULL where the history is too thin';
