-- Shared by stamp.sql and side_table.sql (\i test/include/stamp_rel.sql):
-- how a timing moved between two snapshots, in words, so that tests assert
-- relationships between stamps and never print one.
--   -        null before and after      set      null before, now stamped
--   same     unchanged                  cleared  stamped before, now null
--   later    stamped again, later       EARLIER  moved back (a bug)
-- with "=hb" appended when the stamp equals the row's heartbeat, which every
-- write stamps: such a stamp was made by that same write.
CREATE FUNCTION stamp_rel(before timestamptz, after timestamptz, hb timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN before IS NULL AND after IS NULL THEN '-'
                WHEN before IS NULL THEN 'set'
                WHEN after IS NULL THEN 'cleared'
                WHEN after = before THEN 'same'
                WHEN after > before THEN 'later'
                ELSE 'EARLIER' END
           || CASE WHEN after = hb THEN '=hb' ELSE '' END
$$;
