-- Hostile input: random and extreme strings, JSON shapes, sizes and values
-- fed to define_lifecycle(), phase columns, track()'s column names and the
-- figure functions.  The generator is seeded, so every run makes the same
-- calls.  Each call either succeeds or raises a clean error: the test
-- counts the SQLSTATEs it saw per area and lists any internal error
-- (XX000), which must never happen; a crash would end the test.
SET timezone = 'UTC';
SET client_min_messages = warning;
-- The generator is fz_random(), not random(): PostgreSQL 15 changed
-- random()'s algorithm, and the same calls must be made on every version.
-- It hashes the next value of a sequence with a fixed seed (hash functions
-- are the same on every version: hash partitioning depends on them).  A
-- sequence, not a setting of the session, because the draws happen in
-- subtransactions that often fail, and a failed one would roll a setting
-- back: the next call would repeat the draws that failed.
CREATE SEQUENCE fz_draws;
CREATE FUNCTION fz_random() RETURNS double precision LANGUAGE sql VOLATILE AS $$
    SELECT (hashint8extended(nextval('fz_draws'), 20261124) & 9007199254740991)::double precision / 9007199254740992
$$;

CREATE TABLE fz_seen (area text, sqlstate text);
CREATE TABLE fz_internal (area text, input text, message text);

-- a random string: empty, blanks, 63, 64 and 10000 bytes, quotes,
-- backslashes, format and SQL syntax, control characters, multi-byte
-- UTF-8, numbers' spellings, or a random mix of those
CREATE FUNCTION fz_str() RETURNS text LANGUAGE plpgsql AS $fz$
DECLARE
    pool text[] := ARRAY[
        '', ' ', repeat('a', 63), repeat('b', 64), repeat('x', 10000), '''', '"', '\', '\\', '''''',
        '%s', '%I %L %1$s', '$$', 'x''); DROP TABLE fz_seen; --', E'tab\there', E'new\nline', E'\x01\x02\x7f',
        convert_from('\xc3a9c3a0c3bc'::bytea, 'UTF8'), convert_from('\xe282ac'::bytea, 'UTF8'),
        convert_from('\xf09f9a80'::bytea, 'UTF8'), convert_from(decode(repeat('e282ac', 22), 'hex'), 'UTF8'),
        'NaN', 'Infinity', '-Infinity', '1e309', '-0', '99999999999999999999', 'null', '{}', '[]',
        'queued', 'building', 'succeeded', 'failed', 'phase', 'ID', 'a,b', 'x"y', 'Phase'];
    r double precision := fz_random();
BEGIN
    IF r < 0.7 THEN
        RETURN pool[1 + floor(fz_random() * cardinality(pool))::int];
    ELSIF r < 0.85 THEN
        RETURN pool[1 + floor(fz_random() * cardinality(pool))::int] || pool[1 + floor(fz_random() * cardinality(pool))::int];
    ELSE
        -- random printable and control bytes of the ASCII range (no NUL)
        RETURN (SELECT string_agg(chr(1 + floor(fz_random() * 126)::int), '')
                  FROM generate_series(1, 1 + floor(fz_random() * 80)::int));
    END IF;
END $fz$;

-- a random value of JSON: scalars of every type, extreme numbers, nested
-- arrays and objects, and phase-like objects with valid and invalid keys
CREATE FUNCTION fz_json(depth int DEFAULT 0) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r double precision := fz_random();
    nums text[] := ARRAY['0', '-1', '1', '1e308', '-1e308', '1e-320', '0.5', '123456789012345678901234567890', '1e400'];
    kinds text[] := ARRAY['pending', 'active', 'waiting', 'succeeded', 'failed', 'cancelled', 'Active', '', 'done'];
    deadlines text[] := ARRAY['10 minutes', '-1 day', '0', '178000000 years', 'infinity', '1 microsecond', 'soon', '1e10 days'];
    obj jsonb := '{}';
BEGIN
    IF depth > 3 OR r < 0.25 THEN
        RETURN CASE floor(fz_random() * 5)::int
                   WHEN 0 THEN 'null'::jsonb
                   WHEN 1 THEN to_jsonb(fz_random() < 0.5)
                   WHEN 2 THEN nums[1 + floor(fz_random() * cardinality(nums))::int]::jsonb
                   ELSE to_jsonb(fz_str()) END;
    ELSIF r < 0.45 THEN
        RETURN (SELECT coalesce(jsonb_agg(fz_json(depth + 1)), '[]') FROM generate_series(1, floor(fz_random() * 4)::int));
    ELSIF r < 0.55 THEN
        RETURN (SELECT coalesce(jsonb_object_agg(fz_str(), fz_json(depth + 1)), '{}') FROM generate_series(1, floor(fz_random() * 4)::int));
    ELSE
        -- a phase-like object
        IF fz_random() < 0.9 THEN obj := obj || jsonb_build_object('phase', CASE WHEN fz_random() < 0.8 THEN to_jsonb(fz_str()) ELSE fz_json(depth + 1) END); END IF;
        IF fz_random() < 0.9 THEN obj := obj || jsonb_build_object('kind', kinds[1 + floor(fz_random() * cardinality(kinds))::int]); END IF;
        IF fz_random() < 0.4 THEN obj := obj || jsonb_build_object('weight', CASE WHEN fz_random() < 0.8 THEN nums[1 + floor(fz_random() * cardinality(nums))::int]::jsonb ELSE fz_json(depth + 1) END); END IF;
        IF fz_random() < 0.4 THEN obj := obj || jsonb_build_object('deadline', CASE WHEN fz_random() < 0.8 THEN to_jsonb(deadlines[1 + floor(fz_random() * cardinality(deadlines))::int]) ELSE fz_json(depth + 1) END); END IF;
        IF fz_random() < 0.1 THEN obj := obj || jsonb_build_object(fz_str(), fz_json(depth + 1)); END IF;
        RETURN obj;
    END IF;
END $$;

-- record the outcome of one call
CREATE FUNCTION fz_note(area text, state text, input text, message text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO fz_seen VALUES (area, state);
    INSERT INTO fz_internal SELECT area, left(input, 200), message WHERE state = 'XX000';
$$;

--------------------------------------------------------------------------
-- 1. define_lifecycle(): random names and JSON
--------------------------------------------------------------------------
DO $$
DECLARE
    nm text; ph jsonb; st text; msg text;
BEGIN
    FOR i IN 1 .. 400 LOOP
        nm := CASE WHEN fz_random() < 0.5 THEN 'fz_lc_' || i ELSE fz_str() END;
        ph := CASE WHEN fz_random() < 0.3 THEN fz_json()
                   ELSE (SELECT jsonb_agg(fz_json(1)) FROM generate_series(1, 1 + floor(fz_random() * 6)::int)) END;
        -- often make it nearly valid, so that the later checks are reached
        IF fz_random() < 0.5 AND jsonb_typeof(ph) = 'array' THEN
            ph := ph || '[{"phase": "fz_ok", "kind": "succeeded"}, {"phase": "fz_ko", "kind": "failed"}]';
        END IF;
        BEGIN
            PERFORM deploy_progress.define_lifecycle(nm, ph);
            st := 'ok'; msg := NULL;
            PERFORM deploy_progress.drop_lifecycle(nm);
        EXCEPTION WHEN OTHERS THEN
            st := SQLSTATE; msg := SQLERRM;
        END;
        PERFORM fz_note('define_lifecycle', st, nm || ' ' || ph::text, msg);
    END LOOP;
END $$;

--------------------------------------------------------------------------
-- 2. phase values and counters written to tracked tables
--------------------------------------------------------------------------
SELECT count(*) FROM deploy_progress.define_lifecycle('fz_text', '[
    {"phase": "new", "kind": "pending"}, {"phase": "run", "kind": "active"},
    {"phase": "ok", "kind": "succeeded"}, {"phase": "ko", "kind": "failed"}]');
CREATE TABLE fz_text (id serial PRIMARY KEY, phase text NOT NULL, completed_items bigint, total_items bigint,
                      heartbeat_at timestamptz, items_per_second double precision, speed_updated_at timestamptz,
                      phase_updated_at timestamptz);
CREATE TABLE fz_enum (id serial PRIMARY KEY, phase deploy_progress.phase NOT NULL, completed_items smallint,
                      total_items integer);
SELECT storage FROM deploy_progress.track('fz_text', 'fz_text', allow_restart => true);
SELECT storage FROM deploy_progress.track('fz_enum');
INSERT INTO fz_text (phase) VALUES ('run');
INSERT INTO fz_enum (phase) VALUES ('building');
DO $$
DECLARE
    counts bigint[] := ARRAY[NULL, 0, 1, -1, 32767, 32768, 2147483647, 9223372036854775807, -9223372036854775808];
    phases text[] := ARRAY['new', 'run', 'ok', 'ko', 'queued', 'building', 'succeeded', 'failed', 'cancelled'];
    p text; c bigint; t bigint; st text; msg text;
BEGIN
    FOR i IN 1 .. 400 LOOP
        p := CASE WHEN fz_random() < 0.5 THEN phases[1 + floor(fz_random() * cardinality(phases))::int] ELSE fz_str() END;
        c := counts[1 + floor(fz_random() * cardinality(counts))::int];
        t := counts[1 + floor(fz_random() * cardinality(counts))::int];
        BEGIN
            IF i % 4 = 0 THEN
                INSERT INTO fz_text (phase, completed_items, total_items) VALUES (p, c, t);
            ELSIF i % 4 = 1 THEN
                UPDATE fz_text SET phase = p, completed_items = c, total_items = t WHERE id = 1;
            ELSIF i % 4 = 2 THEN
                INSERT INTO fz_enum (phase, completed_items, total_items) VALUES (p::deploy_progress.phase, c, t);
            ELSE
                UPDATE fz_enum SET phase = p::deploy_progress.phase, completed_items = c, total_items = t WHERE id = 1;
            END IF;
            st := 'ok'; msg := NULL;
        EXCEPTION WHEN OTHERS THEN
            st := SQLSTATE; msg := SQLERRM;
        END;
        PERFORM fz_note('phase values', st, concat_ws(' ', i, p, c, t), msg);
    END LOOP;
END $$;

--------------------------------------------------------------------------
-- 3. column names given to track(), then a write through the triggers
--------------------------------------------------------------------------
CREATE TABLE fz_cols (
    "ID" integer PRIMARY KEY, "a,b" text, "x""y" timestamptz, "ünï" bigint, "Phase" deploy_progress.phase,
    "phase" text, "sp ace" double precision, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" integer,
    "%s" timestamptz, "'" timestamptz, "\" text);
INSERT INTO fz_cols ("ID", "Phase", "phase") VALUES (1, 'queued', 'new');
DO $$
DECLARE
    cols text[] := ARRAY['ID', 'a,b', 'x"y', 'ünï', 'Phase', 'phase', 'sp ace', repeat('a', 63), repeat('a', 64),
                         '%s', '''', '\', 'completed_items', NULL];
    n text[] := '{}';
    st text; msg text; ok boolean;
BEGIN
    FOR i IN 1 .. 250 LOOP
        -- the phase column is often a real one, the other roles often off,
        -- so that some calls get through to the triggers
        n := ARRAY[CASE WHEN fz_random() < 0.8 THEN (ARRAY['phase', 'Phase'])[1 + floor(fz_random() * 2)::int] ELSE fz_str() END];
        FOR j IN 2 .. 6 LOOP
            n := n || CASE WHEN fz_random() < 0.4 THEN NULL
                           WHEN fz_random() < 0.7 THEN cols[1 + floor(fz_random() * cardinality(cols))::int] ELSE fz_str() END;
        END LOOP;
        ok := false;
        BEGIN
            PERFORM deploy_progress.track('fz_cols',
                        lifecycle => CASE WHEN n[1] = 'phase' OR fz_random() < 0.2 THEN 'fz_text' END,
                        phase => n[1], completed_items => n[2], total_items => n[3],
                        heartbeat_at => n[4], items_per_second => n[5],
                        key => CASE WHEN fz_random() < 0.6 THEN ARRAY[n[6]]::name[]
                                    WHEN fz_random() < 0.5 THEN ARRAY['ID', n[6]]::name[] END,
                        storage => (ARRAY['auto', 'row', 'side', fz_str()])[1 + floor(fz_random() * 4)::int]);
            ok := true;
            st := 'ok'; msg := NULL;
        EXCEPTION WHEN OTHERS THEN
            st := SQLSTATE; msg := SQLERRM;
        END;
        PERFORM fz_note('track columns', st, array_to_string(n, '|', '<null>'), msg);
        IF ok THEN
            BEGIN
                UPDATE fz_cols SET "phase" = 'run', "Phase" = 'building', "ünï" = 5, "sp ace" = 1 WHERE "ID" = 1;
                INSERT INTO fz_cols ("ID", "Phase", "phase") VALUES (1000 + i, 'queued', 'new');
                DELETE FROM fz_cols WHERE "ID" = 1000 + i;
                st := 'ok'; msg := NULL;
            EXCEPTION WHEN OTHERS THEN
                st := SQLSTATE; msg := SQLERRM;
            END;
            PERFORM fz_note('write after track', st, array_to_string(n, '|', '<null>'), msg);
            PERFORM deploy_progress.untrack('fz_cols');
        END IF;
    END LOOP;
END $$;

--------------------------------------------------------------------------
-- 4. the figure functions at their extremes
--------------------------------------------------------------------------
DO $$
DECLARE
    big bigint[] := ARRAY[NULL, 0, 1, -1, 100, 9223372036854775807, -9223372036854775808];
    dbl double precision[] := ARRAY[NULL::double precision, 0, -0.0, 1, -1, 'NaN', 'Infinity', '-Infinity', 1e308, -1e308, 5e-324];
    ts timestamptz[] := ARRAY[NULL, '-infinity', 'infinity', '4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59+00',
                              '2026-01-01 12:00+00', '2026-01-01 12:00:00.000001+00', '2000-01-01 00:00+00'];
    iv interval[] := ARRAY[NULL, '0', '1 microsecond', '-1 second', '15 seconds', '178000000 years', '-178000000 years',
                           '2147483647 days', '1 month'];
    kinds text[] := ARRAY['pending', 'active', 'waiting', 'succeeded', 'failed', 'cancelled', '', NULL, 'x'];
    pos int[] := ARRAY[NULL, -2147483648, -1, 0, 1, 2, 3, 5, 2147483647];
    w double precision[]; k text[]; n int;
    area text; st text; msg text; input text;
BEGIN
    FOR i IN 1 .. 1500 LOOP
        area := (ARRAY['percent', 'transfer_speed', 'smoothed_speed', 'eta', 'weighted_progress',
                       '_speed_step', '_elapsed_seconds', 'overall_progress', 'describe(jsonb)'])[1 + i % 9];
        input := NULL;
        BEGIN
            CASE area
            WHEN 'percent' THEN
                PERFORM deploy_progress.percent(big[1 + floor(fz_random() * 7)::int], big[1 + floor(fz_random() * 7)::int]);
            WHEN 'transfer_speed' THEN
                PERFORM deploy_progress.transfer_speed(big[1 + floor(fz_random() * 7)::int], ts[1 + floor(fz_random() * 8)::int],
                                                       ts[1 + floor(fz_random() * 8)::int]);
            WHEN 'smoothed_speed' THEN
                PERFORM deploy_progress.smoothed_speed(dbl[1 + floor(fz_random() * 11)::int], ts[1 + floor(fz_random() * 8)::int],
                                                       ts[1 + floor(fz_random() * 8)::int], iv[1 + floor(fz_random() * 9)::int]);
            WHEN 'eta' THEN
                PERFORM deploy_progress.eta(big[1 + floor(fz_random() * 7)::int], big[1 + floor(fz_random() * 7)::int],
                                            dbl[1 + floor(fz_random() * 11)::int]);
            WHEN 'weighted_progress' THEN
                n := floor(fz_random() * 6)::int;
                SELECT array_agg(dbl[1 + floor(fz_random() * 11)::int]) INTO w FROM generate_series(1, n);
                SELECT array_agg(kinds[1 + floor(fz_random() * 9)::int]) INTO k
                  FROM generate_series(1, CASE WHEN fz_random() < 0.8 THEN n ELSE floor(fz_random() * 6)::int END);
                input := concat_ws(' ', w, k);
                PERFORM deploy_progress.weighted_progress(coalesce(w, '{}'), coalesce(k, '{}'), pos[1 + floor(fz_random() * 9)::int],
                                                          dbl[1 + floor(fz_random() * 11)::int]);
            WHEN '_speed_step' THEN
                PERFORM deploy_progress._speed_step(dbl[1 + floor(fz_random() * 11)::int], ts[1 + floor(fz_random() * 8)::int],
                                                    big[1 + floor(fz_random() * 7)::int], ts[1 + floor(fz_random() * 8)::int],
                                                    iv[1 + floor(fz_random() * 9)::int], ts[1 + floor(fz_random() * 8)::int]);
            WHEN '_elapsed_seconds' THEN
                PERFORM deploy_progress._elapsed_seconds(ts[1 + floor(fz_random() * 8)::int], ts[1 + floor(fz_random() * 8)::int]);
            WHEN 'overall_progress' THEN
                PERFORM deploy_progress.overall_progress(CASE WHEN fz_random() < 0.5 THEN 'default' ELSE fz_str() END,
                                                         CASE WHEN fz_random() < 0.5 THEN 'building' ELSE fz_str() END,
                                                         big[1 + floor(fz_random() * 7)::int], big[1 + floor(fz_random() * 7)::int]);
            ELSE
                input := fz_json()::text;
                PERFORM deploy_progress.describe(CASE WHEN fz_random() < 0.5 THEN input::jsonb
                    ELSE jsonb_build_object('phase', fz_json(3), 'kind', fz_json(3), 'completed', fz_json(3),
                                            'total', fz_json(3), 'percent', fz_json(3), 'speed', fz_json(3),
                                            'eta_seconds', fz_json(3), 'stalled', fz_json(3),
                                            'since_progress_seconds', fz_json(3), 'reason', fz_json(3)) END);
            END CASE;
            st := 'ok'; msg := NULL;
        EXCEPTION WHEN OTHERS THEN
            st := SQLSTATE; msg := SQLERRM;
        END;
        PERFORM fz_note(area, st, input, msg);
    END LOOP;
END $$;

--------------------------------------------------------------------------
-- 5. the readers: keys, times and batch sizes
--------------------------------------------------------------------------
DO $$
DECLARE
    ts timestamptz[] := ARRAY[NULL, '-infinity', 'infinity', '4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59+00',
                              '2026-01-01 12:00+00'];
    tbls regclass[] := ARRAY['fz_text', 'fz_enum', 'fz_cols', 'pg_class', NULL];
    sizes int[] := ARRAY[NULL, -1, 0, 1, 2147483647];
    area text; st text; msg text;
BEGIN
    FOR i IN 1 .. 300 LOOP
        area := (ARRAY['progress', 'stuck', 'in_flight', 'fail_stuck', 'timings'])[1 + i % 5];
        BEGIN
            CASE area
            WHEN 'progress' THEN
                PERFORM deploy_progress.progress(tbls[1 + floor(fz_random() * 5)::int],
                                                 CASE WHEN fz_random() < 0.3 THEN '1' ELSE fz_str() END,
                                                 ts[1 + floor(fz_random() * 6)::int]);
            WHEN 'stuck' THEN
                PERFORM count(*) FROM deploy_progress.stuck(tbls[1 + floor(fz_random() * 5)::int], ts[1 + floor(fz_random() * 6)::int]);
            WHEN 'in_flight' THEN
                PERFORM count(*) FROM deploy_progress.in_flight(tbls[1 + floor(fz_random() * 5)::int], ts[1 + floor(fz_random() * 6)::int]);
            WHEN 'fail_stuck' THEN
                PERFORM count(*) FROM deploy_progress.fail_stuck(tbls[1 + floor(fz_random() * 5)::int],
                                                                sizes[1 + floor(fz_random() * 5)::int], ts[1 + floor(fz_random() * 6)::int]);
            ELSE
                PERFORM count(*) FROM deploy_progress.timings(tbls[1 + floor(fz_random() * 5)::int], fz_str());
            END CASE;
            st := 'ok'; msg := NULL;
        EXCEPTION WHEN OTHERS THEN
            st := SQLSTATE; msg := SQLERRM;
        END;
        PERFORM fz_note(area, st, NULL, msg);
    END LOOP;
END $$;

--------------------------------------------------------------------------
-- what was seen
--------------------------------------------------------------------------
RESET client_min_messages;
-- no internal error anywhere (expected: none listed)
SELECT area, input, message FROM fz_internal ORDER BY area, input;
-- every area was exercised, with successes and clean errors
SELECT area, count(*) AS calls, count(*) FILTER (WHERE sqlstate = 'ok') AS ok,
       string_agg(DISTINCT sqlstate, ' ' ORDER BY sqlstate) FILTER (WHERE sqlstate <> 'ok') AS errors
  FROM fz_seen GROUP BY area ORDER BY area;
-- nothing was left behind
SELECT count(*) AS fuzz_lifecycles FROM deploy_progress.lifecycles WHERE name NOT IN ('default', 'fz_text') AND NOT builtin
   AND name NOT IN (SELECT lifecycle FROM deploy_progress.tracked);

SELECT deploy_progress.untrack('fz_text');
DROP TABLE fz_text, fz_enum, fz_cols, fz_seen, fz_internal;
SELECT deploy_progress.drop_lifecycle('fz_text');
DROP FUNCTION fz_random(), fz_str(), fz_json(int), fz_note(text, text, text, text);
DROP SEQUENCE fz_draws;
