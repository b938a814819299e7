//! #[pg_test]s of the SQL-only capability in `sql/integrity.sql`.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of, use_schema};
    use pgrx::prelude::*;

    fn statuses(schema: &str) -> String {
        one::<String>(&format!(
            "SELECT string_agg(format('%s %s %s %s', check_name, relation, status, failures), E'\\n'
                               ORDER BY check_name, relation)
             FROM stress.verify_integrity('{schema}')"
        ))
    }

    #[pg_test]
    fn a_generated_dataset_passes_and_deliberate_damage_is_found() {
        use_schema("s_verify");
        Spi::run("SELECT count(*) FROM stress.generate_dataset(orders => 3000, seed => 5)")
            .unwrap();
        let clean = statuses("s_verify");
        assert!(!clean.contains("failed"), "{clean}");
        assert!(
            clean.contains(
                "foreign_key s_verify.orders (account_id) -> s_verify.accounts (id) ok 0"
            ),
            "{clean}"
        );
        assert!(
            clean.contains("positions_match_trades s_verify.positions ok 0"),
            "{clean}"
        );
        // Damage: an account deleted behind its foreign keys' back, a balance below zero under a
        // NOT VALID check, a position off by one, a duplicated audit id without its primary key.
        Spi::run(
            "SET LOCAL session_replication_role = replica;
             DELETE FROM s_verify.accounts WHERE id = (SELECT account_id FROM s_verify.orders ORDER BY id LIMIT 1);
             SET LOCAL session_replication_role = origin;
             ALTER TABLE s_verify.accounts DROP CONSTRAINT accounts_balance_check;
             UPDATE s_verify.accounts SET balance = -1 WHERE id = (SELECT min(id) FROM s_verify.accounts);
             ALTER TABLE s_verify.accounts ADD CONSTRAINT balance_not_negative CHECK (balance >= 0) NOT VALID;
             UPDATE s_verify.positions SET quantity = quantity + 1
             WHERE (account_id, symbol) = (SELECT account_id, symbol FROM s_verify.positions
                                           WHERE account_id IN (SELECT id FROM s_verify.accounts) ORDER BY 1, 2 LIMIT 1);
             ALTER TABLE s_verify.audit_log DROP CONSTRAINT audit_log_pkey;
             INSERT INTO s_verify.audit_log SELECT * FROM s_verify.audit_log ORDER BY id LIMIT 1",
        )
        .unwrap();
        let damaged = statuses("s_verify");
        let failed = |check: &str| -> i64 {
            one::<i64>(&format!(
                "SELECT sum(failures)::int8 FROM stress.verify_integrity('s_verify')
                 WHERE check_name = '{check}' AND status = 'failed'"
            ))
        };
        assert!(failed("foreign_key") > 0, "{damaged}");
        assert_eq!(failed("not_valid_constraint"), 1, "{damaged}");
        assert_eq!(failed("negative_balance"), 1, "{damaged}");
        assert_eq!(failed("positions_match_trades"), 1, "{damaged}");
        assert_eq!(failed("duplicate_keys"), 1, "{damaged}");
        assert!(
            damaged.contains("duplicate_keys s_verify.audit_log failed 1"),
            "{damaged}"
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM stress.verify_integrity('no_such_schema')"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME)
        );
    }

    #[pg_test]
    fn captures_compare_table_by_table() {
        use_schema("s_capture");
        Spi::run("SELECT stress.generate_orders(2000, seed => 9)").unwrap();
        let a = one::<i64>("SELECT stress.capture_state(label => 'before')");
        let same = one::<i64>("SELECT stress.capture_state('s_capture')");
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(table_name || ' ' || status, ',') FROM stress.compare_state({a}, {same})"
            )),
            "orders identical"
        );
        Spi::run(
            "UPDATE s_capture.orders SET price = price + 1 WHERE id = 7;
             INSERT INTO s_capture.orders SELECT id + 100000, account_id, symbol, side, order_type, status, quantity,
                                                 price, created_at FROM s_capture.orders WHERE id <= 5;
             CREATE TABLE s_capture.extra (id int)",
        )
        .unwrap();
        let b = one::<i64>("SELECT stress.capture_state()");
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(format('%s %s %s', table_name, status, row_difference), ',' ORDER BY table_name)
                 FROM stress.compare_state({a}, {b})"
            )),
            format!("extra only in {b} ,orders different 5")
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM stress.compare_state(1, 987654321)"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE)
        );
        assert_eq!(
            sqlstate_of("SELECT stress.capture_state('no_such_schema')"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME)
        );
    }
}
