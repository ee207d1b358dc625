-- demo/rules.sql: writes the stamping trigger refuses (run without
-- ON_ERROR_STOP, each statement echoed before its error).

\echo '-- a finished deployment cannot go back to work (tracked without allow_restart):'
UPDATE deployments SET phase = 'building' WHERE name = 'web-frontend';

\echo '-- counters stay within 0 .. total_items:'
UPDATE deployments SET completed_items = total_items + 1 WHERE name = 'billing-api';

\echo '-- a phase must belong to the lifecycle of its table:'
UPDATE steps SET phase = 'rebooting' WHERE id = 1;
