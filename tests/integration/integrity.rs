//! Checksums across pg_dump/pg_restore and physical reordering (VACUUM FULL, CLUSTER), and read by
//! parallel workers.

use super::common::{checksum, config, count, dump_and_restore, fresh_database};
use postgres::NoTls;
use postgres::error::SqlState;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn checksum_survives_pg_dump_and_pg_restore_and_so_does_the_run_history() {
    let mut source = fresh_database("it_dump_source");
    source
        .batch_execute("SELECT stress.generate_orders(30000, seed => 7)")
        .unwrap();
    let before = checksum(&mut source, "stress_data.orders");
    let runs_before = count(&mut source, "SELECT count(*) FROM stress.runs");

    let mut target = dump_and_restore("it_dump_source", "it_dump_target");
    assert_eq!(checksum(&mut target, "stress_data.orders"), before);
    assert_eq!(
        count(&mut target, "SELECT count(*) FROM stress.runs"),
        runs_before
    );
    assert_eq!(
        count(
            &mut target,
            "SELECT count(*) FROM stress.results WHERE name = 'stress_data.orders'"
        ),
        1
    );
    // The restored sequence goes on after the restored runs.
    target
        .batch_execute("SELECT stress.generate_orders(10, seed => 7)")
        .unwrap();
    assert_eq!(
        count(&mut target, "SELECT count(*) FROM stress.runs"),
        runs_before + 1
    );
    // And a changed value after the restore is seen.
    target
        .batch_execute("UPDATE stress_data.orders SET price = price + 0.00000001 WHERE id = 12345")
        .unwrap();
    assert_ne!(checksum(&mut target, "stress_data.orders"), before);
}

#[test]
fn checksum_ignores_physical_reordering() {
    let mut client = fresh_database("it_reorder");
    client
        .batch_execute("SELECT stress.generate_orders(20000, seed => 3)")
        .unwrap();
    client
        .batch_execute("DELETE FROM stress_data.orders WHERE id % 10 = 0")
        .unwrap();
    let before = checksum(&mut client, "stress_data.orders");
    client
        .batch_execute("VACUUM FULL stress_data.orders")
        .unwrap();
    assert_eq!(checksum(&mut client, "stress_data.orders"), before);
    client
        .batch_execute("CLUSTER stress_data.orders USING orders_symbol_created_at_idx")
        .unwrap();
    assert_eq!(checksum(&mut client, "stress_data.orders"), before);
}

/// A checksum read by PostgreSQL's parallel workers is the serial one at every degree, sees the
/// caller's uncommitted rows, and a cancel ends its workers with the statement.
#[test]
fn parallel_checksums_equal_the_serial_one_and_end_with_their_statement() {
    let mut setup = fresh_database("it_parallel_checksum");
    setup
        .batch_execute(
            "SELECT stress.generate_orders(100000, seed => 5);
             CREATE TABLE slow AS
                 SELECT g, jsonb_build_object('g', g, 'pad', repeat('x', 200)) AS j
                 FROM generate_series(1, 400000) g",
        )
        .unwrap();
    setup.batch_execute("VACUUM ANALYZE").unwrap();
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&notices);
    let mut client = config("it_parallel_checksum")
        .notice_callback(move |n| sink.lock().unwrap().push(n.message().to_owned()))
        .connect(NoTls)
        .unwrap();
    client
        .batch_execute("SET client_min_messages = debug1; SET min_parallel_table_scan_size = 0")
        .unwrap();
    let mut digests = Vec::new();
    for workers in [0, 1, 2, 3] {
        client
            .batch_execute(&format!("SET max_parallel_workers_per_gather = {workers}"))
            .unwrap();
        digests.push(checksum(&mut client, "stress_data.orders"));
    }
    assert!(digests[0].starts_with("100000:"), "{digests:?}");
    assert!(digests.iter().all(|d| d == &digests[0]), "{digests:?}");
    let launched: Vec<String> = notices
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.starts_with("stress.checksum: stress_data.orders read by the leader and "))
        .cloned()
        .collect();
    // Degrees 1, 2 and 3 went parallel; 0 did not. (A busy server may launch fewer than planned.)
    assert_eq!(launched.len(), 3, "{launched:?}");
    assert!(
        launched
            .iter()
            .any(|m| m.contains(" and 3 parallel workers (3 planned)")),
        "{launched:?}"
    );

    // Rows this transaction changed, uncommitted: workers see them as the caller does.
    client
        .batch_execute(
            "BEGIN;
             DELETE FROM stress_data.orders WHERE id % 7 = 0;
             UPDATE stress_data.orders SET status = 'CANCELLED' WHERE id % 5 = 0",
        )
        .unwrap();
    client
        .batch_execute("SET max_parallel_workers_per_gather = 3")
        .unwrap();
    let parallel = checksum(&mut client, "stress_data.orders");
    client
        .batch_execute("SET max_parallel_workers_per_gather = 0")
        .unwrap();
    assert_eq!(checksum(&mut client, "stress_data.orders"), parallel);
    assert_ne!(parallel, digests[0]);
    client.batch_execute("ROLLBACK").unwrap();

    // A cancel (here a statement timeout) ends the leader and its workers; nothing is left running.
    client
        .batch_execute("SET max_parallel_workers_per_gather = 3; SET statement_timeout = '15ms'")
        .unwrap();
    let started = Instant::now();
    let cancelled = client
        .query_one("SELECT stress.checksum('slow')", &[])
        .unwrap_err();
    assert_eq!(
        cancelled.code(),
        Some(&SqlState::QUERY_CANCELED),
        "{cancelled:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    client.batch_execute("RESET statement_timeout").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = count(
            &mut client,
            "SELECT count(*) FROM pg_stat_activity
             WHERE backend_type = 'parallel worker' AND datname = current_database()",
        );
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} parallel workers still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And the session goes on: the same table, read whole, in parallel and not.
    let whole = checksum(&mut client, "slow");
    assert!(whole.starts_with("400000:"), "{whole}");
    client
        .batch_execute("SET max_parallel_workers_per_gather = 0")
        .unwrap();
    assert_eq!(checksum(&mut client, "slow"), whole);
}
