--------------------------------------------------------------------------
-- Transition history, events, phase statistics, UI steps and retention
--
-- The C trigger record_transition() (src/history.c) queues one row per
-- phase transition (INSERT included) and writes a statement's rows into
-- deploy_progress.history together, through the table access method
-- (table_multi_insert), in the transaction of the change; it also sends
-- the transition's NOTIFY event.  track() installs
-- it AFTER INSERT and AFTER UPDATE WHEN the phase changed, so heartbeats
-- and counter updates never reach it.  The history is kept when a table is
-- untracked or dropped (it is audit data); prune() removes it by age.
--------------------------------------------------------------------------

CREATE TABLE @extschema@.history (
    id                  bigint GENERATED ALWAYS AS IDENTITY (CACHE 100),
    relid               regclass,
    key                 text COLLATE "C" NOT NULL,
    from_phase          text,
    to_phase            text NOT NULL,
    to_kind             text NOT NULL,
    at                  timestamptz NOT NULL,
    time_in_previous    interval,
    completed           bigint,
    total               bigint,
    reason              text,
    dropped_table       text,
    txid                bigint,
    label               text,
    message             text,
    metadata            jsonb
);
COMMENT ON TABLE @extschema@.history IS
    'Transition log of the tracked tables: one row per phase entered (from_phase NULL for an INSERT), written by the record_transition() trigger; read it through the transitions view. The rows of a dropped table keep its name in dropped_table and lose their relid, so that they never attach to a table that later gets the same OID';

-- Every transition pays for each index of this table (its entries and
-- their WAL), so it has two: a B-tree for one row's transitions (timeline(),
-- steps()), on a key in the "C" collation so that its comparisons are
-- plain byte comparisons, and a BRIN index on the time, nearly free to
-- maintain since rows arrive in time order, for prune() and time windows.  "id" comes from a
-- cached sequence (unique, in insertion order within a session, with gaps)
-- and is not indexed.
CREATE INDEX history_relid_key_idx ON @extschema@.history (relid, key);
CREATE INDEX history_at_brin ON @extschema@.history USING brin (at);
-- The event stream (events_since()) reads the history in the order of the
-- writing transactions' ids, which also grow with insertion: BRIN again.
CREATE INDEX history_txid_brin ON @extschema@.history USING brin (txid);
COMMENT ON COLUMN @extschema@.history.txid IS
    'The id of the top-level transaction that recorded the row (pg_current_xact_id()), the order of the event stream; NULL for rows recorded before 1.1';
COMMENT ON COLUMN @extschema@.history.label IS
    'The row''s label (its label role column) as the transition wrote it, kept after the row is gone; NULL when the table has no label column';
COMMENT ON COLUMN @extschema@.history.message IS
    'The row''s message (its message role column) as the transition wrote it; NULL when the table has no message column';
COMMENT ON COLUMN @extschema@.history.metadata IS
    'The row''s metadata (its metadata role column) as the transition wrote it; never carried by events';

-- Counts of pruned history, so that the metrics' counters and duration
-- sums never go down when prune() removes rows.
CREATE TABLE @extschema@.history_pruned (
    relid               regclass NOT NULL,
    phase               text NOT NULL,
    transitions         bigint NOT NULL DEFAULT 0,
    failures            bigint NOT NULL DEFAULT 0,
    stays               bigint NOT NULL DEFAULT 0,
    stay_seconds        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (relid, phase)
);
COMMENT ON TABLE @extschema@.history_pruned IS
    'Totals of the history rows prune() removed, per table and phase: transitions into the phase, failures in it, and completed stays in it with their summed duration; the metrics add them to what history holds';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.history', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.history_pruned', '');

-- The history is written by the trigger as the table's owner and read by
-- everyone through views that show the rows of the tables they can read.
CREATE OR REPLACE VIEW @extschema@.transitions
WITH (security_barrier)
AS
SELECT h.id, h.relid, h.key, h.from_phase, h.to_phase, h.to_kind, h.at,
       h.time_in_previous, h.completed, h.total, h.reason, h.txid,
       h.label, h.message, h.metadata
  FROM @extschema@.history h
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) h.relid
 WHERE pg_catalog.has_table_privilege(c.oid, 'SELECT')
   AND (NOT pg_catalog.row_security_active(c.oid) OR @extschema@._row_visible(h.relid, h.key));
COMMENT ON VIEW @extschema@.transitions IS
    'The transition history of the tables the current role can read (of a table under row-level security, of the rows it can see): one row per phase entered, with the time spent in the previous phase, the counters, the reason, and the row''s label, message and metadata as the transition wrote them';
GRANT SELECT ON @extschema@.transitions TO PUBLIC;

--------------------------------------------------------------------------
-- The durable event stream
--
-- NOTIFY is a wake-up signal: a listener that is not connected misses it.
-- events_since() gives the history as a stream a consumer can resume:
-- every event once, in the same order on every call, behind a cursor.
-- History ids come from a cached sequence and transactions commit in any
-- order, so neither id nor time can be a cursor: a transaction that got
-- its id earlier may commit later, and a consumer that had moved past its
-- ids would skip its rows.  Each row records its top-level transaction
-- (history.txid), and the stream holds a row back until every transaction
-- with a lower id has ended (txid below the xmin of the reader's
-- snapshot): from then on no row can appear before it, so the order
-- (txid, id) is final, and a cursor "txid:id" is a point of it that never
-- moves.  The price is latency: a long-running transaction that holds a
-- transaction id, anywhere in the cluster, delays every later event (it
-- never loses one) until it ends.
--------------------------------------------------------------------------

-- The two numbers of a cursor, or an error.
CREATE OR REPLACE FUNCTION @extschema@._event_cursor(cursor text)
RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m text[];
BEGIN
    m := pg_catalog.regexp_match(cursor, '^([0-9]{1,19}):([0-9]{1,19})$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'invalid event cursor "%"', cursor
              USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = 'A cursor is the text "transaction:id" that events_since() returns in its "cursor" column.',
                    HINT = 'Pass the cursor of the last event you processed, or NULL to start from the oldest event; events_cursor() gives one that starts now.';
    END IF;
    BEGIN
        RETURN ARRAY[m[1]::bigint, m[2]::bigint];
    EXCEPTION WHEN numeric_value_out_of_range THEN
        RAISE EXCEPTION 'event cursor "%" is out of range', cursor
              USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = 'Both numbers of a cursor fit in a bigint.',
                    HINT = 'Pass a cursor that events_since() or events_cursor() returned.';
    END;
END
$$;
COMMENT ON FUNCTION @extschema@._event_cursor(text) IS
    'Internal: the transaction and the id of an event cursor, checked';

CREATE OR REPLACE FUNCTION @extschema@.events_since(after text DEFAULT NULL, max_events integer DEFAULT 1000,
                                                    tbl regclass DEFAULT NULL)
RETURNS TABLE (cursor text, id bigint, relid regclass, key text, from_phase text, to_phase text,
               to_kind text, at timestamptz, completed bigint, total bigint, percent double precision,
               reason text, label text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos bigint[] := ARRAY[-1, -1];
    horizon bigint;
BEGIN
    IF max_events IS NULL OR max_events OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'max_events must be at least 1'
              USING ERRCODE = 'invalid_parameter_value',
                    DETAIL = pg_catalog.format('max_events is %s.', coalesce(max_events::text, 'NULL')),
                    HINT = 'Pass how many events to return at most, such as 1000; call again with the last cursor for more.';
    END IF;
    IF after IS NOT NULL THEN
        pos := @extschema@._event_cursor(after);
    END IF;
    IF tbl IS NOT NULL THEN
        PERFORM @extschema@._readable_config(tbl);
    END IF;
    -- every transaction below the horizon has ended: its rows are visible
    -- to this statement's snapshot, or gone for good
    horizon := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint;
    RETURN QUERY
        SELECT h.txid::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) h.id::text,
               h.id, h.relid, h.key, h.from_phase, h.to_phase, h.to_kind, h.at, h.completed, h.total,
               @extschema@.percent(h.completed, h.total), h.reason, h.label, h.message
          FROM @extschema@.transitions h
         WHERE h.txid OPERATOR(pg_catalog.>=) pos[1] AND h.txid OPERATOR(pg_catalog.<) horizon
           AND (h.txid OPERATOR(pg_catalog.>) pos[1] OR h.id OPERATOR(pg_catalog.>) pos[2])
           AND (tbl IS NULL OR h.relid OPERATOR(pg_catalog.=) tbl)
         ORDER BY h.txid, h.id
         LIMIT max_events;
END
$$;
COMMENT ON FUNCTION @extschema@.events_since(text, integer, regclass) IS
    'The durable event stream: the transitions after a cursor (NULL: from the oldest), of every table the caller can read or of one, in an order that never changes, each with the cursor to resume after it and the row''s label and message (never its metadata); an event appears once every transaction older than it has ended';

CREATE OR REPLACE FUNCTION @extschema@.events_cursor()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint OPERATOR(pg_catalog.-) 1)::text
           OPERATOR(pg_catalog.||) ':9223372036854775807'
$$;
COMMENT ON FUNCTION @extschema@.events_cursor() IS
    'A cursor for events_since() that skips every event already in the stream: a consumer that starts with it receives the events that appear from now on';

--------------------------------------------------------------------------
-- The trigger
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION @extschema@.record_transition()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'dp_record_transition';
COMMENT ON FUNCTION @extschema@.record_transition() IS
    'AFTER ROW trigger created by track(): records phase transitions in deploy_progress.history and sends them as NOTIFY events';

CREATE OR REPLACE FUNCTION @extschema@._history_flushes()
RETURNS bigint
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'dp_history_flushes';
COMMENT ON FUNCTION @extschema@._history_flushes() IS
    'Internal: how many history INSERT statements this session has run (one per statement that made transitions)';

-- Installs the history trigger of a table as its configuration says;
-- called by track() after _drop_triggers().  No trigger at all when both
-- the history and the events are off.
CREATE OR REPLACE FUNCTION @extschema@._install_history(cfg @extschema@.tracked)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cfg.history = 'off' AND cfg.notify_channel IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER zz_deploy_progress_history_ins AFTER INSERT ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION @extschema@.record_transition()', cfg.relid);
    EXECUTE format('CREATE TRIGGER zz_deploy_progress_history_upd AFTER UPDATE ON %s '
                   'FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I) '
                   'EXECUTE FUNCTION @extschema@.record_transition()',
                   cfg.relid, cfg.phase_column, cfg.phase_column);
END
$$;
COMMENT ON FUNCTION @extschema@._install_history(@extschema@.tracked) IS
    'Internal: creates the history and event triggers of a tracked table (AFTER INSERT, and AFTER UPDATE when the phase changes)';

-- The configuration of a tracked table the caller may read, or an error.
CREATE OR REPLACE FUNCTION @extschema@._readable_config(tbl regclass)
RETURNS @extschema@.tracked
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    cfg := @extschema@._config(tbl);
    PERFORM @extschema@._check_readable(tbl);
    RETURN cfg;
END
$$;
COMMENT ON FUNCTION @extschema@._readable_config(regclass) IS
    'Internal: the tracking configuration of a table, checking that it is tracked and that the caller can read it';

--------------------------------------------------------------------------
-- Statistics, timeline and steps
--------------------------------------------------------------------------

-- The transitions of one table (of one row of it when k is not NULL) that
-- the caller can read, as the transitions view gives them.  A Citus
-- distributed table's history is on the workers, where its shards' triggers
-- write it under the table's name (on this node: what was written before
-- the table was distributed, and that of shards placed here): it is also
-- read there, through each worker's
-- transitions view (so with the caller's rights and row-level security on
-- that worker), one query per worker, and given under this node's relid.
-- History ids are unique per node only; the readers order by time first.
-- A worker that cannot be read is an error, or for a global reader (named
-- by "reader") a warning, and its history is left out.
CREATE OR REPLACE FUNCTION @extschema@._transitions(tbl regclass, k text DEFAULT NULL, reader text DEFAULT NULL)
RETURNS SETOF @extschema@.transitions
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w record;
BEGIN
    RETURN QUERY SELECT * FROM @extschema@.transitions x
                  WHERE x.relid OPERATOR(pg_catalog.=) tbl AND (k IS NULL OR x.key OPERATOR(pg_catalog.=) k);
    IF @extschema@._citus_kind(tbl) IS DISTINCT FROM 'distributed' THEN
        RETURN;
    END IF;
    FOR w IN EXECUTE 'SELECT r.nodename, r.nodeport, r.success, r.result FROM pg_catalog.run_command_on_workers($1) r'
        USING format('SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x) OPERATOR(pg_catalog.-) ''relid''), ''[]'')'
                     '  FROM deploy_progress.transitions x'
                     ' WHERE x.relid OPERATOR(pg_catalog.=) %L::pg_catalog.regclass%s',
                     tbl::text,
                     CASE WHEN k IS NULL THEN ''
                          ELSE format(' AND x.key OPERATOR(pg_catalog.=) %L COLLATE "C"', k) END)
    LOOP
        IF NOT w.success AND reader IS NOT NULL THEN
            -- a global reader goes on without that worker's history
            PERFORM @extschema@._skipped(tbl, reader, '08006',
                                         format('the history on worker %s:%s cannot be read: %s', w.nodename, w.nodeport, w.result));
            CONTINUE;
        END IF;
        IF NOT w.success THEN
            RAISE EXCEPTION 'cannot read the history of table % on worker %:%', tbl, w.nodename, w.nodeport
                USING ERRCODE = 'connection_failure',
                      DETAIL = format('The worker answered: %s', w.result),
                      HINT = 'The history of a distributed table is kept on the workers that hold its shards; check that this one is up.';
        END IF;
        RETURN QUERY
            SELECT x.id, tbl, x.key, x.from_phase, x.to_phase, x.to_kind, x.at, x.time_in_previous,
                   x.completed, x.total, x.reason, x.txid, x.label, x.message, x.metadata
              FROM pg_catalog.jsonb_populate_recordset(NULL::@extschema@.transitions, w.result::pg_catalog.jsonb) x;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@._transitions(regclass, text, text) IS
    'Internal: the readable transitions of one table (or of one of its rows), those of a Citus distributed table read from the workers';

-- The suggested deadline of a phase from its completed stays: 1.5 times
-- their 95th percentile, rounded up to a whole minute (at least one), once
-- there are at least 20 of them; NULL below that, and for phases that take
-- no deadline (waiting and terminal ones).
CREATE OR REPLACE FUNCTION @extschema@._suggested_deadline(kind text, stays bigint, p95_seconds double precision)
RETURNS interval
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN kind OPERATOR(pg_catalog.=) ANY (@extschema@._kinds('clocked'))
                 AND stays OPERATOR(pg_catalog.>=) 20 AND p95_seconds IS NOT NULL
                THEN pg_catalog.make_interval(mins => GREATEST(1,
                         pg_catalog.ceil(p95_seconds OPERATOR(pg_catalog.*) 1.5 OPERATOR(pg_catalog./) 60)::integer))
           END
$$;
COMMENT ON FUNCTION @extschema@._suggested_deadline(text, bigint, double precision) IS
    'Internal: the deadline phase_stats() suggests: ceil(1.5 x p95) in whole minutes (at least 1) from at least 20 completed stays, for pending and active phases';

CREATE OR REPLACE FUNCTION @extschema@.phase_stats(tbl regclass, since timestamptz DEFAULT NULL)
RETURNS TABLE (phase text, kind text, count bigint, mean interval, p50 interval, p95 interval,
               max interval, failures bigint, suggested_deadline interval)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    cfg := @extschema@._readable_config(tbl);
    -- a stay in a phase ends with the transition out of it; a completed
    -- stay ends in a phase that is not failed or cancelled
    RETURN QUERY
    WITH stays AS (
        SELECT h.from_phase,
               h.to_kind <> ALL (@extschema@._kinds('unsuccessful')) AND h.time_in_previous IS NOT NULL AS completed,
               h.to_kind = 'failed' AS failure,
               extract(epoch FROM h.time_in_previous)::double precision AS secs
          FROM @extschema@._transitions(tbl) h
         WHERE h.from_phase IS NOT NULL
           AND (since IS NULL OR h.at >= since)
    ), agg AS (
        SELECT s.from_phase,
               count(*) FILTER (WHERE s.completed) AS n,
               avg(s.secs) FILTER (WHERE s.completed) AS mean,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY s.secs) FILTER (WHERE s.completed) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY s.secs) FILTER (WHERE s.completed) AS p95,
               max(s.secs) FILTER (WHERE s.completed) AS max,
               count(*) FILTER (WHERE s.failure) AS failures
          FROM stays s
         GROUP BY s.from_phase
    )
    SELECT p.phase, p.kind, coalesce(a.n, 0),
           justify_hours(a.mean * interval '1 second'),
           justify_hours(a.p50 * interval '1 second'),
           justify_hours(a.p95 * interval '1 second'),
           justify_hours(a.max * interval '1 second'),
           coalesce(a.failures, 0),
           @extschema@._suggested_deadline(p.kind, a.n, a.p95)
      FROM @extschema@.lifecycle_phases p
      LEFT JOIN agg a ON a.from_phase = p.phase
     WHERE p.lifecycle = cfg.lifecycle
     ORDER BY p.position;
END
$$;
COMMENT ON FUNCTION @extschema@.phase_stats(regclass, timestamptz) IS
    'Per phase of a tracked table''s lifecycle, from its history (stays that ended at or after "since"): completed stays with their mean, median, 95th percentile and longest duration, failures in the phase, and a suggested deadline';

CREATE OR REPLACE FUNCTION @extschema@.timeline(tbl regclass, key text, as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (phase text, kind text, started_at timestamptz, ended_at timestamptz,
               duration interval, reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text := @extschema@._key_text(tbl, key);
BEGIN
    PERFORM @extschema@._check_readable(tbl);
    PERFORM @extschema@._check_as_of(as_of);
    RETURN QUERY
    SELECT h.to_phase, h.to_kind, h.at, h.next_at,
           CASE WHEN h.next_at IS NOT NULL THEN h.next_at - h.at
                WHEN h.to_kind <> ALL (@extschema@._kinds('terminal')) THEN as_of - h.at
           END,
           h.reason
      FROM (SELECT x.*, lead(x.at) OVER (ORDER BY x.at, x.id) AS next_at
              FROM @extschema@._transitions(tbl, k) x) h
     ORDER BY h.at, h.id;
END
$$;
COMMENT ON FUNCTION @extschema@.timeline(regclass, text, timestamptz) IS
    'The phases one row of a table went through, in order, with when each started and ended and how long it lasted (the current phase up to as_of; none for a final terminal phase)';

CREATE OR REPLACE FUNCTION @extschema@.steps(tbl regclass, key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg      @extschema@.tracked;
    k        text := @extschema@._key_text(tbl, key);
    cur      text;
    cur_kind text;
    cur_pos  integer;
    cur_step text;
    here     text;      -- the step the row is at (or was at when it ended)
    here_pos integer;
    v_phase  text[];    -- the visits of the current attempt, in order
    v_kind   text[];
    v_start  timestamptz[];
    v_end    timestamptz[];
    result   jsonb;
BEGIN
    cfg := @extschema@._readable_config(tbl);
    EXECUTE format('SELECT %s FROM %s t WHERE %s OPERATOR(pg_catalog.=) $1 LIMIT 1',
                   @extschema@._phase_expr(cfg, 't'), tbl, @extschema@._key_expr(cfg, 't'))
       INTO cur USING k;
    IF cur IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT p.kind, p.position, p.step INTO cur_kind, cur_pos, cur_step
      FROM @extschema@.lifecycle_phases p
     WHERE p.lifecycle = cfg.lifecycle AND p.phase = cur;

    -- the current attempt: the transitions since the row was inserted or
    -- last left a terminal phase (a restart)
    SELECT array_agg(a.to_phase ORDER BY a.ord), array_agg(a.to_kind ORDER BY a.ord),
           array_agg(a.at ORDER BY a.ord), array_agg(a.next_at ORDER BY a.ord)
      INTO v_phase, v_kind, v_start, v_end
      FROM (SELECT h.*, max(h.ord) FILTER (WHERE h.starts) OVER () AS attempt
              FROM (SELECT x.to_phase, x.to_kind, x.at,
                           lead(x.at) OVER w AS next_at,
                           row_number() OVER w AS ord,
                           x.from_phase IS NULL
                               OR lag(x.to_kind) OVER w = ANY (@extschema@._kinds('terminal')) AS starts
                      FROM @extschema@._transitions(tbl, k) x
                    WINDOW w AS (ORDER BY x.at, x.id)) h) a
     WHERE a.ord >= coalesce(a.attempt, 1);

    -- where the row is: its phase when that is a step's (a pending, active
    -- or succeeded phase, or one with a step label), or for a waiting,
    -- failed or cancelled row the last such phase it was in
    IF cur_kind IN ('pending', 'active', 'succeeded') OR cur_step IS NOT NULL THEN
        here := cur;
    ELSE
        SELECT u.phase INTO here
          FROM unnest(v_phase, v_kind) WITH ORDINALITY AS u(phase, kind, ord)
          JOIN @extschema@.lifecycle_phases p ON p.lifecycle = cfg.lifecycle AND p.phase = u.phase
         WHERE u.kind IN ('pending', 'active') OR (u.kind = 'waiting' AND p.step IS NOT NULL)
         ORDER BY u.ord DESC LIMIT 1;
    END IF;
    SELECT p.position INTO here_pos FROM @extschema@.lifecycle_phases p
     WHERE p.lifecycle = cfg.lifecycle AND p.phase = here;

    -- the status of each phase that belongs to a step, then one entry per
    -- step: consecutive phases with one label (define_lifecycle() keeps
    -- them together), or a phase without a label on its own
    SELECT jsonb_agg(jsonb_build_object(
               'step', st.step, 'phases', st.phases, 'phase', st.phase, 'kind', st.kind,
               'status', st.status, 'started_at', st.started_at, 'ended_at', st.ended_at) ORDER BY st.position)
      INTO result
      FROM (SELECT coalesce(s.step, s.phase) AS step,
                   jsonb_agg(s.phase ORDER BY s.position) AS phases,
                   -- the phase the row is in, else the one it was in last, else the first
                   (array_agg(s.phase ORDER BY s.phase = here DESC, s.started_at DESC NULLS LAST, s.position))[1] AS phase,
                   (array_agg(s.kind ORDER BY s.phase = here DESC, s.started_at DESC NULLS LAST, s.position))[1] AS kind,
                   CASE WHEN bool_or(s.status = 'failed') THEN 'failed'
                        WHEN bool_or(s.status = 'active')
                             OR (bool_or(s.status = 'completed') AND bool_or(s.status = 'pending')) THEN 'active'
                        WHEN bool_or(s.status = 'completed') THEN 'completed'
                        WHEN bool_or(s.status = 'pending') THEN 'pending'
                        ELSE 'skipped'
                   END AS status,
                   min(s.started_at) AS started_at,
                   -- a failed step ended when the row failed
                   CASE WHEN bool_or(s.status IN ('active', 'pending')) THEN NULL
                        WHEN bool_or(s.status = 'failed') THEN max(coalesce(s.ended_at, s.started_at))
                        ELSE max(s.ended_at) END AS ended_at,
                   coalesce(min(s.position) FILTER (WHERE s.kind NOT IN ('failed', 'cancelled')), min(s.position)) AS position
              FROM (SELECT p.phase, p.kind, p.position, p.step, v.started_at, v.ended_at,
                           CASE
                               WHEN p.phase = here THEN
                                   CASE cur_kind WHEN 'succeeded' THEN 'completed'
                                                 WHEN 'failed' THEN 'failed'
                                                 -- a cancelled phase with a step of its own is
                                                 -- reached; the step a row was cancelled in is not
                                                 WHEN 'cancelled' THEN CASE WHEN p.phase = cur AND NOT x.shared
                                                                            THEN 'completed' ELSE 'skipped' END
                                                 ELSE 'active' END
                               -- a failed or cancelled phase that shares another step's
                               -- label counts only when the row ended in it
                               WHEN x.shared THEN NULL
                               WHEN p.kind = 'succeeded' OR here_pos IS NULL OR p.position > here_pos
                                    OR p.kind IN ('failed', 'cancelled') THEN
                                   CASE WHEN cur_kind = ANY (@extschema@._kinds('terminal')) THEN 'skipped'
                                        ELSE 'pending' END
                               -- before the row's step: done, unless history shows it was not visited
                               WHEN v.phase IS NOT NULL OR v_phase IS NULL THEN 'completed'
                               ELSE 'skipped'
                           END AS status
                      FROM @extschema@.lifecycle_phases p
                      LEFT JOIN LATERAL (SELECT u.phase, u.started_at, u.ended_at
                                           FROM unnest(v_phase, v_start, v_end) WITH ORDINALITY AS u(phase, started_at, ended_at, ord)
                                          WHERE u.phase = p.phase ORDER BY u.ord DESC LIMIT 1) v ON true
                      CROSS JOIN LATERAL (SELECT p.kind IN ('failed', 'cancelled')
                                                 AND EXISTS (SELECT FROM @extschema@.lifecycle_phases q
                                                              WHERE q.lifecycle = p.lifecycle AND q.step = p.step
                                                                AND q.kind NOT IN ('failed', 'cancelled')) AS shared) x
                     WHERE p.lifecycle = cfg.lifecycle
                       AND (p.kind IN ('pending', 'active', 'succeeded') OR p.step IS NOT NULL)
                    UNION ALL
                    -- a failed row whose history does not say where it failed
                    SELECT cur, cur_kind, cur_pos, NULL, NULL, NULL, 'failed'
                     WHERE cur_kind = 'failed' AND here IS NULL) s
             GROUP BY s.step IS NULL, coalesce(s.step, s.phase)) st;
    RETURN coalesce(result, '[]'::jsonb);
END
$$;
COMMENT ON FUNCTION @extschema@.steps(regclass, text) IS
    'The steps of one row for a UI: a JSON array of its lifecycle''s steps (consecutive phases with one step label, or a pending, active or succeeded phase without one) with status completed, active, pending, failed (where a failed row failed) or skipped, and when each started and ended';

--------------------------------------------------------------------------
-- Retention
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION @extschema@.prune(older_than interval, keep_failures boolean DEFAULT true,
                                  batch_size integer DEFAULT 10000, max_batches integer DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff   timestamptz;
    removed  bigint := 0;
    n        bigint;
    batches  integer := 0;
BEGIN
    IF older_than IS NULL OR older_than < '0'::interval THEN
        RAISE EXCEPTION 'older_than must be an interval of zero or more'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', coalesce(older_than::text, 'NULL'));
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', coalesce(batch_size::text, 'NULL'));
    END IF;
    IF max_batches < 1 THEN
        RAISE EXCEPTION 'max_batches must be at least 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given is %s.', max_batches),
                  HINT = 'Pass NULL to remove every row older than older_than.';
    END IF;
    IF keep_failures IS NULL THEN
        RAISE EXCEPTION 'keep_failures must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT (has_table_privilege('@extschema@.history', 'SELECT')
            AND has_table_privilege('@extschema@.history', 'DELETE')
            AND has_table_privilege('@extschema@.history_pruned', 'SELECT')
            AND has_table_privilege('@extschema@.history_pruned', 'INSERT')
            AND has_table_privilege('@extschema@.history_pruned', 'UPDATE')) THEN
        RAISE EXCEPTION 'permission denied to prune the transition history'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'prune() runs with its caller''s rights and deletes from @extschema@.history, which belongs to the extension''s owner.',
                  HINT = 'Run it as the owner of the extension (for example from pg_cron), or grant SELECT, DELETE on @extschema@.history and SELECT, INSERT, UPDATE on @extschema@.history_pruned.';
    END IF;
    cutoff := now() - older_than;

    -- each batch is one statement that deletes at most batch_size rows
    -- and adds them to history_pruned
    LOOP
        WITH victims AS (
            SELECT h.ctid FROM @extschema@.history h
             WHERE h.at < cutoff
               AND NOT (keep_failures AND h.to_kind = ANY (@extschema@._kinds('unsuccessful')))
             LIMIT batch_size
        ), gone AS (
            DELETE FROM @extschema@.history h
             WHERE h.ctid = ANY (ARRAY(SELECT v.ctid FROM victims v))
            RETURNING h.relid, h.from_phase, h.to_phase, h.to_kind, h.time_in_previous
        ), counts AS (
            INSERT INTO @extschema@.history_pruned AS p
                   (relid, phase, transitions, failures, stays, stay_seconds)
            SELECT c.relid, c.phase, sum(c.transitions), sum(c.failures), sum(c.stays), sum(c.secs)
              FROM (SELECT g.relid, g.to_phase AS phase, 1 AS transitions, 0 AS failures, 0 AS stays, 0::float8 AS secs
                      FROM gone g WHERE g.relid IS NOT NULL
                    UNION ALL
                    SELECT g.relid, coalesce(g.from_phase, g.to_phase), 0, 1, 0, 0
                      FROM gone g WHERE g.relid IS NOT NULL AND g.to_kind = 'failed'
                    UNION ALL
                    SELECT g.relid, g.from_phase, 0, 0, 1, extract(epoch FROM g.time_in_previous)::float8
                      FROM gone g
                     WHERE g.relid IS NOT NULL AND g.from_phase IS NOT NULL AND g.time_in_previous IS NOT NULL
                       AND g.to_kind <> ALL (@extschema@._kinds('unsuccessful'))) c
             GROUP BY c.relid, c.phase
            ON CONFLICT (relid, phase) DO UPDATE
               SET transitions = p.transitions + EXCLUDED.transitions,
                   failures = p.failures + EXCLUDED.failures,
                   stays = p.stays + EXCLUDED.stays,
                   stay_seconds = p.stay_seconds + EXCLUDED.stay_seconds
        )
        SELECT count(*) INTO n FROM gone;
        removed := removed + n;
        batches := batches + 1;
        EXIT WHEN n < batch_size OR batches >= max_batches;
    END LOOP;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION @extschema@.prune(interval, boolean, integer, integer) IS
    'Removes history rows older than older_than (all tables, batch_size rows per statement, at most max_batches batches), keeping transitions into failed and cancelled phases unless keep_failures is false; returns how many rows it removed';

