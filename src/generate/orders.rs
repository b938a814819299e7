//! `stress.generate_orders(n, seed, …)`: realistic orders, appended fast.

use super::bulk::{numeric_datum, text_datum};
use super::model::{self, OrderModel};
use super::parallel::{IdRows, RowProducer, RowSink, produce_ids};
use super::tables::ORDERS;
use crate::error::{OrRaise, StressError};
use crate::gucs;
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Orders as datums (see [`super::parallel::IdRows`]). Every text value is one of a few
/// constants: their datums are built once.
pub struct OrderRows {
    model: OrderModel,
    symbols: Vec<pg_sys::Datum>,
    sides: Vec<pg_sys::Datum>,
    types: Vec<pg_sys::Datum>,
    statuses: Vec<pg_sys::Datum>,
}

impl OrderRows {
    pub fn new(
        seed: u64,
        accounts: i64,
        start: i64,
        days: i32,
        peak_hours: &[i32],
        distribution: Option<&serde_json::Value>,
    ) -> Result<Self, String> {
        let mut model =
            OrderModel::new(seed, accounts, start, days, peak_hours).map_err(|e| e.to_string())?;
        if let Some(spec) = distribution {
            model.apply_distribution(spec)?;
        }
        let datums = |names: &[&str]| names.iter().map(|s| text_datum(s)).collect();
        Ok(OrderRows {
            model,
            symbols: model::SYMBOLS.iter().map(|s| text_datum(s.name)).collect(),
            sides: datums(model::SIDES),
            types: datums(model::ORDER_TYPES),
            statuses: datums(model::STATUSES),
        })
    }
}

/// The parameters of a orders call, as its workers receive them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrdersJob {
    pub seed: u64,
    pub accounts: i64,
    pub start: i64,
    pub days: i32,
    pub peak_hours: Vec<i32>,
    pub distribution: Option<serde_json::Value>,
}

impl RowProducer for OrderRows {
    type Job = OrdersJob;
    const ENTRY_POINT: &'static str = "pg_stress_generate_orders_main";

    fn from_job(job: &OrdersJob) -> Result<Self, String> {
        OrderRows::new(
            job.seed,
            job.accounts,
            job.start,
            job.days,
            &job.peak_hours,
            job.distribution.as_ref(),
        )
    }

    fn produce(&self, chunk: &[u8], sink: &mut impl RowSink) {
        produce_ids(self, chunk, sink);
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_generate_orders_main(arg: pg_sys::Datum) {
    super::parallel::worker_main::<OrderRows>(arg);
}

impl IdRows for OrderRows {
    #[inline]
    fn fill(&self, id: i64, v: &mut [pg_sys::Datum], _nulls: &mut [bool]) {
        let o = self.model.order(id);
        v[0] = o.id.into();
        v[1] = o.account_id.into();
        v[2] = self.symbols[o.symbol];
        v[3] = self.sides[o.side];
        v[4] = self.types[o.order_type];
        v[5] = self.statuses[o.status];
        v[6] = numeric_datum(o.quantity, model::NUMERIC_SCALE);
        v[7] = numeric_datum(o.price, model::NUMERIC_SCALE);
        v[8] = o.created_at.into();
    }
}

/// Appends `n` orders to `stress_data.orders` (created when missing) and returns how many.
/// The same seed into an empty table gives the same rows, byte for byte.
#[allow(clippy::too_many_arguments)]
pub fn generate_orders(
    n: Option<i64>,
    seed: Option<i64>,
    accounts: Option<i64>,
    start_at: Option<TimestampWithTimeZone>,
    days: Option<i32>,
    peak_hours: Option<Vec<Option<i32>>>,
    distribution: Option<crate::postgres::json_arg::JsonArg>,
    workers: Option<i32>,
) -> i64 {
    const F: &str = "generate_orders";
    let start_at = crate::args::finite_time(F, "start_at", start_at);
    super::prevent_writes_where_read_only(F);
    let started_at = super::now();
    let distribution = distribution.map(|d| d.parse(F, "distribution").or_raise());
    let n = crate::args::row_count(F, n).or_raise();
    let seed = crate::args::seed_or_random(seed);
    let schema = gucs::data_schema();
    let accounts = super::accounts_or_existing(&schema, accounts, 10_000);
    let days = days.unwrap_or(30);
    let start = start_at
        .map(pg_sys::TimestampTz::from)
        .unwrap_or(model::DEFAULT_START);
    let peak_hours: Vec<i32> = match peak_hours {
        None => vec![],
        Some(hours) => hours
            .into_iter()
            .map(|h| {
                h.ok_or_else(|| {
                    StressError::invalid(
                        F,
                        "peak_hours must not contain NULL",
                        "Pass hours 0–23, e.g. '{9,10,14,15}'.",
                    )
                })
            })
            .collect::<Result<_, _>>()
            .or_raise(),
    };
    let workers = crate::args::worker_count(F, workers).or_raise();
    let job = OrdersJob {
        seed: seed as u64,
        accounts,
        start,
        days,
        peak_hours: peak_hours.clone(),
        distribution: distribution.clone(),
    };
    let rows = OrderRows::from_job(&job)
        .map_err(|e| {
            StressError::invalid(
                F,
                e,
                "See docs/generate.md, \"stress.generate_orders\" and \"Distributions\".",
            )
        })
        .or_raise();
    let outcome = super::write_id_rows(&ORDERS, &schema, n, F, &job, &rows, workers);

    let parameters = json!({
        "n": n, "seed": seed, "accounts": accounts, "start_at": start_at.map(|t| t.to_iso_string()),
        "days": days, "peak_hours": peak_hours, "distribution": distribution, "workers": workers,
    });
    super::record(F, parameters, started_at, &schema, "orders", &outcome);
    outcome.rows as i64
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of, use_schema};
    use pgrx::prelude::*;

    #[pg_test]
    fn generates_rows_with_indexes_and_records_the_call() {
        use_schema("t_gen_basic");
        assert_eq!(
            one::<i64>("SELECT stress.generate_orders(5000, seed => 1)"),
            5000
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM t_gen_basic.orders"), 5000);
        assert_eq!(one::<i64>("SELECT min(id) FROM t_gen_basic.orders"), 1);
        assert_eq!(one::<i64>("SELECT max(id) FROM t_gen_basic.orders"), 5000);
        let indexes = one::<String>(
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 't_gen_basic'",
        );
        assert_eq!(
            indexes,
            "orders_account_id_idx,orders_pkey,orders_status_idx,orders_symbol_created_at_idx"
        );
        let recorded = one::<i64>(
            "SELECT r.rows FROM stress.runs s JOIN stress.results r ON r.run_id = s.id
             WHERE s.kind = 'generate_orders' AND s.parameters->>'seed' = '1'
               AND r.name = 't_gen_basic.orders' AND s.status = 'completed' AND r.rows_per_sec > 0",
        );
        assert_eq!(recorded, 5000);
    }

    #[pg_test]
    fn same_seed_same_checksum_different_seed_different() {
        use_schema("t_gen_det");
        Spi::run("SELECT stress.generate_orders(3000, seed => 9)").unwrap();
        let first = one::<String>("SELECT stress.checksum('t_gen_det.orders')");
        Spi::run("TRUNCATE t_gen_det.orders").unwrap();
        Spi::run("SELECT stress.generate_orders(3000, seed => 9)").unwrap();
        assert_eq!(
            one::<String>("SELECT stress.checksum('t_gen_det.orders')"),
            first
        );
        Spi::run("TRUNCATE t_gen_det.orders").unwrap();
        Spi::run("SELECT stress.generate_orders(3000, seed => 10)").unwrap();
        assert_ne!(
            one::<String>("SELECT stress.checksum('t_gen_det.orders')"),
            first
        );
    }

    #[pg_test]
    fn both_index_paths_leave_every_row_indexed() {
        use_schema("t_gen_idx");
        // First call: empty table, indexes rebuilt once. Second: append, indexes maintained.
        Spi::run("SELECT stress.generate_orders(4000, seed => 3)").unwrap();
        Spi::run("SELECT stress.generate_orders(1500, seed => 3)").unwrap();
        let modes = one::<String>(
            "SELECT string_agg(r.details->>'index_mode', ',' ORDER BY s.id) FROM stress.runs s
             JOIN stress.results r ON r.run_id = s.id WHERE r.name = 't_gen_idx.orders'",
        );
        assert_eq!(modes, "rebuild,maintain");
        assert_eq!(
            one::<i64>("SELECT count(DISTINCT id) FROM t_gen_idx.orders"),
            5500
        );
        crate::tests::assert_every_row_indexed(
            "t_gen_idx.orders",
            4,
            "both_index_paths_leave_every_row_indexed",
        );
        Spi::run("SET LOCAL enable_seqscan = off").unwrap();
        let via_index = one::<i64>("SELECT count(*) FROM t_gen_idx.orders WHERE status = 'OPEN'");
        Spi::run("SET LOCAL enable_seqscan = on; SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off").unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM t_gen_idx.orders WHERE status = 'OPEN'"),
            via_index
        );
    }

    /// An empty indexed table the caller may insert into but does not own: its indexes are
    /// maintained row by row, not rebuilt (a rebuild is the owner's to do; the owner check is
    /// version-specific, postgres::version::owns_relation).
    #[pg_test]
    fn another_roles_empty_table_keeps_its_indexes_maintained() {
        use_schema("t_gen_owner");
        Spi::run("SELECT stress.generate_orders(10, seed => 1)").unwrap();
        Spi::run(
            "TRUNCATE t_gen_owner.orders;
             CREATE ROLE stress_test_writer; GRANT USAGE ON SCHEMA t_gen_owner TO stress_test_writer;
             GRANT SELECT, INSERT ON t_gen_owner.orders TO stress_test_writer;
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA t_gen_owner TO stress_test_writer",
        )
        .unwrap();
        Spi::run("SET LOCAL ROLE stress_test_writer").unwrap();
        Spi::run("SELECT stress.generate_orders(500, seed => 2)").unwrap();
        Spi::run("RESET ROLE").unwrap();
        let modes = one::<String>(
            "SELECT string_agg(r.details->>'index_mode', ',' ORDER BY s.id) FROM stress.runs s
             JOIN stress.results r ON r.run_id = s.id WHERE r.name = 't_gen_owner.orders'",
        );
        assert_eq!(modes, "rebuild,maintain");
        assert_eq!(one::<i64>("SELECT count(*) FROM t_gen_owner.orders"), 500);
    }

    #[pg_test]
    fn values_look_like_trading() {
        use_schema("t_gen_real");
        Spi::run("SELECT stress.generate_orders(20000, seed => 5, accounts => 500, days => 10)")
            .unwrap();
        let btc = one::<i64>("SELECT count(*) FROM t_gen_real.orders WHERE symbol = 'BTC/USDT'");
        let dot = one::<i64>("SELECT count(*) FROM t_gen_real.orders WHERE symbol = 'DOT/USDT'");
        assert!(btc > 5 * dot, "BTC {btc} DOT {dot}");
        assert!(one::<bool>(
            "SELECT bool_and(price BETWEEN 45000 AND 90000) FROM t_gen_real.orders WHERE symbol = 'BTC/USDT'"
        ));
        assert!(one::<bool>(
            "SELECT max(account_id) <= 500 AND min(account_id) >= 1 FROM t_gen_real.orders"
        ));
        assert!(one::<bool>(
            "SELECT min(created_at) >= '2025-01-01 00:00:00+00' AND max(created_at) < '2025-01-11 00:00:00+00'
             FROM t_gen_real.orders"
        ));
        let filled =
            one::<f64>("SELECT avg((status = 'FILLED')::int)::float8 FROM t_gen_real.orders");
        assert!((0.50..0.60).contains(&filled), "FILLED share {filled}");
        let peak = one::<f64>(
            "SELECT avg((extract(hour FROM created_at AT TIME ZONE 'UTC') IN (9, 10, 14, 15))::int)::float8
             FROM t_gen_real.orders",
        );
        // 4 peak hours weigh 4 each out of 6×0.25 + 14×1 + 4×4 = 31.5: about 51% of orders.
        assert!((0.46..0.56).contains(&peak), "peak-hour share {peak}");
        assert!(one::<bool>(
            "SELECT scale(price) = 8 AND scale(quantity) = 8 FROM t_gen_real.orders LIMIT 1"
        ));
    }

    #[pg_test]
    fn bad_arguments_are_22023_and_write_nothing() {
        use_schema("t_gen_bad");
        let invalid = Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        for sql in [
            "SELECT stress.generate_orders(NULL)",
            "SELECT stress.generate_orders(-1)",
            "SELECT stress.generate_orders(1000000000000)",
            "SELECT stress.generate_orders(10, accounts => 0)",
            "SELECT stress.generate_orders(10, days => 0)",
            "SELECT stress.generate_orders(10, peak_hours => '{9,24}')",
            "SELECT stress.generate_orders(10, peak_hours => '{9,NULL}')",
        ] {
            assert_eq!(sqlstate_of(sql), invalid, "{sql}");
        }
        assert_eq!(
            sqlstate_of("SELECT stress.generate_orders(10, seed => 'abc')"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION)
        );
        assert_eq!(
            sqlstate_of("SELECT stress.generate_orders(10, seed => 1.5)"),
            Some(PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION)
        );
        assert!(one::<bool>(
            "SELECT to_regclass('t_gen_bad.orders') IS NULL"
        ));
        assert_eq!(one::<i64>("SELECT stress.generate_orders(0)"), 0);
    }

    #[pg_test]
    fn tables_we_cannot_write_correctly_are_refused() {
        use_schema("t_gen_refuse");
        Spi::run("CREATE SCHEMA t_gen_refuse; CREATE TABLE t_gen_refuse.orders (id bigint PRIMARY KEY, note text)").unwrap();
        assert_eq!(
            sqlstate_of("SELECT stress.generate_orders(10)"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION)
        );
        Spi::run("DROP TABLE t_gen_refuse.orders").unwrap();
        Spi::run("SELECT stress.generate_orders(10, seed => 1)").unwrap();
        Spi::run(
            "CREATE FUNCTION t_gen_refuse.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
             CREATE TRIGGER noop BEFORE INSERT ON t_gen_refuse.orders FOR EACH ROW EXECUTE FUNCTION t_gen_refuse.noop()",
        )
        .unwrap();
        assert_eq!(
            sqlstate_of("SELECT stress.generate_orders(10)"),
            Some(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED)
        );
        Spi::run("DROP TRIGGER noop ON t_gen_refuse.orders").unwrap();
        // A CHECK the user added is enforced: the executor's own ExecConstraints runs on every row.
        Spi::run("ALTER TABLE t_gen_refuse.orders ADD CONSTRAINT only_btc CHECK (symbol = 'BTC/USDT') NOT VALID").unwrap();
        assert_eq!(
            sqlstate_of("SELECT stress.generate_orders(1000)"),
            Some(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION)
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM t_gen_refuse.orders"), 10);
    }

    #[pg_test]
    fn writing_needs_insert_privilege() {
        use_schema("t_gen_priv");
        Spi::run("SELECT stress.generate_orders(10, seed => 1)").unwrap();
        Spi::run("CREATE ROLE stress_test_reader; GRANT USAGE ON SCHEMA t_gen_priv TO stress_test_reader;
                  GRANT SELECT ON t_gen_priv.orders TO stress_test_reader").unwrap();
        Spi::run("SET LOCAL ROLE stress_test_reader").unwrap();
        let denied = sqlstate_of("SELECT stress.generate_orders(10)");
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(denied, Some(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE));
        assert_eq!(one::<i64>("SELECT count(*) FROM t_gen_priv.orders"), 10);
    }
}
