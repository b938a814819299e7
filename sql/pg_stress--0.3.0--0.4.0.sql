-- pg_stress 0.3.0 → 0.4.0: capacity and contention. stress.ramp degrades a step on p99 and on a
-- throughput drop too (and says why); stress.find_optimal_pool_size and stress.find_capacity are
-- new. tests/integration/upgrade.rs checks that this ends where a fresh 0.4.0 install does.
\echo Use "ALTER EXTENSION pg_stress UPDATE TO '0.4.0'" to load this file. \quit

-- (a new signature and a new column: dropped and made again, not replaced)
DROP FUNCTION stress.ramp(int[], interval, float8, jsonb);
CREATE FUNCTION stress.ramp(
	"workers" INT[],
	"step" interval DEFAULT '30 seconds',
	"max_error_rate" double precision DEFAULT 0.01,
	"mix" jsonb DEFAULT NULL,
	"max_p99_ms" double precision DEFAULT NULL,
	"max_throughput_drop" double precision DEFAULT 0.25
) RETURNS TABLE (
	"step" INT,
	"workers" INT,
	"run_id" bigint,
	"ops_per_sec" double precision,
	"p99_ms" double precision,
	"error_rate" double precision,
	"degraded" bool,
	"reason" TEXT
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'ramp_0_4_0_wrapper';

CREATE FUNCTION stress.find_optimal_pool_size(
	"min_workers" INT,
	"max_workers" INT,
	"target_p99_ms" double precision,
	"step" interval DEFAULT '10 seconds',
	"mix" jsonb DEFAULT NULL,
	"transactions" jsonb DEFAULT NULL,
	"max_error_rate" double precision DEFAULT 0.01
) RETURNS TABLE (
	"step" INT,
	"workers" INT,
	"run_id" bigint,
	"ops_per_sec" double precision,
	"p50_ms" double precision,
	"p99_ms" double precision,
	"error_rate" double precision,
	"wait_events" TEXT,
	"meets_target" bool,
	"best" bool
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'find_optimal_pool_size_wrapper';

CREATE FUNCTION stress.find_capacity(
	"target_p99_ms" double precision,
	"max_error_rate" double precision DEFAULT 0.01,
	"workers" INT DEFAULT NULL,
	"step" interval DEFAULT '10 seconds',
	"mix" jsonb DEFAULT NULL,
	"transactions" jsonb DEFAULT NULL,
	"start_rate" double precision DEFAULT 100.0,
	"max_steps" INT DEFAULT 12
) RETURNS TABLE (
	"step" INT,
	"run_id" bigint,
	"offered_rate" double precision,
	"achieved_rate" double precision,
	"p50_ms" double precision,
	"p99_ms" double precision,
	"error_rate" double precision,
	"wait_events" TEXT,
	"ok" bool,
	"reason" TEXT,
	"capacity" bool
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'find_capacity_wrapper';

REVOKE EXECUTE ON FUNCTION stress.ramp, stress.find_optimal_pool_size, stress.find_capacity FROM PUBLIC;
