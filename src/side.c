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
 * same rules.  The side table belongs to the extension's owner; the
 * triggers write it as that role inside a security-restricted operation,
 * so that writers of a tracked table need no privilege on it and no code of
 * theirs runs with its owner's rights.
 *
 * A row is filed under the text of its key (dp_row_key(), also the key of
 * the history and of the events), and under the tracked table: rows of a
 * partition are filed under the partitioned table, where timings() looks
 * for them, and carry the partition in the column "partition" (when the
 * installed schema has it), so that TRUNCATE, DROP TABLE and DETACH
 * PARTITION of one partition remove that partition's rows.
 *
 * No SPI on the hot path.  The side row is found through the primary key
 * and written through the table access method, as INSERT ... ON CONFLICT
 * DO UPDATE would do it:
 *
 *	- the row is found with a dirty snapshot through the primary key
 *	  (ExecCheckIndexConstraints(), which waits for a transaction that is
 *	  inserting or deleting it), and updated with table_tuple_update(), which
 *	  waits for a concurrent updater: when that one committed (TM_Updated,
 *	  TM_Deleted), the row is looked for again and the rules are applied to
 *	  its latest version, so that two sessions stamping the same row
 *	  serialize; under REPEATABLE READ or SERIALIZABLE a concurrent update,
 *	  or a row this transaction's snapshot cannot see, is a serialization
 *	  failure, as for ON CONFLICT DO UPDATE;
 *	- a missing row is inserted speculatively (table_tuple_insert_speculative()
 *	  and the primary key checked without raising), so that two sessions
 *	  inserting the same key do not fail: the loser finds the winner's row
 *	  and updates it;
 *	- index entries are made as the executor makes them
 *	  (ExecInsertIndexTuples(), only when the update is not HOT).
 *
 * The relation, its indexes' IndexInfo, an executor state and the slots are
 * built once per backend and again after an invalidation of the side table.
 *
 * Per statement: the trigger queues the writes of INSERTs and UPDATEs (the
 * key, the partition and what the write did), and they are written when the
 * statement ends, with the side table opened once and one scan of its
 * primary key searched again for each key (history.c calls dp_side_flush()
 * from the executor and utility hooks, at the nesting depth of the
 * statement; the queue follows (sub)transactions as the history queue
 * does).  At most DP_SIDE_CHUNK writes wait; a DELETE, TRUNCATE or re-key
 * writes the queued ones first, since they may be of the same row.
 *
 * A write that changes a row's key (an UPDATE of the key, or a row moving
 * to another partition) takes the old side row away at once and files its
 * timings under the new key when the statement ends, all rows of the
 * statement together: a statement that swaps keys (UPDATE t SET id = 3 - id
 * with a deferrable key) or re-keys a row onto a key whose side row a
 * stamping-off DELETE left behind finds every old row where it was, and
 * replaces whatever the new key held.  A cross-partition UPDATE fires the
 * AFTER DELETE of the old partition (whose row the heap marks as moved)
 * and at once the AFTER INSERT of the new one: the pair is one re-key,
 * classified against the row as it was (dp_move).
 *
 * IDENTIFICATION
 *	  src/side.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/heap.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "utils/guc.h"

#include "deploy_progress.h"

/*
 * What a write does to the side row of a tracked row: the facts the rules
 * of dp_stamp() need (see dp_side_rule()).
 */
typedef struct DpSideEvent
{
	TimestampTz now;			/* the statement's time */
	bool		entered;		/* a phase was entered */
	bool		active;			/* ... an active one */
	bool		terminal;		/* ... a terminal one */
	bool		restart;		/* the row left a terminal phase */
	bool		counters_moved;
	bool		newrow;			/* an INSERT: replaces what a stale row held */
} DpSideEvent;

/*
 * The side table as the C writes it, built once per backend and again after
 * an invalidation of the table (ALTER EXTENSION UPDATE, a new index): the
 * columns by role (a timing column a schema version lacks is left alone),
 * its indexes, and the executor state the index code needs.
 */
typedef struct DpSideCache
{
	bool		valid;
	MemoryContext cxt;
	Oid			relid;
	int			natts;
	TupleDesc	desc;			/* a copy: slots made from it pin nothing */
	AttrNumber	att_relid;
	AttrNumber	att_key;
	AttrNumber	att_partition;	/* 0: not in this schema version */
	AttrNumber	att_role[DP_NUM_ROLES];	/* 0: not kept */
	bool		any_role;
	int			ndefaults;		/* the other columns' defaults, for an insert */
	AttrNumber *default_att;
	ExprState **default_state;
	int			nindexes;
	Oid		   *index_oids;
	IndexInfo **index_info;
	Relation   *index_rels;		/* open during a call only */
	int			pkey_col_relid; /* positions in the primary key (0-based) */
	int			pkey_col_key;
	Oid			pkey;
	int			pkey_index;		/* its position in index_oids */
	bool		fast_find;		/* (relid, key) with the built-in btree opclasses */
	Oid			key_collation;
	List	   *arbiters;		/* list_make1_oid(pkey) */
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *probe;		/* virtual: the key looked for / the new row */
	TupleTableSlot *existing;	/* the row found */
} DpSideCache;

static DpSideCache dp_side_cache;

/* The side table, open for the length of one trigger call or queue flush. */
typedef struct DpSideCall
{
	DpSideCache *c;
	Relation	rel;
	CommandId	cid;
	Snapshot	snapshot;
	DpSavedUser saved;
	IndexScanDesc scan;			/* on the primary key, with "dirty" */
	SnapshotData dirty;
} DpSideCall;

/*
 * A side row write queued for the end of its statement: the write of a
 * row (the rules to apply for "e"), or the timings of a re-keyed row to
 * file under its new key, replacing what that key holds.
 */
typedef struct DpSideQueued
{
	bool		has_event;		/* e holds a write; else ts a re-key */
	DpSideEvent e;
	int			level;			/* transaction nesting level */
	int			depth;			/* statement depth (dp_statement_depth) */
	Oid			owner;			/* of the side table */
	Oid			relid;
	Oid			partition;
	text	   *key;
	TimestampTz ts[DP_NUM_ROLES];
	bool		ts_null[DP_NUM_ROLES];
} DpSideQueued;

/*
 * A row that left its partition (the DELETE half of a cross-partition
 * UPDATE), waiting for the INSERT half that follows it at once: its old
 * phase and counters, and the timings its side row had.
 */
typedef struct DpSideMove
{
	bool		valid;
	int			level;
	int			depth;
	Oid			tracked_relid;
	int			old_idx;		/* lifecycle position of the old phase */
	bool		old_phase_null;
	int64		completed;
	int64		total;
	bool		completed_null;
	bool		total_null;
	bool		found;			/* the side row existed */
	TimestampTz ts[DP_NUM_ROLES];
	bool		ts_null[DP_NUM_ROLES];
} DpSideMove;

static MemoryContext dp_queue_cxt = NULL;
static DpSideQueued *dp_queue = NULL;
static int	dp_nqueued = 0;
static int	dp_maxqueued = 0;
static int	dp_nevents = 0;		/* queued writes (has_event) */
static bool dp_queue_flushing = false;

/* Queued writes of one level and depth written at once, mid-statement. */
#define DP_SIDE_CHUNK 4096
static DpSideMove dp_move;

/*
 * Relcache callback: the side table (or everything) changed; build the
 * cache again at its next use.
 */
static void
dp_side_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == dp_side_cache.relid)
		dp_side_cache.valid = false;
}

/* Forget the cache's executor state and slots. */
static void
dp_side_cache_free(DpSideCache *c)
{
	if (c->probe)
		ExecDropSingleTupleTableSlot(c->probe);
	if (c->existing)
		ExecDropSingleTupleTableSlot(c->existing);
	c->probe = c->existing = NULL;
	if (c->estate)
		FreeExecutorState(c->estate);
	c->estate = NULL;
	if (c->cxt)
		MemoryContextReset(c->cxt);
}

/* Build the cache from the side table "rel" (open and locked). */
static void
dp_side_cache_build(DpSideCache *c, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext oldcxt;
	List	   *indexes;
	ListCell   *lc;
	int			i;
	int			r;

	if (c->cxt == NULL)
	{
		c->cxt = AllocSetContextCreate(CacheMemoryContext, "deploy_progress side table",
									   ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(dp_side_relcache_callback, (Datum) 0);
	}
	dp_side_cache_free(c);
	c->relid = RelationGetRelid(rel);
	oldcxt = MemoryContextSwitchTo(c->cxt);

	c->natts = desc->natts;
	c->desc = CreateTupleDescCopy(desc);
	c->att_relid = c->att_key = c->att_partition = InvalidAttrNumber;
	memset(c->att_role, 0, sizeof(c->att_role));
	c->any_role = false;
	c->ndefaults = 0;
	c->default_att = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
	c->default_state = palloc(sizeof(ExprState *) * Max(desc->natts, 1));
	c->estate = CreateExecutorState();

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);
		bool		known = false;

		if (att->attisdropped)
			continue;
		if (strcmp(name, "relid") == 0 && att->atttypid == REGCLASSOID)
			c->att_relid = att->attnum, known = true;
		else if (strcmp(name, "key") == 0 && att->atttypid == TEXTOID)
			c->att_key = att->attnum, known = true;
		else if (strcmp(name, "partition") == 0 && att->atttypid == REGCLASSOID)
			c->att_partition = att->attnum, known = true;
		else
			for (r = 0; r < DP_NUM_ROLES; r++)
				if (dp_role_is(r, DP_ROLE_SIDE) && strcmp(name, dp_role_name(r)) == 0 &&
					att->atttypid == TIMESTAMPTZOID)
				{
					c->att_role[r] = att->attnum;
					c->any_role = known = true;
				}
		if (known || att->attgenerated)
			continue;
		/* a column this library does not know gets its default on insert */
		if (att->atthasdef)
		{
			Expr	   *expr = (Expr *) build_column_default(rel, att->attnum);

			if (expr)
			{
				MemoryContext qcxt = MemoryContextSwitchTo(c->estate->es_query_cxt);

				c->default_att[c->ndefaults] = att->attnum;
				c->default_state[c->ndefaults] = ExecPrepareExpr(expression_planner(expr), c->estate);
				c->ndefaults++;
				MemoryContextSwitchTo(qcxt);
				continue;
			}
		}
		if (att->attnotnull)
			elog(ERROR, "column \"%s\" of " DP_SCHEMA ".timings cannot be filled by this library", name);
	}
	if (!c->att_relid || !c->att_key)
		elog(ERROR, "table " DP_SCHEMA ".timings lacks its relid or key column");

	/* the indexes, with what speculative insertion needs of the unique ones */
	indexes = RelationGetIndexList(rel);
	c->nindexes = list_length(indexes);
	c->index_oids = palloc(sizeof(Oid) * Max(c->nindexes, 1));
	c->index_info = palloc(sizeof(IndexInfo *) * Max(c->nindexes, 1));
	c->index_rels = palloc0(sizeof(Relation) * Max(c->nindexes, 1));
	c->pkey = InvalidOid;
	i = 0;
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		Relation	idx = index_open(indexoid, RowExclusiveLock);
		IndexInfo  *ii = BuildIndexInfo(idx);

		if (ii->ii_Unique)
			BuildSpeculativeIndexInfo(idx, ii);
		if (idx->rd_index->indisprimary && ii->ii_NumIndexKeyAttrs == 2 &&
			((ii->ii_IndexAttrNumbers[0] == c->att_relid && ii->ii_IndexAttrNumbers[1] == c->att_key) ||
			 (ii->ii_IndexAttrNumbers[1] == c->att_relid && ii->ii_IndexAttrNumbers[0] == c->att_key)))
		{
			c->pkey = indexoid;
			c->pkey_index = i;
			c->pkey_col_relid = ii->ii_IndexAttrNumbers[0] == c->att_relid ? 0 : 1;
			c->pkey_col_key = 1 - c->pkey_col_relid;
			c->fast_find = c->pkey_col_relid == 0 && ii->ii_Expressions == NIL &&
				idx->rd_opfamily[0] == OID_BTREE_FAM_OID && idx->rd_opfamily[1] == TEXT_BTREE_FAM_OID;
			c->key_collation = idx->rd_indcollation[1];
		}
		c->index_oids[i] = indexoid;
		c->index_info[i] = ii;
		i++;
		index_close(idx, NoLock);
	}
	if (!OidIsValid(c->pkey))
		elog(ERROR, "table " DP_SCHEMA ".timings lacks its primary key on (relid, key)");
	c->arbiters = list_make1_oid(c->pkey);
	list_free(indexes);

	c->rri = makeNode(ResultRelInfo);
	c->rri->ri_NumIndices = c->nindexes;
	c->rri->ri_IndexRelationDescs = c->index_rels;
	c->rri->ri_IndexRelationInfo = c->index_info;
	c->probe = MakeSingleTupleTableSlot(c->desc, &TTSOpsVirtual);
	c->existing = MakeSingleTupleTableSlot(c->desc, table_slot_callbacks(rel));
	MemoryContextSwitchTo(oldcxt);
	c->valid = true;
}

/*
 * Open the side table for one trigger call, as its owner "owner" inside a
 * security-restricted operation.
 */
static void
dp_side_open(DpSideCall *call, Oid owner)
{
	DpSideCache *c = &dp_side_cache;
	Oid			relid;
	int			i;

	Assert(OidIsValid(owner));
	GetUserIdAndSecContext(&call->saved.userid, &call->saved.sec_context);
	SetUserIdAndSecContext(owner, call->saved.sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	relid = c->valid ? c->relid :
		get_relname_relid("timings", get_namespace_oid(DP_SCHEMA, false));
	if (!OidIsValid(relid))
		elog(ERROR, "could not find table " DP_SCHEMA ".timings");
	call->rel = table_open(relid, RowExclusiveLock);
	if (!c->valid || c->relid != relid || c->natts != RelationGetDescr(call->rel)->natts)
		dp_side_cache_build(c, call->rel);
	call->c = c;
	for (i = 0; i < c->nindexes; i++)
		c->index_rels[i] = index_open(c->index_oids[i], RowExclusiveLock);
	c->rri->ri_RelationDesc = call->rel;
	call->scan = NULL;
	call->cid = GetCurrentCommandId(true);
	call->snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
	c->estate->es_snapshot = call->snapshot;
	c->estate->es_output_cid = call->cid;
#if PG_VERSION_NUM < 140000
	c->estate->es_result_relations = c->rri;
	c->estate->es_num_result_relations = 1;
	c->estate->es_result_relation_info = c->rri;
#endif
}

static void
dp_side_close(DpSideCall *call)
{
	DpSideCache *c = call->c;
	int			i;

	ExecClearTuple(c->probe);
	ExecClearTuple(c->existing);
	if (call->scan)
		index_endscan(call->scan);
	call->scan = NULL;
	ResetPerTupleExprContext(c->estate);
	for (i = 0; i < c->nindexes; i++)
	{
		index_close(c->index_rels[i], NoLock);
		c->index_rels[i] = NULL;
	}
	c->rri->ri_RelationDesc = NULL;
	table_close(call->rel, NoLock);
	SetUserIdAndSecContext(call->saved.userid, call->saved.sec_context);
}

/*
 * Find the side row of (relid, key), waiting for a transaction that is
 * writing it: true with its latest version in c->existing, false when there
 * is none.
 */
static bool
dp_side_find(DpSideCall *call, Oid relid, text *key)
{
	DpSideCache *c = call->c;
	ItemPointerData tid;

	/*
	 * The usual way: one scan of the primary key for the call, searched
	 * again for each key, as check_exclusion_or_unique_constraint() does it.
	 */
	while (c->fast_find)
	{
		ScanKeyData skey[2];
		TransactionId xwait = InvalidTransactionId;
		uint32		token = 0;
		bool		found = false;

		CHECK_FOR_INTERRUPTS();
		ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
		ScanKeyEntryInitialize(&skey[1], 0, 2, BTEqualStrategyNumber, InvalidOid, c->key_collation,
							   F_TEXTEQ, PointerGetDatum(key));
		if (call->scan == NULL)
		{
			InitDirtySnapshot(call->dirty);
#if PG_VERSION_NUM >= 180000
			call->scan = index_beginscan(call->rel, c->index_rels[c->pkey_index], &call->dirty, NULL, 2, 0);
#else
			call->scan = index_beginscan(call->rel, c->index_rels[c->pkey_index], &call->dirty, 2, 0);
#endif
		}
		index_rescan(call->scan, skey, 2, NULL, 0);
		if (index_getnext_slot(call->scan, ForwardScanDirection, c->existing))
		{
			/* a transaction writing it: wait for it, then look again */
			xwait = TransactionIdIsValid(call->dirty.xmin) ? call->dirty.xmin : call->dirty.xmax;
			token = call->dirty.speculativeToken;
			tid = c->existing->tts_tid;
			found = true;
		}
		if (!TransactionIdIsValid(xwait))
			return found;
		ExecClearTuple(c->existing);
		index_rescan(call->scan, skey, 2, NULL, 0);		/* drop the pins */
		if (token)
			SpeculativeInsertionWait(call->dirty.xmin, token);
		else
			XactLockTableWait(xwait, call->rel, &tid, XLTW_InsertIndex);
	}

	for (;;)
	{
		TupleTableSlot *probe = c->probe;

		ExecClearTuple(probe);
		memset(probe->tts_isnull, true, sizeof(bool) * c->natts);
		probe->tts_values[c->att_relid - 1] = ObjectIdGetDatum(relid);
		probe->tts_isnull[c->att_relid - 1] = false;
		probe->tts_values[c->att_key - 1] = PointerGetDatum(key);
		probe->tts_isnull[c->att_key - 1] = false;
		ExecStoreVirtualTuple(probe);
		ResetPerTupleExprContext(c->estate);
#if PG_VERSION_NUM >= 180000
		/* (no tuple being updated: NULL) */
		if (ExecCheckIndexConstraints(c->rri, probe, c->estate, &tid, NULL, c->arbiters))
#elif PG_VERSION_NUM >= 140000
		if (ExecCheckIndexConstraints(c->rri, probe, c->estate, &tid, c->arbiters))
#else
		if (ExecCheckIndexConstraints(probe, c->estate, &tid, c->arbiters))
#endif
			return false;
		/* the version the check saw, unless it just went away: look again */
		if (table_tuple_fetch_row_version(call->rel, &tid, SnapshotAny, c->existing))
			return true;
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Under REPEATABLE READ and SERIALIZABLE, a side row this transaction's
 * snapshot cannot see was written by a transaction it must not overwrite
 * (as ON CONFLICT DO UPDATE decides).
 */
static void
dp_side_check_visible(DpSideCall *call)
{
	bool		isnull;
	TransactionId xmin;

	if (!IsolationUsesXactSnapshot() ||
		table_tuple_satisfies_snapshot(call->rel, call->c->existing, call->snapshot))
		return;
	xmin = DatumGetTransactionId(slot_getsysattr(call->c->existing,
												 MinTransactionIdAttributeNumber, &isnull));
	if (!TransactionIdIsCurrentTransactionId(xmin))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
}

/*
 * What to do after table_tuple_update() or table_tuple_delete() of a side
 * row failed: true to look for the row again.  A concurrent update or delete
 * that committed is a serialization failure under REPEATABLE READ or
 * SERIALIZABLE; a version written by this very command becomes visible
 * after a command counter increment (as a new SPI statement made it).
 */
static bool
dp_side_retry(DpSideCall *call, TM_Result res, const char *what)
{
	switch (res)
	{
		case TM_Updated:
		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent %s",
								res == TM_Updated ? "update" : "delete")));
			return true;
		case TM_SelfModified:
		case TM_Invisible:
			CommandCounterIncrement();
			call->cid = GetCurrentCommandId(true);
			call->c->estate->es_output_cid = call->cid;
			return true;
		default:
			elog(ERROR, "unexpected result %d of the side-table %s", (int) res, what);
	}
	return false;				/* keep compiler quiet */
}

/* The timings of a row found in c->existing, by role. */
static void
dp_side_existing_timings(DpSideCache *c, TimestampTz *ts, bool *ts_null)
{
	int			r;

	for (r = 0; r < DP_NUM_ROLES; r++)
	{
		ts[r] = 0;
		ts_null[r] = true;
		if (c->att_role[r])
		{
			Datum		d = slot_getattr(c->existing, c->att_role[r], &ts_null[r]);

			if (!ts_null[r])
				ts[r] = DatumGetTimestampTz(d);
		}
	}
}

/*
 * The rules of dp_stamp() applied to a side row: the timings it should have
 * after "e", from its timings "old" (NULL: there is no side row).  An
 * existing row is stamped with the statement's time, or with the wall clock
 * when it already holds a later stamp, so that its stamps never go back.
 */
static void
dp_side_rule(DpSideCache *c, const DpSideEvent *e, const TimestampTz *old, const bool *old_null,
			 TimestampTz *ts, bool *ts_null)
{
	TimestampTz now = e->now;
	TimestampTz now2 = e->now;	/* for an existing row */
	int			r;

	if (old)
	{
		bool		later = false;

		for (r = 0; r < DP_NUM_ROLES; r++)
			if (c->att_role[r] && !old_null[r] && now < old[r])
				later = true;
		if (later)
			now2 = GetCurrentTimestamp();
	}
#define DP_SET(v) (ts[r] = (v), ts_null[r] = false)
#define DP_NULL() (ts[r] = 0, ts_null[r] = true)
#define DP_KEEP() (ts[r] = old[r], ts_null[r] = old_null[r])
	for (r = 0; r < DP_NUM_ROLES; r++)
	{
		ts[r] = 0;
		ts_null[r] = true;
		if (!c->att_role[r])
			continue;
		switch (r)
		{
			case DP_ROLE_PHASE_UPDATED_AT:
				if (!old)
					DP_SET(now);
				else if (e->entered)
					DP_SET(now2);
				else
					DP_KEEP();
				break;
			case DP_ROLE_PROGRESS_UPDATED_AT:
				if (!old)
					DP_SET(now);
				else if (e->entered || e->counters_moved)
					DP_SET(now2);
				else
					DP_KEEP();
				break;
			case DP_ROLE_HEARTBEAT_AT:
				if (!old)
					DP_SET(now);
				else
					DP_SET(now2);
				break;
			case DP_ROLE_STARTED_AT:
				if (!old || e->newrow)
				{
					if (e->active)
						DP_SET(now);
					else
						DP_NULL();
				}
				else if (e->active && old_null[r])
					DP_SET(now2);
				else
					DP_KEEP();
				break;
			case DP_ROLE_FINISHED_AT:
				if (!old)
				{
					if (e->terminal)
						DP_SET(now);
					else
						DP_NULL();
				}
				else if (e->terminal)
					DP_SET(now2);
				else if (e->restart || e->newrow)
					DP_NULL();
				else
					DP_KEEP();
				break;
			default:
				elog(ERROR, "side-table role \"%s\" has no rule", dp_role_name(r));
		}
	}
#undef DP_SET
#undef DP_NULL
#undef DP_KEEP
}

/*
 * The new version of a side row in c->probe: the row found (in
 * c->existing) or the other columns' defaults, with its table, key,
 * partition and timings.
 */
static void
dp_side_form(DpSideCall *call, bool update, Oid relid, text *key, Oid partition,
			 const TimestampTz *ts, const bool *ts_null)
{
	DpSideCache *c = call->c;
	TupleTableSlot *slot = c->probe;
	int			i;
	int			r;

	ExecClearTuple(slot);
	if (update)
	{
		slot_getallattrs(c->existing);
		memcpy(slot->tts_values, c->existing->tts_values, sizeof(Datum) * c->natts);
		memcpy(slot->tts_isnull, c->existing->tts_isnull, sizeof(bool) * c->natts);
	}
	else
	{
		ExprContext *econtext = GetPerTupleExprContext(c->estate);

		memset(slot->tts_isnull, true, sizeof(bool) * c->natts);
		for (i = 0; i < c->ndefaults; i++)
		{
			AttrNumber	att = c->default_att[i];

			slot->tts_values[att - 1] = ExecEvalExpr(c->default_state[i], econtext,
													 &slot->tts_isnull[att - 1]);
		}
	}
	slot->tts_values[c->att_relid - 1] = ObjectIdGetDatum(relid);
	slot->tts_isnull[c->att_relid - 1] = false;
	slot->tts_values[c->att_key - 1] = PointerGetDatum(key);
	slot->tts_isnull[c->att_key - 1] = false;
	if (c->att_partition)
	{
		slot->tts_values[c->att_partition - 1] = ObjectIdGetDatum(partition);
		slot->tts_isnull[c->att_partition - 1] = !OidIsValid(partition);
	}
	for (r = 0; r < DP_NUM_ROLES; r++)
		if (c->att_role[r])
		{
			slot->tts_values[c->att_role[r] - 1] = TimestampTzGetDatum(ts[r]);
			slot->tts_isnull[c->att_role[r] - 1] = ts_null[r];
		}
	ExecStoreVirtualTuple(slot);
}

/*
 * Make the index entries of the version just updated from c->probe (only
 * those of summarizing indexes when "summarizing").
 */
static void
dp_side_index(DpSideCall *call, bool update, bool summarizing)
{
	List	   *recheck;

#if PG_VERSION_NUM >= 160000
	recheck = ExecInsertIndexTuples(call->c->rri, call->c->probe, call->c->estate, update,
									false, NULL, NIL, summarizing);
#elif PG_VERSION_NUM >= 140000
	recheck = ExecInsertIndexTuples(call->c->rri, call->c->probe, call->c->estate, update,
									false, NULL, NIL);
#else
	recheck = ExecInsertIndexTuples(call->c->probe, call->c->estate, false, NULL, NIL);
#endif
	list_free(recheck);
}

/*
 * Write the side row of (relid, key): with the timings the rules give for
 * "e" (e != NULL), or with the timings "ts" (e == NULL: a queued re-key),
 * whatever the key held before.  Inserts the row when there is none.
 */
static void
dp_side_write(DpSideCall *call, Oid relid, text *key, Oid partition, const DpSideEvent *e,
			  const TimestampTz *ts_in, const bool *ts_null_in)
{
	DpSideCache *c = call->c;
	TimestampTz old[DP_NUM_ROLES];
	bool		old_null[DP_NUM_ROLES];
	TimestampTz ts[DP_NUM_ROLES];
	bool		ts_null[DP_NUM_ROLES];

	for (;;)
	{
		TM_FailureData tmfd;
		TM_Result	res;
		LockTupleMode lockmode;
		uint32		token;
		bool		conflict = false;
		List	   *recheck;
#if PG_VERSION_NUM >= 160000
		TU_UpdateIndexes update_indexes;
#else
		bool		update_indexes;
#endif

		CHECK_FOR_INTERRUPTS();
		if (dp_side_find(call, relid, key))
		{
			dp_side_check_visible(call);
			if (e)
			{
				dp_side_existing_timings(c, old, old_null);
				dp_side_rule(c, e, old, old_null, ts, ts_null);
			}
			dp_side_form(call, true, relid, key, partition, e ? ts : ts_in, e ? ts_null : ts_null_in);
			res = table_tuple_update(call->rel, &c->existing->tts_tid, c->probe, call->cid,
									 call->snapshot, InvalidSnapshot, true, &tmfd, &lockmode,
									 &update_indexes);
			if (res == TM_Ok)
			{
#if PG_VERSION_NUM >= 160000
				if (update_indexes != TU_None)
					dp_side_index(call, true, update_indexes == TU_Summarizing);
#else
				if (update_indexes)
					dp_side_index(call, true, false);
#endif
				return;
			}
			(void) dp_side_retry(call, res, "update");
			continue;
		}

		/* no row: insert one, speculatively, as ON CONFLICT does */
		if (e)
			dp_side_rule(c, e, NULL, NULL, ts, ts_null);
		dp_side_form(call, false, relid, key, partition, e ? ts : ts_in, e ? ts_null : ts_null_in);
		token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
		table_tuple_insert_speculative(call->rel, c->probe, call->cid, 0, NULL, token);
#if PG_VERSION_NUM >= 160000
		recheck = ExecInsertIndexTuples(c->rri, c->probe, c->estate, false, true, &conflict,
										c->arbiters, false);
#elif PG_VERSION_NUM >= 140000
		recheck = ExecInsertIndexTuples(c->rri, c->probe, c->estate, false, true, &conflict,
										c->arbiters);
#else
		recheck = ExecInsertIndexTuples(c->probe, c->estate, true, &conflict, c->arbiters);
#endif
		table_tuple_complete_speculative(call->rel, c->probe, token, !conflict);
		SpeculativeInsertionLockRelease(GetCurrentTransactionId());
		list_free(recheck);
		if (!conflict)
			return;
		/* another session inserted the key first: update its row */
	}
}

/*
 * Delete the side row of (relid, key), if any; true when there was one, its
 * timings then in ts/ts_null (when not NULL).
 */
static bool
dp_side_remove(DpSideCall *call, Oid relid, text *key, TimestampTz *ts, bool *ts_null)
{
	for (;;)
	{
		TM_FailureData tmfd;
		TM_Result	res;

		CHECK_FOR_INTERRUPTS();
		if (!dp_side_find(call, relid, key))
			return false;
		if (ts)
			dp_side_existing_timings(call->c, ts, ts_null);
		res = table_tuple_delete(call->rel, &call->c->existing->tts_tid, call->cid,
								 call->snapshot, InvalidSnapshot, true, &tmfd, false);
		if (res == TM_Ok)
			return true;
		(void) dp_side_retry(call, res, "delete");
	}
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
							DP_REL_NAME(t, rel)),
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
	DpSideCall call;
	bool		found = false;

	Assert(t->side && OidIsValid(t->side_owner));
	dp_side_open(&call, t->side_owner);
	if (call.c->att_role[DP_ROLE_PHASE_UPDATED_AT] &&
		dp_side_find(&call, t->tracked_relid, key))
	{
		bool		isnull;
		Datum		d = slot_getattr(call.c->existing, call.c->att_role[DP_ROLE_PHASE_UPDATED_AT],
									 &isnull);

		if (!isnull)
		{
			*result = DatumGetTimestampTz(d);
			found = true;
		}
	}
	dp_side_close(&call);
	return found;
}

/*------------------------------------------------------------------------
 * The queue of re-keyed rows
 *------------------------------------------------------------------------
 */

/* Queue the timings of a re-keyed row, to be filed under "key". */
static void
dp_side_enqueue(Oid owner, Oid relid, Oid partition, text *key, const DpSideEvent *e,
				const TimestampTz *ts, const bool *ts_null)
{
	DpSideQueued *q;
	MemoryContext oldcxt;

	if (dp_queue_cxt == NULL)
		dp_queue_cxt = AllocSetContextCreate(TopMemoryContext, "deploy_progress side queue",
											 ALLOCSET_SMALL_SIZES);
	if (dp_nqueued >= dp_maxqueued)
	{
		int			newmax = dp_maxqueued ? dp_maxqueued * 2 : 16;

		if (dp_queue == NULL)
			dp_queue = MemoryContextAlloc(dp_queue_cxt, sizeof(DpSideQueued) * newmax);
		else
			dp_queue = repalloc_huge(dp_queue, sizeof(DpSideQueued) * newmax);
		dp_maxqueued = newmax;
	}
	q = &dp_queue[dp_nqueued];
	q->level = GetCurrentTransactionNestLevel();
	q->depth = dp_statement_depth;
	/* levels and depths never decrease along the queue (see dp_side_flush()) */
	Assert(dp_nqueued == 0 || dp_queue[dp_nqueued - 1].level <= q->level);
	q->owner = owner;
	q->relid = relid;
	q->partition = partition;
	oldcxt = MemoryContextSwitchTo(dp_queue_cxt);
	q->key = (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(key));
	MemoryContextSwitchTo(oldcxt);
	q->has_event = e != NULL;
	if (e)
	{
		q->e = *e;
		dp_nevents++;
	}
	else
	{
		memcpy(q->ts, ts, sizeof(q->ts));
		memcpy(q->ts_null, ts_null, sizeof(q->ts_null));
	}
	dp_nqueued++;
}

static void
dp_side_queue_reset(void)
{
	dp_nqueued = dp_maxqueued = dp_nevents = 0;
	dp_queue = NULL;
	if (dp_queue_cxt)
		MemoryContextReset(dp_queue_cxt);
}

/*
 * Write the queued entries from "first" on (only the writes, when
 * "events_only": re-keys wait for the end of their statement), and take
 * them off the queue.
 */
static void
dp_side_write_queue(int first, bool events_only)
{
	int			i;
	int			kept = first;
	DpSideCall	call;

	Assert(first >= 0 && first < dp_nqueued);
	dp_queue_flushing = true;
	dp_side_open(&call, dp_queue[first].owner);
	for (i = first; i < dp_nqueued; i++)
	{
		DpSideQueued *q = &dp_queue[i];

		if (events_only && !q->has_event)
		{
			dp_queue[kept++] = *q;
			continue;
		}
		if (q->has_event)
		{
			dp_side_write(&call, q->relid, q->key, q->partition, &q->e, NULL, NULL);
			dp_nevents--;
		}
		else
			dp_side_write(&call, q->relid, q->key, q->partition, NULL, q->ts, q->ts_null);
		pfree(q->key);
	}
	dp_side_close(&call);
	dp_nqueued = kept;
	Assert(dp_nevents >= 0);
	if (dp_nqueued == 0)
		dp_side_queue_reset();
	dp_queue_flushing = false;
}

/* The first queued entry of the current (sub)transaction at "depth" or deeper. */
static int
dp_side_queue_start(int depth)
{
	int			level = GetCurrentTransactionNestLevel();
	int			first = dp_nqueued;

	while (first > 0 && dp_queue[first - 1].level >= level && dp_queue[first - 1].depth >= depth)
		first--;
	return first;
}

/*
 * The end of a statement at depth "depth" (0: the end of the transaction):
 * write what it queued, and file the timings of the rows it re-keyed under
 * their new keys.  Entries queued by an outer statement, or in an outer
 * subtransaction, wait for that one's end.
 */
void
dp_side_flush(int depth)
{
	int			first;

	dp_move.valid = false;
	if (dp_nqueued == 0 || dp_queue_flushing || !IsTransactionState())
		return;
	first = dp_side_queue_start(depth);
	if (first < dp_nqueued)
		dp_side_write_queue(first, false);
}

/*
 * Write the queued writes of the current (sub)transaction now, before a
 * side row is deleted or re-keyed: they may be of that row.
 */
static void
dp_side_flush_events(void)
{
	int			first;

	if (dp_nevents == 0 || dp_queue_flushing)
		return;
	first = dp_side_queue_start(0);
	if (first < dp_nqueued)
		dp_side_write_queue(first, true);
}

/* The end of the transaction (commit after dp_side_flush(0), or abort). */
void
dp_side_xact_end(void)
{
	dp_queue_flushing = false;
	dp_move.valid = false;
	if (dp_nqueued > 0 || dp_queue != NULL)
		dp_side_queue_reset();
}

/* The end of a subtransaction: hand its queue to the parent, or drop it. */
void
dp_side_subxact_end(bool commit)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	dp_move.valid = false;
	if (!commit)
	{
		dp_queue_flushing = false;
		while (dp_nqueued > 0 && dp_queue[dp_nqueued - 1].level >= level)
		{
			dp_nqueued--;
			if (dp_queue[dp_nqueued].has_event)
				dp_nevents--;
		}
		if (dp_nqueued == 0)
			dp_side_queue_reset();
	}
	else
		for (i = dp_nqueued - 1; i >= 0 && dp_queue[i].level >= level; i--)
			dp_queue[i].level = level - 1;
}

/*------------------------------------------------------------------------
 * Removing the rows of a table or a partition
 *------------------------------------------------------------------------
 */

/*
 * Delete every side row of the tracked table "relid" (partition invalid),
 * or every side row of the partition "partition".  The table is locked
 * against writers (TRUNCATE, DETACH), so a fresh snapshot sees every row.
 */
static void
dp_side_remove_all(DpSideCall *call, Oid relid, Oid partition)
{
	DpSideCache *c = call->c;
	AttrNumber	att = OidIsValid(partition) ? c->att_partition : c->att_relid;
	Oid			value = OidIsValid(partition) ? partition : relid;
	Relation	idx = NULL;
	Snapshot	snap;
	ScanKeyData skey;
	int			i;

	if (!att)
		return;					/* a schema without partitions */
	for (i = 0; i < c->nindexes && idx == NULL; i++)
		if (c->index_info[i]->ii_IndexAttrNumbers[0] == att &&
			c->index_info[i]->ii_Expressions == NIL)
			idx = c->index_rels[i];
	snap = RegisterSnapshot(GetLatestSnapshot());
	for (;;)
	{
		bool		retry = false;

		if (idx)
		{
			IndexScanDesc scan;

			ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(value));
#if PG_VERSION_NUM >= 180000
			scan = index_beginscan(call->rel, idx, snap, NULL, 1, 0);
#else
			scan = index_beginscan(call->rel, idx, snap, 1, 0);
#endif
			index_rescan(scan, &skey, 1, NULL, 0);
			while (!retry && index_getnext_slot(scan, ForwardScanDirection, c->existing))
			{
				TM_FailureData tmfd;
				TM_Result	res = table_tuple_delete(call->rel, &c->existing->tts_tid, call->cid,
													 snap, InvalidSnapshot, true, &tmfd, false);

				if (res != TM_Ok && res != TM_Deleted)
					retry = dp_side_retry(call, res, "delete");
			}
			index_endscan(scan);
		}
		else
		{
			TableScanDesc scan;

			ScanKeyInit(&skey, att, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(value));
			scan = table_beginscan(call->rel, snap, 1, &skey);
			while (!retry && table_scan_getnextslot(scan, ForwardScanDirection, c->existing))
			{
				TM_FailureData tmfd;
				bool		isnull;
				TM_Result	res;

				if (DatumGetObjectId(slot_getattr(c->existing, att, &isnull)) != value || isnull)
					continue;
				res = table_tuple_delete(call->rel, &c->existing->tts_tid, call->cid,
										 snap, InvalidSnapshot, true, &tmfd, false);
				if (res != TM_Ok && res != TM_Deleted)
					retry = dp_side_retry(call, res, "delete");
			}
			table_endscan(scan);
		}
		if (!retry)
			break;
		UnregisterSnapshot(snap);
		snap = RegisterSnapshot(GetLatestSnapshot());
	}
	ExecClearTuple(c->existing);
	UnregisterSnapshot(snap);
}

/* The owner of deploy_progress.timings; invalid when it does not exist. */
static Oid
dp_side_table_owner(void)
{
	return dp_extension_table_owner("timings");
}

/*
 * Remove the side rows of the partitions among "relids" (all of "relids":
 * tables just detached are no longer partitions).
 */
static void
dp_side_forget_partitions(List *relids, bool all)
{
	ListCell   *lc;
	DpSideCall call;
	Oid			owner = InvalidOid;
	bool		opened = false;

	foreach(lc, relids)
	{
		Oid			relid = lfirst_oid(lc);

		if ((!all && !get_rel_relispartition(relid)) || get_rel_relkind(relid) != RELKIND_RELATION)
			continue;
		if (!opened)
		{
			owner = dp_side_table_owner();
			if (!OidIsValid(owner))
				return;
			dp_side_open(&call, owner);
			opened = true;
		}
		dp_side_remove_all(&call, InvalidOid, relid);
	}
	if (opened)
		dp_side_close(&call);
}

/*
 * After a utility statement: TRUNCATE of a partition, or DETACH PARTITION,
 * takes the side rows of the partitions it emptied or detached away (a
 * detached partition is no longer tracked).  TRUNCATE of a tracked table
 * itself is its AFTER TRUNCATE trigger's business; a partition has no
 * statement trigger of its own, so its rows are found by the partition they
 * were written in.  Called by history.c's ProcessUtility hook.
 */
void
dp_side_utility_end(Node *stmt)
{
	List	   *relids = NIL;
	ListCell   *lc;
	bool		detached = false;

	if (!IsTransactionState())
		return;
	if (IsA(stmt, TruncateStmt))
	{
		TruncateStmt *ts = (TruncateStmt *) stmt;

		foreach(lc, ts->relations)
		{
			RangeVar   *rv = lfirst_node(RangeVar, lc);
			Oid			relid = RangeVarGetRelid(rv, NoLock, true);

			if (!OidIsValid(relid))
				continue;
			if (rv->inh && get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
				relids = list_concat_unique_oid(relids, find_all_inheritors(relid, NoLock, NULL));
			else
				relids = list_append_unique_oid(relids, relid);
		}
		if (ts->behavior == DROP_CASCADE)
		{
			for (;;)
			{
				int			before = list_length(relids);

				relids = list_concat_unique_oid(relids, heap_truncate_find_FKs(relids));
				if (list_length(relids) == before)
					break;
			}
		}
	}
	else if (IsA(stmt, AlterTableStmt))
	{
		foreach(lc, ((AlterTableStmt *) stmt)->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
			Oid			relid;

			if (cmd->subtype != AT_DetachPartition
#if PG_VERSION_NUM >= 140000
				&& cmd->subtype != AT_DetachPartitionFinalize
#endif
				)
				continue;
			relid = RangeVarGetRelid(((PartitionCmd *) cmd->def)->name, NoLock, true);
			if (OidIsValid(relid))
				relids = list_concat_unique_oid(relids, find_all_inheritors(relid, NoLock, NULL));
			detached = true;
		}
	}
	if (relids != NIL)
		dp_side_forget_partitions(relids, detached);
	list_free(relids);
}

/*------------------------------------------------------------------------
 * The trigger
 *------------------------------------------------------------------------
 */

/*
 * Whether the row of an AFTER DELETE is the old half of a cross-partition
 * UPDATE: the heap marks a tuple it moved to another partition.
 */
static bool
dp_side_row_moved(TriggerData *trigdata)
{
	HeapTuple	tuple = trigdata->tg_trigtuple;

	if (!trigdata->tg_relation->rd_rel->relispartition || tuple == NULL ||
		tuple->t_data == NULL || !TTS_IS_BUFFERTUPLE(trigdata->tg_trigslot))
		return false;
	return HeapTupleHeaderIndicatesMovedPartitions(tuple->t_data);
}

/* The partition a row of "rel" is filed under: none unless a partition. */
static inline Oid
dp_side_partition_of(Relation rel)
{
	return rel->rd_rel->relispartition ? RelationGetRelid(rel) : InvalidOid;
}

/*
 * For the history's AFTER INSERT of a row in partition of tracked table
 * "relid": whether it is the new half of a row moved from another
 * partition (its old half's AFTER DELETE has just fired, see dp_move), and
 * then the phase it had and when it entered it.
 */
bool
dp_side_moving(Oid relid, int *old_idx, TimestampTz *old_phase_at, bool *old_phase_at_null)
{
	if (!dp_move.valid || dp_move.tracked_relid != relid ||
		dp_move.depth != dp_statement_depth ||
		dp_move.level != GetCurrentTransactionNestLevel())
		return false;
	*old_idx = dp_move.old_phase_null ? -1 : dp_move.old_idx;
	*old_phase_at_null = !dp_move.found || dp_move.ts_null[DP_ROLE_PHASE_UPDATED_AT];
	*old_phase_at = *old_phase_at_null ? 0 : dp_move.ts[DP_ROLE_PHASE_UPDATED_AT];
	return true;
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
	DpSideCall	call;
	Oid			relid;
	Oid			partition;
	text	   *key;
	bool		moving;

	rel = trigdata->tg_relation;
	t = dp_get_track(rel);
	if (!t->side || t->citus_copy)
		return PointerGetDatum(NULL);
	if (!dp_stamping)
	{
		/* a DELETE or TRUNCATE leaving the side rows behind, too */
		dp_check_stamping_off(t);
		return PointerGetDatum(NULL);
	}
	relid = t->tracked_relid;
	partition = dp_side_partition_of(rel);

	/* the INSERT half of a move follows its DELETE half at once */
	moving = dp_move.valid && TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) &&
		dp_move.tracked_relid == relid && dp_move.depth == dp_statement_depth &&
		dp_move.level == GetCurrentTransactionNestLevel();
	dp_move.valid = false;

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		dp_side_flush_events();
		dp_side_open(&call, t->side_owner);
		dp_side_remove_all(&call, relid, InvalidOid);
		dp_side_close(&call);
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		/* a delete may be of a row whose write is queued */
		dp_side_flush_events();
		dp_side_open(&call, t->side_owner);
		key = dp_row_key(t, rel, trigdata->tg_trigslot);
		if (dp_side_row_moved(trigdata))
		{
			TupleTableSlot *old = trigdata->tg_trigslot;
			bool		isnull;
			Datum		phase;

			/* keep what the INSERT into the new partition needs */
			memset(&dp_move, 0, sizeof(dp_move));
			dp_move.found = dp_side_remove(&call, relid, key, dp_move.ts, dp_move.ts_null);
			phase = slot_getattr(old, t->att_phase, &isnull);
			dp_move.old_phase_null = isnull;
			dp_move.old_idx = isnull ? -1 : dp_phase_index(t, phase);
			dp_move.completed_null = dp_move.total_null = true;
			if (t->att[DP_ROLE_COMPLETED_ITEMS])
				dp_move.completed = dp_slot_counter(t, old, DP_ROLE_COMPLETED_ITEMS, &dp_move.completed_null);
			if (t->att[DP_ROLE_TOTAL_ITEMS])
				dp_move.total = dp_slot_counter(t, old, DP_ROLE_TOTAL_ITEMS, &dp_move.total_null);
			dp_move.tracked_relid = relid;
			dp_move.depth = dp_statement_depth;
			dp_move.level = GetCurrentTransactionNestLevel();
			dp_move.valid = true;
		}
		else
			(void) dp_side_remove(&call, relid, key, NULL, NULL);
		dp_side_close(&call);
	}
	else
	{
		TupleTableSlot *oldslot = NULL;
		TupleTableSlot *newslot = trigdata->tg_trigslot;
		DpChange	ch;
		DpSideEvent e;
		DpKind		kind;

		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		{
			oldslot = trigdata->tg_trigslot;
			newslot = trigdata->tg_newslot;
		}
		dp_classify(t, rel, oldslot, newslot, false, false, &ch);
		key = dp_row_key(t, rel, newslot);

		if (moving)
		{
			/* the moved row: what the UPDATE did, from the row it left */
			bool		completed_null = true;
			bool		total_null = true;
			int64		completed = 0;
			int64		total = 0;

			if (t->att[DP_ROLE_COMPLETED_ITEMS])
				completed = dp_slot_counter(t, newslot, DP_ROLE_COMPLETED_ITEMS, &completed_null);
			if (t->att[DP_ROLE_TOTAL_ITEMS])
				total = dp_slot_counter(t, newslot, DP_ROLE_TOTAL_ITEMS, &total_null);
			ch.old_idx = dp_move.old_idx;
			ch.entered = dp_move.old_phase_null || ch.new_idx != dp_move.old_idx;
			ch.counters_moved = completed_null != dp_move.completed_null ||
				total_null != dp_move.total_null ||
				(!completed_null && completed != dp_move.completed) ||
				(!total_null && total != dp_move.total);
		}

		Assert(!ch.entered || (ch.new_idx >= 0 && ch.new_idx < t->nphases));
		kind = ch.entered ? t->phases[ch.new_idx].kind : DP_KIND_PENDING;
		e.now = dp_now();
		e.entered = ch.entered;
		e.active = ch.entered && kind == DP_KIND_ACTIVE;
		e.terminal = ch.entered && DP_KIND_IS_TERMINAL(kind);
		e.restart = ch.entered && ch.old_idx >= 0 &&
			DP_KIND_IS_TERMINAL(t->phases[ch.old_idx].kind);
		e.counters_moved = ch.counters_moved;
		/* a new row replaces whatever a truncated or deleted one left */
		e.newrow = oldslot == NULL && !moving;

		if (moving || (oldslot && !dp_text_equal(PointerGetDatum(dp_row_key(t, rel, oldslot)),
												 PointerGetDatum(key))))
		{
			/*
			 * A key that changed carries its timings along: the old side row
			 * goes now, its timings are filed under the new key when the
			 * statement ends (see the file's header).
			 */
			TimestampTz old[DP_NUM_ROLES];
			bool		old_null[DP_NUM_ROLES];
			TimestampTz ts[DP_NUM_ROLES];
			bool		ts_null[DP_NUM_ROLES];
			bool		found;

			dp_side_flush_events();
			dp_side_open(&call, t->side_owner);
			if (moving)
			{
				found = dp_move.found;
				memcpy(old, dp_move.ts, sizeof(old));
				memcpy(old_null, dp_move.ts_null, sizeof(old_null));
			}
			else
				found = dp_side_remove(&call, relid, dp_row_key(t, rel, oldslot), old, old_null);
			dp_side_rule(call.c, &e, found ? old : NULL, old_null, ts, ts_null);
			dp_side_close(&call);
			dp_side_enqueue(t->side_owner, relid, partition, key, NULL, ts, ts_null);
		}
		else
		{
			/* written with the statement's other rows when it ends */
			if (dp_nevents >= DP_SIDE_CHUNK)
				dp_side_flush_events();
			dp_side_enqueue(t->side_owner, relid, partition, key, &e, NULL, NULL);
		}
	}
	return PointerGetDatum(NULL);
}
