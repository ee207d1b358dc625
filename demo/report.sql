-- demo/report.sql: what the demo prints once every deployment has finished.

\echo
\echo 'Rollout of web-frontend, host by host (table steps, timings kept in the side table):'
SELECT s.position AS "#", s.host, s.phase,
       to_char(tm.started_at, 'HH24:MI:SS.MS') AS started,
       to_char(tm.finished_at, 'HH24:MI:SS.MS') AS finished,
       demo_age(tm.finished_at - tm.started_at) AS took
  FROM steps s
  JOIN deployments d ON d.id = s.deployment_id
 CROSS JOIN LATERAL deploy_progress.timings('steps', s.id::text) AS tm
 WHERE d.name = 'web-frontend'
 ORDER BY s.position;

-- ISSUE 5 (history): print the timeline of one deployment and the phase
--   statistics of the table here:
--     SELECT * FROM deploy_progress.timeline('deployments', '<id of billing-api>');
--     SELECT * FROM deploy_progress.phase_stats('deployments');

\echo 'Outcome:'
SELECT d.phase, count(*) AS deployments,
       string_agg(d.name, ', ' ORDER BY d.id) AS names,
       demo_age(max(d.finished_at - d.started_at)) AS longest
  FROM deployments d
 GROUP BY d.phase
 ORDER BY d.phase;
