require "active_record"
require "active_record/connection_adapters/postgresql_adapter"

# in_flight.relid is a regclass, a type ActiveRecord does not know: read it
# as the table's name (a string), without an "unknown OID" warning.
module RegclassAsString
  private

  def initialize_type_map(m = type_map)
    super
    m.register_type "regclass", ActiveRecord::Type::String.new
  end
end
ActiveRecord::ConnectionAdapters::PostgreSQLAdapter.prepend(RegclassAsString)

# A step of a deployment.  The application writes phase and counters; the
# database stamps the timings (reload to read them).
class Step < ActiveRecord::Base
  STAMPED = %w[phase_updated_at progress_updated_at heartbeat_at started_at finished_at
               items_per_second speed_updated_at].freeze
  attr_readonly(*STAMPED)

  # Move to a phase (and counters), as a worker does.
  def advance!(phase, **counters)
    update!(phase: phase, **counters)
    reload
  end

  # Report progress within the current phase.
  def report!(completed, total = total_items)
    update!(completed_items: completed, total_items: total)
    reload
  end

  # The row's figures (phase, percent, speeds, ETA, overall progress...).
  def figures
    JSON.parse(self.class.connection.select_value(
      "SELECT deploy_progress.progress(#{self.class.connection.quote(self.class.table_name)}, #{self.class.connection.quote(id.to_s)})"))
  end

  # One human line: "Transferring: 3/10 (30.0%) · 12 items/s · ETA 1s".
  def description
    self.class.connection.select_value(
      "SELECT deploy_progress.describe(#{self.class.connection.quote(self.class.table_name)}, #{self.class.connection.quote(id.to_s)})")
  end
end

# deploy_progress.in_flight, read-only: one row per non-terminal row of every
# tracked table the role can read.
class InFlight < ActiveRecord::Base
  self.table_name = "deploy_progress.in_flight"
  self.primary_key = nil
  # intervals as ActiveSupport::Duration (the Rails 7 behaviour)
  attribute :eta, :interval
  attribute :in_phase, :interval
  attribute :elapsed, :interval

  # relid is a regclass: compare it with a table name cast to regclass
  scope :of, ->(table) { where("relid = ?::regclass", table.to_s) }
  scope :stuck, -> { where.not(stuck_reason: nil) }

  def readonly?
    true
  end
end
