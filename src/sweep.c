/*-------------------------------------------------------------------------
 *
 * sweep.c
 *	  fail_stuck()'s batches, run as each table's owner.
 *
 * fail_stuck() is typically run by a more privileged role than the owners of
 * the tables it sweeps (a superuser's pg_cron job).  Its UPDATE fires the
 * tables' triggers and evaluates their defaults, constraints and index
 * expressions, all code of the table's owner; run with the sweeper's rights,
 * that code could do anything the sweeper may.  So each batch runs as the
 * table's owner inside a security-restricted operation with a safe
 * search_path, as PostgreSQL's own maintenance commands (VACUUM, ANALYZE,
 * REFRESH MATERIALIZED VIEW, CREATE INDEX) run another role's code.
 *
 * Where row-level security applies to the caller, the caller's policies
 * must decide which rows it may fail, so the batch runs as the caller, like
 * any UPDATE the caller makes (PostgreSQL runs a table's triggers with the
 * rights of whoever writes it); superusers, roles with BYPASSRLS and the
 * owner (without FORCE ROW LEVEL SECURITY) bypass row security, so the
 * switch to the owner protects them.  Either way the batch is a
 * security-restricted operation: the owner's code cannot SET ROLE (which
 * PostgreSQL checks against the session user, often a superuser in a cron
 * job) nor SET SESSION AUTHORIZATION, and its settings end with the batch.
 *
 * IDENTIFICATION
 *	  src/sweep.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "deploy_progress.h"

PG_FUNCTION_INFO_V1(dp_fail_batch_as_owner);

/* The owner of relation "relid"; an error when there is none. */
static Oid
relation_owner(Oid relid)
{
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid),
				 errhint("The table was dropped; untrack() removes what is kept of it.")));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * _fail_batch_as_owner(tbl, why, batch_size, as_of, seen_oids, seen_tids):
 * _fail_batch() with the same arguments, as the owner of "tbl" (see above).
 */
Datum
dp_fail_batch_as_owner(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			caller = GetUserId();
	Oid			owner = relation_owner(relid);
	bool		as_owner;
	DpSavedUser saved;
	int			nestlevel;
	char	   *schema;
	StringInfoData sql;
	Oid			argtypes[6] = {REGCLASSOID, TEXTOID, INT4OID, TIMESTAMPTZOID, OIDARRAYOID, TIDARRAYOID};
	Datum		args[6];
	int			ret;
	bool		isnull;
	Datum		result;
	MemoryContext outer = CurrentMemoryContext;

	/* the sweeper's own right to do this, before any switch */
	if (pg_class_aclcheck(relid, caller, ACL_SELECT) != ACLCHECK_OK ||
		pg_class_aclcheck(relid, caller, ACL_UPDATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to fail stuck rows of table \"%s\"", get_rel_name(relid)),
				 errdetail("fail_stuck() needs the SELECT and UPDATE privileges on the table."),
				 errhint("Ask the table's owner to grant them, or run the sweep as a role that has them.")));
	as_owner = check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED;

	for (int i = 0; i < 6; i++)
		args[i] = PG_GETARG_DATUM(i);
	/* _fail_batch() lives in this function's schema, the extension's */
	schema = get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid));
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s._fail_batch($1, $2, $3, $4, $5, $6)", quote_identifier(schema));

	dp_spi_connect_as(as_owner ? owner : caller, &saved);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	ret = SPI_execute_with_args(sql.data, 6, argtypes, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "_fail_batch() failed: %s", SPI_result_code_string(ret));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	Assert(!isnull);
	/* out of SPI's memory before it goes */
	{
		MemoryContext spi = MemoryContextSwitchTo(outer);

		result = PointerGetDatum(PG_DETOAST_DATUM_COPY(result));
		MemoryContextSwitchTo(spi);
	}

	AtEOXact_GUC(false, nestlevel);
	dp_spi_finish_as(&saved);
	/* the claims of rows failed for owner_gone go with them (claims.c) */
	dp_claims_after_sweep(relid, text_to_cstring(PG_GETARG_TEXT_PP(1)), result);
	PG_RETURN_DATUM(result);
}
