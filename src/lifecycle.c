/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  Per-backend cache of tracked tables: column positions, lifecycle
 *	  phases and options, as the stamping triggers need them.
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
 * IDENTIFICATION
 *	  src/lifecycle.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
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

static HTAB *dp_tracks = NULL;
static MemoryContext dp_cache_cxt = NULL;
static DpTrack *dp_last_track = NULL;	/* entry returned last (entries never move) */

static const char *const dp_kind_names[] = {
	"pending", "active", "waiting", "succeeded", "failed", "cancelled"
};

/* Column names of deploy_progress.tracked, in DpTimingRole order. */
static const char *const dp_timing_columns[DP_NUM_TIMINGS] = {
	"phase_updated_column", "progress_updated_column", "heartbeat_column",
	"started_column", "finished_column", "speed_updated_column"
};

/* The same roles as track() names them, for messages. */
static const char *const dp_timing_roles[DP_NUM_TIMINGS] = {
	"phase_updated_at", "progress_updated_at", "heartbeat_at",
	"started_at", "finished_at", "speed_updated_at"
};

/* Relcache callback: mark the entry of the relation (or all) stale. */
static void
dp_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	DpTrack    *t;

	if (dp_tracks == NULL)
		return;
	if (OidIsValid(relid))
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
	return dp_kind_names[kind];
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
dp_resolve_column(Relation rel, const char *colname, const char *role,
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
						role, colname, RelationGetRelationName(rel)),
				 errhint("Run deploy_progress.track() again to update the table's configuration.")));
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
					role, colname, RelationGetRelationName(rel),
					format_type_be(att->atttypid)),
			 errhint("Change the column back, or run deploy_progress.track() again.")));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/*
 * Read the configuration of "rel" (or of the partitioned table it is a
 * partition of) into t.  Runs SPI; everything kept goes into t->cxt.
 */
static pg_noinline void
dp_build_track(DpTrack *t, Relation rel)
{
	static const Oid int_types[] = {INT2OID, INT4OID, INT8OID};
	static const Oid ts_types[] = {TIMESTAMPTZOID};
	static const Oid f8_types[] = {FLOAT8OID};
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
	int			i;
	int			ret;

	t->scratch_natts = 0;		/* the arrays go with the context's reset */
	if (t->cxt)
		MemoryContextReset(t->cxt);
	else
		t->cxt = AllocSetContextCreate(dp_cache_cxt, "deploy_progress table",
									   ALLOCSET_SMALL_SIZES);

	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));

	args[0] = ObjectIdGetDatum(relid);
	ret = SPI_execute_with_args(
		"SELECT t.relid::pg_catalog.oid AS tracked_relid,"
		"       t.lifecycle, t.phase_column, t.columns->>'completed_items' AS completed_column, t.columns->>'total_items' AS total_column,"
		"       t.columns->>'phase_updated_at' AS phase_updated_column, t.columns->>'progress_updated_at' AS progress_updated_column, t.columns->>'heartbeat_at' AS heartbeat_column,"
		"       t.columns->>'started_at' AS started_column, t.columns->>'finished_at' AS finished_column, t.columns->>'items_per_second' AS speed_column, t.columns->>'speed_updated_at' AS speed_updated_column,"
		"       t.key_columns,"
		"       t.storage, t.allow_restart,"
		"       pg_catalog.date_part('epoch', t.speed_time_constant) AS tau,"
		"       t.columns->>'failure_reason' AS reason_column, t.history, t.notify_channel"
		"  FROM " DP_SCHEMA ".tracked t"
		"  JOIN (SELECT $1::pg_catalog.regclass, 0::pg_catalog.int8"
		"        UNION ALL"
		"        SELECT * FROM pg_catalog.pg_partition_ancestors($1::pg_catalog.regclass) WITH ORDINALITY"
		"       ) AS a(relid, ord) ON t.relid OPERATOR(pg_catalog.=) a.relid"
		" ORDER BY a.ord LIMIT 1",
		1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading tracking configuration failed: %s", SPI_result_code_string(ret));
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
				 errmsg("tracked table \"%s\" has %d key columns", RelationGetRelationName(rel), nkeys),
				 errdetail("A key has between 1 and %d columns.", INDEX_MAX_KEYS),
				 errhint("Run deploy_progress.track() again with a shorter key.")));

	/* columns; types are checked again in case the table changed since */
	t->att_phase = dp_resolve_column(rel, phase_col, "phase", NULL, 0, &phase_type);
	t->phase_is_enum = type_is_enum(phase_type);
	if (!t->phase_is_enum && phase_type != TEXTOID && phase_type != VARCHAROID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("phase column \"%s\" of tracked table \"%s\" has type %s",
						phase_col, RelationGetRelationName(rel), format_type_be(phase_type)),
				 errhint("A phase column must be text, varchar or an enum type.")));
	t->att_completed = dp_resolve_column(rel, dp_spi_text(0, "completed_column"),
										 "completed_items", int_types, 3, &t->completed_type);
	t->att_total = dp_resolve_column(rel, dp_spi_text(0, "total_column"),
									 "total_items", int_types, 3, &t->total_type);
	t->att_speed = dp_resolve_column(rel, dp_spi_text(0, "speed_column"),
									 "items_per_second", f8_types, 1, NULL);
	for (i = 0; i < DP_NUM_TIMINGS; i++)
		t->att_timing[i] = dp_resolve_column(rel, dp_spi_text(0, dp_timing_columns[i]),
											 dp_timing_roles[i], ts_types, 1, NULL);
	if (!t->att_speed || !t->att_completed)
	{
		t->att_speed = InvalidAttrNumber;
		t->att_timing[DP_SPEED_UPDATED_AT] = InvalidAttrNumber;
	}
	t->side = strcmp(dp_spi_text(0, "storage"), "side") == 0;
	t->allow_restart = strcmp(dp_spi_text(0, "allow_restart"), "t") == 0;
	t->speed_tau = strtod(dp_spi_text(0, "tau"), NULL);
	if (!(t->speed_tau > 0))
		t->speed_tau = 15.0;

	/* history and events */
	{
		static const Oid text_types[] = {TEXTOID, VARCHAROID};
		const char *mode = dp_spi_text(0, "history");
		char	   *channel = dp_spi_text(0, "notify_channel");

		t->history = strcmp(mode, "all") == 0 ? DP_HISTORY_ALL :
			strcmp(mode, "failures") == 0 ? DP_HISTORY_FAILURES : DP_HISTORY_OFF;
		t->notify_channel = channel ? MemoryContextStrdup(t->cxt, channel) : NULL;
		t->att_reason = dp_resolve_column(rel, dp_spi_text(0, "reason_column"),
										  "failure_reason", text_types, 2, NULL);
	}

	/* the row key, for the side table */
	oldcxt = MemoryContextSwitchTo(t->cxt);
	{
		int			k;

		t->nkeys = nkeys;
		t->key_atts = palloc(sizeof(AttrNumber) * t->nkeys);
		t->key_out = palloc(sizeof(FmgrInfo) * t->nkeys);
		t->key_desc = NULL;
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
			t->key_atts[k] = dp_resolve_column(rel, NameStr(*DatumGetName(keys[k])), "key", NULL, 0, &typid);
			getTypeOutputInfo(typid, &outfn, &varlena);
			fmgr_info_cxt(outfn, &t->key_out[k], t->cxt);
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

		largs[0] = CStringGetTextDatum(lifecycle);
		ret = SPI_execute_with_args(
			"SELECT p.phase, p.kind FROM " DP_SCHEMA ".lifecycle_phases p"
			" WHERE p.lifecycle OPERATOR(pg_catalog.=) $1 ORDER BY p.position",
			1, ltypes, largs, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading lifecycle failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("lifecycle \"%s\" of tracked table \"%s\" has no phases",
							lifecycle, RelationGetRelationName(rel)),
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
		for (i = 0; i < DP_NUM_TIMINGS; i++)
			if (t->att_timing[i])
				t->owned_cols = bms_add_member(t->owned_cols,
											   t->att_timing[i] - FirstLowInvalidHeapAttributeNumber);
		if (t->att_speed)
			t->owned_cols = bms_add_member(t->owned_cols,
										   t->att_speed - FirstLowInvalidHeapAttributeNumber);
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
	if (dp_last_track && dp_last_track->relid == relid && dp_last_track->valid)
		return dp_last_track;

	if (dp_tracks == NULL)
		dp_cache_init();
	t = hash_search(dp_tracks, &relid, HASH_ENTER, &found);
	if (!found)
	{
		t->valid = false;
		t->cxt = NULL;
		t->scratch_natts = 0;
	}
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
