/*-------------------------------------------------------------------------
 *
 * deploy_progress.c
 *	  Module entry point and settings of the deploy_progress extension.
 *
 * IDENTIFICATION
 *	  src/deploy_progress.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "deploy_progress.h"

PG_MODULE_MAGIC;

/* deploy_progress.stamping: off skips every write the triggers make. */
bool		dp_stamping = true;

/* deploy_progress.transition_reason: reason recorded with transitions. */
char	   *dp_transition_reason = NULL;

/* deploy_progress.clock: which "now" the triggers stamp with. */
int			dp_clock = DP_CLOCK_STATEMENT;

static const struct config_enum_entry dp_clock_options[] = {
	{"statement", DP_CLOCK_STATEMENT, false},
	{"transaction", DP_CLOCK_TRANSACTION, false},
	{"clock", DP_CLOCK_WALL, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/*
 * Define the settings and install the history hooks (history.c).  The
 * settings are PGC_USERSET: switching stamping off only stops the extension
 * from writing timings and history, it never lets a writer store a phase
 * the lifecycle does not have or counters out of range.
 */
void
_PG_init(void)
{
	DefineCustomBoolVariable("deploy_progress.stamping",
							 "Stamps phase, progress and heartbeat times on tracked tables.",
							 "Switch off for bulk loads and restores that carry their own timings; "
							 "phase and counter checks still apply.",
							 &dp_stamping,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("deploy_progress.clock",
							 "Clock the tracking triggers stamp with.",
							 "statement: start of the current statement (rows written by one statement agree); "
							 "transaction: start of the transaction; clock: the wall clock at each row.",
							 &dp_clock,
							 DP_CLOCK_STATEMENT,
							 dp_clock_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("deploy_progress.transition_reason",
							   "Reason recorded in the history and events of the phase transitions that follow.",
							   "Used when the tracked table has no reason column or leaves it null; "
							   "fail_stuck() sets it for its own statements.",
							   &dp_transition_reason,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	dp_history_init();

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("deploy_progress");
#else
	EmitWarningsOnPlaceholders("deploy_progress");
#endif
}

/*
 * The time the triggers stamp.  Statement start is the default: every row a
 * statement touches gets the same time, and a long transaction's successive
 * statements still move forward.
 */
TimestampTz
dp_now(void)
{
	switch (dp_clock)
	{
		case DP_CLOCK_TRANSACTION:
			return GetCurrentTransactionStartTimestamp();
		case DP_CLOCK_WALL:
			return GetCurrentTimestamp();
		default:
			return GetCurrentStatementStartTimestamp();
	}
}
