// deploy_progress with drizzle-kit: migrations generated from a Drizzle
// schema that uses the extension's enum type and view.
//
// drizzle.config.js lists only kit_schema.js, the app's tables; they import
// the extension's schema, enum and view from deploy_progress.js.  So
// `drizzle-kit generate` writes the app's CREATE TABLEs and no DDL for the
// extension's objects, `drizzle-kit migrate` applies them to a database
// with the extension and a custom migration (generate --custom) that
// tracks the tables, and writes through Drizzle are stamped.
// Neither a second generate nor `drizzle-kit push` finds anything to change
// afterwards.  Connects with the PG* environment variables
// (test/clients/run.sh sets them).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { and, eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';

import { inFlight } from './deploy_progress.js';
import { kitDeployments, kitJobs } from './kit_schema.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const KIT = path.join(HERE, 'node_modules', 'drizzle-kit', 'bin.cjs');

// The migrations folder, relative to the config: drizzle-kit 0.31.11's
// generate cannot read back the snapshots of an absolute `out`.
fs.mkdirSync(path.join(HERE, '.tmp'), { recursive: true });
const OUT = path.relative(HERE, fs.mkdtempSync(path.join(HERE, '.tmp', 'drizzle-kit-')));

// Runs drizzle-kit with drizzle.config.js; resolves to its output.
function kit(...args) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [KIT, ...args, '--config', 'drizzle.config.js'],
      { cwd: HERE, env: { ...process.env, DRIZZLE_OUT: OUT }, timeout: 120000 },
      (err, stdout, stderr) => {
        const output = stdout + stderr;
        if (err) reject(new Error(`drizzle-kit ${args.join(' ')} failed: ${err.message}\n${output}`));
        else resolve(output);
      });
  });
}

const migrations = () => fs.readdirSync(path.join(HERE, OUT)).filter((f) => f.endsWith('.sql')).sort();

// The session runs in a zone other than UTC: the timestamp columns of the
// text-phase table must hold UTC times all the same.
const pool = new pg.Pool({ max: 2, options: '-c TimeZone=America/New_York' });
const db = drizzle(pool);

const inFlightRow = (table, key) =>
  and(sql`${inFlight.relid} = ${table}::regclass`, eq(inFlight.key, String(key)));

after(async () => {
  await db.execute(sql`SELECT deploy_progress.untrack(t::regclass) FROM unnest(
      ARRAY['kit_deployments', 'kit_jobs']) AS t WHERE to_regclass(t) IS NOT NULL`);
  await db.execute(sql`DROP TABLE IF EXISTS kit_deployments, kit_jobs`);
  await db.execute(sql`SELECT deploy_progress.drop_lifecycle(name)
      FROM deploy_progress.lifecycles WHERE name = 'kit_deploy'`);
  await db.execute(sql`DROP SCHEMA IF EXISTS drizzle CASCADE`);
  await pool.end();
  fs.rmSync(path.join(HERE, OUT), { recursive: true, force: true });
  try { fs.rmdirSync(path.join(HERE, '.tmp')); } catch { /* not empty: another run's */ }
});

describe('drizzle-kit generate over tables that use the extension', () => {
  let ddl;

  before(async () => {
    await kit('generate');
    const files = migrations();
    assert.equal(files.length, 1, `one migration: ${files}`);
    ddl = fs.readFileSync(path.join(HERE, OUT, files[0]), 'utf8');
  });

  test('the migration creates the app\'s tables, with the extension\'s type', () => {
    assert.match(ddl, /CREATE TABLE "kit_deployments"/);
    assert.match(ddl, /CREATE TABLE "kit_jobs"/);
    assert.match(ddl, /"phase" "deploy_progress"\."phase" DEFAULT 'queued' NOT NULL/);
    assert.match(ddl, /"phase" text DEFAULT 'queued' NOT NULL/);
    assert.match(ddl, /"started_at" timestamp,/, 'timestamp() is timestamp without time zone');
    assert.match(ddl, /CREATE INDEX "kit_jobs_dp_in_flight_idx"/);
  });

  test('and no DDL for the extension\'s schema, enum or view', () => {
    assert.doesNotMatch(ddl, /CREATE SCHEMA/);
    assert.doesNotMatch(ddl, /CREATE TYPE/);
    assert.doesNotMatch(ddl, /CREATE (MATERIALIZED )?VIEW/);
    assert.doesNotMatch(ddl, /"in_flight"/);
    assert.doesNotMatch(ddl, /"deploy_progress"\."(?!phase")/, 'the type is the only object of deploy_progress named');
  });
});

// The tables are tracked by a custom migration (generate --custom), which
// migrate applies after the one that creates them.
const trackSql = `
SELECT deploy_progress.track('kit_deployments');
--> statement-breakpoint
SELECT deploy_progress.define_lifecycle('kit_deploy', $$[
    {"phase": "queued", "kind": "pending"}, {"phase": "building", "kind": "active"},
    {"phase": "deploying", "kind": "active"}, {"phase": "live", "kind": "succeeded"},
    {"phase": "failed", "kind": "failed"}]$$);
--> statement-breakpoint
SELECT relid, storage, time_zone FROM deploy_progress.track('kit_jobs', lifecycle => 'kit_deploy');
`;

describe('the migrations applied by drizzle-kit migrate: the tables, then track()', () => {
  before(async () => {
    await kit('generate', '--custom', '--name', 'track');
    const files = migrations();
    assert.equal(files.length, 2, `an empty custom migration: ${files}`);
    assert.match(files[1], /^0001_track\.sql$/);
    fs.appendFileSync(path.join(HERE, OUT, files[1]), trackSql);
    await kit('migrate');
  });

  test('both tables are tracked', async () => {
    const { rows } = await db.execute(sql`SELECT relid::text, lifecycle FROM deploy_progress.tracked
      WHERE relid IN ('kit_deployments'::regclass, 'kit_jobs'::regclass) ORDER BY 1`);
    assert.deepEqual(rows, [
      { relid: 'kit_deployments', lifecycle: 'default' },
      { relid: 'kit_jobs', lifecycle: 'kit_deploy' },
    ]);
  });

  test('track() took over the in-flight indexes the first migration created', async () => {
    // same names; track() rebuilt each as its own (its comment is the statement)
    const { rows } = await db.execute(sql`
      SELECT c.relname AS name,
             obj_description(c.oid, 'pg_class') = deploy_progress.in_flight_index_statement(i.indrelid::regclass, false) AS own
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       WHERE i.indrelid IN ('kit_deployments'::regclass, 'kit_jobs'::regclass) AND NOT i.indisprimary
       ORDER BY 1`);
    assert.deepEqual(rows, [
      { name: 'kit_deployments_dp_in_flight_idx', own: true },
      { name: 'kit_jobs_dp_in_flight_idx', own: true },
    ]);
  });

  test('the enum column: writes are stamped and in_flight reads them', async () => {
    const [queued] = await db.insert(kitDeployments).values({ app: 'web' }).returning();
    assert.equal(queued.phase, 'queued');
    assert.ok(queued.phaseUpdatedAt instanceof Date, 'phase_updated_at is stamped');
    assert.equal(queued.startedAt, null);
    const [row] = await db.update(kitDeployments)
      .set({ phase: 'transferring', completedItems: 30, totalItems: 120 })
      .where(eq(kitDeployments.id, queued.id)).returning();
    assert.ok(row.startedAt instanceof Date, 'entering an active phase stamps started_at');
    const [r] = await db.select().from(inFlight).where(inFlightRow('kit_deployments', row.id));
    assert.equal(r.phase, 'transferring');
    assert.equal(r.kind, 'active');
    assert.equal(r.percent, 25);
    assert.equal(r.startedAt.getTime(), row.startedAt.getTime());
    const [done] = await db.update(kitDeployments).set({ phase: 'succeeded' })
      .where(eq(kitDeployments.id, row.id)).returning();
    assert.ok(done.finishedAt instanceof Date);
    assert.equal((await db.select().from(inFlight).where(inFlightRow('kit_deployments', row.id))).length, 0);
  });

  test('the text phase with timestamp() columns: stamped in UTC, read back by in_flight', async () => {
    const [job] = await db.insert(kitJobs).values({ phase: 'building', totalItems: 4, completedItems: 1 }).returning();
    assert.ok(job.startedAt instanceof Date, 'started_at is stamped');
    assert.ok(job.heartbeatAt instanceof Date, 'heartbeat_at is stamped');
    // Drizzle reads a timestamp() as UTC, in_flight gives the column AT TIME
    // ZONE 'UTC': the same instant, whatever the session's TimeZone
    const [r] = await db.select().from(inFlight).where(inFlightRow('kit_jobs', job.id));
    assert.equal(r.phase, 'building');
    assert.equal(r.kind, 'active');
    assert.equal(r.percent, 25);
    assert.equal(r.startedAt.getTime(), job.startedAt.getTime());
    // and the stamp is the write's time in UTC: between the transaction's
    // start and the next statement
    const utc = await db.transaction(async (tx) => {
      const [{ id }] = await tx.insert(kitJobs).values({ phase: 'deploying' }).returning();
      const { rows: [{ ok }] } = await tx.execute(sql`
        SELECT phase_updated_at AT TIME ZONE 'UTC' BETWEEN now() AND statement_timestamp() AS ok
          FROM kit_jobs WHERE id = ${id}`);
      return ok;
    });
    assert.equal(utc, true, 'phase_updated_at holds UTC');
    const [done] = await db.update(kitJobs).set({ phase: 'live', completedItems: 4 })
      .where(eq(kitJobs.id, job.id)).returning();
    assert.ok(done.finishedAt instanceof Date);
    assert.ok(done.finishedAt >= done.startedAt);
    assert.equal((await db.select().from(inFlight).where(inFlightRow('kit_jobs', job.id))).length, 0);
  });

  test('the trigger refuses a phase outside the lifecycle (22P02)', async () => {
    const [job] = await db.insert(kitJobs).values({}).returning();
    await assert.rejects(db.update(kitJobs).set({ phase: 'bulding' }).where(eq(kitJobs.id, job.id)),
      (err) => err.cause?.code === '22P02' && err.cause.detail === 'Valid phases: queued, building, deploying, live, failed.');
  });

  test('a second generate finds nothing to migrate', async () => {
    // generate diffs the schema files against the last snapshot in the
    // migrations folder; it does not read the database
    const output = await kit('generate');
    assert.match(output, /No schema changes, nothing to migrate/);
    assert.equal(migrations().length, 2);
  });

  test('push finds nothing to change: the triggers and in-flight indexes are known', async () => {
    // push compares the schema files with the database; the tables declare
    // the in-flight indexes track() made, which push would drop otherwise
    const output = await kit('push', '--strict', '--verbose');
    assert.match(output, /No changes detected/);
  });
});
