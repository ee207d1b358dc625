-- Shared by security.sql (\i test/include/security_scenario.sql, with :tag
-- set): one pass through the main functions, from defining a lifecycle to
-- dropping it, run under different search_paths.  Every result that does
-- not depend on the clock goes to public.sec_out under the pass's tag, so
-- that the passes can be compared.  The statements name tables with their
-- schema and compare integers only, so that they work with an empty
-- search_path and call no look-alike operator of their own.
SELECT count(*) AS phases FROM deploy_progress.define_lifecycle('sec_lc', '[
    {"phase": "new", "kind": "pending", "deadline": "10 minutes"},
    {"phase": "run", "kind": "active", "weight": 2, "deadline": "1 hour"},
    {"phase": "check", "kind": "active"},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
CREATE TABLE public.sec_jobs (
    id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued',
    completed_items integer, total_items integer,
    phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
    started_at timestamptz, finished_at timestamptz,
    items_per_second double precision, speed_updated_at timestamptz, failure_reason text);
CREATE TABLE public.sec_side (
    id integer, region text, state text NOT NULL, completed_items bigint, total_items bigint,
    PRIMARY KEY (id, region));
INSERT INTO public.sec_side VALUES (1, 'eu', 'new', NULL, NULL);
INSERT INTO public.sec_out
SELECT :'tag', 'track', pg_catalog.concat_ws(' ', t.relid, t.lifecycle, t.storage, t.key_columns, t.phase_column,
                                              t.columns ->> 'heartbeat_at', t.columns ->> 'items_per_second', t.columns ->> 'failure_reason')
  FROM deploy_progress.track('public.sec_jobs', speed_time_constant => '10 seconds') t;
INSERT INTO public.sec_out
SELECT :'tag', 'track', pg_catalog.concat_ws(' ', t.relid, t.lifecycle, t.storage, t.key_columns, t.phase_column)
  FROM deploy_progress.track('public.sec_side', 'sec_lc', phase => 'state') t;
INSERT INTO public.sec_out
SELECT :'tag', 'index', deploy_progress.in_flight_index_statement('public.sec_jobs');

-- writes: stamped in the row and in the side table
INSERT INTO public.sec_jobs (id, phase, completed_items, total_items) VALUES (1, 'building', 0, 100), (2, 'queued', NULL, NULL);
UPDATE public.sec_jobs SET completed_items = 40 WHERE id = 1;
UPDATE public.sec_jobs SET phase = 'succeeded', completed_items = 100 WHERE id = 1;
UPDATE public.sec_side SET state = 'run', completed_items = 5, total_items = 10 WHERE id = 1;
INSERT INTO public.sec_side VALUES (2, 'us', 'run', 1, 10);
UPDATE public.sec_side SET state = 'ko' WHERE id = 2;
INSERT INTO public.sec_out
SELECT :'tag', 'row stamps', pg_catalog.concat_ws(' ', id, phase, completed_items,
       phase_updated_at IS NOT NULL, heartbeat_at IS NOT NULL, started_at IS NOT NULL, finished_at IS NOT NULL)
  FROM public.sec_jobs;
INSERT INTO public.sec_out
SELECT :'tag', 'side stamps', pg_catalog.concat_ws(' ', key, phase_updated_at IS NOT NULL, started_at IS NOT NULL,
                                                   finished_at IS NOT NULL)
  FROM deploy_progress.side_timings WHERE relid OPERATOR(pg_catalog.=) 'public.sec_side'::pg_catalog.regclass;
INSERT INTO public.sec_out
SELECT :'tag', 'timings', pg_catalog.concat_ws(' ', started_at IS NOT NULL, finished_at IS NOT NULL)
  FROM deploy_progress.timings('public.sec_side', '(2,us)');
-- bad writes are refused the same way
DO $$ BEGIN
    UPDATE public.sec_jobs SET phase = 'building' WHERE id = 1;
EXCEPTION WHEN OTHERS THEN
    INSERT INTO public.sec_out VALUES ('current', 'refused', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END $$;
DO $$ BEGIN
    INSERT INTO public.sec_side VALUES (3, 'eu', 'nope', NULL, NULL);
EXCEPTION WHEN OTHERS THEN
    INSERT INTO public.sec_out VALUES ('current', 'refused', pg_catalog.concat(SQLSTATE, ' ', SQLERRM));
END $$;
UPDATE public.sec_out SET tag = :'tag' WHERE tag OPERATOR(pg_catalog.=) 'current';

-- figures as of a fixed time, from rows with fixed timings (the rows
-- stamped by the clock above are all finished by then)
UPDATE public.sec_jobs SET phase = 'cancelled' WHERE id = 2;
SET deploy_progress.stamping = off;
INSERT INTO public.sec_jobs VALUES
    (3, 'transferring', 300, 1000, '2026-01-01 12:00+00', '2026-01-01 12:09:50+00', '2026-01-01 12:09:50+00',
        '2026-01-01 11:50+00', NULL, 8, '2026-01-01 12:09:50+00', NULL),
    (4, 'building', NULL, NULL, '2026-01-01 12:00+00', '2026-01-01 12:00+00', '2026-01-01 12:00+00',
        '2026-01-01 12:00+00', NULL, NULL, NULL, NULL);
RESET deploy_progress.stamping;
INSERT INTO public.sec_out
SELECT :'tag', 'progress', deploy_progress.progress('public.sec_jobs', '3', '2026-01-01 12:10+00');
INSERT INTO public.sec_out
SELECT :'tag', 'describe', deploy_progress.describe('public.sec_jobs', '3', '2026-01-01 12:10+00');
INSERT INTO public.sec_out
SELECT :'tag', 'overall', deploy_progress.overall_progress('sec_lc', 'check', 1, 2);
INSERT INTO public.sec_out
SELECT :'tag', 'stuck', pg_catalog.concat_ws(' ', s.relid, s.key, s.phase, s.reason, s.clock_started_at, s.deadline, s.overdue_by)
  FROM deploy_progress.stuck('public.sec_jobs', '2026-01-01 12:10+00') s;
INSERT INTO public.sec_out
SELECT :'tag', 'in_flight', pg_catalog.concat_ws(' ', f.key, f.phase, f.kind, f.completed, f.total, f.percent,
                                                 f.average_speed, f.smoothed_speed, f.eta, f.in_phase, f.elapsed,
                                                 f.overall_progress, f.stuck_reason)
  FROM deploy_progress.in_flight('public.sec_jobs', '2026-01-01 12:10+00') f;
INSERT INTO public.sec_out
SELECT :'tag', 'fail_stuck', pg_catalog.concat_ws(' ', f.relid, f.key, f.from_phase, f.to_phase, f.reason)
  FROM deploy_progress.fail_stuck('public.sec_jobs', as_of => '2026-01-01 12:10+00') f;
INSERT INTO public.sec_out
SELECT :'tag', 'failed row', pg_catalog.concat_ws(' ', id, phase, failure_reason, finished_at IS NOT NULL)
  FROM public.sec_jobs WHERE id OPERATOR(pg_catalog.=) 4;

-- and away again
INSERT INTO public.sec_out SELECT :'tag', 'untrack', deploy_progress.untrack('public.sec_side');
INSERT INTO public.sec_out
SELECT :'tag', 'side rows left', pg_catalog.count(*) FROM deploy_progress.side_timings
 WHERE relid OPERATOR(pg_catalog.=) 'public.sec_side'::pg_catalog.regclass;
DROP TABLE public.sec_jobs;
INSERT INTO public.sec_out
SELECT :'tag', 'tracked after drop', pg_catalog.count(*) FROM deploy_progress.tracked
 WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY (SELECT c.oid FROM pg_catalog.pg_class c
                                                          WHERE c.relname OPERATOR(pg_catalog.~~) 'sec\_%');
DROP TABLE public.sec_side;
SELECT deploy_progress.drop_lifecycle('sec_lc');
