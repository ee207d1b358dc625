# The library outlives the schema: between "make install" and ALTER
# EXTENSION deploy_progress UPDATE, the installed library runs against the
# SQL objects of the older version.  With the library of this tree:
#
#   1. every C symbol that any SQL script in sql/ names exists in it;
#   2. under CREATE EXTENSION deploy_progress VERSION '1.0', tables tracked
#      in row storage, in side storage (also a partitioned one) and with
#      custom column names get the stamps, side timings and history rows
#      that 1.0 gives, and their writes are checked as 1.0 checks them;
#   3. after ALTER EXTENSION deploy_progress UPDATE, the same holds in a
#      session that wrote before the update and in a new one, the
#      configuration keeps its columns, a table tracked under the new
#      version works, and a role name the library does not know in
#      tracked.columns is ignored.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use DpTap;

my $repo = "$FindBin::RealBin/../..";
my ($default) = slurp_file("$repo/deploy_progress.control") =~ /^\s*default_version\s*=\s*'([^']+)'/m;

my $node = PostgreSQL::Test::Cluster->new('versions');
$node->init;
$node->append_conf('postgresql.conf', 'log_statement = none');
$node->start;

# 1. every symbol a script names resolves (CREATE FUNCTION ... LANGUAGE C
# looks it up in the library)
my %symbols;
opendir(my $dh, "$repo/sql") or die "cannot read $repo/sql: $!";
for my $f (grep { /^deploy_progress--.*\.sql$/ } readdir $dh)
{
	my $script = slurp_file("$repo/sql/$f");
	$symbols{$1} = 1 while $script =~ /'MODULE_PATHNAME',\s*'(\w+)'/g;
}
closedir $dh;
ok(scalar(keys %symbols) >= 13, 'the scripts name the C symbols') or diag(join ' ', sort keys %symbols);
$node->safe_psql('postgres', 'CREATE SCHEMA symbols');
for my $s (sort keys %symbols)
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"CREATE FUNCTION symbols.$s() RETURNS void LANGUAGE C AS '\$libdir/deploy_progress', '$s'");
	is($ret, 0, "the library defines $s") or diag($err);
}
$node->safe_psql('postgres', 'DROP SCHEMA symbols CASCADE');

# 2. version 1.0 with this library
$node->safe_psql('postgres', "CREATE EXTENSION deploy_progress VERSION '1.0'");
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'deploy_progress'}),
	'1.0', 'installed version 1.0');
$node->safe_psql('postgres', deployments_table('deployments') . q{
SELECT storage FROM deploy_progress.track('deployments');
SELECT count(*) FROM deploy_progress.define_lifecycle('job', '[
    {"phase": "todo", "kind": "pending"}, {"phase": "running", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
CREATE TABLE jobs (id integer PRIMARY KEY, phase text NOT NULL, completed_items integer, total_items integer);
SELECT storage FROM deploy_progress.track('jobs', lifecycle => 'job');
CREATE TABLE pjobs (id integer, region text, phase text NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE pjobs_eu PARTITION OF pjobs FOR VALUES IN ('eu');
SELECT storage FROM deploy_progress.track('pjobs', lifecycle => 'job');
CREATE TABLE custom (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, done integer, todo integer,
                     changed timestamptz, beat timestamptz, why text);
SELECT storage FROM deploy_progress.track('custom', completed_items => 'done', total_items => 'todo',
                                          phase_updated_at => 'changed', heartbeat_at => 'beat',
                                          failure_reason => 'why');
});
is($node->safe_psql('postgres', q{SELECT string_agg(relid::text || ':' || storage, ' ' ORDER BY relid::text) FROM deploy_progress.tracked}),
	'custom:row deployments:row jobs:side pjobs:side', 'tables tracked in row and side storage');

# Run SQL in a background session, or in a new session when $session is undef.
sub run_sql
{
	my ($session, $sql) = @_;
	my $out = defined $session ? $session->query_safe($sql) : $node->safe_psql('postgres', $sql);
	$out =~ s/\s+$//;
	return $out;
}

# The history of a row, one transition a word: from/to/kind/completed/total/
# whether the time in the previous phase is known (/reason when asked);
# null counters are left out.
sub history_of
{
	my ($session, $table, $key, $with_reason) = @_;
	my $reason = $with_reason ? q{, coalesce(reason, '-')} : '';
	return run_sql($session, qq{
SELECT string_agg(concat_ws('/', coalesce(from_phase, '-'), to_phase, to_kind, completed, total,
                            time_in_previous IS NOT NULL$reason), ' ' ORDER BY id)
  FROM deploy_progress.history WHERE relid = '$table'::regclass AND key = '$key'});
}

# Writes of every kind on every tracked table, checked; $id keeps each
# call's rows apart.
sub write_and_check
{
	my ($session, $what, $id) = @_;

	# row storage: phase entered, counters moved, heartbeat, terminal phase
	run_sql($session, qq{
INSERT INTO deployments (id, phase, completed_items, total_items) VALUES ($id, 'queued', 0, 10);
UPDATE deployments SET phase = 'building', completed_items = 1 WHERE id = $id;
UPDATE deployments SET completed_items = 5 WHERE id = $id;
UPDATE deployments SET failure_reason = failure_reason WHERE id = $id;
});
	is( run_sql($session, qq{
SELECT concat_ws(' ', phase_updated_at = started_at, progress_updated_at > phase_updated_at,
                 heartbeat_at > progress_updated_at, finished_at IS NULL,
                 items_per_second > 0, speed_updated_at = progress_updated_at)
  FROM deployments WHERE id = $id}),
		't t t t t t', "$what: row stamps of a phase entered, counters moved and a heartbeat");
	run_sql($session, "UPDATE deployments SET phase = 'succeeded', completed_items = 10 WHERE id = $id");
	is( run_sql($session, qq{
SELECT concat_ws(' ', finished_at = phase_updated_at, heartbeat_at = finished_at, items_per_second IS NULL)
  FROM deployments WHERE id = $id}),
		't t t', "$what: a terminal phase stamps finished_at");
	is(history_of($session, 'deployments', $id),
		'-/queued/pending/0/10/f queued/building/active/1/10/t building/succeeded/succeeded/10/10/t',
		"$what: history of the row-storage table");
	my ($ret, $out, $err) = $node->psql('postgres', "UPDATE deployments SET phase = 'building' WHERE id = $id");
	like($err, qr/cannot move a row of "deployments" from terminal phase "succeeded" to "building"/,
		"$what: leaving a terminal phase is refused");

	# side storage
	run_sql($session, qq{
INSERT INTO jobs VALUES ($id, 'todo', 0, 5);
UPDATE jobs SET phase = 'running', completed_items = 1 WHERE id = $id;
UPDATE jobs SET completed_items = 2 WHERE id = $id;
UPDATE jobs SET total_items = total_items WHERE id = $id;
});
	is( run_sql($session, qq{
SELECT concat_ws(' ', phase_updated_at = started_at, progress_updated_at > phase_updated_at,
                 heartbeat_at > progress_updated_at, finished_at IS NULL)
  FROM deploy_progress.timings WHERE relid = 'jobs'::regclass AND key = '$id'}),
		't t t t', "$what: side timings of a phase entered, counters moved and a heartbeat");
	run_sql($session, "UPDATE jobs SET phase = 'done', completed_items = 5 WHERE id = $id");
	is( run_sql($session, qq{
SELECT concat_ws(' ', finished_at = phase_updated_at, started_at < finished_at)
  FROM deploy_progress.timings WHERE relid = 'jobs'::regclass AND key = '$id'}),
		't t', "$what: side timings of a terminal phase");
	is(history_of($session, 'jobs', $id),
		'-/todo/pending/0/5/f todo/running/active/1/5/t running/done/succeeded/5/5/t',
		"$what: history of the side-storage table");

	# side storage, partitioned: timings and history under the partitioned table
	run_sql($session, qq{
INSERT INTO pjobs VALUES ($id, 'eu', 'todo');
UPDATE pjobs SET phase = 'running' WHERE id = $id;
});
	is( run_sql($session, qq{
SELECT count(*) FROM deploy_progress.timings
 WHERE relid = 'pjobs'::regclass AND key = '($id,eu)' AND started_at = phase_updated_at}),
		'1', "$what: side timings of a partition are filed under the partitioned table");
	is(history_of($session, 'pjobs', "($id,eu)"),
		'-/todo/pending/f todo/running/active/t',
		"$what: history of the partitioned side-storage table");

	# custom column names
	run_sql($session, qq{
INSERT INTO custom (id, phase, done, todo) VALUES ($id, 'queued', 0, 4);
UPDATE custom SET phase = 'building', done = 1 WHERE id = $id;
});
	($ret, $out, $err) = $node->psql('postgres', "UPDATE custom SET done = 9 WHERE id = $id");
	like($err, qr/completed items of a row of "custom" exceed its total: done = 9, todo = 4/,
		"$what: counters are checked by their own column names");
	run_sql($session, "UPDATE custom SET phase = 'failed', why = 'boom' WHERE id = $id");
	is( run_sql($session, qq{SELECT concat_ws(' ', changed IS NOT NULL, beat = changed) FROM custom WHERE id = $id}),
		't t', "$what: custom timing columns are stamped");
	is(history_of($session, 'custom', $id, 1),
		'-/queued/pending/0/4/f/- queued/building/active/1/4/t/- building/failed/failed/1/4/t/boom',
		"$what: history of the custom table, with the failure reason");
}

my $old = $node->background_psql('postgres');
write_and_check($old, '1.0, a session', 1);
write_and_check(undef, '1.0, a new session', 2);

# 3. the update, with a session that wrote before it
SKIP:
{
	skip "no version to update to from 1.0 (default_version is $default)", 1 if $default eq '1.0';

	$node->safe_psql('postgres', 'ALTER EXTENSION deploy_progress UPDATE');
	is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'deploy_progress'}),
		$default, "updated to $default");

	write_and_check($old, "$default, a session opened under 1.0", 3);
	write_and_check(undef, "$default, a new session", 4);
	is($node->safe_psql('postgres', q{SELECT columns FROM deploy_progress.tracked WHERE relid = 'custom'::regclass}),
		'{"total_items": "todo", "heartbeat_at": "beat", "failure_reason": "why", '
		  . '"completed_items": "done", "phase_updated_at": "changed"}',
		'the configuration keeps its columns');

	# a role name the library does not know (one of a later version) is
	# ignored, in both sessions
	$node->safe_psql('postgres', q{
UPDATE deploy_progress.tracked SET columns = columns || '{"zz_later_role": "no_such_column"}'
 WHERE relid IN ('custom'::regclass, 'jobs'::regclass)});
	write_and_check($old, "$default, an unknown role, a session opened under 1.0", 5);
	write_and_check(undef, "$default, an unknown role, a new session", 6);

	# a table tracked under the new version
	$node->safe_psql('postgres', q{
CREATE TABLE fresh (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, n integer, beat timestamptz);
SELECT storage FROM deploy_progress.track('fresh', columns => '{"completed_items": "n", "heartbeat_at": "beat"}');
});
	is( run_sql($old, q{
INSERT INTO fresh VALUES (1, 'building', 0, NULL);
UPDATE fresh SET n = 1 WHERE id = 1;
SELECT concat_ws(' ', n, beat IS NOT NULL) FROM fresh}),
		'1 t', "$default: a table tracked with columns => is stamped");
	is(history_of($old, 'fresh', 1), '-/building/active/0/f', "$default: and has its history");
}

$old->quit;
$node->stop;
done_testing();
