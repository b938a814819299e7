//! Query benchmarks, plans, and index comparisons.

use pgrx::JsonB;
use pgrx::prelude::*;

/// Benchmarks each query: one row per query with calls, errors, latency (ms) and queries per second,
/// all recorded in `stress.runs` / `stress.results` under one run.
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
    TableIterator::new(crate::benchmark::benchmark(
        queries,
        iterations,
        warmup,
        concurrency,
        prepared,
        rollback,
    ))
}

/// The plan of `query` (EXPLAIN, FORMAT JSON, VERBOSE; with `analyze`, executed — inside a
/// subtransaction that is rolled back, so DML changes nothing) and `findings`, each with a suggestion.
#[pg_extern(volatile, parallel_unsafe)]
fn explain(query: &str, analyze: default!(bool, false)) -> JsonB {
    crate::benchmark::explain::explain(query, analyze)
}

/// Avg and p99 (ms) of `query` with the current indexes and without the droppable ones, and the
/// speedup the indexes give (avg without / avg with). With `candidates` (CREATE INDEX statements),
/// also with those indexes: they are built for real, measured, and rolled back — a true timing of
/// an index that does not exist yet (hypopg would only estimate its cost).
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
    TableIterator::new(crate::benchmark::compare::compare_indexes(
        queries, iterations, candidates,
    ))
}
