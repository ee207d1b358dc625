# Citus distributed tables (issue 17, first phase).  A coordinator and two
# workers on Unix sockets.  A table tracked and then distributed (with rows,
# which the data copy keeps as they were) and a table distributed and then
# tracked (with a lifecycle of its own, which reaches the shards in the
# stamp trigger's argument); single-shard and multi-shard writes from the
# coordinator, including a transaction over both workers (two-phase
# commit: shards send no NOTIFY); the checks name the distributed table,
# not the shard; restarts; history kept on the workers under the table's
# name; a lifecycle redefined on the coordinator reaches the shards; a
# shard moved to the other worker; the coordinator's global readers skip
# distributed tables with a warning and still read the others; reference
# tables refused; untrack().
#
# Needs Citus built into the PostgreSQL under test: test/citus.sh builds it
# from the source in ../shared/citus (or $DP_CITUS_SRC) and runs this test.
# Skipped, saying why, when the source or the build is absent.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Spec;

my $src = $ENV{DP_CITUS_SRC} // '../shared/citus';
plan skip_all => "no Citus source in $src (set DP_CITUS_SRC to a directory with citus-13.2.2.tar.gz)"
  unless -f "$src/citus-13.2.2.tar.gz";
my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
plan skip_all => "Citus is not installed into $pkglibdir: run test/citus.sh, which builds it from $src"
  unless -f "$pkglibdir/citus.so";

# three nodes: the coordinator and two workers
my @nodes;
for my $name ('coordinator', 'worker1', 'worker2')
{
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'citus'
citus.local_hostname = '@{[$node->host]}'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_connections = 60
log_statement = none
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	push @nodes, $node;
}
my ($coord, $w1, $w2) = @nodes;
$coord->safe_psql('postgres', sprintf(q{
SELECT citus_set_coordinator_host('%s', %d);
SELECT citus_add_node('%s', %d);
SELECT citus_add_node('%s', %d);
CREATE EXTENSION deploy_progress;
}, $coord->host, $coord->port, $w1->host, $w1->port, $w2->host, $w2->port));
is($w1->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'deploy_progress'}),
	$coord->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'deploy_progress'}),
	'CREATE EXTENSION reaches the workers');

# psql on the coordinator, expected to fail: its SQLSTATE and message
sub fails
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $coord->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $ret == 0 ? 'no error' : ($err =~ /ERROR:\s+(\w{5}): ([^\n]*)/ ? "$1: $2" : $err);
}

# 1. tracked, then distributed, with rows present
$coord->safe_psql('postgres', q{
CREATE TABLE deployments (
    tenant integer, id integer, phase deploy_progress.phase NOT NULL,
    completed_items integer, total_items integer,
    phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
    started_at timestamptz, finished_at timestamptz,
    PRIMARY KEY (tenant, id));
SELECT relid FROM deploy_progress.track('deployments', allow_restart => true);
INSERT INTO deployments (tenant, id, phase, completed_items, total_items)
SELECT g, 1, 'building', 0, 10 FROM generate_series(1, 4) g;
});
my $before = $coord->safe_psql('postgres',
	'SELECT tenant, phase, phase_updated_at, heartbeat_at, started_at FROM deployments ORDER BY tenant');
like(fails(q{SELECT create_distributed_table('deployments', 'tenant')}),
	qr/triggers/, 'Citus refuses to distribute a tracked table without citus.enable_unsafe_triggers');
$coord->safe_psql('postgres', q{
SET citus.enable_unsafe_triggers = on;
SELECT create_distributed_table('deployments', 'tenant');
SELECT truncate_local_data_after_distributing_table('deployments');
});
is($coord->safe_psql('postgres',
		'SELECT tenant, phase, phase_updated_at, heartbeat_at, started_at FROM deployments ORDER BY tenant'),
	$before, 'the data copy of create_distributed_table() keeps the rows as they were stamped');
my $placed = $coord->safe_psql('postgres', q{
SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'deployments'::regclass});
is($placed, 2, 'the shards are on both workers');
my $history_sql = q{
SELECT coalesce(string_agg(key || ' ' || coalesce(from_phase, '-') || '>' || to_phase, ', ' ORDER BY key, id), '')
  FROM deploy_progress.history WHERE relid::text = 'deployments'};
is($w1->safe_psql('postgres', $history_sql) . $w2->safe_psql('postgres', $history_sql), '',
	'the copied rows leave no history on the workers');

# 2. distributed, then tracked (track() sets what Citus needs itself), with
# a lifecycle of the coordinator's
$coord->safe_psql('postgres', q{
SELECT count(*) FROM deploy_progress.define_lifecycle('job', '[
    {"phase": "todo", "kind": "pending"}, {"phase": "running", "kind": "active"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
CREATE TABLE jobs (tenant integer, id integer, phase text NOT NULL, completed_items integer, total_items integer,
                   phase_updated_at timestamptz, heartbeat_at timestamptz, started_at timestamptz,
                   finished_at timestamptz, PRIMARY KEY (tenant, id));
SELECT create_distributed_table('jobs', 'tenant');
SELECT relid FROM deploy_progress.track('jobs', lifecycle => 'job');
});
is($coord->safe_psql('postgres', q{SHOW citus.enable_unsafe_triggers}), 'off',
	'track() leaves citus.enable_unsafe_triggers as it was');
is($w1->safe_psql('postgres', q{SELECT count(*) FROM deploy_progress.lifecycles WHERE name = 'job'}), '0',
	'the lifecycle is not on the workers: the shards take it from the trigger argument');

# single-shard and multi-shard writes
$coord->safe_psql('postgres', q{
INSERT INTO jobs (tenant, id, phase, completed_items, total_items) VALUES (1, 1, 'todo', 0, 5);
INSERT INTO jobs (tenant, id, phase, completed_items, total_items)
SELECT g, 1, 'todo', 0, 5 FROM generate_series(2, 6) g;
UPDATE jobs SET phase = 'running' WHERE tenant = 1;
BEGIN;
UPDATE jobs SET phase = 'running' WHERE tenant > 1;
UPDATE deployments SET completed_items = 2;
COMMIT;
UPDATE jobs SET completed_items = 5, phase = 'done' WHERE tenant IN (1, 2);
});
is($coord->safe_psql('postgres', q{
SELECT string_agg(format('%s %s %s %s %s', tenant, phase, phase_updated_at IS NOT NULL AND heartbeat_at IS NOT NULL,
                         started_at IS NOT NULL, finished_at IS NOT NULL), ', ' ORDER BY tenant) FROM jobs}),
	'1 done t t t, 2 done t t t, 3 running t t f, 4 running t t f, 5 running t t f, 6 running t t f',
	'single-shard and multi-shard writes are stamped on every shard (a transaction over both workers commits)');
is($coord->safe_psql('postgres', q{
SELECT bool_and(started_at <= phase_updated_at AND phase_updated_at <= finished_at) FROM jobs WHERE phase = 'done'}),
	't', 'stamps are in order');
is($coord->safe_psql('postgres', q{
SELECT bool_and(progress_updated_at > phase_updated_at) FROM deployments}),
	't', 'counter moves stamp progress_updated_at');

# the checks, naming the distributed table
is(fails(q{UPDATE jobs SET phase = 'nope' WHERE tenant = 3}),
	'22P02: "nope" is not a phase of the lifecycle of table "jobs"',
	'an unknown phase is refused on the shard, naming the table');
is(fails(q{UPDATE jobs SET phase = 'nope'}),
	'22P02: "nope" is not a phase of the lifecycle of table "jobs"',
	'also in a multi-shard statement');
is(fails(q{UPDATE deployments SET completed_items = 11 WHERE tenant = 2}),
	'23514: completed items of a row of "deployments" exceed its total: completed_items = 11, total_items = 10',
	'counters past the total are refused, naming the table');
is(fails(q{UPDATE jobs SET phase = 'running' WHERE tenant = 1}),
	'23514: cannot move a row of "jobs" from terminal phase "done" to "running"',
	'leaving a terminal phase is refused without allow_restart');
is($coord->safe_psql('postgres', q{SELECT phase || ' ' || completed_items FROM jobs WHERE tenant = 1}),
	'done 5', 'refused writes change nothing');
$coord->safe_psql('postgres', q{
UPDATE deployments SET phase = 'failed' WHERE tenant = 3;
UPDATE deployments SET phase = 'queued' WHERE tenant = 3;
});
is($coord->safe_psql('postgres', q{
SELECT phase || ' ' || (finished_at IS NULL) FROM deployments WHERE tenant = 3}),
	'queued true', 'a restart (allow_restart) clears finished_at');

# history on the workers, under the table's name
my $jobs_history = q{
SELECT count(*) FROM deploy_progress.history WHERE relid::text = 'jobs'};
is($w1->safe_psql('postgres', $jobs_history) + $w2->safe_psql('postgres', $jobs_history), 6 + 6 + 2,
	'every transition is in the history of the shard\'s worker, under the table\'s name');
is($w1->safe_psql('postgres', q{SELECT count(*) FROM deploy_progress.history WHERE relid::text LIKE '%\_1%'})
	  + $w2->safe_psql('postgres', q{SELECT count(*) FROM deploy_progress.history WHERE relid::text LIKE '%\_1%'}),
	0, 'none under a shard\'s name');

# a lifecycle redefined on the coordinator reaches the shards
$coord->safe_psql('postgres', q{
SELECT count(*) FROM deploy_progress.define_lifecycle('job', '[
    {"phase": "todo", "kind": "pending"}, {"phase": "running", "kind": "active"},
    {"phase": "paused", "kind": "waiting"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
UPDATE jobs SET phase = 'paused' WHERE tenant > 2;
});
is($coord->safe_psql('postgres', q{SELECT count(*) FROM jobs WHERE phase = 'paused'}), '4',
	'a phase added to the lifecycle on the coordinator is accepted by every shard');

# a shard moved to the other worker: its new copy is configured the same way
my ($shard, $from_port) = split /\|/, $coord->safe_psql('postgres', q{
SELECT shardid, nodeport FROM citus_shards
 WHERE table_name = 'jobs'::regclass AND shardid = get_shard_id_for_distribution_column('jobs', 4)});
my ($from, $to) = $from_port == $w1->port ? ($w1, $w2) : ($w2, $w1);
$coord->safe_psql('postgres', sprintf(q{
SELECT citus_move_shard_placement(%d, '%s', %d, '%s', %d, 'force_logical');
}, $shard, $from->host, $from->port, $to->host, $to->port));
is($coord->safe_psql('postgres', qq{SELECT nodeport FROM citus_shards WHERE shardid = $shard}), $to->port,
	'the shard moved');
my $moved_before = $coord->safe_psql('postgres', q{SELECT phase_updated_at FROM jobs WHERE tenant = 4});
$coord->safe_psql('postgres', q{UPDATE jobs SET phase = 'running', completed_items = 1 WHERE tenant = 4});
is($coord->safe_psql('postgres', qq{
SELECT phase_updated_at > '$moved_before' FROM jobs WHERE tenant = 4}), 't',
	'writes to the moved shard are stamped');
is(fails(q{UPDATE jobs SET completed_items = 9 WHERE tenant = 4}),
	'23514: completed items of a row of "jobs" exceed its total: completed_items = 9, total_items = 5',
	'and checked');

# a move that copies the rows (block_writes, not logical replication):
# they arrive as they were, with no history
{
	my ($shard5, $port5) = split /\|/, $coord->safe_psql('postgres', q{
SELECT shardid, nodeport FROM citus_shards
 WHERE table_name = 'jobs'::regclass AND shardid = get_shard_id_for_distribution_column('jobs', 5)});
	my ($src, $dst) = $port5 == $w1->port ? ($w1, $w2) : ($w2, $w1);
	my $row5 = q{SELECT phase, phase_updated_at, heartbeat_at FROM jobs WHERE tenant = 5};
	my $before5 = $coord->safe_psql('postgres', $row5);
	my $count5 = q{SELECT count(*) FROM deploy_progress.history WHERE relid::text = 'jobs' AND key = '(5,1)'};
	my $hist5 = $dst->safe_psql('postgres', $count5);
	$coord->safe_psql('postgres', sprintf(q{
SELECT citus_move_shard_placement(%d, '%s', %d, '%s', %d, 'block_writes');
CALL citus_cleanup_orphaned_resources();
}, $shard5, $src->host, $src->port, $dst->host, $dst->port));
	is($coord->safe_psql('postgres', qq{SELECT nodeport FROM citus_shards WHERE shardid = $shard5}), $dst->port,
		'a shard moved with block_writes');
	is($coord->safe_psql('postgres', $row5), $before5, 'its rows keep their stamps');
	is($dst->safe_psql('postgres', $count5), $hist5,
		'the copy records no history (the row\'s history stays where it was written, and the readers read every worker)');
	is($coord->safe_psql('postgres', q{SELECT count(*) FROM deploy_progress.timeline('jobs', '(5,1)')}), '3',
		'timeline() still finds it');
}

# a shard split: the new shards (new shard ids) get the trigger and its
# argument, their copied rows keep their stamps and write no history
$coord->safe_psql('postgres', q{
CREATE TABLE split_jobs (tenant integer, id integer, phase deploy_progress.phase NOT NULL,
                         phase_updated_at timestamptz, heartbeat_at timestamptz, PRIMARY KEY (tenant, id));
SELECT create_distributed_table('split_jobs', 'tenant', shard_count => 2);
SELECT relid FROM deploy_progress.track('split_jobs');
INSERT INTO split_jobs SELECT g, 1, 'building' FROM generate_series(1, 10) g;
});
my $split_rows = q{SELECT string_agg(tenant || ' ' || phase_updated_at, ', ' ORDER BY tenant) FROM split_jobs};
my $split_before = $coord->safe_psql('postgres', $split_rows);
$coord->safe_psql('postgres', sprintf(q{
SELECT citus_split_shard_by_split_points(
           (SELECT min(shardid) FROM pg_dist_shard WHERE logicalrelid = 'split_jobs'::regclass), ARRAY['-1073741824'],
           ARRAY[(SELECT nodeid FROM pg_dist_node WHERE nodeport = %d), (SELECT nodeid FROM pg_dist_node WHERE nodeport = %d)],
           'block_writes');
}, $w1->port, $w2->port));
is($coord->safe_psql('postgres', q{SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'split_jobs'::regclass}), '3',
	'a shard split in two');
is($coord->safe_psql('postgres', $split_rows), $split_before, 'the split rows keep their stamps');
$coord->safe_psql('postgres', q{UPDATE split_jobs SET phase = 'starting'});
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM deploy_progress.in_flight WHERE relid = 'split_jobs'::regclass AND phase = 'starting' AND in_phase IS NOT NULL}),
	'10', 'writes to the new shards are stamped');
is($coord->safe_psql('postgres', q{
SELECT string_agg(DISTINCT n::text, ',') FROM (
  SELECT (SELECT count(*) FROM deploy_progress.timeline('split_jobs', format('(%s,1)', g))) n FROM generate_series(1, 10) g) x}),
	'2', 'and every row has its two transitions, none from the copy');
$coord->safe_psql('postgres', q{
CALL citus_cleanup_orphaned_resources();
SELECT deploy_progress.untrack('split_jobs');
});
my $split_triggers = q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'zz_deploy_progress%' AND tgrelid::regclass::text LIKE 'split_jobs%'};
is($w1->safe_psql('postgres', $split_triggers) + $w2->safe_psql('postgres', $split_triggers), 0,
	'untrack() removes the triggers from the new shards');

# the coordinator's global readers read the distributed tables across the
# shards, and the local table beside them
$coord->safe_psql('postgres', q{
CREATE TABLE local_deployments (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                                phase_updated_at timestamptz, heartbeat_at timestamptz);
SELECT relid FROM deploy_progress.track('local_deployments');
INSERT INTO local_deployments VALUES (1, 'building');
});
{
	my ($ret, $out, $err) = $coord->psql('postgres',
		q{SELECT string_agg(relid || ' ' || key || ' ' || phase, ', ' ORDER BY relid::text, key) FROM deploy_progress.in_flight});
	is($out, 'deployments (1,1) building, deployments (2,1) building, deployments (3,1) queued, deployments (4,1) building, '
		  . 'jobs (3,1) paused, jobs (4,1) running, jobs (5,1) paused, jobs (6,1) paused, local_deployments 1 building',
		'in_flight reads the rows of every shard, and of the local table');
	is($err, '', 'without warnings');
	($ret, $out, $err) = $coord->psql('postgres', q{
SELECT string_agg(relid || ' ' || key || ' ' || reason, ', ' ORDER BY relid::text, key)
  FROM deploy_progress.stuck(as_of => now() + interval '1 day')});
	is($out, 'deployments (1,1) no_heartbeat, deployments (2,1) no_heartbeat, deployments (3,1) queue_overdue, '
		  . 'deployments (4,1) no_heartbeat, jobs (4,1) no_heartbeat, local_deployments 1 no_heartbeat',
		'stuck() reads every shard (waiting rows are never stuck)');
	is($err, '', 'without warnings');
	($ret, $out, $err) = $coord->psql('postgres', q{
SELECT string_agg(labels->>'table' || ' ' || (labels->>'phase') || ' ' || value, ', ' ORDER BY labels->>'table', labels->>'phase')
  FROM deploy_progress.metrics WHERE name = 'deploy_progress_in_flight' AND value > 0});
	is($out, 'public.deployments building 3, public.deployments queued 1, public.jobs paused 3, public.jobs running 1, '
		  . 'public.local_deployments building 1', 'metrics counts the in-flight rows of every shard');
	is($err, '', 'without warnings');
}
is($coord->safe_psql('postgres', q{
SELECT string_agg(relid || ' ' || reason, ', ') FROM deploy_progress.stuck_tables(as_of => now() + interval '1 day')}),
	'deployments fleet_stall', 'stuck_tables() finds the stalled fleet of a distributed table');
is($coord->safe_psql('postgres', q{SELECT deploy_progress.progress('jobs', '(4,1)')->>'phase'}), 'running',
	'progress() reads one row of a distributed table');
like($coord->safe_psql('postgres', q{SELECT deploy_progress.describe('jobs', '(4,1)')}), qr/^Running/,
	'describe() too');
{
	# (the key is (tenant, id), the distribution column tenant)
	my ($ret, $out, $err) = $coord->psql('postgres',
		q{SET citus.log_remote_commands = on; SELECT deploy_progress.progress('jobs', '(4,1)')->>'phase'});
	my @reads = $err =~ /issuing SELECT [^\n]* FROM public\.jobs_\d+ /g;
	is(scalar(@reads) . " $out", '1 running', 'progress() of one row reads one shard');
}
is($coord->safe_psql('postgres', q{SELECT started_at IS NOT NULL FROM deploy_progress.timings('jobs', '(4,1)')}), 't',
	'timings() too');

# fail_stuck() from the coordinator: by key, on the row's shard, once
is($coord->safe_psql('postgres', q{
SELECT string_agg(relid || ' ' || key || ' ' || from_phase || '>' || to_phase || ' ' || reason, ', ' ORDER BY relid::text, key)
  FROM deploy_progress.fail_stuck('jobs', as_of => now() + interval '1 day')}),
	'jobs (4,1) running>error no_heartbeat', 'fail_stuck() fails the stuck row of a distributed table');
is($coord->safe_psql('postgres', q{SELECT phase FROM jobs WHERE tenant = 4}), 'error', 'on its shard');
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM deploy_progress.fail_stuck('jobs', as_of => now() + interval '1 day')}), '0',
	'a second sweep finds nothing to fail');
my $reason_sql = q{SELECT coalesce(string_agg(to_phase || ' ' || coalesce(reason, '-'), ', '), '')
  FROM deploy_progress.history WHERE relid::text = 'jobs' AND key = '(4,1)' AND to_phase = 'error'};
is($w1->safe_psql('postgres', $reason_sql) . $w2->safe_psql('postgres', $reason_sql), 'error no_heartbeat',
	'the shard\'s history records the failure once, with its reason');
# a row written after the sweep read it is left: the UPDATE re-checks the row version
is($coord->safe_psql('postgres', q{
BEGIN;
SELECT count(*) FROM deploy_progress.fail_stuck(as_of => now() + interval '1 day');
SELECT string_agg(tenant || ' ' || phase, ', ' ORDER BY tenant) FROM deployments;
ROLLBACK;
}), "5\n1 failed, 2 failed, 3 failed, 4 failed", 'a global sweep fails the rows of every table, across the shards');

# two sweeps at once, as two coordinators' crons overlapping: each stuck row
# is failed once; the second waits on the workers for the first's row
# locks, then finds newer row versions and leaves them
{
	my $first = $coord->background_psql('postgres');
	$first->query_safe('BEGIN');
	is($first->query_safe(q{SELECT count(*) FROM deploy_progress.fail_stuck('deployments', as_of => now() + interval '1 day')}),
		'4', 'a sweep fails the four stuck rows of the distributed table (not committed yet)');
	my $second = $coord->background_psql('postgres');
	$second->query_until(qr/started/, qq{\\echo started\nSELECT 'failed ' || count(*) FROM deploy_progress.fail_stuck('deployments', as_of => now() + interval '1 day');\n});
	my $waits = q{SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE%'};
	my $waiting = 0;
	for (1 .. 300)
	{
		$waiting = $w1->safe_psql('postgres', $waits) + $w2->safe_psql('postgres', $waits);
		last if $waiting;
		select(undef, undef, undef, 0.1);
	}
	is($waiting, 1, 'the overlapping sweep waits on a worker for a row the first one failed');
	$first->query_safe('COMMIT');
	like($second->query_until(qr/failed \d+/, ''), qr/failed 0/, 'and then fails none of them');
	$first->quit;
	$second->quit;
}
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM deploy_progress.transitions WHERE relid = 'deployments'::regclass AND to_phase = 'failed'})
	+ $w1->safe_psql('postgres', q{SELECT count(*) FROM deploy_progress.history WHERE relid::text = 'deployments' AND to_phase = 'failed'})
	+ $w2->safe_psql('postgres', q{SELECT count(*) FROM deploy_progress.history WHERE relid::text = 'deployments' AND to_phase = 'failed'}),
	5, 'each row is failed once in the history (4, and the one failed by hand before)');

# the history of a distributed table, read on the coordinator from the workers
is($coord->safe_psql('postgres', q{
SELECT string_agg(phase || coalesce(' ' || reason, ''), ', ' ORDER BY started_at) FROM deploy_progress.timeline('jobs', '(4,1)')}),
	'todo, running, paused, running, error no_heartbeat', 'timeline() reads the row\'s history on its shard\'s worker');
is($coord->safe_psql('postgres', q{
SELECT string_agg(phase || ' ' || count, ', ' ORDER BY phase) FROM deploy_progress.phase_stats('jobs') WHERE count > 0}),
	'paused 1, running 6, todo 6', 'phase_stats() counts the stays recorded on every worker');
is($coord->safe_psql('postgres', q{
SELECT string_agg(s->>'step' || ' ' || (s->>'status'), ', ') FROM jsonb_array_elements(deploy_progress.steps('jobs', '(4,1)')) s
 WHERE s->>'status' = 'failed'}),
	'running failed', 'steps() too');
is($coord->safe_psql('postgres', q{
SELECT string_agg(labels->>'phase' || ' ' || value, ', ' ORDER BY labels->>'phase') FROM deploy_progress.metrics
 WHERE name = 'deploy_progress_transitions_total' AND labels->>'table' = 'public.jobs' AND value > 0}),
	'done 2, error 1, paused 4, running 7, todo 6', 'the metrics count the transitions of every worker');
is($coord->safe_psql('postgres', q{
SELECT string_agg(labels->>'phase' || ' ' || value, ', ' ORDER BY labels->>'phase') FROM deploy_progress.metrics
 WHERE name = 'deploy_progress_transitions_total' AND labels->>'table' = 'public.deployments' AND value > 0}),
	'building 4, failed 5, queued 1', 'and, for a table distributed after it was tracked, those written before');

# Citus local tables, under their own name: tracked after
# citus_add_local_table_to_metadata(), or tracked before it and tracked
# again (Citus gave the table's OID to its shard)
$coord->safe_psql('postgres', q{
CREATE TABLE dep_l (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                    phase_updated_at timestamptz, heartbeat_at timestamptz);
SELECT relid FROM deploy_progress.track('dep_l');
INSERT INTO dep_l VALUES (1, 'building');
SELECT citus_add_local_table_to_metadata('dep_l');
CREATE TABLE dep_m (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                    phase_updated_at timestamptz, heartbeat_at timestamptz);
SELECT citus_add_local_table_to_metadata('dep_m');
SELECT relid FROM deploy_progress.track('dep_m');
INSERT INTO dep_m VALUES (1, 'building');
});
is(fails(q{SELECT * FROM deploy_progress.stuck('dep_l')}), '42704: table public.dep_l is not tracked',
	'a table tracked before it became a Citus local table is not tracked under its name');
like(($coord->psql('postgres', q{SELECT * FROM deploy_progress.stuck('dep_l')}))[2],
	qr/HINT:  Run deploy_progress.track\(\) on the table again/, 'and the error says what to do');
$coord->safe_psql('postgres', q{
SELECT relid FROM deploy_progress.track('dep_l');
UPDATE dep_l SET phase = 'starting' WHERE id = 1;
});
is($coord->safe_psql('postgres', q{
SELECT string_agg(relid::text, ', ' ORDER BY relid::text) FROM deploy_progress.tracked WHERE relid::text LIKE 'dep\_%'}),
	'dep_l, dep_m', 'tracked again, it is tracked under its name, and its shard no longer');
is($coord->safe_psql('postgres', q{SELECT string_agg(phase, ', ' ORDER BY started_at) FROM deploy_progress.timeline('dep_l', '1')}),
	'building, starting', 'with its history from before, under its name');
is($coord->safe_psql('postgres', q{
SELECT string_agg(relid || ' ' || key || ' ' || reason, ', ' ORDER BY relid::text)
  FROM deploy_progress.stuck(as_of => now() + interval '1 day') WHERE relid::text LIKE 'dep\_%'}),
	'dep_l 1 no_heartbeat, dep_m 1 no_heartbeat', 'stuck() gives both Citus local tables under their names');

# what does not reach the shards, or is different there
my $events = q{SELECT count(*) > 0 FROM deploy_progress.events_since(NULL, 1000) WHERE relid = 'jobs'::regclass};
is($w1->safe_psql('postgres', $events) . $w2->safe_psql('postgres', $events),
	'tt', 'each worker\'s events_since() gives the events of its shards');
$coord->safe_psql('postgres', q{
BEGIN;
SET LOCAL deploy_progress.stamping = off;
UPDATE jobs SET phase = 'running' WHERE tenant = 6;
COMMIT;
});
is($coord->safe_psql('postgres', q{SELECT heartbeat_at > now() - interval '1 minute' FROM jobs WHERE tenant = 6}), 't',
	'SET LOCAL deploy_progress.stamping = off on the coordinator does not reach the shards');
$coord->safe_psql('postgres', q{
BEGIN;
CREATE TABLE same_tx (tenant integer, id integer, phase deploy_progress.phase NOT NULL,
                      phase_updated_at timestamptz, PRIMARY KEY (tenant, id));
SELECT create_distributed_table('same_tx', 'tenant');
SELECT relid FROM deploy_progress.track('same_tx');
INSERT INTO same_tx VALUES (1, 1, 'building');
COMMIT;
INSERT INTO same_tx VALUES (2, 1, 'building');
});
is($coord->safe_psql('postgres', q{
SELECT string_agg(tenant || ' ' || (phase_updated_at IS NOT NULL), ', ' ORDER BY tenant) FROM same_tx}),
	'1 false, 2 true', 'a row written in the transaction that distributed the table is not stamped; later ones are');
$coord->safe_psql('postgres', q{SELECT deploy_progress.untrack('same_tx')});

# side storage is refused for a distributed table (the side table would be
# on the workers, out of the coordinator's readers' sight)
$coord->safe_psql('postgres', q{
CREATE TABLE side_jobs (tenant integer, id integer, phase text NOT NULL, PRIMARY KEY (tenant, id));
SELECT create_distributed_table('side_jobs', 'tenant');
});
is(fails(q{SELECT deploy_progress.track('side_jobs', lifecycle => 'job')}),
	'0A000: cannot track distributed table public.side_jobs in side storage',
	'track() refuses side storage on a distributed table');

# reference tables are refused
$coord->safe_psql('postgres', q{
CREATE TABLE ref_deployments (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT create_reference_table('ref_deployments');
});
is(fails(q{SELECT deploy_progress.track('ref_deployments')}),
	'0A000: cannot track reference table public.ref_deployments', 'track() refuses a reference table');
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM deploy_progress.tracked WHERE relid = 'ref_deployments'::regclass}), '0',
	'and tracks nothing');

# untrack() drops the triggers on every shard
$coord->safe_psql('postgres', q{SELECT deploy_progress.untrack('jobs')});
# (the old placement of the moved shard waits for Citus' deferred cleanup)
$coord->safe_psql('postgres', q{CALL citus_cleanup_orphaned_resources()});
my $shard_triggers = q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'zz_deploy_progress%' AND tgrelid::regclass::text LIKE 'jobs%'};
is($w1->safe_psql('postgres', $shard_triggers) + $w2->safe_psql('postgres', $shard_triggers), 0,
	'untrack() removes the triggers from the shards');
$coord->safe_psql('postgres', q{UPDATE jobs SET phase = 'anything' WHERE tenant = 5});
is($coord->safe_psql('postgres', q{SELECT phase FROM jobs WHERE tenant = 5}), 'anything',
	'and the table is written as any other');

# a worker down: the global readers skip the distributed tables with a
# warning and still read the others
$w2->stop;
{
	my ($ret, $out, $err) = $coord->psql('postgres',
		q{SELECT string_agg(relid || ' ' || key, ', ' ORDER BY relid::text) FROM deploy_progress.in_flight});
	like($out, qr/^(dep_l 1, dep_m 1, )?local_deployments 1$/, 'in_flight still reads the local tables with a worker down');
	like($err, qr/WARNING:  deploy_progress\.in_flight\(\) skipped table public\.deployments/,
		'and says which distributed table it skipped');
	($ret, $out, $err) = $coord->psql('postgres', q{
SELECT value FROM deploy_progress.metrics
 WHERE name = 'deploy_progress_in_flight' AND labels->>'table' = 'public.local_deployments' AND labels->>'phase' = 'building'});
	is($out, '1', 'metrics too');
	like($err, qr/skipped table public\.deployments/, 'with a warning');
	is(fails(q{SELECT * FROM deploy_progress.timeline('deployments', '(1,1)')}) =~ s/worker .*/worker/r,
		'08006: cannot read the history of table public.deployments on worker',
		'a reader asked about that table says which worker it cannot read');
}
$w2->start;

$_->stop for @nodes;
done_testing();
