--------------------------------------------------------------------------
-- Owners and leases
--
-- A worker's session may claim() the row it works on: the session becomes
-- the row's owner, named by its process ID and its start time (so that a
-- later session given the same process ID is not taken for it).  stuck()
-- reports a claimed in-flight row whose owner session has ended as
-- owner_gone at once (no deadline), and fail_stuck() fails it; a write by
-- the owner to a row that someone else moved to a terminal phase is refused
-- (the lease: the worker stops at its next update).  The owner ending the
-- row itself, release() and untrack() end a claim.  The stamp trigger's
-- side of this is in src/claims.c.
--
-- Claims are session state: they are not dumped, and a pooler in
-- transaction mode, which hands one server session to many clients, makes
-- them meaningless (see the README).
--------------------------------------------------------------------------

CREATE TABLE @extschema@.claims (
    relid           regclass NOT NULL,
    key             text NOT NULL,
    pid             integer NOT NULL,
    backend_start   timestamptz NOT NULL,
    claimed_at      timestamptz NOT NULL,
    PRIMARY KEY (relid, key)
);
COMMENT ON TABLE @extschema@.claims IS
    'The owners of claimed rows of tracked tables: the session (process ID and start time) that called claim() on the row, and when; written by claim() and the triggers as the extension''s owner, read through the owners view';

-- Whether the session with a process ID and start time is still connected
-- (src/claims.c: the process array, and pg_stat_activity's start time);
-- NULL on a standby, which cannot see the primary's sessions.
CREATE OR REPLACE FUNCTION @extschema@._owner_alive(pid integer, backend_start timestamptz)
RETURNS boolean
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'dp_owner_alive';
COMMENT ON FUNCTION @extschema@._owner_alive(integer, timestamptz) IS
    'Internal: whether the server session with this process ID and start time (pg_stat_activity.backend_start) still exists (NULL on a standby)';

-- Everyone reads the claims through this view: those of the tables it may
-- read, and of a table whose row-level security applies to the role, those
-- of the rows it can see.
CREATE OR REPLACE VIEW @extschema@.owners
WITH (security_barrier)
AS
SELECT c.relid, c.key, c.pid, c.backend_start, c.claimed_at,
       @extschema@._owner_alive(c.pid, c.backend_start) AS alive
  FROM @extschema@.claims c
 WHERE pg_catalog.has_table_privilege(c.relid, 'SELECT')
   AND (NOT pg_catalog.row_security_active(c.relid) OR @extschema@._row_visible(c.relid, c.key));
COMMENT ON VIEW @extschema@.owners IS
    'The claimed rows of the tracked tables the current role can read (of a table under row-level security, of the rows it can see): the owner session''s process ID and start time, when it claimed the row, and whether it is still connected';
GRANT SELECT ON @extschema@.owners TO PUBLIC;

-- claim()'s check, with the caller's rights: the table is tracked, the
-- caller may update the row (it is locked FOR UPDATE, which applies the
-- table's privileges and UPDATE policies), and the row has not ended.
-- Gives the tracked table (a partition's partitioned table) and the row's
-- key text as the triggers write it.
CREATE OR REPLACE FUNCTION @extschema@._claim_row(tbl regclass, key text, OUT relid regclass, OUT row_key text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
    k   text := key;
    r   record;
BEGIN
    cfg := @extschema@._config(tbl, 'Only the rows of tracked tables can be claimed; track it with deploy_progress.track() first.',
                               ancestors => true);
    IF NOT has_any_column_privilege(tbl, 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied to claim rows of table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'claim() makes the calling session the owner of the row, as the worker that updates it: it needs the UPDATE privilege on the table.',
                  HINT = 'Claim rows as the role that works on them; readers use stuck() and the owners view.';
    END IF;
    BEGIN
        EXECUTE format('SELECT x.key, x.phase, x.kind, x.failure_reason FROM (%s) x',
                       @extschema@._rows_sql(cfg, @extschema@._key_condition(cfg, 't', 2), 'FOR UPDATE OF t',
                                             in_flight => false, source => tbl))
           INTO STRICT r USING pg_catalog.now(), k;
    EXCEPTION
        WHEN no_data_found OR data_exception THEN
            RAISE EXCEPTION 'table % has no row with key %', tbl, quote_literal(k)
                USING ERRCODE = 'no_data_found',
                      DETAIL = 'Only an existing row can be claimed.',
                      HINT = 'Insert the row first, then claim it with its key text, for example ''42'' or, for a composite key, ''(42,eu)''.';
        WHEN too_many_rows THEN
            RAISE EXCEPTION 'table % has more than one row with key %', tbl, quote_literal(k)
                USING ERRCODE = 'cardinality_violation',
                      DETAIL = format('The key columns (%s) do not identify a row.', array_to_string(cfg.key_columns, ', ')),
                      HINT = 'Track the table with key columns that are unique.';
    END;
    IF r.kind = ANY (@extschema@._kinds('terminal')) THEN
        RAISE EXCEPTION 'cannot claim row % of table %: it has ended', quote_literal(r.key), tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('It is in %s phase "%s"%s.', r.kind, r.phase,
                                  CASE WHEN r.failure_reason IS NOT NULL THEN format('; reason: %s', r.failure_reason) ELSE '' END),
                  HINT = 'Claim a row that has not ended; insert a new row for a new attempt.';
    END IF;
    relid := cfg.relid;
    row_key := r.key;
END
$$;
COMMENT ON FUNCTION @extschema@._claim_row(regclass, text) IS
    'Internal: claim()''s check and lock of the row, as the caller; gives the tracked table and the row''s key text';

-- claim()'s write, run as the extension's owner (REVOKEd from PUBLIC):
-- records the session as the row's owner, taking the row over from an
-- owner whose session has ended; a live owner's claim is an error, this
-- session's own claim is kept as it is.
CREATE OR REPLACE FUNCTION @extschema@._claim_write(tbl regclass, key text, pid integer, backend_start timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    held @extschema@.claims;
BEGIN
    INSERT INTO @extschema@.claims AS c (relid, key, pid, backend_start, claimed_at)
    VALUES (tbl, key, pid, backend_start, pg_catalog.now())
    ON CONFLICT ON CONSTRAINT claims_pkey DO UPDATE
       SET pid = excluded.pid, backend_start = excluded.backend_start, claimed_at = excluded.claimed_at
     WHERE NOT @extschema@._owner_alive(c.pid, c.backend_start);
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO held FROM @extschema@.claims c
     WHERE c.relid = _claim_write.tbl AND c.key = _claim_write.key;
    IF held.pid = _claim_write.pid AND held.backend_start = _claim_write.backend_start THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'row % of table % is claimed by another session', quote_literal(key), tbl
        USING ERRCODE = 'object_in_use',
              DETAIL = format('The session with process ID %s (started %s) claimed it at %s and is still connected.',
                              held.pid, held.backend_start, held.claimed_at),
              HINT = 'Claim another row; this one can be claimed again once that session calls release() on it or ends.';
END
$$;
COMMENT ON FUNCTION @extschema@._claim_write(regclass, text, integer, timestamptz) IS
    'Internal: records a claim for claim() (run as the extension''s owner)';
REVOKE ALL ON FUNCTION @extschema@._claim_write(regclass, text, integer, timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.claim(tbl regclass, key text)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'dp_claim';
COMMENT ON FUNCTION @extschema@.claim(regclass, text) IS
    'Makes the calling session the owner of a row of a tracked table (it must be allowed to update the row): stuck() reports the row as owner_gone as soon as the session ends, and the session''s writes to the row fail once someone else ends it';

-- Ends this session's claim on a row; false when it held none.  Runs as
-- the extension's owner, and removes only a claim of the calling session.
CREATE OR REPLACE FUNCTION @extschema@.release(tbl regclass, key text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cfg @extschema@.tracked;
BEGIN
    IF tbl IS NULL OR key IS NULL THEN
        RAISE EXCEPTION 'table and key must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the tracked table and the row''s key text, as to claim().';
    END IF;
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot release rows on a standby'
            USING ERRCODE = 'read_only_sql_transaction',
                  DETAIL = 'Claims are recorded on the primary, and this server is in recovery (read-only).',
                  HINT = 'Connect the worker to the primary.';
    END IF;
    cfg := @extschema@._config(tbl, 'Only the rows of tracked tables can be claimed and released.', ancestors => true);
    DELETE FROM @extschema@.claims c
     WHERE c.relid = cfg.relid
       AND c.key = @extschema@._key_text(cfg.relid, release.key)
       AND c.pid = pg_catalog.pg_backend_pid()
       AND c.backend_start = (SELECT a.backend_start FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a);
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION @extschema@.release(regclass, text) IS
    'Ends the calling session''s claim on a row of a tracked table; false when the session did not claim it';

-- Removes the claims of a table that is not (or no longer) tracked;
-- untrack() runs with the caller's rights, who cannot write the claims, so
-- this runs as their owner, and since it only removes claims of a table
-- that no tracking configuration refers to, anyone may call it.
CREATE OR REPLACE FUNCTION @extschema@._forget_claims(tbl regclass)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM @extschema@.claims c
     WHERE c.relid OPERATOR(pg_catalog.=) tbl
       AND NOT EXISTS (SELECT 1 FROM @extschema@.tracked t WHERE t.relid OPERATOR(pg_catalog.=) tbl)
$$;
COMMENT ON FUNCTION @extschema@._forget_claims(regclass) IS
    'Internal: removes the claims of a table that is not tracked';
