// deploy_progress from Node.js: node-postgres with Drizzle ORM.
//
// The app inserts and advances deployments through the ORM, reads the
// in-flight view and a row's figures, and sees bad writes fail with the
// SQLSTATE the extension documents.  Connects with the PG* environment
// variables (test/clients/run.sh sets them).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { and, eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';

import { ddl, deployments, inFlight, jobs } from './schema.js';

const pool = new pg.Pool({ max: 2 });
const db = drizzle(pool);

// in_flight.relid is a regclass: compare it with a table name cast to
// regclass (an untyped parameter would be taken for an OID).
const inFlightRow = (table, key) =>
  and(sql`${inFlight.relid} = ${table}::regclass`, eq(inFlight.key, String(key)));

// The PostgreSQL error under a Drizzle error (drizzle-orm wraps driver
// errors in DrizzleQueryError with the driver's error as its cause).
async function pgError(promise) {
  try {
    await promise;
  } catch (err) {
    return err.cause?.code ? err.cause : err;
  }
  assert.fail('the statement succeeded');
}

before(async () => {
  await db.execute(sql.raw(ddl));
  await db.execute(sql`SELECT deploy_progress.track('node_deployments')`);
  await db.execute(sql`SELECT deploy_progress.define_lifecycle('node_ci', ${JSON.stringify([
    { phase: 'pending', kind: 'pending' },
    { phase: 'running', kind: 'active' },
    { phase: 'passed', kind: 'succeeded' },
    { phase: 'broken', kind: 'failed' },
  ])}::jsonb)`);
  await db.execute(sql`SELECT deploy_progress.track('node_jobs', lifecycle => 'node_ci')`);
});

after(async () => {
  await db.execute(sql`SELECT deploy_progress.untrack('node_deployments')`);
  await db.execute(sql`SELECT deploy_progress.untrack('node_jobs')`);
  await db.execute(sql`DROP TABLE node_deployments, node_jobs`);
  await db.execute(sql`SELECT deploy_progress.drop_lifecycle('node_ci')`);
  await pool.end();
});

describe('a deployment driven through Drizzle', () => {
  let id;

  test('an insert is stamped by the trigger', async () => {
    const [row] = await db.insert(deployments).values({ app: 'web', totalItems: 200 }).returning();
    id = row.id;
    assert.equal(row.phase, 'queued');
    assert.ok(row.phaseUpdatedAt instanceof Date, 'phase_updated_at is stamped');
    assert.equal(row.startedAt, null, 'a queued deployment has not started');
  });

  test('advancing the phase stamps the start and the phase change', async () => {
    const [queued] = await db.select().from(deployments).where(eq(deployments.id, id));
    const [row] = await db.update(deployments).set({ phase: 'transferring', completedItems: 0 })
      .where(eq(deployments.id, id)).returning();
    assert.equal(row.phase, 'transferring');
    assert.ok(row.startedAt instanceof Date, 'entering an active phase stamps started_at');
    assert.ok(row.phaseUpdatedAt >= queued.phaseUpdatedAt);
  });

  test('counter updates move progress_updated_at', async () => {
    const [before] = await db.select().from(deployments).where(eq(deployments.id, id));
    const [row] = await db.update(deployments).set({ completedItems: 50 })
      .where(eq(deployments.id, id)).returning();
    assert.equal(row.completedItems, 50);
    assert.ok(row.progressUpdatedAt >= before.progressUpdatedAt);
    assert.equal(row.phaseUpdatedAt.getTime(), before.phaseUpdatedAt.getTime(),
      'the phase did not change, so neither did phase_updated_at');
  });

  test('in_flight lists the row with its figures', async () => {
    const rows = await db.select().from(inFlight)
      .where(inFlightRow('node_deployments', id));
    assert.equal(rows.length, 1);
    const [r] = rows;
    assert.equal(r.phase, 'transferring');
    assert.equal(r.kind, 'active');
    assert.equal(r.completed, 50);
    assert.equal(r.total, 200);
    assert.equal(r.percent, 25);
    assert.equal(r.stuckReason, null);
    assert.ok(r.overallProgress > 0 && r.overallProgress < 1);
  });

  test('progress() and describe() give the row\'s figures', async () => {
    const { rows: [{ figures, line }] } = await db.execute(sql`
      SELECT deploy_progress.progress('node_deployments', ${String(id)}) AS figures,
             deploy_progress.describe('node_deployments', ${String(id)}) AS line`);
    assert.equal(figures.phase, 'transferring');
    assert.equal(figures.kind, 'active');
    assert.equal(figures.completed, 50);
    assert.equal(figures.total, 200);
    assert.equal(figures.percent, 25);
    // weights of the built-in lifecycle: 6 of 14 done before transferring,
    // and a quarter of transferring's 3
    assert.ok(Math.abs(figures.overall_progress - (1 + 2 + 3 + 3 * 0.25) / 14) < 1e-12);
    assert.match(line, /^Transferring: 50\/200 \(25\.0%\)/);
  });

  test('a rolled-back ORM transaction leaves the row as it was', async () => {
    await assert.rejects(db.transaction(async (tx) => {
      await tx.update(deployments).set({ phase: 'migrating' }).where(eq(deployments.id, id));
      tx.rollback();
    }));
    const [row] = await db.select().from(deployments).where(eq(deployments.id, id));
    assert.equal(row.phase, 'transferring');
  });

  test('the enum column rejects an unknown label (22P02) before the trigger', async () => {
    const err = await pgError(db.update(deployments).set({ phase: 'launching' })
      .where(eq(deployments.id, id)));
    assert.equal(err.code, '22P02');
    assert.match(err.message, /invalid input value for enum deploy_progress\.phase: "launching"/);
  });

  test('completed beyond the total is rejected (23514)', async () => {
    const err = await pgError(db.update(deployments).set({ completedItems: 201 })
      .where(eq(deployments.id, id)));
    assert.equal(err.code, '23514');
    assert.match(err.message, /exceed its total/);
  });

  test('reaching a terminal phase stamps finished_at and leaves in_flight', async () => {
    const [row] = await db.update(deployments).set({ phase: 'succeeded', completedItems: 200 })
      .where(eq(deployments.id, id)).returning();
    assert.ok(row.finishedAt instanceof Date);
    const { rows: [{ figures }] } = await db.execute(
      sql`SELECT deploy_progress.progress('node_deployments', ${String(id)}) AS figures`);
    assert.equal(figures.kind, 'succeeded');
    assert.equal(figures.overall_progress, 1);
    const rows = await db.select().from(inFlight)
      .where(inFlightRow('node_deployments', id));
    assert.equal(rows.length, 0);
  });

  test('leaving a terminal phase is rejected (23514)', async () => {
    const err = await pgError(db.update(deployments).set({ phase: 'queued' })
      .where(eq(deployments.id, id)));
    assert.equal(err.code, '23514');
    assert.match(err.message, /cannot move a row of "node_deployments" from terminal phase "succeeded" to "queued"/);
  });
});

describe('a text phase with a lifecycle of its own', () => {
  test('an unknown phase is rejected by the trigger with 22P02 and the valid phases', async () => {
    const [job] = await db.insert(jobs).values({}).returning();
    assert.equal(job.phase, 'pending');
    const err = await pgError(db.update(jobs).set({ phase: 'runing' }).where(eq(jobs.id, job.id)));
    assert.equal(err.code, '22P02');
    assert.equal(err.message, '"runing" is not a phase of the lifecycle of table "node_jobs"');
    assert.equal(err.detail, 'Valid phases: pending, running, passed, broken.');
    const [still] = await db.select().from(jobs).where(eq(jobs.id, job.id));
    assert.equal(still.phase, 'pending', 'the rejected update changed nothing');
  });

  test('the lifecycle\'s phases move the row through in_flight', async () => {
    const [job] = await db.insert(jobs).values({ phase: 'running', totalItems: 4, completedItems: 1 }).returning();
    const [r] = await db.select().from(inFlight)
      .where(inFlightRow('node_jobs', job.id));
    assert.equal(r.phase, 'running');
    assert.equal(r.kind, 'active');
    assert.equal(r.percent, 25);
    await db.update(jobs).set({ phase: 'broken', failureReason: 'exit 1' }).where(eq(jobs.id, job.id));
    const gone = await db.select().from(inFlight)
      .where(inFlightRow('node_jobs', job.id));
    assert.equal(gone.length, 0);
  });
});
