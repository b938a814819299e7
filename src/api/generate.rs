//! Generation: the trading tables, alone or as one dataset.

use pgrx::prelude::*;

/// `stress.generate_accounts`: [`crate::generate::accounts::generate_accounts`].
#[pg_extern(volatile, parallel_unsafe)]
fn generate_accounts(
    n: Option<i64>,
    seed: default!(Option<i64>, "NULL"),
    start_at: default!(Option<TimestampWithTimeZone>, "'2024-01-01 00:00:00+00'"),
    days: default!(Option<i32>, 365),
    workers: default!(Option<i32>, 1),
) -> i64 {
    crate::generate::accounts::generate_accounts(n, seed, start_at, days, workers)
}

/// `stress.generate_orders`: [`crate::generate::orders::generate_orders`].
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn generate_orders(
    n: Option<i64>,
    seed: default!(Option<i64>, "NULL"),
    accounts: default!(Option<i64>, "NULL"),
    start_at: default!(Option<TimestampWithTimeZone>, "'2025-01-01 00:00:00+00'"),
    days: default!(Option<i32>, 30),
    peak_hours: default!(Option<Vec<Option<i32>>>, "'{9,10,14,15}'"),
    distribution: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    workers: default!(Option<i32>, 1),
) -> i64 {
    crate::generate::orders::generate_orders(
        n,
        seed,
        accounts,
        start_at,
        days,
        peak_hours,
        distribution,
        workers,
    )
}

/// `stress.generate_trades`: [`crate::generate::trades::generate_trades`].
#[pg_extern(volatile, parallel_unsafe)]
fn generate_trades(
    n: Option<i64>,
    seed: default!(Option<i64>, "NULL"),
    fill_rate: default!(Option<f64>, 0.1),
    distribution: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    workers: default!(Option<i32>, 1),
) -> i64 {
    crate::generate::trades::generate_trades(n, seed, fill_rate, distribution, workers)
}

#[pg_extern(volatile, parallel_unsafe)]
fn generate_positions() -> i64 {
    crate::generate::positions::generate_positions()
}

/// `stress.generate_market_data`: [`crate::generate::market_data::generate_market_data`].
#[pg_extern(volatile, parallel_unsafe)]
fn generate_market_data(
    symbols: default!(Option<Vec<Option<String>>>, "NULL"),
    start_at: default!(Option<TimestampWithTimeZone>, "'2025-01-01 00:00:00+00'"),
    end_at: default!(Option<TimestampWithTimeZone>, "'2025-01-02 00:00:00+00'"),
    step: default!(Option<Interval>, "'1 minute'"),
    seed: default!(Option<i64>, "NULL"),
) -> i64 {
    crate::generate::market_data::generate_market_data(symbols, start_at, end_at, step, seed)
}

/// `stress.generate_audit_log`: [`crate::generate::audit_log::generate_audit_log`].
#[pg_extern(volatile, parallel_unsafe)]
fn generate_audit_log(
    n: Option<i64>,
    seed: default!(Option<i64>, "NULL"),
    start_at: default!(Option<TimestampWithTimeZone>, "'2025-01-01 00:00:00+00'"),
    days: default!(Option<i32>, 30),
    accounts: default!(Option<i64>, "NULL"),
    entities: default!(Option<i64>, 1000000),
    workers: default!(Option<i32>, 1),
) -> i64 {
    crate::generate::audit_log::generate_audit_log(
        n, seed, start_at, days, accounts, entities, workers,
    )
}

#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn generate_dataset(
    orders: default!(Option<i64>, 1000000),
    seed: default!(Option<i64>, "NULL"),
    accounts: default!(Option<i64>, "NULL"),
    trades_per_order: default!(Option<f64>, 5.0),
    audit_events: default!(Option<i64>, "NULL"),
    start_at: default!(Option<TimestampWithTimeZone>, "'2025-01-01 00:00:00+00'"),
    days: default!(Option<i32>, 30),
    market_data_step: default!(Option<Interval>, "'5 minutes'"),
    spec: default!(Option<crate::postgres::json_arg::JsonArg>, "NULL"),
    workers: default!(Option<i32>, 1),
) -> TableIterator<
    'static,
    (
        name!(table_name, String),
        name!(rows, i64),
        name!(seconds, f64),
        name!(rows_per_sec, f64),
    ),
> {
    TableIterator::new(crate::generate::dataset::generate_dataset(
        orders,
        seed,
        accounts,
        trades_per_order,
        audit_events,
        start_at,
        days,
        market_data_step,
        spec,
        workers,
    ))
}
