/*-------------------------------------------------------------------------
 *
 * figures.c
 *	  Progress figures: percent, speeds, ETA, weighted overall progress and
 *	  the one-line description of a row's figures.
 *
 * Every function here is pure: it gets all it needs, including the time
 * "as of" which a figure is wanted, from its arguments, so that results are
 * exact and the same for every client.  Figures that cannot be known (no
 * total, no time elapsed, clocks that disagree, no speed) are NULL rather
 * than a guess; inputs out of range are clamped where the issue asks for it
 * (percent) and rejected with an error where they are a caller's mistake
 * (a time constant that is not positive, a malformed lifecycle).
 *
 * The smoothed speed is a time-based exponentially weighted moving average
 * of the rate (items per second).  Its whole state is two values kept in
 * the tracked row, the rate and the time it was last updated, so each
 * progress update costs O(1) (dp_speed_step(), called by the trigger):
 *
 *	- a sample is the rate over the time since the last update,
 *	  delta / seconds; it moves the estimate by alpha = 1 - exp(-seconds/tau),
 *	  so a sample's weight follows the time it covers, not the update count;
 *	- debiasing: an estimate that starts from nothing would lean toward its
 *	  zero start, so the first sample of a phase is taken as it is, and
 *	  later ones are weighted against the time the estimate has existed
 *	  (alpha / (1 - exp(-elapsed/tau)), elapsed = time since the phase
 *	  began).  This is the bias-corrected EWMA: a first sample that covered
 *	  only a fraction of a second does not dominate the estimate for the
 *	  next tau seconds, it is outweighed as soon as longer samples arrive;
 *	- a counter that goes backwards (or to NULL) resets the estimate;
 *	- reading at a later time (dp_speed_decay(), smoothed_speed()) applies
 *	  the decay exp(-dt/tau) of the samples of zero a stalled transfer would
 *	  have produced, so its speed falls toward zero instead of freezing at
 *	  the last value.  Between two healthy updates the figure dips by
 *	  1 - exp(-interval/tau) (6% for updates every second with tau = 15 s):
 *	  choose a time constant several times the update interval.
 *
 * IDENTIFICATION
 *	  src/figures.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/int.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "deploy_progress.h"

/*
 * One update of the smoothed rate: "delta" items arrived over "seconds"
 * (> 0) since the rate was last updated, and the estimate has existed for
 * "elapsed" seconds (since its phase began; <= 0 or NaN when unknown, which
 * gives the plain EWMA).
 */
double
dp_speed_step(double rate, bool rate_isnull, double delta, double seconds,
			  double elapsed, double tau)
{
	double		sample = delta / seconds;
	double		alpha;

	if (rate_isnull || !isfinite(rate))
		return sample;
	alpha = -expm1(-seconds / tau);
	if (elapsed >= seconds)
		alpha = fmin(1.0, alpha / -expm1(-elapsed / tau));
	return rate + alpha * (sample - rate);
}

/* The smoothed rate "seconds" after its last update, with no progress since. */
double
dp_speed_decay(double rate, double seconds, double tau)
{
	if (seconds <= 0)
		return rate;
	return rate * exp(-seconds / tau);
}

/*
 * Seconds from "from" to "to", false when either is infinite.  Finite
 * timestamps can lie further apart than int64 microseconds hold; such
 * differences are computed in double.
 */
static bool
dp_seconds_between(TimestampTz from, TimestampTz to, double *seconds)
{
	int64		diff;

	if (TIMESTAMP_NOT_FINITE(from) || TIMESTAMP_NOT_FINITE(to))
		return false;
	if (pg_sub_s64_overflow(to, from, &diff))
		*seconds = ((double) to - (double) from) / USECS_PER_SEC;
	else
		*seconds = (double) diff / USECS_PER_SEC;
	return true;
}

/*
 * A smoothing time constant in seconds, counted as date_part('epoch', ...)
 * counts an interval (a month is 30 days, a year 365.25 days), which is how
 * the trigger reads deploy_progress.tracked.speed_time_constant.
 */
static double
dp_time_constant(Interval *span)
{
	double		tau;

#ifdef INTERVAL_NOT_FINITE
	if (INTERVAL_NOT_FINITE(span))
		tau = -1;
	else
#endif
		tau = span->time / (double) USECS_PER_SEC
			+ (double) span->day * SECS_PER_DAY
			+ (double) (span->month / MONTHS_PER_YEAR) * DAYS_PER_YEAR * SECS_PER_DAY
			+ (double) (span->month % MONTHS_PER_YEAR) * DAYS_PER_MONTH * SECS_PER_DAY;
	if (!(tau > 0) || !isfinite(tau))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time constant must be a positive, finite interval"),
				 errdetail("The value given is %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(span)))),
				 errhint("The default, 15 seconds, suits updates every few seconds.")));
	return tau;
}

/*
 * Percent done, clamped to 0..100; false when the total is unknown
 * (negative).  A total of zero means nothing to do: 100%.  Only a row that
 * is done reaches 100: rounding never turns 99.99...% into 100.
 */
static bool
dp_percent_of(int64 completed, int64 total, double *percent)
{
	double		p;

	if (total < 0)
		return false;
	if (completed >= total)
		p = 100.0;
	else if (completed <= 0)
		p = 0.0;
	else
	{
		/* 100.0 * completed is exact below 2^53 / 100, so p is rounded once */
		p = 100.0 * (double) completed / (double) total;
		if (p >= 100.0)
			p = nextafter(100.0, 0.0);
	}
	*percent = p;
	return true;
}

/*
 * deploy_progress.percent(completed bigint, total bigint) double precision
 */
PG_FUNCTION_INFO_V1(dp_percent);
Datum
dp_percent(PG_FUNCTION_ARGS)
{
	double		p;

	if (!dp_percent_of(PG_GETARG_INT64(0), PG_GETARG_INT64(1), &p))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(p);
}

/*
 * deploy_progress.transfer_speed(completed bigint, since timestamptz,
 *								  as_of timestamptz) double precision
 *
 * Average items per second from "since" to "as_of"; NULL while no time has
 * passed, when the clocks disagree (as_of before since), for an infinite
 * time and for a negative count.
 */
PG_FUNCTION_INFO_V1(dp_transfer_speed);
Datum
dp_transfer_speed(PG_FUNCTION_ARGS)
{
	int64		completed = PG_GETARG_INT64(0);
	double		seconds;

	if (completed < 0 ||
		!dp_seconds_between(PG_GETARG_TIMESTAMPTZ(1), PG_GETARG_TIMESTAMPTZ(2), &seconds) ||
		!(seconds > 0))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8((double) completed / seconds);
}

/*
 * deploy_progress.smoothed_speed(items_per_second double precision,
 *		speed_updated_at timestamptz, as_of timestamptz,
 *		time_constant interval) double precision
 *
 * The smoothed rate kept by the trigger, decayed for the time from its last
 * update to "as_of" (no decay when as_of is not later: a reader's clock
 * behind the writer's does not raise the speed).
 */
PG_FUNCTION_INFO_V1(dp_smoothed_speed);
Datum
dp_smoothed_speed(PG_FUNCTION_ARGS)
{
	double		rate = PG_GETARG_FLOAT8(0);
	double		tau = dp_time_constant(PG_GETARG_INTERVAL_P(3));
	double		seconds;

	if (!dp_seconds_between(PG_GETARG_TIMESTAMPTZ(1), PG_GETARG_TIMESTAMPTZ(2), &seconds))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(dp_speed_decay(rate, seconds, tau));
}

/*
 * deploy_progress._speed_step(items_per_second double precision,
 *		speed_updated_at timestamptz, delta bigint, as_of timestamptz,
 *		time_constant interval, estimate_started_at timestamptz)
 *		double precision
 *
 * The trigger's update rule as a function, for tests and for clients that
 * keep a smoothed speed of their own: the rate after "delta" more items
 * were counted at "as_of".  A NULL or negative delta (counter reset or gone
 * backwards) starts over (NULL); no move, no previous update time or no
 * time elapsed leaves the rate as it is.
 */
PG_FUNCTION_INFO_V1(dp_speed_step_sql);
Datum
dp_speed_step_sql(PG_FUNCTION_ARGS)
{
	TimestampTz as_of;
	int64		delta;
	double		tau;
	double		seconds;
	double		elapsed = 0;

	if (PG_ARGISNULL(3) || PG_ARGISNULL(4))
		PG_RETURN_NULL();
	as_of = PG_GETARG_TIMESTAMPTZ(3);
	tau = dp_time_constant(PG_GETARG_INTERVAL_P(4));
	if (PG_ARGISNULL(2) || PG_GETARG_INT64(2) < 0)
		PG_RETURN_NULL();
	delta = PG_GETARG_INT64(2);
	if (delta == 0 || PG_ARGISNULL(1) ||
		!dp_seconds_between(PG_GETARG_TIMESTAMPTZ(1), as_of, &seconds) ||
		!(seconds > 0))
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_FLOAT8(PG_GETARG_FLOAT8(0));
	}
	if (!PG_ARGISNULL(5) &&
		!dp_seconds_between(PG_GETARG_TIMESTAMPTZ(5), as_of, &elapsed))
		elapsed = 0;
	PG_RETURN_FLOAT8(dp_speed_step(PG_ARGISNULL(0) ? 0 : PG_GETARG_FLOAT8(0),
								   PG_ARGISNULL(0), (double) delta, seconds,
								   elapsed, tau));
}

/*
 * The time "remaining" units of work take at "speed" units per second:
 * zero when nothing remains, NULL (the speed unknown, zero or negative, or
 * the result beyond an interval) when it cannot be told.
 */
static Interval *
dp_eta_interval(double remaining, bool speed_isnull, double speed)
{
	double		usecs;
	Interval   *result;

	if (remaining <= 0)
		usecs = 0;
	else
	{
		if (speed_isnull || !(speed > 0))
			return NULL;
		usecs = rint(remaining / speed * USECS_PER_SEC);
		/* 2^63 is exactly representable; everything below it fits */
		if (!(usecs < (double) PG_INT64_MAX))
			return NULL;
	}
	result = (Interval *) palloc0(sizeof(Interval));
	result->time = (int64) usecs;
	return result;
}

/*
 * deploy_progress.eta(completed bigint, total bigint, speed double precision)
 * interval
 *
 * Time left at "speed" items per second.  Zero when done (whatever the
 * speed); NULL when the total is unknown, the speed is zero, negative or
 * unknown, or the answer would not fit an interval.  Not STRICT only so
 * that a finished row has an ETA of zero without a speed.
 */
PG_FUNCTION_INFO_V1(dp_eta);
Datum
dp_eta(PG_FUNCTION_ARGS)
{
	int64		completed;
	int64		total;
	int64		remaining;
	Interval   *result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	completed = PG_GETARG_INT64(0);
	total = PG_GETARG_INT64(1);
	if (total < 0)
		PG_RETURN_NULL();
	/* completed is clamped to 0..total, so the difference cannot overflow */
	remaining = completed >= total ? 0 : total - Max(completed, 0);
	result = dp_eta_interval((double) remaining, PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_FLOAT8(2));
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INTERVAL_P(result);
}

/*
 * deploy_progress.eta(percent double precision, speed double precision)
 * interval: the time left from "percent" done at "speed" percent per
 * second, for a table with a percent column.  Zero at 100; NULL when the
 * percent is unknown or not within 0..100 (NaN included), and as eta()
 * for the speed.
 */
PG_FUNCTION_INFO_V1(dp_eta_percent);
Datum
dp_eta_percent(PG_FUNCTION_ARGS)
{
	double		percent;
	Interval   *result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	percent = PG_GETARG_FLOAT8(0);
	if (!(percent >= 0 && percent <= 100))
		PG_RETURN_NULL();
	result = dp_eta_interval(100.0 - percent, PG_ARGISNULL(1), PG_ARGISNULL(1) ? 0 : PG_GETARG_FLOAT8(1));
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INTERVAL_P(result);
}

/*
 * deploy_progress._elapsed_seconds(since timestamptz, as_of timestamptz)
 * double precision: seconds from since to as_of, NULL when negative
 * (clocks disagree) or infinite.
 */
PG_FUNCTION_INFO_V1(dp_elapsed_seconds);
Datum
dp_elapsed_seconds(PG_FUNCTION_ARGS)
{
	double		seconds;

	if (!dp_seconds_between(PG_GETARG_TIMESTAMPTZ(0), PG_GETARG_TIMESTAMPTZ(1), &seconds) ||
		seconds < 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(seconds);
}

/*
 * deploy_progress.weighted_progress(weights double precision[],
 *		kinds text[], position integer, fraction double precision)
 *		double precision
 *
 * Overall progress, 0..1, of a row at "position" (1-based) of a lifecycle
 * given as its phases' weights and kinds in order, "fraction" (0..1) of the
 * way through that phase.  Terminal phases carry no weight; W is the total
 * weight of the others, "before" the weight of those ahead of the position.
 *
 *	succeeded             1, and only a succeeded row reaches 1
 *	active                (before + weight * fraction) / W
 *	pending               before / W (0 for a queue that comes first, and
 *	                      when W is 0)
 *	waiting               before / W when an active phase follows it (a
 *	                      gate in the sequence); NULL when none does (a
 *	                      pause such as the built-in "waiting", entered
 *	                      from any phase: where it was entered is unknown)
 *	failed, cancelled     NULL: the row does not say where it stopped
 *
 * Active and waiting rows of a lifecycle whose weights are all zero get
 * NULL; other results are clamped to [0, 1) so that a row that has not
 * succeeded never shows as complete.
 */
/*
 * A lifecycle's weights and kinds as weighted_progress() uses them, parsed
 * once per query: callers such as in_flight() pass the same two arrays on
 * every row, so the parsed form is kept in fn_extra together with copies of
 * the arrays it came from, and reused while they are equal.
 */
typedef struct DpWeights
{
	ArrayType  *warr;			/* copies of the arrays parsed */
	ArrayType  *karr;
	int			n;
	double	   *weights;
	int		   *kinds;
} DpWeights;

static bool
dp_array_equal(ArrayType *a, ArrayType *b)
{
	return a && VARSIZE(a) == VARSIZE(b) && memcmp(a, b, VARSIZE(a)) == 0;
}

static DpWeights *
dp_parse_weights(FunctionCallInfo fcinfo, ArrayType *warr, ArrayType *karr)
{
	DpWeights  *cache = (DpWeights *) fcinfo->flinfo->fn_extra;
	MemoryContext oldcxt;
	Datum	   *wvals;
	Datum	   *kvals;
	bool	   *wnulls;
	bool	   *knulls;
	int			nw;
	int			nk;
	int			i;

	if (cache && dp_array_equal(cache->warr, warr) && dp_array_equal(cache->karr, karr))
		return cache;

	if (ARR_NDIM(warr) > 1 || ARR_NDIM(karr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("weights and kinds must be one-dimensional arrays")));
#if PG_VERSION_NUM >= 160000
	deconstruct_array_builtin(warr, FLOAT8OID, &wvals, &wnulls, &nw);
	deconstruct_array_builtin(karr, TEXTOID, &kvals, &knulls, &nk);
#else
	deconstruct_array(warr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &wvals, &wnulls, &nw);
	deconstruct_array(karr, TEXTOID, -1, false, TYPALIGN_INT,
					  &kvals, &knulls, &nk);
#endif
	if (nw == 0 || nw != nk)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weights and kinds must describe the same, non-empty list of phases"),
				 errdetail("Found %d weights and %d kinds.", nw, nk)));

	oldcxt = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	if (cache == NULL)
		cache = palloc0(sizeof(DpWeights));
	else
	{
		/* forget the previous arrays before anything can fail */
		pfree(cache->warr);
		pfree(cache->karr);
		pfree(cache->weights);
		pfree(cache->kinds);
		cache->warr = cache->karr = NULL;
	}
	cache->n = nw;
	cache->weights = palloc(sizeof(double) * nw);
	cache->kinds = palloc(sizeof(int) * nw);
	MemoryContextSwitchTo(oldcxt);
	fcinfo->flinfo->fn_extra = cache;

	for (i = 0; i < nw; i++)
	{
		double		w;

		if (knulls[i] || (cache->kinds[i] = dp_kind_from_name(TextDatumGetCString(kvals[i]))) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("kind %d of the lifecycle is not a phase kind", i + 1),
					 errdetail("The value given is %s.",
							   knulls[i] ? "NULL" : TextDatumGetCString(kvals[i])),
					 errhint("The kinds are pending, active, waiting, succeeded, failed and cancelled.")));
		w = wnulls[i] ? -1 : DatumGetFloat8(wvals[i]);
		if (!(w >= 0) || !isfinite(w))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("weight %d of the lifecycle is not a finite number >= 0", i + 1),
					 errdetail("The value given is %s.",
							   wnulls[i] ? "NULL" : psprintf("%g", DatumGetFloat8(wvals[i])))));
		cache->weights[i] = w;
	}

	/* only a fully checked list is remembered */
	oldcxt = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	cache->warr = (ArrayType *) pg_detoast_datum_copy((struct varlena *) warr);
	cache->karr = (ArrayType *) pg_detoast_datum_copy((struct varlena *) karr);
	MemoryContextSwitchTo(oldcxt);
	return cache;
}

PG_FUNCTION_INFO_V1(dp_weighted_progress);
Datum
dp_weighted_progress(PG_FUNCTION_ARGS)
{
	ArrayType  *warr = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *karr = PG_GETARG_ARRAYTYPE_P(1);
	int32		position = PG_GETARG_INT32(2);
	double		fraction = PG_GETARG_FLOAT8(3);
	DpWeights  *lc = dp_parse_weights(fcinfo, warr, karr);
	int			nw = lc->n;
	int		   *kinds = lc->kinds;
	double		total = 0;
	double		before = 0;
	double		result;
	bool		active_after = false;
	int			i;

	if (position < 1 || position > nw)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position %d is not a phase of the lifecycle", position),
				 errdetail("Positions run from 1 to %d.", nw)));

	for (i = 0; i < nw; i++)
	{
		if (DP_KIND_IS_TERMINAL(kinds[i]))
			continue;
		total += lc->weights[i];
		if (i < position - 1)
			before += lc->weights[i];
		if (i > position - 1 && kinds[i] == DP_KIND_ACTIVE)
			active_after = true;
	}

	switch (kinds[position - 1])
	{
		case DP_KIND_SUCCEEDED:
			PG_RETURN_FLOAT8(1.0);
		case DP_KIND_FAILED:
		case DP_KIND_CANCELLED:
			PG_RETURN_NULL();
		case DP_KIND_PENDING:
			result = total > 0 ? before / total : 0;
			break;
		case DP_KIND_WAITING:
			if (!active_after || !(total > 0))
				PG_RETURN_NULL();
			result = before / total;
			break;
		default:
			if (!(total > 0))
				PG_RETURN_NULL();
			if (!(fraction > 0))	/* also NaN */
				fraction = 0;
			else if (fraction > 1)
				fraction = 1;
			result = (before + lc->weights[position - 1] * fraction) / total;
			break;
	}
	if (result < 0)
		result = 0;
	else if (result >= 1)
		result = nextafter(1.0, 0.0);
	PG_RETURN_FLOAT8(result);
}

/*--------------------------------------------------------------------------
 * The one-line description
 *--------------------------------------------------------------------------
 */

/* The value of "key" in a figures object; false when absent or null. */
static bool
dp_figure(Jsonb *jb, const char *key, enum jbvType type, JsonbValue *v)
{
	if (getKeyJsonValueFromContainer(&jb->root, key, strlen(key), v) == NULL ||
		v->type == jbvNull)
		return false;
	if (v->type != type)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("figure \"%s\" must be a %s", key,
						type == jbvString ? "string" : type == jbvBool ? "boolean" : "number"),
				 errhint("Pass the result of deploy_progress.progress(), or an object with the same keys.")));
	return true;
}

static char *
dp_figure_text(Jsonb *jb, const char *key)
{
	JsonbValue	v;

	if (!dp_figure(jb, key, jbvString, &v))
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

static bool
dp_figure_double(Jsonb *jb, const char *key, double *out)
{
	JsonbValue	v;

	if (!dp_figure(jb, key, jbvNumeric, &v))
		return false;
	*out = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v.val.numeric)));
	return true;
}

static bool
dp_figure_int64(Jsonb *jb, const char *key, int64 *out)
{
	JsonbValue	v;

	double		approx;

	if (!dp_figure(jb, key, jbvNumeric, &v))
		return false;
	approx = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v.val.numeric)));
	if (!(fabs(approx) < 9.3e18))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("figure \"%s\" is out of range for a count", key),
				 errdetail("The value given is %g.", approx),
				 errhint("Counts are bigint values.")));
	*out = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
	return true;
}

/* A count with thousands separators: 12,400. */
static void
dp_append_count(StringInfo buf, int64 n)
{
	char		digits[32];
	uint64		u = n < 0 ? (uint64) 0 - (uint64) n : (uint64) n;
	int			len;
	int			i;

	if (n < 0)
		appendStringInfoChar(buf, '-');
	snprintf(digits, sizeof(digits), UINT64_FORMAT, u);
	len = strlen(digits);
	for (i = 0; i < len; i++)
	{
		if (i > 0 && (len - i) % 3 == 0)
			appendStringInfoChar(buf, ',');
		appendStringInfoChar(buf, digits[i]);
	}
}

/* A duration rounded to the second: 45s, 3m42s, 1h05m, 2d03h. */
static void
dp_append_duration(StringInfo buf, double seconds)
{
	double		r = floor(seconds + 0.5);
	int64		s;

	if (!(r < 1e15))			/* some 30 million years, or NaN */
	{
		appendStringInfoString(buf, "a very long time");
		return;
	}
	s = (int64) r;
	if (s < 60)
		appendStringInfo(buf, "%ds", (int) s);
	else if (s < 3600)
		appendStringInfo(buf, "%dm%02ds", (int) (s / 60), (int) (s % 60));
	else if (s < 86400)
		appendStringInfo(buf, "%dh%02dm", (int) (s / 3600), (int) (s % 3600 / 60));
	else
		appendStringInfo(buf, INT64_FORMAT "d%02dh", s / 86400, (int) (s % 86400 / 3600));
}

/*
 * A speed: whole items per second from 10 up (with separators), one
 * decimal below; rates under one per second are given per minute, and
 * under one per minute per hour.  "percent": in percent ("2.5%/s").
 */
static void
dp_append_speed(StringInfo buf, double speed, bool percent)
{
	const char *unit = "s";

	if (speed > 0 && speed < 1)
	{
		speed *= 60;
		unit = "min";
		if (speed < 1)
		{
			speed *= 60;
			unit = "h";
		}
	}
	if (speed == 0)
		appendStringInfoChar(buf, '0');
	else if (speed < 9.95)		/* what rounds to 10.0 is shown as 10 */
		appendStringInfo(buf, "%.1f", speed);
	else if (speed < 1e18)
		dp_append_count(buf, (int64) floor(speed + 0.5));
	else
		appendStringInfo(buf, "%g", speed);
	if (percent)
		appendStringInfo(buf, "%%/%s", unit);
	else
		appendStringInfo(buf, " items/%s", unit);
}

/*
 * Append a label or message on one line: control characters (a newline in
 * a worker's status line) become spaces.
 */
static void
dp_append_one_line(StringInfo buf, const char *s)
{
	for (; *s; s++)
		appendStringInfoChar(buf, ((unsigned char) *s < 0x20 || *s == 0x7f) ? ' ' : *s);
}

/* "health_check" -> "Health check". */
static char *
dp_display_name(const char *phase)
{
	char	   *name = pstrdup(phase);
	char	   *p;

	for (p = name; *p; p++)
		if (*p == '_')
			*p = ' ';
	if (name[0] >= 'a' && name[0] <= 'z')
		name[0] += 'A' - 'a';
	return name;
}

/*
 * deploy_progress.describe(figures jsonb) text
 *
 * One human line for a row's figures, as deploy_progress.progress()
 * returns them (keys phase, kind, completed, total, speed, eta_seconds,
 * phase_elapsed_seconds, elapsed_seconds, since_progress_seconds, stalled,
 * reason, overall_eta_seconds, and percent for a row without counters,
 * label and message for a table with such columns; missing keys count as
 * unknown):
 *
 *	active      Transferring: 12,400/31,344 (39.6%) · 85 items/s · ETA 3m42s
 *	run ETA     Transferring: 12,400/31,344 (39.6%) · 85 items/s · ETA 3m42s · done in ~9m10s
 *	message     Pulling: 2/4 (50.0%) · Pulling image web:1.2
 *	label       web · Pulling: 2/4 (50.0%) · Pulling image web:1.2
 *	stalled     Transferring: 12,400/31,344 (39.6%) · stalled, no progress for 2m10s
 *	percent     Building: 40.0% · 2.5%/s · ETA 24s
 *	no counters Building for 2m10s
 *	pending     Queued for 45s
 *	waiting     Waiting for 3m12s
 *	succeeded   Succeeded in 12m05s
 *	failed      Failed after 3m10s: connection reset
 *
 * The label comes first and the message last, each on one line (control
 * characters become spaces); empty ones are left out.  The separator is a
 * middle dot in UTF8 (and SQL_ASCII) databases, " - " in others.
 */
PG_FUNCTION_INFO_V1(dp_describe);
Datum
dp_describe(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	const char *sep;
	char	   *phase;
	char	   *kind_name;
	char	   *reason;
	char	   *label;
	char	   *message;
	int			kind;
	int64		completed = 0;
	int64		total = 0;
	bool		has_completed;
	bool		has_total;
	double		percent = 0;
	bool		has_percent;
	double		speed = 0;
	double		eta = 0;
	double		in_phase = 0;
	double		elapsed = 0;
	double		since_progress = 0;
	bool		has_speed;
	bool		has_eta;
	bool		has_in_phase;
	bool		has_elapsed;
	bool		has_since;
	bool		stalled = false;
	double		run_eta = 0;
	bool		has_run_eta;
	JsonbValue	v;
	StringInfoData buf;

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("figures must be a JSON object"),
				 errhint("Pass the result of deploy_progress.progress(), or an object with the same keys.")));
	phase = dp_figure_text(jb, "phase");
	kind_name = dp_figure_text(jb, "kind");
	if (phase == NULL || kind_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("figures must give a phase and its kind"),
				 errdetail("Phase: %s, kind: %s.", phase ? phase : "missing",
						   kind_name ? kind_name : "missing"),
				 errhint("Pass the result of deploy_progress.progress(), or an object with the same keys.")));
	if ((kind = dp_kind_from_name(kind_name)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a phase kind", kind_name),
				 errhint("The kinds are pending, active, waiting, succeeded, failed and cancelled.")));

	has_completed = dp_figure_int64(jb, "completed", &completed);
	has_total = dp_figure_int64(jb, "total", &total) && total >= 0;
	/* without counters, the percent of a percent column, and speeds in %/s */
	has_percent = !has_completed && dp_figure_double(jb, "percent", &percent) &&
		percent >= 0 && percent <= 100;
	has_speed = dp_figure_double(jb, "speed", &speed) && speed >= 0;
	has_eta = dp_figure_double(jb, "eta_seconds", &eta) && eta >= 0;
	has_in_phase = dp_figure_double(jb, "phase_elapsed_seconds", &in_phase) && in_phase >= 0;
	has_elapsed = dp_figure_double(jb, "elapsed_seconds", &elapsed) && elapsed >= 0;
	has_since = dp_figure_double(jb, "since_progress_seconds", &since_progress) &&
		since_progress >= 0;
	if (dp_figure(jb, "stalled", jbvBool, &v))
		stalled = v.val.boolean;
	has_run_eta = dp_figure_double(jb, "overall_eta_seconds", &run_eta) && run_eta >= 0;
	reason = dp_figure_text(jb, "reason");
	label = dp_figure_text(jb, "label");
	message = dp_figure_text(jb, "message");

	sep = (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
		? " \xC2\xB7 " : " - ";

	initStringInfo(&buf);
	if (label && label[0] != '\0')
	{
		dp_append_one_line(&buf, label);
		appendStringInfoString(&buf, sep);
	}
	appendStringInfoString(&buf, dp_display_name(phase));
	switch (kind)
	{
		case DP_KIND_ACTIVE:
			if (!has_completed && !has_percent)
			{
				if (has_in_phase)
				{
					appendStringInfoString(&buf, " for ");
					dp_append_duration(&buf, in_phase);
				}
				break;
			}
			appendStringInfoString(&buf, ": ");
			if (has_percent)
			{
				/* only 100 is shown as 100 */
				if (percent < 100 && percent >= 99.95)
					appendStringInfoString(&buf, "99.9%");
				else
					appendStringInfo(&buf, "%.1f%%", percent);
			}
			else
				dp_append_count(&buf, completed);
			if (has_total && !has_percent)
			{
				double		p = 0;

				appendStringInfoChar(&buf, '/');
				dp_append_count(&buf, total);
				(void) dp_percent_of(completed, total, &p);
				if (completed < total && p >= 99.95)
					appendStringInfoString(&buf, " (99.9%)");
				else
					appendStringInfo(&buf, " (%.1f%%)", p);
			}
			if (stalled)
			{
				appendStringInfo(&buf, "%sstalled", sep);
				if (has_since)
				{
					appendStringInfoString(&buf, ", no progress for ");
					dp_append_duration(&buf, since_progress);
				}
				break;
			}
			if (has_speed)
			{
				appendStringInfoString(&buf, sep);
				dp_append_speed(&buf, speed, has_percent);
			}
			if (has_eta)
			{
				appendStringInfo(&buf, "%sETA ", sep);
				dp_append_duration(&buf, eta);
			}
			break;
		case DP_KIND_PENDING:
		case DP_KIND_WAITING:
			if (has_in_phase)
			{
				appendStringInfoString(&buf, " for ");
				dp_append_duration(&buf, in_phase);
			}
			break;
		default:
			if (has_elapsed)
			{
				appendStringInfoString(&buf, kind == DP_KIND_SUCCEEDED ? " in " : " after ");
				dp_append_duration(&buf, elapsed);
			}
			if (reason && kind != DP_KIND_SUCCEEDED && reason[0] != '\0')
				appendStringInfo(&buf, ": %s", reason);
			break;
	}
	/* the whole run's ETA, learned from the history */
	if (has_run_eta &&
		(kind == DP_KIND_ACTIVE || kind == DP_KIND_PENDING || kind == DP_KIND_WAITING))
	{
		appendStringInfo(&buf, "%sdone in ~", sep);
		dp_append_duration(&buf, run_eta);
	}
	if (message && message[0] != '\0')
	{
		appendStringInfoString(&buf, sep);
		dp_append_one_line(&buf, message);
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * deploy_progress._run_eta_part(quantiles double precision[], stays bigint,
 *		runs bigint, ahead double precision, thin boolean,
 *		in_phase double precision, own_eta double precision,
 *		q double precision) double precision
 *
 * One bound of the whole run's time left, in seconds (q = 0.5 for the
 * median, 0.95 for the 95th percentile), from a phase's row of
 * _phase_eta_table() (sql/src/75_estimates.sql): the current phase's time
 * left plus "ahead", the expected time of the phases after it.  The
 * current phase's time left is own_eta when the row has one; else the
 * q-quantile of the phase's stays that lasted longer than in_phase, minus
 * in_phase, read off the ascending quantiles.  NULL where the estimates
 * cannot tell: fewer than 20 runs, a phase ahead without enough stays
 * ("thin"), fewer than 20 stays of the current phase, or a stay longer
 * than every one seen.  Not strict: a row without estimates passes NULLs.
 */
PG_FUNCTION_INFO_V1(dp_run_eta_part);
Datum
dp_run_eta_part(PG_FUNCTION_ARGS)
{
	double		ahead = PG_ARGISNULL(3) ? 0 : PG_GETARG_FLOAT8(3);
	double		in_phase = PG_ARGISNULL(5) ? 0 : Max(PG_GETARG_FLOAT8(5), 0);
	double		q;
	double		current;

	if (PG_ARGISNULL(2) || PG_GETARG_INT64(2) < 20 ||
		PG_ARGISNULL(4) || PG_GETARG_BOOL(4) || PG_ARGISNULL(7))
		PG_RETURN_NULL();
	q = PG_GETARG_FLOAT8(7);
	if (!(q > 0 && q <= 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quantile must be greater than 0 and at most 1"),
				 errdetail("The value given is %g.", q)));

	if (!PG_ARGISNULL(6))
		current = PG_GETARG_FLOAT8(6);
	else
	{
		ArrayType  *arr;
		Datum	   *vals;
		bool	   *nulls;
		int			n;
		int			first;
		int			rest;
		int			pick;

		if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_GETARG_INT64(1) < 20)
			PG_RETURN_NULL();
		arr = PG_GETARG_ARRAYTYPE_P(0);
		if (ARR_NDIM(arr) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("quantiles must be a one-dimensional array")));
#if PG_VERSION_NUM >= 160000
		deconstruct_array_builtin(arr, FLOAT8OID, &vals, &nulls, &n);
#else
		deconstruct_array(arr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &vals, &nulls, &n);
#endif
		/* the quantiles ascend: the stays longer than in_phase come last */
		for (first = 0; first < n; first++)
			if (!nulls[first] && DatumGetFloat8(vals[first]) > in_phase)
				break;
		rest = n - first;
		if (rest == 0)
			PG_RETURN_NULL();
		pick = (int) ceil(rest * q);
		pick = Max(pick, 1);
		current = DatumGetFloat8(vals[first + pick - 1]) - in_phase;
	}
	PG_RETURN_FLOAT8(current + ahead);
}
