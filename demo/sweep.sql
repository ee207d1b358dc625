-- demo/sweep.sql: what a cron job would run every few seconds, printing one
-- "name|reason" line per deployment it failed.
--
-- ISSUE 4 (stuck detection): replace this stand-in with
--   SELECT ... FROM deploy_progress.fail_stuck('deployments');
-- It only knows the heartbeat rule (an active deployment with no write for
-- longer than the heartbeat deadline given to track()) and is not safe
-- against overlapping runs, which fail_stuck() will be.
UPDATE deployments d
   SET phase = 'failed',
       failure_reason = 'no_heartbeat: silent for ' || demo_age(now() - d.heartbeat_at)
  FROM deploy_progress.tracked t
  JOIN deploy_progress.lifecycle_phases p ON p.lifecycle = t.lifecycle
 WHERE t.relid = 'deployments'::regclass
   AND p.phase = d.phase::text
   AND p.kind = 'active'
   AND d.heartbeat_at < now() - t.heartbeat_deadline
RETURNING d.name, d.failure_reason;
