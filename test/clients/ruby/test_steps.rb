# deploy_progress from Ruby with ActiveRecord.
#
# A migration creates the steps table and tracks it, the Step model writes
# phases and progress, and the read-only InFlight model reads the
# deploy_progress.in_flight view; structure.sql, dumped and loaded by
# ActiveRecord's database tasks, keeps the table tracked.  Connects with
# the PG* environment variables (test/clients/run.sh sets them).
#
#   ruby test_steps.rb
require "json"
require "tmpdir"
require "minitest/autorun"
require_relative "models"

ActiveRecord::Base.establish_connection(adapter: "postgresql", database: ENV.fetch("PGDATABASE"))
MIGRATIONS = ActiveRecord::MigrationContext.new(File.join(__dir__, "db/migrate"), ActiveRecord::SchemaMigration)

class StepsTest < Minitest::Test
  i_suck_and_my_tests_are_order_dependent!

  def connection
    ActiveRecord::Base.connection
  end

  def sqlstate(error)
    error.cause.result.error_field(PG::PG_DIAG_SQLSTATE)
  end

  def test_1_migration_creates_and_tracks_steps
    MIGRATIONS.migrate
    assert_equal [20250101000000], MIGRATIONS.get_all_versions
    tracked = connection.select_one(
      "SELECT lifecycle, phase_column, key_columns::text FROM deploy_progress.tracked WHERE relid = 'steps'::regclass")
    assert_equal({ "lifecycle" => "default", "phase_column" => "phase", "key_columns" => "{id}" }, tracked)
    Step.reset_column_information
    assert_equal "queued", Step.new.phase
  end

  def test_2_model_writes_progress
    step = Step.create!(name: "upload assets", total_items: 10)
    step.reload
    assert_equal "queued", step.phase
    refute_nil step.phase_updated_at
    assert_nil step.started_at

    step.advance!("transferring", completed_items: 0)
    refute_nil step.started_at, "entering an active phase stamps started_at"
    entered = step.phase_updated_at
    [1, 2, 3].each do |n|
      sleep 0.02
      step.report!(n)
    end
    assert_equal 3, step.completed_items
    assert_equal entered, step.phase_updated_at, "counter updates do not move phase_updated_at"
    assert_operator step.progress_updated_at, :>, entered

    figures = step.figures
    assert_equal %w[transferring active 3 10 30], figures.values_at("phase", "kind", "completed", "total", "percent").map(&:to_s)
    assert_operator figures["speed"], :>, 0
    assert_match(/\ATransferring: 3\/10 \(30\.0%\) . [0-9.,]+ items\/(s|min) . ETA /, step.description)
  end

  def test_3_in_flight_model_reads_the_view
    step = Step.find_by!(name: "upload assets")
    rows = InFlight.of(:steps).where(key: step.id.to_s).to_a
    assert_equal 1, rows.size
    row = rows.first
    assert_equal ["steps", "transferring", "active", 3, 10, 30.0, nil],
                 [row.relid, row.phase, row.kind, row.completed, row.total, row.percent, row.stuck_reason]
    assert_equal step.started_at, row.started_at
    assert_predicate row, :readonly?
    assert_raises(ActiveRecord::ReadOnlyRecord) { row.save! }
    assert_equal 0, InFlight.of(:steps).stuck.count
    assert_kind_of ActiveSupport::Duration, row.in_phase
  end

  def test_4_bad_writes_carry_their_sqlstate
    step = Step.find_by!(name: "upload assets")
    error = assert_raises(ActiveRecord::StatementInvalid) { step.update!(completed_items: 11) }
    assert_instance_of PG::CheckViolation, error.cause
    assert_equal "23514", sqlstate(error)
    assert_match(/completed items of a row of "steps" exceed its total/, error.message)

    error = assert_raises(ActiveRecord::StatementInvalid) { Step.find(step.id).update!(phase: "deploying") }
    assert_equal "22P02", sqlstate(error)
    assert_equal 3, Step.find(step.id).completed_items, "the rejected updates changed nothing"
  end

  def test_5_finished_step_leaves_the_view
    step = Step.find_by!(name: "upload assets")
    step.advance!("succeeded", completed_items: 10)
    refute_nil step.finished_at
    assert_equal "succeeded", step.figures["kind"]
    assert_equal 0, InFlight.of(:steps).count

    error = assert_raises(ActiveRecord::StatementInvalid) { step.advance!("transferring") }
    assert_equal "23514", sqlstate(error)
  end

  # structure.sql (config.active_record.schema_format = :sql) as
  # db:schema:dump writes it and db:test:prepare loads it into a new
  # database: the first write recreates the tracking configuration from the
  # stamp trigger and is stamped
  def test_6_structure_sql_round_trip
    source = ActiveRecord::Base.connection_db_config
    file = File.join(Dir.tmpdir, "dp_structure_#{Process.pid}.sql")
    ActiveRecord::Tasks::DatabaseTasks.structure_dump(source, file)
    assert_match(/EXECUTE FUNCTION deploy_progress\.stamp\('\{"v": 1, /, File.read(file))
    config_sql = "SELECT (to_jsonb(t) - 'relid')::text FROM deploy_progress.tracked t WHERE relid = 'steps'::regclass"
    expected = connection.select_value(config_sql)
    target = ActiveRecord::DatabaseConfigurations::HashConfig.new(
      "test", "structure", source.configuration_hash.merge(database: "#{source.database}_structure"))
    ActiveRecord::Tasks::DatabaseTasks.create(target)
    begin
      ActiveRecord::Tasks::DatabaseTasks.structure_load(target, file)
      ActiveRecord::Base.establish_connection(target)
      assert_nil connection.select_value(config_sql), "a schema-only load has no configuration"
      Step.reset_column_information
      step = Step.create!(name: "after db:test:prepare", total_items: 4)
      step.advance!("transferring", completed_items: 1)
      refute_nil step.phase_updated_at
      refute_nil step.started_at
      assert_equal expected, connection.select_value(config_sql)
    ensure
      # (drop connects to the maintenance database: reconnect afterwards)
      ActiveRecord::Tasks::DatabaseTasks.drop(target)
      ActiveRecord::Base.establish_connection(source)
      File.delete(file) if File.exist?(file)
    end
  end

  def test_7_migration_down_untracks
    MIGRATIONS.rollback(1)
    assert_equal [], MIGRATIONS.get_all_versions
    assert_nil connection.select_value("SELECT relid::text FROM deploy_progress.tracked WHERE relid::text = 'steps'")
    refute connection.table_exists?(:steps)
  end
end
