-- demo/sweep.sql: what a cron job would run every few seconds, printing one
-- "name|event" line per deployment: first what stuck() reports, then what
-- fail_stuck() failed (with FOR UPDATE SKIP LOCKED and a re-check under
-- the lock, so overlapping runs are safe).
SELECT d.name,
       format('detected stuck: %s (no write since %s, %s past its %s deadline)',
              s.reason, to_char(s.clock_started_at, 'HH24:MI:SS'),
              demo_age(s.overdue_by), demo_age(s.deadline))
  FROM deploy_progress.stuck('deployments') s
  JOIN deployments d ON d.id::text = s.key;
SELECT d.name, format('failed by fail_stuck(): %s -> %s, reason %s', f.from_phase, f.to_phase, f.reason)
  FROM deploy_progress.fail_stuck('deployments') f
  JOIN deployments d ON d.id::text = f.key;
