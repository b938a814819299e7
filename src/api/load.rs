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

/// The seed's incremental load test: one run of `step` per entry of `workers`, in order, until the
/// error rate goes over `max_error_rate` (that step is marked `degraded` and the ramp stops there).
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn ramp(
    workers: Vec<Option<i32>>,
    step: default!(Interval, "'30 seconds'"),
    max_error_rate: default!(f64, 0.01),
    mix: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(workers, i32),
        name!(run_id, i64),
        name!(ops_per_sec, f64),
        name!(p99_ms, f64),
        name!(error_rate, f64),
        name!(degraded, bool),
    ),
> {
    TableIterator::new(crate::load::ramp(workers, step, max_error_rate, mix))
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

// Starting background workers needs a grant (SECURITY.md); the functions that do nothing else are
// not executable by PUBLIC, and every other path that starts workers checks EXECUTE on run_load.
extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION stress.run_load, stress.ramp, stress.deadlock_test, stress.simulate_trading_day
    FROM PUBLIC;
"#,
    name = "worker_grants",
    requires = [run_load, ramp, deadlock_test, simulate_trading_day]
);
