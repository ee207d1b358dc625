-- timings() in row storage finds a row through its key's own type (so the
-- primary key index is used) and its exact key text.
CREATE TABLE tl (id bigint PRIMARY KEY, phase deploy_progress.phase NOT NULL,
                 phase_updated_at timestamptz, started_at timestamptz);
SELECT relid FROM deploy_progress.track('tl');
INSERT INTO tl (id, phase) VALUES (1, 'building'), (2, 'queued');
SELECT phase_updated_at IS NOT NULL AS found, started_at IS NOT NULL AS started
  FROM deploy_progress.timings('tl', '1');
-- only the exact key text matches; text that is no bigint matches nothing
SELECT count(*) AS leading_zero FROM deploy_progress.timings('tl', '01');
SELECT count(*) AS not_a_number FROM deploy_progress.timings('tl', 'abc');
SELECT count(*) AS out_of_range FROM deploy_progress.timings('tl', '99999999999999999999');
-- the condition timings() and progress() use reads the primary key
SELECT deploy_progress._key_condition(t) FROM deploy_progress.tracked t WHERE relid = 'tl'::regclass;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM tl WHERE id = '1'::bigint AND id::text = '1';
RESET enable_seqscan;
DROP TABLE tl;
