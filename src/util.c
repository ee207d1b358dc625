/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Helpers shared by the trigger functions: the trigger-protocol checks
 *	  and SPI sessions run as another role.
 *
 * Every trigger function of the extension starts with the same checks
 * (called by the trigger manager, fired at the right time, for each row, for
 * the right events), and the ones that write the extension's own tables
 * (the side table) do so through SPI as the owner of those tables, inside a
 * security-restricted operation.  Both are written here once.
 *
 * IDENTIFICATION
 *	  src/util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "access/htup_details.h"
#include "utils/typcache.h"
#include "utils/snapmgr.h"
#include "catalog/pg_class.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "deploy_progress.h"

/*
 * The TriggerData of a call of trigger function "func" (its SQL name, for
 * messages), after checking that the trigger manager called it at the time
 * "timing" allows and, when "insert_update_only", for an INSERT or UPDATE.
 */
TriggerData *
dp_trigger_data(FunctionCallInfo fcinfo, const char *func, DpTriggerTiming timing,
				bool insert_update_only)
{
	TriggerData *trigdata;
	TriggerEvent ev;
	bool		ok;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s was not called by the trigger manager", func)));
	trigdata = (TriggerData *) fcinfo->context;
	ev = trigdata->tg_event;
	switch (timing)
	{
		case DP_TRIGGER_BEFORE_ROW:
			ok = TRIGGER_FIRED_BEFORE(ev) && TRIGGER_FIRED_FOR_ROW(ev);
			break;
		case DP_TRIGGER_AFTER_ROW:
			ok = TRIGGER_FIRED_AFTER(ev) && TRIGGER_FIRED_FOR_ROW(ev);
			break;
		case DP_TRIGGER_AFTER_ROW_OR_TRUNCATE:
			ok = TRIGGER_FIRED_AFTER(ev) &&
				(TRIGGER_FIRED_FOR_ROW(ev) || TRIGGER_FIRED_BY_TRUNCATE(ev));
			break;
		default:
			elog(ERROR, "unknown trigger timing %d", (int) timing);
			ok = false;			/* keep compiler quiet */
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be fired %s ... FOR EACH ROW%s", func,
						timing == DP_TRIGGER_BEFORE_ROW ? "BEFORE" : "AFTER",
						timing == DP_TRIGGER_AFTER_ROW_OR_TRUNCATE ? " or AFTER TRUNCATE" : "")));
	if (insert_update_only && !TRIGGER_FIRED_BY_INSERT(ev) && !TRIGGER_FIRED_BY_UPDATE(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be fired for INSERT or UPDATE", func)));
	return trigdata;
}

/*
 * The owner of the extension's table "relname" (the role its triggers write
 * it as); InvalidOid when the installed schema has no such table.
 */
Oid
dp_extension_table_owner(const char *relname)
{
	Oid			nsp = get_namespace_oid(DP_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		return InvalidOid;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* SPI_connect(), which cannot fail but by an error of its own. */
void
dp_spi_connect(void)
{
	int			ret;

	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
}

/*
 * Become "owner" inside a security-restricted operation, as VACUUM and
 * REFRESH MATERIALIZED VIEW do for the code of another role, and connect to
 * SPI; dp_spi_finish_as() undoes both.  An error in between needs no
 * cleanup: transaction abort restores the user and closes SPI.
 */
void
dp_spi_connect_as(Oid owner, DpSavedUser *saved)
{
	Assert(OidIsValid(owner));
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner, saved->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	dp_spi_connect();
}

void
dp_spi_finish_as(const DpSavedUser *saved)
{
	SPI_finish();
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

/*
 * Whether the text a type's output function gives may depend on settings
 * (DateStyle, TimeZone, IntervalStyle, extra_float_digits, bytea_output,
 * ...): true for every type but the built-in ones known not to, enums, and
 * domains, arrays and composites of those.  _key_settings() in SQL makes the
 * same decision; keep the two lists equal.
 */
bool
dp_type_text_depends_on_settings(Oid typid)
{
	char		typtype;

	check_stack_depth();
	typid = getBaseType(typid);
	switch (typid)
	{
		case BOOLOID:
		case CHAROID:
		case NAMEOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case TEXTOID:
		case BPCHAROID:
		case VARCHAROID:
		case NUMERICOID:
		case UUIDOID:
			return false;
		default:
			break;
	}
	typtype = get_typtype(typid);
	if (typtype == TYPTYPE_ENUM)
		return false;
	if (OidIsValid(get_element_type(typid)))
		return dp_type_text_depends_on_settings(get_element_type(typid));
	if (typtype == TYPTYPE_COMPOSITE)
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(typid, -1);
		bool		depends = false;

		for (int i = 0; i < desc->natts && !depends; i++)
			if (!TupleDescAttr(desc, i)->attisdropped)
				depends = dp_type_text_depends_on_settings(TupleDescAttr(desc, i)->atttypid);
		ReleaseTupleDesc(desc);
		return depends;
	}
	return true;
}

/*
 * With deploy_progress.stamping off, a write leaves no stamps and no
 * history, which the history's readers take as audit data: only the tracked
 * table's owner (a member of the owning role, a superuser) or a role the
 * owner granted the TRIGGER privilege on the table may write it so.  Called
 * by the triggers when the setting is off.
 */
void
dp_check_stamping_off(DpTrack *t)
{
	Oid			relid = t->tracked_relid;
	Oid			user = GetUserId();
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	if (has_privs_of_role(user, owner) ||
		pg_class_aclcheck(relid, user, ACL_TRIGGER) == ACLCHECK_OK)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to write table \"%s\" with deploy_progress.stamping off",
					get_rel_name(relid)),
			 errdetail("A write with stamping off leaves no stamps and no history; only the table's owner, "
					   "or a role it grants the TRIGGER privilege on the table, may make one."),
			 errhint("RESET deploy_progress.stamping, or ask the table's owner to GRANT TRIGGER ON %s TO %s.",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid)),
					 quote_identifier(GetUserNameFromId(user, false)))));
}

/*
 * A read-only query on the extension's configuration, with the latest
 * snapshot rather than the transaction's: the configuration is read like a
 * catalog, so that a REPEATABLE READ or SERIALIZABLE transaction that began
 * before track(), define_lifecycle() or ALTER EXTENSION UPDATE committed
 * neither misses the configuration nor caches an old one for the session.
 */
int
dp_spi_execute_latest(const char *sql, int nargs, Oid *argtypes, Datum *args, long tcount)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	return SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(), InvalidSnapshot,
								true, false, tcount);
}
