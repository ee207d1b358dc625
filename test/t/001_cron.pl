# pg_cron runs fail_stuck() on a schedule: a stuck deployment is failed with
# its reason, while a slow deployment that keeps making progress is left
# alone.
#
# Debian bookworm ships pg_cron 1.4, whose finest schedule is one minute
# ('* * * * *'); with pg_cron 1.5+ a schedule such as '5 seconds' works the
# same way.  The detection latency is the deadline plus the schedule
# interval, so this test waits up to three minutes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION deploy_progress;
CREATE TABLE deployments (
    id integer PRIMARY KEY, name text, phase deploy_progress.phase NOT NULL,
    completed_items integer, total_items integer,
    phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
    started_at timestamptz, finished_at timestamptz, failure_reason text);
SELECT relid FROM deploy_progress.track('deployments',
    progress_deadline => '20 seconds', heartbeat_deadline => '20 seconds');
-- "slow": moving, one item at a time
INSERT INTO deployments (id, name, phase, completed_items, total_items)
VALUES (1, 'slow', 'transferring', 0, 100000);
-- "dead": its worker stopped writing an hour ago
SET deploy_progress.stamping = off;
INSERT INTO deployments (id, name, phase, completed_items, total_items, phase_updated_at,
                         progress_updated_at, heartbeat_at, started_at)
VALUES (2, 'dead', 'transferring', 40, 100, now() - interval '1 hour',
        now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour');
});

$node->safe_psql('postgres',
	q{SELECT cron.schedule('fail-stuck', '* * * * *', 'SELECT count(*) FROM deploy_progress.fail_stuck()')});

# keep the slow deployment moving while waiting for the sweep
my $failed = 0;
for my $i (1 .. 180)
{
	$node->safe_psql('postgres',
		'UPDATE deployments SET completed_items = completed_items + 1 WHERE id = 1');
	$failed = $node->safe_psql('postgres',
		q{SELECT count(*) FROM deployments WHERE id = 2 AND phase = 'failed'});
	last if $failed eq '1';
	sleep 1;
}
is($failed, '1', 'pg_cron failed the stuck deployment');

is( $node->safe_psql(
		'postgres', q{SELECT phase || ' ' || failure_reason FROM deployments WHERE id = 2}),
	'failed no_heartbeat',
	'with its reason');
ok( $node->safe_psql(
		'postgres', q{SELECT finished_at IS NOT NULL FROM deployments WHERE id = 2}) eq 't',
	'and a finish time');
is( $node->safe_psql('postgres', q{SELECT phase FROM deployments WHERE id = 1}),
	'transferring', 'the slow but moving deployment was left alone');
is( $node->safe_psql(
		'postgres',
		q{SELECT status FROM cron.job_run_details ORDER BY start_time DESC LIMIT 1}),
	'succeeded',
	'the cron job itself succeeded');

$node->stop;
done_testing();
