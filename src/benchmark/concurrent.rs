//! `stress.benchmark(…, concurrency => k)`: k background workers — the load run's workers, with
//! the queries as their custom transactions — run each query in turn, together, until its
//! `iterations` measured executions are done (see `load::worker::benchmark_loop`). Each worker keeps
//! an HdrHistogram per query; the last one merges them into `stress.results`, so percentiles stay
//! exact across connections.

use super::{F, Row, one_statement};
use crate::error::StressError;
use crate::load::shmem::{BenchmarkState, MAX_BENCH_QUERIES};
use crate::load::{RunRequest, Scenario, ops::OPS, start_run};
use crate::metrics::histogram::LatencySummary;
use crate::postgres::subxact::{Ending, failure_message, run_isolated_ending};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

/// Why `query` cannot run at all (it cannot be planned: a missing table, no privilege…), if so.
fn preparation_error(query: &str) -> Option<String> {
    if let Err(e) = one_statement(query) {
        return Some(e);
    }
    failure_message(&run_isolated_ending(Ending::RollBack, || {
        Spi::connect(|client| client.prepare(query, &[]).map(|_| ()))
    }))
}

pub fn measure(
    parameters: serde_json::Value,
    queries: &[String],
    iterations: i32,
    warmup: i32,
    concurrency: i32,
    prepared: bool,
    rollback: bool,
) -> (i64, Vec<Row>) {
    crate::load::require_preload("benchmark with concurrency > 1");
    if queries.len() > MAX_BENCH_QUERIES {
        StressError::invalid(
            F,
            format!(
                "with concurrency > 1 at most {MAX_BENCH_QUERIES} queries can be benchmarked in one call, got {}",
                queries.len()
            ),
            "Split the queries over several calls.",
        )
        .raise();
    }
    // A query that cannot even be planned gets its error row; the workers run the others.
    let problems: Vec<Option<String>> = queries.iter().map(|q| preparation_error(q)).collect();
    let runnable: Vec<&String> = queries
        .iter()
        .zip(&problems)
        .filter(|(_, p)| p.is_none())
        .map(|(q, _)| q)
        .collect();
    let (run_id, failure) = if runnable.is_empty() {
        // (Nothing to run: the run is just the error rows below.)
        (super::record(parameters, crate::generate::now(), &[]), None)
    } else {
        run_workers(
            &runnable,
            iterations,
            warmup,
            concurrency,
            prepared,
            rollback,
        )
    };
    let mut measured = measured_rows(run_id).into_iter();
    let rows = queries
        .iter()
        .zip(problems)
        .map(|(query, problem)| match problem {
            // (A run that failed says so in every row: its record is kept, and a WARNING said why.)
            None => {
                let mut row = measured.next().unwrap_or_else(|| Row {
                    query: query.clone(),
                    ..Row::default()
                });
                if let Some(failure) = &failure {
                    row.error = Some(failure.clone());
                }
                row
            }
            Some(error) => {
                crate::records::latency_result(
                    run_id,
                    query,
                    0,
                    0,
                    0.0,
                    &LatencySummary::default(),
                    json!({"error": error, "concurrency": concurrency}),
                );
                Row {
                    query: query.clone(),
                    error: Some(error),
                    ..Row::default()
                }
            }
        })
        .collect();
    (run_id, rows)
}

/// Start the workers on `queries` and wait for them: the run's id, and why it did not complete if it
/// did not.
fn run_workers(
    queries: &[&String],
    iterations: i32,
    warmup: i32,
    concurrency: i32,
    prepared: bool,
    rollback: bool,
) -> (i64, Option<String>) {
    let transactions: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"name": format!("query {}", i + 1), "sql": q}))
        .collect();
    let custom = serde_json::Value::from(transactions).to_string();
    if custom.len() > crate::load::CUSTOM_MAX_BYTES {
        StressError::invalid(
            F,
            format!(
                "with concurrency > 1 the queries may take at most {} bytes together, got {}",
                crate::load::CUSTOM_MAX_BYTES,
                custom.len()
            ),
            "Benchmark fewer or shorter queries per call.",
        )
        .raise();
    }
    let run_id = start_run(RunRequest {
        seconds: 0.0,
        workers: concurrency as usize,
        rate: None,
        weights: [0.0; OPS.len()],
        // The workers' transactions get the caller's default isolation and statement_timeout.
        isolation: unsafe { pg_sys::DefaultXactIsoLevel },
        max_retries: 0,
        wait: true,
        seed: None,
        hot_accounts: 0,
        transfer_pause: 0.0,
        scenario: Scenario::Benchmark,
        day_peaks: None,
        custom,
        bench: Some(BenchmarkState {
            iterations: iterations as u64,
            warmup: warmup as u32,
            prepared,
            rollback,
            statement_timeout_ms: unsafe { pg_sys::StatementTimeout },
            slow_log_limit: crate::gucs::SLOW_QUERY_LOG_LIMIT.get().max(0) as u32,
            ..BenchmarkState::default()
        }),
    });
    let (status, error) = Spi::get_two_with_args::<String, String>(
        "SELECT status, error FROM stress.runs WHERE id = $1",
        &[run_id.into()],
    )
    .expect("reading the run's status");
    let status = status.unwrap_or_else(|| "unknown".into());
    let failure = (status != "completed").then(|| {
        format!(
            "benchmark run {run_id} {status}{}",
            error.map(|e| format!(": {e}")).unwrap_or_default()
        )
    });
    (run_id, failure)
}

/// The rows the workers wrote for `run_id`, in the order of its queries.
fn measured_rows(run_id: i64) -> Vec<Row> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT name, calls, errors, avg_ms, stddev_ms, p50_ms, p95_ms, p99_ms, max_ms,
                        ops_per_sec, details->>'first_error'
                 FROM stress.results WHERE run_id = $1 ORDER BY id",
                None,
                &[run_id.into()],
            )?
            .map(|r| {
                let f = |i| r.get::<f64>(i).map(|v| v.unwrap_or(0.0));
                Ok(Row {
                    query: r.get(1)?.unwrap_or_default(),
                    calls: r.get(2)?.unwrap_or(0),
                    errors: r.get(3)?.unwrap_or(0),
                    avg_ms: f(4)?,
                    stddev_ms: f(5)?,
                    p50_ms: f(6)?,
                    p95_ms: f(7)?,
                    p99_ms: f(8)?,
                    max_ms: f(9)?,
                    qps: f(10)?,
                    error: r.get(11)?,
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .expect("reading the benchmark's results")
}
