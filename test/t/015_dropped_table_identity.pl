# What is kept of a dropped table never attaches to another table, even
# after a dump is restored into a cluster where another role's table got
# the dropped table's OID.  On 1.0 the history of a dropped table kept the
# table's OID; pg_dump wrote it as a bare number (a regclass that names no
# relation), and after the restore the history showed as the history of
# whichever table had that OID.  Now dropping a table detaches its history
# from the OID (relid NULL) and keeps its name in dropped_table.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = $PostgreSQL::Test::Utils::tmp_check;

# 1. a tracked table with history, dropped, then dumped
my $src = PostgreSQL::Test::Cluster->new('source');
$src->init;
$src->append_conf('postgresql.conf', 'log_statement = none');
$src->start;
$src->safe_psql('postgres', 'CREATE DATABASE app');
$src->safe_psql('app', q{
CREATE EXTENSION deploy_progress;
CREATE TABLE kept (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL);
SELECT relid FROM deploy_progress.track('kept');
INSERT INTO kept VALUES (1, 'queued');
CREATE TABLE gone (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, failure_reason text);
SELECT relid FROM deploy_progress.track('gone');
INSERT INTO gone VALUES (1, 'queued'), (2, 'queued');
UPDATE gone SET phase = 'building';
UPDATE gone SET phase = 'failed', failure_reason = 'secret reason of the old table' WHERE id = 2;
});
my $gone_oid = $src->safe_psql('app', q{SELECT 'gone'::regclass::oid});
my $gone_rows = $src->safe_psql('app', q{SELECT count(*) FROM deploy_progress.history WHERE relid = 'gone'::regclass});
is($gone_rows, '5', 'the table to drop has history');
$src->safe_psql('app', 'DROP TABLE gone');
is($src->safe_psql('app', qq{SELECT count(*) FROM deploy_progress.history WHERE relid::oid = $gone_oid}),
	'0', 'after DROP TABLE no history row carries the OID');
is($src->safe_psql('app', q{SELECT count(*) FROM deploy_progress.history WHERE relid IS NULL AND dropped_table = 'public.gone'}),
	$gone_rows, 'the history is kept, under the table\'s name');
$src->command_ok([ 'pg_dump', '-Fc', '-d', $src->connstr('app'), '-f', "$tmp/app.dump" ], 'pg_dump');

# 2. a fresh cluster where another role's table gets the dropped table's OID
my $dst = PostgreSQL::Test::Cluster->new('target');
$dst->init;
$dst->append_conf('postgresql.conf', 'log_statement = none');
$dst->start;
$dst->safe_psql('postgres', 'CREATE DATABASE app');
$dst->safe_psql('app', 'CREATE ROLE bob; GRANT CREATE ON SCHEMA public TO bob');
# every large object takes the next OID: take them up to the one before
my $next = $dst->safe_psql('app', 'SELECT lo_create(0)');
ok($next < $gone_oid, "the fresh cluster's OIDs ($next) are below the dropped table's ($gone_oid)");
$dst->safe_psql('app', qq{
DO \$\$
BEGIN
    WHILE lo_create(0) < $gone_oid - 1 LOOP
    END LOOP;
END \$\$;
SET ROLE bob;
CREATE TABLE victim (id integer PRIMARY KEY, phase text);
});
is($dst->safe_psql('app', q{SELECT 'victim'::regclass::oid}), $gone_oid,
	"bob's table got the dropped table's OID");

# 3. the restore attaches nothing to it
$dst->command_ok([ 'pg_restore', '-d', $dst->connstr('app'), "$tmp/app.dump" ], 'pg_restore');
is($dst->safe_psql('app', q{SELECT count(*) FROM deploy_progress.history WHERE relid = 'victim'::regclass}),
	'0', "no history row names bob's table");
is($dst->safe_psql('app', q{SET ROLE bob; SELECT count(*) FROM deploy_progress.transitions WHERE relid = 'victim'::regclass}),
	'0', 'bob sees no transitions of his table');
is($dst->safe_psql('app', q{SELECT count(*) FROM deploy_progress.history WHERE reason LIKE 'secret%' AND relid IS NOT NULL}),
	'0', 'the old failure reason is attached to no table');
is($dst->safe_psql('app', q{SELECT count(*) FROM deploy_progress.history WHERE relid IS NULL AND dropped_table = 'public.gone'}),
	$gone_rows, 'the dropped table\'s history is restored under its name');
is($dst->safe_psql('app', q{SELECT count(*) FROM deploy_progress.transitions WHERE relid = 'kept'::regclass}),
	'1', 'the history of a table that still exists follows it');

$src->stop;
$dst->stop;
done_testing();
