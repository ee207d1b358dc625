# A large table that already exists, tracked without touching it: side
# storage adds no column, and the in-flight index is built CONCURRENTLY
# outside the migration's transaction, so writers are not held up while it
# is built.
class TrackJobsInSideStorage < ActiveRecord::Migration[6.1]
  disable_ddl_transaction!

  def up
    execute "SET lock_timeout = '10s'"
    execute "SELECT deploy_progress.track('jobs', storage => 'side', create_index => false)"
    execute select_value("SELECT deploy_progress.in_flight_index_statement('jobs')")
  end

  def down
    execute "SELECT deploy_progress.untrack('jobs')"
  end
end
