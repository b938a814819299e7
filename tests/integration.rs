//! Integration tests against a running PostgreSQL 15 with pg_stress and pg_cron preloaded, for what
//! the in-transaction #[pg_test]s cannot do: several databases, pg_dump/pg_restore, VACUUM FULL,
//! cancellation and statement_timeout, NOTICEs as a client sees them.
//!
//! `scripts/test.sh` (run by `make test`) starts the cluster and exports PGHOST/PGPORT/PGUSER.

use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The hostile-role tier (tests/integration/security.rs).
#[path = "integration/security.rs"]
mod security;
#[path = "integration/upgrade.rs"]
mod upgrade;

/// PostgreSQL's programs (pg_dump, pg_restore, …): scripts/test.sh exports the bindir of its PG_CONFIG.
fn bindir() -> String {
    std::env::var("PG_BINDIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests through `make test`, which starts a server")
    })
}

fn config(dbname: &str) -> Config {
    let mut config = Config::new();
    config
        .host_path(env("PGHOST"))
        .port(env("PGPORT").parse().unwrap())
        .user(&env("PGUSER"))
        .dbname(dbname);
    config
}

fn connect(dbname: &str) -> Client {
    config(dbname)
        .connect(NoTls)
        .expect("connecting to the test cluster")
}

/// A new, empty database (dropped first if a previous run left it).
fn empty_database(name: &str) -> Client {
    let mut admin = connect("postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    connect(name)
}

/// A new, empty database with pg_stress installed.
fn fresh_database(name: &str) -> Client {
    let mut client = empty_database(name);
    client.batch_execute("CREATE EXTENSION pg_stress").unwrap();
    client
}

fn checksum(client: &mut Client, rel: &str) -> String {
    client
        .query_one("SELECT stress.checksum($1::text::regclass)", &[&rel])
        .unwrap()
        .get(0)
}

/// The one value `sql` returns.
fn value<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, sql: &str) -> T {
    client.query_one(sql, &[]).unwrap().get(0)
}

fn count(client: &mut Client, sql: &str) -> i64 {
    value(client, sql)
}

fn scratch_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run_tool(tool: &str, args: &[&str]) {
    let out = Command::new(format!("{}/{tool}", bindir()))
        .args([
            "-h",
            &env("PGHOST"),
            "-p",
            &env("PGPORT"),
            "-U",
            &env("PGUSER"),
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pg_dump -Fc` of `source`, `pg_restore` into a new database `target`; a client of `target`.
fn dump_and_restore(source: &str, target: &str) -> Client {
    let dump = scratch_file(&format!("{source}.dump"));
    let dump_path = dump.to_str().unwrap();
    run_tool("pg_dump", &["-Fc", "-d", source, "-f", dump_path]);
    empty_database(target);
    run_tool("pg_restore", &["--exit-on-error", "-d", target, dump_path]);
    connect(target)
}

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

const DATASET_TABLES: [&str; 6] = [
    "accounts",
    "orders",
    "trades",
    "positions",
    "market_data",
    "audit_log",
];

fn dataset_checksums(client: &mut Client) -> Vec<String> {
    DATASET_TABLES
        .iter()
        .map(|t| checksum(client, &format!("stress_data.{t}")))
        .collect()
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

/// A fresh database with a small trading dataset, ready for load runs.
fn load_database(name: &str) -> Client {
    let mut client = fresh_database(name);
    client
        .batch_execute(
            "SET stress.progress_interval = 0;
             SELECT count(*) FROM stress.generate_dataset(orders => 20000, seed => 1)",
        )
        .unwrap();
    client
}

fn run_status(client: &mut Client, run_id: i64) -> (String, Option<String>) {
    let row = client
        .query_one(
            "SELECT status, error FROM stress.runs WHERE id = $1",
            &[&run_id],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn a_load_run_records_true_percentiles_per_operation() {
    let mut client = load_database("it_load");
    let commits_before = count(
        &mut client,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    );
    let run_id: i64 = value(
        &mut client,
        "SELECT stress.run_load('2 seconds', workers => 2)",
    );
    assert_eq!(run_status(&mut client, run_id), ("completed".into(), None));
    let rows = client
        .query(
            "SELECT name, calls, errors, p50_ms, p95_ms, p99_ms, max_ms, ops_per_sec,
                    (details->>'successes')::bigint, coalesce(details->>'first_error', '')
             FROM stress.results WHERE run_id = $1 ORDER BY id",
            &[&run_id],
        )
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        names,
        [
            "place_order",
            "cancel_order",
            "execute_trade",
            "balance_update",
            "open_orders",
            "recent_trades",
            "position",
            "total"
        ]
    );
    let mut calls = 0;
    for r in &rows {
        let (name, n, errors): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
        let (p50, p95, p99, max): (f64, f64, f64, f64) = (r.get(3), r.get(4), r.get(5), r.get(6));
        let first_error: String = r.get(9);
        assert!(
            n > 0 && errors == 0,
            "{name}: {n} calls, {errors} errors: {first_error}"
        );
        assert!(
            0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
            "{name}: {p50} {p95} {p99} {max}"
        );
        if name != "total" {
            calls += n;
        } else {
            assert_eq!(n, calls);
            let ops: f64 = r.get(7);
            assert!(
                (ops - n as f64 / 2.0).abs() / ops < 0.1,
                "{ops} ops/s for {n} calls in 2 s"
            );
        }
    }
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM stress.load_worker_results"
        ),
        0
    );
    // Every operation is one committed transaction: the server counted them.
    let successes: i64 = rows.last().unwrap().get(8);
    std::thread::sleep(Duration::from_millis(600)); // the statistics collector's flush interval
    let commits = count(
        &mut client,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    ) - commits_before;
    // Besides the operations: each worker prepares and saves (2), the run is registered and closed
    // (2), and this session's own statements (a handful).
    assert!(
        commits >= successes && commits <= successes + 20,
        "{commits} commits for {successes} successful operations"
    );
}

#[test]
fn a_run_can_be_cancelled_and_waited_for_from_another_session() {
    let mut client = load_database("it_load_cancel");
    let started = Instant::now();
    let run_id: i64 = value(
        &mut client,
        "SELECT stress.run_load('60 seconds', workers => 2, wait => false)",
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "wait => false took {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(run_status(&mut client, run_id).0, "running");
    let mut other = connect("it_load_cancel");
    let cancelled_at = Instant::now();
    let cancelled: bool = other
        .query_one("SELECT stress.cancel($1)", &[&run_id])
        .unwrap()
        .get(0);
    assert!(cancelled);
    let status: String = other
        .query_one("SELECT stress.wait($1)", &[&run_id])
        .unwrap()
        .get(0);
    assert_eq!(status, "cancelled");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(3),
        "took {:?}",
        cancelled_at.elapsed()
    );
    // The measurements so far are kept.
    assert!(
        count(
            &mut client,
            &format!("SELECT calls FROM stress.results WHERE run_id = {run_id} AND name = 'total'")
        ) > 0
    );
    let again: bool = other
        .query_one("SELECT stress.cancel($1)", &[&run_id])
        .unwrap()
        .get(0);
    assert!(!again);
}

#[test]
fn a_load_worker_killed_with_sigterm_fails_its_run_instead_of_hanging() {
    const DB: &str = "it_load_sigterm";
    let mut client = load_database(DB);
    let run_id: i64 = value(
        &mut client,
        "SELECT stress.run_load('60 seconds', workers => 2, wait => false)",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let worker: i32 = loop {
        let rows = client
            .query(
                "SELECT pid, application_name FROM pg_stat_activity
                 WHERE backend_type = 'pg_stress load' AND datname = $1 ORDER BY application_name",
                &[&DB],
            )
            .unwrap();
        if rows.len() == 2 && !rows[0].get::<_, String>(1).is_empty() {
            // Each worker says which run it belongs to.
            assert_eq!(
                rows[0].get::<_, String>(1),
                format!("pg_stress load run {run_id} worker 1/2")
            );
            break rows[0].get(0);
        }
        assert!(Instant::now() < deadline, "the load workers never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let killed_at = Instant::now();
    client
        .batch_execute(&format!("SELECT pg_terminate_backend({worker})"))
        .unwrap();
    let status: String = client
        .query_one("SELECT stress.wait($1)", &[&run_id])
        .unwrap()
        .get(0);
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "took {:?}",
        killed_at.elapsed()
    );
    assert_eq!(status, "failed");
    let (_, error) = run_status(&mut client, run_id);
    assert!(error.unwrap_or_default().contains("SIGTERM"));
}

#[test]
fn load_workers_run_as_the_caller_and_record_its_permission_errors() {
    const DB: &str = "it_load_priv";
    let mut admin = load_database(DB);
    admin
        .batch_execute(
            "DROP ROLE IF EXISTS it_reader; CREATE ROLE it_reader LOGIN;
             GRANT EXECUTE ON FUNCTION stress.run_load TO it_reader;
             GRANT USAGE ON SCHEMA stress_data TO it_reader;
             GRANT SELECT ON ALL TABLES IN SCHEMA stress_data TO it_reader",
        )
        .unwrap();
    let mut reader = config(DB).user("it_reader").connect(NoTls).unwrap();
    let run_id: i64 = value(
        &mut reader,
        "SELECT stress.run_load('1 second', workers => 2)",
    );
    let row = reader
        .query_one(
            "SELECT status, run_as FROM stress.runs WHERE id = $1",
            &[&run_id],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("completed".into(), "it_reader".into())
    );
    let mut result = |name: &str| {
        reader
            .query_one(
                "SELECT calls, errors, coalesce(details->>'first_error', '') FROM stress.results
                 WHERE run_id = $1 AND name = $2",
                &[&run_id, &name],
            )
            .unwrap()
    };
    let writes = result("place_order");
    let (calls, errors, first_error): (i64, i64, String) =
        (writes.get(0), writes.get(1), writes.get(2));
    assert!(
        calls > 0 && errors == calls,
        "{calls} calls, {errors} errors"
    );
    assert!(first_error.contains("permission denied"), "{first_error}");
    let reads = result("open_orders");
    assert_eq!(reads.get::<_, i64>(1), 0);
}

#[test]
fn bad_load_arguments_are_refused() {
    let mut client = load_database("it_load_bad");
    for sql in [
        "SELECT stress.run_load('0 seconds')",
        "SELECT stress.run_load('-1 minute')",
        "SELECT stress.run_load('1 second', workers => 0)",
        "SELECT stress.run_load('1 second', rate => -5)",
        "SELECT stress.run_load('1 second', mix => '{\"upsert\": 1}')",
        "SELECT stress.run_load('1 second', mix => '{\"insert\": -1}')",
        "SELECT stress.run_load('1 second', mix => '[1]')",
        "SELECT stress.run_load('1 second', isolation => 'snapshot')",
        "SELECT stress.run_load('1 second', max_retries => -1)",
        "SELECT stress.wait(987654321)",
    ] {
        let err = client.batch_execute(sql).unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_PARAMETER_VALUE),
            "{sql}: {err}"
        );
    }
    let mut empty = fresh_database("it_load_empty");
    let err = empty
        .batch_execute("SELECT stress.run_load('1 second')")
        .unwrap_err();
    let err = err.as_db_error().expect("a server error").clone();
    assert_eq!(err.code(), &SqlState::INVALID_PARAMETER_VALUE, "{err}");
    assert!(err.message().contains("does not exist"), "{err}");
}

/// Workers see only committed data: a run started in the transaction that created the table its
/// custom transaction reads warns, and is recorded as failed with the workers' own reason.
#[test]
fn a_run_started_in_a_transaction_that_wrote_warns_and_records_why_it_failed() {
    fresh_database("it_load_uncommitted")
        .batch_execute("SELECT stress.generate_dataset(orders => 200, seed => 1)")
        .unwrap();
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&notices);
    let mut client = config("it_load_uncommitted")
        .notice_callback(move |n| sink.lock().unwrap().push(n.message().to_owned()))
        .connect(NoTls)
        .unwrap();
    let mut tx = client.transaction().unwrap();
    tx.batch_execute("CREATE TABLE public.t (id int)").unwrap();
    let run: i64 = tx
        .query_one(
            r#"SELECT stress.run_load('1 second', workers => 1,
                   transactions => '[{"name": "read_t", "sql": "SELECT * FROM public.t"}]')"#,
            &[],
        )
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("workers cannot see until it commits")),
        "no WARNING: {notices:?}"
    );
    let (status, error) = run_status(&mut client, run);
    assert_eq!(status, "failed");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("preparing the operations") && error.contains("does not exist"),
        "{error}"
    );
    // Operations waiting on the row locks of the caller's open transaction end with the run (a
    // statement timeout 10 s past its end, which the workers arm themselves), counted as errors.
    // (Without it this call would never return: the caller's own statement_timeout fails it.)
    let mut tx = client.transaction().unwrap();
    tx.batch_execute(
        "SET LOCAL statement_timeout = '60s';
         UPDATE stress_data.accounts SET balance = balance",
    )
    .unwrap();
    let run: i64 = tx
        .query_one(
            r#"SELECT stress.run_load('1 second', workers => 1, mix => '{"balance_update": 1}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    tx.rollback().unwrap();
    let row = client
        .query_one(
            "SELECT errors, details->>'first_error' FROM stress.results
             WHERE run_id = $1 AND name = 'balance_update'",
            &[&run],
        )
        .unwrap();
    let (errors, first_error): (i64, Option<String>) = (row.get(0), row.get(1));
    assert!(errors >= 1, "{errors}");
    assert!(
        first_error
            .unwrap_or_default()
            .contains("statement timeout"),
        "{row:?}"
    );
}

#[test]
fn without_the_preload_generation_works_and_load_runs_say_what_to_do() {
    // (Config::host_path adds a host: build this one from scratch.)
    let mut config = Config::new();
    config
        .host_path(env("STRESS_NOPRELOAD_PGHOST"))
        .port(env("STRESS_NOPRELOAD_PGPORT").parse().unwrap())
        .user(&env("PGUSER"))
        .dbname("postgres");
    let mut admin = config.connect(NoTls).unwrap();
    admin
        .batch_execute("DROP DATABASE IF EXISTS it_nopreload WITH (FORCE)")
        .unwrap();
    admin.batch_execute("CREATE DATABASE it_nopreload").unwrap();
    let mut client = config.dbname("it_nopreload").connect(NoTls).unwrap();
    client
        .batch_execute(
            "CREATE EXTENSION pg_stress; SET stress.progress_interval = 0;
             SELECT stress.generate_orders(20000, seed => 3, workers => 2)",
        )
        .unwrap();
    let parallel = checksum(&mut client, "stress_data.orders");
    client
        .batch_execute(
            "TRUNCATE stress_data.orders; SELECT stress.generate_orders(20000, seed => 3)",
        )
        .unwrap();
    assert_eq!(checksum(&mut client, "stress_data.orders"), parallel);
    let err = client
        .batch_execute("SELECT stress.run_load('1 second')")
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
        "{err}"
    );
    let db_error = err.as_db_error().unwrap();
    assert!(db_error.message().contains("shared_preload_libraries"));
    assert!(db_error.hint().unwrap_or_default().contains("restart"));
    // A benchmark runs on one connection without the preload, on several only with it.
    let calls: i64 = value(
        &mut client,
        "SELECT calls FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 10)",
    );
    assert_eq!(calls, 10);
    let err = client
        .batch_execute("SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], concurrency => 2)")
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
        "{err}"
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
        "SELECT stress.run_load('2 seconds', workers => 2, mix => '{\"execute_trade\": 1}')",
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

#[test]
fn a_running_load_shows_in_stress_progress_and_leaves_one_sample_per_second() {
    let mut client = load_database("it_load_live");
    let run_id: i64 = value(
        &mut client,
        "SELECT stress.run_load('3 seconds', workers => 2, wait => false)",
    );
    std::thread::sleep(Duration::from_millis(1800));
    let row = client
        .query_one(
            "SELECT ops, ops_per_sec, active_workers, p99_ms, errors, database
             FROM stress.progress WHERE run_id = $1 AND database = current_database()",
            &[&run_id],
        )
        .unwrap();
    let (ops, rate, active, p99): (i64, f64, i32, f64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(
        ops > 0 && rate > 0.0 && p99 > 0.0,
        "{ops} ops, {rate} ops/s, p99 {p99}"
    );
    assert_eq!(active, 2);
    assert_eq!(
        row.get::<_, Option<String>>(5).as_deref(),
        Some("it_load_live")
    );
    let status: String = client
        .query_one("SELECT stress.wait($1)", &[&run_id])
        .unwrap()
        .get(0);
    assert_eq!(status, "completed");
    assert_eq!(
        count(
            &mut client,
            &format!(
                "SELECT count(*) FROM stress.progress WHERE run_id = {run_id} AND database = current_database()"
            )
        ),
        0
    );
    let samples = client
        .query(
            "SELECT ops, ops_per_sec, p50_ms, p99_ms, active_workers, connections
             FROM stress.samples WHERE run_id = $1 ORDER BY ts",
            &[&run_id],
        )
        .unwrap();
    assert!(
        (2..=4).contains(&samples.len()),
        "{} samples in 3 s",
        samples.len()
    );
    for s in &samples {
        let (ops, p50, p99): (i64, f64, f64) = (s.get(0), s.get(2), s.get(3));
        assert!(ops > 0 && 0.0 < p50 && p50 <= p99, "{ops} {p50} {p99}");
        // This session and the sampling worker at least (near the end the other may be gone);
        // the run's peak below counts both workers.
        assert!(s.get::<_, i64>(5) >= 2, "connections in a sample");
    }
    let sampled: i64 = samples.iter().map(|s| s.get::<_, i64>(0)).sum();
    let total = count(
        &mut client,
        &format!("SELECT calls FROM stress.results WHERE run_id = {run_id} AND name = 'total'"),
    );
    assert!(
        sampled <= total && sampled * 2 > total,
        "{sampled} sampled of {total}"
    );
    assert!(
        count(
            &mut client,
            &format!("SELECT peak_connections FROM stress.runs WHERE id = {run_id}")
        ) >= 3
    );
}

/// `scripts/pgcluster.sh CMD NAME`; for `start`, the connection settings it prints.
fn pgcluster(cmd: &str, name: &str) -> Option<Config> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pgcluster.sh");
    let out = Command::new(script).args([cmd, name]).output().unwrap();
    assert!(
        out.status.success(),
        "pgcluster.sh {cmd} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if cmd != "start" {
        return None;
    }
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |key: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {printed}"))
            .to_owned()
    };
    let mut config = Config::new();
    config
        .host_path(value("PGHOST"))
        .port(value("PGPORT").parse().unwrap())
        .user(&value("PGUSER"))
        .dbname("postgres");
    Some(config)
}

#[test]
fn runs_a_crash_interrupts_are_marked_interrupted_when_the_server_is_back() {
    const CLUSTER: &str = "it-restart";
    pgcluster("destroy", CLUSTER);
    let config = pgcluster("start", CLUSTER).unwrap();
    let mut admin = config.connect(NoTls).unwrap();
    admin.batch_execute("CREATE DATABASE it_restart").unwrap();
    let mut client = config.clone().dbname("it_restart").connect(NoTls).unwrap();
    client
        .batch_execute(
            "CREATE EXTENSION pg_stress; SET stress.progress_interval = 0;
             SELECT count(*) FROM stress.generate_dataset(orders => 5000, seed => 1)",
        )
        .unwrap();
    let run_id: i64 = value(
        &mut client,
        "SELECT stress.run_load('10 minutes', workers => 2, wait => false)",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    // (The run's row appears once its first worker has registered it.)
    while count(&mut client, "SELECT count(*) FROM stress.samples") == 0 {
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    drop(admin);
    pgcluster("crash", CLUSTER);
    let config = pgcluster("start", CLUSTER).unwrap();
    let mut client = config.clone().dbname("it_restart").connect(NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, error) = loop {
        let (status, error) = run_status(&mut client, run_id);
        if status != "running" {
            break (status, error);
        }
        assert!(
            Instant::now() < deadline,
            "the run is still marked running after the restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, "interrupted");
    assert!(error.unwrap_or_default().contains("restart or crash"));
    // A run started after the restart is not touched.
    let after: i64 = value(
        &mut client,
        "SELECT stress.run_load('1 second', workers => 1)",
    );
    assert_eq!(run_status(&mut client, after).0, "completed");
    drop(client);
    pgcluster("destroy", CLUSTER);
}

#[test]
fn the_report_has_the_seeds_keys_and_judges_its_targets() {
    let mut client = load_database("it_load_report");
    client
        .batch_execute("SET stress.slow_query_threshold_ms = 1")
        .unwrap();
    let run_id: i64 = value(
        &mut client,
        "SELECT stress.run_load('2 seconds', workers => 2)",
    );
    let report: serde_json::Value = client
        .query_one("SELECT stress.report()::text", &[])
        .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
        .unwrap_or_default();
    assert_eq!(report["run_id"], run_id);
    for key in [
        "total_operations",
        "successful_operations",
        "failed_operations",
        "deadlock_count",
        "error_rate",
        "avg_latency_ms",
        "p50_latency_ms",
        "p95_latency_ms",
        "p99_latency_ms",
        "throughput",
        "peak_connections",
        "slow_query_count",
        "connection_efficiency",
        "index_hit_rate",
        "cache_hit_rate",
    ] {
        assert!(!report[key].is_null(), "{key} missing in {report}");
    }
    for rate in ["index_hit_rate", "cache_hit_rate"] {
        let r = report[rate].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&r), "{rate} {r}");
    }
    let total = report["total_operations"].as_f64().unwrap();
    let slow = report["slow_query_count"].as_f64().unwrap();
    assert!(
        slow > 0.0 && slow < total,
        "{slow} of {total} operations over 1 ms"
    );
    let efficiency = report["connection_efficiency"].as_f64().unwrap();
    assert!(efficiency > 0.5 && efficiency <= 1.0, "{efficiency}");
    for target in [
        "p50_latency_ms",
        "p99_latency_ms",
        "throughput",
        "connection_efficiency",
        "deadlocks_per_1000",
        "index_hit_rate",
        "cache_hit_rate",
    ] {
        assert!(
            report["targets"][target]["pass"].is_boolean(),
            "{target}: {}",
            report["targets"]
        );
    }
    assert_eq!(report["operations"].as_object().unwrap().len(), 7);
    let err = client
        .batch_execute("SELECT stress.report(987654321)")
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
}

#[test]
fn the_deadlock_test_detects_and_retries_deadlocks_and_conserves_money() {
    let mut client = load_database("it_deadlock");
    let row = client
        .query_one(
            "SELECT run_id, transfers, deadlocks, retries, failures, balance_before::text,
                    balance_after::text, conserved
             FROM stress.deadlock_test(workers => 2, duration => '4 seconds')",
            &[],
        )
        .unwrap();
    let (transfers, deadlocks, retries): (i64, i64, i64) = (row.get(1), row.get(2), row.get(3));
    assert!(transfers > 0, "no transfer went through");
    assert!(deadlocks >= 1, "no deadlock in {transfers} transfers");
    assert!(retries >= 1);
    assert_eq!(row.get::<_, String>(5), row.get::<_, String>(6));
    assert!(row.get::<_, bool>(7));
    let run_id: i64 = row.get(0);
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
        "SELECT * FROM stress.deadlock_test(workers => 1)",
        "SELECT * FROM stress.deadlock_test(accounts => 1)",
        "SELECT * FROM stress.deadlock_test(duration => '0 seconds')",
        "SELECT * FROM stress.deadlock_test(pause => '-1 second')",
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
    let rows = client
        .query("SELECT step, workers, ops_per_sec, p99_ms, error_rate, degraded FROM stress.ramp('{1,2}', '1 second')", &[])
        .unwrap();
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
    let rows = client
        .query(
            "SELECT step, error_rate, degraded FROM stress.ramp('{1,2,4}', '1 second', max_error_rate => 0.01,
                                                               mix => '{\"place_order\": 1}')",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "the ramp goes on after a degraded step");
    assert!(rows[0].get::<_, f64>(1) > 0.99 && rows[0].get::<_, bool>(2));
    let err = client
        .batch_execute("SELECT * FROM stress.ramp('{}', '1 second')")
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
}

#[test]
fn a_simulated_trading_day_follows_its_peak_hours() {
    let mut client = load_database("it_trading_day");
    let run_id: i64 = value(
        &mut client,
        "SELECT stress.simulate_trading_day('6 seconds', '{9,10,14,15}', orders_per_second => 200,
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

#[test]
fn custom_transactions_stress_your_own_schema() {
    let mut client = load_database("it_custom");
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, tag text);
             INSERT INTO items SELECT g, 0, NULL FROM generate_series(1, 1000) g;
             CREATE TABLE hits (item int, tag text)",
        )
        .unwrap();
    let run_id: i64 = client
        .query_one(
            r#"SELECT stress.run_load('2 seconds', workers => 2, transactions => '[
                 {"name": "lookup", "sql": "SELECT n FROM items WHERE id = $1",
                  "params": [{"distribution": "uniform", "min": 1, "max": 1000}], "weight": 3},
                 {"name": "touch", "sql": ["UPDATE items SET n = n + 1, tag = $2 WHERE id = $1",
                                            "INSERT INTO hits VALUES ($1, $2)"],
                  "params": [{"distribution": "zipf", "n": 1000, "s": 1.1}, {"values": ["a", "b"]}]}]')"#,
            &[],
        )
        .unwrap()
        .get(0);
    let rows = client
        .query(
            "SELECT name, calls, errors FROM stress.results WHERE run_id = $1 ORDER BY id",
            &[&run_id],
        )
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        names,
        ["lookup", "touch", "total"],
        "only the custom transactions ran"
    );
    let (lookups, touches): (i64, i64) = (rows[0].get(1), rows[1].get(1));
    assert!(rows.iter().all(|r| r.get::<_, i64>(2) == 0));
    assert!(
        lookups > 2 * touches && touches > 0,
        "{lookups} lookups, {touches} touches (3:1)"
    );
    // Both statements of a touch ran, with the same values, in one transaction each.
    assert_eq!(count(&mut client, "SELECT count(*) FROM hits"), touches);
    assert_eq!(count(&mut client, "SELECT sum(n) FROM items"), touches);
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM hits h JOIN items i ON i.id = h.item WHERE h.item BETWEEN 1 AND 1000"
        ),
        touches
    );
    // zipf: item 1 is the most touched.
    assert_eq!(
        count(
            &mut client,
            "SELECT item::int8 FROM hits GROUP BY item ORDER BY count(*) DESC, item LIMIT 1"
        ),
        1
    );
    for (sql, code) in [
        (
            r#"SELECT stress.run_load('1 second', transactions => '[{"name": "x", "sql": "SELEC 1"}]')"#,
            SqlState::SYNTAX_ERROR,
        ),
        (
            r#"SELECT stress.run_load('1 second', transactions => '[{"name": "x", "sql": "SELECT * FROM nowhere"}]')"#,
            SqlState::UNDEFINED_TABLE,
        ),
        (
            r#"SELECT stress.run_load('1 second', transactions => '[{"name": "place_order", "sql": "SELECT 1"}]')"#,
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            r#"SELECT stress.run_load('1 second', transactions => '[{"name": "x", "sql": "SELECT $1", "params": [{"distribution": "poisson"}]}]')"#,
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            r#"SELECT stress.run_load('1 second', transactions => '[{"name": "x", "sql": "SELECT 1", "weight": 0}]')"#,
            SqlState::INVALID_PARAMETER_VALUE,
        ),
    ] {
        let err = client.batch_execute(sql).unwrap_err();
        assert_eq!(err.code(), Some(&code), "{sql}: {err}");
    }
}

#[test]
fn cancelling_a_waiting_run_load_cancels_its_run() {
    let mut client = load_database("it_load_timeout");
    client
        .batch_execute("SET statement_timeout = '1500ms'")
        .unwrap();
    let started = Instant::now();
    let err = client
        .batch_execute("SELECT stress.run_load('60 seconds', workers => 2)")
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    client.batch_execute("RESET statement_timeout").unwrap();
    // The run goes on without its caller only until its workers see the cancel.
    let run_id = count(
        &mut client,
        "SELECT max(id) FROM stress.runs WHERE kind = 'run_load'",
    );
    let status: String = client
        .query_one("SELECT stress.wait($1)", &[&run_id])
        .unwrap()
        .get(0);
    assert_eq!(status, "cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn custom_transactions_see_the_callers_search_path() {
    let mut client = load_database("it_custom_path");
    client
        .batch_execute(
            "CREATE SCHEMA app; CREATE TABLE app.counters (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO app.counters VALUES (1, 0); SET search_path = app, public",
        )
        .unwrap();
    let run_id: i64 = client
        .query_one(
            r#"SELECT stress.run_load('1 second', transactions => '[{"name": "bump", "sql": "UPDATE counters SET n = n + 1 WHERE id = 1"}]')"#,
            &[],
        )
        .unwrap()
        .get(0);
    let (calls, errors): (i64, i64) = client
        .query_one(
            "SELECT calls, errors FROM stress.results WHERE run_id = $1 AND name = 'bump'",
            &[&run_id],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(calls > 0 && errors == 0, "{calls} calls, {errors} errors");
    assert_eq!(
        count(&mut client, "SELECT n::int8 FROM app.counters"),
        calls
    );
}

#[test]
fn concurrent_benchmarks_roll_back_their_dml_and_stop_with_their_caller() {
    let mut client = fresh_database("it_bench_concurrent");
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO items SELECT g, 0 FROM generate_series(1, 1000) g;
             CREATE TABLE log (item int, at timestamptz DEFAULT now())",
        )
        .unwrap();
    // DML with rollback: measured on three connections, and nothing stays.
    let rows = client
        .query(
            "SELECT query, calls, errors FROM stress.benchmark(
                 ARRAY['INSERT INTO log (item) VALUES (1)', 'UPDATE items SET n = n + 1 WHERE id = 7'],
                 iterations => 300, warmup => 2, concurrency => 3, rollback => true)",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!((row.get::<_, i64>(1), row.get::<_, i64>(2)), (300, 0));
    }
    assert_eq!(count(&mut client, "SELECT count(*) FROM log"), 0);
    assert_eq!(count(&mut client, "SELECT sum(n) FROM items"), 0);
    // Without rollback, unprepared: every execution (3 workers x 2 warmup + 300) is kept.
    client
        .batch_execute(
            "SELECT * FROM stress.benchmark(ARRAY['INSERT INTO log (item) VALUES (2)'],
                 iterations => 300, warmup => 2, concurrency => 3, prepared => false)",
        )
        .unwrap();
    assert_eq!(count(&mut client, "SELECT count(*) FROM log"), 306);

    // The caller's statement_timeout cancels the run: the workers stop, the record says so.
    client
        .batch_execute("SET statement_timeout = '1500ms'")
        .unwrap();
    let started = Instant::now();
    let err = client
        .batch_execute(
            "SELECT * FROM stress.benchmark(ARRAY['SELECT pg_sleep(0.02)'], iterations => 1000000,
                 concurrency => 2)",
        )
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    client.batch_execute("RESET statement_timeout").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, workers): (String, i64) = client
            .query_one(
                "SELECT (SELECT status FROM stress.runs WHERE kind = 'benchmark' ORDER BY id DESC LIMIT 1),
                        (SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pg_stress benchmark%')",
                &[],
            )
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        if status == "cancelled" && workers == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run {status}, {workers} workers left after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // What was measured before the cancel is kept.
    assert!(
        count(
            &mut client,
            "SELECT calls FROM stress.results WHERE run_id = (SELECT max(id) FROM stress.runs WHERE kind = 'benchmark')"
        ) > 0
    );
}

#[test]
fn cancelling_compare_indexes_mid_way_leaves_every_index_in_place() {
    let mut client = fresh_database("it_compare_cancel");
    client
        .batch_execute(
            "CREATE TABLE t AS SELECT g AS id, g % 1000 AS k FROM generate_series(1, 200000) g;
             ALTER TABLE t ADD PRIMARY KEY (id); CREATE INDEX t_k ON t (k); CREATE INDEX t_id_k ON t (id, k);
             ANALYZE t",
        )
        .unwrap();
    let indexes = |client: &mut Client| -> String {
        value(
            client,
            "SELECT string_agg(indexdef, '; ' ORDER BY indexname) FROM pg_indexes WHERE tablename = 't'",
        )
    };
    let before = indexes(&mut client);
    // With its index the query takes well under 1 ms (2000 runs: < 1 s); without, a 200k-row scan
    // (2000 runs: many seconds): cancelled at 2 s, it is measuring with the indexes dropped.
    for cancel in ["SET statement_timeout = '2s'", "pg_cancel_backend"] {
        let pid: i32 = value(&mut client, "SELECT pg_backend_pid()");
        let canceller = (cancel == "pg_cancel_backend").then(|| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2000));
                let mut other = connect("it_compare_cancel");
                other
                    .execute("SELECT pg_cancel_backend($1)", &[&pid])
                    .unwrap();
            })
        });
        if canceller.is_none() {
            client.batch_execute(cancel).unwrap();
        }
        let err = client
            .batch_execute(
                "SELECT * FROM stress.compare_indexes(ARRAY['SELECT count(*) FROM t WHERE k = 7'], 2000)",
            )
            .unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
        if let Some(c) = canceller {
            c.join().unwrap();
        }
        client.batch_execute("RESET statement_timeout").unwrap();
        assert_eq!(indexes(&mut client), before, "after {cancel}");
        let valid: bool = value(
            &mut client,
            "SELECT bool_and(indisvalid AND indisready) FROM pg_index WHERE indrelid = 't'::regclass",
        );
        assert!(valid);
    }
    // A benchmark on one connection stops at a cancel too (not counted as a failed execution).
    client
        .batch_execute("SET statement_timeout = '1s'")
        .unwrap();
    let started = Instant::now();
    let err = client
        .batch_execute(
            "SELECT * FROM stress.benchmark(ARRAY['SELECT pg_sleep(0.01)'], iterations => 1000000)",
        )
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn health_views_show_lock_waits_long_queries_and_table_activity() {
    let mut client = fresh_database("it_health");
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int);
             INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;
             DELETE FROM t WHERE id <= 100;
             SELECT pg_stat_force_next_flush()",
        )
        .unwrap();
    // A holder of a lock, idle in its transaction, and a session waiting for it.
    let mut holder = connect("it_health");
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let holder_pid: i32 = value(&mut holder, "SELECT pg_backend_pid()");
    let waiter = std::thread::spawn(|| {
        let mut waiter = connect("it_health");
        let pid: i32 = value(&mut waiter, "SELECT pg_backend_pid()");
        waiter.batch_execute("SELECT count(*) FROM t").unwrap();
        pid
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let (waiting_pid, blockers, relation, mode) = loop {
        let row = client
            .query_opt(
                "SELECT waiting_pid, blocking_pids, relation::text, mode FROM stress.lock_stats
                 WHERE relation::text = 't'",
                &[],
            )
            .unwrap();
        if let Some(row) = row {
            break (
                row.get::<_, i32>(0),
                row.get::<_, Vec<i32>>(1),
                row.get::<_, String>(2),
                row.get::<_, String>(3),
            );
        }
        assert!(Instant::now() < deadline, "no lock wait seen");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(blockers, vec![holder_pid]);
    assert_eq!((relation.as_str(), mode.as_str()), ("t", "AccessShareLock"));
    assert!(
        count(
            &mut client,
            "SELECT sum(waiting_on_locks)::int8 FROM stress.connection_stats"
        ) >= 1
    );
    std::thread::sleep(Duration::from_millis(1200));
    let long: Vec<(i32, String)> = client
        .query(
            "SELECT pid, state FROM stress.long_running_queries('1 second') ORDER BY pid",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        long.contains(&(waiting_pid, "active".to_owned())),
        "{long:?}"
    );
    assert!(
        long.contains(&(holder_pid, "idle in transaction".to_owned())),
        "{long:?}"
    );
    assert!(
        count(
            &mut client,
            "SELECT count(*) FROM stress.long_running_queries('1 hour')"
        ) == 0
    );
    holder.batch_execute("ROLLBACK").unwrap();
    assert_eq!(waiter.join().unwrap(), waiting_pid);

    // What the table went through, once the statistics are flushed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = client
            .query_one(
                "SELECT inserts, deletes, live_rows, dead_rows FROM stress.table_stats WHERE table_name = 't'",
                &[],
            )
            .unwrap();
        let figures: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        if figures == (1000, 100, 900, 100) {
            break;
        }
        assert!(Instant::now() < deadline, "table_stats says {figures:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A role without pg_monitor sees other roles' sessions as hidden; with it, it sees them.
    client
        .batch_execute(
            "DROP ROLE IF EXISTS it_health_plain; CREATE ROLE it_health_plain LOGIN;
             DROP ROLE IF EXISTS it_health_monitor; CREATE ROLE it_health_monitor LOGIN IN ROLE pg_monitor",
        )
        .unwrap();
    for (role, hidden_expected) in [("it_health_plain", true), ("it_health_monitor", false)] {
        let mut as_role = config("it_health").user(role).connect(NoTls).unwrap();
        let hidden: i64 = value(&mut as_role, "SELECT hidden FROM stress.database_health");
        assert_eq!(hidden > 0, hidden_expected, "{role}: {hidden} hidden");
    }
}

/// (action, method, dead_rows, wasted_pct) of `relation` in `stress.bloat_report('damage', exact)`.
fn bloat_of(
    client: &mut Client,
    relation: &str,
    exact: bool,
) -> (String, String, Option<i64>, f64) {
    let row = client
        .query_one(
            "SELECT action, method, dead_rows, coalesce(wasted_pct, 0)::float8
             FROM stress.bloat_report('damage', exact => $2) WHERE relation = $1",
            &[&relation, &exact],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[test]
fn the_bloat_report_finds_deliberate_damage_estimated_and_exactly() {
    let mut client = fresh_database("it_bloat");
    client
        .batch_execute(
            "CREATE SCHEMA damage;
             CREATE TABLE damage.t (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = false);
             INSERT INTO damage.t SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 50000) g;
             CREATE INDEX t_payload ON damage.t (payload);
             DELETE FROM damage.t WHERE id % 5 < 3;
             ANALYZE damage.t;
             SELECT pg_stat_force_next_flush()",
        )
        .unwrap();
    // Estimated from the statistics: 60% of the rows dead, and 60% of the pages beyond what the
    // live rows need.
    let deadline = Instant::now() + Duration::from_secs(10);
    let estimated = loop {
        let b = bloat_of(&mut client, "t", false);
        if b.2 == Some(30000) || Instant::now() > deadline {
            break b;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(estimated.1, "estimate");
    assert_eq!(estimated.2, Some(30000));
    assert!((50.0..75.0).contains(&estimated.3), "{estimated:?}");
    assert!(
        estimated.0.starts_with("VACUUM FULL damage.t"),
        "{estimated:?}"
    );
    // pgstattuple installed: exact figures, and the report says so.
    client
        .batch_execute("CREATE EXTENSION pgstattuple")
        .unwrap();
    let exact = bloat_of(&mut client, "t", true);
    assert_eq!((exact.1.as_str(), exact.2), ("pgstattuple", Some(30000)));
    assert!(exact.3 > 50.0, "{exact:?}");
    // A role that may not run pgstattuple gets the estimate.
    client
        .batch_execute("DROP ROLE IF EXISTS it_bloat_plain; CREATE ROLE it_bloat_plain LOGIN")
        .unwrap();
    let mut plain = config("it_bloat")
        .user("it_bloat_plain")
        .connect(NoTls)
        .unwrap();
    let method = |plain: &mut Client| -> String {
        value(
            plain,
            "SELECT method FROM stress.bloat_report('damage') WHERE relation = 't'",
        )
    };
    // (pg_stats shows it only the columns it may read.)
    assert_eq!(
        method(&mut plain),
        "estimate (no statistics visible: needs SELECT on the table)"
    );
    client
        .batch_execute("GRANT USAGE ON SCHEMA damage TO it_bloat_plain; GRANT SELECT ON damage.t TO it_bloat_plain")
        .unwrap();
    assert_eq!(method(&mut plain), "estimate");
    // VACUUM takes the dead rows out of the index too, leaving its leaves 40% full: REINDEX.
    client.batch_execute("VACUUM damage.t").unwrap();
    let index = bloat_of(&mut client, "t_payload", true);
    assert_eq!(index.1, "pgstattuple");
    assert!(index.3 > 30.0, "{index:?}");
    assert_eq!(index.0, "REINDEX INDEX CONCURRENTLY damage.t_payload");
    // Worst first.
    let first: String = value(
        &mut client,
        "SELECT relation FROM stress.bloat_report('damage') LIMIT 1",
    );
    assert_eq!(first, "t");
    // Repaired: nothing left to do.
    client.batch_execute("VACUUM FULL damage.t").unwrap();
    client.batch_execute("ANALYZE damage.t").unwrap();
    for relation in ["t", "t_pkey", "t_payload"] {
        let repaired = bloat_of(&mut client, relation, true);
        assert_eq!(repaired.0, "none", "{relation}: {repaired:?}");
        assert!(repaired.3 < 20.0, "{relation}: {repaired:?}");
    }
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
        .query_one("SELECT stress.wait($1)", &[&run_id])
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

#[test]
fn pg_cron_really_runs_the_scheduled_maintenance() {
    // pg_cron lives in the cluster's cron.database_name: postgres.
    let mut client = connect("postgres");
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE EXTENSION IF NOT EXISTS pg_cron; CREATE EXTENSION IF NOT EXISTS pg_stress;
             SELECT stress.unschedule_maintenance();
             DROP SCHEMA IF EXISTS it_cron CASCADE; CREATE SCHEMA it_cron;
             CREATE TABLE it_cron.logs (id int PRIMARY KEY, at timestamptz NOT NULL);
             -- one row a day, half a day off the boundaries: the job runs a minute or so later
             INSERT INTO it_cron.logs SELECT g, now() - (g - 0.5) * interval '1 day' FROM generate_series(1, 100) g;
             DELETE FROM stress.retention_policies;
             SELECT stress.set_retention('it_cron.logs', 'at', '30 days')",
        )
        .unwrap();
    let health_checks_before = count(
        &mut client,
        "SELECT count(*) FROM stress.runs WHERE kind = 'health_check'",
    );
    // Every minute (pg_cron 1.4 has no second-level schedules): the first run comes within a minute.
    let jobs = client
        .query(
            "SELECT job_name FROM stress.schedule_maintenance(daily => '* * * * *', weekly => '* * * * *',
                                                              busiest_tables => 1)",
            &[],
        )
        .unwrap()
        .len();
    assert_eq!(jobs, 4);
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let done: Vec<String> = client
            .query(
                "SELECT DISTINCT j.jobname FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                 WHERE j.jobname LIKE 'stress: %' AND d.status = 'succeeded' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if done.len() == 4 {
            break;
        }
        let failed: Vec<String> = client
            .query(
                "SELECT j.jobname || ': ' || d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                 WHERE j.jobname LIKE 'stress: %' AND d.status = 'failed'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(failed.is_empty(), "{failed:?}");
        assert!(Instant::now() < deadline, "after 150 s only {done:?} ran");
        std::thread::sleep(Duration::from_secs(2));
    }
    // Their effects: retention applied, the health check recorded, the busiest table vacuumed.
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_cron.logs"), 30);
    assert_eq!(
        count(
            &mut client,
            "SELECT last_rows FROM stress.retention_policies WHERE relation = 'it_cron.logs'"
        ),
        70
    );
    assert!(
        count(
            &mut client,
            "SELECT count(*) FROM stress.runs WHERE kind = 'health_check'"
        ) > health_checks_before
    );
    assert_eq!(
        client
            .query_one(
                "SELECT command FROM cron.job WHERE jobname = 'stress: vacuum analyze busiest tables'",
                &[]
            )
            .unwrap()
            .get::<_, String>(0),
        "VACUUM (ANALYZE) it_cron.logs"
    );
    let unscheduled: i32 = value(&mut client, "SELECT stress.unschedule_maintenance()");
    assert_eq!(unscheduled, 4);
    client
        .batch_execute("DROP SCHEMA it_cron CASCADE; DELETE FROM stress.retention_policies")
        .unwrap();
}

#[test]
fn slow_statements_and_the_query_time_alert_read_pg_stat_statements() {
    let mut client = fresh_database("it_slow_statements");
    client
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset();
             CREATE TABLE t (id int)",
        )
        .unwrap();
    for _ in 0..3 {
        client.batch_execute("SELECT pg_sleep(0.06)").unwrap();
        client.batch_execute("SELECT count(*) FROM t").unwrap();
    }
    let slow: Vec<(String, i64)> = client
        .query(
            "SELECT query, calls FROM stress.slow_statements(min_calls => 3, min_mean_ms => 50)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(slow, vec![("SELECT pg_sleep($1)".to_owned(), 3)]);
    // The average query time is measured now; with a 10 ms limit the 60 ms sleeps make it fire.
    let (firing, measured): (bool, f64) = client
        .query_one(
            "SELECT firing, measured::float8 FROM stress.health_alerts(max_avg_query_ms => 10, show_all => true)
             WHERE alert = 'avg_query_time'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(firing && measured > 10.0, "{measured} ms");
}

#[test]
fn archive_batched_commits_every_batch() {
    let mut client = fresh_database("it_archive_batched");
    client
        .batch_execute(
            "CREATE TABLE logs (id int PRIMARY KEY, at timestamptz NOT NULL);
             INSERT INTO logs SELECT g, now() - (g - 0.5) * interval '1 hour' FROM generate_series(1, 1000) g",
        )
        .unwrap();
    // (This session's commits reach pg_stat_database when it flushes its statistics: force it.)
    let commits = |client: &mut Client| -> i64 {
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
        count(
            client,
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
    };
    let before = commits(&mut client);
    // 1000 hourly rows; older than 100 hours: 900 of them, 100 a batch and each committed.
    let removed: i64 = value(
        &mut client,
        "CALL stress.archive_batched('logs', 'at', '100 hours', batch_size => 100)",
    );
    assert_eq!(removed, 900);
    assert_eq!(count(&mut client, "SELECT count(*) FROM logs"), 100);
    let after = commits(&mut client);
    assert!(
        after - before >= 10,
        "{} commits for 10 batches",
        after - before
    );
    // Inside a transaction block it cannot commit: PostgreSQL says so, and nothing is removed.
    let err = client
        .batch_execute(
            "BEGIN; CALL stress.archive_batched('logs', 'at', '1 hour', batch_size => 10); COMMIT",
        )
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_TRANSACTION_TERMINATION),
        "{err}"
    );
    client.batch_execute("ROLLBACK").unwrap();
    assert_eq!(count(&mut client, "SELECT count(*) FROM logs"), 100);
}

#[test]
fn a_benchmark_whose_workers_cannot_connect_fails_instead_of_hanging() {
    let mut client = fresh_database("it_bench_nologin");
    // The workers connect as the session user: one that may not log in makes them exit at once.
    client
        .batch_execute(
            "DROP ROLE IF EXISTS it_nologin; CREATE ROLE it_nologin NOLOGIN;
             GRANT EXECUTE ON FUNCTION stress.run_load TO it_nologin;
             SET SESSION AUTHORIZATION it_nologin",
        )
        .unwrap();
    let started = Instant::now();
    let rows = client
        .query(
            "SELECT calls, error FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 1000, concurrency => 2)",
            &[],
        )
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let error: Option<String> = rows[0].get(1);
    assert!(
        error.as_deref().unwrap_or("").contains("failed"),
        "{error:?}"
    );
    client.batch_execute("RESET SESSION AUTHORIZATION").unwrap();
    // The record says so, with the role that ran it.
    let (status, run_as): (String, String) = client
        .query_one(
            "SELECT status, run_as::text FROM stress.runs WHERE kind = 'benchmark' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((status.as_str(), run_as.as_str()), ("failed", "it_nologin"));
}
