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

-- Per phase of a tracked table's lifecycle, what the whole run's ETA
-- needs, computed once per query: the phase's stay quantiles, stays and
-- the table's runs, and the expected time of the phases after it (each
-- visited by 5 % of the runs or more: its share times its median, and times
-- its 95th percentile), with "thin" when one of them has fewer than 20
-- stays.  _run_eta_part() (C) adds the current phase's time left.  The
-- readers' queries (_figures_sql()) join this SQL itself, so that it is
-- planned with them, once.
CREATE OR REPLACE FUNCTION @extschema@._phase_eta_sql(tbl regclass, lc text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
        'SELECT lp.phase, e.quantiles, e.stays, e.runs,'
        '       coalesce(a.p50, 0) AS ahead_p50, coalesce(a.p95, 0) AS ahead_p95, coalesce(a.thin, false) AS thin'
        '  FROM @extschema@.lifecycle_phases lp'
        '  JOIN @extschema@.phase_estimates e ON e.relid OPERATOR(pg_catalog.=) %1$L::pg_catalog.regclass'
        '                                    AND e.phase OPERATOR(pg_catalog.=) lp.phase'
        ' CROSS JOIN LATERAL ('
        '        SELECT pg_catalog.sum(x.visit_share OPERATOR(pg_catalog.*) x.quantiles[11]) AS p50,'
        '               pg_catalog.sum(x.visit_share OPERATOR(pg_catalog.*) x.quantiles[20]) AS p95,'
        '               pg_catalog.bool_or(x.stays OPERATOR(pg_catalog.<) 20) AS thin'
        '          FROM @extschema@.lifecycle_phases lx'
        '          JOIN @extschema@.phase_estimates x ON x.relid OPERATOR(pg_catalog.=) %1$L::pg_catalog.regclass'
        '                                            AND x.phase OPERATOR(pg_catalog.=) lx.phase'
        '         WHERE lx.lifecycle OPERATOR(pg_catalog.=) %2$L AND lx.position OPERATOR(pg_catalog.>) lp.position'
        '           AND x.visit_share OPERATOR(pg_catalog.>=) 0.05) a'
        ' WHERE lp.lifecycle OPERATOR(pg_catalog.=) %2$L',
        tbl::pg_catalog.oid, lc)
$$;
COMMENT ON FUNCTION @extschema@._phase_eta_sql(regclass, text) IS
    'Internal: SQL giving, per phase of a tracked table, its stay quantiles, stays, the runs, and the expected time of the phases after it, for the whole run''s ETA';

CREATE OR REPLACE FUNCTION @extschema@._phase_eta_table(tbl regclass, lc text)
RETURNS TABLE (phase text, quantiles double precision[], stays bigint, runs bigint,
               ahead_p50 double precision, ahead_p95 double precision, thin boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE @extschema@._phase_eta_sql(tbl, lc);
END
$$;
COMMENT ON FUNCTION @extschema@._phase_eta_table(regclass, text) IS
    'Internal: per phase of a tracked table, its stay quantiles, stays, the runs, and the expected time of the phases after it, for the whole run''s ETA';

CREATE OR REPLACE FUNCTION @extschema@._run_eta_part(quantiles double precision[], stays bigint, runs bigint,
                                                     ahead double precision, thin boolean,
                                                     in_phase double precision, own_eta double precision,
                                                     q double precision)
RETURNS double precision
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_run_eta_part';
COMMENT ON FUNCTION @extschema@._run_eta_part(double precision[], bigint, bigint, double precision, boolean, double precision, double precision, double precision) IS
    'Internal: one bound (quantile q) of the whole run''s time left in seconds: the current phase''s own ETA, or the q-quantile of its stays longer than in_phase less in_phase, plus the time of the phases ahead; NULL where the estimates cannot tell';

-- The time left for a row of table tbl (lifecycle lc) in phase at_phase,
-- in it for in_phase seconds, whose own ETA (from its counters or percent)
-- is own_eta seconds or NULL: {p50, p95} in seconds, each NULL when the
-- estimates cannot tell.  The readers compute the same from
-- _phase_eta_table() joined once per query.
CREATE OR REPLACE FUNCTION @extschema@._run_eta(tbl regclass, lc text, at_phase text,
                                                in_phase double precision, own_eta double precision,
                                                OUT p50 double precision, OUT p95 double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._run_eta_part(e.quantiles, e.stays, e.runs, e.ahead_p50, e.thin, in_phase, own_eta, 0.5),
           @extschema@._run_eta_part(e.quantiles, e.stays, e.runs, e.ahead_p95, e.thin, in_phase, own_eta, 0.95)
      FROM (SELECT 1) one
      LEFT JOIN @extschema@._phase_eta_table(tbl, lc) e ON e.phase OPERATOR(pg_catalog.=) at_phase
$$;
COMMENT ON FUNCTION @extschema@._run_eta(regclass, text, text, double precision, double precision) IS
    'Internal: the median and 95th-percentile time left, in seconds, for a row of a tracked table in a phase for in_phase seconds with its own ETA (or NULL), from phase_estimates; NULL where the history is too thin';
