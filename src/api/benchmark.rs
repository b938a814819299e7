//! Query benchmarks, plans, and index comparisons.

use crate::postgres::procedure::value;
use crate::procedure;
use pgrx::JsonB;
use pgrx::prelude::*;

/// `stress.benchmark`: [`crate::benchmark::benchmark`].
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn benchmark(
    queries: Vec<Option<String>>,
    iterations: default!(i32, 100),
    warmup: default!(i32, 5),
    concurrency: default!(i32, 1),
    prepared: default!(bool, true),
    rollback: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(run_id, Option<i64>),
        name!(query, String),
        name!(calls, i64),
        name!(errors, i64),
        name!(avg_ms, Option<f64>),
        name!(stddev_ms, Option<f64>),
        name!(p50_ms, Option<f64>),
        name!(p95_ms, Option<f64>),
        name!(p99_ms, Option<f64>),
        name!(max_ms, Option<f64>),
        name!(qps, Option<f64>),
        name!(error, Option<String>),
    ),
> {
    let measured = crate::benchmark::benchmark(
        None,
        queries,
        iterations,
        warmup,
        concurrency,
        prepared,
        rollback,
    );
    let run_id = measured.run_id;
    TableIterator::new(measured.rows.into_iter().map(move |r| {
        (
            run_id,
            r.query,
            r.calls,
            r.errors,
            r.avg_ms,
            r.stddev_ms,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            r.qps,
            r.error,
        )
    }))
}

// CALL stress.benchmark_proc(queries, iterations, warmup, concurrency, prepared, rollback): the
// benchmark, its workers waited for without a snapshot; the run's id and totals (each query's row:
// stress.benchmark_results(run_id)).
procedure!(
    pg_stress_benchmark_proc,
    pg_finfo_pg_stress_benchmark_proc,
    "benchmark_proc",
    "Run it on its own (not inside BEGIN ... COMMIT). Inside a transaction, benchmark in one session: SELECT * FROM stress.benchmark(queries, concurrency => 1).",
    |call| {
        const F: &str = "benchmark";
        let measured = crate::benchmark::benchmark(
            Some(&call),
            call.required(F, 0, "queries"),
            call.required(F, 1, "iterations"),
            call.required(F, 2, "warmup"),
            call.required(F, 3, "concurrency"),
            call.required(F, 4, "prepared"),
            call.required(F, 5, "rollback"),
        );
        let run_id = measured.run_id;
        let rows = &measured.rows;
        let calls: i64 = rows.iter().map(|r| r.calls).sum();
        let errors: i64 = rows.iter().map(|r| r.errors).sum();
        let worst_p99 = rows.iter().filter_map(|r| r.p99_ms).reduce(f64::max);
        let failed = rows.iter().find_map(|r| r.error.clone());
        call.row(vec![
            value(run_id),
            value(rows.len() as i32),
            value(calls),
            value(errors),
            value(worst_p99),
            value(failed),
        ])
    }
);

extension_sql!(
    r#"
CREATE PROCEDURE stress.benchmark_proc(
    queries text[], iterations integer DEFAULT 100, warmup integer DEFAULT 5, concurrency integer DEFAULT 2,
    prepared boolean DEFAULT true, rollback boolean DEFAULT false,
    INOUT run_id bigint DEFAULT NULL, INOUT query_count integer DEFAULT NULL, INOUT calls bigint DEFAULT NULL,
    INOUT errors bigint DEFAULT NULL, INOUT worst_p99_ms double precision DEFAULT NULL,
    INOUT error text DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_benchmark_proc';
COMMENT ON PROCEDURE stress.benchmark_proc IS 'stress.benchmark with concurrency > 1, or of stress.target (any concurrency), its workers waited for without holding a snapshot; each query''s row: stress.benchmark_results(run_id).';

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
"#,
    name = "benchmark_procedure",
    requires = ["schema"]
);

/// `stress.explain`: [`crate::benchmark::explain::explain`].
#[pg_extern(volatile, parallel_unsafe)]
fn explain(query: &str, analyze: default!(bool, false)) -> JsonB {
    crate::benchmark::explain::explain(query, analyze)
}

/// `stress.compare_indexes`: [`crate::benchmark::compare::compare_indexes`].
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn compare_indexes(
    queries: Vec<Option<String>>,
    iterations: default!(i32, 50),
    candidates: default!(Option<Vec<Option<String>>>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(query, String),
        name!(indexes, Vec<String>),
        name!(indexes_used, Vec<String>),
        name!(with_avg_ms, f64),
        name!(with_p99_ms, f64),
        name!(without_avg_ms, f64),
        name!(without_p99_ms, f64),
        name!(speedup, f64),
        name!(candidate_avg_ms, Option<f64>),
        name!(candidate_p99_ms, Option<f64>),
        name!(candidate_speedup, Option<f64>),
    ),
> {
    let rows = crate::benchmark::compare::compare_indexes(queries, iterations, candidates);
    TableIterator::new(rows.into_iter().map(|r| {
        (
            r.query,
            r.indexes,
            r.indexes_used,
            r.with_avg_ms,
            r.with_p99_ms,
            r.without_avg_ms,
            r.without_p99_ms,
            r.speedup,
            r.candidate_avg_ms,
            r.candidate_p99_ms,
            r.candidate_speedup,
        )
    }))
}
