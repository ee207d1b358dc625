
--------------------------------------------------------------------------
-- Progress figures: percent, speeds, ETA, weighted overall progress, the
-- figures of one row and their one-line description
--------------------------------------------------------------------------
--
-- The figures are computed in C (src/figures.c) so that every client shows
-- the same numbers.  Pure functions take every input, including the time
-- "as of" which a figure is wanted, as arguments and are IMMUTABLE STRICT
-- PARALLEL SAFE; the few that default to the current time are separate,
-- STABLE overloads or STABLE readers with "as_of DEFAULT now()".

CREATE FUNCTION @extschema@.percent(completed bigint, total bigint)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_percent';
COMMENT ON FUNCTION @extschema@.percent(bigint, bigint) IS
    'Percent done, 0..100: clamped, 100 only when completed >= total, 100 for a total of 0 (nothing to do), NULL when the total is unknown (NULL or negative)';

CREATE FUNCTION @extschema@.transfer_speed(completed bigint, since timestamptz, as_of timestamptz)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_transfer_speed';
COMMENT ON FUNCTION @extschema@.transfer_speed(bigint, timestamptz, timestamptz) IS
    'Average items per second from since to as_of; NULL while no time has passed, when as_of is before since (clocks disagree), for infinite times and negative counts';

CREATE FUNCTION @extschema@.transfer_speed(completed bigint, since timestamptz)
RETURNS double precision
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.transfer_speed(completed, since, pg_catalog.now())
$$;
COMMENT ON FUNCTION @extschema@.transfer_speed(bigint, timestamptz) IS
    'Average items per second from since to now() (the transaction''s start); see transfer_speed(completed, since, as_of)';

CREATE FUNCTION @extschema@.smoothed_speed(items_per_second double precision,
                                           speed_updated_at timestamptz,
                                           as_of timestamptz,
                                           time_constant interval DEFAULT '15 seconds')
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_smoothed_speed';
COMMENT ON FUNCTION @extschema@.smoothed_speed(double precision, timestamptz, timestamptz, interval) IS
    'The smoothed speed kept by the trigger, decayed by exp(-(as_of - speed_updated_at) / time_constant) so that a stalled transfer''s speed falls toward zero; no decay when as_of is not later';

CREATE FUNCTION @extschema@._speed_step(items_per_second double precision,
                                        speed_updated_at timestamptz,
                                        delta bigint,
                                        as_of timestamptz,
                                        time_constant interval DEFAULT '15 seconds',
                                        estimate_started_at timestamptz DEFAULT NULL)
RETURNS double precision
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_speed_step_sql';
COMMENT ON FUNCTION @extschema@._speed_step(double precision, timestamptz, bigint, timestamptz, interval, timestamptz) IS
    'Internal: the trigger''s smoothed-speed update when delta items are counted at as_of (NULL delta or < 0 resets; estimate_started_at, the phase start, debiases)';

CREATE FUNCTION @extschema@.eta(completed bigint, total bigint, speed double precision)
RETURNS interval
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_eta';
COMMENT ON FUNCTION @extschema@.eta(bigint, bigint, double precision) IS
    'Time left at speed items per second: zero when done, NULL when the total is unknown, the speed is zero, negative or unknown, or the result does not fit an interval';

CREATE FUNCTION @extschema@._elapsed_seconds(since timestamptz, as_of timestamptz)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_elapsed_seconds';
COMMENT ON FUNCTION @extschema@._elapsed_seconds(timestamptz, timestamptz) IS
    'Internal: seconds from since to as_of, NULL when negative or infinite';

CREATE FUNCTION @extschema@.weighted_progress(weights double precision[], kinds text[],
                                              phase_position integer, fraction double precision)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_weighted_progress';
COMMENT ON FUNCTION @extschema@.weighted_progress(double precision[], text[], integer, double precision) IS
    'Overall progress 0..1 at a 1-based position of a lifecycle given as weights and kinds, fraction of the way through it: 1 only when succeeded, NULL when failed or cancelled (see README)';

-- The phases of a lifecycle as arrays, in order.
CREATE FUNCTION @extschema@._lifecycle_arrays(lifecycle text,
                                              OUT phases text[], OUT kinds text[],
                                              OUT weights double precision[])
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.array_agg(p.phase ORDER BY p.position),
           pg_catalog.array_agg(p.kind ORDER BY p.position),
           pg_catalog.array_agg(p.weight ORDER BY p.position)
      FROM @extschema@.lifecycle_phases p
     WHERE p.lifecycle OPERATOR(pg_catalog.=) _lifecycle_arrays.lifecycle
$$;
COMMENT ON FUNCTION @extschema@._lifecycle_arrays(text) IS
    'Internal: the phase names, kinds and weights of a lifecycle, in order';

CREATE FUNCTION @extschema@.overall_progress(lifecycle text, phase text,
                                             completed bigint DEFAULT NULL,
                                             total bigint DEFAULT NULL)
RETURNS double precision
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lc  record;
    pos integer;
BEGIN
    IF lifecycle IS NULL OR phase IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO lc FROM @extschema@._lifecycle_arrays(lifecycle);
    IF lc.phases IS NULL THEN
        RAISE EXCEPTION 'lifecycle "%" does not exist', lifecycle
            USING ERRCODE = 'undefined_object',
                  HINT = 'See deploy_progress.lifecycles for the defined lifecycles.';
    END IF;
    pos := array_position(lc.phases, phase);
    IF pos IS NULL THEN
        RAISE EXCEPTION '"%" is not a phase of lifecycle "%"', phase, lifecycle
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Valid phases: %s.', array_to_string(lc.phases, ', '));
    END IF;
    RETURN @extschema@.weighted_progress(lc.weights, lc.kinds, pos,
                                         coalesce(@extschema@.percent(completed, total) / 100, 0));
END
$$;
COMMENT ON FUNCTION @extschema@.overall_progress(text, text, bigint, bigint) IS
    'Overall progress 0..1 of a row in a phase of a lifecycle, with completed of total items of that phase done (an unknown total counts as 0 done); see weighted_progress()';

CREATE FUNCTION @extschema@.progress(tbl regclass, key text, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg      @extschema@.tracked;
    k        text := key;
    t        timestamptz := as_of;
    cond     text;
    query    text;
    r        record;
    tm       record;
    lc       record;
    pos      integer;
    kind     text;
    pct      double precision;
    avg_speed double precision;
    smooth   double precision;
    speed    double precision;
    eta      interval;
    since_progress double precision;
    stalled  boolean;
BEGIN
    -- the configuration of the table, or of the partitioned table it belongs to
    SELECT tr.* INTO cfg
      FROM @extschema@.tracked tr
      JOIN (SELECT tbl, 0::bigint
            UNION ALL
            SELECT * FROM pg_partition_ancestors(tbl) WITH ORDINALITY) AS a(relid, ord)
        ON tr.relid = a.relid
     ORDER BY a.ord LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'Figures are kept for the rows of tracked tables only.',
                  HINT = 'Track it with deploy_progress.track() first.';
    END IF;

    -- the row: a single key column is compared in its own type, so that its
    -- index is used, and as text, so that only its exact key text matches
    cond := @extschema@._key_condition(cfg);
    query := format(
        'SELECT tableoid::regclass AS relid, %s::text AS phase, %s::bigint AS completed, %s::bigint AS total,'
        ' %s::double precision AS items_per_second, %s::timestamptz AS speed_updated_at, %s::text AS reason,'
        ' %s::timestamptz AS phase_updated_at, %s::timestamptz AS progress_updated_at,'
        ' %s::timestamptz AS heartbeat_at, %s::timestamptz AS started_at, %s::timestamptz AS finished_at'
        ' FROM %s WHERE %s',
        quote_ident(cfg.phase_column),
        coalesce(quote_ident(cfg.completed_column), 'NULL'),
        coalesce(quote_ident(cfg.total_column), 'NULL'),
        coalesce(quote_ident(cfg.speed_column), 'NULL'),
        coalesce(quote_ident(cfg.speed_updated_column), 'NULL'),
        coalesce(quote_ident(cfg.reason_column), 'NULL'),
        coalesce(quote_ident(cfg.phase_updated_column), 'NULL'),
        coalesce(quote_ident(cfg.progress_updated_column), 'NULL'),
        coalesce(quote_ident(cfg.heartbeat_column), 'NULL'),
        coalesce(quote_ident(cfg.started_column), 'NULL'),
        coalesce(quote_ident(cfg.finished_column), 'NULL'),
        tbl, cond);
    BEGIN
        EXECUTE query INTO STRICT r USING k;
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

    -- timings from the row, or from the side table
    IF cfg.storage = 'side' THEN
        SELECT s.phase_updated_at, s.progress_updated_at, s.heartbeat_at, s.started_at, s.finished_at
          INTO tm
          FROM @extschema@.side_timings s
         WHERE s.relid = r.relid AND s.key = k;
    ELSE
        SELECT r.phase_updated_at, r.progress_updated_at, r.heartbeat_at, r.started_at, r.finished_at
          INTO tm;
    END IF;

    SELECT * INTO lc FROM @extschema@._lifecycle_arrays(cfg.lifecycle);
    pos := array_position(lc.phases, r.phase);
    kind := lc.kinds[pos];
    pct := @extschema@.percent(r.completed, r.total);

    -- speeds and ETA describe an active phase only
    IF kind = 'active' THEN
        avg_speed := @extschema@.transfer_speed(r.completed, tm.phase_updated_at, t);
        IF cfg.speed_column IS NOT NULL THEN
            smooth := @extschema@.smoothed_speed(r.items_per_second, r.speed_updated_at, t,
                                                  cfg.speed_time_constant);
        END IF;
        speed := coalesce(smooth, avg_speed);
        eta := @extschema@.eta(r.completed, r.total, speed);
        since_progress := @extschema@._elapsed_seconds(coalesce(tm.progress_updated_at, r.speed_updated_at), t);
        stalled := r.completed IS NOT NULL AND (r.total IS NULL OR r.completed < r.total)
                   AND since_progress >= date_part('epoch', cfg.speed_time_constant);
    END IF;

    RETURN jsonb_build_object(
        'table', tbl::text,
        'key', k,
        'as_of', t,
        'phase', r.phase,
        'kind', kind,
        'completed', r.completed,
        'total', r.total,
        'percent', pct,
        'average_speed', avg_speed,
        'smoothed_speed', smooth,
        'speed', speed,
        'eta_seconds', date_part('epoch', eta),
        'phase_elapsed_seconds', @extschema@._elapsed_seconds(tm.phase_updated_at, t),
        'elapsed_seconds', @extschema@._elapsed_seconds(tm.started_at, coalesce(tm.finished_at, t)),
        'since_progress_seconds', since_progress,
        'stalled', coalesce(stalled, false),
        'overall_progress', CASE WHEN pos IS NOT NULL
                                 THEN @extschema@.weighted_progress(lc.weights, lc.kinds, pos, coalesce(pct / 100, 0)) END,
        'reason', CASE WHEN kind IN ('failed', 'cancelled') THEN r.reason END,
        'phase_updated_at', tm.phase_updated_at,
        'progress_updated_at', tm.progress_updated_at,
        'heartbeat_at', tm.heartbeat_at,
        'started_at', tm.started_at,
        'finished_at', tm.finished_at);
END
$$;
COMMENT ON FUNCTION @extschema@.progress(regclass, text, timestamptz) IS
    'The figures of one row of a tracked table as of a time: phase, kind, counters, percent, average and smoothed speed, ETA, elapsed times, stall, overall progress';

CREATE FUNCTION @extschema@.describe(figures jsonb)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_describe';
COMMENT ON FUNCTION @extschema@.describe(jsonb) IS
    'One human line for a row''s figures as progress() returns them, e.g. "Transferring: 12,400/31,344 (39.6%) · 85 items/s · ETA 3m42s"';

CREATE FUNCTION @extschema@.describe(tbl regclass, key text, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.describe(@extschema@.progress(tbl, key, as_of))
$$;
COMMENT ON FUNCTION @extschema@.describe(regclass, text, timestamptz) IS
    'One human line describing a row of a tracked table as of a time (describe(progress(tbl, key, as_of)))';
