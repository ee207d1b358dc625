# Shared by the TAP tests of deploy_progress (test/t/*.pl): the usual
# tracked table, and a probe for objects that other parts of the extension
# add over time.
package DpTap;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(deployments_table has_relation);

# CREATE TABLE statement of a deployments table with a column for every
# role track() knows, plus $extra column definitions.
sub deployments_table
{
	my ($name, $extra) = @_;
	return "CREATE TABLE $name (
    id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL,
    completed_items integer, total_items integer,
    phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
    started_at timestamptz, finished_at timestamptz,
    items_per_second double precision, speed_updated_at timestamptz, failure_reason text"
	  . (defined $extra ? ", $extra" : '') . ");\n";
}

# Whether a relation (e.g. 'deploy_progress.history') exists in a database.
sub has_relation
{
	my ($node, $db, $rel) = @_;
	return $node->safe_psql($db, "SELECT to_regclass('$rel') IS NOT NULL") eq 't';
}

1;
