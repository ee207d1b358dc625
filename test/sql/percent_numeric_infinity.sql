-- A numeric percent column refuses an infinite percent, as it refuses NaN
-- (23514), on INSERT and UPDATE.  numeric has had infinities since
-- PostgreSQL 14; on 13 the values themselves do not exist, and the
-- alternative expected output percent_numeric_infinity_1.out holds
-- PostgreSQL's own input error instead.
CREATE TABLE pn_jobs (id integer PRIMARY KEY, phase deploy_progress.phase NOT NULL, percent numeric);
SELECT columns ->> 'percent' AS percent_column FROM deploy_progress.track('pn_jobs');
INSERT INTO pn_jobs VALUES (1, 'building', 'Infinity');
INSERT INTO pn_jobs VALUES (2, 'building', '-Infinity');
INSERT INTO pn_jobs VALUES (3, 'building', 50);
UPDATE pn_jobs SET percent = 'Infinity' WHERE id = 3;
SELECT id, percent FROM pn_jobs;
SELECT deploy_progress.untrack('pn_jobs');
DROP TABLE pn_jobs;
