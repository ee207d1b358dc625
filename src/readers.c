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
 * A table whose in-flight index holds exactly its in-flight rows
 * (_in_flight_index_current(): valid, of a plain table, with the current
 * predicate) and has no entry at all has no in-flight row: it is passed over
 * without its query being built or run (the metrics give their zeros from
 * one query shared by all such tables).  Reading the index this way runs no
 * code of the table's owner: a btree scan without keys compares nothing.
 *
 * The plans are large (a few hundred kB each: the row generator's query is
 * long), so they are kept only within deploy_progress.reader_cache_size;
 * a table beyond it keeps its query's text (a few kB) and is planned at
 * each call.
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

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/spi_priv.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
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

/*
 * One table's prepared queries, one per reader, and its in-flight index
 * when that index holds exactly the table's in-flight rows
 * (_in_flight_index_current()): a table whose such index is empty is
 * passed over without running its query (or building it).
 */
typedef struct DpReaderTable
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false: rebuild before the next use */
	Oid			index;
	bool		citus;			/* Citus manages the table: custom plans */
	SPIPlanPtr	plans[DP_NUM_READERS];	/* kept (SPI_keepplan); NULL: none */
	Size		plan_bytes[DP_NUM_READERS];
	char	   *sql[DP_NUM_READERS];	/* the query's text; NULL: none yet */
} DpReaderTable;

static HTAB *dp_reader_tables = NULL;
static MemoryContext dp_reader_cxt = NULL;

/*
 * The memory the kept plans and texts hold, against
 * deploy_progress.reader_cache_size: a table whose plan would go beyond it
 * is planned at each call (from its kept text, which is small).
 */
static Size dp_reader_cache_bytes = 0;

/*
 * The metrics of a table without in-flight rows ($2), for every table
 * (_table_metrics_empty_query()); stale when a function changes.
 */
static SPIPlanPtr dp_empty_metrics_plan = NULL;
static bool dp_empty_metrics_valid = false;

/* Marks the entry of relid (every entry for InvalidOid) stale. */
static void
dp_readers_invalidate(Oid relid)
{
	HASH_SEQ_STATUS status;
	DpReaderTable *t;

	if (dp_reader_tables == NULL)
		return;
	if (OidIsValid(relid))
	{
		t = hash_search(dp_reader_tables, &relid, HASH_FIND, NULL);
		if (t)
			t->valid = false;
		return;
	}
	hash_seq_init(&status, dp_reader_tables);
	while ((t = hash_seq_search(&status)) != NULL)
		t->valid = false;
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
	dp_empty_metrics_valid = false;
}

static void
dp_readers_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(DpReaderTable);
	dp_reader_cxt = AllocSetContextCreate(CacheMemoryContext, "deploy_progress reader plans",
										  ALLOCSET_SMALL_SIZES);
	ctl.hcxt = dp_reader_cxt;
	dp_reader_tables = hash_create("deploy_progress reader plans", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(dp_readers_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(ENUMOID, dp_readers_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, dp_readers_syscache_callback, (Datum) 0);
}

/*
 * How many _read_each() calls are running in this backend.  Only the
 * outermost frees plans: a nested call (a row-level security policy of a
 * tracked table that calls a reader, say) may run while one of the plans is
 * executing, and uses no cached plan at all.
 */
static int	dp_reader_depth = 0;

/* Forgets the plans and text of an entry, and their memory. */
static void
dp_reader_table_clear(DpReaderTable *t)
{
	for (int i = 0; i < DP_NUM_READERS; i++)
	{
		if (t->plans[i] != NULL)
			SPI_freeplan(t->plans[i]);
		if (t->sql[i] != NULL)
		{
			dp_reader_cache_bytes -= strlen(t->sql[i]) + 1;
			pfree(t->sql[i]);
		}
		dp_reader_cache_bytes -= t->plan_bytes[i];
		t->plans[i] = NULL;
		t->plan_bytes[i] = 0;
		t->sql[i] = NULL;
	}
}

/*
 * Removes the stale entries (of tables changed, untracked or dropped since
 * they were built), so that their memory does not stay behind; called by
 * the outermost _read_each() before it reads.
 */
static void
dp_readers_sweep(void)
{
	HASH_SEQ_STATUS status;
	DpReaderTable *t;

	hash_seq_init(&status, dp_reader_tables);
	while ((t = hash_seq_search(&status)) != NULL)
		if (!t->valid)
		{
			dp_reader_table_clear(t);
			(void) hash_search(dp_reader_tables, &t->relid, HASH_REMOVE, NULL);
		}
}

/* One text value of a one-row query of the extension's SQL. */
static char *
dp_reader_sql_value(const char *sql, int nargs, Oid *argtypes, Datum *args)
{
	int			ret = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, true, 1);
	char	   *value;

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "%s failed: %s", sql, SPI_result_code_string(ret));
	value = SPI_processed == 1 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
	SPI_freetuptable(SPI_tuptable);
	return value;
}

/*
 * Prepares a reader's query (with a generic plan at once) and keeps it; a
 * query over a table that Citus manages is planned for each run instead
 * (Citus plans a distributed query with its parameters' values).
 */
static SPIPlanPtr
dp_reader_prepare(const char *sql, int nargs, Oid *argtypes, bool custom)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes,
										  custom ? CURSOR_OPT_CUSTOM_PLAN : CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare_cursor failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/*
 * The entry of a table, made or refreshed when missing or stale (its plans
 * dropped, its in-flight index looked up again).  Called in the table's
 * subtransaction: an error here is the table's.
 */
static DpReaderTable *
dp_reader_table(const char *schema, Oid relid)
{
	DpReaderTable *t;
	bool		found;
	Oid			argtype = OIDOID;
	Datum		arg = ObjectIdGetDatum(relid);
	char	   *index;

	t = hash_search(dp_reader_tables, &relid, HASH_ENTER, &found);
	if (!found)
	{
		memset(t->plans, 0, sizeof(t->plans));
		memset(t->plan_bytes, 0, sizeof(t->plan_bytes));
		memset(t->sql, 0, sizeof(t->sql));
		t->valid = false;
	}
	if (t->valid)
		return t;
	Assert(dp_reader_depth == 1);
	dp_reader_table_clear(t);
	/* valid from here: an invalidation while building marks it stale again */
	t->valid = true;
	index = dp_reader_sql_value(psprintf("SELECT %s._in_flight_index_current($1)::pg_catalog.oid",
										 quote_identifier(schema)), 1, &argtype, &arg);
	t->index = index ? atooid(index) : InvalidOid;
	t->citus = dp_reader_sql_value(psprintf("SELECT %s._citus_kind($1)", quote_identifier(schema)),
								   1, &argtype, &arg) != NULL;
	return t;
}

/* The text of a table's query for a reader (_reader_query()). */
static char *
dp_reader_text(const char *schema, Oid relid, DpReader reader)
{
	Oid			argtypes[2] = {OIDOID, TEXTOID};
	Datum		args[2];
	char	   *sql;

	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(dp_readers[reader].name);
	sql = dp_reader_sql_value(psprintf("SELECT %1$s._reader_query(t, $2) FROM %1$s.tracked t"
									   " WHERE t.relid OPERATOR(pg_catalog.=) $1",
									   quote_identifier(schema)),
							  2, argtypes, args);
	if (sql == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not tracked", get_rel_name(relid)),
				 errdetail("It was untracked while it was being read.")));
	return sql;
}

/* The memory a plan holds: its source, query trees and generic plan. */
static Size
dp_plan_bytes(SPIPlanPtr plan)
{
	Size		bytes = 0;
	ListCell   *lc;

	foreach(lc, plan->plancache_list)
	{
		CachedPlanSource *ps = (CachedPlanSource *) lfirst(lc);

		bytes += MemoryContextMemAllocated(ps->context, true);
		if (ps->gplan != NULL)
			bytes += MemoryContextMemAllocated(ps->gplan->context, true);
	}
	return bytes;
}

/*
 * The prepared query of a table for a reader, built when missing from the
 * SQL the row generator makes (_reader_query()), whose text is kept.  A
 * new plan is the entry's, to be weighed after its first run
 * (dp_reader_weigh_plan()).
 */
static SPIPlanPtr
dp_reader_plan(const char *schema, DpReaderTable *t, DpReader reader)
{
	Oid			as_of_type = TIMESTAMPTZOID;
	char	   *sql = t->sql[reader];
	SPIPlanPtr	plan;

	if (t->plans[reader] != NULL)
		return t->plans[reader];
	if (sql == NULL)
	{
		sql = dp_reader_text(schema, t->relid, reader);
		if (dp_reader_cache_bytes + strlen(sql) + 1 <= (Size) dp_reader_cache_size * 1024)
		{
			t->sql[reader] = MemoryContextStrdup(dp_reader_cxt, sql);
			dp_reader_cache_bytes += strlen(sql) + 1;
		}
	}
	plan = dp_reader_prepare(sql, 1, &as_of_type, t->citus);
	/* (the entry does not move: dynahash never relocates entries) */
	t->plans[reader] = plan;
	t->plan_bytes[reader] = 0;
	return plan;
}

/*
 * After a new plan's first run (which made its generic plan): keeps it for
 * the session when it fits in deploy_progress.reader_cache_size, else frees
 * it (the table is then planned at each call, from its kept text).
 */
static void
dp_reader_weigh_plan(DpReaderTable *t, DpReader reader)
{
	SPIPlanPtr	plan = t->plans[reader];
	Size		bytes = dp_plan_bytes(plan);

	Assert(t->plan_bytes[reader] == 0);
	if (dp_reader_cache_bytes + bytes <= (Size) dp_reader_cache_size * 1024)
	{
		t->plan_bytes[reader] = bytes;
		dp_reader_cache_bytes += bytes;
	}
	else
	{
		SPI_freeplan(plan);
		t->plans[reader] = NULL;
	}
}

/* The plan of the metrics of a table without in-flight rows. */
static SPIPlanPtr
dp_reader_empty_metrics_plan(const char *schema)
{
	Oid			argtypes[2] = {TIMESTAMPTZOID, REGCLASSOID};
	char	   *sql;

	if (dp_empty_metrics_plan != NULL && dp_empty_metrics_valid)
		return dp_empty_metrics_plan;
	if (dp_empty_metrics_plan != NULL)
		SPI_freeplan(dp_empty_metrics_plan);
	dp_empty_metrics_plan = NULL;
	dp_empty_metrics_valid = true;
	sql = dp_reader_sql_value(psprintf("SELECT %s._table_metrics_empty_query()", quote_identifier(schema)),
							  0, NULL, NULL);
	if (sql == NULL)
		elog(ERROR, "_table_metrics_empty_query() gave no query");
	dp_empty_metrics_plan = dp_reader_prepare(sql, 2, argtypes, false);
	return dp_empty_metrics_plan;
}

/*
 * Whether a table may have in-flight rows: false only when its in-flight
 * index (which covers exactly those rows) has no entry at all, read from
 * the index itself without running a query.  Dead entries count: the
 * query then decides.
 */
static bool
dp_may_have_rows(Oid relid, Oid indexoid)
{
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	bool		found;

	heap = try_relation_open(relid, AccessShareLock);
	if (heap == NULL)
		return true;
	index = try_relation_open(indexoid, AccessShareLock);
	if (index == NULL || index->rd_rel->relkind != RELKIND_INDEX ||
		index->rd_rel->relam != BTREE_AM_OID || index->rd_index->indrelid != relid)
	{
		if (index)
			relation_close(index, NoLock);
		relation_close(heap, NoLock);
		return true;
	}
#if PG_VERSION_NUM >= 180000
	scan = index_beginscan(heap, index, GetActiveSnapshot(), NULL, 0, 0);
#else
	scan = index_beginscan(heap, index, GetActiveSnapshot(), 0, 0);
#endif
	index_rescan(scan, NULL, 0, NULL, 0);
	found = index_getnext_tid(scan, ForwardScanDirection) != NULL;
	index_endscan(scan);
	relation_close(index, NoLock);
	relation_close(heap, NoLock);
	return found;
}

/* Checks that a table's query gives the columns the reader returns. */
static void
dp_check_shape(Oid relid, TupleDesc got, TupleDesc want)
{
	if (got->natts != want->natts)
		elog(ERROR, "the query of table %u gives %d columns, not %d", relid, got->natts, want->natts);
	for (int i = 0; i < want->natts; i++)
		if (TupleDescAttr(got, i)->atttypid != TupleDescAttr(want, i)->atttypid)
			elog(ERROR, "column %d of the query of table %u is of type %s, not %s", i + 1, relid,
				 format_type_be(TupleDescAttr(got, i)->atttypid),
				 format_type_be(TupleDescAttr(want, i)->atttypid));
}

/*
 * Adds rows to the result, under the outer query's resource owner (the
 * temporary file of a large result is the outer query's, not the table's
 * subtransaction's).
 */
static void
dp_put_rows(ReturnSetInfo *rsinfo, ResourceOwner store_owner, TupleDesc desc,
			HeapTuple *rows, uint64 nrows)
{
	TupleDesc	want = rsinfo->setDesc;
	Datum	   *values = palloc(sizeof(Datum) * want->natts);
	bool	   *nulls = palloc(sizeof(bool) * want->natts);
	ResourceOwner sub = CurrentResourceOwner;

	CurrentResourceOwner = store_owner;
	for (uint64 i = 0; i < nrows; i++)
	{
		heap_deform_tuple(rows[i], desc, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, want, values, nulls);
	}
	CurrentResourceOwner = sub;
	pfree(values);
	pfree(nulls);
}

/*
 * Runs one table's query and adds its rows to the result; the caller holds
 * the subtransaction.  A table whose in-flight index is empty has no rows
 * (but for the metrics' zeros), without its query being run or built.
 */
static void
dp_read_table(const char *schema, Oid relid, DpReader reader, Datum as_of,
			  ReturnSetInfo *rsinfo, ResourceOwner store_owner)
{
	DpReaderTable *t;
	int			ret;

	if (dp_reader_depth > 1)
	{
		/* nested: the table's query, made and planned for this call only */
		Oid			as_of_type = TIMESTAMPTZOID;

		ret = SPI_execute_with_args(dp_reader_text(schema, relid, reader),
									1, &as_of_type, &as_of, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "the query of table %u failed: %s", relid, SPI_result_code_string(ret));
		dp_check_shape(relid, SPI_tuptable->tupdesc, rsinfo->setDesc);
		dp_put_rows(rsinfo, store_owner, SPI_tuptable->tupdesc, SPI_tuptable->vals, SPI_processed);
		SPI_freetuptable(SPI_tuptable);
		return;
	}

	t = dp_reader_table(schema, relid);
	if (OidIsValid(t->index) && !dp_may_have_rows(relid, t->index))
	{
		Datum		args[2];

		if (reader != DP_READER_METRICS)
			return;
		args[0] = as_of;
		args[1] = ObjectIdGetDatum(relid);
		ret = SPI_execute_plan(dp_reader_empty_metrics_plan(schema), args, NULL, true, 0);
	}
	else
	{
		ret = SPI_execute_plan(dp_reader_plan(schema, t, reader), &as_of, NULL, true, 0);
		if (t->plan_bytes[reader] == 0)
			dp_reader_weigh_plan(t, reader);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "the query of table %u failed: %s", relid, SPI_result_code_string(ret));
	dp_check_shape(relid, SPI_tuptable->tupdesc, rsinfo->setDesc);
	dp_put_rows(rsinfo, store_owner, SPI_tuptable->tupdesc, SPI_tuptable->vals, SPI_processed);
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
 * The loop of _read_each(): the tables _configs() gives, each read in a
 * subtransaction of its own.
 */
static void
dp_read_tables(const char *schema, DpReader reader, bool one, FunctionCallInfo fcinfo,
			   ReturnSetInfo *rsinfo, MemoryContext cxt)
{
	Oid			argtypes[4] = {REGCLASSOID, TIMESTAMPTZOID, TEXTOID, TEXTARRAYOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	Datum		privileges[2];
	int			ret;
	int			ntables;
	Oid		   *relids;
	ResourceOwner owner = CurrentResourceOwner;

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
	int			nestlevel;
	MemoryContext cxt;

	for (reader = 0; reader < DP_NUM_READERS; reader++)
		if (name && strcmp(name, dp_readers[reader].name) == 0)
			break;
	if (reader == DP_NUM_READERS)
		elog(ERROR, "unknown reader \"%s\"", name ? name : "(null)");
	if (dp_reader_tables == NULL)
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

	dp_reader_depth++;
	PG_TRY();
	{
		if (dp_reader_depth == 1)
		{
			/* a smaller deploy_progress.reader_cache_size than what is kept: rebuild */
			if (dp_reader_cache_bytes > (Size) dp_reader_cache_size * 1024)
				dp_readers_invalidate(InvalidOid);
			dp_readers_sweep();
		}
		dp_read_tables(schema, reader, one, fcinfo, rsinfo, cxt);
	}
	PG_CATCH();
	{
		dp_reader_depth--;
		PG_RE_THROW();
	}
	PG_END_TRY();
	dp_reader_depth--;

	AtEOXact_GUC(false, nestlevel);
	SPI_finish();
	return (Datum) 0;
}
