//! The seed's scenarios end to end: deadlocks and conserved money, the ramp, a trading day, the
//! backup and migration stories.

use super::common::{
    count, load_database, run_status, run_tool, scratch_file, series_steps, value,
};
use postgres::Client;
use postgres::error::SqlState;
use std::time::{Duration, Instant};

#[test]
fn the_deadlock_test_detects_and_retries_deadlocks_and_conserves_money() {
    let mut client = load_database("it_deadlock");
    // (simple protocol: every column as text, the balances as the server prints them)
    let row = client
        .simple_query("CALL stress.deadlock_test(workers => 2, duration => '4 seconds')")
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("the procedure's row");
    let figure = |name: &str| -> i64 { row.get(name).unwrap().parse().unwrap() };
    let (transfers, deadlocks, retries) =
        (figure("transfers"), figure("deadlocks"), figure("retries"));
    assert!(transfers > 0, "no transfer went through");
    assert!(deadlocks >= 1, "no deadlock in {transfers} transfers");
    assert!(retries >= 1);
    assert_eq!(row.get("balance_before"), row.get("balance_after"));
    assert_eq!(row.get("conserved"), Some("t"));
    let run_id: i64 = figure("run_id");
    assert_eq!(run_status(&mut client, run_id).0, "completed");
    let scenario: String = client
        .query_one(
            "SELECT parameters->>'scenario' FROM stress.runs WHERE id = $1",
            &[&run_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(scenario, "deadlock_test");
    for sql in [
        "CALL stress.deadlock_test(workers => 1)",
        "CALL stress.deadlock_test(accounts => 1)",
        "CALL stress.deadlock_test(duration => '0 seconds')",
        "CALL stress.deadlock_test(pause => '-1 second')",
    ] {
        let err = client.batch_execute(sql).unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_PARAMETER_VALUE),
            "{sql}: {err}"
        );
    }
}

#[test]
fn a_ramp_steps_up_the_workers_and_stops_at_the_first_degraded_step() {
    let mut client = load_database("it_ramp");
    let rows = series_steps(
        &mut client,
        "CALL stress.ramp('{1,2}', '1 second', max_throughput_drop => NULL)",
        "step, workers, ops_per_sec, p99_ms, error_rate, NOT ok AS degraded",
    );
    assert_eq!(rows.len(), 2);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get::<_, i32>(0), i as i32 + 1);
        assert_eq!(r.get::<_, i32>(1), i as i32 + 1);
        assert!(r.get::<_, f64>(2) > 0.0 && r.get::<_, f64>(3) > 0.0);
        assert!(
            !r.get::<_, bool>(5),
            "step {} degraded at error rate {}",
            i + 1,
            r.get::<_, f64>(4)
        );
    }
    // New orders now break a constraint: every place_order fails, the first step degrades.
    client
        .batch_execute("ALTER TABLE stress_data.orders ADD CONSTRAINT no_new_open CHECK (status <> 'OPEN') NOT VALID")
        .unwrap();
    let rows = series_steps(
        &mut client,
        "CALL stress.ramp('{1,2,4}', '1 second', max_error_rate => 0.01, mix => '{\"place_order\": 1}')",
        "step, error_rate, NOT ok AS degraded",
    );
    assert_eq!(rows.len(), 1, "the ramp goes on after a degraded step");
    assert!(rows[0].get::<_, f64>(1) > 0.99 && rows[0].get::<_, bool>(2));
    let err = client
        .batch_execute("CALL stress.ramp('{}', '1 second')")
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
}

#[test]
fn a_simulated_trading_day_follows_its_peak_hours() {
    let mut client = load_database("it_trading_day");
    let run_id: i64 = value(
        &mut client,
        "CALL stress.simulate_trading_day_proc('6 seconds', '{9,10,14,15}', orders_per_second => 200,
                                                trades_per_second => 100, workers => 2)",
    );
    assert_eq!(run_status(&mut client, run_id).0, "completed");
    // 300 operations/s in an ordinary hour, ×4 in the 4 peak hours, ×¼ in the 6 night hours:
    // 300 × (4×4 + 6×¼ + 14×1) / 24 = 393.75 a second on average.
    let total = count(
        &mut client,
        &format!("SELECT calls FROM stress.results WHERE run_id = {run_id} AND name = 'total'"),
    ) as f64;
    let expected = 393.75 * 6.0;
    assert!(
        (total / expected - 1.0).abs() < 0.25,
        "{total} operations, expected about {expected}"
    );
    let rates: Vec<f64> = client
        .query(
            "SELECT ops_per_sec FROM stress.samples WHERE run_id = $1 ORDER BY ts",
            &[&run_id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (low, high) = rates
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
    // The first second holds hours 0–4 (night), the third hours 8–12 (two peaks).
    assert!(high > 3.0 * low, "samples {rates:?}");
    let kinds: (String, String) = client
        .query_one(
            "SELECT parameters->>'scenario', parameters->>'peak_hours' FROM stress.runs WHERE id = $1",
            &[&run_id],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        kinds,
        ("simulate_trading_day".into(), "[9, 10, 14, 15]".into())
    );
}

fn compare_states(client: &mut Client, a: i64, b: i64) -> Vec<(String, i64, String)> {
    client
        .query(
            "SELECT table_name::text, coalesce(row_difference, 0), status FROM stress.compare_state($1, $2)",
            &[&a, &b],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn the_seeds_backup_scenario_restores_an_identical_dataset() {
    let mut client = load_database("it_backup_state");
    let before: i64 = value(
        &mut client,
        "SELECT stress.capture_state(label => 'before the backup')",
    );
    let dump = scratch_file("it_backup_state.dump");
    let dump_path = dump.to_str().unwrap();
    run_tool(
        "pg_dump",
        &["-Fc", "-d", "it_backup_state", "-f", dump_path],
    );
    // Drop the data, then restore it from the backup.
    client
        .batch_execute("DROP SCHEMA stress_data CASCADE; CREATE SCHEMA stress_data")
        .unwrap();
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'stress_data'"
        ),
        0
    );
    run_tool(
        "pg_restore",
        &[
            "--exit-on-error",
            "-n",
            "stress_data",
            "-d",
            "it_backup_state",
            dump_path,
        ],
    );
    let after: i64 = value(
        &mut client,
        "SELECT stress.capture_state(label => 'after the restore')",
    );
    let compared = compare_states(&mut client, before, after);
    assert_eq!(compared.len(), 6, "{compared:?}");
    for (table, difference, status) in &compared {
        assert_eq!((*difference, status.as_str()), (0, "identical"), "{table}");
    }
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM stress.verify_integrity() WHERE status <> 'ok'"
        ),
        0
    );
}

#[test]
fn the_seeds_migration_scenario_runs_under_load_and_shows_what_changed() {
    let mut client = load_database("it_migration_state");
    let before: i64 = value(
        &mut client,
        "SELECT stress.capture_state(label => 'before the migration')",
    );
    let run_id: i64 = value(
        &mut client,
        "SELECT stress.run_load('6 seconds', workers => 2, wait => false)",
    );
    std::thread::sleep(Duration::from_millis(1000));
    let premigration: i64 = value(
        &mut client,
        "SELECT stress.capture_state(label => 'the load running, before the migration')",
    );
    // The migration, while the load runs: a column with a default (no table rewrite since PG 11),
    // and an index built without blocking writes.
    let started = Instant::now();
    client
        .batch_execute(
            "ALTER TABLE stress_data.orders ADD COLUMN note text NOT NULL DEFAULT 'migrated'",
        )
        .unwrap();
    client
        .batch_execute("CREATE INDEX CONCURRENTLY trades_fee_idx ON stress_data.trades (fee)")
        .unwrap();
    let migration = started.elapsed();
    let migrated: i64 = value(
        &mut client,
        "SELECT stress.capture_state(label => 'migrated, the load still running')",
    );
    // The captures record how long the migration took: from the end of one to the start of the next.
    let recorded: f64 = client
        .query_one(
            "SELECT DISTINCT extract(epoch FROM between_captures)::float8 FROM stress.compare_state($1, $2)",
            &[&premigration, &migrated],
        )
        .unwrap()
        .get(0);
    assert!(
        recorded >= migration.as_secs_f64() && recorded < migration.as_secs_f64() + 0.5,
        "recorded {recorded} s, measured {migration:?}"
    );
    let status: String = client
        .query_one("CALL stress.wait($1)", &[&run_id])
        .unwrap()
        .get(0);
    assert_eq!(status, "completed");
    let after: i64 = value(
        &mut client,
        "SELECT stress.capture_state(label => 'after the migration')",
    );
    eprintln!("migration took {migration:?} under load");
    assert!(migration < Duration::from_secs(5), "{migration:?}");
    let errors: i64 = client
        .query_one(
            "SELECT errors FROM stress.results WHERE run_id = $1 AND name = 'total'",
            &[&run_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(errors, 0);
    // What changed: the load's new orders, trades and audit rows; every orders row has the new
    // column (so every checksum differs); market data untouched.
    let compared: std::collections::HashMap<String, (i64, String)> =
        compare_states(&mut client, before, after)
            .into_iter()
            .map(|(t, d, s)| (t, (d, s)))
            .collect();
    let placed: i64 = client
        .query_one(
            "SELECT (details->>'successes')::int8 FROM stress.results WHERE run_id = $1 AND name = 'place_order'",
            &[&run_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(compared["orders"], (placed, "different".to_owned()));
    assert_eq!(compared["market_data"], (0, "identical".to_owned()));
    assert_eq!(compared["trades"].1, "different");
    let valid: bool = value(
        &mut client,
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'stress_data.trades_fee_idx'::regclass",
    );
    assert!(valid);
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM stress.verify_integrity() WHERE status = 'failed'"
        ),
        0
    );
}
