# Schema-only dumps keep tracking.  pg_dump --schema-only (as Rails'
# structure.sql dumps it: --no-privileges --no-owner) loaded into a new
# database gives the tracked tables their triggers but none of the
# configuration, which is extension configuration data; the stamp trigger
# carries it as its argument.  The first write of each table, by a role
# that may not write the configuration, recreates it and the user
# lifecycles, equal to the source's, and is stamped.  Also with the custom
# format and pg_restore --schema-only, and a full dump of the restored
# database restores as usual.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use DpTap;

my $node = PostgreSQL::Test::Cluster->new('schema_only');
$node->init;
$node->append_conf('postgresql.conf', 'log_statement = none');
$node->start;
my $tmp = $PostgreSQL::Test::Utils::tmp_check;

$node->safe_psql('postgres', q{
CREATE ROLE app_owner LOGIN;
CREATE ROLE app_writer LOGIN;
CREATE DATABASE src OWNER app_owner;
});
$node->safe_psql('src', 'CREATE EXTENSION deploy_progress');
$node->safe_psql('src', 'ALTER SCHEMA public OWNER TO app_owner');

# Row storage with the built-in lifecycle and options; side storage with a
# text phase, a composite key and a lifecycle of the owner's; a phase
# column of the owner's enum type with another lifecycle; a partitioned
# table in side storage.  Then the configuration changes after track():
# a lifecycle redefined, an option updated in place.
my $schema_sql = deployments_table('deployments', 'name text') . q{
SELECT relid FROM deploy_progress.track('deployments', allow_restart => true, history => 'failures',
    progress_deadline => '3 minutes', heartbeat_deadline => '1 minute', notify_channel => 'deploys',
    speed_time_constant => '30 seconds');
SELECT count(*) FROM deploy_progress.define_lifecycle('job', '[
    {"phase": "todo", "kind": "pending", "deadline": "2 hours"},
    {"phase": "running", "kind": "active", "weight": 2.5},
    {"phase": "done", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
CREATE TABLE jobs (tenant text, id integer, phase text NOT NULL, completed_items integer, total_items integer,
                   PRIMARY KEY (tenant, id));
SELECT storage FROM deploy_progress.track('jobs', lifecycle => 'job');
CREATE TYPE step_phase AS ENUM ('planned', 'applying', 'applied', 'broken');
SELECT count(*) FROM deploy_progress.define_lifecycle('step', '[
    {"phase": "planned", "kind": "pending"}, {"phase": "applying", "kind": "active"},
    {"phase": "applied", "kind": "succeeded"}, {"phase": "broken", "kind": "failed"}]');
CREATE TABLE steps (id bigint PRIMARY KEY, phase step_phase NOT NULL,
                    phase_updated_at timestamp, heartbeat_at timestamp, started_at timestamp, finished_at timestamp);
SELECT relid FROM deploy_progress.track('steps', lifecycle => 'step', queue_deadline => '1 hour',
                                        time_zone => 'America/New_York');
CREATE TABLE runs (id integer, month date, phase text NOT NULL, PRIMARY KEY (id, month)) PARTITION BY RANGE (month);
CREATE TABLE runs_2026_01 PARTITION OF runs FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
SELECT storage FROM deploy_progress.track('runs', lifecycle => 'job', history => 'off');

SELECT count(*) FROM deploy_progress.define_lifecycle('job', '[
    {"phase": "todo", "kind": "pending", "deadline": "3 hours"},
    {"phase": "running", "kind": "active", "weight": 2.5},
    {"phase": "paused", "kind": "waiting"},
    {"phase": "done", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
UPDATE deploy_progress.tracked SET phase_deadline = '20 minutes' WHERE relid = 'deployments'::regclass;
INSERT INTO deployments (id, name, phase) VALUES (1, 'old', 'building');
INSERT INTO jobs VALUES ('acme', 1, 'running', 0, 10);
};
$node->safe_psql('src', "SET ROLE app_owner;\n" . $schema_sql);

# The configuration as text, with table names for OIDs (and without the
# creation time of lifecycles, which is that of their recreation).
my $config_sql = q{
SET TimeZone = 'UTC';
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
    SELECT 'tracked ' || t.relid::text || ' ' || (to_jsonb(t) - 'relid')::text FROM deploy_progress.tracked t
    UNION ALL SELECT 'lifecycle ' || l.name || ' ' || l.owner::text || ' ' || l.builtin FROM deploy_progress.lifecycles l
    UNION ALL SELECT 'phase ' || p::text FROM deploy_progress.lifecycle_phases p
) s(x);
};
my $config = $node->safe_psql('src', $config_sql);
like($config, qr/^phase \(job,3,paused,waiting/m, 'the source has the redefined lifecycle');
like($config, qr/^tracked deployments .*"phase_deadline": "00:20:00"/m, 'the source has the updated option');

my $unconfigured_sql = q{
SELECT (SELECT count(*) FROM deploy_progress.tracked) || ' '
    || (SELECT string_agg(name, ',' ORDER BY name) FROM deploy_progress.lifecycles) || ' '
    || (SELECT count(*) FROM pg_trigger WHERE tgname = 'zz_deploy_progress_stamp' AND tgparentid = 0)};

# The first writes, as a role that may write the tables and nothing else;
# then tracking works as on the source.
my $writes_sql = q{
INSERT INTO deployments (id, name, phase, completed_items, total_items) VALUES (1, 'web', 'transferring', 0, 10);
INSERT INTO jobs VALUES ('acme', 1, 'running', 0, 10);
INSERT INTO steps (id, phase) VALUES (1, 'applying');
INSERT INTO runs VALUES (1, '2026-01-15', 'running');
UPDATE deployments SET completed_items = 5 WHERE id = 1;
SELECT (SELECT (started_at = phase_updated_at AND progress_updated_at >= phase_updated_at AND heartbeat_at IS NOT NULL)::text
          FROM deployments WHERE id = 1)
    || ' ' || (SELECT (started_at = phase_updated_at)::text FROM steps WHERE id = 1)
    || ' ' || (SELECT count(*) FROM deploy_progress.side_timings WHERE relid IN ('jobs'::regclass, 'runs'::regclass) AND started_at IS NOT NULL)
    || ' ' || (deploy_progress.progress('deployments', '1') ->> 'percent');
};
sub restored_tracks
{
	my ($db, $what, $expected) = @_;
	is($node->safe_psql($db, $unconfigured_sql), '0 default 4',
		"$what: the triggers are there, the configuration and user lifecycles are not");
	$node->safe_psql($db, q{GRANT USAGE ON SCHEMA public TO app_writer;
GRANT SELECT, INSERT, UPDATE ON deployments, jobs, steps, runs TO app_writer});
	is($node->safe_psql($db, $writes_sql, extra_params => [ '-U', 'app_writer' ]), 'true true 2 50',
		"$what: the first writes, by a role that may not write the configuration, are stamped");
	is($node->safe_psql($db, $config_sql), $expected, "$what: the configuration is the source's");
	my ($ret, $out, $err) = $node->psql($db, q{UPDATE jobs SET phase = 'lost'}, extra_params => [ '-U', 'app_writer' ]);
	like($err, qr/"lost" is not a phase of the lifecycle of table "jobs"/, "$what: writes are checked");
	($ret, $out, $err) = $node->psql($db, q{UPDATE deployments SET completed_items = 11}, extra_params => [ '-U', 'app_writer' ]);
	like($err, qr/completed items of a row of "deployments" exceed its total/, "$what: counters are checked");
}

# 1. structure.sql as Rails dumps it, loaded into a new database
# (db:test:prepare recreates it) by a role that may create the extension;
# with --no-owner the tables are that role's, and so the lifecycles
# recreated by the first writes
$node->command_ok(
	[ 'pg_dump', '--schema-only', '--no-privileges', '--no-owner', '-f', "$tmp/structure.sql", '-d', 'src' ],
	'pg_dump --schema-only --no-privileges --no-owner');
like(slurp_file("$tmp/structure.sql"), qr/EXECUTE FUNCTION deploy_progress\.stamp\('\{"v": 1, /,
	'the dump has the configuration in the stamp triggers');
$node->safe_psql('postgres', 'CREATE DATABASE structure');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'structure', '-f', "$tmp/structure.sql" ],
	'structure.sql loaded');
(my $expected = $config) =~ s/^(lifecycle (?:job|step)) app_owner /$1 postgres /mg;
restored_tracks('structure', 'structure.sql', $expected);

# 2. custom format, pg_restore --schema-only into a new database
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/src.dump", '-d', 'src' ], 'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE restored OWNER app_owner');
$node->command_ok([ 'pg_restore', '--exit-on-error', '--schema-only', '-d', 'restored', "$tmp/src.dump" ],
	'pg_restore --schema-only');
restored_tracks('restored', 'pg_restore --schema-only', $config);

# 3. a full dump of a database whose configuration was recreated restores
# as any other
$node->command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/restored.dump", '-d', 'restored' ], 'pg_dump -Fc of it');
$node->safe_psql('postgres', 'CREATE DATABASE again');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'again', "$tmp/restored.dump" ], 'pg_restore');
is($node->safe_psql('again', $config_sql), $config, 'full restore: the configuration is the source\'s');
is( $node->safe_psql('again', q{
UPDATE deployments SET phase = 'health_check' WHERE id = 1;
SELECT phase_updated_at > started_at FROM deployments WHERE id = 1}), 't', 'full restore: writes are stamped');

$node->stop;
done_testing();
