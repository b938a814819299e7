//! `stress.generate_dataset(orders => 1000000, …)`: all six tables, in dependency order, with the
//! proportions of a trading system: one account per 100 orders, `trades_per_order` fills per order
//! (spread over the FILLED and PARTIAL ones), positions from the trades, 5-minute candles for every
//! symbol over the period, and one audit event per order.

use super::{accounts, audit_log, market_data, orders, positions, trades};
use crate::error::{OrRaise, StressError};
use crate::gucs;
use crate::postgres::json_arg::JsonArg;
use crate::records::{self, Measurement};
use pgrx::prelude::*;
use serde_json::json;
use std::time::Instant;

/// One row of `stress.generate_dataset`: a table it wrote.
pub type DatasetTable = (String, i64, f64, f64);

#[allow(clippy::too_many_arguments)]
pub fn generate_dataset(
    orders: Option<i64>,
    seed: Option<i64>,
    accounts: Option<i64>,
    trades_per_order: Option<f64>,
    audit_events: Option<i64>,
    start_at: Option<TimestampWithTimeZone>,
    days: Option<i32>,
    market_data_step: Option<Interval>,
    spec: Option<crate::postgres::json_arg::JsonArg>,
    workers: Option<i32>,
) -> Vec<DatasetTable> {
    const F: &str = "generate_dataset";
    let start_at = crate::args::finite_time(F, "start_at", start_at);
    super::prevent_writes_where_read_only(F);
    let started_at = super::now();
    let spec = match spec.map(|s| s.parse(F, "spec").or_raise()) {
        Some(s) => parse_spec(&s)
            .map_err(|e| {
                StressError::invalid(
                    F,
                    e,
                    "See docs/generate.md, \"Distributions\", for the spec format.",
                )
            })
            .or_raise(),
        None => DatasetSpec::default(),
    };
    let plan = DatasetPlan::new(
        &spec,
        Sizes {
            orders,
            accounts,
            trades_per_order,
            audit_events,
        },
        seed,
        start_at,
        days,
        workers,
    );
    let rows = plan.generate(&spec, market_data_step);
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
    let parameters = json!({"spec": spec.raw, "orders": plan.orders, "seed": plan.seed,
                            "accounts": plan.accounts, "trades_per_order": plan.per_order,
                            "audit_events": plan.audit, "start_at": plan.start.to_iso_string(),
                            "days": plan.days, "workers": plan.workers});
    records::completed_call(F, parameters, started_at, &measurements);
    measurements
        .into_iter()
        .map(|m| {
            let rate = m.rows_per_sec().unwrap_or(0.0);
            (m.name, m.rows.unwrap_or(0), m.seconds, rate)
        })
        .collect()
}

/// The sizes a call asks for (a spec's counts take precedence).
struct Sizes {
    orders: Option<i64>,
    accounts: Option<i64>,
    trades_per_order: Option<f64>,
    audit_events: Option<i64>,
}

/// What a dataset call will make: each table's size, the period, the seed and workers, checked.
struct DatasetPlan {
    orders: i64,
    accounts: i64,
    per_order: f64,
    trades: i64,
    audit: i64,
    days: i32,
    start: TimestampWithTimeZone,
    end: TimestampWithTimeZone,
    seed: Option<i64>,
    workers: i32,
}

impl DatasetPlan {
    fn new(
        spec: &DatasetSpec,
        sizes: Sizes,
        seed: Option<i64>,
        start_at: Option<TimestampWithTimeZone>,
        days: Option<i32>,
        workers: Option<i32>,
    ) -> DatasetPlan {
        const F: &str = "generate_dataset";
        let orders = crate::args::row_count(F, spec.orders.or(sizes.orders)).or_raise() as i64;
        let workers = crate::args::worker_count(F, workers).or_raise() as i32;
        let accounts = spec
            .accounts
            .or(sizes.accounts)
            .unwrap_or((orders / 100).max(100));
        let per_order = sizes.trades_per_order.unwrap_or(5.0);
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
        let days = days.unwrap_or(30);
        let start = start_at.unwrap_or_else(|| {
            TimestampWithTimeZone::try_from(super::model::DEFAULT_START).unwrap()
        });
        let end = TimestampWithTimeZone::try_from(
            pg_sys::TimestampTz::from(start)
                + days.clamp(1, 36_500) as i64 * super::model::US_PER_DAY,
        )
        .expect("period end in range");
        DatasetPlan {
            orders,
            accounts,
            per_order,
            trades: spec
                .trades
                .unwrap_or((orders as f64 * per_order).round() as i64),
            audit: spec.audit_log.or(sizes.audit_events).unwrap_or(orders),
            days,
            start,
            end,
            seed: Some(crate::args::seed_or_random(seed)),
            workers,
        }
    }

    /// Each table in dependency order: its name, rows and seconds.
    fn generate(
        &self,
        spec: &DatasetSpec,
        market_data_step: Option<Interval>,
    ) -> Vec<(String, i64, f64)> {
        let (seed, start, days, workers) = (self.seed, self.start, self.days, Some(self.workers));
        let mut rows: Vec<(String, i64, f64)> = Vec::new();
        let mut step = |table: &str, f: &mut dyn FnMut() -> i64| {
            let t = Instant::now();
            let n = f();
            rows.push((table.to_owned(), n, t.elapsed().as_secs_f64()));
        };
        // Orders already in the schema (generate_orders into it before, with no accounts table)
        // may reference more accounts than this dataset would make: make enough for them too, so
        // that the trades of those orders reference accounts that exist.
        let schema_now = gucs::data_schema();
        let missing_accounts = super::highest(&schema_now, "orders", "account_id")
            - super::highest(&schema_now, "accounts", "id");
        let new_accounts = self.accounts.max(missing_accounts);
        let distribution =
            |d: &Option<serde_json::Value>| d.clone().map(|v| JsonArg(v.to_string()));
        step("accounts", &mut || {
            accounts::generate_accounts(Some(new_accounts), seed, Some(start), Some(days), workers)
        });
        step("orders", &mut || {
            orders::generate_orders(
                Some(self.orders),
                seed,
                Some(self.accounts),
                Some(start),
                Some(days),
                Some(vec![Some(9), Some(10), Some(14), Some(15)]),
                distribution(&spec.order_distribution),
                workers,
            )
        });
        let n_trades = self.trades;
        step("trades", &mut || {
            if n_trades > 0 {
                let d = distribution(&spec.trade_distribution);
                trades::generate_trades(Some(n_trades), seed, Some(0.1), d, workers)
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
            market_data::generate_market_data(
                None,
                Some(start),
                Some(self.end),
                market_data_step,
                seed,
            )
        });
        step("audit_log", &mut || {
            audit_log::generate_audit_log(
                Some(self.audit),
                seed,
                Some(start),
                Some(days),
                Some(self.accounts),
                Some(self.orders.max(1)),
                workers,
            )
        });
        rows
    }
}

/// The seed's `generate_data_with_distribution` dictionary, as jsonb:
/// `{"orders": {"count": 1000000, "distribution": "normal", "peak_hours": [9, 10, 14, 15]},
///   "trades": {"count": 5000000, "distribution": "poisson", "lambda": 100}}`.
#[derive(Debug, Default, PartialEq)]
pub struct DatasetSpec {
    pub accounts: Option<i64>,
    pub orders: Option<i64>,
    pub trades: Option<i64>,
    pub audit_log: Option<i64>,
    /// per-column distributions for generate_orders
    pub order_distribution: Option<serde_json::Value>,
    /// per-column distributions for generate_trades
    pub trade_distribution: Option<serde_json::Value>,
    pub raw: serde_json::Value,
}

pub fn parse_spec(spec: &serde_json::Value) -> Result<DatasetSpec, String> {
    use serde_json::{Map, Value};
    let tables = spec
        .as_object()
        .ok_or("spec must be a JSON object keyed by table")?;
    let mut out = DatasetSpec {
        raw: spec.clone(),
        ..Default::default()
    };
    for (table, entry) in tables {
        let entry = entry
            .as_object()
            .ok_or_else(|| format!("spec.{table} must be an object"))?;
        let allowed: &[&str] = match table.as_str() {
            "accounts" | "audit_log" => &["count"],
            "orders" => &[
                "count",
                "distribution",
                "peak_hours",
                "stddev_hours",
                "columns",
            ],
            "trades" => &["count", "distribution", "lambda"],
            other => {
                return Err(format!(
                    "spec.{other}: unknown table; use accounts, orders, trades or audit_log"
                ));
            }
        };
        if let Some(key) = entry.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "spec.{table}.{key}: unknown key; {table} takes {}",
                allowed.join(", ")
            ));
        }
        let count = match entry.get("count") {
            None => None,
            Some(c) => Some(
                c.as_i64()
                    .filter(|c| (0..=crate::args::MAX_ROWS_PER_CALL).contains(c))
                    .ok_or_else(|| {
                        format!(
                            "spec.{table}.count must be an integer between 0 and {}",
                            crate::args::MAX_ROWS_PER_CALL
                        )
                    })?,
            ),
        };
        match table.as_str() {
            "accounts" => out.accounts = count,
            "audit_log" => out.audit_log = count,
            "orders" => {
                out.orders = count;
                let mut columns: Map<String, Value> = match entry.get("columns") {
                    None => Map::new(),
                    Some(Value::Object(c)) => c.clone(),
                    Some(_) => {
                        return Err("spec.orders.columns must be an object of column specs".into());
                    }
                };
                // The table-level distribution and peak hours describe when orders arrive.
                let mut created_at = Map::new();
                for key in ["distribution", "peak_hours", "stddev_hours"] {
                    if let Some(v) = entry.get(key) {
                        created_at.insert(key.into(), v.clone());
                    }
                }
                if !created_at.is_empty() {
                    columns.insert("created_at".into(), Value::Object(created_at));
                }
                out.order_distribution = (!columns.is_empty()).then_some(Value::Object(columns));
            }
            _ => {
                out.trades = count;
                if entry.contains_key("distribution") || entry.contains_key("lambda") {
                    let mut executed_at = entry.clone();
                    executed_at.remove("count");
                    out.trade_distribution = Some(serde_json::json!({"executed_at": executed_at}));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_spec_parses() {
        let spec = json!({
            "orders": {"count": 1000000, "distribution": "normal", "peak_hours": [9, 10, 14, 15]},
            "trades": {"count": 5000000, "distribution": "poisson", "lambda": 100}
        });
        let parsed = parse_spec(&spec).unwrap();
        assert_eq!(parsed.orders, Some(1_000_000));
        assert_eq!(parsed.trades, Some(5_000_000));
        assert_eq!(
            parsed.order_distribution,
            Some(json!({"created_at": {"distribution": "normal", "peak_hours": [9, 10, 14, 15]}}))
        );
        assert_eq!(
            parsed.trade_distribution,
            Some(json!({"executed_at": {"distribution": "poisson", "lambda": 100}}))
        );
        assert_eq!(
            super::super::trades::fill_rate_of(parsed.trade_distribution.as_ref().unwrap()),
            Ok(100.0)
        );
    }

    #[test]
    fn bad_specs_say_where() {
        assert!(parse_spec(&json!([])).unwrap_err().contains("object"));
        assert!(
            parse_spec(&json!({"fills": {}}))
                .unwrap_err()
                .contains("spec.fills")
        );
        assert!(
            parse_spec(&json!({"orders": {"count": -1}}))
                .unwrap_err()
                .contains("spec.orders.count")
        );
        assert!(
            parse_spec(&json!({"orders": {"colour": 1}}))
                .unwrap_err()
                .contains("spec.orders.colour")
        );
        assert!(
            parse_spec(&json!({"trades": {"count": "x"}}))
                .unwrap_err()
                .contains("spec.trades.count")
        );
    }
}
