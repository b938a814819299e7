//! Generation as a client sees it: reproducible data across databases, dump and restore, parallel
//! workers as the caller, cancellation and statement_timeout leaving nothing behind, progress NOTICEs.

use super::common::{
    checksum, config, connect, count, dataset_checksums, dump_and_restore, fresh_database,
    load_database, value,
};
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn same_seed_gives_the_same_data_in_two_databases() {
    let mut a = fresh_database("it_determinism_a");
    let mut b = fresh_database("it_determinism_b");
    for client in [&mut a, &mut b] {
        let n: i64 = value(client, "SELECT stress.generate_orders(20000, seed => 42)");
        assert_eq!(n, 20000);
    }
    let (ca, cb) = (
        checksum(&mut a, "stress_data.orders"),
        checksum(&mut b, "stress_data.orders"),
    );
    assert!(ca.starts_with("20000:"), "{ca}");
    assert_eq!(ca, cb);
    // Not only the digest: the rows themselves, compared as text.
    let row =
        "SELECT string_agg(o::text, '|' ORDER BY id) FROM stress_data.orders o WHERE id % 997 = 0";
    let (ra, rb): (String, String) = (
        a.query_one(row, &[]).unwrap().get(0),
        b.query_one(row, &[]).unwrap().get(0),
    );
    assert_eq!(ra, rb);
}

#[test]
fn statement_timeout_stops_generation_with_nothing_committed() {
    let mut client = fresh_database("it_timeout");
    client
        .batch_execute("SELECT stress.generate_orders(1000, seed => 1)")
        .unwrap();
    let runs = count(&mut client, "SELECT count(*) FROM stress.runs");
    client
        .batch_execute("SET statement_timeout = '500ms'")
        .unwrap();
    let started = Instant::now();
    let err = client
        .batch_execute("SELECT stress.generate_orders(50000000)")
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    client.batch_execute("RESET statement_timeout").unwrap();
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM stress_data.orders"),
        1000
    );
    assert_eq!(count(&mut client, "SELECT count(*) FROM stress.runs"), runs);
}

#[test]
fn pg_cancel_backend_stops_generation_promptly_into_an_empty_table() {
    let mut client = fresh_database("it_cancel");
    let pid: i32 = value(&mut client, "SELECT pg_backend_pid()");
    let worker = std::thread::spawn(move || {
        let result = client.batch_execute("SELECT stress.generate_orders(50000000)");
        (client, result)
    });
    let mut watcher = connect("it_cancel");
    // Wait until the call is really running, then cancel it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        &mut watcher,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND state = 'active' AND query LIKE '%generate_orders%'"
        ),
    ) == 0
    {
        assert!(Instant::now() < deadline, "generate_orders never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    let cancelled_at = Instant::now();
    watcher
        .batch_execute(&format!("SELECT pg_cancel_backend({pid})"))
        .unwrap();
    let (mut client, result) = worker.join().unwrap();
    let stopped_after = cancelled_at.elapsed();
    let err = result.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        stopped_after < Duration::from_secs(5),
        "cancel took {stopped_after:?}"
    );
    // The table was created by the cancelled call itself: it is gone with it.
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_class WHERE relname = 'orders'"
        ),
        0
    );
    assert_eq!(count(&mut client, "SELECT count(*) FROM stress.runs"), 0);
}

#[test]
fn long_calls_report_progress_notices() {
    fresh_database("it_progress");
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&notices);
    let notices_heard = Arc::clone(&notices);
    let mut client = config("it_progress")
        .notice_callback(move |n| sink.lock().unwrap().push(n.message().to_owned()))
        .connect(NoTls)
        .unwrap();
    client
        .batch_execute("SET stress.progress_interval = '50ms'")
        .unwrap();
    let started = Instant::now();
    client
        .batch_execute("SELECT stress.generate_orders(1000000, seed => 1)")
        .unwrap();
    // A million rows take far longer than two intervals on any machine this runs on.
    assert!(
        started.elapsed() > Duration::from_millis(200),
        "too fast to judge: {:?}",
        started.elapsed()
    );
    let notices = notices.lock().unwrap();
    assert!(
        notices
            .iter()
            .any(|m| m.starts_with("generate_orders: ") && m.contains(" of 1000000 rows (")),
        "no progress NOTICE: {notices:?}"
    );
    assert!(
        notices
            .iter()
            .any(|m| m.starts_with("generate_orders: 1000000 rows in")),
        "no summary NOTICE: {notices:?}"
    );
    // Quiet when asked.
    let heard = notices.len();
    drop(notices);
    client
        .batch_execute("SET stress.progress_interval = 0")
        .unwrap();
    client
        .batch_execute("SELECT stress.generate_orders(300000, seed => 1)")
        .unwrap();
    assert_eq!(notices_heard.lock().unwrap().len(), heard);
}

#[test]
fn a_whole_dataset_is_reproducible_and_survives_dump_and_restore() {
    let mut first = fresh_database("it_dataset_a");
    let rows: Vec<(String, i64)> = first
        .query("SELECT table_name, rows FROM stress.generate_dataset(orders => 20000, seed => 9, days => 3)", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|(_, n)| *n > 0), "{rows:?}");
    let digests = dataset_checksums(&mut first);

    // The same seed in another database: the same six tables.
    let mut second = fresh_database("it_dataset_b");
    second
        .batch_execute(
            "SELECT * FROM stress.generate_dataset(orders => 20000, seed => 9, days => 3)",
        )
        .unwrap();
    assert_eq!(dataset_checksums(&mut second), digests);

    // A dump of the first, restored: the same six tables, foreign keys and all.
    let mut restored = dump_and_restore("it_dataset_a", "it_dataset_restored");
    assert_eq!(dataset_checksums(&mut restored), digests);
    assert_eq!(
        count(
            &mut restored,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'stress_data'::regnamespace"
        ),
        4
    );
}

/// Pids and roles of the generator workers running for database `db`.
fn generator_workers(client: &mut Client, db: &str) -> Vec<(i32, String)> {
    client
        .query(
            "SELECT pid, usename::text FROM pg_stat_activity
             WHERE backend_type = 'pg_stress generator' AND datname = $1",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Start a long parallel generate_orders as `client`, wait until its 2 workers run, do `stop` to
/// it (given the caller's pid and the workers), and return how the call ended.
fn stop_parallel_generation(
    client: Client,
    watcher: &mut Client,
    db: &'static str,
    stop: impl FnOnce(&mut Client, i32, &[(i32, String)]),
) -> (Client, postgres::Error, Duration) {
    let mut client = client;
    let pid: i32 = value(&mut client, "SELECT pg_backend_pid()");
    let call = std::thread::spawn(move || {
        let result = client.batch_execute("SELECT stress.generate_orders(50000000, workers => 2)");
        (client, result)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let workers = loop {
        let workers = generator_workers(watcher, db);
        if workers.len() == 2 {
            break workers;
        }
        assert!(Instant::now() < deadline, "the workers never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500));
    let stopped_at = Instant::now();
    stop(watcher, pid, &workers);
    let (client, result) = call.join().unwrap();
    (client, result.unwrap_err(), stopped_at.elapsed())
}

#[test]
fn parallel_generation_runs_as_the_caller_and_stops_whole() {
    const DB: &str = "it_parallel";
    let mut admin = fresh_database(DB);
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS it_generator; CREATE ROLE it_generator LOGIN;
             GRANT CREATE ON DATABASE {DB} TO it_generator;
             GRANT EXECUTE ON FUNCTION stress.run_load TO it_generator"
        ))
        .unwrap();
    let as_generator = || {
        config(DB)
            .user("it_generator")
            .connect(NoTls)
            .expect("connecting as it_generator")
    };
    let mut client = as_generator();
    client
        .batch_execute("SELECT stress.generate_orders(1000, seed => 1, workers => 2)")
        .unwrap();

    // A worker killed by an administrator: the call fails as a whole, nothing of it stays.
    let (mut client, err, took) =
        stop_parallel_generation(client, &mut admin, DB, |admin, _, workers| {
            // Workers connect as the caller's role, not as a superuser.
            assert!(
                workers.iter().all(|(_, role)| role == "it_generator"),
                "{workers:?}"
            );
            admin
                .batch_execute(&format!("SELECT pg_terminate_backend({})", workers[0].0))
                .unwrap();
        });
    assert_eq!(err.code(), Some(&SqlState::OPERATOR_INTERVENTION), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM stress_data.orders"),
        1000
    );
    let wait_for_no_workers = |admin: &mut Client| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !generator_workers(admin, DB).is_empty() {
            assert!(
                Instant::now() < deadline,
                "generator workers outlived their call"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for_no_workers(&mut admin);

    // The caller cancelled: its workers go away too.
    let (mut client, err, took) =
        stop_parallel_generation(client, &mut admin, DB, |admin, pid, _| {
            admin
                .batch_execute(&format!("SELECT pg_cancel_backend({pid})"))
                .unwrap();
        });
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    wait_for_no_workers(&mut admin);
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM stress_data.orders"),
        1000
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM stress.runs WHERE kind = 'generate_orders' AND parameters->>'workers' = '2'"
        ),
        1
    );
}

#[test]
fn trades_move_money_between_accounts_without_creating_or_losing_any() {
    let mut client = load_database("it_load_money");
    let total = "SELECT sum(balance)::text FROM stress_data.accounts";
    let before: String = client.query_one(total, &[]).unwrap().get(0);
    let trades_before = count(&mut client, "SELECT count(*) FROM stress_data.trades");
    let run_id: i64 = value(
        &mut client,
        "CALL stress.run_load_proc('2 seconds', workers => 2, mix => '{\"execute_trade\": 1}')",
    );
    let row = client
        .query_one(
            "SELECT calls, errors FROM stress.results WHERE run_id = $1 AND name = 'execute_trade'",
            &[&run_id],
        )
        .unwrap();
    let (calls, errors): (i64, i64) = (row.get(0), row.get(1));
    assert!(calls > 100 && errors == 0, "{calls} calls, {errors} errors");
    let after: String = client.query_one(total, &[]).unwrap().get(0);
    assert_eq!(after, before, "the money in all accounts changed");
    let new_trades = count(&mut client, "SELECT count(*) FROM stress_data.trades") - trades_before;
    assert!(
        new_trades > 0 && new_trades <= calls,
        "{new_trades} trades for {calls} calls"
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM stress_data.accounts WHERE balance < 0"
        ),
        0
    );
}
