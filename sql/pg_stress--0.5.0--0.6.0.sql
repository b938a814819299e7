-- pg_stress 0.5.0 → 0.6.0: the calls that wait become procedures that commit, so that nothing
-- pg_stress runs holds a snapshot or a transaction id while a workload runs or waits.
-- - stress.ramp, find_optimal_pool_size, find_capacity, deadlock_test and wait are procedures now
--   (CALL …; a SELECT of them is PostgreSQL's "is a procedure" error with the hint to CALL);
--   a series' steps, with what the series made of each, are in the view stress.series_steps;
-- - stress.run_load_proc, simulate_trading_day_proc and benchmark_proc wait for what
--   stress.run_load, simulate_trading_day and benchmark(…, concurrency > 1) start; those functions
--   refuse to wait (a hint shows the CALL) and, with wait => false, return the run id at once;
-- - stress.benchmark_results(run_id): a recorded benchmark's rows.
-- tests/integration/upgrade.rs checks that this ends where a fresh 0.6.0 install does.
\echo Use "ALTER EXTENSION pg_stress UPDATE TO '0.6.0'" to load this file. \quit

DROP FUNCTION stress.ramp(integer[], interval, double precision, jsonb, double precision, double precision);
DROP FUNCTION stress.deadlock_test(integer, interval, integer, interval, integer);
DROP FUNCTION stress.find_optimal_pool_size(integer, integer, double precision, interval, jsonb, jsonb, double precision);
DROP FUNCTION stress.find_capacity(double precision, double precision, integer, interval, jsonb, jsonb, double precision, integer);
DROP FUNCTION stress.wait(bigint);

CREATE PROCEDURE stress.run_load_proc(
    duration interval, workers integer DEFAULT 1, rate double precision DEFAULT NULL,
    mix jsonb DEFAULT NULL, isolation text DEFAULT 'read committed', max_retries integer DEFAULT NULL,
    seed bigint DEFAULT NULL, transactions jsonb DEFAULT NULL,
    INOUT run_id bigint DEFAULT NULL, INOUT status text DEFAULT NULL, INOUT operations bigint DEFAULT NULL,
    INOUT ops_per_sec double precision DEFAULT NULL, INOUT p50_ms double precision DEFAULT NULL,
    INOUT p99_ms double precision DEFAULT NULL, INOUT errors bigint DEFAULT NULL, INOUT deadlocks bigint DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_run_load_proc';
COMMENT ON PROCEDURE stress.run_load_proc IS 'A load run, waited for without holding a snapshot (it commits as it goes): its id and headline figures.';

CREATE PROCEDURE stress.simulate_trading_day_proc(
    duration interval, peak_hours integer[] DEFAULT '{9,10,14,15}', orders_per_second double precision DEFAULT 100,
    trades_per_second double precision DEFAULT 50, workers integer DEFAULT 4,
    INOUT run_id bigint DEFAULT NULL, INOUT status text DEFAULT NULL, INOUT operations bigint DEFAULT NULL,
    INOUT ops_per_sec double precision DEFAULT NULL, INOUT p50_ms double precision DEFAULT NULL,
    INOUT p99_ms double precision DEFAULT NULL, INOUT errors bigint DEFAULT NULL, INOUT deadlocks bigint DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_simulate_trading_day_proc';
COMMENT ON PROCEDURE stress.simulate_trading_day_proc IS 'The seed''s trading day, waited for without holding a snapshot.';

CREATE PROCEDURE stress.deadlock_test(
    workers integer DEFAULT 2, duration interval DEFAULT '5 seconds', accounts integer DEFAULT 2,
    pause interval DEFAULT '10 milliseconds', max_retries integer DEFAULT NULL,
    INOUT run_id bigint DEFAULT NULL, INOUT transfers bigint DEFAULT NULL, INOUT deadlocks bigint DEFAULT NULL,
    INOUT retries bigint DEFAULT NULL, INOUT failures bigint DEFAULT NULL, INOUT balance_before numeric DEFAULT NULL,
    INOUT balance_after numeric DEFAULT NULL, INOUT conserved boolean DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_deadlock_test';
COMMENT ON PROCEDURE stress.deadlock_test IS 'The seed''s deadlock test: transfers that deadlock, retried; the total of the balances must not change.';

CREATE PROCEDURE stress.ramp(
    workers integer[], step interval DEFAULT '30 seconds', max_error_rate double precision DEFAULT 0.01,
    mix jsonb DEFAULT NULL, max_p99_ms double precision DEFAULT NULL,
    max_throughput_drop double precision DEFAULT 0.25,
    INOUT series_id bigint DEFAULT NULL, INOUT steps integer DEFAULT NULL, INOUT sustained_workers integer DEFAULT NULL,
    INOUT best_ops_per_sec double precision DEFAULT NULL, INOUT degraded_workers integer DEFAULT NULL,
    INOUT reason text DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_ramp';
COMMENT ON PROCEDURE stress.ramp IS 'One load run per worker count until a step degrades; each step in stress.series_steps.';

CREATE PROCEDURE stress.find_optimal_pool_size(
    min_workers integer, max_workers integer, target_p99_ms double precision,
    step interval DEFAULT '10 seconds', mix jsonb DEFAULT NULL, transactions jsonb DEFAULT NULL,
    max_error_rate double precision DEFAULT 0.01,
    INOUT series_id bigint DEFAULT NULL, INOUT steps integer DEFAULT NULL, INOUT best_workers integer DEFAULT NULL,
    INOUT ops_per_sec double precision DEFAULT NULL, INOUT p50_ms double precision DEFAULT NULL,
    INOUT p99_ms double precision DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_find_optimal_pool_size';
COMMENT ON PROCEDURE stress.find_optimal_pool_size IS 'Closed-model runs at doubling worker counts: the most throughput whose p99 meets the target; each step in stress.series_steps.';

CREATE PROCEDURE stress.find_capacity(
    target_p99_ms double precision, max_error_rate double precision DEFAULT 0.01, workers integer DEFAULT NULL,
    step interval DEFAULT '10 seconds', mix jsonb DEFAULT NULL, transactions jsonb DEFAULT NULL,
    start_rate double precision DEFAULT 100, max_steps integer DEFAULT 12,
    INOUT series_id bigint DEFAULT NULL, INOUT steps integer DEFAULT NULL, INOUT capacity double precision DEFAULT NULL,
    INOUT not_sustained double precision DEFAULT NULL, INOUT p99_ms double precision DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_find_capacity';
COMMENT ON PROCEDURE stress.find_capacity IS 'The highest arrival rate the server sustains (open model); each step in stress.series_steps.';

-- Each step of a series (ramp, find_optimal_pool_size, find_capacity) and what the series made of
-- it, as the calling role may see them (stress.runs' row-level security applies: security_invoker).
CREATE VIEW stress.series_steps WITH (security_invoker = true) AS
SELECT (r.parameters #>> '{series,first_run_id}')::bigint AS series_id,
       r.parameters #>> '{series,kind}' AS kind,
       (r.parameters #>> '{series,step}')::integer AS step,
       r.id AS run_id,
       (r.parameters ->> 'workers')::integer AS workers,
       (r.parameters ->> 'rate')::double precision AS offered_rate,
       (v ->> 'ops_per_sec')::double precision AS ops_per_sec,
       (v ->> 'p50_ms')::double precision AS p50_ms,
       (v ->> 'p99_ms')::double precision AS p99_ms,
       (v ->> 'error_rate')::double precision AS error_rate,
       v ->> 'wait_events' AS wait_events,
       (v ->> 'ok')::boolean AS ok,
       v ->> 'reason' AS reason,
       (v ->> 'chosen')::boolean AS chosen,
       r.status
FROM stress.runs r
CROSS JOIN LATERAL (SELECT r.parameters #> '{series,verdict}' AS v) verdict
WHERE r.parameters ? 'series';
COMMENT ON VIEW stress.series_steps IS 'Each step of a ramp, find_optimal_pool_size or find_capacity: its run, figures, whether it was ok, why not, and whether it is the answer (chosen).';
GRANT SELECT ON stress.series_steps TO PUBLIC;

CREATE PROCEDURE stress.wait(run_id bigint, INOUT status text DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_wait';
COMMENT ON PROCEDURE stress.wait IS 'Waits, holding no snapshot, until the run ends; its status (completed, cancelled, failed, interrupted).';

CREATE PROCEDURE stress.benchmark_proc(
    queries text[], iterations integer DEFAULT 100, warmup integer DEFAULT 5, concurrency integer DEFAULT 2,
    prepared boolean DEFAULT true, rollback boolean DEFAULT false,
    INOUT run_id bigint DEFAULT NULL, INOUT query_count integer DEFAULT NULL, INOUT calls bigint DEFAULT NULL,
    INOUT errors bigint DEFAULT NULL, INOUT worst_p99_ms double precision DEFAULT NULL,
    INOUT error text DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_benchmark_proc';
COMMENT ON PROCEDURE stress.benchmark_proc IS 'stress.benchmark with concurrency > 1, its workers waited for without holding a snapshot; each query''s row: stress.benchmark_results(run_id).';

-- Each query's row of a recorded benchmark, as stress.benchmark returns them.
CREATE FUNCTION stress.benchmark_results(id bigint)
RETURNS TABLE (run_id bigint, query text, calls bigint, errors bigint, avg_ms double precision,
               stddev_ms double precision, p50_ms double precision, p95_ms double precision,
               p99_ms double precision, max_ms double precision, qps double precision, error text)
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.run_id, t.name, coalesce(t.calls, 0), coalesce(t.errors, 0), t.avg_ms, t.stddev_ms, t.p50_ms,
           t.p95_ms, t.p99_ms, t.max_ms, t.ops_per_sec,
           coalesce(t.details ->> 'error', t.details ->> 'first_error',
                    CASE WHEN r.status NOT IN ('completed', 'running')
                         THEN 'benchmark run ' || r.id || ' ' || r.status || coalesce(': ' || r.error, '') END)
    FROM stress.results t JOIN stress.runs r ON r.id = t.run_id
    WHERE t.run_id = $1 AND r.kind = 'benchmark'
    ORDER BY t.id
$$;
COMMENT ON FUNCTION stress.benchmark_results IS 'The rows stress.benchmark returned for a recorded benchmark run (from stress.results).';

REVOKE EXECUTE ON PROCEDURE stress.run_load_proc, stress.simulate_trading_day_proc, stress.ramp, stress.deadlock_test,
    stress.find_optimal_pool_size, stress.find_capacity FROM PUBLIC;
