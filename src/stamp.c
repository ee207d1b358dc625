/*-------------------------------------------------------------------------
 *
 * stamp.c
 *	  The stamping trigger: deploy_progress.stamp() (BEFORE ROW) validates a
 *	  tracked row's phase and counters and stamps its timing columns.
 *
 * stamp() is the hot path of the extension: it runs on every INSERT and
 * UPDATE of a tracked table.  Everything it looks up comes from the cache of
 * track_cache.c; per row it reads a few attributes through the trigger slots
 * (which deform each tuple once, only as far as needed), compares phases by
 * enum OID or by bytes, and builds the new row with a single
 * heap_form_tuple() from the slot's values (dp_modify_tuple()), or returns
 * the row untouched when no stamp changes.
 *
 * While stamping is on the timing columns belong to the extension: on
 * INSERT they start from the values the rules give, and on UPDATE a value
 * the statement wrote into one of them is replaced by the value the rules
 * give (usually the previous one).  SET deploy_progress.stamping = off lets
 * a session write them itself, for backfills and restores; phases and
 * counters are checked either way.
 *
 * The checks (dp_classify()) are shared with the side-storage trigger of
 * side.c, which applies the same rules to the side table.  A move back that
 * the table's backward_moves says to ignore is undone here, before the row
 * is written: the row keeps its old phase, so neither the side-storage
 * trigger nor the history trigger (WHEN the phase changed) sees a move.
 *
 * IDENTIFICATION
 *	  src/stamp.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "deploy_progress.h"

#if PG_VERSION_NUM < 140000
/* PostgreSQL 13: numeric has no infinity, and no int64_to_numeric() */
#define numeric_is_inf(n) false
#define int64_to_numeric(v) DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(v)))
#endif

/* Whether two non-null phase values are the same phase. */
static inline bool
dp_phase_same(DpTrack *t, Datum a, Datum b)
{
	if (t->phase_is_enum)
		return DatumGetObjectId(a) == DatumGetObjectId(b);
	return dp_text_equal(a, b);
}

/*
 * The value of a percent column as a double, checked: within 0..100, and
 * neither NaN nor infinite (a numeric is compared exactly, before it is
 * rounded to a double).
 */
static double
dp_percent_checked(DpTrack *t, Relation rel, Datum d)
{
	Oid			typid = t->atttype[DP_ROLE_PERCENT];
	double		v;
	bool		finite = true;
	bool		in_range;

	switch (typid)
	{
		case NUMERICOID:
			{
				Numeric		n = DatumGetNumeric(d);

				if (numeric_is_nan(n) || numeric_is_inf(n))
				{
					finite = false;
					in_range = false;
					v = 0;
					break;
				}
				in_range =
					DatumGetInt32(DirectFunctionCall2(numeric_cmp, d,
													  NumericGetDatum(int64_to_numeric(0)))) >= 0 &&
					DatumGetInt32(DirectFunctionCall2(numeric_cmp, d,
													  NumericGetDatum(int64_to_numeric(100)))) <= 0;
				v = DatumGetFloat8(DirectFunctionCall1(numeric_float8, d));
				break;
			}
		case FLOAT4OID:
		case FLOAT8OID:
			v = typid == FLOAT4OID ? (double) DatumGetFloat4(d) : DatumGetFloat8(d);
			finite = !isnan(v) && !isinf(v);
			in_range = finite && v >= 0 && v <= 100;
			break;
		default:
			v = (double) dp_counter(d, typid);
			in_range = v >= 0 && v <= 100;
			break;
	}
	if (!in_range)
	{
		Oid			outfn;
		bool		varlena;
		const char *relname = DP_REL_NAME(t, rel);
		const char *col = get_attname(RelationGetRelid(rel), t->att[DP_ROLE_PERCENT], false);

		getTypeOutputInfo(typid, &outfn, &varlena);
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 finite ?
				 errmsg("percent of a row of \"%s\" must be between 0 and 100: %s = %s",
						relname, col, OidOutputFunctionCall(outfn, d)) :
				 errmsg("percent of a row of \"%s\" must be a finite number: %s = %s",
						relname, col, OidOutputFunctionCall(outfn, d)),
				 errdetail("Column \"%s\" is the table's percent column: how much of the current phase is done, from 0 to 100.", col),
				 finite ?
				 errhint("Clamp the value to 0..100 before writing it, or write NULL while it is unknown.") :
				 errhint("Write NULL while the percent is unknown.")));
	}
	return v;
}

/*
 * Work out what a write does to the row's phase and counters, rejecting
 * what the lifecycle or the counter rules do not allow.  "oldslot" is NULL
 * for an INSERT.
 */
void
dp_classify(DpTrack *t, Relation rel, TupleTableSlot *oldslot,
			TupleTableSlot *newslot, bool phase_kept, bool counters_kept,
			DpChange *ch)
{
	Datum		phase;
	Datum		old_phase = (Datum) 0;
	bool		isnull;
	bool		old_isnull = true;
	int64		total = 0;
	int64		old_total = 0;
	bool		total_null = true;
	bool		old_total_null = true;

	ch->completed = ch->old_completed = 0;
	ch->completed_null = ch->old_completed_null = true;
	ch->completed_moved = ch->counters_moved = false;
	ch->new_idx = ch->old_idx = -1;
	ch->entered = false;
	ch->percent = ch->old_percent = 0;
	ch->percent_null = ch->old_percent_null = true;
	ch->percent_moved = false;
	ch->phase_ignored = false;

	/*
	 * An UPDATE whose SET list leaves the phase alone keeps it: nothing to
	 * check (rows are checked when their phase is written).
	 */
	if (phase_kept)
		goto counters;

	phase = slot_getattr(newslot, t->att_phase, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("phase of a row of tracked table \"%s\" cannot be null",
						DP_REL_NAME(t, rel)),
				 errdetail("Valid phases: %s.", dp_phase_list(t)),
				 errhint("Give every row a phase of the lifecycle.")));
	if (oldslot)
		old_phase = slot_getattr(oldslot, t->att_phase, &old_isnull);

	ch->entered = (oldslot == NULL || old_isnull ||
				   !dp_phase_same(t, phase, old_phase));
	if (ch->entered)
	{
		ch->new_idx = dp_phase_index(t, phase);
		Assert(ch->new_idx < t->nphases);
		if (ch->new_idx < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("\"%s\" is not a phase of the lifecycle of table \"%s\"",
							dp_phase_datum_text(t, phase), DP_REL_NAME(t, rel)),
					 errdetail("Valid phases: %s.", dp_phase_list(t)),
					 errhint("Use one of the valid phases, or redefine the lifecycle with deploy_progress.define_lifecycle().")));
		if (oldslot && !old_isnull)
			ch->old_idx = dp_phase_index(t, old_phase);
		Assert(ch->old_idx >= -1 && ch->old_idx < t->nphases);
		if (ch->old_idx >= 0)
		{
			DpKind		old_kind = t->phases[ch->old_idx].kind;
			DpKind		new_kind = t->phases[ch->new_idx].kind;
			bool		leaves_terminal = DP_KIND_IS_TERMINAL(old_kind) && !t->allow_restart;

			/*
			 * A move back: from a pending or active phase to an earlier
			 * pending or active one (waiting phases are entered and left
			 * freely), or out of a terminal phase without restarts.
			 */
			if (t->backward_moves == DP_BACKWARD_IGNORE &&
				(leaves_terminal ||
				 ((old_kind == DP_KIND_PENDING || old_kind == DP_KIND_ACTIVE) &&
				  (new_kind == DP_KIND_PENDING || new_kind == DP_KIND_ACTIVE) &&
				  ch->new_idx < ch->old_idx)))
			{
				/* the row keeps its phase: no phase entered (stamp() puts it back) */
				ch->phase_ignored = true;
				ch->entered = false;
				ch->new_idx = ch->old_idx = -1;
				goto counters;
			}
			if (t->backward_moves == DP_BACKWARD_ERROR && !DP_KIND_IS_TERMINAL(old_kind) &&
				old_kind != DP_KIND_WAITING &&
				(new_kind == DP_KIND_PENDING || new_kind == DP_KIND_ACTIVE) &&
				ch->new_idx < ch->old_idx)
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("cannot move a row of \"%s\" back from phase \"%s\" to earlier phase \"%s\"",
								DP_REL_NAME(t, rel),
								t->phases[ch->old_idx].name, t->phases[ch->new_idx].name),
						 errdetail("The table is tracked with backward_moves => 'error': a write cannot move a row to a pending or active phase that comes before its current one in the lifecycle."),
						 errhint("Write only later phases, or track the table with backward_moves => 'ignore' to keep the row's phase and apply the rest of such writes.")));
		}
		if (ch->old_idx >= 0 && DP_KIND_IS_TERMINAL(t->phases[ch->old_idx].kind) &&
			!t->allow_restart)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("cannot move a row of \"%s\" from terminal phase \"%s\" to \"%s\"",
							DP_REL_NAME(t, rel),
							t->phases[ch->old_idx].name, t->phases[ch->new_idx].name),
					 errdetail("Phase \"%s\" is %s, and the table is tracked without restarts.",
							   t->phases[ch->old_idx].name,
							   t->phases[ch->old_idx].kind == DP_KIND_SUCCEEDED ? "a succeeded phase" :
							   t->phases[ch->old_idx].kind == DP_KIND_FAILED ? "a failed phase" :
							   "a cancelled phase"),
					 errhint("Insert a new row for a new attempt, or track the table with allow_restart => true.")));
	}

counters:
	if (counters_kept)
		return;
	if (t->att[DP_ROLE_COMPLETED_ITEMS])
	{
		ch->completed = dp_slot_counter(t, newslot, DP_ROLE_COMPLETED_ITEMS, &ch->completed_null);
		if (oldslot)
			ch->old_completed = dp_slot_counter(t, oldslot, DP_ROLE_COMPLETED_ITEMS,
												&ch->old_completed_null);
	}
	if (t->att[DP_ROLE_TOTAL_ITEMS])
	{
		total = dp_slot_counter(t, newslot, DP_ROLE_TOTAL_ITEMS, &total_null);
		if (oldslot)
			old_total = dp_slot_counter(t, oldslot, DP_ROLE_TOTAL_ITEMS, &old_total_null);
	}
	if (t->att[DP_ROLE_PERCENT])
	{
		Datum		d = slot_getattr(newslot, t->att[DP_ROLE_PERCENT], &ch->percent_null);
		Datum		od = (Datum) 0;
		bool		od_null = true;
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), t->att[DP_ROLE_PERCENT] - 1);

		if (oldslot)
			od = slot_getattr(oldslot, t->att[DP_ROLE_PERCENT], &od_null);
		ch->old_percent_null = od_null;
		/* the old value was checked when it was written */
		if (!ch->old_percent_null)
		{
			bool		err = false;

			switch (t->atttype[DP_ROLE_PERCENT])
			{
				case NUMERICOID:
					err = numeric_is_nan(DatumGetNumeric(od)) || numeric_is_inf(DatumGetNumeric(od));
					ch->old_percent = err ? 0 : DatumGetFloat8(DirectFunctionCall1(numeric_float8, od));
					break;
				case FLOAT4OID:
					ch->old_percent = DatumGetFloat4(od);
					break;
				case FLOAT8OID:
					ch->old_percent = DatumGetFloat8(od);
					break;
				default:
					ch->old_percent = (double) dp_counter(od, t->atttype[DP_ROLE_PERCENT]);
					break;
			}
			if (err || isnan(ch->old_percent))
				ch->old_percent_null = true;	/* written before the check: unknown */
		}
		if (!ch->percent_null)
		{
			/* an unchanged value is not checked again, as counters are not */
			if (od_null || !datumIsEqual(d, od, att->attbyval, att->attlen))
				ch->percent = dp_percent_checked(t, rel, d);
			else
			{
				ch->percent = ch->old_percent;
				ch->percent_null = ch->old_percent_null;
			}
		}
		ch->percent_moved = oldslot != NULL &&
			(ch->percent_null != ch->old_percent_null ||
			 (!ch->percent_null && ch->percent != ch->old_percent));
	}
	ch->completed_moved = oldslot != NULL &&
		(ch->completed_null != ch->old_completed_null || ch->completed != ch->old_completed);
	ch->counters_moved = ch->completed_moved || ch->percent_moved ||
		(oldslot != NULL && (total_null != old_total_null || total != old_total));

	if (oldslot == NULL || ch->counters_moved)
	{
		const char *relname = DP_REL_NAME(t, rel);

		if (!ch->completed_null && ch->completed < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("completed items of a row of \"%s\" cannot be negative: %s = " INT64_FORMAT,
							relname, get_attname(RelationGetRelid(rel), t->att[DP_ROLE_COMPLETED_ITEMS], false),
							ch->completed),
					 errhint("Count completed items from zero.")));
		if (!total_null && total < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("total items of a row of \"%s\" cannot be negative: %s = " INT64_FORMAT,
							relname, get_attname(RelationGetRelid(rel), t->att[DP_ROLE_TOTAL_ITEMS], false),
							total),
					 errhint("Leave the total null while it is unknown.")));
		if (!ch->completed_null && !total_null && ch->completed > total)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("completed items of a row of \"%s\" exceed its total: %s = " INT64_FORMAT ", %s = " INT64_FORMAT,
							relname,
							get_attname(RelationGetRelid(rel), t->att[DP_ROLE_COMPLETED_ITEMS], false), ch->completed,
							get_attname(RelationGetRelid(rel), t->att[DP_ROLE_TOTAL_ITEMS], false), total),
					 errhint("Raise the total first, or in the same statement.")));
	}
}

/*
 * The stamps the last BEFORE UPDATE of a partition gave its row.  An UPDATE
 * that moves a row to another partition runs as a DELETE from the old
 * partition followed, at once, by an INSERT into the new one, whose BEFORE
 * INSERT trigger would stamp it as a new row: its phase clock would restart
 * and its start time be lost.  When an INSERT into a partition of the same
 * tracked table, by the same command, carries exactly the stamps just given
 * (the heartbeat is always among them, and is the statement's time), and
 * the old version of the updated row was moved out of its partition (the
 * heap marks it so), it is that row arriving, and it keeps them.  A later
 * statement, or the same one through a CTE, that copies the row's stamps
 * into a new row inserts a new row.
 */
typedef struct DpMoved
{
	bool		valid;
	Oid			tracked_relid;
	CommandId	cid;			/* the command (statement) that updated it */
	Oid			src_relid;		/* the partition it was in ... */
	ItemPointerData src_tid;	/* ... and its old version there */
	TimestampTz ts[DP_NUM_ROLES];	/* by timing role, as the columns hold
									 * them (int64 either way) */
	bool		ts_null[DP_NUM_ROLES];
	double		speed;
	bool		speed_null;
	bool		phase_changed;	/* the UPDATE changed the row's phase ... */
	int			old_idx;		/* ... from this one (-1: unknown) */
	TimestampTz old_phase_at;	/* when the old phase was entered */
	bool		old_phase_at_null;
} DpMoved;

static DpMoved dp_moved;

/*
 * Whether the old version of the row the last BEFORE UPDATE saw has been
 * moved to another partition.  The relation is locked by the statement
 * that updated it.  Only the heap marks moved rows; with another table
 * access method the command and the stamps decide.
 */
static bool
dp_left_partition(void)
{
	Relation	src = RelationIdGetRelation(dp_moved.src_relid);
	TupleTableSlot *slot;
	bool		moved = false;

	if (src == NULL)
		return false;
	if (src->rd_tableam != GetHeapamTableAmRoutine())
	{
		RelationClose(src);
		return true;
	}
	slot = table_slot_create(src, NULL);
	if (table_tuple_fetch_row_version(src, &dp_moved.src_tid, SnapshotAny, slot))
	{
		HeapTuple	tuple = ((BufferHeapTupleTableSlot *) slot)->base.tuple;

		moved = HeapTupleHeaderIndicatesMovedPartitions(tuple->t_data) &&
			TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmax(tuple->t_data));
	}
	ExecDropSingleTupleTableSlot(slot);
	RelationClose(src);
	return moved;
}

/* Whether a row being inserted into a partition is the row just updated. */
static bool
dp_is_moved_row(DpTrack *t, Relation rel, TupleTableSlot *slot)
{
	int			i;
	bool		any = false;

	if (!dp_moved.valid || !rel->rd_rel->relispartition ||
		dp_moved.tracked_relid != t->tracked_relid ||
		dp_moved.cid != GetCurrentCommandId(false))
	{
		dp_moved.valid = false;
		return false;
	}
	dp_moved.valid = false;		/* one row at most */
	for (i = 0; i < t->ntimings; i++)
	{
		DpRole		r = t->timings[i];
		bool		isnull;
		Datum		d = slot_getattr(slot, t->att[r], &isnull);

		if (isnull != dp_moved.ts_null[r] ||
			(!isnull && DatumGetTimestampTz(d) != dp_moved.ts[r]))
			return false;
		any = any || !isnull;
	}
	if (t->att[DP_ROLE_ITEMS_PER_SECOND])
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, t->att[DP_ROLE_ITEMS_PER_SECOND], &isnull);

		if (isnull != dp_moved.speed_null ||
			(!isnull && DatumGetFloat8(d) != dp_moved.speed))
			return false;
	}
	return any && dp_left_partition();
}

/*
 * The timing values a write should leave in the row, loaded from "src" (the
 * old row, or the new one when it is known to hold the same values) only
 * when a rule or the final comparison needs them.  v[] holds each as a
 * timestamptz, which the rules compare and compute with; col[] holds it as
 * the column's value (the local time in the table's zone for a timestamp
 * column; a value loaded from the row stays as it was).
 */
typedef struct DpWant
{
	TupleTableSlot *src;		/* NULL on INSERT: everything starts NULL */
	Datum		v[DP_NUM_ROLES];	/* by timing role */
	Datum		col[DP_NUM_ROLES];
	bool		isnull[DP_NUM_ROLES];
	bool		loaded[DP_NUM_ROLES];
	bool		set[DP_NUM_ROLES];	/* assigned by a rule */
} DpWant;

static inline DpWant *
dp_want_load(DpTrack *t, DpWant *w, DpRole role)
{
	Assert(dp_role_is(role, DP_ROLE_TIMING));
	if (!w->loaded[role])
	{
		w->loaded[role] = true;
		w->v[role] = w->col[role] = (Datum) 0;
		w->isnull[role] = true;
		if (w->src && t->att[role])
		{
			w->col[role] = slot_getattr(w->src, t->att[role], &w->isnull[role]);
			if (!w->isnull[role])
				w->v[role] = TimestampTzGetDatum(dp_timing_from_column(t, role, w->col[role]));
		}
	}
	return w;
}

static inline void
dp_want_set(DpTrack *t, DpWant *w, DpRole role, Datum value, bool isnull)
{
	Assert(dp_role_is(role, DP_ROLE_TIMING));
	w->loaded[role] = w->set[role] = true;
	w->v[role] = value;
	w->col[role] = (Datum) 0;
	w->isnull[role] = isnull;
	if (!isnull && t->att[role])
		w->col[role] = dp_timing_to_column(t, role, DatumGetTimestampTz(value));
}

/*
 * The row with some columns replaced: heap_modify_tuple_by_cols() without
 * its deform step, since the trigger slot already holds the row's values
 * deformed.  The arrays come from the table's cache entry, so a write
 * allocates nothing but the new tuple.
 */
static HeapTuple
dp_modify_tuple(DpTrack *t, Relation rel, TupleTableSlot *slot, HeapTuple tuple,
				int ncols, const int *cols, const Datum *vals, const bool *nulls)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			natts = desc->natts;
	HeapTuple	result;
	int			i;

	if (t->scratch_natts != natts)
	{
		t->scratch_values = MemoryContextAlloc(t->cxt, sizeof(Datum) * natts);
		t->scratch_isnull = MemoryContextAlloc(t->cxt, sizeof(bool) * natts);
		t->scratch_natts = natts;
	}
	Assert(slot->tts_tupleDescriptor->natts == natts);
	slot_getallattrs(slot);
	memcpy(t->scratch_values, slot->tts_values, sizeof(Datum) * natts);
	memcpy(t->scratch_isnull, slot->tts_isnull, sizeof(bool) * natts);
	for (i = 0; i < ncols; i++)
	{
		Assert(cols[i] >= 1 && cols[i] <= natts);
		t->scratch_values[cols[i] - 1] = vals[i];
		t->scratch_isnull[cols[i] - 1] = nulls[i];
	}
	result = heap_form_tuple(desc, t->scratch_values, t->scratch_isnull);
	/* keep the row's identity, as heap_modify_tuple_by_cols() does */
	result->t_data->t_ctid = tuple->t_data->t_ctid;
	result->t_self = tuple->t_self;
	result->t_tableOid = tuple->t_tableOid;
	return result;
}

/*
 * deploy_progress.stamp(): BEFORE INSERT OR UPDATE FOR EACH ROW.
 */
PG_FUNCTION_INFO_V1(dp_stamp);
Datum
dp_stamp(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = dp_trigger_data(fcinfo, "deploy_progress.stamp()",
											DP_TRIGGER_BEFORE_ROW, true);
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot;
	HeapTuple	newtuple;
	DpTrack    *t;
	DpChange	ch;
	TimestampTz now;
	int			cols[DP_NUM_ROLES + 1];	/* the timings, the speed, the phase */
	Datum		vals[DP_NUM_ROLES + 1];
	bool		nulls[DP_NUM_ROLES + 1];
	DpWant		w;
	Datum		speed = (Datum) 0;
	bool		speed_null = true;
	bool		speed_set = false;
	bool		phase_kept = false;
	bool		counters_kept = false;
	bool		owned_kept = false;
	int			ncols = 0;
	int			i;

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		newslot = trigdata->tg_trigslot;
		newtuple = trigdata->tg_trigtuple;
	}
	else
	{
		oldslot = trigdata->tg_trigslot;
		newslot = trigdata->tg_newslot;
		newtuple = trigdata->tg_newtuple;
	}

	t = dp_get_track(trigdata->tg_relation);
	/* rows Citus copies into a new shard (track_cache.c) */
	if (unlikely(t->citus_copy))
		return PointerGetDatum(newtuple);

	/*
	 * When this is the table's only BEFORE UPDATE trigger, the UPDATE's SET
	 * list (tg_updatedcols) says exactly which columns can differ from the
	 * old row: a heartbeat "SET completed_items = completed_items + 1" needs
	 * no look at the phase or at any timing column.
	 */
	if (oldslot && t->setlist_exact && trigdata->tg_updatedcols)
	{
		const Bitmapset *upd = trigdata->tg_updatedcols;

		phase_kept = !bms_is_member(t->att_phase - FirstLowInvalidHeapAttributeNumber, upd);
		counters_kept = !((t->att[DP_ROLE_COMPLETED_ITEMS] &&
						   bms_is_member(t->att[DP_ROLE_COMPLETED_ITEMS] - FirstLowInvalidHeapAttributeNumber, upd)) ||
						  (t->att[DP_ROLE_TOTAL_ITEMS] &&
						   bms_is_member(t->att[DP_ROLE_TOTAL_ITEMS] - FirstLowInvalidHeapAttributeNumber, upd)) ||
						  (t->att[DP_ROLE_PERCENT] &&
						   bms_is_member(t->att[DP_ROLE_PERCENT] - FirstLowInvalidHeapAttributeNumber, upd)));
		owned_kept = !bms_overlap(upd, t->owned_cols);
	}
	/* leases: an owner's write to a row someone else ended (claims.c) */
	if (oldslot)
		dp_claims_check_lease(t, trigdata->tg_relation, oldslot);
	dp_classify(t, trigdata->tg_relation, oldslot, newslot, phase_kept, counters_kept, &ch);
	if (oldslot)
		dp_claims_on_end(t, trigdata->tg_relation, oldslot, &ch);
	if (!oldslot || ch.entered)
		dp_claims_on_new_run(t, trigdata->tg_relation, oldslot, newslot, &ch);

	/* a backward move ignored: the row keeps its phase, the rest applies */
	if (ch.phase_ignored)
	{
		cols[ncols] = t->att_phase;
		vals[ncols] = slot_getattr(oldslot, t->att_phase, &nulls[ncols]);
		ncols++;
	}

	if (!dp_stamping)
		dp_check_stamping_off(t);
	if (!dp_stamping || t->side)
		return ncols == 0 ? PointerGetDatum(newtuple) :
			PointerGetDatum(dp_modify_tuple(t, trigdata->tg_relation, newslot, newtuple,
											ncols, cols, vals, nulls));
	if (oldslot == NULL && dp_is_moved_row(t, trigdata->tg_relation, newslot))
	{
		/* the history's AFTER INSERT must see the UPDATE, not an INSERT */
		if (t->history != DP_HISTORY_OFF || t->notify_channel != NULL)
			dp_history_note_move(t, trigdata->tg_relation, newslot, dp_moved.phase_changed,
								 dp_moved.old_idx, dp_moved.old_phase_at, dp_moved.old_phase_at_null);
		return PointerGetDatum(newtuple);
	}

	/*
	 * The value each timing column should have: the old row's (NULL on
	 * INSERT), loaded only when needed, with the rules applied.  When the
	 * SET list left every timing column alone, the new row holds the old
	 * values already and only what the rules set has to be written.
	 */
	memset(&w, 0, sizeof(w));
	w.src = owned_kept ? newslot : oldslot;
	now = dp_now();

	/*
	 * A row's stamps never go back.  A statement that waited for the row's
	 * lock (or re-read it after a concurrent update) can have begun before
	 * the write that last stamped the row, which committed before this
	 * write: stamp the wall clock instead, which is past that write.  Every
	 * write stamps heartbeat_at, so it holds the row's latest stamp (else
	 * progress_updated_at, else phase_updated_at); a table with none of them
	 * has its latest in started_at or finished_at.  A stamp later than the
	 * wall clock (written with stamping off, or by a server whose clock was
	 * ahead) is the time stamped then, so that the documented orderings
	 * (finished_at >= started_at, ...) hold whatever columns the table has.
	 */
	if (oldslot)
	{
		static const DpRole latest_roles[] = {DP_ROLE_HEARTBEAT_AT, DP_ROLE_PROGRESS_UPDATED_AT,
		DP_ROLE_PHASE_UPDATED_AT, DP_ROLE_STARTED_AT, DP_ROLE_FINISHED_AT};
		TimestampTz latest = DT_NOBEGIN;

		for (i = 0; i < (int) lengthof(latest_roles); i++)
		{
			DpRole		role = latest_roles[i];

			if (!t->att[role])
				continue;
			dp_want_load(t, &w, role);
			if (!w.isnull[role] && !TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(w.v[role])) &&
				DatumGetTimestampTz(w.v[role]) > latest)
				latest = DatumGetTimestampTz(w.v[role]);
			/* the first of the three holds the latest; else both of the last two */
			if (role == DP_ROLE_HEARTBEAT_AT || role == DP_ROLE_PROGRESS_UPDATED_AT ||
				role == DP_ROLE_PHASE_UPDATED_AT)
				break;
		}
		if (unlikely(latest > now))
		{
			now = GetCurrentTimestamp();
			if (now < latest)
				now = latest;
		}
	}
	dp_want_set(t, &w, DP_ROLE_HEARTBEAT_AT, TimestampTzGetDatum(now), false);
	if (ch.entered)
	{
		DpKind		kind;

		Assert(ch.new_idx >= 0 && ch.new_idx < t->nphases);
		kind = t->phases[ch.new_idx].kind;

		dp_want_set(t, &w, DP_ROLE_PHASE_UPDATED_AT, TimestampTzGetDatum(now), false);
		dp_want_set(t, &w, DP_ROLE_PROGRESS_UPDATED_AT, TimestampTzGetDatum(now), false);
		if (kind == DP_KIND_ACTIVE && dp_want_load(t, &w, DP_ROLE_STARTED_AT)->isnull[DP_ROLE_STARTED_AT])
			dp_want_set(t, &w, DP_ROLE_STARTED_AT, TimestampTzGetDatum(now), false);
		if (DP_KIND_IS_TERMINAL(kind))
			dp_want_set(t, &w, DP_ROLE_FINISHED_AT, TimestampTzGetDatum(now), false);
		else if (ch.old_idx >= 0 && DP_KIND_IS_TERMINAL(t->phases[ch.old_idx].kind))
			dp_want_set(t, &w, DP_ROLE_FINISHED_AT, (Datum) 0, true);	/* restart */
		/* a new phase starts a new speed estimate */
		dp_want_set(t, &w, DP_ROLE_SPEED_UPDATED_AT, TimestampTzGetDatum(now), false);
	}
	else if (ch.counters_moved)
		dp_want_set(t, &w, DP_ROLE_PROGRESS_UPDATED_AT, TimestampTzGetDatum(now), false);

	/*
	 * smoothed speed: one O(1) step per move of completed_items (items per
	 * second), or of the percent column (percent per second)
	 */
	if (t->att[DP_ROLE_ITEMS_PER_SECOND])
	{
		bool		by_percent = t->att[DP_ROLE_PERCENT] != InvalidAttrNumber;
		bool		moved = by_percent ? ch.percent_moved : ch.completed_moved;
		bool		reset = by_percent ?
			(ch.percent_null || ch.old_percent_null || ch.percent < ch.old_percent) :
			(ch.completed_null || ch.old_completed_null || ch.completed < ch.old_completed);
		double		delta = by_percent ? ch.percent - ch.old_percent :
			(double) (ch.completed - ch.old_completed);

		if (oldslot == NULL || ch.entered)
		{
			speed_null = true;
			speed_set = true;
		}
		else if (moved)
		{
			speed = slot_getattr(w.src, t->att[DP_ROLE_ITEMS_PER_SECOND], &speed_null);
			speed_set = true;
			dp_want_load(t, &w, DP_ROLE_SPEED_UPDATED_AT);
			if (reset)
			{
				/* counter reset or went backwards: start over */
				speed_null = true;
				dp_want_set(t, &w, DP_ROLE_SPEED_UPDATED_AT, TimestampTzGetDatum(now), false);
			}
			else if (w.isnull[DP_ROLE_SPEED_UPDATED_AT] ||
					 TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(w.v[DP_ROLE_SPEED_UPDATED_AT])))
				dp_want_set(t, &w, DP_ROLE_SPEED_UPDATED_AT, TimestampTzGetDatum(now), false);
			else
			{
				TimestampTz last = DatumGetTimestampTz(w.v[DP_ROLE_SPEED_UPDATED_AT]);

				if (now > last)
				{
					double		rate;
					double		elapsed = 0;	/* since the estimate began */

					dp_want_load(t, &w, DP_ROLE_PHASE_UPDATED_AT);
					if (!w.isnull[DP_ROLE_PHASE_UPDATED_AT] &&
						!TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(w.v[DP_ROLE_PHASE_UPDATED_AT])))
						elapsed = (double) (now - DatumGetTimestampTz(w.v[DP_ROLE_PHASE_UPDATED_AT])) /
							USECS_PER_SEC;
					rate = dp_speed_step(speed_null ? 0 : DatumGetFloat8(speed), speed_null,
										 delta,
										 (double) (now - last) / USECS_PER_SEC,
										 elapsed, t->speed_tau);
					speed = Float8GetDatum(rate);
					speed_null = false;
					dp_want_set(t, &w, DP_ROLE_SPEED_UPDATED_AT, TimestampTzGetDatum(now), false);
				}
			}
		}
		else if (!owned_kept)
		{
			/* the statement may have written the speed: keep the old one */
			speed = slot_getattr(oldslot, t->att[DP_ROLE_ITEMS_PER_SECOND], &speed_null);
			speed_set = true;
		}
	}

	/*
	 * Replace what differs from the row as written: the values the rules set
	 * and, unless the SET list proved them untouched, every other timing
	 * column (a value the statement wrote is replaced by the old one).
	 */
	for (i = 0; i < t->ntimings; i++)
	{
		DpRole		r = t->timings[i];
		bool		isnull;
		Datum		cur;

		if (owned_kept && !w.set[r])
			continue;
		dp_want_load(t, &w, r);
		cur = slot_getattr(newslot, t->att[r], &isnull);
		/* timestamp and timestamptz are both int64 microseconds */
		if (isnull == w.isnull[r] &&
			(isnull || DatumGetTimestampTz(cur) == DatumGetTimestampTz(w.col[r])))
			continue;
		cols[ncols] = t->att[r];
		vals[ncols] = w.col[r];
		nulls[ncols] = w.isnull[r];
		ncols++;
	}
	if (speed_set)
	{
		bool		isnull;
		Datum		cur = slot_getattr(newslot, t->att[DP_ROLE_ITEMS_PER_SECOND], &isnull);

		if (isnull != speed_null ||
			(!isnull && DatumGetFloat8(cur) != DatumGetFloat8(speed)))
		{
			cols[ncols] = t->att[DP_ROLE_ITEMS_PER_SECOND];
			vals[ncols] = speed;
			nulls[ncols] = speed_null;
			ncols++;
		}
	}
	/* remember the stamps in case the row moves to another partition */
	dp_moved.valid = false;
	if (oldslot && trigdata->tg_relation->rd_rel->relispartition)
	{
		for (i = 0; i < t->ntimings; i++)
		{
			DpRole		r = t->timings[i];
			Datum		d;
			bool		isnull;

			if (!owned_kept || w.set[r])
			{
				dp_want_load(t, &w, r);
				d = w.col[r];
				isnull = w.isnull[r];
			}
			else
				d = slot_getattr(newslot, t->att[r], &isnull);
			dp_moved.ts_null[r] = isnull;
			dp_moved.ts[r] = isnull ? 0 : DatumGetTimestampTz(d);
		}
		dp_moved.speed_null = true;
		dp_moved.speed = 0;
		if (t->att[DP_ROLE_ITEMS_PER_SECOND])
		{
			Datum		d = speed;
			bool		isnull = speed_null;

			if (!speed_set)
				d = slot_getattr(newslot, t->att[DP_ROLE_ITEMS_PER_SECOND], &isnull);
			dp_moved.speed_null = isnull;
			dp_moved.speed = isnull ? 0 : DatumGetFloat8(d);
		}
		dp_moved.phase_changed = ch.entered;
		dp_moved.old_idx = ch.old_idx;
		dp_moved.old_phase_at_null = true;
		dp_moved.old_phase_at = 0;
		if (ch.entered && t->att[DP_ROLE_PHASE_UPDATED_AT])
		{
			Datum		d = slot_getattr(oldslot, t->att[DP_ROLE_PHASE_UPDATED_AT],
										 &dp_moved.old_phase_at_null);

			if (!dp_moved.old_phase_at_null)
				dp_moved.old_phase_at = dp_timing_from_column(t, DP_ROLE_PHASE_UPDATED_AT, d);
		}
		dp_moved.tracked_relid = t->tracked_relid;
		dp_moved.cid = GetCurrentCommandId(false);
		dp_moved.src_relid = RelationGetRelid(trigdata->tg_relation);
		dp_moved.src_tid = oldslot->tts_tid;
		dp_moved.valid = true;
	}

	Assert(ncols <= (int) lengthof(cols));
	if (ncols == 0)
		return PointerGetDatum(newtuple);
	return PointerGetDatum(dp_modify_tuple(t, trigdata->tg_relation, newslot, newtuple,
										   ncols, cols, vals, nulls));
}
