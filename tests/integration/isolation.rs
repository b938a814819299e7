//! Every call that starts a run, or generates, works (or refuses with its own SQLSTATE and a hint)
//! for a caller whose transactions are REPEATABLE READ or SERIALIZABLE — by default
//! (default_transaction_isolation, as a role or database setting would make them) or in an
//! explicit transaction block. (Before 0.7.0 a caller's snapshot that predated the run's row made
//! the status read an XX000.)

use crate::common::{connect, load_database};
use postgres::error::SqlState;

/// Each call, with the SQLSTATE it must end with (None: it must work).
const CALLS: &[(&str, Option<SqlState>)] = &[
    ("SELECT stress.generate_orders(500)", None),
    ("SELECT stress.generate_audit_log(500)", None),
    (
        "SELECT stress.generate_market_data('{BTC/USDT}', '2026-01-01', '2026-01-02', '1 hour')",
        None,
    ),
    ("SELECT stress.checksum('stress_data.orders')", None),
    ("CALL stress.run_load_proc('1 second', workers => 2)", None),
    (
        "CALL stress.simulate_trading_day_proc('1 second', workers => 1)",
        None,
    ),
    (
        "SELECT count(*) FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 20)",
        None,
    ),
    (
        "CALL stress.benchmark_proc(ARRAY['SELECT 1'], iterations => 20, concurrency => 2)",
        None,
    ),
    // (waiting in a SELECT is refused whatever the isolation: 0A000 with the CALL as its hint)
    (
        "SELECT count(*) FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 20, concurrency => 2)",
        Some(SqlState::FEATURE_NOT_SUPPORTED),
    ),
    ("CALL stress.ramp('{1,2}', '1 second')", None),
    (
        "CALL stress.find_capacity(50, workers => 1, start_rate => 100, step => '1 second', max_steps => 2)",
        None,
    ),
    (
        "CALL stress.find_optimal_pool_size(1, 2, 50, step => '1 second')",
        None,
    ),
    ("CALL stress.deadlock_test(2, '1 second')", None),
];

#[test]
fn run_starting_calls_work_for_repeatable_read_and_serializable_callers() {
    let db = "it_isolation";
    load_database(db);
    for isolation in ["repeatable read", "serializable"] {
        let mut client = connect(db);
        client
            .batch_execute(&format!(
                "SET default_transaction_isolation = '{isolation}'; SET stress.progress_interval = 0"
            ))
            .unwrap();
        for (call, expected) in CALLS {
            match (client.batch_execute(call), expected) {
                (Ok(()), None) => {}
                (Err(e), Some(code)) if e.code() == Some(code) => {
                    let hint = e.as_db_error().and_then(|d| d.hint()).unwrap_or_default();
                    assert!(!hint.is_empty(), "{isolation}: {call}: no hint");
                }
                (outcome, _) => panic!("{isolation}: {call}: {outcome:?}"),
            }
        }
        // A run started inside an explicit transaction block of that level, then waited for and
        // looked at from it: it runs once the block commits, and its status reads fine after.
        client
            .batch_execute(&format!("BEGIN ISOLATION LEVEL {isolation}"))
            .unwrap();
        let run: i64 = client
            .query_one(
                "SELECT stress.run_load('1 second', workers => 2, wait => false)",
                &[],
            )
            .unwrap()
            .get(0);
        let live: i64 = client
            .query_one(
                "SELECT count(*) FROM stress.progress WHERE run_id = $1",
                &[&run],
            )
            .unwrap()
            .get(0);
        // (its slot is taken as it starts, before the block commits)
        assert_eq!(live, 1, "{isolation}: the run is not in stress.progress");
        client.batch_execute("COMMIT").unwrap();
        let status: String = client
            .query_one("CALL stress.wait($1)", &[&run])
            .unwrap()
            .get("status");
        assert_eq!(status, "completed", "{isolation}");
        let e = client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL {isolation}; CALL stress.wait({run})"
            ))
            .unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::ACTIVE_SQL_TRANSACTION), "{e}");
        client.batch_execute("ROLLBACK").unwrap();
    }
}
