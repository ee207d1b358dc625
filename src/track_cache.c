/*-------------------------------------------------------------------------
 *
 * track_cache.c
 *	  The tracked-table cache: per backend, the column positions, lifecycle
 *	  phases and options of each tracked table, as the triggers need them.
 *
 * The triggers run on every write of a tracked table, so nothing they need
 * may cost a catalog or SPI lookup per row.  The first write of a table in a
 * backend reads deploy_progress.tracked and deploy_progress.lifecycle_phases
 * once (with SPI) and resolves column names to attribute numbers; the
 * result stays in a hash table keyed by relation OID, in a memory context
 * of its own, until a relcache invalidation of the relation marks it stale.
 * Such invalidations come from ALTER TABLE and from the triggers on the
 * configuration tables, which call deploy_progress._invalidate() for every
 * table whose configuration or lifecycle changed; since they travel through
 * the shared invalidation queue, every backend sees them at its next
 * command.
 *
 * An invalidation can arrive while an entry is being built (SPI takes locks,
 * and taking a lock processes pending invalidations).  The entry is marked
 * valid before the build starts, so such an invalidation marks it stale
 * again and the loop in dp_get_track() builds it once more.
 *
 * Column roles (completed_items, heartbeat_at, ...) are defined once, in the
 * role table below: the configuration comes as role names with their
 * columns, and each is resolved through its definition into the entry's
 * att[] and atttype[], indexed by DpRole.
 *
 * IDENTIFICATION
 *	  src/track_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/varlena.h"

#include "deploy_progress.h"

/* This backend's local transaction id (in PGPROC's vxid from 17 on). */
#if PG_VERSION_NUM >= 170000
#define DP_MY_LXID (MyProc->vxid.lxid)
#else
#define DP_MY_LXID (MyProc->lxid)
#endif

static HTAB *dp_tracks = NULL;
static MemoryContext dp_cache_cxt = NULL;
static DpTrack *dp_last_track = NULL;	/* entry returned last (entries never move) */

static const char *const dp_kind_names[] = {
	"pending", "active", "waiting", "succeeded", "failed", "cancelled"
};

/*
 * The role table: every column role besides the phase, defined once.  The
 * cache resolves a tracked table's columns from it (DpTrack.att[] and
 * atttype[], by DpRole), the messages name roles by their name, and the
 * configuration query of each schema version lists its roles by name.
 */
typedef struct DpRoleDef
{
	const char *name;			/* as track() and deploy_progress.tracked name it */
	const Oid  *types;			/* the column types it accepts */
	int			ntypes;
	int			flags;			/* DP_ROLE_TIMING, DP_ROLE_OWNED, DP_ROLE_SIDE */
	const char *column_1_0;		/* its column of deploy_progress.tracked in
								 * schema 1.0 (NULL: a later role) */
} DpRoleDef;

static const Oid dp_counter_types[] = {INT2OID, INT4OID, INT8OID};
/* a timing column: timestamptz, or timestamp in the table's time zone */
static const Oid dp_timing_types[] = {TIMESTAMPTZOID, TIMESTAMPOID};
static const Oid dp_float8_types[] = {FLOAT8OID};
static const Oid dp_text_types[] = {TEXTOID, VARCHAROID};
static const Oid dp_percent_types[] = {INT2OID, INT4OID, INT8OID, NUMERICOID, FLOAT4OID, FLOAT8OID};
static const Oid dp_jsonb_types[] = {JSONBOID};

#define DP_TYPES(a) (a), lengthof(a)
#define DP_STAMP (DP_ROLE_TIMING | DP_ROLE_OWNED)

static const DpRoleDef dp_roles[DP_NUM_ROLES] = {
	[DP_ROLE_COMPLETED_ITEMS] = {"completed_items", DP_TYPES(dp_counter_types), 0, "completed_column"},
	[DP_ROLE_TOTAL_ITEMS] = {"total_items", DP_TYPES(dp_counter_types), 0, "total_column"},
	[DP_ROLE_PHASE_UPDATED_AT] = {"phase_updated_at", DP_TYPES(dp_timing_types), DP_STAMP | DP_ROLE_SIDE, "phase_updated_column"},
	[DP_ROLE_PROGRESS_UPDATED_AT] = {"progress_updated_at", DP_TYPES(dp_timing_types), DP_STAMP | DP_ROLE_SIDE, "progress_updated_column"},
	[DP_ROLE_HEARTBEAT_AT] = {"heartbeat_at", DP_TYPES(dp_timing_types), DP_STAMP | DP_ROLE_SIDE, "heartbeat_column"},
	[DP_ROLE_STARTED_AT] = {"started_at", DP_TYPES(dp_timing_types), DP_STAMP | DP_ROLE_SIDE, "started_column"},
	[DP_ROLE_FINISHED_AT] = {"finished_at", DP_TYPES(dp_timing_types), DP_STAMP | DP_ROLE_SIDE, "finished_column"},
	[DP_ROLE_ITEMS_PER_SECOND] = {"items_per_second", DP_TYPES(dp_float8_types), DP_ROLE_OWNED, "speed_column"},
	[DP_ROLE_SPEED_UPDATED_AT] = {"speed_updated_at", DP_TYPES(dp_timing_types), DP_STAMP, "speed_updated_column"},
	[DP_ROLE_FAILURE_REASON] = {"failure_reason", DP_TYPES(dp_text_types), 0, "reason_column"},
	[DP_ROLE_PERCENT] = {"percent", DP_TYPES(dp_percent_types), 0, NULL},
	/* kept with each transition (history.c) */
	[DP_ROLE_MESSAGE] = {"message", DP_TYPES(dp_text_types), 0, NULL},
	[DP_ROLE_METADATA] = {"metadata", DP_TYPES(dp_jsonb_types), 0, NULL},
	[DP_ROLE_LABEL] = {"label", DP_TYPES(dp_text_types), 0, NULL},
};

/*
 * The extension's tables whose shape the C depends on, as the last build
 * found them, and a counter of the invalidations that may have changed
 * deploy_progress.timings or deploy_progress.history: side.c and history.c
 * look at their columns again when it moves.
 */
static Oid	dp_tracked_table = InvalidOid;
static Oid	dp_timings_table = InvalidOid;
static Oid	dp_history_table = InvalidOid;
uint32		dp_tables_generation = 1;

/*
 * Relcache callback: mark the entry of the relation stale, or every entry
 * when deploy_progress.tracked itself changed (an ALTER EXTENSION UPDATE
 * that changes its shape; rewriting its rows invalidates every entry through
 * its guard trigger anyway) or the whole relcache was reset.
 */
static void
dp_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	DpTrack    *t;

	if (!OidIsValid(relid) || relid == dp_timings_table || relid == dp_history_table)
		dp_tables_generation++;
	if (dp_tracks == NULL)
		return;
	if (OidIsValid(relid) && relid != dp_tracked_table)
	{
		t = hash_search(dp_tracks, &relid, HASH_FIND, NULL);
		if (t)
			t->valid = false;
		return;
	}
	hash_seq_init(&status, dp_tracks);
	while ((t = hash_seq_search(&status)) != NULL)
		t->valid = false;
}

/*
 * Syscache callback for pg_enum: a label added to (or renamed in) an enum
 * type changes which phases of a lifecycle an enum phase column can hold,
 * and the entries of such tables map phases to enum OIDs: mark the entries
 * stale (enum changes are rare enough to reload every table's).
 * (ALTER TYPE ... ADD VALUE sends no relcache invalidation of the tables.)
 */
static void
dp_enum_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS status;
	DpTrack    *t;

	if (dp_tracks == NULL)
		return;
	/* (every entry: one still being built has no phase_is_enum yet) */
	hash_seq_init(&status, dp_tracks);
	while ((t = hash_seq_search(&status)) != NULL)
		t->valid = false;
}

static void
dp_cache_init(void)
{
	HASHCTL		ctl;

	dp_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
										 "deploy_progress tracking cache",
										 ALLOCSET_SMALL_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(DpTrack);
	ctl.hcxt = dp_cache_cxt;
	dp_tracks = hash_create("deploy_progress tracked tables", 16, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(dp_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(ENUMOID, dp_enum_callback, (Datum) 0);
}

/*
 * Kind named by its text, as the lifecycle_phases CHECK constraint allows;
 * -1 when it is not a kind.
 */
int
dp_kind_from_name(const char *name)
{
	int			i;

	for (i = 0; i < (int) lengthof(dp_kind_names); i++)
		if (strcmp(name, dp_kind_names[i]) == 0)
			return i;
	return -1;
}

/* Name of a kind, as the lifecycle_phases CHECK constraint spells it. */
const char *
dp_kind_name(DpKind kind)
{
	Assert(kind >= 0 && kind < (int) lengthof(dp_kind_names));
	return dp_kind_names[kind];
}

/* Name of a role, as track() and deploy_progress.tracked spell it. */
const char *
dp_role_name(DpRole role)
{
	Assert(role >= 0 && role < DP_NUM_ROLES);
	return dp_roles[role].name;
}

/* Whether a role has every one of "flags" (DP_ROLE_TIMING, ...). */
bool
dp_role_is(DpRole role, int flags)
{
	Assert(role >= 0 && role < DP_NUM_ROLES);
	return (dp_roles[role].flags & flags) == flags;
}

/*
 * The time a timing column's value stands for: a timestamptz as it is, a
 * timestamp (without time zone) read as a local time of the table's zone,
 * as "value AT TIME ZONE zone" reads it.  Infinities stay infinite.
 */
TimestampTz
dp_timing_from_column(DpTrack *t, DpRole role, Datum value)
{
	Assert(dp_role_is(role, DP_ROLE_TIMING) && t->att[role]);
	if (t->atttype[role] == TIMESTAMPOID)
		return DatumGetTimestampTz(DirectFunctionCall2(timestamp_zone, t->time_zone, value));
	return DatumGetTimestampTz(value);
}

/*
 * A time as the value of a timing column: a timestamptz as it is, or the
 * local time in the table's zone for a timestamp column ("ts AT TIME ZONE
 * zone").
 */
Datum
dp_timing_to_column(DpTrack *t, DpRole role, TimestampTz ts)
{
	Assert(dp_role_is(role, DP_ROLE_TIMING) && t->att[role]);
	if (t->atttype[role] == TIMESTAMPOID)
		return DirectFunctionCall2(timestamptz_zone, t->time_zone, TimestampTzGetDatum(ts));
	return TimestampTzGetDatum(ts);
}

/* Role named "name", -1 when the role is not one this library knows. */
static int
dp_role_from_name(const char *name)
{
	int			r;

	for (r = 0; r < DP_NUM_ROLES; r++)
		if (strcmp(name, dp_roles[r].name) == 0)
			return r;
	return -1;
}

/* Whether a text of the configuration (NULL when null) is "value". */
static inline bool
dp_text_is(const char *text, const char *value)
{
	return text != NULL && strcmp(text, value) == 0;
}

/* Text of column "col" of the current SPI result row, NULL when null. */
static char *
dp_spi_text(int row, const char *col)
{
	int			fno = SPI_fnumber(SPI_tuptable->tupdesc, col);

	if (fno <= 0)
		elog(ERROR, "column \"%s\" missing from tracking query", col);
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, fno);
}

/*
 * Attribute number of a role column, checking that it still exists with one
 * of the accepted types; InvalidAttrNumber when the role is not configured.
 */
static AttrNumber
dp_resolve_column(DpTrack *t, Relation rel, const char *colname, const char *role,
				  const Oid *types, int ntypes, Oid *typid)
{
	AttrNumber	attnum;
	Form_pg_attribute att;
	int			i;

	if (colname == NULL)
		return InvalidAttrNumber;
	attnum = get_attnum(RelationGetRelid(rel), colname);
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("%s column \"%s\" of tracked table \"%s\" does not exist",
						role, colname, DP_REL_NAME(t, rel)),
				 errhint("Run deploy_progress.track() again to update the table's configuration.")));
	Assert(attnum <= RelationGetDescr(rel)->natts);
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	if (typid)
		*typid = att->atttypid;
	if (types == NULL)
		return attnum;
	for (i = 0; i < ntypes; i++)
		if (att->atttypid == types[i])
			return attnum;
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("%s column \"%s\" of tracked table \"%s\" has type %s",
					role, colname, DP_REL_NAME(t, rel),
					format_type_be(att->atttypid)),
			 errhint("Change the column back, or run deploy_progress.track() again.")));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/*
 * The query that reads the configuration of a table (or of the partitioned
 * table it is a partition of), $1, in a schema version.  It returns one row
 * with the options every version has, by name, and the role columns as two
 * parallel text[] arrays, role_names and role_columns (a null column: the
 * role is absent).  The options part is written once; the roles part is
 * where the versions differ:
 *
 *	- schema 1.0 has one column of deploy_progress.tracked per role (the
 *	  role table's column_1_0);
 *	- schema 1.1 has one jsonb column, "columns", mapping role names to
 *	  column names for the roles present.
 *
 * The time zone of timestamp (without time zone) timing columns is
 * tracked.time_zone from schema 1.1 on; schema 1.0 accepts timestamptz
 * columns only, and its query gives 'UTC'.  So for tracked.backward_moves:
 * schema 1.0 applied every move, and its query gives 'allow'.
 */
#define DP_CONFIG_OPTIONS \
	"SELECT t.relid::pg_catalog.oid AS tracked_relid," \
	"       t.lifecycle, t.phase_column, t.key_columns, t.storage, t.allow_restart," \
	"       pg_catalog.date_part('epoch', t.speed_time_constant) AS tau," \
	"       t.history, t.notify_channel"
#define DP_CONFIG_FROM \
	"  FROM " DP_SCHEMA ".tracked t" \
	"  JOIN (SELECT $1::pg_catalog.regclass, 0::pg_catalog.int8" \
	"        UNION ALL" \
	"        SELECT * FROM pg_catalog.pg_partition_ancestors($1::pg_catalog.regclass) WITH ORDINALITY" \
	"       ) AS a(relid, ord) ON t.relid OPERATOR(pg_catalog.=) a.relid"
#define DP_CONFIG_ORDER \
	" ORDER BY a.ord LIMIT 1"

#define DP_CONFIG_ROLES_1_1 \
	", t.time_zone, t.backward_moves, r.role_names, r.role_columns"
#define DP_CONFIG_ROLES_FROM_1_1 \
	"  CROSS JOIN LATERAL (SELECT pg_catalog.array_agg(e.key ORDER BY e.key)," \
	"                             pg_catalog.array_agg(e.value ORDER BY e.key)" \
	"                        FROM pg_catalog.jsonb_each_text(t.columns) e" \
	"                     ) AS r(role_names, role_columns)"

static char *dp_config_queries[DP_NUM_SCHEMAS];

static const char *
dp_config_query(DpSchema schema)
{
	Assert(schema >= 0 && schema < DP_NUM_SCHEMAS);
	if (dp_config_queries[schema] == NULL)
	{
		StringInfoData buf;
		MemoryContext oldcxt = MemoryContextSwitchTo(dp_cache_cxt);
		const char *sep;
		int			r;

		initStringInfo(&buf);
		appendStringInfoString(&buf, DP_CONFIG_OPTIONS);
		switch (schema)
		{
			case DP_SCHEMA_1_0:
				appendStringInfoString(&buf, ", 'UTC'::pg_catalog.text AS time_zone,"
									   " 'allow'::pg_catalog.text AS backward_moves, ARRAY[");
				sep = "";
				for (r = 0; r < DP_NUM_ROLES; r++)
					if (dp_roles[r].column_1_0)
					{
						appendStringInfo(&buf, "%s%s", sep, quote_literal_cstr(dp_roles[r].name));
						sep = ", ";
					}
				appendStringInfoString(&buf, "]::pg_catalog.text[] AS role_names, ARRAY[");
				sep = "";
				for (r = 0; r < DP_NUM_ROLES; r++)
					if (dp_roles[r].column_1_0)
					{
						appendStringInfo(&buf, "%st.%s", sep, dp_roles[r].column_1_0);
						sep = ", ";
					}
				appendStringInfoString(&buf, "]::pg_catalog.text[] AS role_columns" DP_CONFIG_FROM);
				break;
			default:
				appendStringInfoString(&buf, DP_CONFIG_ROLES_1_1 DP_CONFIG_FROM DP_CONFIG_ROLES_FROM_1_1);
				break;
		}
		appendStringInfoString(&buf, DP_CONFIG_ORDER);
		MemoryContextSwitchTo(oldcxt);
		dp_config_queries[schema] = buf.data;
	}
	return dp_config_queries[schema];
}

/* What the configuration query is reading, for the context of its errors. */
typedef struct DpConfigContext
{
	Relation	rel;
	const char *version;
	DpSchema	schema;
} DpConfigContext;

static void
dp_config_error_context(void *arg)
{
	DpConfigContext *c = (DpConfigContext *) arg;

	errcontext("reading the tracking configuration of table \"%s\" as schema %s of deploy_progress (installed version %s)",
			   RelationGetRelationName(c->rel), dp_schema_name(c->schema), c->version);
}

/* A text[] column of the current SPI result row; no elements when null. */
static void
dp_spi_text_array(const char *col, Datum **elems, bool **nulls, int *n)
{
	int			fno = SPI_fnumber(SPI_tuptable->tupdesc, col);
	bool		isnull;
	Datum		d;

	if (fno <= 0)
		elog(ERROR, "column \"%s\" missing from tracking query", col);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, fno, &isnull);
	*n = 0;
	if (!isnull)
		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  elems, nulls, n);
}

/*
 * The role columns of the configuration row: t->att[] and t->atttype[]
 * from role_names and role_columns.  A role name this library does not
 * know (one of a later version) is left alone; a null column leaves the
 * role out.
 */
static void
dp_resolve_roles(DpTrack *t, Relation rel)
{
	Datum	   *names;
	Datum	   *columns;
	bool	   *names_null;
	bool	   *columns_null;
	int			nnames;
	int			ncolumns;
	int			i;

	for (i = 0; i < DP_NUM_ROLES; i++)
	{
		t->att[i] = InvalidAttrNumber;
		t->atttype[i] = InvalidOid;
	}
	dp_spi_text_array("role_names", &names, &names_null, &nnames);
	dp_spi_text_array("role_columns", &columns, &columns_null, &ncolumns);
	if (nnames != ncolumns)
		elog(ERROR, "tracking query returned %d role names for %d role columns", nnames, ncolumns);
	for (i = 0; i < nnames; i++)
	{
		int			r;

		if (names_null[i] || columns_null[i])
			continue;
		r = dp_role_from_name(TextDatumGetCString(names[i]));
		if (r < 0)
			continue;
		t->att[r] = dp_resolve_column(t, rel, TextDatumGetCString(columns[i]), dp_roles[r].name,
									  dp_roles[r].types, dp_roles[r].ntypes, &t->atttype[r]);
	}

	/*
	 * Progress is counted or given as a percent, not both (track() refuses
	 * both; a configuration written otherwise keeps the counters)
	 */
	if (t->att[DP_ROLE_COMPLETED_ITEMS] || t->att[DP_ROLE_TOTAL_ITEMS])
	{
		t->att[DP_ROLE_PERCENT] = InvalidAttrNumber;
		t->atttype[DP_ROLE_PERCENT] = InvalidOid;
	}

	/* the smoothed speed follows the completed items, or the percent */
	if (!t->att[DP_ROLE_ITEMS_PER_SECOND] ||
		!(t->att[DP_ROLE_COMPLETED_ITEMS] || t->att[DP_ROLE_PERCENT]))
	{
		t->att[DP_ROLE_ITEMS_PER_SECOND] = t->att[DP_ROLE_SPEED_UPDATED_AT] = InvalidAttrNumber;
		t->atttype[DP_ROLE_ITEMS_PER_SECOND] = t->atttype[DP_ROLE_SPEED_UPDATED_AT] = InvalidOid;
	}

	t->ntimings = 0;
	for (i = 0; i < DP_NUM_ROLES; i++)
	{
		Assert(t->att[i] >= 0 && t->att[i] <= RelationGetDescr(rel)->natts);
		if (t->att[i] && (dp_roles[i].flags & DP_ROLE_TIMING))
			t->timings[t->ntimings++] = (DpRole) i;
	}
}

/* What dp_retrack() is doing, for the context of its errors. */
static void
dp_retrack_error_context(void *arg)
{
	errcontext("restoring the tracking configuration of table \"%s\" from its trigger zz_deploy_progress_stamp",
			   (const char *) arg);
}

/*
 * A tracked table restored from a schema-only dump has its triggers but no
 * configuration: the stamp trigger carries it in its argument (confirmed by
 * the trigger's comment, see _retrack() in sql/src/20_tracking.sql).  When
 * "rel" has such a trigger, recreate the configuration of the table the
 * trigger belongs to (rel, or the partitioned table rel is a partition of)
 * with deploy_progress._retrack(), as that table's owner inside a
 * security-restricted operation: the writer needs no right on the
 * configuration, lends none of its own, and the result is what the owner
 * could have written by hand.  Called inside the SPI session of
 * dp_build_track(); true when it ran a query there, so that the caller
 * reads the configuration again (another transaction may have written it
 * first: _retrack() waits for that one to end).
 */
static bool
dp_retrack(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	bool		has_arg = false;
	bool		isnull;
	Oid			root;
	HeapTuple	tup;
	Oid			owner;
	DpSavedUser saved;
	ErrorContextCallback errcb;
	int			ret;
	int			i;

	for (i = 0; trigdesc && i < trigdesc->numtriggers; i++)
		if (trigdesc->triggers[i].tgnargs == 1 &&
			strcmp(trigdesc->triggers[i].tgname, "zz_deploy_progress_stamp") == 0)
			has_arg = true;
	if (!has_arg)
		return false;

	/* the table whose trigger it is (a catalog read, with the writer's rights) */
	args[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	ret = SPI_execute_with_args("SELECT tg.tgrelid FROM pg_catalog.pg_trigger tg"
								" WHERE tg.oid OPERATOR(pg_catalog.=) " DP_SCHEMA "._stamp_trigger($1::pg_catalog.regclass)",
								1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "looking up the stamp trigger failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return true;
	root = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		return true;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(root));
	if (!HeapTupleIsValid(tup))
		return true;
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	errcb.callback = dp_retrack_error_context;
	errcb.arg = get_rel_name(root);
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	dp_spi_connect_as(owner, &saved);
	args[0] = ObjectIdGetDatum(root);
	ret = SPI_execute_with_args("SELECT " DP_SCHEMA "._retrack($1::pg_catalog.regclass)",
								1, argtypes, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "restoring the tracking configuration failed: %s", SPI_result_code_string(ret));
	dp_spi_finish_as(&saved);
	error_context_stack = errcb.previous;
	return true;
}

/*
 * Citus distributed tables.  Citus creates a table's triggers, arguments
 * included, on each of its shards (as "<name>_<shard id>", on every shard
 * it creates later too: moves, splits, new nodes), but the rows of
 * deploy_progress.tracked and of the lifecycles stay on the node that wrote
 * them, the coordinator.  A shard therefore takes its configuration from
 * its stamp trigger's argument, the same versioned JSON text that a
 * schema-only restore reads (see _trigger_config() in
 * sql/src/20_tracking.sql), without writing any configuration on the
 * worker: the entry describes the distributed table (tracked_relid is its
 * shell, which every node has with Citus' metadata sync), so that history
 * and side timings are kept under the table's name and messages name it,
 * not the shard.  A shard sends no NOTIFY: a transaction that writes shards
 * on two nodes commits with two-phase commit, which PostgreSQL refuses
 * after a NOTIFY, and listeners are on the coordinator anyway.
 *
 * Citus does not copy comments to shards, so the argument of a shard's
 * trigger is not confirmed by one as _retrack() demands; it configures
 * only this table's stamps (nothing is written as the owner but the rows'
 * own history and side timings), which is what a role with the TRIGGER
 * privilege on the table can change anyway.
 */

/*
 * The distributed table a Citus shard belongs to, with the argument of the
 * shard's stamp trigger; InvalidOid when rel is not a shard with such a
 * trigger (or Citus is not installed).  The trigger's name ends in the
 * shard id, which pg_catalog.pg_dist_shard maps to the table; the shard's
 * name is checked against it.  Runs in the caller's SPI session.
 */
static Oid
dp_citus_table_of_shard(Relation rel, char **arg, bool *copying)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	const char *prefix = "zz_deploy_progress_stamp_";
	Trigger    *trig = NULL;
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	char	   *end;
	int64		shardid;
	bool		isnull;
	Datum		d;
	int			ret;
	int			i;

	for (i = 0; trigdesc && i < trigdesc->numtriggers; i++)
		if (trigdesc->triggers[i].tgnargs == 1 &&
			strncmp(trigdesc->triggers[i].tgname, prefix, strlen(prefix)) == 0)
			trig = &trigdesc->triggers[i];
	*copying = false;
	if (trig == NULL ||
		!OidIsValid(get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE)))
		return InvalidOid;
	errno = 0;
	shardid = strtoll(trig->tgname + strlen(prefix), &end, 10);
	if (errno != 0 || *end != '\0' || end == trig->tgname + strlen(prefix) || shardid <= 0)
		return InvalidOid;

	/*
	 * A shard created by this transaction is being filled by Citus:
	 * create_distributed_table() creates the shards and copies the table's
	 * rows into them in one distributed transaction, on the connection that
	 * created each shard, and may or may not have written the shard's
	 * metadata on that connection before (so the metadata alone cannot
	 * tell).  Those rows were stamped and checked when they were written.
	 */
	if (rel->rd_createSubid != InvalidSubTransactionId)
	{
		*copying = true;
		return InvalidOid;
	}

	args[0] = Int64GetDatum(shardid);
	args[1] = CStringGetTextDatum(quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
															 RelationGetRelationName(rel)));
	ret = dp_spi_execute_latest("SELECT s.logicalrelid::pg_catalog.oid FROM pg_catalog.pg_dist_shard s"
								" WHERE s.shardid OPERATOR(pg_catalog.=) $1"
								"   AND pg_catalog.shard_name(s.logicalrelid, s.shardid, false) OPERATOR(pg_catalog.=) $2",
								2, argtypes, args, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "looking up the distributed table of a shard failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
	{
		/*
		 * A shard that this node's metadata does not list yet: Citus
		 * creates the shards of create_distributed_table() and copies the
		 * table's rows into them before it writes their metadata.
		 */
		ret = dp_spi_execute_latest("SELECT FROM pg_catalog.pg_dist_shard s WHERE s.shardid OPERATOR(pg_catalog.=) $1",
									1, argtypes, args, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "looking up a shard failed: %s", SPI_result_code_string(ret));
		*copying = SPI_processed == 0;
		return InvalidOid;
	}
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull || !SearchSysCacheExists1(RELOID, d))
		return InvalidOid;
	*arg = trig->tgargs[0];
	return DatumGetObjectId(d);
}

/*
 * The configuration query of a shard: the options and roles of the
 * argument ($2) of its stamp trigger, as the configuration query gives
 * those of deploy_progress.tracked, for the distributed table $1; no row
 * when the argument is not a configuration this version reads.
 */
#define DP_CONFIG_FROM_ARGUMENT \
	"  FROM pg_catalog.jsonb_populate_record(NULL::" DP_SCHEMA ".tracked," \
	"           ($2::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'tracked')" \
	"           OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('relid', $1::pg_catalog.oid)) t"
#define DP_CONFIG_ARGUMENT_VALID \
	" WHERE pg_catalog.jsonb_typeof($2::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'tracked') OPERATOR(pg_catalog.=) 'object'" \
	"   AND ($2::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'v') OPERATOR(pg_catalog.=) '1'::pg_catalog.jsonb" \
	"   AND t.lifecycle IS NOT NULL AND t.phase_column IS NOT NULL AND t.key_columns IS NOT NULL" \
	"   AND t.storage IS NOT NULL AND t.history IS NOT NULL AND t.columns IS NOT NULL"

/* What dp_build_track() reads for a shard, for the context of its errors. */
static void
dp_shard_error_context(void *arg)
{
	errcontext("reading the tracking configuration of Citus shard \"%s\" from its stamp trigger's argument",
			   RelationGetRelationName((Relation) arg));
}

/*
 * Read the configuration of "rel" (or of the partitioned table it is a
 * partition of) into t.  Runs SPI; everything kept goes into t->cxt.
 */
static pg_noinline void
dp_build_track(DpTrack *t, Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	MemoryContext oldcxt;
	char	   *lifecycle;
	char	   *phase_col;
	Datum	   *keys;
	bool	   *key_nulls;
	int			nkeys;
	bool		isnull;
	Oid			phase_type = InvalidOid;
	char	   *shard_arg = NULL;	/* a shard's configuration */
	bool		copying = false;
	int			i;
	int			ret;

	t->scratch_natts = 0;		/* the arrays go with the context's reset */
	t->citus_shard = false;
	t->display_name = NULL;
	t->citus_copy = false;
	if (t->cxt)
		MemoryContextReset(t->cxt);
	else
		t->cxt = AllocSetContextCreate(dp_cache_cxt, "deploy_progress table",
									   ALLOCSET_SMALL_SIZES);

	/*
	 * Invalidations of these make every entry, or side.c and history.c,
	 * look again.  Lock deploy_progress.tracked before reading the version:
	 * an ALTER EXTENSION UPDATE that changes the table is then committed
	 * (or not begun) when the version is read, so the version and the
	 * table's shape agree.
	 */
	{
		Oid			nspid = get_namespace_oid(DP_SCHEMA, false);

		dp_tracked_table = get_relname_relid("tracked", nspid);
		dp_timings_table = get_relname_relid("timings", nspid);
		dp_history_table = get_relname_relid("history", nspid);
		if (!OidIsValid(dp_tracked_table))
			elog(ERROR, "could not find table " DP_SCHEMA ".tracked");
		LockRelationOid(dp_tracked_table, AccessShareLock);
	}

	dp_spi_connect();

	args[0] = ObjectIdGetDatum(relid);
	/* the installed schema version, and its configuration query */
	{
		ErrorContextCallback errcb;
		DpConfigContext ctx;
		char	   *version;

		ctx.rel = rel;
		ctx.schema = dp_installed_schema(&version);
		ctx.version = version;
		errcb.callback = dp_config_error_context;
		errcb.arg = &ctx;
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		ret = dp_spi_execute_latest(dp_config_query(ctx.schema), 1, argtypes, args, 1);
		error_context_stack = errcb.previous;
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading tracking configuration failed: %s", SPI_result_code_string(ret));

		/*
		 * No configuration: after a schema-only restore, the stamp trigger
		 * carries it (schema 1.1 on).  Recreate it, and read again.
		 */
		if (SPI_processed == 0 && ctx.schema >= DP_SCHEMA_1_1 && dp_retrack(rel))
		{
			error_context_stack = &errcb;
			ret = dp_spi_execute_latest(dp_config_query(ctx.schema), 1, argtypes, args, 1);
			error_context_stack = errcb.previous;
			if (ret != SPI_OK_SELECT)
				elog(ERROR, "reading tracking configuration failed: %s", SPI_result_code_string(ret));
		}
	}
	/*
	 * No configuration either way: on a Citus shard, the argument of the
	 * stamp trigger configures the distributed table's shard.
	 */
	if (SPI_processed == 0)
	{
		Oid			logical = dp_citus_table_of_shard(rel, &shard_arg, &copying);

		/*
		 * Rows copied in by create_distributed_table() were stamped and
		 * checked when written: they go in as they are, and leave no
		 * history (the table's is on the coordinator).
		 */
		if (copying)
		{
			t->citus_copy = true;
			t->copy_lxid = DP_MY_LXID;
			SPI_finish();
			return;
		}
		if (OidIsValid(logical))
		{
			ErrorContextCallback errcb;
			Oid			stypes[2] = {OIDOID, TEXTOID};
			Datum		sargs[2];

			sargs[0] = ObjectIdGetDatum(logical);
			sargs[1] = CStringGetTextDatum(shard_arg);
			errcb.callback = dp_shard_error_context;
			errcb.arg = rel;
			errcb.previous = error_context_stack;
			error_context_stack = &errcb;
			ret = dp_spi_execute_latest(DP_CONFIG_OPTIONS DP_CONFIG_ROLES_1_1 DP_CONFIG_FROM_ARGUMENT
										DP_CONFIG_ROLES_FROM_1_1 DP_CONFIG_ARGUMENT_VALID,
										2, stypes, sargs, 1);
			error_context_stack = errcb.previous;
			if (ret != SPI_OK_SELECT)
				elog(ERROR, "reading tracking configuration failed: %s", SPI_result_code_string(ret));
			if (SPI_processed == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("the argument of the stamp trigger of shard \"%s\" of table \"%s\" is not a tracking configuration this version reads",
								RelationGetRelationName(rel), get_rel_name(logical)),
						 errhint("Run deploy_progress.track() on the table again, on the coordinator.")));
			t->citus_shard = true;
			t->display_name = MemoryContextStrdup(t->cxt, get_rel_name(logical));
		}
	}
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not tracked", RelationGetRelationName(rel)),
				 errdetail("The deploy_progress triggers on this table have no configuration."),
				 errhint("Run deploy_progress.track() on the table, or drop its zz_deploy_progress triggers.")));

	t->tracked_relid = (Oid) strtoul(dp_spi_text(0, "tracked_relid"), NULL, 10);
	lifecycle = dp_spi_text(0, "lifecycle");
	phase_col = dp_spi_text(0, "phase_column");

	/*
	 * The key columns as names: a name may hold any character (upper case,
	 * commas, quotes), so they are read from the array, not from its text.
	 */
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													   SPI_fnumber(SPI_tuptable->tupdesc, "key_columns"),
													   &isnull)),
					  NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &keys, &key_nulls, &nkeys);
	if (nkeys < 1 || nkeys > INDEX_MAX_KEYS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tracked table \"%s\" has %d key columns", DP_REL_NAME(t, rel), nkeys),
				 errdetail("A key has between 1 and %d columns.", INDEX_MAX_KEYS),
				 errhint("Run deploy_progress.track() again with a shorter key.")));

	/* columns; types are checked again in case the table changed since */
	t->att_phase = dp_resolve_column(t, rel, phase_col, "phase", NULL, 0, &phase_type);
	t->phase_is_enum = type_is_enum(phase_type);
	if (!t->phase_is_enum && phase_type != TEXTOID && phase_type != VARCHAROID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("phase column \"%s\" of tracked table \"%s\" has type %s",
						phase_col, DP_REL_NAME(t, rel), format_type_be(phase_type)),
				 errhint("A phase column must be text, varchar or an enum type.")));
	{
		char	   *zone = dp_spi_text(0, "time_zone");

		oldcxt = MemoryContextSwitchTo(t->cxt);
		t->time_zone = CStringGetTextDatum(zone ? zone : "UTC");
		MemoryContextSwitchTo(oldcxt);
	}
	dp_resolve_roles(t, rel);
	t->side = dp_text_is(dp_spi_text(0, "storage"), "side");
	t->allow_restart = dp_text_is(dp_spi_text(0, "allow_restart"), "t");
	{
		const char *moves = dp_spi_text(0, "backward_moves");

		t->backward_moves = moves == NULL ? DP_BACKWARD_ALLOW :
			strcmp(moves, "error") == 0 ? DP_BACKWARD_ERROR :
			strcmp(moves, "ignore") == 0 ? DP_BACKWARD_IGNORE : DP_BACKWARD_ALLOW;
	}
	{
		const char *tau = dp_spi_text(0, "tau");

		t->speed_tau = tau ? strtod(tau, NULL) : 0;
	}
	if (!(t->speed_tau > 0))
		t->speed_tau = 15.0;

	/* history and events */
	{
		const char *mode = dp_spi_text(0, "history");
		char	   *channel = dp_spi_text(0, "notify_channel");

		t->history = dp_text_is(mode, "all") ? DP_HISTORY_ALL :
			dp_text_is(mode, "failures") ? DP_HISTORY_FAILURES : DP_HISTORY_OFF;
		/* (no NOTIFY from a shard: see above) */
		t->notify_channel = channel && !t->citus_shard ? MemoryContextStrdup(t->cxt, channel) : NULL;
	}

	/* the row key, for the side table */
	oldcxt = MemoryContextSwitchTo(t->cxt);
	{
		int			k;

		t->nkeys = nkeys;
		t->key_atts = palloc(sizeof(AttrNumber) * t->nkeys);
		t->key_out = palloc(sizeof(FmgrInfo) * t->nkeys);
		t->key_desc = NULL;
		t->key_settings = false;
		if (t->nkeys > 1)
			t->key_desc = CreateTemplateTupleDesc(t->nkeys);
		for (k = 0; k < nkeys; k++)
		{
			Oid			typid = InvalidOid;
			Oid			outfn;
			bool		varlena;

			if (key_nulls[k])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("key column %d of tracked table \"%s\" is null", k + 1,
								RelationGetRelationName(rel)),
						 errhint("Run deploy_progress.track() again to update the table's configuration.")));
			t->key_atts[k] = dp_resolve_column(t, rel, NameStr(*DatumGetName(keys[k])), "key", NULL, 0, &typid);
			getTypeOutputInfo(typid, &outfn, &varlena);
			fmgr_info_cxt(outfn, &t->key_out[k], t->cxt);
			if (dp_type_text_depends_on_settings(typid))
				t->key_settings = true;
			if (t->key_desc)
				TupleDescInitEntry(t->key_desc, k + 1, NULL, typid, -1, 0);
		}
		if (t->key_desc)
		{
			t->key_desc = BlessTupleDesc(t->key_desc);
			fmgr_info_cxt(F_RECORD_OUT, &t->key_record_out, t->cxt);
		}
	}
	MemoryContextSwitchTo(oldcxt);

	/* the lifecycle */
	{
		Oid			ltypes[1] = {TEXTOID};
		Datum		largs[1];

		Oid			ltypes2[2] = {TEXTOID, TEXTOID};
		Datum		largs2[2];

		/*
		 * A shard's lifecycle is that of its argument when not built in
		 * (only the coordinator has the lifecycles defined there), else this
		 * node's built-in one.
		 */
		largs[0] = CStringGetTextDatum(lifecycle);
		if (t->citus_shard)
		{
			largs2[0] = largs[0];
			largs2[1] = CStringGetTextDatum(shard_arg);
			ret = dp_spi_execute_latest(
				"SELECT p.phase, p.kind FROM ("
				"  SELECT e.v OPERATOR(pg_catalog.->>) 'phase', e.v OPERATOR(pg_catalog.->>) 'kind', e.n"
				"    FROM pg_catalog.jsonb_array_elements($2::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'phases')"
				"         WITH ORDINALITY e(v, n)"
				"   WHERE pg_catalog.jsonb_typeof($2::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'phases') OPERATOR(pg_catalog.=) 'array'"
				"  UNION ALL"
				"  SELECT l.phase, l.kind, l.position FROM " DP_SCHEMA ".lifecycle_phases l"
				"   WHERE l.lifecycle OPERATOR(pg_catalog.=) $1"
				"     AND pg_catalog.jsonb_typeof($2::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'phases') IS DISTINCT FROM 'array'"
				") p(phase, kind, n) ORDER BY p.n",
				2, ltypes2, largs2, 0);
		}
		else
			ret = dp_spi_execute_latest(
				"SELECT p.phase, p.kind FROM " DP_SCHEMA ".lifecycle_phases p"
				" WHERE p.lifecycle OPERATOR(pg_catalog.=) $1 ORDER BY p.position",
				1, ltypes, largs, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading lifecycle failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("lifecycle \"%s\" of tracked table \"%s\" has no phases",
							lifecycle, DP_REL_NAME(t, rel)),
					 errhint("Define it with deploy_progress.define_lifecycle().")));
		t->nphases = (int) SPI_processed;
		t->phases = MemoryContextAllocZero(t->cxt, sizeof(DpPhase) * t->nphases);
		for (i = 0; i < t->nphases; i++)
		{
			char	   *name = dp_spi_text(i, "phase");
			char	   *kind = dp_spi_text(i, "kind");
			int			k = dp_kind_from_name(kind);

			t->phases[i].name = MemoryContextStrdup(t->cxt, name);
			t->phases[i].namelen = strlen(name);
			if (k < 0)			/* the table's CHECK constraint forbids it */
				elog(ERROR, "unknown phase kind \"%s\"", kind);
			t->phases[i].kind = (DpKind) k;
			t->phases[i].enumoid = InvalidOid;
			if (t->phase_is_enum)
				t->phases[i].enumoid =
					GetSysCacheOid2(ENUMTYPOIDNAME, Anum_pg_enum_oid,
									ObjectIdGetDatum(phase_type),
									CStringGetDatum(name));
		}
	}

	/*
	 * The columns the extension owns, and whether an UPDATE's SET list is
	 * the whole story: only when no other BEFORE UPDATE row trigger (which
	 * fires first, by name) can change the row before stamp() sees it.
	 */
	{
		TriggerDesc *trigdesc = rel->trigdesc;
		int			before_update = 0;

		oldcxt = MemoryContextSwitchTo(t->cxt);
		t->owned_cols = NULL;
		for (i = 0; i < DP_NUM_ROLES; i++)
			if (t->att[i] && (dp_roles[i].flags & DP_ROLE_OWNED))
				t->owned_cols = bms_add_member(t->owned_cols,
											   t->att[i] - FirstLowInvalidHeapAttributeNumber);
		MemoryContextSwitchTo(oldcxt);

		for (i = 0; trigdesc && i < trigdesc->numtriggers; i++)
		{
			Trigger    *trig = &trigdesc->triggers[i];

			if (TRIGGER_FOR_ROW(trig->tgtype) && TRIGGER_FOR_BEFORE(trig->tgtype) &&
				TRIGGER_FOR_UPDATE(trig->tgtype) && trig->tgenabled != TRIGGER_DISABLED)
				before_update++;
		}
		t->setlist_exact = (before_update == 1);
	}

	/* who writes the side table */
	t->side_owner = InvalidOid;
	if (t->side)
	{
		ret = SPI_execute("SELECT c.relowner FROM pg_catalog.pg_class c"
						  " WHERE c.oid OPERATOR(pg_catalog.=) '" DP_SCHEMA ".timings'::pg_catalog.regclass",
						  true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not find the owner of " DP_SCHEMA ".timings");
		t->side_owner = (Oid) strtoul(dp_spi_text(0, "relowner"), NULL, 10);
	}

	SPI_finish();
}

/*
 * The tracking entry of a relation, built on first use in this backend and
 * after each invalidation.
 */
DpTrack *
dp_get_track(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	DpTrack    *t;
	bool		found;

	/* a run of writes usually hits one table: skip the hash lookup */
	if (dp_last_track && dp_last_track->relid == relid && dp_last_track->valid &&
		likely(!dp_last_track->citus_copy))
	{
		Assert(dp_last_track->nphases > 0 && dp_last_track->att_phase > 0);
		return dp_last_track;
	}

	if (dp_tracks == NULL)
		dp_cache_init();
	t = hash_search(dp_tracks, &relid, HASH_ENTER, &found);
	if (!found)
	{
		t->valid = false;
		t->cxt = NULL;
		t->scratch_natts = 0;
		t->citus_copy = false;
	}
	/* a shard being filled by Citus: only during that transaction */
	if (t->valid && t->citus_copy && t->copy_lxid != DP_MY_LXID)
		t->valid = false;
	while (!t->valid)
	{
		t->valid = true;
		PG_TRY();
		{
			dp_build_track(t, rel);
		}
		PG_CATCH();
		{
			t->valid = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	Assert(t->valid && t->relid == relid);
	if (t->citus_copy)
		return t;				/* (not dp_last_track: it is checked each time) */
	/* a valid entry has a phase column and a lifecycle (dp_build_track()) */
	Assert(t->nphases > 0 && t->phases != NULL);
	Assert(t->att_phase > 0 && t->att_phase <= RelationGetDescr(rel)->natts);
	Assert(t->nkeys >= 1 && t->nkeys <= INDEX_MAX_KEYS);
	dp_last_track = t;
	return t;
}

/*
 * Position of a phase value in the lifecycle, -1 when it is not a phase.
 * Lifecycles are short, so a linear scan beats hashing.
 */
int
dp_phase_index(DpTrack *t, Datum value)
{
	int			i;

	if (t->phase_is_enum)
	{
		Oid			oid = DatumGetObjectId(value);

		for (i = 0; i < t->nphases; i++)
			if (t->phases[i].enumoid == oid)
				return i;
	}
	else
	{
		text	   *txt = DatumGetTextPP(value);
		const char *p = VARDATA_ANY(txt);
		int			len = VARSIZE_ANY_EXHDR(txt);

		for (i = 0; i < t->nphases; i++)
			if (t->phases[i].namelen == len && memcmp(t->phases[i].name, p, len) == 0)
				return i;
	}
	return -1;
}

/* Text of a phase value, for messages. */
char *
dp_phase_datum_text(DpTrack *t, Datum value)
{
	if (t->phase_is_enum)
	{
		Oid			oid = DatumGetObjectId(value);
		HeapTuple	tup = SearchSysCache1(ENUMOID, ObjectIdGetDatum(oid));
		char	   *label;

		if (!HeapTupleIsValid(tup))
			return psprintf("enum value %u", oid);
		label = pstrdup(NameStr(((Form_pg_enum) GETSTRUCT(tup))->enumlabel));
		ReleaseSysCache(tup);
		return label;
	}
	return TextDatumGetCString(value);
}

/* "a, b, c": the phases of the lifecycle, for messages. */
const char *
dp_phase_list(DpTrack *t)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < t->nphases; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", t->phases[i].name);
	return buf.data;
}

/*
 * deploy_progress._invalidate(regclass): make every backend reload the
 * tracking configuration of a table at its next write.  The triggers of a
 * partitioned table fire on its partitions, whose entries are keyed by the
 * partition, so those are invalidated too.
 */
PG_FUNCTION_INFO_V1(dp_invalidate);
Datum
dp_invalidate(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	ListCell   *lc;

	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		PG_RETURN_VOID();
	foreach(lc, find_all_inheritors(relid, NoLock, NULL))
		CacheInvalidateRelcacheByRelid(lfirst_oid(lc));
	PG_RETURN_VOID();
}
