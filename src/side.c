/*-------------------------------------------------------------------------
 *
 * side.c
 *	  Side storage: the timings of tables tracked with storage 'side' kept in
 *	  deploy_progress.timings, keyed by the tracked table and the row's key.
 *
 * Tables that cannot be given timing columns ("don't ALTER my 166M-row
 * table") are tracked with storage 'side': deploy_progress.stamp() still
 * checks their phases and counters, and deploy_progress.stamp_side(), an
 * AFTER ROW trigger, keeps the row's timings in the side table with the
 * same rules, as an upsert per write.  The side table belongs to the
 * extension's owner and is written as that role inside a security-
 * restricted operation, so that writers of a tracked table need no
 * privilege on it and no code of theirs runs with its owner's rights.
 *
 * A row is filed under the text of its key (dp_row_key(), also the key of
 * the history and of the events), and under the tracked table: rows of a
 * partition are filed under the partitioned table, where timings() looks
 * for them.  The statements are prepared once per backend, for the
 * timing columns the side table has: they are prepared again when an
 * invalidation of the table (ALTER EXTENSION UPDATE) changed them, so that
 * a library newer than the installed schema writes what that schema has.
 *
 * IDENTIFICATION
 *	  src/side.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "utils/guc.h"

#include "deploy_progress.h"

/*
 * How the side-table upsert sets each timing the side table keeps (the
 * roles marked DP_ROLE_SIDE, in columns named as the roles), with the rules
 * of dp_stamp(): its value in a new row, and its new value in an existing
 * row "s", where %s stands for the time to stamp (see dp_side_upsert_sql()).
 * The upsert's parameters: $1 the tracked table, $2 the key, $3 the
 * statement's time, $4 a phase was entered, $5 an active one, $6 a
 * terminal one, $7 the row left a terminal phase (a restart), $8 the
 * counters moved, $9 the row is new (an INSERT).
 */
typedef struct DpSideRule
{
	const char *insert;
	const char *update;
} DpSideRule;

static const DpSideRule dp_side_rules[DP_NUM_ROLES] = {
	[DP_ROLE_PHASE_UPDATED_AT] = {"$3", "CASE WHEN $4 THEN %s ELSE s.phase_updated_at END"},
	[DP_ROLE_PROGRESS_UPDATED_AT] = {"$3", "CASE WHEN $4 OR $8 THEN %s ELSE s.progress_updated_at END"},
	[DP_ROLE_HEARTBEAT_AT] = {"$3", "%s"},
	[DP_ROLE_STARTED_AT] = {"CASE WHEN $5 THEN $3 END",
	"CASE WHEN $9 THEN EXCLUDED.started_at WHEN $5 AND s.started_at IS NULL THEN %s ELSE s.started_at END"},
	[DP_ROLE_FINISHED_AT] = {"CASE WHEN $6 THEN $3 END",
	"CASE WHEN $6 THEN %s WHEN $7 OR $9 THEN NULL ELSE s.finished_at END"},
};

static SPIPlanPtr dp_side_upsert = NULL;
static SPIPlanPtr dp_side_delete = NULL;
static SPIPlanPtr dp_side_rekey = NULL;
static SPIPlanPtr dp_side_truncate = NULL;
static SPIPlanPtr dp_side_lookup = NULL;

/*
 * The timing columns deploy_progress.timings has, by role, as they were
 * when dp_tables_generation was dp_side_generation.  Every schema version
 * has its relid and key columns (required); a timing column that a schema
 * lacks is left out of the statements.
 */
static bool dp_side_has[DP_NUM_ROLES];
static uint32 dp_side_generation = 0;

/*
 * Look at the side table's columns again after an invalidation that may
 * have changed them (ALTER EXTENSION UPDATE), and prepare the statements
 * again when they did.
 */
static void
dp_side_check_columns(void)
{
	SPIPlanPtr *plans[] = {&dp_side_upsert, &dp_side_delete, &dp_side_rekey,
	&dp_side_truncate, &dp_side_lookup};
	bool		has[DP_NUM_ROLES];
	Oid			relid;
	int			r;

	if (likely(dp_side_generation == dp_tables_generation))
		return;
	relid = get_relname_relid("timings", get_namespace_oid(DP_SCHEMA, false));
	if (!OidIsValid(relid))
		elog(ERROR, "could not find table " DP_SCHEMA ".timings");
	for (r = 0; r < DP_NUM_ROLES; r++)
		has[r] = dp_role_is(r, DP_ROLE_SIDE) && get_attnum(relid, dp_role_name(r)) > 0;
	if (dp_side_generation == 0 || memcmp(has, dp_side_has, sizeof(has)) != 0)
	{
		for (r = 0; r < (int) lengthof(plans); r++)
			if (*plans[r])
			{
				SPI_freeplan(*plans[r]);
				*plans[r] = NULL;
			}
		memcpy(dp_side_has, has, sizeof(has));
	}
	dp_side_generation = dp_tables_generation;
}

/*
 * The upsert of a row's timings, for the columns the side table has.  An
 * existing row is stamped with $3 (the statement's time), or with the wall
 * clock when the row already holds a later stamp, so that its stamps never
 * go back (see dp_stamp()).
 */
static char *
dp_side_upsert_sql(void)
{
	StringInfoData now;
	StringInfoData sql;
	StringInfoData values;
	const char *sep = "";
	int			r;

	initStringInfo(&now);
	initStringInfo(&sql);
	initStringInfo(&values);
	appendStringInfoString(&now, "(CASE WHEN $3 OPERATOR(pg_catalog.<) GREATEST(");
	appendStringInfoString(&sql, "INSERT INTO " DP_SCHEMA ".timings AS s (relid, key");
	for (r = 0; r < DP_NUM_ROLES; r++)
		if (dp_side_has[r])
		{
			if (dp_side_rules[r].insert == NULL)
				elog(ERROR, "side-table role \"%s\" has no rule", dp_role_name(r));
			appendStringInfo(&now, "%ss.%s", sep, dp_role_name(r));
			appendStringInfo(&sql, ", %s", dp_role_name(r));
			appendStringInfo(&values, ", %s", dp_side_rules[r].insert);
			sep = ", ";
		}
	appendStringInfoString(&now, ") THEN pg_catalog.clock_timestamp() ELSE $3 END)");
	appendStringInfo(&sql, ") VALUES ($1, $2%s) ON CONFLICT (relid, key) DO ", values.data);
	if (*sep == '\0')
		appendStringInfoString(&sql, "NOTHING");
	else
	{
		appendStringInfoString(&sql, "UPDATE SET");
		sep = " ";
		for (r = 0; r < DP_NUM_ROLES; r++)
			if (dp_side_has[r])
			{
				appendStringInfo(&sql, "%s%s = ", sep, dp_role_name(r));
				appendStringInfo(&sql, dp_side_rules[r].update, now.data);
				sep = ", ";
			}
	}
	return sql.data;
}

/*
 * Run one of the side-table statements, prepared once per backend in
 * *plan, and check that it did what "expected" says; "what" names it in
 * the can't-happen error.
 */
static void
dp_side_exec(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			 Datum *args, int expected, const char *what)
{
	bool		read_only = (expected == SPI_OK_SELECT);
	int			ret;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for side-table statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	ret = SPI_execute_plan(*plan, args, NULL, read_only, read_only ? 1 : 0);
	if (ret != expected)
		elog(ERROR, "side-table %s failed: %s", what, SPI_result_code_string(ret));
}

/*
 * Key text of a row: the key column's text, or the row literal of a
 * composite key (what ROW(a, b)::text gives in SQL).  The text must be the
 * same in every session, since side rows and history are filed under it: a
 * key of a type whose text depends on settings (a date's on DateStyle, a
 * timestamptz's on TimeZone, ...) is written under fixed ones, those of
 * _canonical_text() in SQL (DateStyle ISO, MDY; IntervalStyle postgres;
 * TimeZone UTC; extra_float_digits 1; bytea_output hex).
 */
static const char *const dp_key_settings[][2] = {
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "1"},
	{"bytea_output", "hex"},
};

text *
dp_row_key(DpTrack *t, Relation rel, TupleTableSlot *slot)
{
	Datum		vals[INDEX_MAX_KEYS];
	bool		nulls[INDEX_MAX_KEYS];
	int			k;
	int			nestlevel = -1;
	char	   *out;

	Assert(t->nkeys >= 1 && t->nkeys <= INDEX_MAX_KEYS);
	for (k = 0; k < t->nkeys && k < INDEX_MAX_KEYS; k++)
	{
		Assert(t->key_atts[k] >= 1 && t->key_atts[k] <= RelationGetDescr(rel)->natts);
		vals[k] = slot_getattr(slot, t->key_atts[k], &nulls[k]);
		if (nulls[k] && t->nkeys == 1)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("key of a row of tracked table \"%s\" cannot be null",
							RelationGetRelationName(rel)),
					 errhint("Track the table with a key whose columns are NOT NULL.")));
	}
	if (t->key_settings)
	{
		nestlevel = NewGUCNestLevel();
		for (int i = 0; i < (int) lengthof(dp_key_settings); i++)
			(void) set_config_option(dp_key_settings[i][0], dp_key_settings[i][1],
									 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	}
	if (t->nkeys == 1)
		out = OutputFunctionCall(&t->key_out[0], vals[0]);
	else
		out = OutputFunctionCall(&t->key_record_out,
								 HeapTupleGetDatum(heap_form_tuple(t->key_desc, vals, nulls)));
	if (t->key_settings)
		AtEOXact_GUC(true, nestlevel);
	return cstring_to_text(out);
}

/*
 * phase_updated_at of the side-table row of "key", into *result; false when
 * there is none.  record_transition() fires before stamp_side() (their
 * names sort that way), so this is still the previous phase's time.  The
 * row is filed under the tracked table, also when "t" is a partition's.
 */
bool
dp_side_phase_updated_at(DpTrack *t, text *key, TimestampTz *result)
{
	Oid			types[2] = {REGCLASSOID, TEXTOID};
	Datum		args[2];
	DpSavedUser saved;
	bool		found = false;

	Assert(t->side && OidIsValid(t->side_owner));
	args[0] = ObjectIdGetDatum(t->tracked_relid);
	args[1] = PointerGetDatum(key);
	dp_spi_connect_as(t->side_owner, &saved);
	dp_side_check_columns();
	if (!dp_side_has[DP_ROLE_PHASE_UPDATED_AT])
	{
		dp_spi_finish_as(&saved);
		return false;
	}
	dp_side_exec(&dp_side_lookup,
				 "SELECT phase_updated_at FROM " DP_SCHEMA ".timings"
				 " WHERE relid OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2",
				 2, types, args, SPI_OK_SELECT, "lookup");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			*result = DatumGetTimestampTz(d);
			found = true;
		}
	}
	dp_spi_finish_as(&saved);
	return found;
}

/*
 * deploy_progress.stamp_side(): AFTER INSERT OR UPDATE OR DELETE FOR EACH
 * ROW, and AFTER TRUNCATE FOR EACH STATEMENT, on tables tracked with storage
 * 'side'.  Keeps the row's timings in deploy_progress.timings with the rules
 * of stamp(), writing as the owner of that table so that writers of the
 * tracked table need no privilege on it.  Rows of a partition are filed
 * under the tracked (partitioned) table, where timings() looks for them.
 */
PG_FUNCTION_INFO_V1(dp_stamp_side);
Datum
dp_stamp_side(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = dp_trigger_data(fcinfo, "deploy_progress.stamp_side()",
											DP_TRIGGER_AFTER_ROW_OR_TRUNCATE, false);
	Relation	rel;
	DpTrack    *t;
	DpSavedUser saved;
	Datum		relid;
	text	   *key;

	rel = trigdata->tg_relation;
	t = dp_get_track(rel);
	if (!t->side)
		return PointerGetDatum(NULL);
	if (!dp_stamping)
	{
		/* a DELETE or TRUNCATE leaving the side rows behind, too */
		dp_check_stamping_off(t);
		return PointerGetDatum(NULL);
	}
	relid = ObjectIdGetDatum(t->tracked_relid);

	dp_spi_connect_as(t->side_owner, &saved);
	dp_side_check_columns();

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		Oid			types[1] = {REGCLASSOID};

		dp_side_exec(&dp_side_truncate,
					 "DELETE FROM " DP_SCHEMA ".timings WHERE relid OPERATOR(pg_catalog.=) $1",
					 1, types, &relid, SPI_OK_DELETE, "truncate");
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		Oid			types[2] = {REGCLASSOID, TEXTOID};
		Datum		args[2];

		key = dp_row_key(t, rel, trigdata->tg_trigslot);
		args[0] = relid;
		args[1] = PointerGetDatum(key);
		dp_side_exec(&dp_side_delete,
					 "DELETE FROM " DP_SCHEMA ".timings"
					 " WHERE relid OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2",
					 2, types, args, SPI_OK_DELETE, "delete");
	}
	else
	{
		TupleTableSlot *oldslot = NULL;
		TupleTableSlot *newslot = trigdata->tg_trigslot;
		DpChange	ch;
		Oid			types[9] = {REGCLASSOID, TEXTOID, TIMESTAMPTZOID, BOOLOID,
		BOOLOID, BOOLOID, BOOLOID, BOOLOID, BOOLOID};
		Datum		args[9];
		DpKind		kind;

		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		{
			oldslot = trigdata->tg_trigslot;
			newslot = trigdata->tg_newslot;
		}
		dp_classify(t, rel, oldslot, newslot, false, false, &ch);
		key = dp_row_key(t, rel, newslot);

		/* a key that changed carries its timings along */
		if (oldslot)
		{
			text	   *old_key = dp_row_key(t, rel, oldslot);

			if (!dp_text_equal(PointerGetDatum(old_key), PointerGetDatum(key)))
			{
				Oid			rtypes[3] = {REGCLASSOID, TEXTOID, TEXTOID};
				Datum		rargs[3];

				rargs[0] = relid;
				rargs[1] = PointerGetDatum(old_key);
				rargs[2] = PointerGetDatum(key);
				dp_side_exec(&dp_side_rekey,
							 "UPDATE " DP_SCHEMA ".timings SET key = $3"
							 " WHERE relid OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2",
							 3, rtypes, rargs, SPI_OK_UPDATE, "rekey");
			}
		}

		Assert(!ch.entered || (ch.new_idx >= 0 && ch.new_idx < t->nphases));
		kind = ch.entered ? t->phases[ch.new_idx].kind : DP_KIND_PENDING;
		args[0] = relid;
		args[1] = PointerGetDatum(key);
		args[2] = TimestampTzGetDatum(dp_now());
		args[3] = BoolGetDatum(ch.entered);
		args[4] = BoolGetDatum(ch.entered && kind == DP_KIND_ACTIVE);
		args[5] = BoolGetDatum(ch.entered && DP_KIND_IS_TERMINAL(kind));
		args[6] = BoolGetDatum(ch.entered && ch.old_idx >= 0 &&
							   DP_KIND_IS_TERMINAL(t->phases[ch.old_idx].kind));
		args[7] = BoolGetDatum(ch.counters_moved);
		/* a new row replaces whatever a truncated or deleted one left */
		args[8] = BoolGetDatum(oldslot == NULL);
		dp_side_exec(&dp_side_upsert, dp_side_upsert ? NULL : dp_side_upsert_sql(),
					 9, types, args, SPI_OK_INSERT, "upsert");
	}

	dp_spi_finish_as(&saved);
	return PointerGetDatum(NULL);
}
