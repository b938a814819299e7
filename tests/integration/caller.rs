//! The caller must not distort the run: the calls that wait (procedures that commit) hold no
//! transaction id and no snapshot while their workload runs, on any pg_stress process no snapshot
//! lives longer than a second, and reads take no transaction id. Watched from outside, as a DBA
//! would: pg_stat_activity every 200 ms, txid_current() before and after.

use super::common::{connect, load_database, pgcluster, value};
use postgres::NoTls;
use postgres::error::SqlState;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A custom transaction that updates hot rows (the one that read 4x slower under a waiting SELECT).
const HOT_UPDATE: &str = r#"[{"name": "hot", "sql": ["UPDATE hot SET n = n + 1 WHERE id = $1", "SELECT n FROM hot WHERE id = $1"],
                              "params": [{"distribution": "uniform", "min": 1, "max": 100}]}]"#;

/// Run `call` on its own connection (named `it_caller`) while watching pg_stat_activity every
/// 200 ms until it returns: while the run's workers are there the caller shows no backend_xid and
/// no backend_xmin (it only reads, briefly, before and after), and no process — the caller or a
/// pg_stress worker — keeps one backend_xmin for more than a second. Returns the call's row and
/// how many samples checked the caller asleep in its wait.
fn watch(db: &str, call: &str) -> (postgres::Row, usize) {
    let mut caller = connect(db);
    caller
        .batch_execute("SET application_name = 'it_caller'; SET stress.progress_interval = 0")
        .unwrap();
    let call = call.to_owned();
    let running = std::thread::spawn(move || caller.query_one(&call, &[]).unwrap());
    let mut observer = connect(db);
    // (a snapshot is held by one transaction: the same xmin in a later transaction of the same
    // process is a new snapshot that found the same oldest transaction running — one of another
    // test's, on this shared cluster)
    let mut first_seen: HashMap<(i32, String, String), Instant> = HashMap::new();
    let mut samples = 0;
    while !running.is_finished() {
        let rows = observer
            .query(
                "SELECT pid, application_name, backend_type, backend_xid::text, backend_xmin::text,
                        coalesce(wait_event_type, ''), coalesce(xact_start::text, '')
                 FROM pg_stat_activity
                 WHERE application_name = 'it_caller' OR backend_type LIKE 'pg_stress%'",
                &[],
            )
            .unwrap();
        let running_workers = rows
            .iter()
            .any(|r| r.get::<_, String>(2) == "pg_stress load");
        for row in rows {
            let (pid, app, kind): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
            let (xid, xmin): (Option<String>, Option<String>) = (row.get(3), row.get(4));
            // (asleep in its wait on the run's condition variable: wait_event_type Extension)
            let waiting = row.get::<_, String>(5) == "Extension";
            if app == "it_caller" && kind == "client backend" && running_workers && waiting {
                samples += 1;
                assert_eq!(
                    (xid.as_deref(), xmin.as_deref()),
                    (None, None),
                    "the waiting caller holds a transaction id or a snapshot"
                );
            }
            if let Some(xmin) = xmin {
                let transaction: String = row.get(6);
                let since = *first_seen
                    .entry((pid, xmin.clone(), transaction))
                    .or_insert_with(Instant::now);
                assert!(
                    since.elapsed() < Duration::from_secs(1),
                    "{kind} {pid} ({app}) has held snapshot xmin {xmin} for {:?}",
                    since.elapsed()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (running.join().unwrap(), samples)
}

#[test]
fn blocking_calls_hold_no_transaction_id_and_no_snapshot_while_they_wait() {
    let db = "it_caller";
    let mut client = load_database(db);
    client
        .batch_execute(
            "CREATE TABLE hot (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO hot SELECT g, 0 FROM generate_series(1, 100) g",
        )
        .unwrap();
    let (row, samples) = watch(
        db,
        &format!(
            "CALL stress.run_load_proc('4 seconds', workers => 2, transactions => '{HOT_UPDATE}')"
        ),
    );
    assert!(samples >= 12, "{samples} samples of the caller waiting");
    let (status, operations): (String, i64) = (row.get("status"), row.get("operations"));
    assert_eq!(status, "completed");
    // The row's figures are the run's records (an outside reader sees the same).
    let recorded: i64 = value(
        &mut client,
        &format!(
            "SELECT calls FROM stress.results WHERE run_id = {} AND name = 'total'",
            row.get::<_, i64>("run_id")
        ),
    );
    assert!(operations > 0 && operations == recorded);
    // A series: between its steps, no horizon held by the caller or an earlier step.
    let (row, _) = watch(
        db,
        "CALL stress.ramp('{2,2}', '2 seconds', max_throughput_drop => NULL, mix => '{\"balance_update\": 1, \"position\": 1}')",
    );
    assert_eq!(row.get::<_, i32>("steps"), 2);
    // The default mix and the deadlock test, and a concurrent benchmark.
    watch(db, "CALL stress.run_load_proc('2 seconds', workers => 2)");
    let (row, _) = watch(db, "CALL stress.deadlock_test(duration => '2 seconds')");
    assert!(row.get::<_, bool>("conserved"));
    let (row, _) = watch(
        db,
        "CALL stress.benchmark_proc(ARRAY['UPDATE hot SET n = n + 1 WHERE id = 1'], iterations => 20000, concurrency => 2)",
    );
    assert_eq!(row.get::<_, i64>("calls"), 20000);
}

/// On a cluster of its own (transaction ids are the cluster's: the tests beside this one take
/// them on the shared one), 20,000 SELECTs of a concurrent benchmark advance txid_current() by at
/// most 10 (the run's own records), and as many UPDATEs by at least as many.
#[test]
fn concurrent_benchmark_reads_take_no_transaction_ids() {
    const CLUSTER: &str = "it-xids";
    pgcluster("destroy", CLUSTER);
    let config = pgcluster("start", CLUSTER).unwrap();
    let mut client = config.connect(NoTls).unwrap();
    client
        .batch_execute(
            "CREATE EXTENSION pg_stress; SET stress.progress_interval = 0;
             SELECT count(*) FROM stress.generate_dataset(orders => 5000, seed => 1)",
        )
        .unwrap();
    let xids = |client: &mut postgres::Client, call: &str| -> (i64, postgres::Row) {
        let before: i64 = value(client, "SELECT txid_current()");
        let row = client.query_one(call, &[]).unwrap();
        let after: i64 = value(client, "SELECT txid_current()");
        // (the second txid_current takes one)
        (after - before - 1, row)
    };
    let (reads, row) = xids(
        &mut client,
        "CALL stress.benchmark_proc(ARRAY['SELECT count(*) FROM stress_data.orders WHERE id = 5'],
                                    iterations => 20000, concurrency => 2)",
    );
    assert_eq!(
        (row.get::<_, i64>("calls"), row.get::<_, i64>("errors")),
        (20000, 0)
    );
    assert!(
        reads <= 10,
        "20,000 SELECTs advanced txid_current() by {reads}"
    );
    // The same number of UPDATEs take one each (and a worker's warmup): the check can fail.
    let (writes, _) = xids(
        &mut client,
        "CALL stress.benchmark_proc(ARRAY['UPDATE stress_data.accounts SET balance = balance WHERE id = 5'],
                                    iterations => 20000, concurrency => 2)",
    );
    assert!(
        writes >= 20000,
        "20,000 UPDATEs advanced txid_current() by {writes}"
    );
    // A read-only load run asks for none per operation either.
    let (load, row) = xids(
        &mut client,
        "CALL stress.run_load_proc('2 seconds', workers => 2, mix => '{\"position\": 1, \"open_orders\": 1}')",
    );
    let operations: i64 = row.get("operations");
    assert!(
        operations > 1000 && load <= 20,
        "{operations} reads advanced txid_current() by {load}"
    );
    drop(client);
    pgcluster("destroy", CLUSTER);
}

#[test]
fn waiting_selects_are_refused_with_the_call_in_their_hint() {
    let mut client = load_database("it_caller_refused");
    for (sql, code, hint) in [
        (
            "SELECT stress.run_load('1 second')",
            SqlState::FEATURE_NOT_SUPPORTED,
            "CALL stress.run_load_proc",
        ),
        (
            "SELECT stress.simulate_trading_day('1 second')",
            SqlState::FEATURE_NOT_SUPPORTED,
            "CALL stress.simulate_trading_day_proc",
        ),
        (
            "SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], concurrency => 2)",
            SqlState::FEATURE_NOT_SUPPORTED,
            "CALL stress.benchmark_proc",
        ),
        (
            "SELECT * FROM stress.ramp('{1,2}')",
            SqlState::WRONG_OBJECT_TYPE,
            "To call a procedure, use CALL",
        ),
        (
            "SELECT stress.wait(1)",
            SqlState::WRONG_OBJECT_TYPE,
            "To call a procedure, use CALL",
        ),
    ] {
        let e = client.batch_execute(sql).unwrap_err();
        let e = e.as_db_error().expect("a server error").clone();
        assert_eq!(e.code(), &code, "{sql}: {e}");
        assert!(e.hint().unwrap_or_default().contains(hint), "{sql}: {e:?}");
    }
    // Inside a transaction block a procedure cannot commit: 25001, saying what to do instead,
    // and no run started.
    let runs: i64 = value(&mut client, "SELECT count(*) FROM stress.runs");
    for sql in [
        "BEGIN; CALL stress.run_load_proc('1 second'); COMMIT",
        "BEGIN; CALL stress.ramp('{1}', '1 second'); COMMIT",
    ] {
        let e = client.batch_execute(sql).unwrap_err();
        let e = e.as_db_error().expect("a server error").clone();
        assert_eq!(e.code(), &SqlState::ACTIVE_SQL_TRANSACTION, "{sql}: {e}");
        assert!(e.hint().unwrap_or_default().contains("BEGIN"), "{e:?}");
        let _ = client.batch_execute("ROLLBACK");
    }
    assert_eq!(
        value::<i64>(&mut client, "SELECT count(*) FROM stress.runs"),
        runs
    );
    // wait => false stays for use inside transactions; CALL stress.wait waits for it.
    client.batch_execute("BEGIN").unwrap();
    let run: i64 = value(
        &mut client,
        "SELECT stress.run_load('1 second', wait => false)",
    );
    client.batch_execute("COMMIT").unwrap();
    let status: String = client
        .query_one("CALL stress.wait($1)", &[&run])
        .unwrap()
        .get("status");
    assert_eq!(status, "completed");
}

/// Chaos: the waiting CALL cancelled (pg_cancel_backend, statement_timeout) or its session
/// terminated (pg_terminate_backend) stops its run within a second, recorded as cancelled with
/// what it measured; between its commits nothing of the caller's is left open.
#[test]
fn cancelling_or_terminating_the_waiting_call_ends_its_run() {
    let db = "it_caller_chaos";
    let mut client = load_database(db);
    for how in [
        "pg_cancel_backend",
        "pg_terminate_backend",
        "statement_timeout",
    ] {
        let mut caller = connect(db);
        caller
            .batch_execute("SET stress.progress_interval = 0")
            .unwrap();
        if how == "statement_timeout" {
            caller
                .batch_execute("SET statement_timeout = '1500ms'")
                .unwrap();
        }
        let pid: i32 = value(&mut caller, "SELECT pg_backend_pid()");
        let running = std::thread::spawn(move || {
            caller
                .batch_execute("CALL stress.run_load_proc('60 seconds', workers => 2)")
                .unwrap_err()
        });
        // (the run is going once its workers count operations)
        let deadline = Instant::now() + Duration::from_secs(20);
        let run: i64 = loop {
            let row = client
                .query_opt("SELECT run_id FROM stress.progress WHERE database = current_database() AND ops > 0", &[])
                .unwrap();
            if let Some(row) = row {
                break row.get(0);
            }
            assert!(Instant::now() < deadline, "{how}: the run never got going");
            std::thread::sleep(Duration::from_millis(50));
        };
        if how != "statement_timeout" {
            std::thread::sleep(Duration::from_millis(500));
            client
                .batch_execute(&format!("SELECT {how}({pid})"))
                .unwrap();
        }
        let mut asked = Instant::now();
        let error = running.join().unwrap();
        if how == "statement_timeout" {
            // (asked by the server itself, when the timeout fired: when the call returned)
            asked = Instant::now();
        }
        if how != "pg_terminate_backend" {
            assert_eq!(
                error.code(),
                Some(&SqlState::QUERY_CANCELED),
                "{how}: {error}"
            );
        }
        // The run ends within a second of it, cancelled, and keeps its figures.
        loop {
            let status: Option<String> = client
                .query_one(
                    "SELECT (SELECT status FROM stress.runs WHERE id = $1)",
                    &[&run],
                )
                .unwrap()
                .get(0);
            if status.as_deref() == Some("cancelled") {
                break;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "{how}: run {run} is {status:?} {:?} later",
                asked.elapsed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            asked.elapsed() < Duration::from_millis(1500),
            "{how}: {:?}",
            asked.elapsed()
        );
        let calls: i64 = value(
            &mut client,
            &format!("SELECT calls FROM stress.results WHERE run_id = {run} AND name = 'total'"),
        );
        assert!(calls > 0, "{how}: nothing measured");
        // (its slot is freed just after its record is closed)
        while value::<i64>(
            &mut client,
            &format!("SELECT count(*) FROM stress.progress WHERE run_id = {run}"),
        ) > 0
        {
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "{how}: run {run} is still live"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
