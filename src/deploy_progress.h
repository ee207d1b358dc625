/*-------------------------------------------------------------------------
 *
 * deploy_progress.h
 *	  Shared declarations of the deploy_progress extension: settings, the
 *	  per-table tracking cache used by the triggers, the helpers the
 *	  triggers share, side storage and the figure helpers.
 *
 * IDENTIFICATION
 *	  src/deploy_progress.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DEPLOY_PROGRESS_H
#define DEPLOY_PROGRESS_H

#include "access/attnum.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "nodes/bitmapset.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/* Schema the extension lives in (the control file fixes it). */
#define DP_SCHEMA "deploy_progress"

/* Phase kinds, in the order the lifecycle table's CHECK constraint lists them. */
typedef enum DpKind
{
	DP_KIND_PENDING = 0,
	DP_KIND_ACTIVE,
	DP_KIND_WAITING,
	DP_KIND_SUCCEEDED,
	DP_KIND_FAILED,
	DP_KIND_CANCELLED
} DpKind;

#define DP_KIND_IS_TERMINAL(k) ((k) >= DP_KIND_SUCCEEDED)

/* Which clock the triggers stamp with (deploy_progress.clock). */
typedef enum DpClock
{
	DP_CLOCK_STATEMENT,
	DP_CLOCK_TRANSACTION,
	DP_CLOCK_WALL
} DpClock;

/*
 * The roles a column of a tracked table can play besides the phase.  Each
 * is defined once, in the role table of track_cache.c (its name, as track()
 * and deploy_progress.tracked spell it, the column types it accepts and
 * what the extension does with it); DpTrack.att[] and atttype[] are
 * indexed by role.
 */
typedef enum DpRole
{
	DP_ROLE_COMPLETED_ITEMS = 0,
	DP_ROLE_TOTAL_ITEMS,
	DP_ROLE_PHASE_UPDATED_AT,
	DP_ROLE_PROGRESS_UPDATED_AT,
	DP_ROLE_HEARTBEAT_AT,
	DP_ROLE_STARTED_AT,
	DP_ROLE_FINISHED_AT,
	DP_ROLE_ITEMS_PER_SECOND,
	DP_ROLE_SPEED_UPDATED_AT,
	DP_ROLE_FAILURE_REASON,
	DP_ROLE_PERCENT,
	DP_ROLE_MESSAGE,
	DP_ROLE_METADATA,
	DP_ROLE_LABEL,
	DP_NUM_ROLES
} DpRole;

/* What the extension does with a role's column (dp_role_is()). */
#define DP_ROLE_TIMING	0x01	/* a time stamp() writes */
#define DP_ROLE_OWNED	0x02	/* written by the extension, not the application */
#define DP_ROLE_SIDE	0x04	/* kept in deploy_progress.timings under side storage */

/*
 * Shapes of the extension's tables that the C reads, by the version that
 * introduced them (dp_schema_of_version()).
 */
typedef enum DpSchema
{
	DP_SCHEMA_1_0,				/* tracked has one column per role */
	DP_SCHEMA_1_1,				/* tracked.columns: jsonb, role name -> column */
	DP_NUM_SCHEMAS
} DpSchema;

/* What the transition history records (deploy_progress.tracked.history). */
typedef enum DpHistoryMode
{
	DP_HISTORY_ALL,
	DP_HISTORY_FAILURES,		/* transitions into failed or cancelled phases */
	DP_HISTORY_OFF
} DpHistoryMode;

/*
 * What a write that moves a row back does (deploy_progress.tracked.
 * backward_moves): to an earlier pending or active phase than its pending
 * or active one, or out of a terminal phase without allow_restart.
 */
typedef enum DpBackwardMoves
{
	DP_BACKWARD_ALLOW,			/* applied (leaving a terminal phase: refused) */
	DP_BACKWARD_ERROR,			/* refused */
	DP_BACKWARD_IGNORE			/* the row keeps its phase, the rest applies */
} DpBackwardMoves;

/* One phase of a lifecycle, as the trigger needs it. */
typedef struct DpPhase
{
	char	   *name;
	int			namelen;
	Oid			enumoid;		/* label OID when the phase column is an enum */
	DpKind		kind;
} DpPhase;

/*
 * Everything the triggers need to know about one tracked relation, resolved
 * once per backend and kept until a relcache invalidation of the relation
 * (ALTER TABLE, track(), untrack(), a lifecycle redefinition) drops it.
 */
typedef struct DpTrack
{
	Oid			relid;			/* hash key: the relation the trigger fires on */
	Oid			tracked_relid;	/* the tracked table: relid or a partitioned ancestor */
	bool		valid;
	MemoryContext cxt;			/* holds phases and key output functions */

	/* lifecycle */
	int			nphases;
	DpPhase    *phases;
	bool		phase_is_enum;

	/*
	 * Column positions and types by role (InvalidAttrNumber and InvalidOid
	 * when the role is absent), and the timing roles the table has columns
	 * for, in DpRole order.
	 */
	AttrNumber	att_phase;
	AttrNumber	att[DP_NUM_ROLES];
	Oid			atttype[DP_NUM_ROLES];
	int			ntimings;
	DpRole		timings[DP_NUM_ROLES];

	/* options */
	bool		allow_restart;
	DpBackwardMoves backward_moves;
	bool		side;			/* timings kept in deploy_progress.timings */
	double		speed_tau;		/* smoothing time constant, seconds */
	Datum		time_zone;		/* text: the zone of timestamp (without time
								 * zone) timing columns (tracked.time_zone) */

	/* row key, for the side table */
	int			nkeys;
	AttrNumber *key_atts;
	FmgrInfo   *key_out;
	TupleDesc	key_desc;		/* blessed descriptor of a composite key */
	FmgrInfo	key_record_out; /* record_out, for a composite key */
	bool		key_settings;	/* a key type's text depends on settings */
	Oid			side_owner;		/* owner of deploy_progress.timings */

	/*
	 * Whether stamp() is the table's only BEFORE UPDATE row trigger, so that
	 * an UPDATE's SET list tells exactly which columns may have changed; and
	 * the columns the extension owns (timings and speed), as attnums offset
	 * by FirstLowInvalidHeapAttributeNumber like tg_updatedcols.
	 */
	bool		setlist_exact;
	Bitmapset  *owned_cols;

	/* scratch arrays for building the stamped row (natts entries) */
	int			scratch_natts;
	Datum	   *scratch_values;
	bool	   *scratch_isnull;

	/* transition history and events (history.c) */
	DpHistoryMode history;
	char	   *notify_channel; /* NULL: no NOTIFY */

	/*
	 * A shard of a Citus distributed table: configured from its stamp
	 * trigger's argument, tracked_relid is the distributed table (its shell
	 * on this node), and messages name it instead of the shard.
	 */
	bool		citus_shard;
	char	   *display_name;	/* NULL: the relation's own name */

	/*
	 * A shard that Citus' metadata does not know yet: create_distributed_table()
	 * copying the table's rows into it.  Valid for that transaction only
	 * (copy_lxid); the triggers leave such rows as they are.
	 */
	bool		citus_copy;
	LocalTransactionId copy_lxid;
} DpTrack;

/* The name messages give a tracked relation: a shard's distributed table. */
#define DP_REL_NAME(t, rel) \
	((t)->display_name ? (t)->display_name : RelationGetRelationName(rel))

/* What a write does to a row's phase and counters (dp_classify()). */
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
	bool		percent_moved;	/* the percent column's value changed */
	double		percent;
	double		old_percent;
	bool		percent_null;
	bool		old_percent_null;
	bool		phase_ignored;	/* a backward move ignored: the row keeps
								 * its old phase (backward_moves 'ignore') */
} DpChange;

/* When a trigger function may fire (dp_trigger_data()). */
typedef enum DpTriggerTiming
{
	DP_TRIGGER_BEFORE_ROW,
	DP_TRIGGER_AFTER_ROW,
	DP_TRIGGER_AFTER_ROW_OR_TRUNCATE
} DpTriggerTiming;

/* The user and security context dp_spi_connect_as() switched from. */
typedef struct DpSavedUser
{
	Oid			userid;
	int			sec_context;
} DpSavedUser;

/* deploy_progress.c */
extern bool dp_stamping;
extern int	dp_clock;
extern char *dp_transition_reason;
extern int	dp_reader_cache_size;
extern int	dp_notify_bulk_threshold;
extern TimestampTz dp_now(void);
extern const char *dp_schema_name(DpSchema schema);
extern DpSchema dp_schema_of_version(const char *version);
extern DpSchema dp_installed_schema(char **version);

/* track_cache.c */
extern uint32 dp_tables_generation;
extern DpTrack *dp_get_track(Relation rel);
extern int	dp_phase_index(DpTrack *t, Datum value);
extern const char *dp_phase_list(DpTrack *t);
extern char *dp_phase_datum_text(DpTrack *t, Datum value);
extern int	dp_kind_from_name(const char *name);
extern const char *dp_kind_name(DpKind kind);
extern const char *dp_role_name(DpRole role);
extern bool dp_role_is(DpRole role, int flags);
extern TimestampTz dp_timing_from_column(DpTrack *t, DpRole role, Datum value);
extern Datum dp_timing_to_column(DpTrack *t, DpRole role, TimestampTz ts);

/* A counter column's value as int64, whatever its integer type. */
static inline int64
dp_counter(Datum d, Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			return DatumGetInt16(d);
		case INT4OID:
			return DatumGetInt32(d);
		default:
			Assert(typid == INT8OID);
			return DatumGetInt64(d);
	}
}

/*
 * The counter of role "role" (completed or total items) in a slot, as
 * int64; 0 with *isnull set when it is null.
 */
static inline int64
dp_slot_counter(DpTrack *t, TupleTableSlot *slot, DpRole role, bool *isnull)
{
	Datum		d;

	Assert(role == DP_ROLE_COMPLETED_ITEMS || role == DP_ROLE_TOTAL_ITEMS);
	Assert(t->att[role] > 0);
	d = slot_getattr(slot, t->att[role], isnull);
	return *isnull ? 0 : dp_counter(d, t->atttype[role]);
}

/* Whether two text datums hold the same string (byte for byte). */
static inline bool
dp_text_equal(Datum a, Datum b)
{
	text	   *ta = DatumGetTextPP(a);
	text	   *tb = DatumGetTextPP(b);
	Size		la = VARSIZE_ANY_EXHDR(ta);

	return la == VARSIZE_ANY_EXHDR(tb) && memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), la) == 0;
}

/* stamp.c */
extern void dp_classify(DpTrack *t, Relation rel, TupleTableSlot *oldslot,
						TupleTableSlot *newslot, bool phase_kept, bool counters_kept,
						DpChange *ch);

/* side.c */
extern text *dp_row_key(DpTrack *t, Relation rel, TupleTableSlot *slot);
extern bool dp_side_phase_updated_at(DpTrack *t, text *key, TimestampTz *result);
extern void dp_side_flush(int depth);
extern void dp_side_xact_end(void);
extern void dp_side_subxact_end(bool commit);
extern void dp_side_utility_end(Node *stmt);

/* history.c */
extern int	dp_statement_depth;
extern void dp_history_init(void);

/* figures.c */
extern double dp_speed_step(double rate, bool rate_isnull, double delta,
							double seconds, double elapsed, double tau);
extern double dp_speed_decay(double rate, double seconds, double tau);

/* history.c: a row moved to another partition by an UPDATE */
extern void dp_history_note_move(DpTrack *t, Relation rel, TupleTableSlot *newslot,
								 bool phase_changed, int old_idx,
								 TimestampTz old_phase_at, bool old_phase_at_null);

extern bool dp_side_moving(Oid relid, int *old_idx, TimestampTz *old_phase_at,
						   bool *old_phase_at_null);

/* claims.c */
extern void dp_claims_check_lease(DpTrack *t, Relation rel, TupleTableSlot *oldslot);
extern void dp_claims_on_end(DpTrack *t, Relation rel, TupleTableSlot *oldslot,
							 const DpChange *ch);
extern void dp_claims_on_new_run(DpTrack *t, Relation rel, TupleTableSlot *oldslot,
								 TupleTableSlot *newslot, const DpChange *ch);
extern void dp_claims_after_sweep(Oid relid, const char *why, Datum batch);

/* util.c */
extern TriggerData *dp_trigger_data(FunctionCallInfo fcinfo, const char *func,
									DpTriggerTiming timing, bool insert_update_only);
extern Oid	dp_extension_table_owner(const char *relname);
extern void dp_spi_connect(void);
extern void dp_spi_connect_as(Oid owner, DpSavedUser *saved);
extern bool dp_type_text_depends_on_settings(Oid typid);
extern void dp_check_stamping_off(DpTrack *t);
extern int	dp_spi_execute_latest(const char *sql, int nargs, Oid *argtypes, Datum *args, long tcount);
extern void dp_spi_finish_as(const DpSavedUser *saved);

#endif							/* DEPLOY_PROGRESS_H */
