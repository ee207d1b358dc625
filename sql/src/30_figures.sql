--------------------------------------------------------------------------
-- Progress figures: percent, speeds, ETA, weighted overall progress and
-- the one-line description of a row's figures
--------------------------------------------------------------------------
--
-- The figures are computed in C (src/figures.c) so that every client shows
-- the same numbers.  Pure functions take every input, including the time
-- "as of" which a figure is wanted, as arguments and are IMMUTABLE STRICT
-- PARALLEL SAFE; the few that default to the current time are separate,
-- STABLE overloads or STABLE readers with "as_of DEFAULT now()".

CREATE OR REPLACE FUNCTION @extschema@.percent(completed bigint, total bigint)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_percent';
COMMENT ON FUNCTION @extschema@.percent(bigint, bigint) IS
    'Percent done, 0..100: clamped, 100 only when completed >= total, 100 for a total of 0 (nothing to do), NULL when the total is unknown (NULL or negative)';

CREATE OR REPLACE FUNCTION @extschema@.transfer_speed(completed bigint, since timestamptz, as_of timestamptz)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_transfer_speed';
COMMENT ON FUNCTION @extschema@.transfer_speed(bigint, timestamptz, timestamptz) IS
    'Average items per second from since to as_of; NULL while no time has passed, when as_of is before since (clocks disagree), for infinite times and negative counts';

CREATE OR REPLACE FUNCTION @extschema@.transfer_speed(completed bigint, since timestamptz)
RETURNS double precision
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.transfer_speed(completed, since, pg_catalog.now())
$$;
COMMENT ON FUNCTION @extschema@.transfer_speed(bigint, timestamptz) IS
    'Average items per second from since to now() (the transaction''s start); see transfer_speed(completed, since, as_of)';

CREATE OR REPLACE FUNCTION @extschema@.smoothed_speed(items_per_second double precision,
                                           speed_updated_at timestamptz,
                                           as_of timestamptz,
                                           time_constant interval DEFAULT '15 seconds')
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_smoothed_speed';
COMMENT ON FUNCTION @extschema@.smoothed_speed(double precision, timestamptz, timestamptz, interval) IS
    'The smoothed speed kept by the trigger, decayed by exp(-(as_of - speed_updated_at) / time_constant) so that a stalled transfer''s speed falls toward zero; no decay when as_of is not later';

CREATE OR REPLACE FUNCTION @extschema@._speed_step(items_per_second double precision,
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

CREATE OR REPLACE FUNCTION @extschema@.eta(completed bigint, total bigint, speed double precision)
RETURNS interval
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_eta';
COMMENT ON FUNCTION @extschema@.eta(bigint, bigint, double precision) IS
    'Time left at speed items per second: zero when done, NULL when the total is unknown, the speed is zero, negative or unknown, or the result does not fit an interval';

CREATE OR REPLACE FUNCTION @extschema@.eta(percent double precision, speed double precision)
RETURNS interval
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_eta_percent';
COMMENT ON FUNCTION @extschema@.eta(double precision, double precision) IS
    'Time left from percent done (0..100) at speed percent per second: zero at 100, NULL when the percent is unknown or not within 0..100, the speed is zero, negative or unknown, or the result does not fit an interval';

CREATE OR REPLACE FUNCTION @extschema@._elapsed_seconds(since timestamptz, as_of timestamptz)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_elapsed_seconds';
COMMENT ON FUNCTION @extschema@._elapsed_seconds(timestamptz, timestamptz) IS
    'Internal: seconds from since to as_of, NULL when negative or infinite';

CREATE OR REPLACE FUNCTION @extschema@.weighted_progress(weights double precision[], kinds text[],
                                              phase_position integer, fraction double precision)
RETURNS double precision
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_weighted_progress';
COMMENT ON FUNCTION @extschema@.weighted_progress(double precision[], text[], integer, double precision) IS
    'Overall progress 0..1 at a 1-based position of a lifecycle given as weights and kinds, fraction of the way through it: 1 only when succeeded, NULL when failed or cancelled (see README)';

-- The phases of a lifecycle as arrays, in order.
CREATE OR REPLACE FUNCTION @extschema@._lifecycle_arrays(lifecycle text,
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

CREATE OR REPLACE FUNCTION @extschema@.overall_progress(lifecycle text, phase text,
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

CREATE OR REPLACE FUNCTION @extschema@.describe(figures jsonb)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dp_describe';
COMMENT ON FUNCTION @extschema@.describe(jsonb) IS
    'One human line for a row''s figures as progress() returns them, e.g. "Transferring: 12,400/31,344 (39.6%) · 85 items/s · ETA 3m42s"';

