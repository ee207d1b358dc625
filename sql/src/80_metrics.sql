--------------------------------------------------------------------------
-- Metrics
--------------------------------------------------------------------------

-- The name of a table in metric labels and events: schema-qualified,
-- quoted only where needed, whatever the search_path.
CREATE OR REPLACE FUNCTION @extschema@._table_label(tbl regclass)
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

-- The metrics read from a table itself ($1: as of), in one pass over its
-- in-flight rows (through the in-flight partial index):
--   in_flight  rows per non-terminal phase of the lifecycle (zero when
--              empty)
--   stuck      stuck rows per reason, as stuck() reports them
--   stalled    1 when the table's fleet is stalled (as stuck_tables()
--              decides it), else 0
--   skipped    0 (1 when the table's query raised: _read_each() then
--              reports it with a WARNING, and it has no other rows here)
CREATE OR REPLACE FUNCTION @extschema@._table_metrics_query(cfg @extschema@.tracked)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format(
        'WITH r AS MATERIALIZED (SELECT r.phase, r.kind, r.stuck_reason FROM (%2$s) r)'
        ' SELECT %1$L::pg_catalog.regclass, ''in_flight'', p.phase, p.position, coalesce(c.n, 0)'
        '  FROM @extschema@.lifecycle_phases p'
        '  LEFT JOIN (SELECT r.phase, pg_catalog.count(*) AS n FROM r GROUP BY 1) c ON c.phase OPERATOR(pg_catalog.=) p.phase'
        ' WHERE p.lifecycle OPERATOR(pg_catalog.=) %3$L'
        '   AND p.kind OPERATOR(pg_catalog.=) ANY (%4$L::pg_catalog.text[])'
        ' UNION ALL'
        ' SELECT %1$L::pg_catalog.regclass, ''stuck'', r.stuck_reason, NULL, pg_catalog.count(*)'
        '   FROM r WHERE r.stuck_reason IS NOT NULL GROUP BY r.stuck_reason'
        ' UNION ALL'
        ' SELECT %1$L::pg_catalog.regclass, ''stalled'', NULL, NULL,'
        '        (pg_catalog.count(*) FILTER (WHERE r.stuck_reason OPERATOR(pg_catalog.=) ''queue_overdue'') OPERATOR(pg_catalog.>) 0'
        '         AND pg_catalog.count(*) FILTER (WHERE r.kind OPERATOR(pg_catalog.=) ''active'''
        '                                          AND (r.stuck_reason IS NULL OR r.stuck_reason OPERATOR(pg_catalog.=) ''phase_overdue''))'
        '             OPERATOR(pg_catalog.=) 0)::integer::pg_catalog.int8'
        '   FROM r'
        ' UNION ALL'
        ' SELECT %1$L::pg_catalog.regclass, ''skipped'', NULL, NULL, 0'
        ' ORDER BY 2, 4, 3',
        cfg.relid::oid, @extschema@._rows_sql(cfg), cfg.lifecycle, @extschema@._kinds('in_flight'))
$$;
COMMENT ON FUNCTION @extschema@._table_metrics_query(@extschema@.tracked) IS
    'Internal: the query of the metrics read from one tracked table: in-flight rows per phase, stuck rows per reason, whether the fleet is stalled';

-- What _table_metrics_query() gives for a table ($2) without in-flight
-- rows, without reading it: zero rows in each in-flight phase, not
-- stalled, not skipped.  _read_each() runs it for a table whose in-flight
-- index is empty.
CREATE OR REPLACE FUNCTION @extschema@._table_metrics_empty_query()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'SELECT t.relid, ''in_flight''::pg_catalog.text, p.phase, p.position, 0::pg_catalog.int8'
           '  FROM @extschema@.tracked t'
           '  JOIN @extschema@.lifecycle_phases p ON p.lifecycle OPERATOR(pg_catalog.=) t.lifecycle'
           ' WHERE t.relid OPERATOR(pg_catalog.=) $2'
           '   AND p.kind OPERATOR(pg_catalog.=) ANY (@extschema@._kinds(''in_flight''))'
           ' UNION ALL SELECT $2, ''stalled'', NULL, NULL, 0'
           ' UNION ALL SELECT $2, ''skipped'', NULL, NULL, 0'
           ' ORDER BY 2, 4, 3'::pg_catalog.text
$$;
COMMENT ON FUNCTION @extschema@._table_metrics_empty_query() IS
    'Internal: the query of the metrics of a tracked table ($2) without in-flight rows (zeros), run without reading the table';

-- The metrics read from the tables themselves, for every tracked table the
-- caller can read, one table at a time (all or nothing for a table; a
-- table whose query raised gives only skipped = 1).
CREATE OR REPLACE FUNCTION @extschema@._table_metrics()
RETURNS TABLE (relid regclass, metric text, label text, label_position integer, value bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@._read_each(NULL, pg_catalog.now(), 'metrics')
        AS r(relid regclass, metric text, label text, label_position integer, value bigint)
$$;
COMMENT ON FUNCTION @extschema@._table_metrics() IS
    'Internal: in-flight rows per phase, stuck rows per reason, whether the fleet is stalled, and whether the table had to be skipped, for every tracked table the caller can read';

CREATE OR REPLACE VIEW @extschema@.metrics
WITH (security_barrier)
AS
WITH tables AS (
    -- rls: the table's row-level security applies to the current role, so
    -- only the history of the rows it can see counts, and none of the
    -- pruned totals (which cannot be split by row)
    SELECT t.relid, t.lifecycle, @extschema@._table_label(t.relid) AS label,
           pg_catalog.row_security_active(t.relid) AS rls,
           @extschema@._citus_kind(t.relid) IS NOT DISTINCT FROM 'distributed' AS distributed
      FROM @extschema@.tracked t
     WHERE pg_catalog.has_table_privilege(t.relid, 'SELECT')
), pruned AS (
    SELECT p.* FROM @extschema@.history_pruned p
      JOIN tables t ON t.relid OPERATOR(pg_catalog.=) p.relid
     WHERE NOT t.rls
), kept AS (
    SELECT h.relid, h.from_phase, h.to_phase, h.to_kind,
           h.from_phase IS NOT NULL AND h.time_in_previous IS NOT NULL
               AND h.to_kind OPERATOR(pg_catalog.<>) ALL (@extschema@._kinds('unsuccessful')) AS completed_stay,
           pg_catalog.date_part('epoch', h.time_in_previous) AS secs
      FROM (SELECT h.relid, h.from_phase, h.to_phase, h.to_kind, h.time_in_previous
              FROM @extschema@.history h
              JOIN tables t ON t.relid OPERATOR(pg_catalog.=) h.relid
             WHERE (NOT t.rls OR @extschema@._row_visible(h.relid, h.key))
               AND NOT t.distributed
            UNION ALL
            -- a Citus distributed table's history is on the workers too
            SELECT x.relid, x.from_phase, x.to_phase, x.to_kind, x.time_in_previous
              FROM tables t
             CROSS JOIN LATERAL @extschema@._transitions(t.relid, reader => 'metrics') x
             WHERE t.distributed) h
), counts AS (
    SELECT c.relid, c.phase, pg_catalog.sum(c.transitions) AS transitions, pg_catalog.sum(c.failures) AS failures
      FROM (SELECT k.relid, k.to_phase AS phase, 1 AS transitions, 0 AS failures FROM kept k
            UNION ALL
            SELECT k.relid, coalesce(k.from_phase, k.to_phase), 0, 1 FROM kept k
             WHERE k.to_kind OPERATOR(pg_catalog.=) 'failed'
            UNION ALL
            SELECT p.relid, p.phase, p.transitions, p.failures FROM pruned p
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
            SELECT p.relid, p.phase, NULL FROM pruned p
             WHERE p.stays OPERATOR(pg_catalog.>) 0) s
     GROUP BY s.relid, s.phase
), stays_total AS (
    SELECT s.relid, s.phase, s.p50, s.p95,
           coalesce(s.total_seconds, 0) OPERATOR(pg_catalog.+) coalesce(p.stay_seconds, 0) AS total_seconds,
           s.n OPERATOR(pg_catalog.+) coalesce(p.stays, 0) AS n
      FROM stays s
      LEFT JOIN pruned p
        ON p.relid OPERATOR(pg_catalog.=) s.relid AND p.phase OPERATOR(pg_catalog.=) s.phase
), live AS (
    SELECT * FROM @extschema@._table_metrics()
)
SELECT 'deploy_progress_in_flight'::text AS name,
       pg_catalog.jsonb_build_object('table', t.label, 'phase', f.label) AS labels,
       f.value::double precision AS value
  FROM live f
  JOIN tables t ON t.relid OPERATOR(pg_catalog.=) f.relid
 WHERE f.metric OPERATOR(pg_catalog.=) 'in_flight'
UNION ALL
SELECT 'deploy_progress_stuck',
       pg_catalog.jsonb_build_object('table', t.label, 'reason', r.reason),
       coalesce(s.value, 0)
  FROM tables t
 CROSS JOIN (SELECT x.reason FROM @extschema@._stuck_reasons() x) r
  LEFT JOIN live s ON s.relid OPERATOR(pg_catalog.=) t.relid AND s.metric OPERATOR(pg_catalog.=) 'stuck'
                  AND s.label OPERATOR(pg_catalog.=) r.reason
 WHERE EXISTS (SELECT FROM live k WHERE k.relid OPERATOR(pg_catalog.=) t.relid
                                    AND k.metric OPERATOR(pg_catalog.=) 'skipped' AND k.value OPERATOR(pg_catalog.=) 0)
UNION ALL
SELECT 'deploy_progress_fleet_stalled',
       pg_catalog.jsonb_build_object('table', t.label),
       k.value
  FROM live k JOIN tables t ON t.relid OPERATOR(pg_catalog.=) k.relid
 WHERE k.metric OPERATOR(pg_catalog.=) 'stalled'
UNION ALL
SELECT 'deploy_progress_table_skipped',
       pg_catalog.jsonb_build_object('table', t.label),
       k.value
  FROM live k JOIN tables t ON t.relid OPERATOR(pg_catalog.=) k.relid
 WHERE k.metric OPERATOR(pg_catalog.=) 'skipped'
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
    'Metric samples (name, labels, value) of the tracked tables the current role can read: in-flight rows per phase, stuck rows per reason, stalled fleets, transition and failure counters, phase-duration summaries; metrics_prometheus() renders them';
GRANT SELECT ON @extschema@.metrics TO PUBLIC;

-- Escapes a label value or help text for the Prometheus text format.
CREATE OR REPLACE FUNCTION @extschema@._prometheus_escape(s text, quotes boolean DEFAULT true)
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

CREATE OR REPLACE FUNCTION @extschema@.metrics_prometheus()
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
         'Time rows spent in a phase, over stays that did not end in a failed or cancelled phase.', 5),
        ('deploy_progress_table_skipped', 'gauge',
         '1 when the tracked table could not be read at this scrape (its query raised; the server log has the warning), so that its other samples are missing; else 0.', 6),
        ('deploy_progress_fleet_stalled', 'gauge',
         '1 when rows of the tracked table wait past the queue deadline while none of its active rows works (stuck_tables()); else 0.', 7)
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
