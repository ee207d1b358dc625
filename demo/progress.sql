-- demo/progress.sql: the progress table demo/run.sh prints every second or
-- two, one line per deployment.  This is the one query of the demo that
-- reads progress: the line comes from deploy_progress.describe() (phase,
-- counts, percent, smoothed speed and ETA, or how long a finished
-- deployment took, then the worker's message: the message column role),
-- the figures from the in_flight view, and the note from the failure or
-- stuck reason.
SELECT d.name,
       deploy_progress.describe('deployments', d.id::text) AS progress,
       to_char(100 * f.overall_progress, 'FM990') || '%' AS overall,
       (SELECT count(*) FILTER (WHERE s.phase = 'done') || '/' || count(*)
          FROM steps s WHERE s.deployment_id = d.id HAVING count(*) > 0) AS hosts,
       coalesce(d.failure_reason, 'stuck: ' || f.stuck_reason) AS note
  FROM deployments d
  LEFT JOIN deploy_progress.in_flight f
         ON f.relid = 'deployments'::regclass AND f.key = d.id::text
 ORDER BY d.id;
