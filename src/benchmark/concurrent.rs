//! `stress.benchmark(…, concurrency => k)`: k background workers (a run of the engine, `runs`) run
//! each query in turn, together, until its `iterations` measured executions are done. Before and
//! after each query's measured executions they meet at a barrier; the last to arrive marks the time
//! and the block counts, so that each query's rate and hit rates cover exactly its measured
//! executions. Each worker keeps an HdrHistogram per query; the last one merges them into
//! `stress.results`, so percentiles stay exact across connections.

use super::remote::RemoteQueries;
use super::{F, Row, SlowExecution, one_statement};
use crate::error::StressError;
use crate::metrics::task::TaskStats;
use crate::postgres::backend::now;
use crate::postgres::multiplex::{self, Client};
use crate::postgres::procedure::Call;
use crate::postgres::read_only;
use crate::postgres::signals;
use crate::postgres::subxact::{Ending, failure_message, run_isolated_ending};
use crate::postgres::transaction::{in_transaction_ending, with_statement_timeout};
use crate::runs::closing::record_task;
use crate::runs::control::{self, Configured};
use crate::runs::kind::{FinishedRun, RunKind, Stopped, WorkerRun};
use crate::runs::target::Target;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cell::{Cell, RefCell};

/// Most queries of one concurrent benchmark, and the most bytes they may take together (as JSON):
/// they travel in the run's slot, and each has two barriers.
pub const MAX_QUERIES: usize = 16;
const MAX_BYTES: usize = 16 * 1024;
const _: () = assert!(MAX_QUERIES <= crate::runs::slots::MAX_TASKS);

/// Why `query` cannot run at all (it cannot be planned: a missing table, no privilege…), if so.
fn preparation_error(query: &str) -> Option<String> {
    if let Err(e) = one_statement(query) {
        return Some(e);
    }
    failure_message(&run_isolated_ending(Ending::RollBack, || {
        Spi::connect(|client| client.prepare(query, &[]).map(|_| ()))
    }))
}

#[allow(clippy::too_many_arguments)]
pub fn measure(
    call: Option<&Call>,
    target: Option<Target>,
    parameters: serde_json::Value,
    queries: &[String],
    iterations: i32,
    warmup: i32,
    concurrency: i32,
    prepared: bool,
    rollback: bool,
) -> (i64, Vec<Row>) {
    control::require_preload(if target.is_some() {
        "benchmark on a target"
    } else {
        "benchmark with concurrency > 1"
    });
    if queries.len() > MAX_QUERIES {
        StressError::invalid(
            F,
            format!(
                "with concurrency > 1 at most {MAX_QUERIES} queries can be benchmarked in one call, got {}",
                queries.len()
            ),
            "Split the queries over several calls.",
        )
        .raise();
    }
    // (on a target, before it is reached: a SELECT could only wait holding its snapshot)
    if target.is_some() && call.is_none() {
        control::refuse_waiting_select(
            "benchmark",
            "benchmark_proc",
            "a benchmark of stress.target runs in workers, whatever the concurrency; then \
             SELECT * FROM stress.benchmark_results(run_id).",
        );
    }
    // A query that cannot even be planned (there, on a target) gets its error row; the workers run
    // the others.
    let problems: Vec<Option<String>> = match &target {
        Some(target) => super::remote::preparation_errors(target, queries),
        None => queries.iter().map(|q| preparation_error(q)).collect(),
    };
    let runnable: Vec<&String> = queries
        .iter()
        .zip(&problems)
        .filter(|(_, p)| p.is_none())
        .map(|(q, _)| q)
        .collect();
    let (run_id, failure) = if runnable.is_empty() {
        // (Nothing to run: the run is just the error rows below.)
        (super::record(parameters, super::now(), &[]), None)
    } else {
        let Some(call) = call else {
            control::refuse_waiting_select(
                "benchmark",
                "benchmark_proc",
                "it returns the run's id; then SELECT * FROM stress.benchmark_results(run_id).",
            );
        };
        run_workers(
            call,
            target,
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
                // (one attempt, failed: no latency, no rate)
                crate::records::latency_result(
                    run_id,
                    query,
                    1,
                    1,
                    0.0,
                    &crate::metrics::histogram::Latency::default(),
                    json!({"error": error, "concurrency": concurrency}),
                );
                super::Outcome {
                    query: query.clone(),
                    ..Default::default()
                }
                .unrunnable(error)
                .into_row()
            }
        })
        .collect();
    (run_id, rows)
}

/// Start the workers on `queries` and wait for them: the run's id, and why it did not complete if it
/// did not.
#[allow(clippy::too_many_arguments)]
fn run_workers(
    call: &Call,
    target: Option<Target>,
    queries: &[&String],
    iterations: i32,
    warmup: i32,
    concurrency: i32,
    prepared: bool,
    rollback: bool,
) -> (i64, Option<String>) {
    let listed: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"name": format!("query {}", i + 1), "sql": q}))
        .collect();
    let size = serde_json::Value::from(listed).to_string().len();
    if size > MAX_BYTES {
        StressError::invalid(
            F,
            format!("with concurrency > 1 the queries may take at most {MAX_BYTES} bytes together, got {size}"),
            "Benchmark fewer or shorter queries per call.",
        )
        .raise();
    }
    let config = BenchmarkConfig {
        queries: queries.iter().map(|q| (*q).clone()).collect(),
        iterations: iterations as u64,
        warmup: warmup as u32,
        prepared,
        rollback,
        // The workers' transactions get the caller's default isolation and statement_timeout.
        statement_timeout_ms: crate::postgres::backend::statement_timeout_ms(),
        slow_log_limit: crate::gucs::SLOW_QUERY_LOG_LIMIT.get().max(0) as u32,
        slow_ms: crate::gucs::SLOW_QUERY_THRESHOLD_MS.get(),
        target,
    };
    let run = control::RunSpec {
        kind: <BenchmarkRun as RunKind>::KIND,
        entry_point: ENTRY_POINT,
        label: "benchmark",
        workers: concurrency as usize,
        seconds: None,
        isolation: crate::postgres::backend::default_isolation(),
        summary_notice: false,
    };
    let mut parameters = json!({
        "queries": config.queries, "iterations": config.iterations, "warmup": config.warmup,
        "concurrency": concurrency, "prepared": prepared, "rollback": rollback,
    });
    if let Some(target) = &config.target {
        parameters["target"] = target.shown();
    }
    let run_id = control::start(run, Some(call), |_| Configured {
        parameters,
        config: serde_json::to_value(&config).expect("a benchmark's configuration"),
    })
    .wait(call);
    // (under a new snapshot, whatever the caller's isolation: it sees what the workers recorded)
    let outcome = crate::postgres::spi_read::latest::<Vec<Option<String>>>(
        "SELECT ARRAY[status, error] FROM stress.runs WHERE id OPERATOR(pg_catalog.=) $1",
        &[run_id.into()],
    )
    .expect("reading the run's status")
    .unwrap_or_default();
    let status = outcome
        .first()
        .cloned()
        .flatten()
        .unwrap_or_else(|| "unknown".into());
    let error = outcome.get(1).cloned().flatten();
    let failure = (status != "completed").then(|| {
        format!(
            "benchmark run {run_id} {status}{}",
            error.map(|e| format!(": {e}")).unwrap_or_default()
        )
    });
    (run_id, failure)
}

/// A concurrent benchmark's configuration, in its run's slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchmarkConfig {
    pub queries: Vec<String>,
    /// measured executions of each query, over all workers
    pub iterations: u64,
    /// unmeasured executions of each query by each worker (each of its connections to a target),
    /// before the measured ones
    pub warmup: u32,
    pub prepared: bool,
    pub rollback: bool,
    /// the caller's statement_timeout (ms, 0 = none), which the workers take on
    pub statement_timeout_ms: i32,
    /// slow executions logged per query, at most (stress.slow_query_log_limit)
    pub slow_log_limit: u32,
    /// executions slower than this are slow (stress.slow_query_threshold_ms)
    pub slow_ms: i32,
    /// the server the queries run on, when not this one
    #[serde(default)]
    pub target: Option<Target>,
}

/// The kind of run a concurrent benchmark is (stress.runs.kind).
pub const KIND: &str = <BenchmarkRun as RunKind>::KIND;

/// The library function the benchmark's workers start in.
const ENTRY_POINT: &str = "pg_stress_benchmark_worker_main";

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_benchmark_worker_main(arg: pg_sys::Datum) {
    crate::runs::worker::main::<BenchmarkRun>(arg);
}

/// A benchmark worker's queries (prepared unless the call said not to), and the slow executions
/// it logged, per query.
pub struct BenchmarkWorker {
    /// on a target: the worker's connections there, one per client
    /// (`stress.target_connections_per_worker`; no SPI plans then)
    remotes: Vec<RemoteQueries>,
    plans: Vec<Option<OwnedPreparedStatement>>,
    /// which queries are plain SELECTs: run through read-only SPI, they take no transaction id
    reads_only: Vec<bool>,
    slow: Vec<Vec<SlowExecution>>,
}

/// The concurrent benchmark's kind of run.
pub struct BenchmarkRun;

impl RunKind for BenchmarkRun {
    const KIND: &'static str = "benchmark";
    type Config = BenchmarkConfig;
    type Worker = BenchmarkWorker;

    fn tasks(config: &BenchmarkConfig) -> Vec<String> {
        (1..=config.queries.len())
            .map(|i| format!("query {i}"))
            .collect()
    }

    fn statements(config: &BenchmarkConfig) -> Vec<(String, Vec<pg_sys::Oid>)> {
        config
            .queries
            .iter()
            .map(|q| (q.clone(), Vec::new()))
            .collect()
    }

    fn prepare(run: &WorkerRun<BenchmarkConfig>) -> Result<BenchmarkWorker, String> {
        let config = &run.config;
        if let Some(target) = &config.target {
            let clients = target.connections_per_worker.max(1);
            let mut remotes = Vec::new();
            for client in 0..clients {
                let name = target.connection_name(
                    "benchmark",
                    run.run_id,
                    run.worker,
                    run.workers,
                    client,
                );
                // (the first connection now: an unreachable target fails the run as it starts; the
                // others as they are first used, so that a worker whose pool has room for one
                // runs on it while the others wait there)
                let remote = RemoteQueries::open(
                    client == 0,
                    target.clone(),
                    name,
                    config.queries.clone(),
                    config.prepared,
                    config.rollback,
                    config.statement_timeout_ms,
                )
                .map_err(|e| e.to_string())?;
                remotes.push(remote);
            }
            return Ok(BenchmarkWorker {
                remotes,
                plans: Vec::new(),
                reads_only: Vec::new(),
                slow: vec![Vec::new(); config.queries.len()],
            });
        }
        // (the queries are planned as pgbench -M prepared would)
        crate::postgres::spi_read::one::<String>(
            "SELECT pg_catalog.set_config('plan_cache_mode', 'auto', false)",
            &[],
        )
        .expect("setting plan_cache_mode");
        let reads_only: Vec<bool> = run
            .config
            .queries
            .iter()
            .map(|q| read_only::statement_reads_only(q, &[]))
            .collect();
        let plans = Spi::connect(|client| {
            run.config
                .queries
                .iter()
                .zip(&reads_only)
                .map(|(q, &reads)| {
                    Ok(match (run.config.prepared, reads) {
                        (false, _) => None,
                        (true, true) => Some(client.prepare(q.as_str(), &[])?.keep()),
                        (true, false) => Some(client.prepare_mut(q.as_str(), &[])?.keep()),
                    })
                })
                .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
        .map_err(|e| e.to_string())?;
        Ok(BenchmarkWorker {
            remotes: Vec::new(),
            plans,
            reads_only,
            slow: vec![Vec::new(); run.config.queries.len()],
        })
    }

    fn run(
        run: &WorkerRun<BenchmarkConfig>,
        worker: &mut BenchmarkWorker,
        stats: &mut [TaskStats],
    ) -> Option<String> {
        match benchmark_loop(run, worker, stats) {
            Err(Stopped::Terminated) => Some(format!(
                "worker {} was terminated (SIGTERM)",
                run.worker + 1
            )),
            _ => None,
        }
    }

    /// The slow executions this worker logged, with the plans of their queries as the caller's role
    /// sees them.
    fn save(run: &WorkerRun<BenchmarkConfig>, worker: &BenchmarkWorker) {
        for (query, executions) in run.config.queries.iter().zip(&worker.slow) {
            if executions.is_empty() {
                continue;
            }
            // (a target's query is planned there, not here: no plan)
            let plan = if run.config.target.is_some() {
                None
            } else {
                super::plan_of(query)
            };
            super::save_slow_executions(
                run.run_id,
                query,
                Some(run.worker as i32 + 1),
                executions,
                plan,
            );
        }
    }

    /// One row per query, named by its text, each over its own measured window (from the barrier
    /// before its measured executions to the one after), with its block counts.
    fn record(run: &FinishedRun<BenchmarkConfig>, merged: &[TaskStats]) {
        let config = &run.config;
        let slow_us = config.slow_ms.max(0) as u64 * 1000;
        for (j, (query, m)) in config.queries.iter().zip(merged).enumerate() {
            let ((t0, b0), (t1, b1)) = (run.slot.marks[2 * j], run.slot.marks[2 * j + 1]);
            let (seconds, mut extra) = if t0 > 0 && t1 >= t0 {
                // (a target's blocks are not this server's: no block figures)
                let blocks = if config.target.is_some() {
                    json!({})
                } else {
                    b1.since(&b0).to_json()
                };
                ((t1 - t0) as f64 / 1e6, blocks)
            } else {
                (run.seconds, json!({}))
            };
            crate::metrics::merge_json(
                &mut extra,
                json!({"slow_threshold_ms": config.slow_ms, "concurrency": run.workers}),
            );
            record_task(
                run.run_id,
                query,
                m,
                seconds.max(1e-6),
                false,
                slow_us,
                Some(extra),
            );
        }
    }
}

/// Every query in turn, all workers on the same one. Each worker warms up, waits for the others,
/// then takes measured executions from the query's shared count until none is left, and waits for
/// the others again. A worker on a target runs each of those steps on all its connections at once
/// (`postgres::multiplex`): each client warms up, then takes from the count.
fn benchmark_loop(
    run: &WorkerRun<BenchmarkConfig>,
    worker: &mut BenchmarkWorker,
    stats: &mut [TaskStats],
) -> Result<(), Stopped> {
    let config = &run.config;
    let BenchmarkWorker {
        remotes,
        plans,
        reads_only,
        slow,
    } = worker;
    let clients = remotes.len().max(1);
    let reactor = multiplex::reactor_for(remotes, |remote, slot| remote.share(slot));
    let shared = Clients {
        run,
        plans,
        reads_only,
        slow: RefCell::new(slow),
        live: RefCell::new(run.figures()),
        stopped: Cell::new(None),
    };
    // (client 0 counts into the worker's figures; the others into their own, added at the end)
    let mut others = vec![vec![TaskStats::default(); stats.len()]; clients - 1];
    run.looping(true);
    let outcome = (|| {
        for j in 0..config.queries.len() {
            let warm: Vec<Client<'_>> = multiplex::clients(remotes)
                .into_iter()
                .map(|remote| Box::pin(warm_up(&shared, j, remote)) as Client)
                .collect();
            multiplex::run_all(&reactor, warm);
            shared.stopped.get().map_or(Ok(()), Err)?;
            run.barrier(2 * j as u32)?;
            let all_stats =
                std::iter::once(&mut stats[j]).chain(others.iter_mut().map(|o| &mut o[j]));
            let measured: Vec<Client<'_>> = multiplex::clients(remotes)
                .into_iter()
                .zip(all_stats)
                .map(|(remote, s)| Box::pin(measure_query(&shared, j, remote, s)) as Client)
                .collect();
            multiplex::run_all(&reactor, measured);
            shared.stopped.get().map_or(Ok(()), Err)?;
            run.barrier(2 * j as u32 + 1)?;
        }
        Ok(())
    })();
    TaskStats::add_each(stats, &others);
    shared.live.borrow_mut().publish(now());
    run.looping(false);
    outcome
}

/// What a benchmark worker's clients share: the run, the SPI plans, the slow executions logged and
/// the live figures, and why they stopped (the first client to see it tells the others).
struct Clients<'a> {
    run: &'a WorkerRun<BenchmarkConfig>,
    plans: &'a [Option<OwnedPreparedStatement>],
    reads_only: &'a [bool],
    slow: RefCell<&'a mut Vec<Vec<SlowExecution>>>,
    live: RefCell<crate::runs::kind::LiveFigures>,
    stopped: Cell<Option<Stopped>>,
}

impl Clients<'_> {
    /// Why the clients are to stop, if they are (and the others told).
    fn stop(&self) -> Option<Stopped> {
        if let Some(why) = self.run.told_to_stop() {
            self.stopped.set(Some(why));
        }
        self.stopped.get()
    }

    /// Query `j` once, on `remote` or over SPI: why it failed, if it did.
    async fn execute(&self, j: usize, remote: Option<&mut RemoteQueries>) -> Option<String> {
        if let Some(remote) = remote {
            return remote.execute(j).await.err().map(|e| e.to_string());
        }
        let config = &self.run.config;
        // (each execution bounded by the caller's statement_timeout, as its own were)
        let timeout_ms = config.statement_timeout_ms as i64;
        let result = signals::in_operation(|| {
            with_statement_timeout(timeout_ms, || {
                in_transaction_ending(config.rollback, || {
                    crate::postgres::backend::report_activity(c"pg_stress benchmark query");
                    Spi::connect_mut(|client| match &self.plans[j] {
                        Some(plan) => read_only::execute(client, plan, self.reads_only[j], &[]),
                        None => read_only::execute(
                            client,
                            config.queries[j].as_str(),
                            self.reads_only[j],
                            &[],
                        ),
                    })
                })
            })
        });
        failure_message(&result)
    }
}

/// A client's unmeasured executions of query `j`.
async fn warm_up(shared: &Clients<'_>, j: usize, mut remote: Option<&mut RemoteQueries>) {
    for _ in 0..shared.run.config.warmup {
        if shared.stop().is_some() {
            return;
        }
        let _ = shared.execute(j, remote.as_deref_mut()).await;
    }
}

/// A client's measured executions of query `j`, taken from the query's shared count until none
/// is left, counted into `s`.
async fn measure_query(
    shared: &Clients<'_>,
    j: usize,
    mut remote: Option<&mut RemoteQueries>,
    s: &mut TaskStats,
) {
    let run = shared.run;
    let config = &run.config;
    let slow_us = config.slow_ms.max(0) as u64 * 1000;
    loop {
        if shared.stopped.get().is_some() {
            return;
        }
        match run.claim(j, config.iterations) {
            None => return shared.stopped.set(Some(Stopped::Cancelled)),
            Some(false) => return,
            Some(true) => {}
        }
        if shared.stop().is_some() {
            return;
        }
        // (Each execution is its own transaction here: its latency includes the commit.)
        let clock = std::time::Instant::now();
        let failure = shared.execute(j, remote.as_deref_mut()).await;
        let took = clock.elapsed();
        // (an execution a stop cut short is not counted: it was not allowed to finish)
        if failure.is_some() && shared.stop().is_some() {
            return;
        }
        let finished = now();
        let latency_us = (took.as_micros() as u64).max(1);
        s.calls += 1;
        s.busy_us += latency_us as i64;
        s.latency.record_ns(took.as_nanos() as u64);
        let mut live = shared.live.borrow_mut();
        match failure {
            None => s.successes += 1,
            Some(message) => {
                s.failures += 1;
                s.first_error.get_or_insert(message);
                live.errors += 1;
            }
        }
        if latency_us > slow_us && run.may_log(j, config.slow_log_limit) {
            shared.slow.borrow_mut()[j].push(SlowExecution {
                duration_ms: latency_us as f64 / 1000.0,
                at: finished,
            });
        }
        live.record(latency_us);
        if live.due(finished) && !live.publish(finished) {
            return shared.stopped.set(Some(Stopped::Cancelled));
        }
    }
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
                let f = |i| r.get::<f64>(i);
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
