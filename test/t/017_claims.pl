# Owners and leases with real sessions: a worker session claims a row; when
# its backend is terminated (pg_terminate_backend) and, separately, killed
# with SIGKILL (after which the postmaster restarts every backend), stuck()
# reports the row as owner_gone at once, with no deadline passed; a row
# claimed by a live but idle session is never reported, and another session
# cannot claim it; a claimed row that fail_stuck() fails (in another
# session) refuses its worker's next write; fail_stuck() fails the rows of
# sessions that are gone with reason owner_gone, and removes their claims.
#
# The waits are bounded polls (the time each took is printed as a note),
# never fixed sleeps.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib $FindBin::RealBin;
use DpTap;

my $node = PostgreSQL::Test::Cluster->new('claims');
$node->init;
$node->append_conf('postgresql.conf', "restart_after_crash = on\n");
$node->start;

$node->safe_psql('postgres', "CREATE EXTENSION deploy_progress;\n"
	  . deployments_table('jobs') . deployments_table('lease_jobs') . q{
SELECT relid FROM deploy_progress.track('jobs');
SELECT relid FROM deploy_progress.track('lease_jobs');
INSERT INTO jobs (id, phase, completed_items, total_items) SELECT g, 'building', 0, 10 FROM generate_series(1, 4) g;
INSERT INTO lease_jobs (id, phase, completed_items, total_items) VALUES (1, 'building', 0, 10);
});

# The reason stuck() gives a row of jobs now ('' when it is not stuck).
sub reason
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce((SELECT reason FROM deploy_progress.stuck('jobs') WHERE key = '$key'), '')");
}

# Polls stuck() until it reports the row as owner_gone, for at most
# $PostgreSQL::Test::Utils::timeout_default seconds; returns the seconds it
# took, undef when it never did.
sub wait_owner_gone
{
	my ($key, $since) = @_;
	my $until = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $until)
	{
		return time() - $since if reason($key) eq 'owner_gone';
		usleep(20_000);
	}
	return undef;
}

# A worker session that claimed row $key of $tbl; returns it and its pid.
sub worker
{
	my ($tbl, $key) = @_;
	my $w = $node->background_psql('postgres', on_error_stop => 0);
	$w->query_safe("SELECT deploy_progress.claim('$tbl', '$key')");
	my $pid = $w->query_safe('SELECT pg_backend_pid()');
	return ($w, $pid);
}

# 1. a live, idle owner: not reported, and its row cannot be claimed by another
my ($idle, $idle_pid) = worker('jobs', '1');
is($node->safe_psql('postgres', "SELECT alive FROM deploy_progress.owners WHERE key = '1'"),
	't', 'the owners view shows the idle worker alive');
is(reason('1'), '', 'a row claimed by a live idle session is not reported');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT deploy_progress.claim('jobs', '1')");
isnt($ret, 0, 'another session cannot claim the idle worker\'s row');
like($err, qr/row '1' of table public\.jobs is claimed by another session.*DETAIL:  The session with process ID $idle_pid /s,
	'the error names the owner');

# 2. pg_terminate_backend()
my ($term, $term_pid) = worker('jobs', '2');
$term->query_safe('UPDATE jobs SET completed_items = 1 WHERE id = 2');
is(reason('2'), '', 'the claimed row is healthy while its worker lives');
my $t0 = time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($term_pid)");
my $took = wait_owner_gone('2', $t0);
ok(defined $took, 'owner_gone reported after pg_terminate_backend()');
note(sprintf('owner_gone reported %.3f s after pg_terminate_backend()', $took // -1));
is($node->safe_psql('postgres', "SELECT deadline FROM deploy_progress.stuck('jobs') WHERE key = '2'"),
	'00:00:00', 'owner_gone has no deadline');
is(reason('1'), '', 'the idle worker\'s row is still not reported');
eval { $term->quit; };

# 3. the lease: fail_stuck(), in another session, fails the worker's row
my ($leased, $leased_pid) = worker('lease_jobs', '1');
$leased->query_safe('UPDATE lease_jobs SET completed_items = 5 WHERE id = 1');
is($node->safe_psql('postgres',
		q{SELECT key || ' ' || reason FROM deploy_progress.fail_stuck('lease_jobs', as_of => now() + interval '1 hour')}),
	'1 no_heartbeat', 'fail_stuck() fails the leased row');
($out, $ret) = $leased->query('UPDATE lease_jobs SET completed_items = 6 WHERE id = 1');
is($ret, 1, 'the worker\'s next write fails');
like($leased->{stderr},
	qr/row '1' of table "lease_jobs" has ended and is no longer this session's to work on\nDETAIL:  Someone else moved it to failed phase "failed" while this session claimed it; reason: no_heartbeat\.\nHINT:  Stop working on it/,
	'with the phase and the reason');
$leased->{stderr} = '';
is($node->safe_psql('postgres', 'SELECT phase || \' \' || completed_items FROM lease_jobs WHERE id = 1'),
	'failed 5', 'the refused write changed nothing');
is($leased->query_safe(q{SELECT deploy_progress.release('lease_jobs', '1')}), 't', 'the worker releases it');
$leased->query_safe('UPDATE lease_jobs SET completed_items = 6 WHERE id = 1');
pass('after release() the worker\'s write is an ordinary write');
$leased->quit;

# 4. SIGKILL: the postmaster restarts every backend (the idle worker's too)
my ($killed, $killed_pid) = worker('jobs', '3');
is(reason('3'), '', 'the row is healthy before the kill');
$t0 = time();
kill 'KILL', $killed_pid;
$node->poll_query_until('postgres', 'SELECT true');
$took = wait_owner_gone('3', $t0);
ok(defined $took, 'owner_gone reported after the backend was killed with SIGKILL');
note(sprintf('owner_gone reported %.3f s after kill -9 (crash restart included)', $took // -1));
is(reason('1'), 'owner_gone', 'the idle worker, ended by the crash restart, is gone too');
is(reason('4'), '', 'a row never claimed is not reported');
eval { $killed->{run}->kill_kill; };
eval { $idle->{run}->kill_kill; };

# fail_stuck() fails the rows of the sessions that are gone, and only those
is($node->safe_psql('postgres',
		q{SELECT string_agg(key || ' ' || reason, ', ' ORDER BY key) FROM deploy_progress.fail_stuck('jobs')}),
	'1 owner_gone, 2 owner_gone, 3 owner_gone', 'fail_stuck() fails them with owner_gone');
is($node->safe_psql('postgres',
		q{SELECT string_agg(id || ' ' || phase || ' ' || coalesce(failure_reason, '-'), ', ' ORDER BY id) FROM jobs}),
	'1 failed owner_gone, 2 failed owner_gone, 3 failed owner_gone, 4 building -',
	'the failure reason is written');
is($node->safe_psql('postgres', q{SELECT count(*) FROM deploy_progress.owners WHERE relid = 'jobs'::regclass}),
	'0', 'and the claims of the failed rows are removed');

# a new session takes a row over from a session that is gone
$node->safe_psql('postgres', q{INSERT INTO jobs (id, phase) VALUES (5, 'building');
INSERT INTO deploy_progress.claims VALUES ('jobs', '5', 2147483647, '2000-01-01', now())});
is(reason('5'), 'owner_gone', 'a claim whose session is gone');
my ($taker, $taker_pid) = worker('jobs', '5');
is($node->safe_psql('postgres', "SELECT pid || ' ' || alive::text FROM deploy_progress.owners WHERE key = '5'"),
	"$taker_pid true", 'is taken over by the next claim()');
$taker->quit;

$node->stop;
done_testing();
