// The app's tables of the drizzle-kit test, the only file drizzle.config.js
// lists: one with the extension's enum type deploy_progress.phase and
// timestamptz columns, one with a text phase and Drizzle's default
// timestamp() columns (timestamp without time zone) as in the README's
// recipe.  The extension's objects are imported, not exported, so
// drizzle-kit generate creates neither the schema deploy_progress nor its
// type.  Each table declares the in-flight index track() creates, under its
// name and with its predicate (deploy_progress.in_flight_index_statement()),
// so that drizzle-kit push does not drop it as unknown.
import { sql } from 'drizzle-orm';
import { bigint, index, integer, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core';

import { phase } from './deploy_progress.js';

const tz = { withTimezone: true };

export const kitDeployments = pgTable('kit_deployments', {
  id: serial('id').primaryKey(),
  app: text('app').notNull(),
  phase: phase('phase').notNull().default('queued'),
  completedItems: bigint('completed_items', { mode: 'number' }),
  totalItems: bigint('total_items', { mode: 'number' }),
  phaseUpdatedAt: timestamp('phase_updated_at', tz),
  progressUpdatedAt: timestamp('progress_updated_at', tz),
  heartbeatAt: timestamp('heartbeat_at', tz),
  startedAt: timestamp('started_at', tz),
  finishedAt: timestamp('finished_at', tz),
}, (t) => [
  index('kit_deployments_dp_in_flight_idx').on(t.phase)
    .where(sql`phase <> ALL ('{succeeded,failed,cancelled}'::deploy_progress.phase[])`),
]);

// tracked with the lifecycle kit_deploy: queued, building, deploying, live, failed
export const kitJobs = pgTable('kit_jobs', {
  id: serial('id').primaryKey(),
  phase: text('phase').notNull().default('queued'),
  completedItems: integer('completed_items'),
  totalItems: integer('total_items'),
  phaseUpdatedAt: timestamp('phase_updated_at').defaultNow(),
  heartbeatAt: timestamp('heartbeat_at'),
  startedAt: timestamp('started_at'),
  finishedAt: timestamp('finished_at'),
  createdAt: timestamp('created_at').defaultNow().notNull(),
}, (t) => [
  index('kit_jobs_dp_in_flight_idx').on(t.phase).where(sql`phase <> ALL ('{live,failed}'::text[])`),
]);
