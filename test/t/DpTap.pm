# Shared by the TAP tests of deploy_progress (test/t/*.pl): the usual
# tracked table.
package DpTap;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(deployments_table);

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

1;
