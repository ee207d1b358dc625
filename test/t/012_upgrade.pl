# Upgrades: install the oldest version of deploy_progress found in sql/,
# create tracked tables with data, then walk every ALTER EXTENSION
# deploy_progress UPDATE TO along the chain of update scripts in sql/,
# checking after each step that the data and configuration are intact and
# that tracking still works; finally the upgraded extension must match a
# fresh install of the default version, object by object (functions with
# their signatures, volatility, settings and bodies; tables with their
# columns in order, constraints, indexes and triggers; views; types;
# privileges; comments; what pg_dump keeps).
#
# With a single released version the chain is empty and only the final
# comparison runs.  So that the walking code itself is exercised, the test
# also builds a private copy of the installation (the binaries find their
# share directory next to themselves) whose extension directory holds a
# throwaway version 1.0.1: a comment-only update script must pass, and an
# update script that changes a function's volatility and adds a column
# must be caught by the final comparison.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Path qw(make_path);
use FindBin;
use lib $FindBin::RealBin;
use DpTap;

my $repo = "$FindBin::RealBin/../..";

# Versions in a directory of scripts: install scripts deploy_progress--V.sql
# and update scripts deploy_progress--A--B.sql.
sub scripts_in
{
	my ($dir) = @_;
	my (@install, @updates);
	opendir(my $dh, $dir) or die "cannot read $dir: $!";
	for my $f (sort readdir $dh)
	{
		next unless $f =~ /^deploy_progress--(.+)\.sql$/;
		my @v = split /--/, $1;
		push @install, $v[0] if @v == 1;
		push @updates, [@v] if @v == 2;
	}
	closedir $dh;
	return (\@install, \@updates);
}

sub default_version_in
{
	my ($control) = @_;
	my ($v) = slurp_file($control) =~ /^\s*default_version\s*=\s*'([^']+)'/m;
	return $v;
}

# Version order: numerically part by part (1.9 < 1.10), then as text.
sub vcmp
{
	my ($x, $y) = @_;
	my @x = split /\./, $x;
	my @y = split /\./, $y;
	while (@x && @y)
	{
		my ($p, $q) = (shift @x, shift @y);
		my $c = ($p =~ /^\d+$/ && $q =~ /^\d+$/) ? $p <=> $q : $p cmp $q;
		return $c if $c;
	}
	return @x <=> @y;
}

# The steps from the oldest install script to the default version, each
# time taking the update to the lowest next version, so every version on
# the way is visited.  Dies when the chain is broken.
sub chain
{
	my ($install, $updates, $default) = @_;
	my ($from) = sort { vcmp($a, $b) } @$install;
	die 'no install script' unless defined $from;
	my @steps;
	my $cur = $from;
	while ($cur ne $default)
	{
		my ($next) = sort { vcmp($a->[1], $b->[1]) } grep { $_->[0] eq $cur } @$updates;
		die "no update script from version $cur towards $default" unless $next;
		push @steps, $next->[1];
		$cur = $next->[1];
		die 'update scripts form a cycle' if @steps > @$updates;
	}
	return ($from, \@steps);
}

# Tracked tables in every storage, with data, and a snapshot function of
# everything an upgrade must keep.
my $fixture_sql = deployments_table('deployments') . q{
SELECT relid FROM deploy_progress.track('deployments', allow_restart => true, progress_deadline => '7 minutes');
SELECT count(*) FROM deploy_progress.define_lifecycle('job', '[
    {"phase": "todo", "kind": "pending", "deadline": "1 hour"}, {"phase": "running", "kind": "active", "weight": 3},
    {"phase": "done", "kind": "succeeded"}, {"phase": "error", "kind": "failed"}]');
CREATE TABLE jobs (id integer PRIMARY KEY, phase text NOT NULL, completed_items integer, total_items integer);
SELECT storage FROM deploy_progress.track('jobs', lifecycle => 'job');
INSERT INTO deployments (id, phase, completed_items, total_items) VALUES (1, 'queued', 0, 10), (2, 'building', 1, 10), (3, 'failed', 2, 10);
INSERT INTO jobs VALUES (1, 'todo', 0, 5), (2, 'running', 1, 5), (3, 'done', 5, 5);
UPDATE deployments SET completed_items = 4 WHERE id = 2;
UPDATE jobs SET completed_items = 2 WHERE id = 2;

-- a tracked row in the layout of 1.1 (role columns in "columns"), also
-- when it is read under 1.0 (one *_column column per role): what 1.1's
-- update script must turn each row into
CREATE FUNCTION tracked_state(t jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT CASE WHEN t ? 'columns' THEN t
                ELSE t - ARRAY['completed_column', 'total_column', 'phase_updated_column', 'progress_updated_column',
                               'heartbeat_column', 'started_column', 'finished_column', 'speed_column',
                               'speed_updated_column', 'reason_column']
                       || jsonb_build_object('columns', jsonb_strip_nulls(jsonb_build_object(
                              'completed_items', t -> 'completed_column', 'total_items', t -> 'total_column',
                              'phase_updated_at', t -> 'phase_updated_column', 'progress_updated_at', t -> 'progress_updated_column',
                              'heartbeat_at', t -> 'heartbeat_column', 'started_at', t -> 'started_column',
                              'finished_at', t -> 'finished_column', 'items_per_second', t -> 'speed_column',
                              'speed_updated_at', t -> 'speed_updated_column', 'failure_reason', t -> 'reason_column')))
           END
$$;
CREATE FUNCTION upgrade_state() RETURNS TABLE (what text, key text, state jsonb) LANGUAGE sql AS $$
    SELECT 'deployments', d.id::text, to_jsonb(d) FROM deployments d
    UNION ALL SELECT 'jobs', j.id::text, to_jsonb(j) FROM jobs j
    UNION ALL SELECT 'lifecycles', l.name, to_jsonb(l) FROM deploy_progress.lifecycles l
    UNION ALL SELECT 'lifecycle_phases', p.lifecycle || '/' || p.phase, to_jsonb(p) FROM deploy_progress.lifecycle_phases p
    UNION ALL SELECT 'tracked', t.relid::text, tracked_state(to_jsonb(t)) FROM deploy_progress.tracked t
    UNION ALL SELECT 'timings', s.relid::text || '/' || s.key, to_jsonb(s) FROM deploy_progress.timings s
$$;
CREATE TABLE upgrade_snapshot AS SELECT * FROM upgrade_state();
};

# What an upgrade changed in the data and configuration: rows gone, user
# rows changed, configuration rows that lost or changed a value (new
# columns and new built-in rows are allowed).
my $lost_sql = q{
SELECT string_agg(s.what || ' ' || s.key || CASE WHEN c.state IS NULL THEN ' is gone' ELSE ' changed: ' || c.state::text END,
                  E'\n' ORDER BY s.what, s.key)
  FROM upgrade_snapshot s LEFT JOIN upgrade_state() c USING (what, key)
 WHERE c.state IS NULL
    OR (s.what IN ('deployments', 'jobs') AND c.state <> s.state)
    OR NOT c.state @> s.state
};

# Tracking works: new rows are stamped, writes are validated, the readers work.
sub check_tracking
{
	my ($node, $db, $what, $id) = @_;
	is( $node->safe_psql($db, qq{
INSERT INTO deployments (id, phase, completed_items, total_items) VALUES ($id, 'queued', 0, 10);
UPDATE deployments SET phase = 'transferring', completed_items = 1 WHERE id = $id;
UPDATE deployments SET completed_items = completed_items + 1 WHERE id = 2;
INSERT INTO jobs VALUES ($id, 'running', 0, 3);
SELECT (d.started_at = d.phase_updated_at AND d.progress_updated_at = d.phase_updated_at)
    || ' ' || (s.started_at = s.phase_updated_at)
    || ' ' || (SELECT d2.progress_updated_at > (u.state ->> 'progress_updated_at')::timestamptz
                 FROM deployments d2, upgrade_snapshot u WHERE d2.id = 2 AND u.what = 'deployments' AND u.key = '2')
    || ' ' || (deploy_progress.progress('deployments', '$id') ->> 'phase')
    || ' ' || (SELECT count(*) FROM deploy_progress.stuck('jobs', now() + interval '1 day') WHERE key = '$id')
  FROM deployments d, deploy_progress.timings s
 WHERE d.id = $id AND s.relid = 'jobs'::regclass AND s.key = '$id'}),
		'true true true transferring 1', "$what: tracking works");
	my ($ret, $out, $err) = $node->psql($db, "UPDATE jobs SET phase = 'bogus' WHERE id = $id");
	like($err, qr/"bogus" is not a phase of the lifecycle of table "jobs"/, "$what: writes are validated");
	$node->safe_psql($db, 'DELETE FROM upgrade_snapshot; INSERT INTO upgrade_snapshot SELECT * FROM upgrade_state();');
}

# Everything the extension consists of, one line per property.
my $describe_sql = q{
WITH ext AS (SELECT e.oid, e.extnamespace, e.extconfig, e.extcondition, e.extrelocatable
               FROM pg_extension e WHERE e.extname = 'deploy_progress'),
m AS (SELECT d.classid, d.objid FROM pg_depend d JOIN ext ON d.refobjid = ext.oid
       WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'),
rels AS (SELECT c.* FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid),
lines(line) AS (
    SELECT 'member ' || pg_describe_object(m.classid, m.objid, 0) FROM m
    UNION ALL
    SELECT format('function %s(%s) returns %s: kind %s, volatility %s, strict %s, parallel %s, security definer %s, leakproof %s, cost %s, rows %s, settings %s, language %s, symbol %s %s, body md5 %s, acl %s, comment %s',
                  p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.prokind,
                  p.provolatile, p.proisstrict, p.proparallel, p.prosecdef, p.proleakproof, p.procost, p.prorows,
                  p.proconfig, l.lanname, p.probin, CASE WHEN l.lanname = 'c' THEN p.prosrc END, md5(p.prosrc), p.proacl,
                  obj_description(p.oid, 'pg_proc'))
      FROM m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
      JOIN pg_language l ON l.oid = p.prolang
    UNION ALL
    SELECT format('relation %s: kind %s, persistence %s, options %s, row security %s/%s, acl %s, comment %s',
                  c.oid::regclass, c.relkind, c.relpersistence, c.reloptions, c.relrowsecurity, c.relforcerowsecurity,
                  c.relacl, obj_description(c.oid, 'pg_class'))
      FROM rels c
    UNION ALL
    SELECT format('column %s #%s %s %s: not null %s, default %s, identity %s, generated %s, collation %s, acl %s, comment %s',
                  c.oid::regclass, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid),
                  a.attidentity, a.attgenerated, a.attcollation::regcollation, a.attacl, col_description(c.oid, a.attnum))
      FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT format('constraint %s %s: %s', co.conrelid::regclass, co.conname, pg_get_constraintdef(co.oid))
      FROM rels c JOIN pg_constraint co ON co.conrelid = c.oid
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(i.indexrelid)) FROM rels c JOIN pg_index i ON i.indrelid = c.oid
    UNION ALL
    SELECT format('trigger %s: enabled %s', pg_get_triggerdef(t.oid), t.tgenabled)
      FROM rels c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT format('policy %s on %s: %s %s using %s check %s', po.polname, po.polrelid::regclass, po.polcmd,
                  po.polroles::regrole[], pg_get_expr(po.polqual, po.polrelid), pg_get_expr(po.polwithcheck, po.polrelid))
      FROM rels c JOIN pg_policy po ON po.polrelid = c.oid
    UNION ALL
    SELECT format('view %s: %s', c.oid::regclass, pg_get_viewdef(c.oid)) FROM rels c WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('sequence %s: %s %s %s %s %s %s %s', c.oid::regclass, s.seqtypid::regtype, s.seqstart,
                  s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
      FROM rels c JOIN pg_sequence s ON s.seqrelid = c.oid
    UNION ALL
    SELECT format('type %s: type %s, labels %s, acl %s, comment %s', t.oid::regtype, t.typtype,
                  (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
                  t.typacl, obj_description(t.oid, 'pg_type'))
      FROM m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
    UNION ALL
    SELECT format('event trigger %s on %s: %s, enabled %s, tags %s', et.evtname, et.evtevent,
                  et.evtfoid::regprocedure, et.evtenabled, et.evttags)
      FROM m JOIN pg_event_trigger et ON m.classid = 'pg_event_trigger'::regclass AND et.oid = m.objid
    UNION ALL
    SELECT format('dumped %s where %s', cfg.tbl, cfg.cond)
      FROM ext, unnest(ext.extconfig::regclass[], ext.extcondition) AS cfg(tbl, cond)
    UNION ALL
    SELECT format('extension: relocatable %s, schema %s, schema acl %s', ext.extrelocatable, n.nspname, n.nspacl)
      FROM ext JOIN pg_namespace n ON n.oid = ext.extnamespace
    UNION ALL
    SELECT format('built-in lifecycle %s: %s', l.name, (SELECT string_agg(p::text, ' ' ORDER BY p.position)
                                                         FROM deploy_progress.lifecycle_phases p WHERE p.lifecycle = l.name))
      FROM deploy_progress.lifecycles l WHERE l.builtin)
SELECT string_agg(line, E'\n' ORDER BY line) FROM lines;
};

# Lines only in one of two descriptions.
sub differences
{
	my ($upgraded, $fresh) = @_;
	my %u = map { $_ => 1 } split /\n/, $upgraded;
	my %f = map { $_ => 1 } split /\n/, $fresh;
	return join("\n",
		(map { "only after the upgrade: $_" } grep { !$f{$_} } sort keys %u),
		(map { "only in a fresh install: $_" } grep { !$u{$_} } sort keys %f));
}

# Install $from, walk @$steps, compare with a fresh install of the default
# version; returns the differences.
sub walk
{
	my ($node, $label, $from, $steps) = @_;
	my $db = "${label}_walk";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION deploy_progress VERSION '$from'");
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'deploy_progress'}),
		$from, "$label: installed the oldest version, $from");
	$node->safe_psql($db, $fixture_sql);
	check_tracking($node, $db, "$label: $from", 100);

	my $n = 1;
	for my $to (@$steps)
	{
		$node->safe_psql($db, "ALTER EXTENSION deploy_progress UPDATE TO '$to'");
		is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'deploy_progress'}),
			$to, "$label: updated to $to");
		is($node->safe_psql($db, $lost_sql), '', "$label: $to keeps the data and configuration");
		# from 1.1 on the stamp trigger carries the table's configuration,
		# confirmed by its comment, as track() writes it (schema-only dumps)
		if ($node->safe_psql($db, q{SELECT to_regproc('deploy_progress._trigger_config') IS NOT NULL}) eq 't')
		{
			is( $node->safe_psql($db, q{
SELECT string_agg(tg.tgrelid::regclass || ':'
                  || (deploy_progress._trigger_arg(tg.tgargs, tg.tgnargs) = deploy_progress._trigger_config(tg.tgrelid))
                  || (obj_description(tg.oid, 'pg_trigger') = deploy_progress._trigger_comment(deploy_progress._trigger_config(tg.tgrelid))),
                  ' ' ORDER BY tg.tgrelid::regclass::text)
  FROM pg_trigger tg WHERE tg.tgname = 'zz_deploy_progress_stamp' AND tg.tgparentid = 0}),
				'deployments:truetrue jobs:truetrue',
				"$label: after $to the stamp triggers carry the configuration");
		}
		check_tracking($node, $db, "$label: $to", 100 + $n++);
	}

	$node->safe_psql('postgres', "CREATE DATABASE ${label}_fresh");
	$node->safe_psql("${label}_fresh", 'CREATE EXTENSION deploy_progress');
	return differences($node->safe_psql($db, $describe_sql),
		$node->safe_psql("${label}_fresh", $describe_sql));
}

# 1. the versions in sql/, on the installation under test
my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', 'log_statement = none');
$node->start;

my ($install, $updates) = scripts_in("$repo/sql");
my $default = default_version_in("$repo/deploy_progress.control");
ok(scalar(@$install), 'sql/ holds an install script (run make first)') or BAIL_OUT('no install script in sql/');
is($node->safe_psql('postgres', q{SELECT default_version FROM pg_available_extensions WHERE name = 'deploy_progress'}),
	$default, "the installed default version is the control file's, $default");
my %available = map { $_ => 1 } split /\n/,
  $node->safe_psql('postgres', q{SELECT version FROM pg_available_extension_versions WHERE name = 'deploy_progress'});
is(join(' ', grep { !$available{$_} } sort(@$install, map { $_->[1] } @$updates)), '',
	'every version in sql/ is installed');

my ($from, $steps) = chain($install, $updates, $default);
note("walking $from -> " . join(' -> ', @$steps));
my %used = map { ($_ => 1) } @$steps;
is(join(' ', map { "$_->[0]--$_->[1]" } grep { !$used{ $_->[1] } } @$updates), '',
	'every update script in sql/ is on the chain');
is(walk($node, 'sql', $from, $steps), '', "the upgraded extension is the same as a fresh install of $default");

# 2. the walking code on a throwaway version in a private installation
my $pg_config = sub { my $v = `pg_config --$_[0]`; chomp $v; return $v; };
my ($bindir, $sharedir, $pkglibdir) = map { $pg_config->($_) } qw(bindir sharedir pkglibdir);
my $root = "${PostgreSQL::Test::Utils::tmp_check}/private_install";
make_path("$root$bindir", "$root$pkglibdir", "$root$sharedir/extension");
# real copies: the binaries find share/ and lib/ relative to their resolved path
system('cp', '-a', "$bindir/.", "$root$bindir") == 0 or die 'cannot copy the binaries';
sub link_entries
{
	my ($from_dir, $to_dir, @skip) = @_;
	opendir(my $dh, $from_dir) or die "cannot read $from_dir: $!";
	for my $e (grep { !/^\.\.?$/ } readdir $dh)
	{
		next if grep { $_ eq $e } @skip;
		symlink("$from_dir/$e", "$to_dir/$e") or die "cannot link $e: $!";
	}
	closedir $dh;
}
link_entries($pkglibdir, "$root$pkglibdir") unless -e "$root$pkglibdir/plpgsql.so";
link_entries($sharedir, "$root$sharedir", 'extension');
link_entries("$sharedir/extension", "$root$sharedir/extension", 'deploy_progress.control');
my $ext = "$root$sharedir/extension";
my $control = slurp_file("$sharedir/extension/deploy_progress.control");
$control =~ s/^default_version\s*=.*$/default_version = '1.0.1'/m or die 'no default_version';
append_to_file("$ext/deploy_progress.control", $control);
copy("$sharedir/extension/deploy_progress--1.0.sql", "$ext/deploy_progress--1.0.1.sql") or die "copy: $!";
append_to_file("$ext/deploy_progress--1.0--1.0.1.sql",
	qq{\\echo Use "ALTER EXTENSION deploy_progress UPDATE TO '1.0.1'" to load this file. \\quit\n}
	  . "-- throwaway version of the upgrade test: changes nothing\n");

# (PostgreSQL 13's framework, PostgresNode under the name of
# PostgreSQL::Test::Cluster, has no install_path and would read the
# arguments as a host and a port: there the node gets the usual arguments
# and finds the private binaries first on PATH, as it runs them by name)
my $private;
if (PostgreSQL::Test::Cluster->can('install_path'))
{
	$private = PostgreSQL::Test::Cluster->new('private', install_path => dirname("$root$bindir"));
}
else
{
	$private = PostgreSQL::Test::Cluster->new('private');
	$ENV{PATH} = "$root$bindir:$ENV{PATH}";
}
$private->init;
$private->append_conf('postgresql.conf', 'log_statement = none');
$private->start;
($install, $updates) = scripts_in($ext);
($from, $steps) = chain($install, $updates, default_version_in("$ext/deploy_progress.control"));
is("$from -> @$steps", '1.0 -> 1.0.1', 'the private installation has the chain 1.0 -> 1.0.1');
is(walk($private, 'noop', $from, $steps), '', 'a comment-only update matches a fresh install');

# an update script that differs from the fresh install is caught
unlink("$ext/deploy_progress--1.0--1.0.1.sql");
append_to_file("$ext/deploy_progress--1.0--1.0.1.sql",
	qq{\\echo Use "ALTER EXTENSION deploy_progress UPDATE TO '1.0.1'" to load this file. \\quit\n}
	  . "ALTER FUNCTION \@extschema\@.percent(bigint, bigint) VOLATILE;\n"
	  . "ALTER TABLE \@extschema\@.timings ADD COLUMN note text;\n");
my $diff = walk($private, 'drift', $from, $steps);
note($diff);
like($diff, qr/^only after the upgrade: function percent\(completed bigint, total bigint\).*volatility v/m,
	'the comparison catches a changed volatility');
like($diff, qr/^only after the upgrade: column deploy_progress\.timings #8 note text/m,
	'the comparison catches an added column');
like($diff, qr/^only in a fresh install: function percent\(completed bigint, total bigint\).*volatility i/m,
	'and shows the fresh definition');

$private->stop;
$node->stop;
done_testing();
