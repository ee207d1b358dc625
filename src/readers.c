/*-------------------------------------------------------------------------
 *
 * readers.c
 *	  The global readers' loop over the tracked tables, with each table's
 *	  query prepared once per session.
 *
 * stuck(), in_flight, the metrics and fail_stuck() read every tracked table
 * the caller can read.  A view cannot span tables known only at run time,
 * so each table has a query of its own, made by the row generator
 * (sql/src/40_rows.sql) from the table's configuration.  Building that
 * text and planning it is what cost the time (several milliseconds a
 * table), not reading the table's few in-flight rows through its partial
 * index.  So _read_each() keeps, per table and reader, the query's plan
 * (SPI_prepare_cursor() with a generic plan, SPI_keepplan()) for the rest
 * of the session, and runs it with the caller's as_of at each call.
 *
 * What the plans depend on is what the text was made from: the table's row
 * in deploy_progress.tracked, its lifecycle, its columns.  Every change of
 * those sends a relcache invalidation of the table (the guard triggers of
 * tracked and lifecycle_phases call _invalidate(), ALTER TABLE sends its
 * own), which drops the table's entries here; a reset of the relcache, a
 * change of an enum type (ALTER TYPE ... ADD VALUE sends no relcache
 * invalidation) or of a function (ALTER EXTENSION UPDATE replacing the
 * row generator) drops them all.  Whatever else a plan depends on (the
 * relations it reads, their partitions, row-level security and the role it
 * applies to) PostgreSQL's plan cache watches itself: a plan that reads a
 * table with row-level security is replanned when run by another role or
 * with another row_security setting.  Privileges are checked at each
 * execution, as the caller: the plans run with the caller's rights, as the
 * PL/pgSQL loop's queries did, and read nothing of a table's owner's code.
 *
 * Each table's query runs in a subtransaction of its own, so that a table
 * whose query raises (a column it was tracked with is gone, ...) is
 * skipped with a warning (_skipped()) and the others are read; a caller
 * that named the table gets the error instead.  A table's rows are added
 * to the result only once its query has succeeded, so that a failing table
 * leaves none of its rows behind.
 *
 * IDENTIFICATION
 *	  src/readers.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "deploy_progress.h"

/*
 * The readers, by the name the SQL passes: the hint given for a table that
 * is not tracked, the privileges the caller needs on a table, and what a
 * table whose query failed gives.
 */
typedef enum DpReader
{
	DP_READER_STUCK,
	DP_READER_IN_FLIGHT,
	DP_READER_METRICS,			/* failed: a warning and a "skipped" row */
	DP_READER_SWEEP,			/* failed: its relid, silently */
	DP_NUM_READERS
} DpReader;

static const struct
{
	const char *name;
	const char *hint;
	bool		update;			/* UPDATE as well as SELECT */
}			dp_readers[DP_NUM_READERS] = {
	[DP_READER_STUCK] = {"stuck", "Call stuck() without a table to check every tracked table.", false},
	[DP_READER_IN_FLIGHT] = {"in_flight", "Select from the view deploy_progress.in_flight to see every tracked table.", false},
	[DP_READER_METRICS] = {"metrics", NULL, false},
	[DP_READER_SWEEP] = {"sweep", "Call fail_stuck() without a table to sweep every tracked table.", true},
};

/* One table's prepared query for one reader. */
typedef struct DpReaderKey
{
	Oid			relid;
	DpReader	reader;
} DpReaderKey;

typedef struct DpReaderPlan
{
	DpReaderKey key;
	SPIPlanPtr	plan;			/* kept (SPI_keepplan); NULL: none yet */
	bool		valid;			/* false: rebuild before the next use */
} DpReaderPlan;

static HTAB *dp_reader_plans = NULL;

/* Marks the plans of relid (every plan for InvalidOid) stale. */
static void
dp_readers_invalidate(Oid relid)
{
	HASH_SEQ_STATUS status;
	DpReaderPlan *p;

	if (dp_reader_plans == NULL)
		return;
	hash_seq_init(&status, dp_reader_plans);
	while ((p = hash_seq_search(&status)) != NULL)
		if (!OidIsValid(relid) || p->key.relid == relid)
			p->valid = false;
}

static void
dp_readers_relcache_callback(Datum arg, Oid relid)
{
	dp_readers_invalidate(relid);
}

static void
dp_readers_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	dp_readers_invalidate(InvalidOid);
}

static void
dp_readers_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(DpReaderKey);
	ctl.entrysize = sizeof(DpReaderPlan);
	ctl.hcxt = AllocSetContextCreate(CacheMemoryContext, "deploy_progress reader plans",
									 ALLOCSET_SMALL_SIZES);
	dp_reader_plans = hash_create("deploy_progress reader plans", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(dp_readers_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(ENUMOID, dp_readers_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, dp_readers_syscache_callback, (Datum) 0);
}

/*
 * The prepared query of one table for one reader, built when missing or
 * stale from the SQL the row generator makes (_reader_query()).  Called in
 * the table's subtransaction: an error here is the table's.
 */
static SPIPlanPtr
dp_reader_plan(const char *schema, Oid relid, DpReader reader)
{
	DpReaderKey key;
	DpReaderPlan *p;
	bool		found;
	char	   *sql;
	Oid			argtypes[2] = {OIDOID, TEXTOID};
	Datum		args[2];
	Oid			as_of_type = TIMESTAMPTZOID;
	bool		isnull;
	SPIPlanPtr	plan;
	int			ret;

	memset(&key, 0, sizeof(key));
	key.relid = relid;
	key.reader = reader;
	p = hash_search(dp_reader_plans, &key, HASH_ENTER, &found);
	if (!found)
	{
		p->plan = NULL;
		p->valid = false;
	}
	if (p->valid && p->plan != NULL)
		return p->plan;
	if (p->plan != NULL)
	{
		SPI_freeplan(p->plan);
		p->plan = NULL;
	}
	/* valid from here: an invalidation while building marks it stale again */
	p->valid = true;

	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(dp_readers[reader].name);
	ret = SPI_execute_with_args(psprintf("SELECT %1$s._reader_query(t, $2) FROM %1$s.tracked t"
										 " WHERE t.relid OPERATOR(pg_catalog.=) $1",
										 quote_identifier(schema)),
								2, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "_reader_query() failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not tracked", get_rel_name(relid)),
				 errdetail("It was untracked while it was being read.")));
	sql = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "_reader_query() gave no query for table %u", relid);
	SPI_freetuptable(SPI_tuptable);

	/* a generic plan at once: $1 (as of) does not change what to read */
	plan = SPI_prepare_cursor(sql, 1, &as_of_type, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare_cursor failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	pfree(sql);
	/* (the entry may have moved: hash_search again) */
	p = hash_search(dp_reader_plans, &key, HASH_FIND, NULL);
	Assert(p != NULL);
	p->plan = plan;
	return plan;
}

/*
 * Runs one table's query and adds its rows to the result; the caller holds
 * the subtransaction.
 */
static void
dp_read_table(const char *schema, Oid relid, DpReader reader, Datum as_of,
			  ReturnSetInfo *rsinfo, ResourceOwner store_owner)
{
	SPIPlanPtr	plan = dp_reader_plan(schema, relid, reader);
	TupleDesc	desc = rsinfo->setDesc;
	int			ret;
	Datum	   *values;
	bool	   *nulls;

	ret = SPI_execute_plan(plan, &as_of, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "the query of table %u failed: %s", relid, SPI_result_code_string(ret));
	if (SPI_tuptable->tupdesc->natts != desc->natts)
		elog(ERROR, "the query of table %u gives %d columns, not %d",
			 relid, SPI_tuptable->tupdesc->natts, desc->natts);
	for (int i = 0; i < desc->natts; i++)
		if (TupleDescAttr(SPI_tuptable->tupdesc, i)->atttypid != TupleDescAttr(desc, i)->atttypid)
			elog(ERROR, "column %d of the query of table %u is of type %s, not %s", i + 1, relid,
				 format_type_be(TupleDescAttr(SPI_tuptable->tupdesc, i)->atttypid),
				 format_type_be(TupleDescAttr(desc, i)->atttypid));
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		ResourceOwner sub = CurrentResourceOwner;

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		/* (the temporary file of a large result is the outer query's) */
		CurrentResourceOwner = store_owner;
		tuplestore_putvalues(rsinfo->setResult, desc, values, nulls);
		CurrentResourceOwner = sub;
	}
	pfree(values);
	pfree(nulls);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * What a table whose query failed gives: _skipped()'s warning, and for the
 * metrics a "skipped" row, for the sweep its relid (fail_stuck() then
 * sweeps the table, and reports its error itself).
 */
static void
dp_read_failed(const char *schema, Oid relid, DpReader reader, ErrorData *edata,
			   ReturnSetInfo *rsinfo)
{
	TupleDesc	desc = rsinfo->setDesc;
	Datum	   *values = palloc0(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);

	memset(nulls, true, sizeof(bool) * desc->natts);
	values[0] = ObjectIdGetDatum(relid);
	nulls[0] = false;
	if (reader == DP_READER_SWEEP)
	{
		tuplestore_putvalues(rsinfo->setResult, desc, values, nulls);
		return;
	}
	{
		Oid			argtypes[4] = {REGCLASSOID, TEXTOID, TEXTOID, TEXTOID};
		Datum		args[4];
		int			ret;

		args[0] = ObjectIdGetDatum(relid);
		args[1] = CStringGetTextDatum(dp_readers[reader].name);
		args[2] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
		args[3] = CStringGetTextDatum(edata->message ? edata->message : "");
		ret = SPI_execute_with_args(psprintf("SELECT %s._skipped($1, $2, $3, $4)", quote_identifier(schema)),
									4, argtypes, args, NULL, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "_skipped() failed: %s", SPI_result_code_string(ret));
		SPI_freetuptable(SPI_tuptable);
	}
	if (reader == DP_READER_METRICS)
	{
		/* (relid, 'skipped', NULL, NULL, 1) */
		Assert(desc->natts == 5);
		values[1] = CStringGetTextDatum("skipped");
		nulls[1] = false;
		values[4] = Int64GetDatum(1);
		nulls[4] = false;
		tuplestore_putvalues(rsinfo->setResult, desc, values, nulls);
	}
}

/*
 * _read_each(tbl, as_of, reader): the rows of a global reader over every
 * tracked table the caller can read (_configs()), or over tbl only.
 */
PG_FUNCTION_INFO_V1(dp_read_each);
Datum
dp_read_each(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		one = !PG_ARGISNULL(0);
	char	   *name = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	DpReader	reader;
	char	   *schema;
	Oid			argtypes[4] = {REGCLASSOID, TIMESTAMPTZOID, TEXTOID, TEXTARRAYOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Datum		privileges[2];
	int			ret;
	int			ntables;
	Oid		   *relids;
	int			nestlevel;
	MemoryContext cxt;
	ResourceOwner owner = CurrentResourceOwner;

	for (reader = 0; reader < DP_NUM_READERS; reader++)
		if (name && strcmp(name, dp_readers[reader].name) == 0)
			break;
	if (reader == DP_NUM_READERS)
		elog(ERROR, "unknown reader \"%s\"", name ? name : "(null)");
	if (dp_reader_plans == NULL)
		dp_readers_init();

#if PG_VERSION_NUM >= 150000
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
#else
	{
		MemoryContext per_query;

		if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
			!(rsinfo->allowedModes & SFRM_Materialize) || rsinfo->expectedDesc == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("set-valued function called in context that cannot accept a set")));
		per_query = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		rsinfo->returnMode = SFRM_Materialize;
		rsinfo->setDesc = CreateTupleDescCopy(rsinfo->expectedDesc);
		rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
		MemoryContextSwitchTo(per_query);
	}
#endif

	/* the extension's schema: this function's */
	schema = get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid));
	dp_spi_connect();
	cxt = CurrentMemoryContext;
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	/* the tables, in _configs()'s order, after its checks of the arguments */
	args[0] = PG_GETARG_DATUM(0);
	nulls[0] = one ? ' ' : 'n';
	args[1] = PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	args[2] = dp_readers[reader].hint ? CStringGetTextDatum(dp_readers[reader].hint) : (Datum) 0;
	nulls[2] = dp_readers[reader].hint ? ' ' : 'n';
	privileges[0] = CStringGetTextDatum("SELECT");
	privileges[1] = CStringGetTextDatum("UPDATE");
	args[3] = PointerGetDatum(construct_array(privileges, dp_readers[reader].update ? 2 : 1,
											  TEXTOID, -1, false, TYPALIGN_INT));
	ret = SPI_execute_with_args(psprintf("SELECT t.relid FROM %s._configs($1, $2, $3, $4) t",
										 quote_identifier(schema)),
								4, argtypes, args, nulls, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "_configs() failed: %s", SPI_result_code_string(ret));
	ntables = (int) SPI_processed;
	relids = palloc(sizeof(Oid) * Max(ntables, 1));
	for (int i = 0; i < ntables; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);

	for (int i = 0; i < ntables; i++)
	{
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			dp_read_table(schema, relids[i], reader, PG_GETARG_DATUM(1), rsinfo, owner);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			/* a table asked for by name: its error (the sweep's is its own) */
			if (one && reader != DP_READER_SWEEP)
				ReThrowError(edata);
			dp_read_failed(schema, relids[i], reader, edata, rsinfo);
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}

	AtEOXact_GUC(false, nestlevel);
	SPI_finish();
	return (Datum) 0;
}
