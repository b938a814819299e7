//! `stress.benchmark(queries, …)`: each query prepared once and executed `iterations` times, every
//! execution in its own subtransaction (a failing query cannot stop the others, and with `rollback`
//! DML leaves the data as it was), latency recorded in an HdrHistogram — true percentiles, not
//! estimates.

use crate::error::{OrRaise, StressError};
use crate::metrics::blocks::{self, Blocks};
use crate::metrics::histogram::{Latency, LatencySummary};
use crate::postgres::procedure::Call;
use crate::postgres::subxact::{Ending, run_isolated_ending};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;
use std::time::Instant;

pub mod compare;
mod concurrent;
pub mod explain;
mod remote;

pub use explain::plan_of;

const F: &str = "benchmark";
/// Most executions of one query in one call.
pub const MAX_ITERATIONS: i32 = 10_000_000;

/// Now, as the time a benchmark's run started.
fn now() -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(crate::postgres::backend::now()).expect("valid clock")
}

/// What one query's measurement gave.
#[derive(Default)]
struct Outcome {
    query: String,
    calls: i64,
    errors: i64,
    seconds: f64,
    latency: LatencySummary,
    /// the histogram `latency` summarizes (kept in stress.results for stress.compare_runs)
    histogram: Latency,
    /// executions slower than stress.slow_query_threshold_ms
    slow: u64,
    /// the first stress.slow_query_log_limit of them, and the query's plan if there were any
    slow_log: Vec<SlowExecution>,
    plan: Option<serde_json::Value>,
    /// blocks the measured executions found in shared buffers or read
    blocks: Blocks,
    error: Option<String>,
}

/// One execution slower than stress.slow_query_threshold_ms.
#[derive(Debug, Clone, Copy)]
pub struct SlowExecution {
    pub duration_ms: f64,
    pub at: pg_sys::TimestampTz,
}

/// Log slow executions of `query` into `stress.slow_queries` (`worker`: None for the caller).
/// On the primary: record a concurrent benchmark a hot standby ran (runs::standby).
pub fn record_standby_run(batch: crate::runs::standby::Batch) -> i64 {
    crate::runs::standby::record::<concurrent::BenchmarkRun>(batch)
}

pub fn save_slow_executions(
    run_id: i64,
    query: &str,
    worker: Option<i32>,
    slow: &[SlowExecution],
    plan: Option<serde_json::Value>,
) {
    let durations: Vec<f64> = slow.iter().map(|e| e.duration_ms).collect();
    let times: Vec<TimestampWithTimeZone> = slow
        .iter()
        .map(|e| TimestampWithTimeZone::try_from(e.at).expect("a valid time"))
        .collect();
    crate::records::slow_executions(run_id, query, worker, durations, times, plan);
}

/// One row of `stress.benchmark`'s result. Latency figures over no execution, and a rate over no
/// time, are None (NULL): not zeros.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub query: String,
    pub calls: i64,
    pub errors: i64,
    pub avg_ms: Option<f64>,
    pub stddev_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub qps: Option<f64>,
    pub error: Option<String>,
}

impl Outcome {
    fn into_row(self) -> Row {
        let (l, qps) = (self.latency, self.qps());
        let measured = |v: f64| (l.count > 0).then_some(v);
        Row {
            query: self.query,
            calls: self.calls,
            errors: self.errors,
            avg_ms: measured(l.avg_ms),
            stddev_ms: measured(l.stddev_ms),
            p50_ms: measured(l.p50_ms),
            p95_ms: measured(l.p95_ms),
            p99_ms: measured(l.p99_ms),
            max_ms: measured(l.max_ms),
            qps,
            error: self.error,
        }
    }

    /// Successful executions per second (None over no time: nothing ran).
    fn qps(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| (self.calls - self.errors) as f64 / self.seconds)
    }

    /// A query that could not run at all (a syntax error, a missing table, no privilege): one
    /// attempt, failed with `error`.
    fn unrunnable(mut self, error: String) -> Self {
        self.calls = 1;
        self.errors = 1;
        self.error = Some(error);
        self
    }
}

/// How many statements `sql` holds (0 for an empty string); a syntax error is an Err.
fn statement_count(sql: &str) -> Result<usize, String> {
    let text =
        std::ffi::CString::new(sql).map_err(|_| "the query contains a NUL byte".to_owned())?;
    // SAFETY: text is NUL-terminated and lives across the call; the list is read (null or its
    // length) in a subtransaction that catches a parse ERROR.
    crate::postgres::subxact::run_isolated(|| unsafe {
        let list = pg_sys::pg_parse_query(text.as_ptr());
        if list.is_null() {
            0
        } else {
            (*list).length as usize
        }
    })
    .map_err(|e| e.message().to_owned())
}

/// The queries of a call: a non-empty array of non-empty queries (22023 naming the first that is not).
fn query_list(function: &'static str, queries: Vec<Option<String>>) -> Vec<String> {
    if queries.is_empty() {
        StressError::invalid(
            function,
            "queries must not be empty",
            "Pass an array of queries, e.g. ARRAY['SELECT 1'].",
        )
        .raise();
    }
    queries
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            q.filter(|q| !q.trim().is_empty()).ok_or_else(|| {
                StressError::invalid(
                    function,
                    format!("queries[{}] is NULL or empty", i + 1),
                    "Every element must be a query.",
                )
            })
        })
        .collect::<Result<_, _>>()
        .or_raise()
}

/// 22023 unless `iterations` is 1 … [`MAX_ITERATIONS`].
fn check_iterations(function: &'static str, iterations: i32) {
    if !(1..=MAX_ITERATIONS).contains(&iterations) {
        StressError::invalid(
            function,
            format!("iterations must be between 1 and {MAX_ITERATIONS}, got {iterations}"),
            "Pass e.g. iterations => 1000.",
        )
        .raise();
    }
}

/// Ok if `query` is one statement; its syntax error if it has one; an ERROR if it holds several.
fn one_statement(query: &str) -> Result<(), String> {
    match statement_count(query)? {
        1 => Ok(()),
        n => StressError::invalid(
            F,
            format!("each query must be one statement, got {n} in \"{query}\""),
            "Pass each statement as its own array element.",
        )
        .raise(),
    }
}

fn measure(query: &str, iterations: i32, warmup: i32, prepared: bool, rollback: bool) -> Outcome {
    let mut outcome = Outcome {
        query: query.to_owned(),
        ..Outcome::default()
    };
    if let Err(e) = one_statement(query) {
        return outcome.unrunnable(e);
    }
    let ending = if rollback {
        Ending::RollBack
    } else {
        Ending::Keep
    };
    // Prepared once (the plan is kept across the subtransactions), or planned at every execution.
    let plan = if prepared {
        match run_isolated_ending(Ending::Keep, || {
            Spi::connect(|client| client.prepare_mut(query, &[]).map(|p| p.keep()))
        }) {
            Ok(Ok(plan)) => Some(plan),
            Ok(Err(e)) => return outcome.unrunnable(e.to_string()),
            Err(report) => return outcome.unrunnable(report.message().to_owned()),
        }
    } else {
        None
    };
    // A plain SELECT runs through read-only SPI: no transaction id for each execution's
    // subtransaction (which a hot standby could not give, and which a primary pays for). (A query
    // that does not analyze fails each execution below, as it would have.)
    let reads_only = matches!(
        run_isolated_ending(Ending::Keep, || {
            crate::postgres::read_only::statement_reads_only(query, &[])
        }),
        Ok(true)
    );
    // An execution's latency is the statement's own, from SPI's execute to its return — what a
    // session pays per execution (plan check, snapshot, executor start, run and end) — not the
    // subtransaction around it, which only the harness needs.
    let execute = || {
        let called = Instant::now();
        let outcome = run_isolated_ending(ending, || {
            Spi::connect_mut(|client| {
                let t = Instant::now();
                let result = match (&plan, reads_only) {
                    (Some(plan), true) => client.select(plan, None, &[]).map(|_| ()),
                    (Some(plan), false) => client.update(plan, None, &[]).map(|_| ()),
                    (None, true) => client.select(query, None, &[]).map(|_| ()),
                    (None, false) => client.update(query, None, &[]).map(|_| ()),
                };
                (result, t.elapsed())
            })
        });
        match outcome {
            Ok((result, took)) => (Ok(result), took),
            // (An ERROR left the closure: from the call, which is as close as it gets.)
            Err(report) => (Err(report), called.elapsed()),
        }
    };
    for _ in 0..warmup {
        let _ = execute();
        pg_sys::check_for_interrupts!();
    }
    let mut latency = Latency::default();
    let slow_us = slow_threshold_us();
    let log_limit = crate::gucs::SLOW_QUERY_LOG_LIMIT.get().max(0) as usize;
    let blocks_before = blocks::this_backend();
    let started = Instant::now();
    for _ in 0..iterations {
        let (result, took) = execute();
        let ns = took.as_nanos() as u64;
        latency.record_ns(ns);
        if ns > slow_us * 1000 && outcome.slow_log.len() < log_limit {
            outcome.slow_log.push(SlowExecution {
                duration_ms: ns as f64 / 1e6,
                at: crate::postgres::backend::now(),
            });
        }
        outcome.calls += 1;
        if let Some(message) = crate::postgres::subxact::failure_message(&result) {
            outcome.errors += 1;
            outcome.error.get_or_insert(message);
        }
        pg_sys::check_for_interrupts!();
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome.blocks = blocks::this_backend().since(&blocks_before);
    outcome.latency = latency.summary();
    outcome.histogram = latency.clone();
    outcome.slow = latency.count_above(slow_us);
    // Planned after the measurement, so taking the plan slows no measured execution.
    if !outcome.slow_log.is_empty() {
        outcome.plan = explain::plan_of(query);
    }
    outcome
}

/// stress.slow_query_threshold_ms, in µs.
fn slow_threshold_us() -> u64 {
    crate::gucs::SLOW_QUERY_THRESHOLD_MS.get().max(0) as u64 * 1000
}

/// What `stress.benchmark` measured: the run it recorded (None on a hot standby, which records
/// nothing) and one row per query.
pub struct Benchmarked {
    pub run_id: Option<i64>,
    pub rows: Vec<Row>,
}

/// Benchmarks each query: one row per query with calls, errors, latency (ms) and queries per second,
/// all recorded in `stress.runs` / `stress.results` under one run.
pub fn benchmark(
    call: Option<&Call>,
    queries: Vec<Option<String>>,
    iterations: i32,
    warmup: i32,
    concurrency: i32,
    prepared: bool,
    rollback: bool,
) -> Benchmarked {
    let started_at = now();
    let queries = query_list(F, queries);
    check_iterations(F, iterations);
    if !(0..=MAX_ITERATIONS).contains(&warmup) {
        StressError::invalid(
            F,
            format!("warmup must be between 0 and {MAX_ITERATIONS}, got {warmup}"),
            "Pass e.g. warmup => 10.",
        )
        .raise();
    }
    let max = crate::gucs::MAX_WORKERS.get();
    if !(1..=max).contains(&concurrency) {
        StressError::invalid(
            F,
            format!(
                "concurrency must be between 1 and stress.max_workers = {max}, got {concurrency}"
            ),
            "Pass e.g. concurrency => 4, or have a superuser raise stress.max_workers.",
        )
        .raise();
    }
    // (read before anything runs: a bad connection string or a missing password fails the call,
    // 22023 or 2F003; and reaching another server needs the workers' grant, before any
    // connection is made there)
    let target = crate::runs::target::from_settings();
    if target.is_some() {
        crate::postgres::privilege::require_worker_grant(concurrent::KIND);
    }
    let parameters = json!({"queries": queries, "iterations": iterations, "warmup": warmup,
                            "concurrency": concurrency, "prepared": prepared, "rollback": rollback});
    let standby = crate::postgres::backend::in_recovery();
    if standby && target.is_some() {
        StressError::NotSupported {
            message: format!("{F}: a benchmark of a target cannot be run from a hot standby yet"),
            hint: "Benchmark the target from a primary (or from the target itself, with stress.target RESET)."
                .into(),
        }
        .raise();
    }
    if standby && concurrency > 1 {
        StressError::NotSupported {
            message: format!("{F}: concurrency > 1 is not supported on a hot standby yet"),
            hint: "On a standby, benchmark in one session (concurrency => 1: its rows are returned, not recorded), or run concurrent reads with CALL stress.run_load_proc(…, mix => '{\"select\": 1}') or read-only custom transactions."
                .into(),
        }
        .raise();
    }
    // (a target's queries run in workers, whatever the concurrency: the caller's backend holds
    // its snapshot here while it waits, and the executions are the workers' connections there)
    let (run_id, rows) = if concurrency > 1 || target.is_some() {
        let (run_id, rows) = concurrent::measure(
            call,
            target,
            parameters,
            &queries,
            iterations,
            warmup,
            concurrency,
            prepared,
            rollback,
        );
        (Some(run_id), rows)
    } else {
        let outcomes: Vec<Outcome> = queries
            .iter()
            .map(|q| measure(q, iterations, warmup, prepared, rollback))
            .collect();
        // (nothing can be recorded on a hot standby: there the figures are only the call's rows)
        let run_id = if standby {
            pgrx::notice!(
                "{F}: this server is a hot standby: the figures are returned, not recorded (run_id is NULL)"
            );
            None
        } else {
            Some(record(parameters, started_at, &outcomes))
        };
        (
            run_id,
            outcomes.into_iter().map(Outcome::into_row).collect(),
        )
    };
    Benchmarked { run_id, rows }
}

/// One `stress.runs` row (kind benchmark) and a `stress.results` row per query, in this transaction.
fn record(
    parameters: serde_json::Value,
    started_at: TimestampWithTimeZone,
    outcomes: &[Outcome],
) -> i64 {
    // (the run's row; its results are the latency rows below)
    let run_id = crate::records::completed_call("benchmark", parameters, started_at, &[]);
    for o in outcomes {
        let mut details = json!({"error": o.error, "slow": o.slow,
                                 "slow_threshold_ms": crate::gucs::SLOW_QUERY_THRESHOLD_MS.get()});
        crate::metrics::merge_json(&mut details, o.blocks.to_json());
        crate::records::latency_result(
            run_id,
            &o.query,
            o.calls,
            o.errors,
            o.seconds,
            &o.histogram,
            details,
        );
        save_slow_executions(run_id, &o.query, None, &o.slow_log, o.plan.clone());
    }
    run_id
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of};
    use pgrx::prelude::*;

    #[pg_test]
    fn percentiles_of_a_query_of_known_duration() {
        let row = Spi::get_three::<f64, f64, i64>(
            "SELECT p50_ms, max_ms, run_id FROM stress.benchmark(ARRAY['SELECT pg_sleep(0.01)'], iterations => 20, warmup => 1)",
        )
        .unwrap();
        let (p50, max, run) = (row.0.unwrap(), row.1.unwrap(), row.2.unwrap());
        assert!(
            (10.0..15.0).contains(&p50),
            "p50 {p50} ms for a 10 ms sleep"
        );
        assert!(max >= p50);
        assert_eq!(
            one::<i64>(&format!(
                "SELECT r.calls FROM stress.runs s JOIN stress.results r ON r.run_id = s.id
                 WHERE s.kind = 'benchmark' AND r.name = 'SELECT pg_sleep(0.01)' AND s.id = {run}"
            )),
            20
        );
        // Slow executions are counted against stress.slow_query_threshold_ms.
        Spi::run("SET LOCAL stress.slow_query_threshold_ms = 5").unwrap();
        let run = one::<i64>(
            "SELECT DISTINCT run_id FROM stress.benchmark(ARRAY['SELECT pg_sleep(0.01)', 'SELECT 1'], iterations => 5, warmup => 0)",
        );
        let slow = one::<String>(&format!(
            "SELECT string_agg(r.details->>'slow', ',' ORDER BY r.id) FROM stress.results r
             WHERE r.run_id = {run}"
        ));
        assert_eq!(slow, "5,0");
        // The first stress.slow_query_log_limit of them are logged, with the plan.
        Spi::run("SET LOCAL stress.slow_query_log_limit = 3").unwrap();
        let run = one::<i64>(
            "SELECT DISTINCT run_id FROM stress.benchmark(ARRAY['SELECT pg_sleep(0.01)', 'SELECT 1'], iterations => 5, warmup => 0)",
        );
        let logged = one::<String>(&format!(
            "SELECT format('%s %s %s %s', count(*), bool_and(duration_ms >= 10), min(plan->0->'Plan'->>'Node Type'),
                           bool_and(worker IS NULL))
             FROM stress.slow_queries WHERE run_id = {run}"
        ));
        assert_eq!(logged, "3 t Result t");
    }

    #[pg_test]
    fn block_hits_are_counted_per_query() {
        Spi::run(
            "CREATE TABLE t_bench_blocks (id int PRIMARY KEY, v text);
             INSERT INTO t_bench_blocks SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g",
        )
        .unwrap();
        let run = one::<i64>(
            "SELECT run_id FROM stress.benchmark(ARRAY['SELECT v FROM t_bench_blocks WHERE id = 777'], iterations => 200)",
        );
        // (A later statement: the call's own statement does not see the rows it wrote.)
        let row = Spi::get_two::<i64, f64>(&format!(
            "SELECT (details->>'index_blocks_hit')::int8 + (details->>'index_blocks_read')::int8,
                    (details->>'cache_hit_rate')::float8
             FROM stress.results WHERE run_id = {run}"
        ))
        .unwrap();
        let (index_blocks, cache_hit_rate) = (row.0.unwrap(), row.1.unwrap());
        // Every lookup descends the primary key (root and leaf) and reads one heap page.
        assert!(
            index_blocks >= 400,
            "{index_blocks} index blocks for 200 lookups"
        );
        assert!((0.9..=1.0).contains(&cache_hit_rate), "{cache_hit_rate}");
    }

    #[pg_test]
    fn a_failing_query_gets_its_error_and_the_others_are_measured() {
        // On one connection (on background workers: tests/integration/benchmark.rs, which can CALL).
        for concurrency in [1] {
            #[allow(clippy::type_complexity)]
            let rows: Vec<(i64, i64, Option<String>, Option<f64>, Option<f64>, i64)> = Spi::connect(
                |c| {
                    c.select(
                        &format!(
                            "SELECT calls, errors, error, p50_ms, qps, run_id FROM stress.benchmark(
                                 ARRAY['SELECT 1', 'SELECT * FROM t_bench_nowhere', 'SELEC 1', 'SELECT 1/(random() > 2)::int'],
                                 iterations => 10, concurrency => {concurrency})"
                        ),
                        None,
                        &[],
                    )
                    .unwrap()
                    .map(|r| {
                        (
                            r.get(1).unwrap().unwrap(),
                            r.get(2).unwrap().unwrap(),
                            r.get(3).unwrap(),
                            r.get(4).unwrap(),
                            r.get(5).unwrap(),
                            r.get(6).unwrap().unwrap(),
                        )
                    })
                    .collect()
                },
            );
            let error = |i: usize| rows[i].2.clone().unwrap_or_default();
            assert_eq!(
                (rows[0].0, rows[0].1, &rows[0].2),
                (10, 0, &None),
                "concurrency {concurrency}"
            );
            assert!(rows[0].3.is_some_and(|p50| p50 > 0.0) && rows[0].4.is_some());
            // A query that cannot even be planned is one attempt, failed; the statistics of no
            // execution are NULL, not zeros.
            for i in [1, 2] {
                assert_eq!(
                    (rows[i].0, rows[i].1, rows[i].3, rows[i].4),
                    (1, 1, None, None),
                    "{rows:?}"
                );
            }
            assert!(error(1).contains("does not exist"), "{rows:?}");
            assert!(error(2).contains("syntax error"), "{rows:?}");
            // Fails at every execution, not at preparation: counted as errors, and timed.
            assert_eq!((rows[3].0, rows[3].1), (10, 10), "{rows:?}");
            assert!(rows[3].3.is_some(), "{rows:?}");
            assert!(error(3).contains("division by zero"), "{rows:?}");
            // The same in stress.results.
            let recorded = one::<String>(&format!(
                "SELECT string_agg(format('%s/%s/%s/%s', calls, errors, p50_ms IS NULL, ops_per_sec IS NULL), ' ' ORDER BY name COLLATE \"C\")
                 FROM stress.results WHERE run_id = {}",
                rows[0].5
            ));
            // (by query text: SELEC 1, SELECT * FROM t_bench_nowhere, SELECT 1, SELECT 1/…)
            assert_eq!(
                recorded, "1/1/t/t 1/1/t/t 10/0/f/f 10/10/f/f",
                "concurrency {concurrency}"
            );
        }
    }

    #[pg_test]
    fn dml_with_rollback_leaves_the_data_unchanged() {
        Spi::run("CREATE TABLE t_bench_dml (x int)").unwrap();
        Spi::run("SELECT * FROM stress.benchmark(ARRAY['INSERT INTO t_bench_dml VALUES (1)'], iterations => 50, rollback => true)").unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM t_bench_dml"), 0);
        Spi::run("SELECT * FROM stress.benchmark(ARRAY['INSERT INTO t_bench_dml VALUES (1)'], iterations => 50, warmup => 2, prepared => false)").unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM t_bench_dml"), 52);
    }

    #[pg_test]
    fn bad_benchmark_arguments_are_refused() {
        let invalid = Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        for sql in [
            "SELECT * FROM stress.benchmark(ARRAY[]::text[])",
            "SELECT * FROM stress.benchmark(ARRAY['SELECT 1', NULL])",
            "SELECT * FROM stress.benchmark(ARRAY['  '])",
            "SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 0)",
            "SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 2000000000)",
            "SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], warmup => -1)",
            "SELECT * FROM stress.benchmark(ARRAY['SELECT 1; SELECT 2'])",
            "SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], concurrency => 1000)",
            "SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], concurrency => 0)",
            "SELECT * FROM stress.benchmark(array_fill('SELECT 1'::text, ARRAY[17]), concurrency => 2)",
            "SELECT * FROM stress.benchmark(ARRAY['SELECT 1; SELECT 2'], concurrency => 2)",
        ] {
            assert_eq!(sqlstate_of(sql), invalid, "{sql}");
        }
    }
}
