-- pg_stress 0.6.0 → 0.7.0: appending to a dataset refers to what exists.
-- - stress.generate_orders and stress.generate_audit_log take accounts DEFAULT NULL (was 10000):
--   NULL means "the ids of the data schema's accounts table when it exists, else 10000", so that
--   orders appended to a generate_dataset database reference accounts that are there.
-- (The rest of 0.7.0 — rate bounds, runs that stop within a second, runs closed after a crash —
-- is in the library: no SQL object changes for it.)

CREATE OR REPLACE FUNCTION stress.generate_orders(
	"n" bigint,
	"seed" bigint DEFAULT NULL,
	"accounts" bigint DEFAULT NULL,
	"start_at" timestamp with time zone DEFAULT '2025-01-01 00:00:00+00',
	"days" INT DEFAULT 30,
	"peak_hours" INT[] DEFAULT '{9,10,14,15}',
	"distribution" jsonb DEFAULT NULL,
	"workers" INT DEFAULT 1
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'generate_orders_wrapper';

CREATE OR REPLACE FUNCTION stress.generate_audit_log(
	"n" bigint,
	"seed" bigint DEFAULT NULL,
	"start_at" timestamp with time zone DEFAULT '2025-01-01 00:00:00+00',
	"days" INT DEFAULT 30,
	"accounts" bigint DEFAULT NULL,
	"entities" bigint DEFAULT 1000000,
	"workers" INT DEFAULT 1
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'generate_audit_log_wrapper';
