/*-------------------------------------------------------------------------
 *
 * history.c
 *	  Transition history and events: deploy_progress.record_transition()
 *	  (AFTER ROW) queues each phase transition of a tracked table; once per
 *	  statement the queue is written to deploy_progress.history, straight
 *	  into the heap (table_multi_insert()), and sent as NOTIFY events, one
 *	  per transition or, for a bulk statement, one summary per phase.
 *
 * track() creates the trigger twice: AFTER INSERT, and AFTER UPDATE with
 * WHEN (OLD.phase IS DISTINCT FROM NEW.phase), so that the executor drops
 * heartbeats and counter updates before any trigger event is queued: they
 * cost a comparison of two phase values, nothing more.
 *
 * Each firing appends one row to a backend-local buffer: its history row,
 * its event, or both.  The buffer is written at once, straight into the
 * heap and indexes of deploy_progress.history (table_multi_insert(), as
 * COPY FROM does: no SPI, no plan, one WAL record per page of rows), and
 * its events are sent (Async_Notify()), when the statement that filled it
 * ends:
 *
 *	- ExecutorFinish_hook, after the statement's AFTER triggers have fired;
 *	- ProcessUtility_hook, for COPY FROM (which has no executor of its own);
 *	- the pre-commit transaction callback, as a safety net for any other
 *	  path (logical replication apply, ...).
 *
 * Events at bulk scale: at that point the flush knows how many transitions
 * of each tracked table (a partition's rows count under the tracked
 * partitioned table) the statement made.  A table with more than
 * deploy_progress.notify_bulk_threshold of them gets one summary event per
 * phase entered instead of one event per transition (dp_events_send());
 * -1 never summarizes, 0 summarizes every statement.
 * Each buffered row carries the statement depth it was queued at, and a
 * statement's end takes only the rows of its own depth and deeper: the
 * statements that a bulk statement's row triggers run (an audit trigger's
 * INSERT) do not cut it into one-row batches.
 *
 * Notifications are transactional by construction: Async_Notify() files
 * them under the (sub)transaction level that calls it, PostgreSQL drops
 * those of an aborted subtransaction (AtSubAbort_Notify()) and delivers the
 * rest at commit.  A flush runs at the level that queued its rows, so the
 * events of a statement inside a savepoint that is rolled back later are
 * dropped by PostgreSQL, and those of a statement that failed are never
 * sent (its rows leave the buffer with the subtransaction, see below).
 *
 * Hooks rather than an AFTER STATEMENT trigger: a statement trigger would
 * fire on every heartbeat statement too, and would not fire at all for a
 * statement that targets a partition of a tracked partitioned table.
 *
 * Subtransactions: each buffered row carries the nesting level of the
 * (sub)transaction that queued it, and the levels in the buffer never
 * decrease from start to end.  A flush writes only the rows of the current
 * level (and of its statement's depth): rows of an outer statement whose
 * triggers opened a subtransaction (a PL/pgSQL EXCEPTION block) wait for
 * that statement's end, since
 * writing them inside the subtransaction would lose them if it rolled back.
 * A subtransaction commit hands its rows to the parent level, an abort
 * drops them, and the end of the transaction, either way, empties the
 * buffer: no row ever outlives the change it records.
 *
 * Writing directly checks no privilege: deploy_progress.history is the
 * extension's own log, not granted to PUBLIC, and readable through the
 * transitions view only.
 *
 * The columns are found by name (dp_history_target()), so that the library
 * writes the history of whichever schema version is installed: relid, key,
 * to_phase, to_kind and at are in every version; the others are written
 * where the table has them; columns the library does not know get their
 * default (the identity "id" among them).
 *
 * IDENTIFICATION
 *	  src/history.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "deploy_progress.h"

/*
 * Longest key, reason, label and message, in bytes, that an event carries:
 * with phase and table names of at most 63 bytes, a payload stays under
 * 5000 bytes even when every character needs a \uXXXX escape, well within
 * PostgreSQL's 8000-byte limit.
 */
#define DP_EVENT_TEXT_MAX 128

struct DpEventTable;
struct DpEventGroup;

/* One queued transition: its history row, its event, or both. */
typedef struct DpHistRow
{
	int			level;			/* nesting level of the queuing transaction */
	int			depth;			/* dp_statement_depth when it was queued */
	bool		record;			/* write its history row */
	struct DpEventTable *event; /* where its event goes; NULL: no event */
	struct DpEventGroup *group; /* during a flush: the summary this row is
								 * the first of (NULL: none) */
	Oid			relid;			/* the tracked table */
	TimestampTz at;				/* when the new phase was entered */
	TimestampTz prev;			/* when the previous phase was entered */
	int64		completed;
	int64		total;
	bool		prev_null;
	bool		completed_null;
	bool		total_null;
	const char *kind;			/* kind of the new phase (static string) */
	text	   *key;
	text	   *from;			/* NULL for an INSERT */
	text	   *to;
	text	   *reason;			/* NULL when none */
	text	   *label;			/* the label, message and metadata columns'
								 * values (NULL: none, or no such column) */
	text	   *message;
	Jsonb	   *metadata;
} DpHistRow;

/*
 * The event destination of a tracked table, shared by its queued rows
 * (kept in the buffer's context, found again by dp_event_table()); "count"
 * and "summarize" are worked out by each flush.
 */
typedef struct DpEventTable
{
	struct DpEventTable *next;
	Oid			relid;			/* the tracked table (a partition's parent) */
	char	   *channel;
	char	   *table_json;		/* JSON string of its qualified name */
	bool		has_label;		/* the table has a label column */
	bool		has_message;	/* ... a message column */
	int64		count;			/* events of the statement being flushed */
	bool		summarize;		/* more than the bulk threshold */
} DpEventTable;

/* One summary event: the rows of a statement that entered one phase. */
typedef struct DpEventGroup
{
	struct DpEventGroup *next;	/* next group of the same table */
	DpEventTable *event;
	DpHistRow  *first;			/* the first and the last row of the group */
	DpHistRow  *last;
	int64		count;
	bool		same_reason;	/* all rows have first's reason */
} DpEventGroup;

static MemoryContext dp_hist_cxt = NULL;
static DpHistRow *dp_rows = NULL;
static DpEventTable *dp_event_tables = NULL;	/* in dp_hist_cxt */
static int	dp_nrows = 0;
static int	dp_maxrows = 0;
static bool dp_flushing = false;
static int64 dp_flush_count = 0;

/*
 * How many executor-finish and utility hooks are running: the depth of the
 * statement whose AFTER triggers fire now.  Side storage files the rows a
 * statement re-keyed when the statement at that depth ends.
 */
int			dp_statement_depth = 0;

static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Forget every queued row. */
static void
dp_history_reset(void)
{
	dp_nrows = 0;
	dp_maxrows = 0;
	dp_rows = NULL;
	dp_event_tables = NULL;
	if (dp_hist_cxt)
		MemoryContextReset(dp_hist_cxt);
}

/*
 * Rows moved to another partition.  PostgreSQL runs an UPDATE that moves a
 * row to another partition as a DELETE from the old partition and an
 * INSERT into the new one, and fires the new partition's AFTER INSERT
 * triggers, not AFTER UPDATE: without a note, the history would record the
 * move as the row's insertion into its phase (no previous phase, no time
 * in it), and a move that kept the phase as a transition.  The stamp
 * trigger recognizes the moved row in the new partition's BEFORE INSERT
 * (stamp.c, dp_is_moved_row()) and notes here what the UPDATE did to its
 * phase; the AFTER INSERT of that row, which fires later in the same order
 * as the notes were made, takes its note by table and key.  Notes are
 * looked for from the oldest not taken, at most DP_MOVE_WINDOW of them (a
 * MERGE interleaves moved and inserted rows: an inserted row looks at a
 * few notes only); when all are taken they are forgotten, and the end of
 * the (sub)transaction drops those it made.
 */
typedef struct DpMovedRow
{
	Oid			relid;			/* the tracked table */
	text	   *key;
	int			level;			/* transaction nesting level of the note */
	bool		taken;
	bool		phase_changed;
	int			old_idx;
	TimestampTz old_phase_at;
	bool		old_phase_at_null;
} DpMovedRow;

#define DP_MOVE_WINDOW 16

static MemoryContext dp_moves_cxt = NULL;
static DpMovedRow *dp_moves = NULL;
static int	dp_nmoves = 0;
static int	dp_maxmoves = 0;
static int	dp_moves_head = 0;		/* the oldest note not taken */

static void
dp_moves_reset(void)
{
	dp_nmoves = dp_maxmoves = dp_moves_head = 0;
	dp_moves = NULL;
	if (dp_moves_cxt)
		MemoryContextReset(dp_moves_cxt);
}

void
dp_history_note_move(DpTrack *t, Relation rel, TupleTableSlot *newslot, bool phase_changed,
					 int old_idx, TimestampTz old_phase_at, bool old_phase_at_null)
{
	MemoryContext oldcxt;
	text	   *key = dp_row_key(t, rel, newslot);
	DpMovedRow *m;

	if (dp_moves_cxt == NULL)
		dp_moves_cxt = AllocSetContextCreate(TopMemoryContext,
											 "deploy_progress moved rows",
											 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(dp_moves_cxt);
	if (dp_nmoves >= dp_maxmoves)
	{
		int			newmax = dp_maxmoves ? dp_maxmoves * 2 : 64;

		dp_moves = dp_moves ? repalloc_huge(dp_moves, sizeof(DpMovedRow) * newmax) :
			palloc(sizeof(DpMovedRow) * newmax);
		dp_maxmoves = newmax;
	}
	m = &dp_moves[dp_nmoves++];
	m->relid = t->tracked_relid;
	m->key = (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(key));
	m->level = GetCurrentTransactionNestLevel();
	m->taken = false;
	m->phase_changed = phase_changed;
	m->old_idx = old_phase_at_null && !phase_changed ? -1 : old_idx;
	m->old_phase_at = old_phase_at;
	m->old_phase_at_null = old_phase_at_null;
	MemoryContextSwitchTo(oldcxt);
}

/* The note of the row of table "relid" with key "key" inserted into a partition, if moved. */
static DpMovedRow *
dp_moves_take(Oid relid, text *key)
{
	int			seen = 0;

	for (int i = dp_moves_head; i < dp_nmoves && seen < DP_MOVE_WINDOW; i++)
	{
		DpMovedRow *m = &dp_moves[i];

		if (m->taken)
			continue;
		seen++;
		if (m->relid == relid && dp_text_equal(PointerGetDatum(m->key), PointerGetDatum(key)))
		{
			m->taken = true;
			while (dp_moves_head < dp_nmoves && dp_moves[dp_moves_head].taken)
				dp_moves_head++;
			return m;
		}
	}
	return NULL;
}

/* The buffer's memory context, created on first use. */
static MemoryContext
dp_history_cxt(void)
{
	if (dp_hist_cxt == NULL)
		dp_hist_cxt = AllocSetContextCreate(TopMemoryContext,
											"deploy_progress history buffer",
											ALLOCSET_DEFAULT_SIZES);
	return dp_hist_cxt;
}

/* Room for one more row in the buffer. */
static DpHistRow *
dp_history_slot(void)
{
	(void) dp_history_cxt();
	if (dp_nrows >= dp_maxrows)
	{
		int			newmax = dp_maxrows ? dp_maxrows * 2 : 64;

		if (dp_rows == NULL)
			dp_rows = MemoryContextAlloc(dp_hist_cxt, sizeof(DpHistRow) * newmax);
		else
			dp_rows = repalloc_huge(dp_rows, sizeof(DpHistRow) * newmax);
		dp_maxrows = newmax;
	}
	Assert(dp_nrows >= 0 && dp_nrows < dp_maxrows);
	return &dp_rows[dp_nrows];
}

/*
 * The columns of deploy_progress.history that the C fills, with their
 * types.  The required ones are in every schema version; a column that an
 * older schema lacks is not written.  Every other column of the table (such
 * as "id", an identity column) gets its default, or its value when it is a
 * stored generated column; one that has neither and is NOT NULL cannot be
 * filled, and the flush says so rather than write a row the table refuses.
 */
typedef enum DpHistCol
{
	DP_H_RELID, DP_H_KEY, DP_H_FROM, DP_H_TO, DP_H_KIND, DP_H_AT,
	DP_H_TIME_IN_PREVIOUS, DP_H_COMPLETED, DP_H_TOTAL, DP_H_REASON, DP_H_TXID,
	DP_H_LABEL, DP_H_MESSAGE, DP_H_METADATA,
	DP_H_NCOLS
} DpHistCol;

typedef struct DpHistColDef
{
	const char *name;
	Oid			type;
	bool		required;		/* in every schema version */
} DpHistColDef;

static const DpHistColDef dp_hist_columns[DP_H_NCOLS] = {
	[DP_H_RELID] = {"relid", REGCLASSOID, true},
	[DP_H_KEY] = {"key", TEXTOID, true},
	[DP_H_FROM] = {"from_phase", TEXTOID, false},
	[DP_H_TO] = {"to_phase", TEXTOID, true},
	[DP_H_KIND] = {"to_kind", TEXTOID, true},
	[DP_H_AT] = {"at", TIMESTAMPTZOID, true},
	[DP_H_TIME_IN_PREVIOUS] = {"time_in_previous", INTERVALOID, false},
	[DP_H_COMPLETED] = {"completed", INT8OID, false},
	[DP_H_TOTAL] = {"total", INT8OID, false},
	[DP_H_REASON] = {"reason", TEXTOID, false},
	[DP_H_TXID] = {"txid", INT8OID, false},	/* 1.1 */
	[DP_H_LABEL] = {"label", TEXTOID, false},	/* 1.1 */
	[DP_H_MESSAGE] = {"message", TEXTOID, false},	/* 1.1 */
	[DP_H_METADATA] = {"metadata", JSONBOID, false},	/* 1.1 */
};

/*
 * How a flush fills the rows of deploy_progress.history: looked up once,
 * and again after an invalidation of the table (dp_tables_generation).
 */
typedef struct DpHistTarget
{
	uint32		generation;		/* dp_tables_generation it was built at; 0: none */
	MemoryContext cxt;			/* holds the arrays and expressions */
	Oid			relid;
	AttrNumber	att[DP_H_NCOLS];	/* InvalidAttrNumber: not in this schema */
	int			ndefaults;
	AttrNumber *default_att;	/* the other columns that have a default ... */
	Expr	  **default_expr;	/* ... and its expression */
	int			nnotnull;
	AttrNumber *notnull;		/* NOT NULL columns a row may leave null */
	bool		generated;		/* the table has stored generated columns */
} DpHistTarget;

static DpHistTarget dp_hist_target;

/* Where the history goes; "rel" is deploy_progress.history, locked. */
static DpHistTarget *
dp_history_target(Relation rel)
{
	DpHistTarget *tg = &dp_hist_target;
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext oldcxt;
	int			c;
	int			i;

	if (tg->generation == dp_tables_generation && tg->relid == RelationGetRelid(rel))
		return tg;
	if (tg->cxt == NULL)
		tg->cxt = AllocSetContextCreate(CacheMemoryContext, "deploy_progress history target",
										ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(tg->cxt);
	tg->generation = 0;
	tg->relid = RelationGetRelid(rel);
	oldcxt = MemoryContextSwitchTo(tg->cxt);
	tg->ndefaults = tg->nnotnull = 0;
	tg->default_att = palloc(sizeof(AttrNumber) * desc->natts);
	tg->default_expr = palloc(sizeof(Expr *) * desc->natts);
	tg->notnull = palloc(sizeof(AttrNumber) * desc->natts);
	tg->generated = desc->constr && desc->constr->has_generated_stored;
	for (c = 0; c < DP_H_NCOLS; c++)
		tg->att[c] = InvalidAttrNumber;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		for (c = 0; c < DP_H_NCOLS; c++)
			if (strcmp(NameStr(att->attname), dp_hist_columns[c].name) == 0)
				break;
		if (c < DP_H_NCOLS)
		{
			if (att->atttypid != dp_hist_columns[c].type)
				elog(ERROR, "column \"%s\" of " DP_SCHEMA ".history has type %s, not %s",
					 dp_hist_columns[c].name, format_type_be(att->atttypid),
					 format_type_be(dp_hist_columns[c].type));
			tg->att[c] = att->attnum;
			if (att->attnotnull && !dp_hist_columns[c].required)
				tg->notnull[tg->nnotnull++] = att->attnum;
		}
		else if (att->attgenerated)
			continue;			/* ExecComputeStoredGenerated() */
		else if (att->atthasdef || att->attidentity)
		{
			tg->default_att[tg->ndefaults] = att->attnum;
			tg->default_expr[tg->ndefaults] = (Expr *) build_column_default(rel, att->attnum);
			if (tg->default_expr[tg->ndefaults] != NULL)
				tg->ndefaults++;
			else if (att->attnotnull)
				tg->notnull[tg->nnotnull++] = att->attnum;
		}
		else if (att->attnotnull)
			tg->notnull[tg->nnotnull++] = att->attnum;
	}
	MemoryContextSwitchTo(oldcxt);
	for (c = 0; c < DP_H_NCOLS; c++)
		if (dp_hist_columns[c].required && !tg->att[c])
			elog(ERROR, "column \"%s\" of " DP_SCHEMA ".history is missing", dp_hist_columns[c].name);
	tg->generation = dp_tables_generation;
	return tg;
}

/*
 * Fill a slot with the history row of a queued transition; "defaults" are
 * the target's default expressions, ready to run in "econtext".
 */
static void
dp_history_fill(TupleTableSlot *slot, DpHistTarget *target, DpHistRow *r,
				ExprState **defaults, ExprContext *econtext)
{
	Datum	   *v = slot->tts_values;
	bool	   *n = slot->tts_isnull;
	int			i;

	ExecClearTuple(slot);
	memset(n, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (i = 0; i < target->ndefaults; i++)
	{
		AttrNumber	att = target->default_att[i];

		Assert(att >= 1 && att <= slot->tts_tupleDescriptor->natts);
		v[att - 1] = ExecEvalExpr(defaults[i], econtext, &n[att - 1]);
	}
#define DP_PUT(col, val) \
	do { \
		AttrNumber	att_ = target->att[col]; \
		Assert(att_ >= 0 && att_ <= slot->tts_tupleDescriptor->natts); \
		if (att_) \
		{ \
			v[att_ - 1] = (val); \
			n[att_ - 1] = false; \
		} \
	} while (0)
	DP_PUT(DP_H_RELID, ObjectIdGetDatum(r->relid));
	DP_PUT(DP_H_KEY, PointerGetDatum(r->key));
	if (r->from)
		DP_PUT(DP_H_FROM, PointerGetDatum(r->from));
	DP_PUT(DP_H_TO, PointerGetDatum(r->to));
	DP_PUT(DP_H_KIND, CStringGetTextDatum(r->kind));
	DP_PUT(DP_H_AT, TimestampTzGetDatum(r->at));
	if (!r->prev_null && target->att[DP_H_TIME_IN_PREVIOUS])
		DP_PUT(DP_H_TIME_IN_PREVIOUS,
			   DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(r->at),
								   TimestampTzGetDatum(r->prev)));
	if (!r->completed_null)
		DP_PUT(DP_H_COMPLETED, Int64GetDatum(r->completed));
	if (!r->total_null)
		DP_PUT(DP_H_TOTAL, Int64GetDatum(r->total));
	if (r->reason)
		DP_PUT(DP_H_REASON, PointerGetDatum(r->reason));
	if (r->label)
		DP_PUT(DP_H_LABEL, PointerGetDatum(r->label));
	if (r->message)
		DP_PUT(DP_H_MESSAGE, PointerGetDatum(r->message));
	if (r->metadata)
		DP_PUT(DP_H_METADATA, JsonbPGetDatum(r->metadata));

	/*
	 * The top-level transaction's id, as pg_current_xact_id() gives it: the
	 * order of the event stream (events_since()).  The write being recorded
	 * has assigned it already.
	 */
	DP_PUT(DP_H_TXID,
		   Int64GetDatum((int64) U64FromFullTransactionId(GetTopFullTransactionId())));
#undef DP_PUT
	for (i = 0; i < target->nnotnull; i++)
		if (n[target->notnull[i] - 1])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("cannot record a transition of table \"%s\": column \"%s\" of " DP_SCHEMA ".history cannot be null",
							get_rel_name(r->relid) ? get_rel_name(r->relid) : "?",
							NameStr(TupleDescAttr(slot->tts_tupleDescriptor, target->notnull[i] - 1)->attname)),
					 errdetail("The history table has a column this version of the deploy_progress library does not fill."),
					 errhint("Install the library of the extension's version, or run ALTER EXTENSION deploy_progress UPDATE.")));
	ExecStoreVirtualTuple(slot);
}

/* Insert the index entries of the rows just written from "slots". */
static void
dp_history_index(ResultRelInfo *rri, EState *estate, TupleTableSlot **slots, int nslots)
{
	int			i;

	for (i = 0; i < nslots; i++)
	{
		List	   *recheck;

		ResetPerTupleExprContext(estate);
#if PG_VERSION_NUM >= 160000
		recheck = ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL, false);
#elif PG_VERSION_NUM >= 140000
		recheck = ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL);
#else
		recheck = ExecInsertIndexTuples(slots[i], estate, false, NULL, NIL);
#endif
		list_free(recheck);
	}
}

/* Rows written per table_multi_insert() call, as COPY FROM does. */
#define DP_FLUSH_CHUNK 1000

/*
 * Write the history rows among dp_rows[first ..], "nrecord" of them, all at
 * once: straight into the heap (table_multi_insert(), one WAL record per
 * page rather than per row, as COPY FROM does) and its indexes, with ids
 * from the identity sequence.  No SPI, no plan, no executor: this runs once
 * per statement that made transitions, so its fixed cost is what a one-row
 * transition pays.  Privileges are not checked (the history is the
 * extension's own log, not granted to PUBLIC), and nothing is written that
 * the table's definition could refuse.
 */
static void
dp_history_write(int first, int nrecord)
{
	int			done;
	int			next;
	int			nslots;
	int			i;
	DpHistTarget *target;
	Oid			relid;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot **slots;
	ExprState **defaults;
	BulkInsertState bistate = NULL;
	CommandId	cid = GetCurrentCommandId(true);
	MemoryContext oldcxt;

	Assert(nrecord >= 1 && first + nrecord <= dp_nrows);
	relid = get_relname_relid("history", get_namespace_oid(DP_SCHEMA, false));
	if (!OidIsValid(relid))
		elog(ERROR, "could not find table " DP_SCHEMA ".history");
	rel = table_open(relid, RowExclusiveLock);
	target = dp_history_target(rel);
	estate = CreateExecutorState();
	oldcxt = MemoryContextSwitchTo(estate->es_query_cxt);
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
#if PG_VERSION_NUM < 140000
	estate->es_result_relations = rri;
	estate->es_num_result_relations = 1;
	estate->es_result_relation_info = rri;
#endif
	ExecOpenIndices(rri, false);
	nslots = Min(nrecord, DP_FLUSH_CHUNK);
	slots = palloc(sizeof(TupleTableSlot *) * nslots);
	for (i = 0; i < nslots; i++)
		slots[i] = table_slot_create(rel, NULL);
	if (nrecord > 1)
		bistate = GetBulkInsertState();
	defaults = palloc(sizeof(ExprState *) * Max(target->ndefaults, 1));
	for (i = 0; i < target->ndefaults; i++)
		defaults[i] = ExecPrepareExpr(target->default_expr[i], estate);

	next = first;
	for (done = 0; done < nrecord; done += nslots)
	{
		int			chunk = Min(nslots, nrecord - done);

		Assert(chunk >= 1);
		for (i = 0; i < chunk; i++)
		{
			while (!dp_rows[next].record)
				next++;
			Assert(next < dp_nrows);
			dp_history_fill(slots[i], target, &dp_rows[next++],
							defaults, GetPerTupleExprContext(estate));
			if (target->generated)
#if PG_VERSION_NUM >= 140000
				ExecComputeStoredGenerated(rri, estate, slots[i], CMD_INSERT);
#else
				ExecComputeStoredGenerated(estate, slots[i], CMD_INSERT);
#endif
		}
		if (chunk == 1)
			table_tuple_insert(rel, slots[0], cid, 0, bistate);
		else
			table_multi_insert(rel, slots, chunk, cid, 0, bistate);
		dp_history_index(rri, estate, slots, chunk);
	}

	if (bistate)
		FreeBulkInsertState(bistate);
	for (i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	ExecCloseIndices(rri);
	MemoryContextSwitchTo(oldcxt);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

static void dp_notify(DpHistRow *r);
static void dp_notify_summary(DpEventGroup *g);

/*
 * Send the events among dp_rows[first ..], as PostgreSQL notifications of
 * the current (sub)transaction level, the level that queued them: one per
 * transition, except for a table with more than
 * deploy_progress.notify_bulk_threshold of them, whose transitions are sent
 * as one summary event per phase entered, in the place of the first
 * transition into that phase.  The groups are made in the caller's
 * context and freed when sent.
 */
static void
dp_events_send(int first)
{
	int			threshold = dp_notify_bulk_threshold;
	bool		any_bulk = false;
	DpEventGroup *groups = NULL;	/* of every summarized table */
	DpEventTable *e;
	int			i;

	for (e = dp_event_tables; e; e = e->next)
		e->count = 0;
	for (i = first; i < dp_nrows; i++)
		if (dp_rows[i].event)
			dp_rows[i].event->count++;
	for (e = dp_event_tables; e; e = e->next)
	{
		e->summarize = threshold >= 0 && e->count > threshold;
		any_bulk |= e->summarize;
	}

	if (any_bulk)
	{
		for (i = first; i < dp_nrows; i++)
		{
			DpHistRow  *r = &dp_rows[i];
			DpEventGroup *g;

			r->group = NULL;
			if (r->event == NULL || !r->event->summarize)
				continue;
			for (g = groups; g; g = g->next)
				if (g->event == r->event && dp_text_equal(PointerGetDatum(g->first->to),
														  PointerGetDatum(r->to)))
					break;
			if (g == NULL)
			{
				g = palloc0(sizeof(DpEventGroup));
				g->event = r->event;
				g->first = r;
				g->same_reason = true;
				g->next = groups;
				groups = g;
				r->group = g;
			}
			else if (g->same_reason &&
					 ((g->first->reason == NULL) != (r->reason == NULL) ||
					  (r->reason && !dp_text_equal(PointerGetDatum(g->first->reason),
												   PointerGetDatum(r->reason)))))
				g->same_reason = false;
			g->last = r;
			g->count++;
		}
	}

	for (i = first; i < dp_nrows; i++)
	{
		DpHistRow  *r = &dp_rows[i];

		if (r->event == NULL)
			continue;
		if (!r->event->summarize)
			dp_notify(r);
		else if (r->group)
			dp_notify_summary(r->group);
	}

	/* a PL/pgSQL loop may run many bulk statements in one context */
	while (groups)
	{
		DpEventGroup *next = groups->next;

		pfree(groups);
		groups = next;
	}
}

/*
 * Write the history rows and send the events that the statement ending at
 * "depth" queued at the current transaction level (0: every statement, at
 * commit).  The rows of an outer statement, queued before a statement that
 * its triggers run, wait for the outer statement's end, so that a statement
 * is counted as a whole for the bulk threshold however many statements its
 * triggers run.
 */
static void
dp_history_flush(int depth)
{
	int			level = GetCurrentTransactionNestLevel();
	int			first = dp_nrows;
	int			nrecord = 0;
	bool		notify = false;
	int			i;

	while (first > 0 && dp_rows[first - 1].level >= level && dp_rows[first - 1].depth >= depth)
		first--;
	if (first == dp_nrows)
		return;
	Assert(first >= 0 && first < dp_nrows && dp_nrows <= dp_maxrows);
	for (i = first; i < dp_nrows; i++)
	{
		nrecord += dp_rows[i].record ? 1 : 0;
		notify |= dp_rows[i].event != NULL;
	}
	dp_flushing = true;

	if (nrecord > 0)
		dp_history_write(first, nrecord);
	if (notify)
		dp_events_send(first);

	/* done: take the rows off the queue */
	dp_nrows = first;
	if (dp_nrows == 0)
		dp_history_reset();
	dp_flushing = false;
	if (nrecord > 0)
		dp_flush_count++;
}

/* Whether the buffer holds rows a flush may write now. */
static inline bool
dp_history_pending(void)
{
	return dp_nrows > 0 && !dp_flushing && IsTransactionState() && !IsInParallelMode();
}

/* ExecutorFinish_hook: the statement's AFTER triggers have fired, write. */
static void
dp_executor_finish(QueryDesc *queryDesc)
{
	int			depth = ++dp_statement_depth;

	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		dp_statement_depth = depth - 1;
	}
	PG_END_TRY();
	dp_side_flush(depth);
	if (dp_history_pending())
		dp_history_flush(depth);
}

/*
 * After a utility statement at depth "depth": write what COPY FROM queued,
 * and let side storage clean up after TRUNCATE and DETACH PARTITION.  A
 * transaction statement (COMMIT inside a procedure) has left the
 * transaction the queues belonged to.
 */
static void
dp_utility_end(PlannedStmt *pstmt, int depth)
{
	if (IsA(pstmt->utilityStmt, TransactionStmt))
		return;
	dp_side_flush(depth);
	dp_side_utility_end(pstmt->utilityStmt);
	if (dp_history_pending())
		dp_history_flush(depth);
}

/* ProcessUtility_hook: COPY FROM fires triggers without an executor. */
#if PG_VERSION_NUM >= 140000
static void
dp_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	int			depth = ++dp_statement_depth;

	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		dp_statement_depth = depth - 1;
	}
	PG_END_TRY();
	dp_utility_end(pstmt, depth);
}
#else
static void
dp_process_utility(PlannedStmt *pstmt, const char *queryString,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	int			depth = ++dp_statement_depth;

	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, context, params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		dp_statement_depth = depth - 1;
	}
	PG_END_TRY();
	dp_utility_end(pstmt, depth);
}
#endif

/* End of transaction: write what is left before commit, forget it after. */
static void
dp_history_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			dp_side_flush(0);
			if (dp_history_pending())
				dp_history_flush(0);
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
		default:
			dp_statement_depth = 0;
			dp_side_xact_end();
			dp_flushing = false;
			if (dp_nrows > 0 || dp_rows != NULL || dp_event_tables != NULL)
				dp_history_reset();
			if (dp_nmoves > 0)
				dp_moves_reset();
			break;
	}
}

/* End of a subtransaction: hand its rows to the parent, or drop them. */
static void
dp_history_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	int			level;
	int			i;

	if (event == SUBXACT_EVENT_ABORT_SUB || event == SUBXACT_EVENT_COMMIT_SUB)
		dp_side_subxact_end(event == SUBXACT_EVENT_COMMIT_SUB);
	level = GetCurrentTransactionNestLevel();
	if (dp_nmoves > 0 && (event == SUBXACT_EVENT_ABORT_SUB || event == SUBXACT_EVENT_COMMIT_SUB))
	{
		/* the notes of an aborted subtransaction are dropped, a commit hands them up */
		for (i = dp_moves_head; i < dp_nmoves; i++)
		{
			if (dp_moves[i].level < level)
				continue;
			if (event == SUBXACT_EVENT_ABORT_SUB)
				dp_moves[i].taken = true;
			else
				dp_moves[i].level = level - 1;
		}
		while (dp_moves_head < dp_nmoves && dp_moves[dp_moves_head].taken)
			dp_moves_head++;
		if (dp_moves_head == dp_nmoves)
			dp_moves_reset();
	}
	if (dp_nrows == 0)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		dp_flushing = false;
		while (dp_nrows > 0 && dp_rows[dp_nrows - 1].level >= level)
			dp_nrows--;
		if (dp_nrows == 0)
			dp_history_reset();
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (i = dp_nrows - 1; i >= 0 && dp_rows[i].level >= level; i--)
			dp_rows[i].level = level - 1;
	}
}

/* Install the hooks and callbacks; called from _PG_init(). */
void
dp_history_init(void)
{
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = dp_executor_finish;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = dp_process_utility;
	RegisterXactCallback(dp_history_xact_callback, NULL);
	RegisterSubXactCallback(dp_history_subxact_callback, NULL);
}

/*
 * The reason of a transition: the row's reason column when the write states
 * one (the row is inserted, the column changed, or the new phase is a
 * failed or cancelled one); else deploy_progress.transition_reason; else
 * "restart" for a row leaving a terminal phase.  NULL when there is none.
 */
static text *
dp_transition_reason_of(DpTrack *t, TupleTableSlot *oldslot, TupleTableSlot *newslot,
						DpKind kind, int old_idx)
{
	if (t->att[DP_ROLE_FAILURE_REASON])
	{
		bool		isnull;
		Datum		d = slot_getattr(newslot, t->att[DP_ROLE_FAILURE_REASON], &isnull);

		if (!isnull)
		{
			bool		stated = oldslot == NULL ||
				kind == DP_KIND_FAILED || kind == DP_KIND_CANCELLED;

			if (!stated)
			{
				bool		old_isnull;
				Datum		od = slot_getattr(oldslot, t->att[DP_ROLE_FAILURE_REASON], &old_isnull);

				stated = old_isnull || !dp_text_equal(d, od);
			}
			if (stated)
				return DatumGetTextPP(d);
		}
	}
	if (dp_transition_reason && dp_transition_reason[0] != '\0')
		return cstring_to_text(dp_transition_reason);
	if (old_idx >= 0 && DP_KIND_IS_TERMINAL(t->phases[old_idx].kind))
		return cstring_to_text("restart");
	return NULL;
}

/*
 * The value of a text or varchar role column in a slot, NULL when the row
 * has none or the table no such column (varchar is binary-compatible with
 * text).
 */
static text *
dp_slot_text(DpTrack *t, TupleTableSlot *slot, DpRole role)
{
	bool		isnull;
	Datum		d;

	if (!t->att[role])
		return NULL;
	d = slot_getattr(slot, t->att[role], &isnull);
	return isnull ? NULL : DatumGetTextPP(d);
}

/* Append a JSON string of at most DP_EVENT_TEXT_MAX bytes of "s". */
static bool
dp_json_clipped(StringInfo buf, const char *s, int len)
{
	int			cut = len;
	char	   *copy;

	if (len > DP_EVENT_TEXT_MAX)
		cut = pg_mbcliplen(s, len, DP_EVENT_TEXT_MAX);
	copy = pnstrdup(s, cut);
	escape_json(buf, copy);
	pfree(copy);
	return cut < len;
}

/*
 * Where the events of table "t" go, with the JSON string of its qualified
 * name: one entry per table for as long as the buffer holds rows.
 */
static DpEventTable *
dp_event_table(DpTrack *t)
{
	DpEventTable *e;
	MemoryContext oldcxt;
	StringInfoData buf;
	char	   *nsp;
	char	   *name;
	bool		has_label = t->att[DP_ROLE_LABEL] != InvalidAttrNumber;
	bool		has_message = t->att[DP_ROLE_MESSAGE] != InvalidAttrNumber;

	Assert(t->notify_channel != NULL);
	for (e = dp_event_tables; e; e = e->next)
		if (e->relid == t->tracked_relid && e->has_label == has_label &&
			e->has_message == has_message && strcmp(e->channel, t->notify_channel) == 0)
			return e;
	oldcxt = MemoryContextSwitchTo(dp_history_cxt());
	e = palloc0(sizeof(DpEventTable));
	e->relid = t->tracked_relid;
	e->channel = pstrdup(t->notify_channel);
	e->has_label = has_label;
	e->has_message = has_message;
	nsp = get_namespace_name(get_rel_namespace(t->tracked_relid));
	name = get_rel_name(t->tracked_relid);
	initStringInfo(&buf);
	escape_json(&buf, quote_qualified_identifier(nsp ? nsp : "?", name ? name : "?"));
	e->table_json = buf.data;
	e->next = dp_event_tables;
	dp_event_tables = e;
	MemoryContextSwitchTo(oldcxt);
	return e;
}

/* Append ,"name": and a JSON string of at most DP_EVENT_TEXT_MAX bytes, or null. */
static bool
dp_json_field(StringInfo buf, const char *name, text *value)
{
	appendStringInfo(buf, ",\"%s\":", name);
	if (value == NULL)
	{
		appendStringInfoString(buf, "null");
		return false;
	}
	return dp_json_clipped(buf, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
}

/*
 * Send the event of a transition on the table's channel:
 * {"table", "key", "from", "to", "at", "percent", "reason"}, and "label"
 * and "message" for a table with such columns; plus "key_truncated",
 * "label_truncated" or "message_truncated": true when that text was cut
 * to DP_EVENT_TEXT_MAX bytes.  The metadata is never sent: it may be
 * large, and a listener reads it from the history.
 */
static void
dp_notify(DpHistRow *r)
{
	StringInfoData buf;
	char		ts[MAXDATELEN + 1];
	int			utc = 0;
	bool		key_cut;
	bool		label_cut;
	bool		message_cut;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"table\":");
	appendStringInfoString(&buf, r->event->table_json);
	appendStringInfoString(&buf, ",\"key\":");
	key_cut = dp_json_clipped(&buf, VARDATA_ANY(r->key), VARSIZE_ANY_EXHDR(r->key));
	appendStringInfoString(&buf, ",\"from\":");
	if (r->from)
		dp_json_clipped(&buf, VARDATA_ANY(r->from), VARSIZE_ANY_EXHDR(r->from));
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ",\"to\":");
	dp_json_clipped(&buf, VARDATA_ANY(r->to), VARSIZE_ANY_EXHDR(r->to));
	appendStringInfo(&buf, ",\"at\":\"%s\"",
					 JsonEncodeDateTime(ts, TimestampTzGetDatum(r->at), TIMESTAMPTZOID, &utc));
	appendStringInfoString(&buf, ",\"percent\":");
	if (!r->completed_null && !r->total_null && r->total > 0)
	{
		double		pct = 100.0 * (double) r->completed / (double) r->total;

		pct = pct < 0 ? 0 : pct > 100 ? 100 : pct;
		appendStringInfo(&buf, "%.4g", pct);
	}
	else
		appendStringInfoString(&buf, "null");
	(void) dp_json_field(&buf, "reason", r->reason);
	/* the label and the message of a table that has such columns */
	label_cut = r->event->has_label && dp_json_field(&buf, "label", r->label);
	message_cut = r->event->has_message && dp_json_field(&buf, "message", r->message);
	if (key_cut)
		appendStringInfoString(&buf, ",\"key_truncated\":true");
	if (label_cut)
		appendStringInfoString(&buf, ",\"label_truncated\":true");
	if (message_cut)
		appendStringInfoString(&buf, ",\"message_truncated\":true");
	appendStringInfoChar(&buf, '}');
	Async_Notify(r->event->channel, buf.data);
	pfree(buf.data);
}

/*
 * Send the summary event of the rows of a statement that entered one phase
 * of one table, in the place of their events:
 * {"table", "to", "kind", "count", "at", "first_key", "last_key", "reason",
 * "bulk": true}, where "at" is when the first of them entered the phase,
 * "first_key" and "last_key" the keys of the first and the last of them in
 * the order the statement moved them (cut like a key, with
 * "first_key_truncated" or "last_key_truncated"), and "reason" theirs when
 * they all have the same one, else null.
 */
static void
dp_notify_summary(DpEventGroup *g)
{
	StringInfoData buf;
	char		ts[MAXDATELEN + 1];
	int			utc = 0;
	bool		first_cut;
	bool		last_cut;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"table\":");
	appendStringInfoString(&buf, g->event->table_json);
	appendStringInfoString(&buf, ",\"to\":");
	dp_json_clipped(&buf, VARDATA_ANY(g->first->to), VARSIZE_ANY_EXHDR(g->first->to));
	appendStringInfo(&buf, ",\"kind\":\"%s\",\"count\":" INT64_FORMAT, g->first->kind, g->count);
	appendStringInfo(&buf, ",\"at\":\"%s\"",
					 JsonEncodeDateTime(ts, TimestampTzGetDatum(g->first->at), TIMESTAMPTZOID, &utc));
	appendStringInfoString(&buf, ",\"first_key\":");
	first_cut = dp_json_clipped(&buf, VARDATA_ANY(g->first->key), VARSIZE_ANY_EXHDR(g->first->key));
	appendStringInfoString(&buf, ",\"last_key\":");
	last_cut = dp_json_clipped(&buf, VARDATA_ANY(g->last->key), VARSIZE_ANY_EXHDR(g->last->key));
	(void) dp_json_field(&buf, "reason", g->same_reason ? g->first->reason : NULL);
	appendStringInfoString(&buf, ",\"bulk\":true");
	if (first_cut)
		appendStringInfoString(&buf, ",\"first_key_truncated\":true");
	if (last_cut)
		appendStringInfoString(&buf, ",\"last_key_truncated\":true");
	appendStringInfoChar(&buf, '}');
	Async_Notify(g->event->channel, buf.data);
	pfree(buf.data);
}

/*
 * deploy_progress.record_transition(): AFTER INSERT, and AFTER UPDATE WHEN
 * the phase changed, FOR EACH ROW.  Queues the history row of the
 * transition and sends its event, as the table's configuration says.
 */
PG_FUNCTION_INFO_V1(dp_record_transition);
Datum
dp_record_transition(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = dp_trigger_data(fcinfo, "deploy_progress.record_transition()",
											DP_TRIGGER_AFTER_ROW, true);
	Relation	rel;
	DpTrack    *t;
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot;
	Datum		phase;
	bool		isnull;
	int			new_idx;
	int			old_idx = -1;
	DpKind		kind;
	bool		record;
	DpHistRow	row;
	AttrNumber	att_started;
	DpMovedRow *moved = NULL;	/* the note of a row moved to this partition */
	DpMovedRow	moved_copy;

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		oldslot = trigdata->tg_trigslot;
		newslot = trigdata->tg_newslot;
	}
	else
		newslot = trigdata->tg_trigslot;
	if (!dp_stamping)
		return PointerGetDatum(NULL);

	rel = trigdata->tg_relation;
	t = dp_get_track(rel);
	if (t->citus_copy || (t->history == DP_HISTORY_OFF && t->notify_channel == NULL))
		return PointerGetDatum(NULL);

	/* stamp() rejects null and unknown phases: nothing to record for them */
	phase = slot_getattr(newslot, t->att_phase, &isnull);
	if (isnull || (new_idx = dp_phase_index(t, phase)) < 0)
		return PointerGetDatum(NULL);
	memset(&row, 0, sizeof(row));
	if (oldslot == NULL && dp_nmoves > dp_moves_head && rel->rd_rel->relispartition)
	{
		DpMovedRow *m = dp_moves_take(t->tracked_relid, dp_row_key(t, rel, newslot));

		if (m)
		{
			bool		same = !m->phase_changed || m->old_idx == new_idx;
			int			old = m->old_idx;

			moved = m;
			if (dp_moves_head == dp_nmoves)
			{
				/* every note taken: forget them, this one once copied */
				moved_copy = *m;
				moved = &moved_copy;
				dp_moves_reset();
			}
			if (same)
				return PointerGetDatum(NULL);	/* a move, not a transition */
			old_idx = old;
			if (old_idx >= 0)
				row.from = cstring_to_text(t->phases[old_idx].name);
		}
	}
	else if (oldslot == NULL && t->side && rel->rd_rel->relispartition)
	{
		int			old;

		if (dp_side_moving(t->tracked_relid, &old, &moved_copy.old_phase_at,
						   &moved_copy.old_phase_at_null))
		{
			if (old == new_idx)
				return PointerGetDatum(NULL);	/* a move, not a transition */
			moved_copy.phase_changed = true;
			moved_copy.old_idx = old_idx = old;
			moved = &moved_copy;
			if (old_idx >= 0)
				row.from = cstring_to_text(t->phases[old_idx].name);
		}
	}
	if (oldslot)
	{
		Datum		old_phase = slot_getattr(oldslot, t->att_phase, &isnull);

		if (!isnull)
		{
			old_idx = dp_phase_index(t, old_phase);
			if (old_idx == new_idx)
				return PointerGetDatum(NULL);	/* not a transition */
			row.from = old_idx >= 0 ? cstring_to_text(t->phases[old_idx].name) :
				cstring_to_text(dp_phase_datum_text(t, old_phase));
		}
	}
	Assert(new_idx < t->nphases && old_idx < t->nphases);
	kind = t->phases[new_idx].kind;
	record = t->history == DP_HISTORY_ALL ||
		(t->history == DP_HISTORY_FAILURES &&
		 (kind == DP_KIND_FAILED || kind == DP_KIND_CANCELLED));
	if (!record && t->notify_channel == NULL)
		return PointerGetDatum(NULL);

	row.level = GetCurrentTransactionNestLevel();
	row.relid = t->tracked_relid;
	row.kind = dp_kind_name(kind);
	row.to = cstring_to_text(t->phases[new_idx].name);
	row.key = dp_row_key(t, rel, newslot);
	row.reason = dp_transition_reason_of(t, oldslot, newslot, kind, old_idx);

	/* when this phase and the previous one started */
	att_started = t->side ? InvalidAttrNumber : t->att[DP_ROLE_PHASE_UPDATED_AT];
	row.at = dp_now();
	row.prev_null = true;
	if (att_started)
	{
		Datum		d = slot_getattr(newslot, att_started, &isnull);

		if (!isnull)
			row.at = dp_timing_from_column(t, DP_ROLE_PHASE_UPDATED_AT, d);
		if (oldslot)
		{
			d = slot_getattr(oldslot, att_started, &row.prev_null);
			if (!row.prev_null)
				row.prev = dp_timing_from_column(t, DP_ROLE_PHASE_UPDATED_AT, d);
		}
		else if (moved)
		{
			row.prev_null = moved->old_phase_at_null;
			row.prev = moved->old_phase_at;
		}
	}
	else if (t->side && moved)
	{
		row.prev_null = moved->old_phase_at_null;
		row.prev = moved->old_phase_at;
	}
	else if (t->side && oldslot)
	{
		row.prev_null = !dp_side_phase_updated_at(t, dp_row_key(t, rel, oldslot), &row.prev);
		/* never before the previous phase began (see dp_stamp()) */
		if (!row.prev_null && !TIMESTAMP_NOT_FINITE(row.prev) && row.at < row.prev)
			row.at = GetCurrentTimestamp();
	}

	/* the counters as the row enters the phase */
	row.completed_null = row.total_null = true;
	if (t->att[DP_ROLE_COMPLETED_ITEMS])
		row.completed = dp_slot_counter(t, newslot, DP_ROLE_COMPLETED_ITEMS, &row.completed_null);
	if (t->att[DP_ROLE_TOTAL_ITEMS])
		row.total = dp_slot_counter(t, newslot, DP_ROLE_TOTAL_ITEMS, &row.total_null);

	/* the label, message and metadata written with the transition */
	row.label = dp_slot_text(t, newslot, DP_ROLE_LABEL);
	row.message = dp_slot_text(t, newslot, DP_ROLE_MESSAGE);
	if (record && t->att[DP_ROLE_METADATA])
	{
		Datum		d = slot_getattr(newslot, t->att[DP_ROLE_METADATA], &isnull);

		row.metadata = isnull ? NULL : DatumGetJsonbP(d);
	}

	/*
	 * Queue the history row and the event: the statement's end writes the
	 * one and sends the other (or its table's summary, dp_events_send()).
	 */
	row.depth = dp_statement_depth;
	row.record = record;
	row.event = t->notify_channel ? dp_event_table(t) : NULL;
	{
		DpHistRow  *slot = dp_history_slot();
		MemoryContext oldcxt = MemoryContextSwitchTo(dp_hist_cxt);

		/* the levels in the buffer never decrease (see the file's header) */
		Assert(dp_nrows == 0 || dp_rows[dp_nrows - 1].level <= row.level);

		*slot = row;
		slot->key = (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(row.key));
		slot->to = (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(row.to));
		slot->from = row.from ? (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(row.from)) : NULL;
		slot->reason = row.reason ? (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(row.reason)) : NULL;
		slot->label = row.label ? (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(row.label)) : NULL;
		slot->message = row.message ? (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(row.message)) : NULL;
		slot->metadata = row.metadata ? (Jsonb *) PG_DETOAST_DATUM_COPY(PointerGetDatum(row.metadata)) : NULL;
		MemoryContextSwitchTo(oldcxt);
		dp_nrows++;
	}
	return PointerGetDatum(NULL);
}

/*
 * deploy_progress._history_flushes(): how many times this backend has
 * written queued history rows, for tests that check that a statement writes
 * its rows at once.
 */
PG_FUNCTION_INFO_V1(dp_history_flushes);
Datum
dp_history_flushes(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(dp_flush_count);
}
