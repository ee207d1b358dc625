-- fail_stuck() runs each table's UPDATE as the table's owner, inside a
-- security-restricted operation: the owner's triggers (and defaults,
-- constraints, index expressions) never run with the sweeper's rights.
-- On 1.0 a BEFORE UPDATE trigger of an ordinary role's table ran as the
-- superuser whose cron job swept, and could make its owner a superuser.
\set SHOW_CONTEXT never
CREATE ROLE sw_owner;
CREATE ROLE sw_sweeper;
CREATE ROLE sw_nobody;
CREATE ROLE sw_tenant_a;
GRANT CREATE ON SCHEMA public TO sw_owner;

SET ROLE sw_owner;
CREATE TABLE sw_log (who name, what text);
GRANT INSERT ON sw_log TO PUBLIC;
-- the attacker's trigger: logs whom it runs as, and tries to escalate
CREATE FUNCTION sw_spy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sw_log VALUES (current_user, 'trigger, search_path ' || current_setting('search_path'));
    BEGIN
        EXECUTE 'ALTER ROLE sw_owner SUPERUSER';
        INSERT INTO public.sw_log VALUES (current_user, 'escalated');
    EXCEPTION WHEN insufficient_privilege THEN
        INSERT INTO public.sw_log VALUES (current_user, 'alter role denied');
    END;
    BEGIN
        EXECUTE 'SET ROLE postgres';
        INSERT INTO public.sw_log VALUES (current_user, 'set role worked');
    EXCEPTION WHEN insufficient_privilege THEN
        INSERT INTO public.sw_log VALUES (current_user, 'set role denied');
    END;
    RETURN NEW;
END $$;
CREATE TABLE sw_jobs (id integer PRIMARY KEY, tenant name NOT NULL, phase deploy_progress.phase NOT NULL,
                      phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
                      failure_reason text);
CREATE TRIGGER sw_spy BEFORE UPDATE ON sw_jobs FOR EACH ROW EXECUTE FUNCTION sw_spy();
SELECT storage FROM deploy_progress.track('sw_jobs', heartbeat_deadline => '1 minute');
-- six rows whose worker stopped a day ago (the trigger fires on UPDATE only)
CREATE FUNCTION sw_reset() RETURNS void LANGUAGE sql
SET deploy_progress.stamping = off
AS $$
    DELETE FROM sw_jobs;
    INSERT INTO sw_jobs
    SELECT i, CASE WHEN i <= 2 THEN 'sw_tenant_a' ELSE 'sw_tenant_b' END, 'building',
           now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
      FROM generate_series(1, 6) i;
    DELETE FROM sw_log;
$$;
SELECT sw_reset();
GRANT SELECT, UPDATE ON sw_jobs TO sw_sweeper, sw_tenant_a;
GRANT SELECT ON sw_jobs TO sw_nobody;
RESET ROLE;

-- a superuser's sweep: the trigger runs as the table's owner, cannot
-- escalate, and the rows are failed
SELECT key, from_phase, to_phase, reason FROM deploy_progress.fail_stuck('sw_jobs', as_of => now()) WHERE key IN ('5', '6') ORDER BY key;
SELECT who, what, count(*) FROM sw_log GROUP BY who, what ORDER BY who, what;
SELECT rolsuper FROM pg_roles WHERE rolname = 'sw_owner';
DELETE FROM sw_log;

-- the owner's settings made in the trigger do not leak into the sweeper's
-- session, and the search_path the owner's code saw was a safe one
SHOW search_path;

-- an ordinary sweeper with SELECT and UPDATE: the same, as the owner
SET ROLE sw_owner;
SELECT sw_reset();
RESET ROLE;
SET ROLE sw_sweeper;
SELECT count(*) AS failed FROM deploy_progress.fail_stuck('sw_jobs', as_of => now());
RESET ROLE;
SELECT who, what, count(*) FROM sw_log GROUP BY who, what ORDER BY who, what;
DELETE FROM sw_log;

-- a role without UPDATE cannot sweep, neither through fail_stuck() nor by
-- calling the internal function directly, and nothing changes
SET ROLE sw_owner;
SELECT sw_reset();
RESET ROLE;
SET ROLE sw_nobody;
SELECT count(*) FROM deploy_progress.fail_stuck('sw_jobs');
SELECT deploy_progress._fail_batch_as_owner('sw_jobs', 'no_heartbeat', 10, now(), '{}', '{}');
-- a global sweep passes over the table (it cannot update it)
SELECT count(*) FROM deploy_progress.fail_stuck() WHERE relid = 'sw_jobs'::regclass;
RESET ROLE;
SELECT phase, count(*) FROM sw_jobs GROUP BY phase;
SELECT count(*) AS trigger_calls FROM sw_log;

-- where row-level security applies to the sweeper, its own policies decide
-- which rows it may fail, and the batch runs as the sweeper, like any
-- UPDATE it makes: tenant a fails its two rows only
SET ROLE sw_owner;
SELECT sw_reset();
ALTER TABLE sw_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY sw_tenant ON sw_jobs USING (tenant = current_user);
RESET ROLE;
SET ROLE sw_tenant_a;
SELECT key, to_phase FROM deploy_progress.fail_stuck('sw_jobs', as_of => now()) ORDER BY key;
RESET ROLE;
SELECT who, what, count(*) FROM sw_log GROUP BY who, what ORDER BY who, what;
SELECT tenant, phase, count(*) FROM sw_jobs GROUP BY tenant, phase ORDER BY tenant, phase;
-- the superuser bypasses row security: it fails the rest, as the owner
DELETE FROM sw_log;
SELECT count(*) AS failed FROM deploy_progress.fail_stuck('sw_jobs', as_of => now());
SELECT who, what, count(*) FROM sw_log GROUP BY who, what ORDER BY who, what;

DROP FUNCTION sw_reset();
DROP TABLE sw_jobs, sw_log;
DROP FUNCTION sw_spy();
REVOKE CREATE ON SCHEMA public FROM sw_owner;
DROP ROLE sw_owner, sw_sweeper, sw_nobody, sw_tenant_a;
