//! #[pg_test]s across the generated tables: the relations between them hold.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of, use_schema};
    use pgrx::prelude::*;

    #[pg_test]
    fn accounts_orders_trades_positions_fit_together() {
        use_schema("t_ds");
        assert_eq!(
            one::<i64>("SELECT stress.generate_accounts(300, seed => 1)"),
            300
        );
        assert_eq!(
            one::<i64>("SELECT stress.generate_orders(4000, seed => 1, accounts => 300)"),
            4000
        );
        // orders were created after accounts: they reference them.
        assert_eq!(
            one::<String>(
                "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = 't_ds.orders'::regclass AND contype = 'f'"
            ),
            "t_ds.accounts"
        );
        assert_eq!(
            one::<i64>("SELECT stress.generate_trades(15000, seed => 1)"),
            15000
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM t_ds.trades"), 15000);
        // No orphans, fills only of FILLED/PARTIAL orders, never more than ordered, always after the order.
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM t_ds.trades t LEFT JOIN t_ds.orders o ON o.id = t.order_id WHERE o.id IS NULL"
            ),
            0
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM t_ds.trades t JOIN t_ds.orders o ON o.id = t.order_id
                 WHERE o.status NOT IN ('FILLED', 'PARTIAL') OR t.quantity > o.quantity OR t.executed_at <= o.created_at
                    OR t.account_id <> o.account_id OR t.symbol <> o.symbol OR t.side <> o.side"
            ),
            0
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM (SELECT o.id, o.status, o.quantity, sum(t.quantity) AS filled
                                       FROM t_ds.orders o JOIN t_ds.trades t ON t.order_id = o.id GROUP BY o.id) x
                 WHERE (status = 'FILLED' AND filled <> quantity) OR (status = 'PARTIAL' AND filled >= quantity)"
            ),
            0
        );
        // Every eligible order got its share (n/E, so 1 or 2 here... or more): none left out.
        let eligible =
            one::<i64>("SELECT count(*) FROM t_ds.orders WHERE status IN ('FILLED', 'PARTIAL')");
        assert_eq!(
            one::<i64>("SELECT count(DISTINCT order_id) FROM t_ds.trades"),
            eligible
        );

        assert!(one::<i64>("SELECT stress.generate_positions()") > 0);
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM t_ds.positions p FULL JOIN (
                     SELECT account_id, symbol,
                            sum(CASE side WHEN 'BUY' THEN quantity ELSE -quantity END) AS quantity,
                            round(sum(quantity * price) / sum(quantity), 8) AS avg_price, max(executed_at) AS updated_at
                     FROM t_ds.trades GROUP BY account_id, symbol) s USING (account_id, symbol)
                 WHERE p.quantity IS DISTINCT FROM s.quantity OR abs(p.avg_price - s.avg_price) > 0.00000001
                    OR p.updated_at IS DISTINCT FROM s.updated_at"
            ),
            0
        );
        // Regenerating positions replaces them.
        let positions = one::<i64>("SELECT count(*) FROM t_ds.positions");
        assert_eq!(one::<i64>("SELECT stress.generate_positions()"), positions);

        // A second call fills only orders that have no trades yet.
        Spi::run("SELECT stress.generate_orders(1000, seed => 2, accounts => 300)").unwrap();
        let before = one::<i64>("SELECT max(order_id) FROM t_ds.trades");
        Spi::run("SELECT stress.generate_trades(800, seed => 2)").unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM t_ds.trades"), 15800);
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM t_ds.trades WHERE order_id > {before}"
            )),
            800
        );
    }

    #[pg_test]
    fn foreign_keys_are_checked_in_bulk() {
        use_schema("t_ds_fk");
        Spi::run("SELECT stress.generate_accounts(10, seed => 1)").unwrap();
        // account ids up to 50 do not all exist: the orders' foreign key catches it.
        assert_eq!(
            sqlstate_of("SELECT stress.generate_orders(1000, seed => 1, accounts => 50)"),
            Some(PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION)
        );
        // Nothing of the failed call is left, not even the table it created.
        assert!(one::<bool>("SELECT to_regclass('t_ds_fk.orders') IS NULL"));
        assert_eq!(
            one::<i64>("SELECT stress.generate_orders(1000, seed => 1, accounts => 10)"),
            1000
        );
    }

    #[pg_test]
    fn generators_that_need_other_tables_say_so() {
        use_schema("t_ds_missing");
        let invalid = Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        assert_eq!(sqlstate_of("SELECT stress.generate_trades(10)"), invalid);
        assert_eq!(sqlstate_of("SELECT stress.generate_positions()"), invalid);
        Spi::run("SELECT stress.generate_orders(10, seed => 1)").unwrap();
        assert_eq!(
            sqlstate_of("SELECT stress.generate_trades(100000)"),
            invalid
        );
        assert_eq!(
            sqlstate_of("SELECT stress.generate_trades(10, fill_rate => 0)"),
            invalid
        );
        assert_eq!(sqlstate_of("SELECT stress.generate_accounts(-1)"), invalid);
        assert_eq!(
            sqlstate_of("SELECT stress.generate_accounts(10, days => 0)"),
            invalid
        );
    }

    #[pg_test]
    fn a_read_only_transaction_is_refused_before_anything_is_written() {
        use_schema("t_ds_ro");
        Spi::run("SELECT stress.generate_orders(10, seed => 1)").unwrap();
        for call in [
            "stress.generate_orders(10)",
            "stress.generate_accounts(10)",
            "stress.generate_trades(1)",
            "stress.generate_positions()",
            "stress.generate_market_data()",
            "stress.generate_audit_log(10)",
            "stress.generate_dataset(orders => 10)",
        ] {
            // (SET LOCAL inside the isolated subtransaction ends with it.)
            assert_eq!(
                sqlstate_of(&format!(
                    "SET LOCAL transaction_read_only = on; SELECT {call}"
                )),
                Some(PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION),
                "{call}"
            );
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM t_ds_ro.orders"), 10);
    }

    #[pg_test]
    fn market_data_is_one_consistent_candle_per_symbol_per_step() {
        use_schema("t_md");
        let n = one::<i64>(
            "SELECT stress.generate_market_data('{BTC/USDT,DOT/USDT}', '2025-01-01', '2025-01-01 10:00', '1 minute', seed => 4)",
        );
        assert_eq!(n, 2 * 600);
        assert_eq!(
            one::<i64>("SELECT count(DISTINCT (symbol, ts)) FROM t_md.market_data"),
            1200
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM t_md.market_data
                 WHERE NOT (low <= least(open, close) AND high >= greatest(open, close) AND volume >= 0 AND low > 0)"
            ),
            0
        );
        // Each candle opens at the previous close: a walk, not noise.
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM (SELECT open, lag(close) OVER (PARTITION BY symbol ORDER BY ts) AS prev
                                       FROM t_md.market_data) x WHERE prev IS NOT NULL AND abs(open - prev) > 0.01"
            ),
            0
        );
        let invalid = Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        for bad in [
            "SELECT stress.generate_market_data('{FOO/BAR}')",
            "SELECT stress.generate_market_data(NULL, '2025-01-02', '2025-01-01')",
            "SELECT stress.generate_market_data(NULL, step => '1 month')",
            "SELECT stress.generate_market_data(NULL, step => '-1 minute')",
            "SELECT stress.generate_market_data(NULL, step => '0.5 seconds')",
        ] {
            assert_eq!(sqlstate_of(bad), invalid, "{bad}");
        }
        // The same candles again are kept, not duplicated (the primary key would refuse them);
        // a longer period appends only the candles it adds.
        assert_eq!(
            one::<i64>(
                "SELECT stress.generate_market_data('{BTC/USDT}', '2025-01-01', '2025-01-01 01:00', '1 minute')"
            ),
            0
        );
        assert_eq!(
            one::<i64>(
                "SELECT stress.generate_market_data('{BTC/USDT}', '2025-01-01', '2025-01-01 10:30', '1 minute', seed => 4)"
            ),
            30
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM t_md.market_data WHERE symbol = 'BTC/USDT'"),
            630
        );
    }

    #[pg_test]
    fn audit_log_events_carry_payloads() {
        use_schema("t_audit");
        assert_eq!(
            one::<i64>("SELECT stress.generate_audit_log(3000, seed => 2, accounts => 50)"),
            3000
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM t_audit.audit_log WHERE payload ? 'ip' AND payload ? 'request_id'"
            ),
            3000
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM t_audit.audit_log WHERE entity = 'accounts' AND entity_id > 50"
            ),
            0
        );
        let placed =
            one::<f64>("SELECT avg((action = 'ORDER_PLACED')::int)::float8 FROM t_audit.audit_log");
        assert!((0.35..0.45).contains(&placed), "{placed}");
    }

    #[pg_test]
    fn a_dataset_is_the_same_for_the_same_seed() {
        let tables = [
            "accounts",
            "orders",
            "trades",
            "positions",
            "market_data",
            "audit_log",
        ];
        let mut digests = Vec::new();
        for schema in ["t_dsa", "t_dsb"] {
            use_schema(schema);
            let summary = Spi::connect(|c| {
                c.select("SELECT table_name, rows FROM stress.generate_dataset(orders => 3000, seed => 11, days => 2)", None, &[])
                    .unwrap()
                    .map(|r| (r.get::<String>(1).unwrap().unwrap(), r.get::<i64>(2).unwrap().unwrap()))
                    .collect::<Vec<_>>()
            });
            let names: Vec<_> = summary
                .iter()
                .map(|(t, _)| t.trim_start_matches(&format!("{schema}.")).to_owned())
                .collect();
            assert_eq!(names, tables);
            let rows: std::collections::HashMap<_, _> = names
                .iter()
                .cloned()
                .zip(summary.iter().map(|r| r.1))
                .collect();
            assert_eq!(rows["orders"], 3000);
            assert_eq!(rows["accounts"], 100);
            assert_eq!(rows["trades"], 15000);
            // positions are computed in the same statement as the trades: they must see them.
            assert_eq!(
                rows["positions"],
                one::<i64>(&format!(
                    "SELECT count(*) FROM (SELECT DISTINCT account_id, symbol FROM {schema}.trades) t"
                ))
            );
            assert!(rows["positions"] > 0);
            assert_eq!(rows["market_data"], 20 * 288 * 2);
            assert_eq!(rows["audit_log"], 3000);
            digests.push(
                tables
                    .iter()
                    .map(|t| one::<String>(&format!("SELECT stress.checksum('{schema}.{t}')")))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(digests[0], digests[1]);
    }

    #[pg_test]
    fn column_distributions_have_their_statistics() {
        use_schema("t_dist");
        Spi::run(
            r#"SELECT stress.generate_orders(100000, seed => 21, accounts => 1000, distribution => '{
                 "symbol":     {"distribution": "normal", "mean": 1, "stddev": 0},
                 "quantity":   {"distribution": "normal", "mean": 50, "stddev": 5},
                 "account_id": {"distribution": "zipf", "s": 1.0},
                 "created_at": {"distribution": "normal", "peak_hours": [9, 15], "stddev_hours": 0.5}}')"#,
        )
        .unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM t_dist.orders WHERE symbol <> 'BTC/USDT'"),
            0
        );
        let (mean, stddev) = Spi::get_two::<f64, f64>(
            "SELECT avg(quantity)::float8, stddev_pop(quantity)::float8 FROM t_dist.orders",
        )
        .unwrap();
        let (mean, stddev) = (mean.unwrap(), stddev.unwrap());
        assert!(
            (mean - 50.0).abs() < 0.1 && (stddev - 5.0).abs() < 0.1,
            "mean {mean} stddev {stddev}"
        );
        let ratio = one::<f64>(
            "SELECT (count(*) FILTER (WHERE account_id = 1))::float8 / count(*) FILTER (WHERE account_id = 2)
             FROM t_dist.orders",
        );
        assert!(
            (1.8..2.2).contains(&ratio),
            "zipf rank 1 / rank 2 = {ratio}"
        );
        // normal around 09:30 and 15:30 with σ = 30 min: ~95% within an hour of a peak
        let near_peaks = one::<f64>(
            "SELECT avg((abs(extract(epoch FROM (created_at AT TIME ZONE 'UTC')::time) / 3600 - 9.5) < 1
                      OR abs(extract(epoch FROM (created_at AT TIME ZONE 'UTC')::time) / 3600 - 15.5) < 1)::int)::float8
             FROM t_dist.orders",
        );
        assert!(
            (0.94..0.97).contains(&near_peaks),
            "share within 1 h of a peak: {near_peaks}"
        );

        Spi::run("TRUNCATE t_dist.orders").unwrap();
        Spi::run(
            r#"SELECT stress.generate_orders(100000, seed => 22, distribution => '{
                 "symbol": {"distribution": "normal", "mean": 1, "stddev": 0},
                 "quantity": {"distribution": "poisson", "lambda": 100}}')"#,
        )
        .unwrap();
        let poisson = one::<f64>("SELECT avg(quantity)::float8 FROM t_dist.orders");
        assert!((poisson - 100.0).abs() < 0.3, "poisson mean {poisson}");
    }

    #[pg_test]
    fn the_seeds_distribution_dictionary_runs_as_is() {
        use_schema("t_seed_spec");
        let rows = Spi::connect(|c| {
            c.select(
                r#"SELECT rows FROM stress.generate_dataset(seed => 5, spec => '{
                     "orders": {"count": 2000, "distribution": "normal", "peak_hours": [9, 10, 14, 15]},
                     "trades": {"count": 9000, "distribution": "poisson", "lambda": 100}}') ORDER BY table_name"#,
                None,
                &[],
            )
            .unwrap()
            .map(|r| r.get::<i64>(1).unwrap().unwrap())
            .collect::<Vec<_>>()
        });
        assert_eq!(rows.len(), 6);
        assert_eq!(one::<i64>("SELECT count(*) FROM t_seed_spec.orders"), 2000);
        assert_eq!(one::<i64>("SELECT count(*) FROM t_seed_spec.trades"), 9000);
        // 100 fills per second: a fill comes about 10 ms after the one before
        let gap = one::<f64>(
            "SELECT avg(extract(epoch FROM executed_at - prev))::float8 FROM (
                 SELECT executed_at, lag(executed_at) OVER (PARTITION BY order_id ORDER BY id) AS prev
                 FROM t_seed_spec.trades) t WHERE prev IS NOT NULL",
        );
        assert!(
            (0.008..0.012).contains(&gap),
            "mean gap between fills {gap} s"
        );
        let invalid = Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        for bad in [
            r#"SELECT stress.generate_orders(10, distribution => '{"quantity": {"distribution": "gamma"}}')"#,
            r#"SELECT stress.generate_orders(10, distribution => '{"quantity": {"distribution": "normal", "mean": 1}}')"#,
            r#"SELECT stress.generate_orders(10, distribution => '{"colour": {"distribution": "uniform"}}')"#,
            r#"SELECT stress.generate_orders(10, distribution => '{"created_at": {"peak_hours": [25]}}')"#,
            r#"SELECT stress.generate_trades(10, distribution => '{"executed_at": {"distribution": "uniform", "min": 0, "max": 1}}')"#,
            r#"SELECT stress.generate_dataset(spec => '{"fills": {"count": 1}}')"#,
            r#"SELECT stress.generate_dataset(spec => '{"orders": {"count": -5}}')"#,
        ] {
            assert_eq!(sqlstate_of(bad), invalid, "{bad}");
        }
    }
}
