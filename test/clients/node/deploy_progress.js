// The extension's objects as Drizzle sees them: the schema deploy_progress,
// its enum type phase and its view in_flight.  They exist once the
// extension is installed, so this module is imported by the app's tables
// and queries but is not listed in drizzle.config.js's `schema`:
// drizzle-kit generate emits DDL for every pgSchema, enum and non-existing
// view exported by the files listed there, and nothing for what they only
// import (test/clients/node/drizzle_kit.test.js).
import { bigint, doublePrecision, interval, pgSchema, text, timestamp } from 'drizzle-orm/pg-core';

export const deployProgress = pgSchema('deploy_progress');

// deploy_progress.phase, in lifecycle order (the built-in lifecycle).
export const phase = deployProgress.enum('phase', [
  'queued', 'preparing', 'fetching', 'building', 'transferring', 'migrating',
  'starting', 'health_check', 'finishing', 'waiting', 'succeeded', 'failed',
  'cancelled',
]);

const tz = { withTimezone: true };

// deploy_progress.in_flight: every non-terminal row of every tracked table.
export const inFlight = deployProgress.view('in_flight', {
  relid: text('relid'),
  key: text('key'),
  phase: text('phase'),
  kind: text('kind'),
  completed: bigint('completed', { mode: 'number' }),
  total: bigint('total', { mode: 'number' }),
  percent: doublePrecision('percent'),
  averageSpeed: doublePrecision('average_speed'),
  smoothedSpeed: doublePrecision('smoothed_speed'),
  speed: doublePrecision('speed'),
  eta: interval('eta'),
  phaseUpdatedAt: timestamp('phase_updated_at', tz),
  progressUpdatedAt: timestamp('progress_updated_at', tz),
  heartbeatAt: timestamp('heartbeat_at', tz),
  startedAt: timestamp('started_at', tz),
  inPhase: interval('in_phase'),
  elapsed: interval('elapsed'),
  overallProgress: doublePrecision('overall_progress'),
  stuckReason: text('stuck_reason'),
}).existing();
