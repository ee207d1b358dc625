# A primary and a hot standby (streaming replication on loopback): tracked
# rows, their side-table timings, lifecycles and configuration replicate;
# the read-only functions (stuck(), the figures, timings(), in_flight() and
# the in_flight view) work on the standby and agree with the primary; the
# functions that write fail there with SQLSTATE 25006 and a clear message;
# claims replicate, but owner_gone is reported on the primary only.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use DpTap;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', 'log_statement = none');
$primary->start;

$primary->safe_psql('postgres', "CREATE EXTENSION deploy_progress;\n" . deployments_table('deployments') . q{
SELECT relid FROM deploy_progress.track('deployments');
INSERT INTO deployments (id, phase, completed_items, total_items)
VALUES (1, 'queued', 0, 100), (2, 'transferring', 10, 100), (3, 'succeeded', 100, 100);
});

# the standby starts from a base backup and then follows the primary
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', 'log_statement = none');
$standby->start;

# writes made after the backup arrive by streaming
$primary->safe_psql('postgres', q{
SELECT count(*) FROM deploy_progress.define_lifecycle('job', '[
    {"phase": "todo", "kind": "pending"}, {"phase": "running", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
CREATE TABLE jobs (id integer PRIMARY KEY, phase text NOT NULL, completed_items integer, total_items integer);
SELECT storage FROM deploy_progress.track('jobs', lifecycle => 'job');
INSERT INTO jobs VALUES (1, 'todo', 0, 10), (2, 'running', 3, 10), (3, 'done', 10, 10);
UPDATE deployments SET completed_items = 40 WHERE id = 2;
UPDATE deployments SET phase = 'fetching' WHERE id = 1;
SET deploy_progress.stamping = off;
INSERT INTO deployments (id, phase, completed_items, total_items, phase_updated_at, progress_updated_at,
                         heartbeat_at, started_at)
VALUES (4, 'building', 5, 50, now() - interval '1 hour', now() - interval '1 hour',
        now() - interval '1 hour', now() - interval '1 hour');
});
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

# the same answers on both servers
my $as_of = $primary->safe_psql('postgres', q{SELECT now() + interval '20 minutes'});
my %same = (
	'tracked rows' => q{SELECT string_agg(d::text, E'\n' ORDER BY id) FROM deployments d},
	'side rows and timings' => q{SELECT string_agg(j::text || ' ' || s::text, E'\n' ORDER BY j.id)
		FROM jobs j JOIN deploy_progress.timings s ON s.relid = 'jobs'::regclass AND s.key = j.id::text},
	'lifecycles' => q{SELECT string_agg(p::text, E'\n' ORDER BY p.lifecycle, p.position)
		FROM deploy_progress.lifecycle_phases p},
	'configuration' => q{SELECT string_agg(t::text, E'\n' ORDER BY t.relid::text) FROM deploy_progress.tracked t},
	'stuck()' => qq{SELECT string_agg(s::text, E'\\n' ORDER BY s.relid::text, s.key)
		FROM deploy_progress.stuck(as_of => '$as_of') s},
	'stuck(table)' => qq{SELECT string_agg(s::text, E'\\n' ORDER BY s.key)
		FROM deploy_progress.stuck('jobs', '$as_of') s},
	'progress()' => qq{SELECT deploy_progress.progress('deployments', '2', '$as_of')::text
		|| E'\\n' || deploy_progress.progress('jobs', '2', '$as_of')::text},
	'describe()' => qq{SELECT deploy_progress.describe('deployments', '2', '$as_of')
		|| E'\\n' || deploy_progress.describe('jobs', '2', '$as_of')},
	'figures' => q{SELECT deploy_progress.percent(completed_items, total_items)
		|| ' ' || deploy_progress.overall_progress('default', phase::text, completed_items, total_items)
		|| ' ' || coalesce(deploy_progress.eta(completed_items, total_items, 2.0)::text, '-')
		FROM deployments WHERE id = 2},
	'timings()' => q{SELECT string_agg(t::text, E'\n') FROM (
		SELECT * FROM deploy_progress.timings('deployments', '1')
		UNION ALL SELECT * FROM deploy_progress.timings('jobs', '2')) t},
	'in_flight_index_statement()' => q{SELECT deploy_progress.in_flight_index_statement('jobs')});
for my $what (sort keys %same)
{
	my $on_primary = $primary->safe_psql('postgres', $same{$what});
	isnt($on_primary, '', "$what: not empty on the primary");
	is($standby->safe_psql('postgres', $same{$what}), $on_primary, "$what: the same on the standby");
}
like($standby->safe_psql('postgres', qq{SELECT string_agg(relid::text || ' ' || key || ' ' || reason, ', ' ORDER BY relid::text, key)
	FROM deploy_progress.stuck(as_of => '$as_of')}),
	qr/^deployments 1 no_heartbeat, deployments 2 no_heartbeat, deployments 4 no_heartbeat, jobs 2 no_heartbeat$/,
	'the standby reports the stuck rows with their reasons');

my $q = qq{SELECT string_agg(f::text, E'\\n' ORDER BY f.relid::text, f.key)
	FROM deploy_progress.in_flight(as_of => '$as_of') f};
isnt($primary->safe_psql('postgres', $q), '', 'in_flight(): not empty on the primary');
is($standby->safe_psql('postgres', $q), $primary->safe_psql('postgres', $q),
	'in_flight(): the same rows and figures on the standby');
is( $standby->safe_psql('postgres',
		q{SELECT string_agg(relid::text || ' ' || key, ', ' ORDER BY relid::text, key) FROM deploy_progress.in_flight}),
	'deployments 1, deployments 2, deployments 4, jobs 1, jobs 2',
	'the in_flight view lists the in-flight rows on the standby');

# writes fail with a read-only error (SQLSTATE 25006): fail_stuck() with a
# message of its own, track() and the others with PostgreSQL's message for
# the first statement that would write
sub fails_read_only
{
	my ($sql, $message, $what) = @_;
	my ($ret, $out, $err) = $standby->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	isnt($ret, 0, "$what: fails on the standby");
	like($err, qr/ERROR:  25006: $message/, "$what: SQLSTATE 25006, $message");
	return $err;
}
my $err = fails_read_only('SELECT * FROM deploy_progress.fail_stuck()',
	qr/cannot fail stuck rows on a standby/, 'fail_stuck()');
like($err, qr/HINT:  Run fail_stuck\(\) on the primary/, 'fail_stuck(): with a hint');
fails_read_only(q{SELECT * FROM deploy_progress.fail_stuck('deployments', as_of => now() + interval '1 day')},
	qr/cannot fail stuck rows on a standby/, 'fail_stuck(table)');
fails_read_only(q{SELECT deploy_progress.track('jobs', lifecycle => 'job')},
	qr/cannot execute LOCK TABLE during recovery/, 'track()');
fails_read_only(q{SELECT deploy_progress.untrack('jobs')},
	qr/cannot execute DROP TRIGGER in a read-only transaction/, 'untrack()');
fails_read_only(q{SELECT deploy_progress.define_lifecycle('job2', '[{"phase": "a", "kind": "succeeded"}, {"phase": "b", "kind": "failed"}]')},
	qr/cannot execute INSERT in a read-only transaction/, 'define_lifecycle()');
fails_read_only(q{UPDATE deployments SET completed_items = 41 WHERE id = 2},
	qr/cannot execute UPDATE in a read-only transaction/, 'a write to a tracked table');
fails_read_only(q{SELECT deploy_progress.claim('deployments', '2')},
	qr/cannot claim rows on a standby/, 'claim()');
fails_read_only(q{SELECT deploy_progress.release('deployments', '2')},
	qr/cannot release rows on a standby/, 'release()');

# a claim replicates, but a standby cannot see the primary's sessions: its
# owner's liveness is unknown there, and owner_gone is not reported
$primary->safe_psql('postgres',
	q{INSERT INTO deploy_progress.claims VALUES ('jobs', '2', 2147483647, '2000-01-01', now())});
$primary->wait_for_catchup($standby);
my $claim_sql = q{SELECT key || ' ' || coalesce(alive::text, 'unknown') || ' '
  || coalesce((SELECT reason FROM deploy_progress.stuck('jobs') WHERE key = '2'), 'not stuck')
  FROM deploy_progress.owners};
is($primary->safe_psql('postgres', $claim_sql), '2 false owner_gone', 'the primary sees the owner gone');
is($standby->safe_psql('postgres', $claim_sql), '2 unknown not stuck', 'the standby does not know, and reports nothing');

# and the standby still follows: the primary can do all of it
$primary->safe_psql('postgres', q{
SELECT count(*) FROM deploy_progress.fail_stuck(as_of => now() + interval '1 day');
SELECT deploy_progress.untrack('jobs');
});
$primary->wait_for_catchup($standby);
is( $standby->safe_psql('postgres', q{
SELECT string_agg(id || ':' || phase || ':' || coalesce(failure_reason, '-'), ' ' ORDER BY id) FROM deployments}),
	'1:failed:no_heartbeat 2:failed:no_heartbeat 3:succeeded:- 4:failed:no_heartbeat',
	'rows failed on the primary replicate');
is( $standby->safe_psql('postgres', q{
SELECT count(*) FROM deploy_progress.tracked WHERE relid = 'jobs'::regclass}),
	'0', 'an untrack on the primary replicates');

$standby->stop;
$primary->stop;
done_testing();
