-- demo/progress.sql: the progress table demo/run.sh prints every second or
-- two, one line per deployment.  This is the one query of the demo that
-- reads progress; the figures are computed by hand for now.
--
-- ISSUE 3 (figures): take percent, speed (decayed to now), ETA and overall
--   progress from deploy_progress.progress('deployments', d.id::text), and
--   add a column with deploy_progress.describe('deployments', d.id::text).
-- ISSUE 4 (stuck detection): take the note of in-flight rows from the stuck
--   reason in deploy_progress.in_flight instead of the "no write for" guess.
SELECT d.name,
       d.phase,
       CASE WHEN d.total_items IS NOT NULL
            THEN to_char(d.completed_items, 'FM999,999,990') || '/' || to_char(d.total_items, 'FM999,999,990')
       END AS items,
       CASE WHEN d.total_items > 0
            THEN to_char(100.0 * d.completed_items / d.total_items, 'FM990.0') || '%'
       END AS "%",
       CASE WHEN p.kind = 'active' AND d.items_per_second IS NOT NULL
            THEN to_char(d.items_per_second, 'FM999,990') || '/s'
       END AS speed,
       CASE WHEN p.kind NOT IN ('succeeded', 'failed', 'cancelled')
            THEN demo_age(now() - d.phase_updated_at)
       END AS "in phase",
       to_char(d.started_at, 'HH24:MI:SS') AS started,
       to_char(d.finished_at, 'HH24:MI:SS') AS finished,
       (SELECT count(*) FILTER (WHERE s.phase = 'done') || '/' || count(*)
          FROM steps s WHERE s.deployment_id = d.id HAVING count(*) > 0) AS hosts,
       coalesce(d.failure_reason, d.message,
                CASE WHEN p.kind = 'active' AND now() - d.heartbeat_at > interval '2 seconds'
                     THEN 'no write for ' || demo_age(now() - d.heartbeat_at) END) AS note
  FROM deployments d
  JOIN deploy_progress.tracked t ON t.relid = 'deployments'::regclass
  JOIN deploy_progress.lifecycle_phases p ON p.lifecycle = t.lifecycle AND p.phase = d.phase::text
 ORDER BY d.id;
