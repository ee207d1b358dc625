-- The durable event stream: events_since() gives every transition once,
-- in an order that never changes, behind a cursor a consumer resumes from.
-- (test/specs/events_commit_order.spec shows it with transactions that
-- commit out of order.)
SET TimeZone = 'UTC';
\set SHOW_CONTEXT never

CREATE TABLE ev_jobs (
    id              integer PRIMARY KEY,
    phase           deploy_progress.phase NOT NULL DEFAULT 'queued',
    completed_items integer,
    total_items     integer,
    failure_reason  text
);
SELECT relid FROM deploy_progress.track('ev_jobs', notify_channel => NULL, allow_restart => true);

-- An event appears once every transaction older than it has ended, and a
-- transaction of another session (autovacuum's ANALYZE, say) may hold the
-- horizon for a moment: wait, boundedly, until n events after a cursor are
-- in the stream.
CREATE FUNCTION pg_temp.settle(after text, n integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 1200 LOOP
        IF (SELECT count(*) FROM deploy_progress.events_since(after, 100000, 'ev_jobs')) >= n THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END
$$;

-- a consumer that starts now skips everything already in the stream
SELECT deploy_progress.events_cursor() AS c0 \gset
SELECT :'c0' ~ '^[0-9]+:9223372036854775807$' AS cursor_shape;

INSERT INTO ev_jobs (id, total_items) VALUES (1, 4), (2, 10);
UPDATE ev_jobs SET phase = 'building', completed_items = 1 WHERE id = 1;
UPDATE ev_jobs SET phase = 'building', completed_items = 5 WHERE id = 2;
UPDATE ev_jobs SET phase = 'failed', failure_reason = 'disk full' WHERE id = 2;
SELECT pg_temp.settle(:'c0', 5);
SELECT key, from_phase, to_phase, to_kind, completed, total, percent, reason,
       cursor ~ '^[0-9]+:[0-9]+$' AS cursor_shape,
       split_part(cursor, ':', 2)::bigint = id AS cursor_has_id
  FROM deploy_progress.events_since(:'c0', 100, 'ev_jobs');
-- the same from the oldest event (NULL), and without the table filter
SELECT count(*) FROM deploy_progress.events_since(NULL, 100000, 'ev_jobs');
SELECT count(*) FROM deploy_progress.events_since(:'c0') WHERE relid = 'ev_jobs'::regclass;

-- the order is that of (transaction, id): the two rows of one INSERT share
-- a transaction; each later statement ran in a later one
SELECT key, to_phase,
       split_part(cursor, ':', 1)::bigint - min(split_part(cursor, ':', 1)::bigint) OVER () > 0 AS later_transaction
  FROM deploy_progress.events_since(:'c0', 100, 'ev_jobs');

-- paging: two at a time, each call resuming after the last cursor, gives
-- every event once, in the same order
CREATE TEMP TABLE pages (page integer, n integer, cursor text, key text, to_phase text);
SELECT set_config('dp.c0', :'c0', false) IS NOT NULL AS set;
DO $$
DECLARE
    cur text := current_setting('dp.c0');
    pno integer := 0;
    got integer;
BEGIN
    LOOP
        pno := pno + 1;
        INSERT INTO pages SELECT pno, row_number() OVER (), e.cursor, e.key, e.to_phase
          FROM deploy_progress.events_since(cur, 2, 'ev_jobs') e;
        GET DIAGNOSTICS got = ROW_COUNT;
        EXIT WHEN got = 0 OR pno > 10;
        SELECT p.cursor INTO cur FROM pages p WHERE p.page = pno ORDER BY p.n DESC LIMIT 1;
    END LOOP;
END
$$;
SELECT page, n, key, to_phase FROM pages ORDER BY page, n;
SELECT (SELECT array_agg(cursor ORDER BY page, n) FROM pages)
     = (SELECT array_agg(cursor) FROM deploy_progress.events_since(:'c0', 100, 'ev_jobs')) AS pages_equal_one_call;

-- the consumer's cursor after the last event: nothing new yet
SELECT cursor AS c1 FROM pages ORDER BY page DESC, n DESC LIMIT 1 \gset
SELECT count(*) AS new_events FROM deploy_progress.events_since(:'c1', 100, 'ev_jobs');

-- a transaction's own events are not in the stream before it ends (its
-- id is not below its own snapshot's horizon); rolled-back ones never are
BEGIN;
UPDATE ev_jobs SET phase = 'starting' WHERE id = 1;
SELECT count(*) AS own_uncommitted FROM deploy_progress.events_since(:'c1', 100, 'ev_jobs');
ROLLBACK;
BEGIN;
UPDATE ev_jobs SET phase = 'starting' WHERE id = 1;
UPDATE ev_jobs SET phase = 'succeeded', completed_items = 4 WHERE id = 1;
COMMIT;
SELECT pg_temp.settle(:'c1', 2);
SELECT key, from_phase, to_phase, percent FROM deploy_progress.events_since(:'c1', 100, 'ev_jobs');
-- a cursor in the middle of a transaction's events resumes inside it
SELECT cursor AS c2 FROM deploy_progress.events_since(:'c1', 1, 'ev_jobs') \gset
SELECT key, to_phase FROM deploy_progress.events_since(:'c2', 100, 'ev_jobs');

-- events_cursor() now skips all of these
SELECT deploy_progress.events_cursor() AS c3 \gset
SELECT count(*) AS after_events_cursor FROM deploy_progress.events_since(:'c3', 100, 'ev_jobs');

-- bad input: clear errors
SELECT * FROM deploy_progress.events_since('yesterday');
SELECT * FROM deploy_progress.events_since('1:2:3');
SELECT * FROM deploy_progress.events_since('-1:5');
SELECT * FROM deploy_progress.events_since('9999999999999999999:1');
SELECT * FROM deploy_progress.events_since(NULL, 0);
SELECT * FROM deploy_progress.events_since(NULL, NULL);
CREATE TABLE ev_untracked (id integer PRIMARY KEY, phase deploy_progress.phase);
SELECT * FROM deploy_progress.events_since(NULL, 10, 'ev_untracked');
-- a role that cannot read the table gets no events of it, and an error
-- when it names the table
CREATE ROLE ev_reader;
SET ROLE ev_reader;
SELECT count(*) AS readable_events FROM deploy_progress.events_since(:'c0') WHERE relid = 'ev_jobs'::regclass;
SELECT * FROM deploy_progress.events_since(NULL, 10, 'ev_jobs');
RESET ROLE;
GRANT SELECT ON ev_jobs TO ev_reader;
SET ROLE ev_reader;
SELECT count(*) AS readable_events FROM deploy_progress.events_since(:'c0', 100, 'ev_jobs');
RESET ROLE;

DROP TABLE ev_jobs, ev_untracked;
DROP ROLE ev_reader;
