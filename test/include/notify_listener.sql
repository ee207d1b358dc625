-- Shared by tests that check NOTIFY events (\i test/include/notify_listener.sql):
-- a listener session on the default channel, opened with dblink, and
-- pg_temp.received(), the notifications it got since the last call, in
-- order (a sentinel sent from a third session marks the end: notifications
-- arrive in commit order).
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT format('dbname=%s port=%s host=%s', current_database(), current_setting('port'),
              split_part(current_setting('unix_socket_directories'), ',', 1)) AS connstr \gset
SELECT dblink_connect('listener', :'connstr');
SELECT dblink_connect('sender', :'connstr');
SELECT dblink_exec('listener', 'LISTEN deploy_progress');
CREATE FUNCTION pg_temp.received()
RETURNS TABLE (n integer, channel text, payload text)
LANGUAGE plpgsql AS $$
DECLARE
    chans text[] := '{}';
    got   text[] := '{}';
    r     record;
    tries integer := 0;
BEGIN
    PERFORM dblink_exec('sender', $q$NOTIFY deploy_progress, 'sentinel'$q$);
    LOOP
        PERFORM dblink_exec('listener', 'DO $d$BEGIN END$d$');
        FOR r IN SELECT * FROM dblink_get_notify('listener') LOOP
            IF r.extra = 'sentinel' THEN
                RETURN QUERY SELECT u.n::integer, u.c, u.p FROM unnest(chans, got) WITH ORDINALITY AS u(c, p, n);
                RETURN;
            END IF;
            chans := chans || r.notify_name;
            got := got || r.extra;
        END LOOP;
        tries := tries + 1;
        IF tries > 1000 THEN
            RAISE EXCEPTION 'the sentinel notification did not arrive';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
