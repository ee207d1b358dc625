-- prune(): removes old history in bounded batches, keeps failures unless
-- told otherwise, counts what it removed, and keeps the totals the metrics
-- need in history_pruned.
-- (errors show their message, detail and hint; not the PL/pgSQL call
-- stack, whose line numbers move with every edit of a function)
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

CREATE TABLE prune_jobs (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('prune_jobs', notify_channel => NULL);

-- 40 days old: 5 transitions (3 completed stays of 10 s), 2 failures, 1
-- cancellation; 1 day old: 3 transitions
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous)
VALUES ('prune_jobs', '1', NULL,         'queued',       'pending',   now() - interval '40 days', NULL),
       ('prune_jobs', '1', 'queued',     'preparing',    'active',    now() - interval '40 days', '10 seconds'),
       ('prune_jobs', '1', 'preparing',  'building',     'active',    now() - interval '40 days', '10 seconds'),
       ('prune_jobs', '1', 'building',   'transferring', 'active',    now() - interval '40 days', '10 seconds'),
       ('prune_jobs', '2', NULL,         'building',     'active',    now() - interval '40 days', NULL),
       ('prune_jobs', '2', 'building',   'failed',       'failed',    now() - interval '40 days', '1 hour'),
       ('prune_jobs', '3', NULL,         'failed',       'failed',    now() - interval '40 days', NULL),
       ('prune_jobs', '4', 'queued',     'cancelled',    'cancelled', now() - interval '40 days', '5 seconds'),
       ('prune_jobs', '5', NULL,         'queued',       'pending',   now() - interval '1 day', NULL),
       ('prune_jobs', '5', 'queued',     'building',     'active',    now() - interval '1 day', '20 seconds'),
       ('prune_jobs', '5', 'building',   'failed',       'failed',    now() - interval '1 day', '30 seconds');

-- keeping failures (and cancellations): the 5 other old rows go
SELECT deploy_progress.prune('30 days') AS removed;
SELECT key, to_phase, at < now() - interval '30 days' AS old
  FROM deploy_progress.history WHERE relid = 'prune_jobs'::regclass ORDER BY key, at, to_phase;
-- nothing left to remove
SELECT deploy_progress.prune('30 days') AS removed;
-- all old rows, two per statement
SELECT deploy_progress.prune('30 days', keep_failures => false, batch_size => 2) AS removed;
SELECT count(*) AS left_recent FROM deploy_progress.history WHERE relid = 'prune_jobs'::regclass;

-- max_batches bounds a call: 5 old rows, 2 batches of 2, then the last one
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at, time_in_previous)
SELECT 'prune_jobs', 'b' || g, 'queued', 'preparing', 'active', now() - interval '60 days', interval '1 minute'
  FROM generate_series(1, 5) g;
SELECT deploy_progress.prune('30 days', batch_size => 2, max_batches => 2) AS removed;
SELECT deploy_progress.prune('30 days', batch_size => 2, max_batches => 2) AS removed;

-- what the pruned rows leave in history_pruned: transitions into each phase,
-- failures in each phase (where the row failed), completed stays and their time
SELECT phase, transitions, failures, stays, stay_seconds
  FROM deploy_progress.history_pruned WHERE relid = 'prune_jobs'::regclass ORDER BY phase;

-- errors
SELECT deploy_progress.prune('-1 day');
SELECT deploy_progress.prune(NULL);
SELECT deploy_progress.prune('30 days', batch_size => 0);
SELECT deploy_progress.prune('30 days', max_batches => 0);
SELECT deploy_progress.prune('30 days', keep_failures => NULL);
-- prune() runs with its caller's rights: the history belongs to the
-- extension's owner
CREATE ROLE prune_outsider;
SET ROLE prune_outsider;
SELECT deploy_progress.prune('30 days');
RESET ROLE;
DROP ROLE prune_outsider;

DELETE FROM deploy_progress.history WHERE relid = 'prune_jobs'::regclass;
DELETE FROM deploy_progress.history_pruned WHERE relid = 'prune_jobs'::regclass;
DROP TABLE prune_jobs;
