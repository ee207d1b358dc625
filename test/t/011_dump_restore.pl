# pg_dump and pg_restore keep what deploy_progress knows: user lifecycles,
# tracking configuration, in-row timings (byte for byte), side-table timings
# and the history; restored rows are not stamped again, and tracking works
# on the restored tables.  Covers the custom format with pg_restore, the
# plain format with psql, a data-only restore into an existing schema with
# deploy_progress.stamping off, and a dump taken by a database owner that
# is not a superuser.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use DpTap;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', 'log_statement = none');
$node->start;
my $tmp = $PostgreSQL::Test::Utils::tmp_check;

# Tables of every kind, driven through a few phases in separate statements
# so that their stamps differ.
my $schema_sql = deployments_table('deployments', 'name text') . q{
SELECT relid FROM deploy_progress.track('deployments', allow_restart => true, history => 'failures',
    progress_deadline => '3 minutes', heartbeat_deadline => '1 minute', notify_channel => 'deploys',
    speed_time_constant => '30 seconds');
SELECT count(*) FROM deploy_progress.define_lifecycle('job', '[
    {"phase": "todo", "kind": "pending", "deadline": "2 hours"},
    {"phase": "running", "kind": "active", "weight": 2.5},
    {"phase": "paused", "kind": "waiting"}, {"phase": "done", "kind": "succeeded"},
    {"phase": "error", "kind": "failed"}]');
-- side storage, text phase, composite key
CREATE TABLE jobs (tenant text, id integer, phase text NOT NULL, completed_items integer, total_items integer,
                   PRIMARY KEY (tenant, id));
SELECT storage FROM deploy_progress.track('jobs', lifecycle => 'job');
-- a phase column of the user's own enum type (its OIDs change on restore)
CREATE TYPE step_phase AS ENUM ('planned', 'applying', 'applied', 'broken');
SELECT count(*) FROM deploy_progress.define_lifecycle('step', '[
    {"phase": "planned", "kind": "pending"}, {"phase": "applying", "kind": "active"},
    {"phase": "applied", "kind": "succeeded"}, {"phase": "broken", "kind": "failed"}]');
CREATE TABLE steps (id bigint PRIMARY KEY, phase step_phase NOT NULL,
                    phase_updated_at timestamptz, heartbeat_at timestamptz,
                    started_at timestamptz, finished_at timestamptz);
SELECT relid FROM deploy_progress.track('steps', lifecycle => 'step', queue_deadline => '1 hour');
};
my $data_sql = q{
INSERT INTO deployments (id, name, phase, completed_items, total_items)
SELECT g, 'app-' || g, 'queued', 0, 100 FROM generate_series(1, 6) g;
INSERT INTO jobs SELECT t, g, 'todo', 0, 10 FROM unnest(ARRAY['acme', 'b c']) t, generate_series(1, 3) g;
INSERT INTO steps (id, phase) SELECT g, 'planned' FROM generate_series(1, 4) g;
SELECT pg_sleep(0.01);
UPDATE deployments SET phase = 'transferring', completed_items = 10 WHERE id <= 4;
UPDATE jobs SET phase = 'running', completed_items = 2 WHERE id <= 2;
UPDATE steps SET phase = 'applying' WHERE id <= 3;
SELECT pg_sleep(0.01);
UPDATE deployments SET completed_items = 30 WHERE id <= 3;
UPDATE deployments SET phase = 'succeeded', completed_items = 100 WHERE id = 1;
UPDATE deployments SET phase = 'failed', failure_reason = 'boom' WHERE id = 2;
UPDATE jobs SET phase = 'done', completed_items = 10 WHERE id = 1;
UPDATE steps SET phase = 'applied' WHERE id = 1;
SELECT pg_sleep(0.01);
UPDATE jobs SET completed_items = 5 WHERE id = 2;
UPDATE deployments SET name = name || '!' WHERE id = 4;
};

# Everything that must survive, as text: each tracked table's rows, the
# configuration, the side timings and the history (table names instead of
# OIDs, which change).
my $snapshot_sql = q{
SET TimeZone = 'UTC';
SELECT string_agg(x, E'\n' ORDER BY ord, x) FROM (
    SELECT 1, 'deployments ' || d::text FROM deployments d
    UNION ALL SELECT 2, 'jobs ' || j::text FROM jobs j
    UNION ALL SELECT 3, 'steps ' || s::text FROM steps s
    UNION ALL SELECT 4, 'lifecycle ' || l.name || ' ' || l.owner::text || ' ' || l.builtin || ' '
                        || CASE WHEN NOT l.builtin THEN l.created_at::text ELSE 'created with the extension' END
      FROM deploy_progress.lifecycles l
    UNION ALL SELECT 5, 'phase ' || p::text FROM deploy_progress.lifecycle_phases p
    UNION ALL SELECT 6, 'tracked ' || t.relid::text || ' ' || (to_jsonb(t) - 'relid')::text FROM deploy_progress.tracked t
    UNION ALL SELECT 7, 'timings ' || s.relid::text || ' ' || (to_jsonb(s) - 'relid')::text FROM deploy_progress.timings s
    UNION ALL SELECT 8, 'index ' || c.relname || ' ' || pg_get_indexdef(c.oid) || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
      FROM pg_class c WHERE c.relname LIKE '%dp_in_flight_idx'
    UNION ALL SELECT 9, 'trigger ' || tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text
      FROM pg_trigger WHERE tgname LIKE 'zz_deploy_progress%'
) s(ord, x);
};
# the transition history, row by row
my $history_snapshot_sql = q{
SET TimeZone = 'UTC';
SELECT count(*) || E'\n' || coalesce(string_agg(h.relid::text || ' ' || (to_jsonb(h) - 'relid')::text, E'\n' ORDER BY h.id), '')
  FROM deploy_progress.history h;
};

# Compare a restored database with the original.
sub same_as_source
{
	my ($db, $src, $what) = @_;
	my $expected = $node->safe_psql($src, $snapshot_sql);
	is($node->safe_psql($db, $snapshot_sql), $expected,
		"$what: rows, timings (in-row and side), lifecycles and configuration restored unchanged");
	is($node->safe_psql($db, $history_snapshot_sql), $node->safe_psql($src, $history_snapshot_sql),
		"$what: history restored unchanged");
}

# Tracking works on a restored database: writes are stamped and validated.
sub tracking_works
{
	my ($db, $what) = @_;
	is( $node->safe_psql($db, q{
CREATE TEMP TABLE before AS SELECT * FROM deployments;
CREATE TEMP TABLE side_before AS SELECT * FROM deploy_progress.timings;
UPDATE deployments SET completed_items = completed_items + 1 WHERE id = 3;
UPDATE deployments SET phase = 'health_check' WHERE id = 4;
UPDATE jobs SET completed_items = 6 WHERE tenant = 'b c' AND id = 2;
UPDATE steps SET phase = 'broken' WHERE id = 2;
SELECT string_agg(x, ' ' ORDER BY x) FROM (
    SELECT 'd3:' || (n.heartbeat_at > o.heartbeat_at) || (n.progress_updated_at > o.progress_updated_at)
           || (n.phase_updated_at = o.phase_updated_at) AS x
      FROM deployments n JOIN before o USING (id) WHERE id = 3
    UNION ALL
    SELECT 'd4:' || (n.phase_updated_at > o.phase_updated_at) || (n.started_at = o.started_at)
      FROM deployments n JOIN before o USING (id) WHERE id = 4
    UNION ALL
    SELECT 'j:' || (n.heartbeat_at > o.heartbeat_at) || (n.progress_updated_at > o.progress_updated_at)
           || (n.phase_updated_at = o.phase_updated_at)
      FROM deploy_progress.timings n JOIN side_before o USING (relid, key)
     WHERE n.relid = 'jobs'::regclass AND n.key = '("b c",2)'
    UNION ALL
    SELECT 's2:' || phase || (finished_at = phase_updated_at) FROM steps WHERE id = 2) s}),
		'd3:truetruetrue d4:truetrue j:truetruetrue s2:brokentrue',
		"$what: writes to restored rows are stamped");
	is( $node->safe_psql($db, q{
INSERT INTO jobs VALUES ('new', 1, 'running', 0, 5);
INSERT INTO steps (id, phase) VALUES (99, 'applying');
SELECT (SELECT count(*) FROM deploy_progress.timings WHERE relid = 'jobs'::regclass AND key = '(new,1)' AND started_at IS NOT NULL)
    || ' ' || (SELECT started_at = phase_updated_at FROM steps WHERE id = 99)}),
		'1 true', "$what: new rows are stamped");

	my @bad = (
		[ q{UPDATE deployments SET completed_items = 101 WHERE id = 3},
			qr/completed items of a row of "deployments" exceed its total/ ],
		[ q{UPDATE jobs SET phase = 'lost' WHERE id = 3},
			qr/"lost" is not a phase of the lifecycle of table "jobs"/ ],
		[ q{UPDATE steps SET phase = 'applying' WHERE id = 1},
			qr/cannot move a row of "steps" from terminal phase "applied" to "applying"/ ]);
	for my $b (@bad)
	{
		my ($ret, $out, $err) = $node->psql($db, $b->[0]);
		like($err, $b->[1], "$what: still validated: $b->[0]");
	}
	is( $node->safe_psql($db, q{
SELECT (SELECT count(*) FROM deploy_progress.stuck(as_of => now() + interval '1 day'))
    || ' ' || (deploy_progress.progress('deployments', '3') ->> 'phase')}),
		'12 transferring', "$what: stuck() and progress() read the restored tables");
}

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION deploy_progress');
$node->safe_psql('src', $schema_sql . $data_sql);
like($node->safe_psql('src', $snapshot_sql), qr/timings jobs .*"heartbeat_at"/,
	'the source has side timings');

# 1. custom format, pg_restore into a new database
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/src.dump", '-d', 'src' ], 'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'restored', "$tmp/src.dump" ], 'pg_restore');
same_as_source('restored', 'src', 'pg_restore');
tracking_works('restored', 'pg_restore');

# 2. plain format, replayed with psql
$node->command_ok([ 'pg_dump', '-Fp', '-f', "$tmp/src.sql", '-d', 'src' ], 'pg_dump -Fp');
$node->safe_psql('postgres', 'CREATE DATABASE replayed');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'replayed', '-f', "$tmp/src.sql" ],
	'plain dump replayed with psql');
same_as_source('replayed', 'src', 'plain dump');
tracking_works('replayed', 'plain dump');

# 3. data only, into a database that already has the schema and therefore
# the triggers: with stamping off the rows keep their timings
$node->safe_psql('postgres', 'CREATE DATABASE reloaded');
$node->command_ok([ 'pg_restore', '--exit-on-error', '--schema-only', '-d', 'reloaded', "$tmp/src.dump" ],
	'schema-only restore');
{
	local $ENV{PGOPTIONS} = '-c deploy_progress.stamping=off';
	$node->command_ok([ 'pg_restore', '--exit-on-error', '--data-only', '-d', 'reloaded', "$tmp/src.dump" ],
		'data-only restore with deploy_progress.stamping = off');
}
same_as_source('reloaded', 'src', 'data-only restore');
tracking_works('reloaded', 'data-only restore');

# 4. a database owner that is not a superuser dumps its database
$node->safe_psql('postgres', q{
CREATE ROLE app_owner LOGIN;
CREATE DATABASE appdb OWNER app_owner;
});
$node->safe_psql('appdb', 'CREATE EXTENSION deploy_progress');
$node->safe_psql('appdb', "SET ROLE app_owner;\n" . $schema_sql . $data_sql);
# (PostgreSQL 13 has no pg_database_owner: the grants the README gives for 13)
if ($node->safe_psql('postgres', 'SHOW server_version_num') < 140000)
{
	$node->safe_psql('appdb', q{
DO $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'deploy_progress' LOOP
        EXECUTE format('GRANT SELECT ON %s TO app_owner', rel);
    END LOOP;
END
$$;
});
}
$node->command_ok([ 'pg_dump', '-Fc', '-U', 'app_owner', '-f', "$tmp/appdb.dump", '-d', 'appdb' ],
	'a non-superuser database owner can dump its database');
$node->safe_psql('postgres', 'CREATE DATABASE appdb_copy OWNER app_owner');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'appdb_copy', "$tmp/appdb.dump" ],
	'its dump restores');
same_as_source('appdb_copy', 'appdb', 'dump by the database owner');
like($node->safe_psql('appdb_copy', q{SELECT string_agg(name || ':' || owner::text, ' ' ORDER BY name) FROM deploy_progress.lifecycles}),
	qr/^default:postgres job:app_owner step:app_owner$/, 'lifecycles keep their owner');

$node->stop;
done_testing();
