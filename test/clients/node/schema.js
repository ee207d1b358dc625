// The Drizzle schema of the Node.js client test: a deployments table whose
// phase column is the extension's enum type deploy_progress.phase and a
// jobs table with a text phase and a lifecycle of its own; the extension's
// objects (its enum and the read-only view deploy_progress.in_flight) come
// from deploy_progress.js.
import { bigint, doublePrecision, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core';

import { inFlight, phase } from './deploy_progress.js';

export { inFlight };

const tz = { withTimezone: true };

// Columns the trigger stamps, under the names track() looks for by default.
const tracking = () => ({
  completedItems: bigint('completed_items', { mode: 'number' }),
  totalItems: bigint('total_items', { mode: 'number' }),
  phaseUpdatedAt: timestamp('phase_updated_at', tz),
  progressUpdatedAt: timestamp('progress_updated_at', tz),
  heartbeatAt: timestamp('heartbeat_at', tz),
  startedAt: timestamp('started_at', tz),
  finishedAt: timestamp('finished_at', tz),
  itemsPerSecond: doublePrecision('items_per_second'),
  speedUpdatedAt: timestamp('speed_updated_at', tz),
  failureReason: text('failure_reason'),
});

export const deployments = pgTable('node_deployments', {
  id: serial('id').primaryKey(),
  app: text('app').notNull(),
  phase: phase('phase').notNull().default('queued'),
  ...tracking(),
});

export const jobs = pgTable('node_jobs', {
  id: serial('id').primaryKey(),
  phase: text('phase').notNull().default('pending'),
  ...tracking(),
});

// The DDL of the tables above (what a drizzle-kit migration would run).
const trackingColumns = `
    completed_items     bigint,
    total_items         bigint,
    phase_updated_at    timestamptz,
    progress_updated_at timestamptz,
    heartbeat_at        timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    items_per_second    double precision,
    speed_updated_at    timestamptz,
    failure_reason      text`;

export const ddl = `
CREATE TABLE node_deployments (
    id                  serial PRIMARY KEY,
    app                 text NOT NULL,
    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',${trackingColumns}
);
CREATE TABLE node_jobs (
    id                  serial PRIMARY KEY,
    phase               text NOT NULL DEFAULT 'pending',${trackingColumns}
);
`;
