# A table as a Rails app writes it, tracked as it is: a string phase with a
# lifecycle of its own, the progress as a percent, t.datetime timing
# columns (timestamp without time zone, stamped in UTC) and t.timestamps.
class CreateBuilds < ActiveRecord::Migration[6.1]
  def up
    create_table :builds do |t|
      t.string :service, null: false
      t.string :phase, null: false, default: "queued"
      t.integer :phase_progress
      t.datetime :phase_updated_at
      t.datetime :started_at
      t.datetime :finished_at
      t.timestamps
    end
    execute <<~SQL
      SELECT deploy_progress.define_lifecycle('rails_build', $$[
        {"phase": "queued", "kind": "pending", "step": "Queued"},
        {"phase": "pulling", "kind": "active", "step": "Building"},
        {"phase": "compiling", "kind": "active", "step": "Building"},
        {"phase": "releasing", "kind": "active", "step": "Releasing"},
        {"phase": "live", "kind": "succeeded", "step": "Live"},
        {"phase": "failed", "kind": "failed"}]$$)
    SQL
    execute "SELECT deploy_progress.track('builds', lifecycle => 'rails_build', columns => '{\"percent\": \"phase_progress\"}')"
  end

  def down
    execute "SELECT deploy_progress.untrack('builds')"
    drop_table :builds
    execute "SELECT deploy_progress.drop_lifecycle('rails_build')"
  end
end
