/*-------------------------------------------------------------------------
 *
 * claims.c
 *	  Owners and leases: claim() makes the calling session the owner of a
 *	  row, _owner_alive() tells whether an owner session still exists, and
 *	  the stamp trigger's hook refuses an owner's write to a row that
 *	  someone else ended.
 *
 * An owner is a server session, named by its process ID and its start time
 * (pg_stat_activity.backend_start, MyStartTimestamp here), so that a later
 * session that gets the same process ID is not taken for it.  Claims live
 * in deploy_progress.claims, which only the extension's owner may write:
 * claim() first checks, with the caller's rights, that the caller may
 * update the row (it locks it FOR UPDATE, which applies the table's
 * privileges and its UPDATE policies), then records the claim as the owner
 * of deploy_progress.claims, inside a security-restricted operation.
 *
 * The trigger's hook costs nothing in a session that never called claim()
 * (a flag of the backend), and otherwise looks a claim up only when the
 * old row is in a terminal phase (the lease) or the write moves it into
 * one (the owner ending its own row ends its claim).
 *
 * IDENTIFICATION
 *	  src/claims.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/procarray.h"
#if PG_VERSION_NUM >= 140000
#include "utils/backend_status.h"
#else
#include "pgstat.h"
#endif
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "deploy_progress.h"

/*
 * Whether this session ever claimed a row: until it does, its writes never
 * look at claims.  (A claim rolled back leaves it set; that costs a look-up
 * on writes to ended rows only.)
 */
static bool dp_claimed_here = false;

/* The condition selecting this session's claim on a row ($1 relid, $2 key, $3 pid, $4 start). */
#define DP_CLAIM_MINE \
	" WHERE c.relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass" \
	"   AND c.key OPERATOR(pg_catalog.=) $2" \
	"   AND c.pid OPERATOR(pg_catalog.=) $3" \
	"   AND c.backend_start OPERATOR(pg_catalog.=) $4"

/* The owner of deploy_progress.claims, InvalidOid when the schema has none. */
static Oid
claims_owner(void)
{
	return dp_extension_table_owner("claims");
}

/* The start time of the live backend with process ID "pid", from the status snapshot. */
static bool
snapshot_start(int pid, TimestampTz *start)
{
	int			n = pgstat_fetch_stat_numbackends();

	for (int i = 1; i <= n; i++)
	{
#if PG_VERSION_NUM >= 160000
		LocalPgBackendStatus *l = pgstat_get_local_beentry_by_index(i);
#else
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);
#endif

		if (l && l->backendStatus.st_procpid == pid)
		{
			*start = l->backendStatus.st_proc_start_timestamp;
			return true;
		}
	}
	return false;
}

/*
 * _owner_alive(pid, backend_start): whether the session that started at
 * backend_start with process ID pid is still connected.  The process array
 * says whether a process with that ID exists now; the backend status
 * snapshot (taken once per transaction, as pg_stat_activity's) gives its
 * start time.  A snapshot older than that process (it started after the
 * transaction first looked) is taken again, so that a session that
 * connected and claimed a row during a long transaction (a fail_stuck()
 * sweep) is never taken for gone.  NULL on a standby, which cannot see
 * the primary's sessions.  C, so that every reader may see this one fact
 * without seeing other roles' sessions.
 */
PG_FUNCTION_INFO_V1(dp_owner_alive);
Datum
dp_owner_alive(PG_FUNCTION_ARGS)
{
	int32		pid = PG_GETARG_INT32(0);
	TimestampTz start = PG_GETARG_TIMESTAMPTZ(1);
	TimestampTz seen;

	/* a standby cannot see the primary's sessions: unknown */
	if (RecoveryInProgress())
		PG_RETURN_NULL();
	if (pid == MyProcPid)
		PG_RETURN_BOOL(start == MyStartTimestamp);
	if (pid <= 0 || BackendPidGetProc(pid) == NULL)
		PG_RETURN_BOOL(false);
	if (snapshot_start(pid, &seen) && seen == start)
		PG_RETURN_BOOL(true);
	/* a snapshot from before that process, or a new process with that ID */
#if PG_VERSION_NUM >= 140000
	pgstat_clear_backend_activity_snapshot();
#else
	pgstat_clear_snapshot();
#endif
	PG_RETURN_BOOL(snapshot_start(pid, &seen) && seen == start);
}

/*
 * claim(tbl, key): the calling session becomes the owner of the row (see
 * above).  _claim_row() checks and locks the row with the caller's rights
 * and gives the tracked table and the row's key text; _claim_write(),
 * which only the extension's owner may run, records the claim or reports
 * the live owner that holds it.
 */
PG_FUNCTION_INFO_V1(dp_claim);
Datum
dp_claim(PG_FUNCTION_ARGS)
{
	const char *schema;
	StringInfoData sql;
	Oid			argtypes[4] = {REGCLASSOID, TEXTOID, INT4OID, TIMESTAMPTZOID};
	Datum		args[4];
	bool		isnull;
	int			ret;
	Oid			owner;
	DpSavedUser saved;
	int			nestlevel;
	MemoryContext outer = CurrentMemoryContext;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table and key must not be null"),
				 errhint("Pass the tracked table and the row's key text, for example claim('deployments', '42').")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot claim rows on a standby"),
				 errdetail("claim() records the calling session as the row's owner, and this server is in recovery (read-only)."),
				 errhint("Connect the worker to the primary.")));

	schema = quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));

	/* the caller's right to work on the row, checked and locked as the caller */
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT c.relid, c.row_key FROM %s._claim_row($1, $2) c", schema);
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	dp_spi_connect();
	ret = SPI_execute_with_args(sql.data, 2, argtypes, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "_claim_row() failed: %s", SPI_result_code_string(ret));
	args[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	Assert(!isnull);
	args[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	Assert(!isnull);
	{
		MemoryContext spi = MemoryContextSwitchTo(outer);

		args[1] = PointerGetDatum(PG_DETOAST_DATUM_COPY(args[1]));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();

	/* the claim, written as the owner of deploy_progress.claims */
	owner = claims_owner();
	if (!OidIsValid(owner))
		elog(ERROR, "could not find table " DP_SCHEMA ".claims");
	args[2] = Int32GetDatum(MyProcPid);
	args[3] = TimestampTzGetDatum(MyStartTimestamp);
	resetStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s._claim_write($1, $2, $3, $4)", schema);
	dp_spi_connect_as(owner, &saved);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	ret = SPI_execute_with_args(sql.data, 4, argtypes, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "_claim_write() failed: %s", SPI_result_code_string(ret));
	AtEOXact_GUC(false, nestlevel);
	dp_spi_finish_as(&saved);

	dp_claimed_here = true;
	PG_RETURN_VOID();
}

/*
 * The failure reason of an ended row, for the lease's message: the row's
 * failure reason column, else the reason of its last transition in the
 * history; NULL when neither says.  Called connected to SPI as the owner of
 * the extension's tables.
 */
static char *
ended_reason(DpTrack *t, TupleTableSlot *oldslot, text *key)
{
	Oid			argtypes[2] = {OIDOID, TEXTOID};
	Datum		args[2];
	bool		isnull;
	int			ret;

	if (t->att[DP_ROLE_FAILURE_REASON])
	{
		Datum		d = slot_getattr(oldslot, t->att[DP_ROLE_FAILURE_REASON], &isnull);

		if (!isnull)
			return TextDatumGetCString(d);
	}
	args[0] = ObjectIdGetDatum(t->tracked_relid);
	args[1] = PointerGetDatum(key);
	ret = SPI_execute_with_args("SELECT h.reason FROM " DP_SCHEMA ".history h"
								" WHERE h.relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass"
								"   AND h.key OPERATOR(pg_catalog.=) $2"
								" ORDER BY h.id DESC LIMIT 1",
								2, argtypes, args, NULL, true, 1);
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			return TextDatumGetCString(d);
	}
	return NULL;
}

/*
 * Looks up this session's claim on the row of "oldslot" as the owner of
 * the extension's tables: refuses the write when "ended" (the row's old
 * phase "old_idx" is terminal) and the claim exists, else deletes it.
 */
static void
claim_lookup(DpTrack *t, Relation rel, TupleTableSlot *oldslot, int old_idx, bool ended)
{
	Oid			owner = claims_owner();
	text	   *key;
	DpSavedUser saved;
	Oid			argtypes[4] = {OIDOID, TEXTOID, INT4OID, TIMESTAMPTZOID};
	Datum		args[4];
	int			ret;

	if (!OidIsValid(owner))
		return;					/* a schema without claims */
	key = dp_row_key(t, rel, oldslot);
	args[0] = ObjectIdGetDatum(t->tracked_relid);
	args[1] = PointerGetDatum(key);
	args[2] = Int32GetDatum(MyProcPid);
	args[3] = TimestampTzGetDatum(MyStartTimestamp);
	dp_spi_connect_as(owner, &saved);
	ret = SPI_execute_with_args(ended ?
								"SELECT FROM " DP_SCHEMA ".claims c" DP_CLAIM_MINE :
								"DELETE FROM " DP_SCHEMA ".claims c" DP_CLAIM_MINE,
								4, argtypes, args, NULL, false, 0);
	if (ret != (ended ? SPI_OK_SELECT : SPI_OK_DELETE))
		elog(ERROR, "looking up a claim failed: %s", SPI_result_code_string(ret));
	if (ended && SPI_processed > 0)
	{
		DpPhase    *p = &t->phases[old_idx];
		char	   *reason = ended_reason(t, oldslot, key);

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("row %s of table \"%s\" has ended and is no longer this session's to work on",
						quote_literal_cstr(text_to_cstring(key)), RelationGetRelationName(rel)),
				 reason ?
				 errdetail("Someone else moved it to %s phase \"%s\" while this session claimed it; reason: %s.",
						   dp_kind_name(p->kind), p->name, reason) :
				 errdetail("Someone else moved it to %s phase \"%s\" while this session claimed it.",
						   dp_kind_name(p->kind), p->name),
				 errhint("Stop working on it and call deploy_progress.release() on it; claim another row.")));
	}
	dp_spi_finish_as(&saved);
}

/*
 * Whether deploy_progress.claims holds a claim on the row of table "relid"
 * with key text "key", by any session, as the latest snapshot sees it: an
 * index probe, without SPI, so that the check costs little on the writes
 * that make it (a row's insertion and its restart).  False at once when
 * the claims table is empty on disk, as it is for those who never claim.
 */
static bool
claim_exists(DpTrack *t, Relation trel, TupleTableSlot *slot, text **key_out)
{
	Oid			nsp = get_namespace_oid(DP_SCHEMA, true);
	Oid			claims = OidIsValid(nsp) ? get_relname_relid("claims", nsp) : InvalidOid;
	Oid			pkey = OidIsValid(nsp) ? get_relname_relid("claims_pkey", nsp) : InvalidOid;
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData sk[2];
	text	   *key;
	bool		found;

	if (!OidIsValid(claims) || !OidIsValid(pkey))
		return false;			/* a schema without claims */
	rel = table_open(claims, AccessShareLock);
	if (RelationGetNumberOfBlocks(rel) == 0)
	{
		table_close(rel, AccessShareLock);
		return false;
	}
	key = dp_row_key(t, trel, slot);
	*key_out = key;
	ScanKeyInit(&sk[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(t->tracked_relid));
	ScanKeyInit(&sk[1], 2, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(key));
	sk[1].sk_collation = DEFAULT_COLLATION_OID;
	scan = systable_beginscan(rel, pkey, true, GetLatestSnapshot(), 2, sk);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * A new run of a row: its insertion, or its restart (a write by anyone that
 * moves it out of a terminal phase).  A claim left on its key belongs to
 * an earlier run (a deleted row whose key was used again, an ended row
 * whose owner ended without release()): it is removed, so that the new run
 * is not reported owner_gone and can be claimed.  A row inserted into a
 * partition may be a row moved there from another partition by an UPDATE
 * of its partition key, whose claim is still its own: there only the
 * claims of owners that have ended are removed (a moved row whose owner is
 * gone is then reported by its deadlines instead).  Every session checks
 * this, claimer or not; it costs an index probe of the claims table (none
 * when that table is empty) once per run, never on progress writes.
 */
void
dp_claims_on_new_run(DpTrack *t, Relation rel, TupleTableSlot *oldslot,
					 TupleTableSlot *newslot, const DpChange *ch)
{
	text	   *key = NULL;
	Oid			owner;
	DpSavedUser saved;
	Oid			argtypes[2] = {OIDOID, TEXTOID};
	Datum		args[2];
	int			ret;

	if (oldslot &&
		!(ch->entered && ch->new_idx >= 0 && ch->old_idx >= 0 &&
		  DP_KIND_IS_TERMINAL(t->phases[ch->old_idx].kind) &&
		  !DP_KIND_IS_TERMINAL(t->phases[ch->new_idx].kind)))
		return;
	if (!claim_exists(t, rel, newslot, &key))
		return;
	if (!OidIsValid(owner = claims_owner()))
		return;
	args[0] = ObjectIdGetDatum(t->tracked_relid);
	args[1] = PointerGetDatum(key);
	dp_spi_connect_as(owner, &saved);
	ret = SPI_execute_with_args(oldslot == NULL && rel->rd_rel->relispartition ?
								"DELETE FROM " DP_SCHEMA ".claims c"
								" WHERE c.relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass"
								"   AND c.key OPERATOR(pg_catalog.=) $2"
								"   AND NOT " DP_SCHEMA "._owner_alive(c.pid, c.backend_start)" :
								"DELETE FROM " DP_SCHEMA ".claims c"
								" WHERE c.relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass"
								"   AND c.key OPERATOR(pg_catalog.=) $2",
								2, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "removing the claims of an earlier run failed: %s", SPI_result_code_string(ret));
	dp_spi_finish_as(&saved);
}

/*
 * The stamp trigger's lease check, for an UPDATE, before anything else is
 * checked: in a session that claimed rows, a write to a row in a terminal
 * phase that this session still claims is refused (someone else ended the
 * row: its worker must stop).
 */
void
dp_claims_check_lease(DpTrack *t, Relation rel, TupleTableSlot *oldslot)
{
	bool		isnull;
	Datum		phase;
	int			old_idx;

	if (likely(!dp_claimed_here))
		return;
	phase = slot_getattr(oldslot, t->att_phase, &isnull);
	if (isnull || (old_idx = dp_phase_index(t, phase)) < 0 ||
		!DP_KIND_IS_TERMINAL(t->phases[old_idx].kind))
		return;
	claim_lookup(t, rel, oldslot, old_idx, true);
}

/*
 * After dp_classify(): a write by this session that moves a row into a
 * terminal phase ends this session's claim on it.
 */
void
dp_claims_on_end(DpTrack *t, Relation rel, TupleTableSlot *oldslot, const DpChange *ch)
{
	if (likely(!dp_claimed_here))
		return;
	if (ch->entered && ch->new_idx >= 0 && DP_KIND_IS_TERMINAL(t->phases[ch->new_idx].kind) &&
		ch->old_idx >= 0 && !DP_KIND_IS_TERMINAL(t->phases[ch->old_idx].kind))
		claim_lookup(t, rel, oldslot, ch->old_idx, false);
}

/*
 * After a batch of fail_stuck() ("batch" as _fail_batch() gives it) for
 * reason "why" in table "relid": the claims of the rows it failed for
 * owner_gone are removed, since nobody is left to hold them (a session that
 * took a row over in the meantime keeps its claim, and meets the lease).
 * Called by dp_fail_batch_as_owner() once it has checked the caller's
 * rights on the table.
 */
void
dp_claims_after_sweep(Oid relid, const char *why, Datum batch)
{
	Oid			owner;
	DpSavedUser saved;
	int			nestlevel;
	Oid			argtypes[2] = {OIDOID, JSONBOID};
	Datum		args[2];
	int			ret;

	if (strcmp(why, "owner_gone") != 0 || !OidIsValid(owner = claims_owner()))
		return;
	args[0] = ObjectIdGetDatum(relid);
	args[1] = batch;
	dp_spi_connect_as(owner, &saved);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	ret = SPI_execute_with_args("DELETE FROM " DP_SCHEMA ".claims c"
								" USING pg_catalog.jsonb_array_elements($2 OPERATOR(pg_catalog.->) 'rows') r"
								" WHERE c.relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass"
								"   AND c.key OPERATOR(pg_catalog.=) (r OPERATOR(pg_catalog.->>) 'key')"
								"   AND NOT " DP_SCHEMA "._owner_alive(c.pid, c.backend_start)",
								2, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "removing the claims of failed rows failed: %s", SPI_result_code_string(ret));
	AtEOXact_GUC(false, nestlevel);
	dp_spi_finish_as(&saved);
}
