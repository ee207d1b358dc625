/*-------------------------------------------------------------------------
 *
 * figures.c
 *	  Progress figures: percent, speeds, ETA and overall progress.
 *
 * The smoothed speed is a time-based exponentially weighted moving average
 * of the instantaneous rate (items per second).  Its whole state is two
 * values kept in the tracked row, the rate and the time it was last updated,
 * so that each progress update costs O(1):
 *
 *	- first sample of a phase: the rate is seeded with the sample itself, so
 *	  the estimate has no bias toward the zero it would otherwise start from;
 *	- later samples: rate += alpha * (sample - rate), alpha = 1 - exp(-dt/tau),
 *	  so a sample's weight follows the time it covers, not the update count;
 *	- reading at a later time applies the decay exp(-dt/tau) of the samples of
 *	  zero that a stalled transfer would have produced, so its speed falls
 *	  toward zero instead of freezing at the last value.
 *
 * IDENTIFICATION
 *	  src/figures.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "deploy_progress.h"

/*
 * One update of the smoothed rate: "delta" items arrived over "seconds"
 * (> 0) since the rate was last updated.
 */
double
dp_speed_step(double rate, bool rate_isnull, double delta, double seconds,
			  double tau)
{
	double		sample = delta / seconds;
	double		alpha;

	if (rate_isnull || !isfinite(rate))
		return sample;
	alpha = -expm1(-seconds / tau);
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
