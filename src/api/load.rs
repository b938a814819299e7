//! Load runs and the scenarios built on them, and their report.

use pgrx::JsonB;
use pgrx::prelude::*;

/// Starts a load run and returns its id. With `wait` (the default) returns when the run has ended,
/// printing progress NOTICEs and a summary; otherwise at once (see `stress.wait`, `stress.cancel`).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn run_load(
    duration: Interval,
    workers: default!(i32, 1),
    rate: default!(Option<f64>, "NULL"),
    mix: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    isolation: default!(String, "'read committed'"),
    max_retries: default!(Option<i32>, "NULL"),
    wait: default!(bool, true),
    seed: default!(Option<i64>, "NULL"),
    transactions: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
) -> i64 {
    crate::load::run_load(
        duration,
        workers,
        rate,
        mix,
        isolation,
        max_retries,
        wait,
        seed,
        transactions,
    )
}

/// The seed's deadlock test: `workers` workers transfer money back and forth between the first
/// `accounts` accounts, each debiting one account and then crediting the other, so transfers in
/// opposite directions deadlock. PostgreSQL detects each deadlock, the losing transfer is retried,
/// and the total of all balances must not change by a cent.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn deadlock_test(
    workers: default!(i32, 2),
    duration: default!(Interval, "'5 seconds'"),
    accounts: default!(i32, 2),
    pause: default!(Interval, "'10 milliseconds'"),
    max_retries: default!(Option<i32>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(run_id, i64),
        name!(transfers, i64),
        name!(deadlocks, i64),
        name!(retries, i64),
        name!(failures, i64),
        name!(balance_before, AnyNumeric),
        name!(balance_after, AnyNumeric),
        name!(conserved, bool),
    ),
> {
    TableIterator::new(crate::load::deadlock_test(
        workers,
        duration,
        accounts,
        pause,
        max_retries,
    ))
}

/// The seed's incremental load test: one run of `step` per entry of `workers`, in order, until a
/// step degrades — error rate over `max_error_rate`, p99 over `max_p99_ms`, or throughput more than
/// `max_throughput_drop` below the best step so far; that step is marked `degraded` with the reason,
/// and the ramp stops there.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe, name = "ramp")]
fn ramp_0_4_0(
    workers: Vec<Option<i32>>,
    step: default!(Interval, "'30 seconds'"),
    max_error_rate: default!(f64, 0.01),
    mix: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    max_p99_ms: default!(Option<f64>, "NULL"),
    max_throughput_drop: default!(Option<f64>, 0.25),
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(workers, i32),
        name!(run_id, i64),
        name!(ops_per_sec, f64),
        name!(p99_ms, Option<f64>),
        name!(error_rate, f64),
        name!(degraded, bool),
        name!(reason, Option<String>),
    ),
> {
    TableIterator::new(crate::load::series::ramp(
        workers,
        step,
        max_error_rate,
        mix,
        max_p99_ms,
        max_throughput_drop,
    ))
}

/// `stress.ramp` as 0.3.0 declared it (4 arguments, 7 columns): the symbol (`ramp_wrapper`) that a
/// database still on 0.3.0's SQL calls with this library, until `ALTER EXTENSION pg_stress UPDATE`.
/// It degrades a step on its error rate only, as 0.3.0 did. (No SQL of its own.)
#[allow(clippy::type_complexity)]
#[pg_extern(sql = false)]
fn ramp(
    workers: Vec<Option<i32>>,
    step: Interval,
    max_error_rate: f64,
    mix: Option<crate::postgres::json_arg::JsonArg>,
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(workers, i32),
        name!(run_id, i64),
        name!(ops_per_sec, f64),
        name!(p99_ms, Option<f64>),
        name!(error_rate, f64),
        name!(degraded, bool),
    ),
> {
    TableIterator::new(
        crate::load::series::ramp(workers, step, max_error_rate, mix, None, None)
            .into_iter()
            .map(|(step, k, run_id, ops, p99, errors, degraded, _)| {
                (step, k, run_id, ops, p99, errors, degraded)
            }),
    )
}

/// The seed's connection-pool sizing: closed-model runs of `step` at `min_workers`, doubling, up to
/// `max_workers`; `best` is the worker count with the highest throughput whose p99 is at most
/// `target_p99_ms` (and error rate at most `max_error_rate`).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn find_optimal_pool_size(
    min_workers: i32,
    max_workers: i32,
    target_p99_ms: f64,
    step: default!(Interval, "'10 seconds'"),
    mix: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    transactions: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    max_error_rate: default!(f64, 0.01),
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(workers, i32),
        name!(run_id, i64),
        name!(ops_per_sec, f64),
        name!(p50_ms, Option<f64>),
        name!(p99_ms, Option<f64>),
        name!(error_rate, f64),
        name!(wait_events, Option<String>),
        name!(meets_target, bool),
        name!(best, bool),
    ),
> {
    TableIterator::new(crate::load::series::find_optimal_pool_size(
        min_workers,
        max_workers,
        target_p99_ms,
        step,
        mix,
        transactions,
        max_error_rate,
    ))
}

/// The highest arrival rate the server sustains (open model): achieved at least 98% of offered,
/// p99 from intended start at most `target_p99_ms`, error rate at most `max_error_rate`. The rate
/// doubles from `start_rate` until a step falls short, then is bisected to within 10%.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn find_capacity(
    target_p99_ms: f64,
    max_error_rate: default!(f64, 0.01),
    workers: default!(Option<i32>, "NULL"),
    step: default!(Interval, "'10 seconds'"),
    mix: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    transactions: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    start_rate: default!(f64, 100.0),
    max_steps: default!(i32, 12),
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(run_id, i64),
        name!(offered_rate, f64),
        name!(achieved_rate, f64),
        name!(p50_ms, Option<f64>),
        name!(p99_ms, Option<f64>),
        name!(error_rate, f64),
        name!(wait_events, Option<String>),
        name!(ok, bool),
        name!(reason, Option<String>),
        name!(capacity, bool),
    ),
> {
    TableIterator::new(crate::load::series::find_capacity(
        target_p99_ms,
        max_error_rate,
        workers,
        step,
        mix,
        transactions,
        start_rate,
        max_steps,
    ))
}

/// The seed's production simulation: a trading day compressed into `duration`, orders and trades
/// arriving (open model) at `orders_per_second` and `trades_per_second` in an ordinary hour, four
/// times that in `peak_hours`, a quarter of it at night (hours 0–5).
#[pg_extern(volatile, parallel_unsafe)]
fn simulate_trading_day(
    duration: Interval,
    peak_hours: default!(Vec<Option<i32>>, "'{9,10,14,15}'"),
    orders_per_second: default!(f64, 100.0),
    trades_per_second: default!(f64, 50.0),
    workers: default!(i32, 4),
    wait: default!(bool, true),
) -> i64 {
    crate::load::simulate_trading_day(
        duration,
        peak_hours,
        orders_per_second,
        trades_per_second,
        workers,
        wait,
    )
}

/// The report of load run `run_id` (the latest load run when NULL), as jsonb: the seed's keys
/// (total_operations, …, slow_query_count), each operation's figures, and `targets`.
#[pg_extern(stable, parallel_safe)]
fn report(run_id: default!(Option<i64>, "NULL")) -> JsonB {
    crate::load::report::report(run_id)
}

/// On the primary: record a run a hot standby ran (`stress.run_load` there sends it, through dblink
/// and `stress.record_conninfo`), as the calling role's, as the run's last worker would have here.
/// Returns the run id. Needs the workers' grant; not for calling by hand.
#[pg_extern(volatile, parallel_unsafe)]
fn record_standby_run(batch: &str) -> i64 {
    let batch = crate::runs::standby::parse(batch);
    match batch.kind.as_str() {
        "run_load" => crate::load::record_standby_run(batch),
        "benchmark" => crate::benchmark::record_standby_run(batch),
        _ => crate::runs::standby::unknown_kind(&batch),
    }
}

// Starting background workers needs a grant (SECURITY.md); the functions that do nothing else are
// not executable by PUBLIC, and every other path that starts workers checks EXECUTE on run_load.
extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION stress.run_load, stress.ramp, stress.deadlock_test, stress.simulate_trading_day,
    stress.find_optimal_pool_size, stress.find_capacity, stress.record_standby_run FROM PUBLIC;
"#,
    name = "worker_grants",
    requires = [
        record_standby_run,
        run_load,
        ramp,
        deadlock_test,
        simulate_trading_day,
        find_optimal_pool_size,
        find_capacity
    ]
);
