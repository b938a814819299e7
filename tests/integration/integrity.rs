//! Checksums across pg_dump/pg_restore and physical reordering (VACUUM FULL, CLUSTER).

use super::common::{checksum, count, dump_and_restore, fresh_database};

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
