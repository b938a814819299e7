-- pg_stress 0.4.0 → 0.5.0: load on hot standbys. stress.run_load (and ramp, find_capacity,
-- find_optimal_pool_size) with a read-only mix run on a standby and record themselves on the
-- primary, through dblink and stress.record_conninfo, by calling stress.record_standby_run there.
-- tests/integration/upgrade.rs checks that this ends where a fresh 0.5.0 install does.
\echo Use "ALTER EXTENSION pg_stress UPDATE TO '0.5.0'" to load this file. \quit

CREATE FUNCTION stress.record_standby_run(
	"batch" TEXT
) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'record_standby_run_wrapper';

REVOKE EXECUTE ON FUNCTION stress.record_standby_run FROM PUBLIC;
