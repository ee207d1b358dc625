/*-------------------------------------------------------------------------
 *
 * stamp.c
 *	  The tracking triggers: deploy_progress.stamp() (BEFORE ROW) validates
 *	  and stamps a tracked row, deploy_progress.stamp_side() (AFTER ROW)
 *	  keeps the timings of tables tracked with storage 'side'.
 *
 * stamp() is the hot path of the extension: it runs on every INSERT and
 * UPDATE of a tracked table.  Everything it looks up comes from the cache of
 * lifecycle.c; per row it reads a few attributes through the trigger slots
 * (which deform each tuple once, only as far as needed), compares phases by
 * enum OID or by bytes, and builds the new row with a single
 * heap_modify_tuple_by_cols() call, or returns the row untouched when no
 * stamp changes.
 *
 * While stamping is on the timing columns belong to the extension: on
 * INSERT they start from the values the rules give, and on UPDATE a value
 * the statement wrote into one of them is replaced by the value the rules
 * give (usually the previous one).  SET deploy_progress.stamping = off lets
 * a session write them itself, for backfills and restores; phases and
 * counters are checked either way.
 *
 * IDENTIFICATION
 *	  src/stamp.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "deploy_progress.h"

/* What a write does to a row's phase and counters. */
typedef struct DpChange
{
	bool		entered;		/* phase entered: INSERT or phase changed */
	int			new_idx;		/* lifecycle position of the new phase, when entered */
	int			old_idx;		/* ... and of the old one (-1: none or unknown) */
	bool		completed_moved;
	bool		counters_moved;
	int64		completed;
	int64		old_completed;
	bool		completed_null;
	bool		old_completed_null;
} DpChange;

/* Whether two non-null phase values are the same phase. */
static inline bool
dp_phase_same(DpTrack *t, Datum a, Datum b)
{
	if (t->phase_is_enum)
		return DatumGetObjectId(a) == DatumGetObjectId(b);
	else
	{
		text	   *ta = DatumGetTextPP(a);
		text	   *tb = DatumGetTextPP(b);
		Size		la = VARSIZE_ANY_EXHDR(ta);

		return la == VARSIZE_ANY_EXHDR(tb) &&
			memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), la) == 0;
	}
}

/*
 * Work out what a write does to the row's phase and counters, rejecting
 * what the lifecycle or the counter rules do not allow.  "oldslot" is NULL
 * for an INSERT.
 */
static void
dp_classify(DpTrack *t, Relation rel, TupleTableSlot *oldslot,
			TupleTableSlot *newslot, DpChange *ch)
{
	Datum		phase;
	Datum		old_phase = (Datum) 0;
	bool		isnull;
	bool		old_isnull = true;
	int64		total = 0;
	int64		old_total = 0;
	bool		total_null = true;
	bool		old_total_null = true;

	phase = slot_getattr(newslot, t->att_phase, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("phase of a row of tracked table \"%s\" cannot be null",
						RelationGetRelationName(rel)),
				 errdetail("Valid phases: %s.", dp_phase_list(t)),
				 errhint("Give every row a phase of the lifecycle.")));
	if (oldslot)
		old_phase = slot_getattr(oldslot, t->att_phase, &old_isnull);

	ch->entered = (oldslot == NULL || old_isnull ||
				   !dp_phase_same(t, phase, old_phase));
	ch->new_idx = ch->old_idx = -1;
	if (ch->entered)
	{
		ch->new_idx = dp_phase_index(t, phase);
		if (ch->new_idx < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("\"%s\" is not a phase of the lifecycle of table \"%s\"",
							dp_phase_datum_text(t, phase), RelationGetRelationName(rel)),
					 errdetail("Valid phases: %s.", dp_phase_list(t)),
					 errhint("Use one of the valid phases, or redefine the lifecycle with deploy_progress.define_lifecycle().")));
		if (oldslot && !old_isnull)
			ch->old_idx = dp_phase_index(t, old_phase);
		if (ch->old_idx >= 0 && DP_KIND_IS_TERMINAL(t->phases[ch->old_idx].kind) &&
			!t->allow_restart)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("cannot move a row of \"%s\" from terminal phase \"%s\" to \"%s\"",
							RelationGetRelationName(rel),
							t->phases[ch->old_idx].name, t->phases[ch->new_idx].name),
					 errdetail("Phase \"%s\" is %s, and the table is tracked without restarts.",
							   t->phases[ch->old_idx].name,
							   t->phases[ch->old_idx].kind == DP_KIND_SUCCEEDED ? "a succeeded phase" :
							   t->phases[ch->old_idx].kind == DP_KIND_FAILED ? "a failed phase" :
							   "a cancelled phase"),
					 errhint("Insert a new row for a new attempt, or track the table with allow_restart => true.")));
	}

	/* counters */
	ch->completed = ch->old_completed = 0;
	ch->completed_null = ch->old_completed_null = true;
	if (t->att_completed)
	{
		Datum		d = slot_getattr(newslot, t->att_completed, &ch->completed_null);

		if (!ch->completed_null)
			ch->completed = dp_counter(d, t->completed_type);
		if (oldslot)
		{
			d = slot_getattr(oldslot, t->att_completed, &ch->old_completed_null);
			if (!ch->old_completed_null)
				ch->old_completed = dp_counter(d, t->completed_type);
		}
	}
	if (t->att_total)
	{
		Datum		d = slot_getattr(newslot, t->att_total, &total_null);

		if (!total_null)
			total = dp_counter(d, t->total_type);
		if (oldslot)
		{
			d = slot_getattr(oldslot, t->att_total, &old_total_null);
			if (!old_total_null)
				old_total = dp_counter(d, t->total_type);
		}
	}
	ch->completed_moved = oldslot != NULL &&
		(ch->completed_null != ch->old_completed_null || ch->completed != ch->old_completed);
	ch->counters_moved = ch->completed_moved || (oldslot != NULL &&
												 (total_null != old_total_null || total != old_total));

	if (oldslot == NULL || ch->counters_moved)
	{
		const char *relname = RelationGetRelationName(rel);

		if (!ch->completed_null && ch->completed < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("completed items of a row of \"%s\" cannot be negative: %s = " INT64_FORMAT,
							relname, get_attname(RelationGetRelid(rel), t->att_completed, false),
							ch->completed),
					 errhint("Count completed items from zero.")));
		if (!total_null && total < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("total items of a row of \"%s\" cannot be negative: %s = " INT64_FORMAT,
							relname, get_attname(RelationGetRelid(rel), t->att_total, false),
							total),
					 errhint("Leave the total null while it is unknown.")));
		if (!ch->completed_null && !total_null && ch->completed > total)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("completed items of a row of \"%s\" exceed its total: %s = " INT64_FORMAT ", %s = " INT64_FORMAT,
							relname,
							get_attname(RelationGetRelid(rel), t->att_completed, false), ch->completed,
							get_attname(RelationGetRelid(rel), t->att_total, false), total),
					 errhint("Raise the total first, or in the same statement.")));
	}
}

/*
 * deploy_progress.stamp(): BEFORE INSERT OR UPDATE FOR EACH ROW.
 */
PG_FUNCTION_INFO_V1(dp_stamp);
Datum
dp_stamp(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot;
	HeapTuple	newtuple;
	DpTrack    *t;
	DpChange	ch;
	TimestampTz now;
	int			cols[DP_NUM_TIMINGS + 1];
	Datum		vals[DP_NUM_TIMINGS + 1];
	bool		nulls[DP_NUM_TIMINGS + 1];
	Datum		want[DP_NUM_TIMINGS];
	bool		want_null[DP_NUM_TIMINGS];
	Datum		speed = (Datum) 0;
	bool		speed_null = true;
	int			ncols = 0;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("deploy_progress.stamp() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("deploy_progress.stamp() must be fired BEFORE ... FOR EACH ROW")));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		newslot = trigdata->tg_trigslot;
		newtuple = trigdata->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		oldslot = trigdata->tg_trigslot;
		newslot = trigdata->tg_newslot;
		newtuple = trigdata->tg_newtuple;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("deploy_progress.stamp() must be fired for INSERT or UPDATE")));

	t = dp_get_track(trigdata->tg_relation);
	dp_classify(t, trigdata->tg_relation, oldslot, newslot, &ch);

	if (!dp_stamping || t->side)
		return PointerGetDatum(newtuple);

	/*
	 * The value each timing column should have: start from the old row (NULL
	 * on INSERT) and apply the rules.
	 */
	now = dp_now();
	for (i = 0; i < DP_NUM_TIMINGS; i++)
	{
		want[i] = (Datum) 0;
		want_null[i] = true;
		if (oldslot && t->att_timing[i])
			want[i] = slot_getattr(oldslot, t->att_timing[i], &want_null[i]);
	}
#define DP_SET(role, v, n) (want[(role)] = (v), want_null[(role)] = (n))
	DP_SET(DP_HEARTBEAT_AT, TimestampTzGetDatum(now), false);
	if (ch.entered)
	{
		DpKind		kind = t->phases[ch.new_idx].kind;

		DP_SET(DP_PHASE_UPDATED_AT, TimestampTzGetDatum(now), false);
		DP_SET(DP_PROGRESS_UPDATED_AT, TimestampTzGetDatum(now), false);
		if (kind == DP_KIND_ACTIVE && want_null[DP_STARTED_AT])
			DP_SET(DP_STARTED_AT, TimestampTzGetDatum(now), false);
		if (DP_KIND_IS_TERMINAL(kind))
			DP_SET(DP_FINISHED_AT, TimestampTzGetDatum(now), false);
		else if (ch.old_idx >= 0 && DP_KIND_IS_TERMINAL(t->phases[ch.old_idx].kind))
			DP_SET(DP_FINISHED_AT, (Datum) 0, true);	/* restart */
		/* a new phase starts a new speed estimate */
		DP_SET(DP_SPEED_UPDATED_AT, TimestampTzGetDatum(now), false);
	}
	else if (ch.counters_moved)
		DP_SET(DP_PROGRESS_UPDATED_AT, TimestampTzGetDatum(now), false);

	/* smoothed speed: one O(1) step per move of completed_items */
	if (t->att_speed)
	{
		speed = slot_getattr(oldslot ? oldslot : newslot, t->att_speed, &speed_null);
		if (oldslot == NULL || ch.entered)
			speed_null = true;
		else if (ch.completed_moved)
		{
			if (ch.completed_null || ch.old_completed_null || ch.completed < ch.old_completed)
			{
				/* counter reset or went backwards: start over */
				speed_null = true;
				DP_SET(DP_SPEED_UPDATED_AT, TimestampTzGetDatum(now), false);
			}
			else if (want_null[DP_SPEED_UPDATED_AT])
				DP_SET(DP_SPEED_UPDATED_AT, TimestampTzGetDatum(now), false);
			else
			{
				TimestampTz last = DatumGetTimestampTz(want[DP_SPEED_UPDATED_AT]);

				if (now > last)
				{
					double		rate;

					rate = dp_speed_step(speed_null ? 0 : DatumGetFloat8(speed), speed_null,
										 (double) (ch.completed - ch.old_completed),
										 (double) (now - last) / USECS_PER_SEC,
										 t->speed_tau);
					speed = Float8GetDatum(rate);
					speed_null = false;
					DP_SET(DP_SPEED_UPDATED_AT, TimestampTzGetDatum(now), false);
				}
			}
		}
	}
#undef DP_SET

	/* replace what differs from the row as written */
	for (i = 0; i < DP_NUM_TIMINGS; i++)
	{
		AttrNumber	att = t->att_timing[i];
		bool		isnull;
		Datum		cur;

		if (!att)
			continue;
		cur = slot_getattr(newslot, att, &isnull);
		if (isnull == want_null[i] &&
			(isnull || DatumGetTimestampTz(cur) == DatumGetTimestampTz(want[i])))
			continue;
		cols[ncols] = att;
		vals[ncols] = want[i];
		nulls[ncols] = want_null[i];
		ncols++;
	}
	if (t->att_speed)
	{
		bool		isnull;
		Datum		cur = slot_getattr(newslot, t->att_speed, &isnull);

		if (isnull != speed_null ||
			(!isnull && DatumGetFloat8(cur) != DatumGetFloat8(speed)))
		{
			cols[ncols] = t->att_speed;
			vals[ncols] = speed;
			nulls[ncols] = speed_null;
			ncols++;
		}
	}
	if (ncols == 0)
		return PointerGetDatum(newtuple);
	return PointerGetDatum(heap_modify_tuple_by_cols(newtuple,
													 RelationGetDescr(trigdata->tg_relation),
													 ncols, cols, vals, nulls));
}

/*
 * Key text of a row: the key column's text, or the row literal of a
 * composite key (what ROW(a, b)::text gives in SQL).
 */
text *
dp_row_key(DpTrack *t, Relation rel, TupleTableSlot *slot)
{
	Datum		vals[INDEX_MAX_KEYS];
	bool		nulls[INDEX_MAX_KEYS];
	int			k;

	for (k = 0; k < t->nkeys && k < INDEX_MAX_KEYS; k++)
	{
		vals[k] = slot_getattr(slot, t->key_atts[k], &nulls[k]);
		if (nulls[k] && t->nkeys == 1)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("key of a row of tracked table \"%s\" cannot be null",
							RelationGetRelationName(rel)),
					 errhint("Track the table with a key whose columns are NOT NULL.")));
	}
	if (t->nkeys == 1)
		return cstring_to_text(OutputFunctionCall(&t->key_out[0], vals[0]));
	return cstring_to_text(OutputFunctionCall(&t->key_record_out,
											  HeapTupleGetDatum(heap_form_tuple(t->key_desc, vals, nulls))));
}

static SPIPlanPtr dp_side_upsert = NULL;
static SPIPlanPtr dp_side_delete = NULL;
static SPIPlanPtr dp_side_rekey = NULL;

/* Prepare (once per backend) one of the side-table statements. */
SPIPlanPtr
dp_side_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for side-table statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

/*
 * deploy_progress.stamp_side(): AFTER INSERT OR UPDATE OR DELETE FOR EACH
 * ROW on tables tracked with storage 'side'.  Keeps the row's timings in
 * deploy_progress.timings with the rules of stamp(), writing as the owner of
 * that table so that writers of the tracked table need no privilege on it.
 */
PG_FUNCTION_INFO_V1(dp_stamp_side);
Datum
dp_stamp_side(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	DpTrack    *t;
	Oid			save_userid;
	int			save_sec;
	Datum		relid;
	text	   *key;
	int			ret;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("deploy_progress.stamp_side() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("deploy_progress.stamp_side() must be fired AFTER ... FOR EACH ROW")));
	if (!dp_stamping)
		return PointerGetDatum(NULL);

	rel = trigdata->tg_relation;
	t = dp_get_track(rel);
	if (!t->side)
		return PointerGetDatum(NULL);
	relid = ObjectIdGetDatum(RelationGetRelid(rel));

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(t->side_owner,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));

	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		Oid			types[2] = {REGCLASSOID, TEXTOID};
		Datum		args[2];

		key = dp_row_key(t, rel, trigdata->tg_trigslot);
		args[0] = relid;
		args[1] = PointerGetDatum(key);
		ret = SPI_execute_plan(dp_side_plan(&dp_side_delete,
											"DELETE FROM " DP_SCHEMA ".timings"
											" WHERE relid OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2",
											2, types),
							   args, NULL, false, 0);
		if (ret != SPI_OK_DELETE)
			elog(ERROR, "side-table delete failed: %s", SPI_result_code_string(ret));
	}
	else
	{
		TupleTableSlot *oldslot = NULL;
		TupleTableSlot *newslot = trigdata->tg_trigslot;
		DpChange	ch;
		Oid			types[8] = {REGCLASSOID, TEXTOID, TIMESTAMPTZOID, BOOLOID,
		BOOLOID, BOOLOID, BOOLOID, BOOLOID};
		Datum		args[8];
		DpKind		kind;

		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		{
			oldslot = trigdata->tg_trigslot;
			newslot = trigdata->tg_newslot;
		}
		dp_classify(t, rel, oldslot, newslot, &ch);
		key = dp_row_key(t, rel, newslot);

		/* a key that changed carries its timings along */
		if (oldslot)
		{
			text	   *old_key = dp_row_key(t, rel, oldslot);

			if (VARSIZE_ANY_EXHDR(old_key) != VARSIZE_ANY_EXHDR(key) ||
				memcmp(VARDATA_ANY(old_key), VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)) != 0)
			{
				Oid			rtypes[3] = {REGCLASSOID, TEXTOID, TEXTOID};
				Datum		rargs[3];

				rargs[0] = relid;
				rargs[1] = PointerGetDatum(old_key);
				rargs[2] = PointerGetDatum(key);
				ret = SPI_execute_plan(dp_side_plan(&dp_side_rekey,
													"UPDATE " DP_SCHEMA ".timings SET key = $3"
													" WHERE relid OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2",
													3, rtypes),
									   rargs, NULL, false, 0);
				if (ret != SPI_OK_UPDATE)
					elog(ERROR, "side-table rekey failed: %s", SPI_result_code_string(ret));
			}
		}

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
		ret = SPI_execute_plan(dp_side_plan(&dp_side_upsert,
											"INSERT INTO " DP_SCHEMA ".timings AS s"
											" (relid, key, phase_updated_at, progress_updated_at, heartbeat_at, started_at, finished_at)"
											" VALUES ($1, $2, $3, $3, $3, CASE WHEN $5 THEN $3 END, CASE WHEN $6 THEN $3 END)"
											" ON CONFLICT (relid, key) DO UPDATE SET"
											"  heartbeat_at = $3,"
											"  phase_updated_at = CASE WHEN $4 THEN $3 ELSE s.phase_updated_at END,"
											"  progress_updated_at = CASE WHEN $4 OR $8 THEN $3 ELSE s.progress_updated_at END,"
											"  started_at = CASE WHEN $5 AND s.started_at IS NULL THEN $3 ELSE s.started_at END,"
											"  finished_at = CASE WHEN $6 THEN $3 WHEN $7 THEN NULL ELSE s.finished_at END",
											8, types),
							   args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "side-table upsert failed: %s", SPI_result_code_string(ret));
	}

	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
	return PointerGetDatum(NULL);
}
