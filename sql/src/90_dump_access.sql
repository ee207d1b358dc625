--------------------------------------------------------------------------
-- Dumps by the database owner
--
-- pg_dump copies the rows of every table registered with
-- pg_extension_config_dump() (and reads its sequences), so the role dumping
-- a database must be able to read them all.  Lifecycles and tracking
-- configuration are readable by everyone; the side timings (and whatever
-- else later parts register, such as the history) are not, so the database
-- owner gets SELECT on each of them: a database owner that is not a
-- superuser can then dump its database.  This part comes last so that it
-- sees every registered table.  (pg_database_owner exists from 14 on; on 13
-- grant SELECT on these tables to the dumping role by hand.)
--------------------------------------------------------------------------

DO $$
DECLARE
    rel regclass;
BEGIN
    IF pg_catalog.to_regrole('pg_database_owner') IS NULL THEN
        RETURN;
    END IF;
    FOR rel IN SELECT pg_catalog.unnest(e.extconfig)
                 FROM pg_catalog.pg_extension e
                WHERE e.extname OPERATOR(pg_catalog.=) 'deploy_progress'
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON %s TO pg_database_owner', rel);
    END LOOP;
END
$$;
