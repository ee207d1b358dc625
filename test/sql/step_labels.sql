-- Lifecycle step labels (define_lifecycle()'s "step") and steps() as UI
-- steps: consecutive phases with one label are one step, a phase without
-- a label is a step of its own, a failed or cancelled phase is a step only
-- with a label of its own, and one with another step's label marks that
-- step when the row ends in it.  History rows are fixed, so every time is
-- known.
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

-- a provisioning pipeline: several workflow steps per UI step
SELECT position, phase, kind, step FROM deploy_progress.define_lifecycle('sl_prov', $$[
    {"phase": "queued",             "kind": "pending",   "step": "Queued"},
    {"phase": "vm_created",         "kind": "active",    "step": "Creating server"},
    {"phase": "network_configured", "kind": "active",    "step": "Creating server"},
    {"phase": "awaiting_approval",  "kind": "waiting"},
    {"phase": "ansible_started",    "kind": "active",    "step": "Installing dependencies"},
    {"phase": "ansible_complete",   "kind": "active",    "step": "Configuring agent"},
    {"phase": "agent_paused",       "kind": "waiting",   "step": "Agent paused"},
    {"phase": "running",            "kind": "succeeded", "step": "Running"},
    {"phase": "vm_failed",          "kind": "failed",    "step": "Creating server"},
    {"phase": "rolled_back",        "kind": "cancelled", "step": "Rolled back"},
    {"phase": "failed",             "kind": "failed"},
    {"phase": "cancelled",          "kind": "cancelled"}]$$);

CREATE TABLE sl_servers (id text PRIMARY KEY, phase text NOT NULL DEFAULT 'queued');
SELECT relid FROM deploy_progress.track('sl_servers', lifecycle => 'sl_prov', notify_channel => NULL);
INSERT INTO sl_servers (id) VALUES ('creating'), ('approval'), ('vm_failed'), ('paused'),
                                   ('running'), ('failed'), ('rolled_back'), ('cancelled'), ('new');
UPDATE sl_servers SET phase = CASE id WHEN 'creating' THEN 'network_configured'
                                      WHEN 'approval' THEN 'awaiting_approval'
                                      WHEN 'paused' THEN 'agent_paused'
                                      WHEN 'new' THEN 'queued'
                                      ELSE id END;

-- the history, by hand: each row started at 10:00 and moved every minute
DELETE FROM deploy_progress.history WHERE relid = 'sl_servers'::regclass;
INSERT INTO deploy_progress.history (relid, key, from_phase, to_phase, to_kind, at)
SELECT 'sl_servers', r.id, lag(v.phase) OVER w, v.phase, p.kind,
       '2026-03-01 10:00+00'::timestamptz + (row_number() OVER w - 1) * interval '1 minute'
  FROM (VALUES ('creating',    ARRAY['queued', 'vm_created', 'network_configured']),
               ('approval',    ARRAY['queued', 'vm_created', 'network_configured', 'awaiting_approval']),
               ('vm_failed',   ARRAY['queued', 'vm_created', 'vm_failed']),
               ('paused',      ARRAY['queued', 'vm_created', 'network_configured', 'ansible_started',
                                     'ansible_complete', 'agent_paused']),
               -- never reported ansible_started
               ('running',     ARRAY['queued', 'vm_created', 'network_configured', 'ansible_complete', 'running']),
               ('failed',      ARRAY['queued', 'vm_created', 'network_configured', 'ansible_started', 'failed']),
               ('rolled_back', ARRAY['queued', 'vm_created', 'network_configured', 'ansible_started',
                                     'ansible_complete', 'rolled_back']),
               ('cancelled',   ARRAY['queued', 'vm_created', 'cancelled'])) AS r(id, phases)
 CROSS JOIN LATERAL unnest(r.phases) WITH ORDINALITY AS v(phase, ord)
  JOIN deploy_progress.lifecycle_phases p ON p.lifecycle = 'sl_prov' AND p.phase = v.phase
WINDOW w AS (PARTITION BY r.id ORDER BY v.ord);

-- one line per step
CREATE FUNCTION sl_steps(k text)
RETURNS TABLE (step text, phases text, phase text, status text, started time, ended time)
LANGUAGE sql AS $$
    SELECT s ->> 'step', s ->> 'phases', s ->> 'phase', s ->> 'status',
           (s ->> 'started_at')::timestamptz::time, (s ->> 'ended_at')::timestamptz::time
      FROM jsonb_array_elements(deploy_progress.steps('sl_servers', k)) s
$$;

-- in the second phase of a step: the step is active since its first phase began
SELECT * FROM sl_steps('creating');
-- in a waiting phase without a label: the step it came from stays active
SELECT * FROM sl_steps('approval');
-- failed in a phase labelled like another step: that step failed, when the row failed
SELECT * FROM sl_steps('vm_failed');
-- in a waiting phase with a label: a step of its own, active
SELECT * FROM sl_steps('paused');
-- succeeded; a step whose only phase was never reported is skipped
SELECT * FROM sl_steps('running');
-- failed in an unlabelled failed phase: the step it was in failed, the rest skipped
SELECT * FROM sl_steps('failed');
-- ended in a cancelled phase with a step of its own: that step is reached
SELECT * FROM sl_steps('rolled_back');
-- cancelled in an unlabelled phase: the step it was in and the rest skipped
SELECT * FROM sl_steps('cancelled');
-- no history at all (written before tracking): the row's phase decides
DELETE FROM deploy_progress.history WHERE relid = 'sl_servers'::regclass AND key = 'new';
SELECT * FROM sl_steps('new');

-- the built-in lifecycle has a label per phase but the waiting, failed and
-- cancelled ones, so its steps are its pending, active and succeeded phases
SELECT phase, step FROM deploy_progress.lifecycle_phases WHERE lifecycle = 'default' ORDER BY position;
CREATE TABLE sl_deploys (id int PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT 'queued');
SELECT relid FROM deploy_progress.track('sl_deploys', notify_channel => NULL);
INSERT INTO sl_deploys VALUES (1);
UPDATE sl_deploys SET phase = 'building';
SELECT s ->> 'step' AS step, s ->> 'phase' AS phase, s ->> 'status' AS status
  FROM jsonb_array_elements(deploy_progress.steps('sl_deploys', '1')) s;

-- the labels travel in the stamp trigger's configuration (schema-only dumps)
SELECT e -> 'step' AS step
  FROM jsonb_array_elements(deploy_progress._trigger_config('sl_servers')::jsonb -> 'phases') e
 WHERE e ->> 'phase' IN ('vm_created', 'awaiting_approval');

-- Bad labels: each refused with nothing changed
SELECT deploy_progress.define_lifecycle('sl_bad', $$[{"phase": "a", "kind": "active", "step": 3},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('sl_bad', $$[{"phase": "a", "kind": "active", "step": ""},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('sl_bad', $$[{"phase": "a", "kind": "active", "step": " Build"},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('sl_bad', $$[{"phase": "a", "kind": "active", "step": "Build\nnow"},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('sl_bad', format($$[{"phase": "a", "kind": "active", "step": "%s"},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$, repeat('x', 101))::jsonb);
SELECT deploy_progress.define_lifecycle('sl_bad', $$[{"phase": "a", "kind": "active", "label": "Build"},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
-- one label in two places, with another step between
SELECT deploy_progress.define_lifecycle('sl_bad', $$[{"phase": "a", "kind": "active", "step": "Build"},
    {"phase": "b", "kind": "active"}, {"phase": "c", "kind": "active", "step": "Build"},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT deploy_progress.define_lifecycle('sl_bad', $$[{"phase": "a", "kind": "active", "step": "Build"},
    {"phase": "w", "kind": "waiting", "step": "Approval"}, {"phase": "c", "kind": "active", "step": "Build"},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]$$);
SELECT count(*) FROM deploy_progress.lifecycles WHERE name = 'sl_bad';
-- a redefinition that splits a step leaves the lifecycle as it was
SELECT deploy_progress.define_lifecycle('sl_prov', $$[{"phase": "queued", "kind": "pending", "step": "Queued"},
    {"phase": "vm_created", "kind": "active", "step": "Creating server"}, {"phase": "running", "kind": "succeeded"},
    {"phase": "network_configured", "kind": "active", "step": "Creating server"},
    {"phase": "failed", "kind": "failed"}]$$);
SELECT count(*), count(step) FROM deploy_progress.lifecycle_phases WHERE lifecycle = 'sl_prov';
-- but an unlabelled waiting phase or a failed one between is no step, and
-- a label that equals a phase name is fine
SELECT count(*) FROM deploy_progress.define_lifecycle('sl_ok', $$[{"phase": "a", "kind": "active", "step": "Build"},
    {"phase": "w", "kind": "waiting"}, {"phase": "ko", "kind": "failed"}, {"phase": "c", "kind": "active", "step": "Build"},
    {"phase": "ok", "kind": "succeeded", "step": "a"}]$$);
-- a step label cannot be set to an empty string behind define_lifecycle()'s back either
UPDATE deploy_progress.lifecycle_phases SET step = '' WHERE lifecycle = 'sl_ok' AND phase = 'a';
