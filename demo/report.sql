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

\echo 'Timeline of billing-api, from the transition history (deploy_progress.timeline()):'
SELECT tl.phase, to_char(tl.started_at, 'HH24:MI:SS.MS') AS started,
       to_char(tl.ended_at, 'HH24:MI:SS.MS') AS ended, demo_age(tl.duration) AS took, tl.reason
  FROM deployments d
 CROSS JOIN LATERAL deploy_progress.timeline('deployments', d.id::text) AS tl
 WHERE d.name = 'billing-api';

\echo 'Where time goes, per phase, over every deployment (deploy_progress.phase_stats()):'
SELECT ps.phase, ps.count AS stays, demo_age(ps.mean) AS mean, demo_age(ps.p95) AS p95,
       demo_age(ps.max) AS max, ps.failures, ps.suggested_deadline
  FROM deploy_progress.phase_stats('deployments') AS ps;

\echo 'UI steps of search-indexer (deploy_progress.steps()):'
SELECT string_agg(format('%s:%s', e->>'phase', e->>'status'), '  ') AS steps
  FROM deployments d
 CROSS JOIN LATERAL jsonb_array_elements(deploy_progress.steps('deployments', d.id::text)) AS e
 WHERE d.name = 'search-indexer';

\echo 'Outcome:'
SELECT d.phase, count(*) AS deployments,
       string_agg(d.name, ', ' ORDER BY d.id) AS names,
       demo_age(max(d.finished_at - d.started_at)) AS longest
  FROM deployments d
 GROUP BY d.phase
 ORDER BY d.phase;
