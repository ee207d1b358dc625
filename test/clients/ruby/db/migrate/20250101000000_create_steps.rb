# Creates the steps of a deployment, one row per step, and tracks the table
# with deploy_progress: the trigger validates each step's phase and counters
# and stamps its timings.
class CreateSteps < ActiveRecord::Migration[6.1]
  def up
    create_table :steps do |t|
      t.text :name, null: false
      t.column :phase, "deploy_progress.phase", null: false, default: "queued"
      t.bigint :completed_items
      t.bigint :total_items
      # stamped by the database: the application never writes these
      %i[phase_updated_at progress_updated_at heartbeat_at started_at finished_at speed_updated_at].each do |c|
        t.column c, :timestamptz
      end
      t.float :items_per_second
      t.text :failure_reason
    end
    execute "SELECT deploy_progress.track('steps')"
  end

  def down
    execute "SELECT deploy_progress.untrack('steps')"
    drop_table :steps
  end
end
