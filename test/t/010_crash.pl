# Crash safety: tracked rows, their side-table timings and their history stay
# consistent through an immediate shutdown and through a backend killed with
# SIGKILL (after which the postmaster restarts every backend), and nothing
# uncommitted survives either.
#
# Load: pgbench runs transitions, counter moves and heartbeats from several
# sessions on a table with in-row timings (deploy_progress.phase, restarts
# allowed) and on a side-storage table with a user lifecycle; a Perl session
# commits counter moves on a row of its own and remembers the last one the
# server acknowledged; another session keeps a transaction open with marked
# changes.  After each crash every committed row must pass the checks in
# $violations_sql, the acknowledged commit must be there and the marked
# changes must be gone.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use DpTap;
use IPC::Run;

my $clients = 4;
my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
restart_after_crash = on
log_statement = none
max_connections = 30
});
$node->start;

$node->safe_psql('postgres', "CREATE EXTENSION deploy_progress;\n" . deployments_table('deployments') . q{
SELECT relid FROM deploy_progress.track('deployments', allow_restart => true);
SELECT count(*) FROM deploy_progress.define_lifecycle('job', '[
    {"phase": "todo", "kind": "pending"}, {"phase": "running", "kind": "active"},
    {"phase": "paused", "kind": "waiting"}, {"phase": "done", "kind": "succeeded"},
    {"phase": "error", "kind": "failed"}]');
CREATE TABLE jobs (id bigint PRIMARY KEY, phase text NOT NULL, completed_items integer, total_items integer);
SELECT storage FROM deploy_progress.track('jobs', lifecycle => 'job', allow_restart => true);
INSERT INTO deployments (id, phase, completed_items, total_items)
SELECT g, 'queued', 0, CASE WHEN g > 0 THEN 1000 END FROM generate_series(0, 200) g;
INSERT INTO jobs (id, phase, completed_items, total_items)
SELECT g, 'todo', 0, 1000 FROM generate_series(1, 200) g;
-- rows the open transaction will change
INSERT INTO deployments (id, phase, completed_items, total_items) VALUES (-2, 'transferring', 5, 10);
INSERT INTO jobs (id, phase, completed_items, total_items) VALUES (-2, 'running', 5, 10), (-3, 'todo', 0, 1);
});

# The pgbench script: mostly heartbeats and counter moves, phase changes
# along the lifecycle (terminal rows restart), failures, inserts and deletes
# of side-storage rows, and two-table transactions.
my $script = "${PostgreSQL::Test::Utils::tmp_check}/crash_load.sql";
PostgreSQL::Test::Utils::append_to_file($script, q{
\set id random(1, 200)
\set r random(1, 20)
\if :r <= 8
UPDATE deployments SET completed_items = least(completed_items + 1, total_items) WHERE id = :id;
\elif :r <= 11
UPDATE deployments SET phase = CASE phase WHEN 'queued' THEN 'preparing' WHEN 'preparing' THEN 'transferring'
    WHEN 'transferring' THEN 'waiting' WHEN 'waiting' THEN 'health_check' WHEN 'health_check' THEN 'succeeded'
    ELSE 'queued' END::deploy_progress.phase, completed_items = 0 WHERE id = :id;
\elif :r <= 12
UPDATE deployments SET phase = 'failed' WHERE id = :id AND phase < 'succeeded';
\elif :r <= 15
UPDATE jobs SET completed_items = least(completed_items + 7, total_items) WHERE id = :id;
\elif :r <= 17
UPDATE jobs SET phase = CASE phase WHEN 'todo' THEN 'running' WHEN 'running' THEN 'paused'
    WHEN 'paused' THEN 'done' ELSE 'todo' END WHERE id = :id;
\elif :r <= 18
DELETE FROM jobs WHERE id = :id + 1000;
INSERT INTO jobs (id, phase, completed_items, total_items) VALUES (:id + 1000, 'running', 1, 3)
    ON CONFLICT (id) DO NOTHING;
\else
BEGIN;
UPDATE deployments SET phase = 'transferring', completed_items = 1 WHERE id = :id AND phase < 'transferring';
UPDATE jobs SET phase = 'error' WHERE id = :id AND phase IN ('todo', 'running', 'paused');
COMMIT;
\endif
});

# Violations of the invariants, one line each; empty when all hold.
my $violations_sql = q{
WITH lc AS (
    SELECT p.phase, p.kind FROM deploy_progress.lifecycle_phases p
      JOIN deploy_progress.tracked t ON t.lifecycle = p.lifecycle AND t.relid = 'deployments'::regclass),
d AS (SELECT d.*, lc.kind FROM deployments d LEFT JOIN lc ON lc.phase = d.phase::text),
dv AS (
    SELECT 'deployments ' || id || ': ' || v AS violation FROM d, LATERAL (VALUES
        (CASE WHEN kind IS NULL THEN 'phase not in the lifecycle' END),
        (CASE WHEN kind IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NULL THEN 'terminal without finished_at' END),
        (CASE WHEN kind NOT IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NOT NULL THEN 'finished_at on a non-terminal row' END),
        (CASE WHEN kind IN ('succeeded', 'failed', 'cancelled') AND finished_at <> phase_updated_at THEN 'finished_at is not the time the terminal phase was entered' END),
        (CASE WHEN kind = 'active' AND started_at IS NULL THEN 'active without started_at' END),
        (CASE WHEN started_at > phase_updated_at THEN 'started_at after phase_updated_at' END),
        (CASE WHEN phase_updated_at IS NULL OR progress_updated_at IS NULL OR heartbeat_at IS NULL THEN 'missing stamps' END),
        (CASE WHEN phase_updated_at > progress_updated_at THEN 'phase_updated_at after progress_updated_at' END),
        (CASE WHEN progress_updated_at > heartbeat_at THEN 'progress_updated_at after heartbeat_at' END),
        (CASE WHEN completed_items > total_items OR completed_items < 0 THEN 'counters out of range' END)
    ) AS x(v) WHERE v IS NOT NULL),
j AS (SELECT j.id, j.phase, p.kind, s.key AS side_key, s.phase_updated_at, s.progress_updated_at,
             s.heartbeat_at, s.started_at, s.finished_at
        FROM jobs j
        LEFT JOIN deploy_progress.lifecycle_phases p ON p.lifecycle = 'job' AND p.phase = j.phase
        LEFT JOIN deploy_progress.timings s ON s.relid = 'jobs'::regclass AND s.key = j.id::text),
jv AS (
    SELECT 'jobs ' || id || ': ' || v FROM j, LATERAL (VALUES
        (CASE WHEN kind IS NULL THEN 'phase not in the lifecycle' END),
        (CASE WHEN side_key IS NULL THEN 'no side-table row' END),
        (CASE WHEN kind IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NULL THEN 'terminal without finished_at' END),
        (CASE WHEN kind NOT IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NOT NULL THEN 'finished_at on a non-terminal row' END),
        (CASE WHEN kind = 'active' AND started_at IS NULL THEN 'active without started_at' END),
        (CASE WHEN started_at > phase_updated_at THEN 'started_at after phase_updated_at' END),
        (CASE WHEN side_key IS NOT NULL AND (phase_updated_at IS NULL OR heartbeat_at IS NULL) THEN 'missing stamps' END),
        (CASE WHEN phase_updated_at > progress_updated_at OR progress_updated_at > heartbeat_at THEN 'stamps out of order' END)
    ) AS x(v) WHERE v IS NOT NULL),
orphans AS (
    SELECT 'timings ' || s.relid::text || ' ' || s.key || ': no such row'
      FROM deploy_progress.timings s
     WHERE s.relid = 'jobs'::regclass AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id::text = s.key)
        OR NOT EXISTS (SELECT 1 FROM deploy_progress.tracked t WHERE t.relid = s.relid AND t.storage = 'side'))
SELECT string_agg(violation, E'\n' ORDER BY violation)
  FROM (SELECT * FROM dv UNION ALL SELECT * FROM jv UNION ALL SELECT * FROM orphans) v(violation)
};

# The history: the last entry of every row of a table tracked with history
# 'all' is the row's phase.  "Last" is by time, as timeline() orders: ids
# come from a cached sequence, so concurrent backends do not hand them out
# in commit order.
my $history_sql = q{
SELECT string_agg(r.tbl || ' ' || r.key || ': last history entry is ' || coalesce(h.to_phase, 'missing')
                  || ', row is in ' || r.phase, E'\n' ORDER BY r.tbl, r.key)
  FROM (SELECT 'deployments'::regclass AS tbl, id::text AS key, phase::text AS phase FROM deployments
        UNION ALL SELECT 'jobs'::regclass, id::text, phase FROM jobs) r
  JOIN deploy_progress.tracked t ON t.relid = r.tbl AND t.history = 'all'
  LEFT JOIN LATERAL (SELECT h.to_phase FROM deploy_progress.history h
                      WHERE h.relid = r.tbl AND h.key = r.key ORDER BY h.at DESC, h.id DESC LIMIT 1) h ON true
 WHERE h.to_phase IS DISTINCT FROM r.phase
};

# Check every invariant; $what names the situation.
sub check_consistent
{
	my ($what) = @_;
	is($node->safe_psql('postgres', $violations_sql), '',
		"$what: rows and side-table timings are consistent");
	is($node->safe_psql('postgres', $history_sql), '',
		"$what: every row's last history entry is its phase");
}

# Start the load: pgbench in the background, a committing session and a
# session holding an open transaction with marked changes.
sub start_load
{
	my ($seconds) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGAPPNAME} = 'crash_load';
	my $pgbench = IPC::Run::start(
		[
			'pgbench', '-n', '-c', $clients, '-j', $clients, '-T', $seconds,
			'-h', $node->host, '-p', $node->port, '-f', $script, 'postgres'
		],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout($seconds + $PostgreSQL::Test::Utils::timeout_default));

	my $open = $node->background_psql('postgres', on_error_stop => 0);
	$open->query_safe(q{
BEGIN;
INSERT INTO deployments (id, phase, completed_items, total_items) VALUES (-1, 'building', 1, 2);
UPDATE deployments SET phase = 'failed' WHERE id = -2;
INSERT INTO jobs (id, phase) VALUES (-1, 'running');
UPDATE jobs SET phase = 'done' WHERE id = -2;
DELETE FROM jobs WHERE id = -3;
SAVEPOINT s;
UPDATE deployments SET completed_items = 9 WHERE id = -2;
});
	my $committer = $node->background_psql('postgres', on_error_stop => 0);
	return { pgbench => $pgbench, out => \$out, err => \$err, open => $open,
		committer => $committer, acked => undef };
}

# Commit counter moves on row 0 for a few seconds while the load runs,
# remembering the last value the server acknowledged.
sub commit_while_loading
{
	my ($load, $seconds) = @_;
	my $until = time() + $seconds;
	while (time() < $until)
	{
		$load->{acked} = $load->{committer}->query_safe(
			'UPDATE deployments SET completed_items = completed_items + 1 WHERE id = 0 RETURNING completed_items');
	}
	return $load->{acked};
}

# After the crash: the load's processes are gone (or going); reap them.
sub reap_load
{
	my ($load) = @_;
	$load->{pgbench}->finish;
	for my $s ($load->{open}, $load->{committer})
	{
		eval { $s->{run}->kill_kill; };
	}
	note "pgbench: ${$load->{out}}${$load->{err}}";
}

sub check_after_crash
{
	my ($what, $load) = @_;
	check_consistent($what);
	is( $node->safe_psql('postgres', 'SELECT completed_items FROM deployments WHERE id = 0'),
		$load->{acked}, "$what: the last acknowledged commit survived");
	is( $node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM deployments WHERE id = -1)
    || ' ' || (SELECT phase || '/' || completed_items || '/' || (finished_at IS NULL) FROM deployments WHERE id = -2)
    || ' ' || (SELECT count(*) FROM jobs WHERE id = -1)
    || ' ' || (SELECT count(*) FROM deploy_progress.timings WHERE relid = 'jobs'::regclass AND key = '-1')
    || ' ' || (SELECT phase FROM jobs WHERE id = -2)
    || ' ' || (SELECT count(*) FROM deploy_progress.timings
                WHERE relid = 'jobs'::regclass AND key = '-2' AND finished_at IS NULL)
    || ' ' || (SELECT count(*) FROM jobs WHERE id = -3)}),
		'0 transferring/5/true 0 0 running 1 1',
		"$what: nothing of the open transaction is visible");
}

# Tracking keeps working: a new row and a transition are stamped and checked.
sub check_tracking_works
{
	my ($what, $id) = @_;
	is( $node->safe_psql('postgres', qq{
INSERT INTO deployments (id, phase, completed_items, total_items) VALUES ($id, 'queued', 0, 10);
UPDATE deployments SET phase = 'building' WHERE id = $id;
SELECT (started_at = phase_updated_at AND heartbeat_at >= phase_updated_at)::text
  FROM deployments WHERE id = $id}),
		'true', "$what: a new row is stamped");
	my ($ret, $out, $err) = $node->psql('postgres',
		"UPDATE deployments SET completed_items = 11 WHERE id = $id");
	like($err, qr/completed items of a row of "deployments" exceed its total/,
		"$what: counters are still validated");
	is( $node->safe_psql('postgres', qq{
INSERT INTO jobs (id, phase) VALUES ($id, 'running');
SELECT count(*) FROM deploy_progress.timings WHERE relid = 'jobs'::regclass AND key = '$id' AND started_at IS NOT NULL}),
		'1', "$what: side-table timings are written");
}

check_consistent('before any load');

# 1. immediate shutdown under load
my $load = start_load(60);
my $acked = commit_while_loading($load, 4);
ok($acked > 0, "committed $acked counter moves on row 0 under load");
$node->stop('immediate');
reap_load($load);
$node->start;
check_after_crash('after an immediate shutdown', $load);
check_tracking_works('after an immediate shutdown', 100001);

# 2. one backend killed with SIGKILL: the postmaster kills the others and
# reinitializes; then the load resumes
$load = start_load(60);
commit_while_loading($load, 4);
my $victim = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name = 'crash_load' LIMIT 1});
ok($victim =~ /^\d+$/, 'found a pgbench backend to kill');
my $log_offset = -s $node->logfile;
kill 'KILL', $victim;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
$node->poll_query_until('postgres', 'SELECT true');
reap_load($load);
check_after_crash('after a backend was killed', $load);
check_tracking_works('after a backend was killed', 100002);

# 3. the load runs again on the recovered server and leaves consistent rows
my $progress_sql = 'SELECT max(heartbeat_at) FROM deployments WHERE id BETWEEN 1 AND 200';
my $before = $node->safe_psql('postgres', $progress_sql);
$node->command_ok(
	[
		'pgbench', '-n', '-c', $clients, '-j', $clients, '-T', 3,
		'-h', $node->host, '-p', $node->port, '-f', $script, 'postgres'
	],
	'the load runs again after recovery');
isnt($node->safe_psql('postgres', $progress_sql), $before,
	'and makes progress');
check_consistent('after more load');

$node->stop;
done_testing();
