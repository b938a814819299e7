//! `stress.generate_dataset(orders => 1000000, …)`: all six tables, in dependency order, with the
//! proportions of a trading system: one account per 100 orders, `trades_per_order` fills per order
//! (spread over the FILLED and PARTIAL ones), positions from the trades, 5-minute candles for every
//! symbol over the period, and one audit event per order.

use super::{accounts, audit_log, market_data, orders, positions, trades};
use crate::error::{OrRaise, StressError};
use crate::gucs;
use crate::metrics::{self, Measurement};
use pgrx::prelude::*;
use serde_json::json;
use std::time::Instant;

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
) -> TableIterator<
    'static,
    (
        name!(table_name, String),
        name!(rows, i64),
        name!(seconds, f64),
        name!(rows_per_sec, f64),
    ),
> {
    const F: &str = "generate_dataset";
    let started_at = super::now();
    let n_orders = super::row_count(F, orders).or_raise() as i64;
    let seed = Some(super::seed_or_random(seed));
    let n_accounts = accounts.unwrap_or((n_orders / 100).max(100));
    let per_order = trades_per_order.unwrap_or(5.0);
    if !(0.0..=super::trades::MAX_FILLS_PER_ORDER as f64).contains(&per_order) {
        StressError::invalid(
            F,
            format!(
                "trades_per_order must be between 0 and {}, got {per_order}",
                super::trades::MAX_FILLS_PER_ORDER
            ),
            "The seed's datasets use 5 to 10 trades per order.",
        )
        .raise();
    }
    let n_trades = (n_orders as f64 * per_order).round() as i64;
    let n_audit = audit_events.unwrap_or(n_orders);
    let days = days.unwrap_or(30);
    let start = start_at
        .unwrap_or_else(|| TimestampWithTimeZone::try_from(789_004_800_000_000i64).unwrap());
    let end = TimestampWithTimeZone::try_from(
        pg_sys::TimestampTz::from(start) + days.clamp(1, 36_500) as i64 * super::model::US_PER_DAY,
    )
    .expect("period end in range");

    let mut rows: Vec<(String, i64, f64)> = Vec::new();
    let mut step = |table: &str, f: &mut dyn FnMut() -> i64| {
        let t = Instant::now();
        let n = f();
        rows.push((table.to_owned(), n, t.elapsed().as_secs_f64()));
    };
    step("accounts", &mut || {
        accounts::generate_accounts(Some(n_accounts), seed, Some(start), Some(days))
    });
    step("orders", &mut || {
        orders::generate_orders(
            Some(n_orders),
            seed,
            Some(n_accounts),
            Some(start),
            Some(days),
            Some(vec![Some(9), Some(10), Some(14), Some(15)]),
        )
    });
    step("trades", &mut || {
        if n_trades > 0 {
            trades::generate_trades(Some(n_trades), seed, Some(0.1))
        } else {
            0
        }
    });
    step("positions", &mut || {
        if n_trades > 0 {
            positions::generate_positions()
        } else {
            0
        }
    });
    step("market_data", &mut || {
        market_data::generate_market_data(None, Some(start), Some(end), market_data_step, seed)
    });
    step("audit_log", &mut || {
        audit_log::generate_audit_log(
            Some(n_audit),
            seed,
            Some(start),
            Some(days),
            Some(n_accounts),
            Some(n_orders.max(1)),
        )
    });

    let schema = gucs::data_schema();
    let measurements: Vec<Measurement> = rows
        .iter()
        .map(|(table, n, secs)| Measurement {
            name: format!("{schema}.{table}"),
            rows: Some(*n),
            seconds: *secs,
            details: json!({}),
        })
        .collect();
    let parameters = json!({"orders": n_orders, "seed": seed, "accounts": n_accounts, "trades_per_order": per_order,
                            "audit_events": n_audit, "start_at": start.to_iso_string(), "days": days});
    metrics::record_completed_call(F, parameters, started_at, &measurements);
    TableIterator::new(measurements.into_iter().map(|m| {
        let rate = m.rows_per_sec().unwrap_or(0.0);
        (m.name, m.rows.unwrap_or(0), m.seconds, rate)
    }))
}
