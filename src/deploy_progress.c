/*-------------------------------------------------------------------------
 *
 * deploy_progress.c
 *	  Module entry point, settings and schema-version handshake of the
 *	  deploy_progress extension.
 *
 * The library outlives the schema: between "make install" of a new version
 * and ALTER EXTENSION deploy_progress UPDATE, the new library runs against
 * the SQL objects of the old version.  So the C reads the extension's own
 * tables (the configuration in deploy_progress.tracked, the side table, the
 * history) only as the installed schema version has them: the tracking
 * cache learns pg_extension.extversion each time it reads a table's
 * configuration (dp_installed_schema()) and reads it with the query of that
 * schema, and the side table and history writers look up the columns they
 * write.  Every C symbol a released SQL script refers to stays defined.
 *
 * IDENTIFICATION
 *	  src/deploy_progress.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "deploy_progress.h"

PG_MODULE_MAGIC;

/* deploy_progress.stamping: off skips every write the triggers make. */
bool		dp_stamping = true;

/* deploy_progress.transition_reason: reason recorded with transitions. */
char	   *dp_transition_reason = NULL;

/*
 * deploy_progress.notify_bulk_threshold: a statement that moves more rows of
 * one table sends one summary event per target phase (history.c); -1: never,
 * 0: every statement (as log_min_duration_statement's -1 and 0).
 */
int			dp_notify_bulk_threshold = 100;

/* deploy_progress.clock: which "now" the triggers stamp with. */
int			dp_clock = DP_CLOCK_STATEMENT;

/* deploy_progress.reader_cache_size, in kB (readers.c) */
int			dp_reader_cache_size = 65536;

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

	DefineCustomIntVariable("deploy_progress.reader_cache_size",
							"Memory each session may keep for the global readers' prepared per-table queries.",
							"stuck(), in_flight, the metrics and fail_stuck() keep each tracked table's query "
							"planned for the session; the tables beyond this are planned at each call. "
							"0 keeps none.",
							&dp_reader_cache_size,
							65536,
							0,
							MAX_KILOBYTES,
							PGC_USERSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("deploy_progress.notify_bulk_threshold",
							"Most transitions of one table in one statement that are sent as one NOTIFY event each.",
							"A statement that moves more rows of a table sends one summary event per target phase "
							"for that table instead; 0 summarizes every statement, -1 sends one event per transition whatever their number.",
							&dp_notify_bulk_threshold,
							100,
							-1, INT_MAX,
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

/* The version that introduced each schema, by DpSchema. */
static const char *const dp_schema_names[DP_NUM_SCHEMAS] = {
	[DP_SCHEMA_1_0] = "1.0",
	[DP_SCHEMA_1_1] = "1.1",
};

/* Name of a schema: the version that introduced it. */
const char *
dp_schema_name(DpSchema schema)
{
	Assert(schema >= 0 && schema < DP_NUM_SCHEMAS);
	return dp_schema_names[schema];
}

/*
 * The schema of an installed version of the extension: 1.0 for 1.0 and its
 * patch releases (1.0.x), 1.1 for every other version, later ones included
 * (they keep 1.1's shape where the C reads it, or bring a library that
 * knows better).
 */
DpSchema
dp_schema_of_version(const char *version)
{
	if (strcmp(version, "1.0") == 0 || strncmp(version, "1.0.", 4) == 0)
		return DP_SCHEMA_1_0;
	return DP_SCHEMA_1_1;
}

/*
 * The installed version of the extension (pg_extension.extversion), read
 * in the caller's SPI session, and its schema.  The text is palloc'd in
 * the caller's SPI procedure context.
 */
DpSchema
dp_installed_schema(char **version)
{
	int			ret;
	char	   *v;

	ret = SPI_execute("SELECT e.extversion FROM pg_catalog.pg_extension e"
					  " WHERE e.extname OPERATOR(pg_catalog.=) 'deploy_progress'",
					  true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading the version of deploy_progress failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1 ||
		(v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)) == NULL)
		elog(ERROR, "extension deploy_progress is not installed");
	*version = v;
	return dp_schema_of_version(v);
}
