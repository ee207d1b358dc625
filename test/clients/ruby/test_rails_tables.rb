# deploy_progress on the tables a Rails app already has, tracked without
# altering them: t.datetime and t.timestamps columns (timestamp without time
# zone), a string phase, a percent column; and a large existing table put
# in side storage by a migration that builds the in-flight index
# CONCURRENTLY.  Connects with the PG* environment variables
# (test/clients/run.sh sets them).
#
#   ruby test_rails_tables.rb
require "json"
require "minitest/autorun"
require_relative "models"

ActiveRecord::Base.establish_connection(adapter: "postgresql", database: ENV.fetch("PGDATABASE"))
MIGRATIONS = ActiveRecord::MigrationContext.new(File.join(__dir__, "db/rails_tables"), ActiveRecord::SchemaMigration)

class Build < ActiveRecord::Base
  attr_readonly :phase_updated_at, :started_at, :finished_at
end

class Job < ActiveRecord::Base
end

class RailsTablesTest < Minitest::Test
  i_suck_and_my_tests_are_order_dependent!

  def connection
    ActiveRecord::Base.connection
  end

  def column_types(table)
    connection.select_rows(<<~SQL).to_h
      SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
       WHERE attrelid = '#{table}'::regclass AND attnum > 0 AND NOT attisdropped
    SQL
  end

  def test_1_datetime_columns_are_tracked_as_they_are
    # the jobs table exists before the side-storage migration, with rows
    connection.execute(<<~SQL)
      CREATE TABLE jobs (id bigserial PRIMARY KEY, kind text NOT NULL,
                         phase deploy_progress.phase NOT NULL DEFAULT 'queued', completed_items bigint, total_items bigint);
      INSERT INTO jobs (kind, phase) SELECT 'import', CASE WHEN g % 100 = 0 THEN 'queued' ELSE 'succeeded' END::deploy_progress.phase
        FROM generate_series(1, 5000) g;
    SQL
    jobs_before = column_types(:jobs)
    MIGRATIONS.migrate
    assert_equal [20250201000000, 20250202000000], MIGRATIONS.get_all_versions
    types = column_types(:builds)
    assert_equal "timestamp without time zone", types["phase_updated_at"], "t.datetime in ActiveRecord 6.1"
    assert_equal "timestamp(6) without time zone", types["created_at"], "t.timestamps"
    assert_equal "character varying", types["phase"]
    assert_equal jobs_before, column_types(:jobs), "side storage adds no column"
    tracked = connection.select_one(
      "SELECT storage, time_zone, columns->>'percent' AS percent FROM deploy_progress.tracked WHERE relid = 'builds'::regclass")
    assert_equal({ "storage" => "row", "time_zone" => "UTC", "percent" => "phase_progress" }, tracked)
  end

  def test_2_stamps_are_utc_local_times
    build = Build.create!(service: "web")
    connection.execute("SET TimeZone = 'America/New_York'")   # the session's zone does not matter
    utc_clock = "SELECT (clock_timestamp() AT TIME ZONE 'UTC')::timestamp"
    before = connection.select_value(utc_clock)
    Build.where(id: build.id).update_all(phase: "pulling", phase_progress: 10)
    after = connection.select_value(utc_clock)
    build.reload
    # ActiveRecord reads timestamp columns as UTC (default_timezone :utc):
    # the stamps are the UTC time of the write
    assert_operator before, :<=, build.phase_updated_at
    assert_operator build.phase_updated_at, :<=, after
    assert_equal build.phase_updated_at, build.started_at
    assert_nil build.finished_at
    figures = JSON.parse(connection.select_value("SELECT deploy_progress.progress('builds', '#{build.id}')"))
    assert_equal ["pulling", "active", 10.0], figures.values_at("phase", "kind", "percent")
  ensure
    connection.execute("RESET TimeZone")
  end

  def test_3_percent_out_of_range_is_refused
    build = Build.find_by!(service: "web")
    error = assert_raises(ActiveRecord::StatementInvalid) { build.update!(phase_progress: 101) }
    assert_equal "23514", error.cause.result.error_field(PG::PG_DIAG_SQLSTATE)
    assert_equal 10, build.reload.phase_progress
  end

  def test_4_steps_group_the_phases
    build = Build.find_by!(service: "web")
    build.update!(phase: "compiling", phase_progress: 50)
    steps = JSON.parse(connection.select_value("SELECT deploy_progress.steps('builds', '#{build.id}')"))
    assert_equal [%w[Queued completed], %w[Building active], %w[Releasing pending], %w[Live pending]],
                 steps.map { |s| s.values_at("step", "status") }
    assert_equal %w[pulling compiling], steps[1]["phases"]
    build.update!(phase: "live", phase_progress: 100)
    refute_nil build.reload.finished_at
  end

  def test_5_side_storage_with_a_concurrent_index
    index = connection.select_one(<<~SQL)
      SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i
       WHERE i.indrelid = 'jobs'::regclass AND i.indexrelid::regclass::text = 'jobs_dp_in_flight_idx'
    SQL
    assert_equal true, index["indisvalid"]
    assert_match(/WHERE \(phase <> ALL/, index["def"])
    # the 50 queued rows are in flight; the rows written before tracking get
    # their side row at their next write
    assert_equal 50, connection.select_value("SELECT count(*) FROM deploy_progress.in_flight WHERE relid = 'jobs'::regclass")
    assert_equal 0, connection.select_value("SELECT count(*) FROM deploy_progress.timings WHERE relid = 'jobs'::regclass")
    job = Job.where(phase: "queued").order(:id).first
    Job.where(id: job.id).update_all(phase: "transferring", completed_items: 1, total_items: 4)
    side = connection.select_one(
      "SELECT phase_updated_at IS NOT NULL AS stamped, started_at IS NOT NULL AS started FROM deploy_progress.timings('jobs', '#{job.id}')")
    assert_equal({ "stamped" => true, "started" => true }, side)
    assert_match(/\ATransferring: 1\/4 \(25\.0%\)/, connection.select_value("SELECT deploy_progress.describe('jobs', '#{job.id}')"))
  end

  def test_6_migrations_down
    MIGRATIONS.rollback(2)
    assert_equal [], MIGRATIONS.get_all_versions
    assert_equal 0, connection.select_value("SELECT count(*) FROM deploy_progress.tracked WHERE relid::text IN ('builds', 'jobs')")
    refute connection.table_exists?(:builds)
    connection.execute("DROP TABLE jobs")
  end
end
