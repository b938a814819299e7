//! Load runs: true percentiles, cancel and wait from other sessions, workers that die or are killed,
//! running as the caller, bad arguments, progress and samples, a crash mid-run, the report, custom
//! transactions.

use super::common::{
    await_run_end, checksum, config, connect, count, env, fresh_database, load_database, pgcluster,
    run_status, value,
};
use postgres::error::SqlState;
use postgres::{Config, NoTls};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn a_load_run_records_true_percentiles_per_operation() {
    let mut client = load_database("it_load");
    // (every table of the fresh database vacuumed and analyzed now, the catalogs that CREATE
    // EXTENSION and the dataset filled included, and autovacuum kept off the tables the run
    // writes: its transactions would count in the commits checked below. Full make test runs saw
    // 33 and 37 commits more than the operations, beyond the margin of 20, while only the three
    // data tables were vacuumed here and autovacuum could visit the database during the run.)
    client
        .batch_execute(
            "DO $$ DECLARE t regclass; BEGIN
                 FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE c.relkind = 'r' AND n.nspname IN ('stress', 'stress_data') LOOP
                     EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off,
                                                         toast.autovacuum_enabled = off)', t);
                 END LOOP;
             END $$",
        )
        .unwrap();
    client.batch_execute("VACUUM ANALYZE").unwrap();
    // An autovacuum worker visiting the database commits there too, and under the full suite
    // (dozens of fresh databases for the launcher to visit) one may come during the run: a run
    // whose count a visit may be in is run again, up to 5 times, so that the count is the run's.
    // (the commits read from another database: the reads are no commits of this one)
    let mut observer = connect("postgres");
    let commits_now = |observer: &mut postgres::Client| {
        count(
            observer,
            "SELECT xact_commit FROM pg_stat_database WHERE datname = 'it_load'",
        )
    };
    let mut attempt = 0;
    let (run_id, commits, successes, autovacuum_visits) = loop {
        attempt += 1;
        let watcher = AutovacuumWatcher::start("it_load");
        // (and VACUUM's own commits, one per table, in the counters before they are read)
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
        client.batch_execute("SELECT 1").unwrap();
        let commits_before = commits_now(&mut observer);
        let run_id: i64 = value(
            &mut client,
            "CALL stress.run_load_proc('2 seconds', workers => 2)",
        );
        // (the workers' counts reach the statistics as each exits, after the run is closed)
        let successes: i64 = value(
            &mut client,
            &format!(
                "SELECT (details->>'successes')::bigint FROM stress.results
                 WHERE run_id = {run_id} AND name = 'total'"
            ),
        );
        let flushed = Instant::now() + Duration::from_secs(5);
        while commits_now(&mut observer) - commits_before < successes && Instant::now() < flushed {
            std::thread::sleep(Duration::from_millis(100));
        }
        // (this session's own commits flushed to the statistics too)
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
        client.batch_execute("SELECT 1").unwrap();
        let commits = commits_now(&mut observer) - commits_before;
        let visits = watcher.stop();
        if visits == 0 || attempt == 5 {
            break (run_id, commits, successes, visits);
        }
        eprintln!("an autovacuum worker visited it_load during run {run_id}: once more");
    };
    assert_eq!(run_status(&mut client, run_id), ("completed".into(), None));
    let rows = client
        .query(
            "SELECT name, calls, errors, p50_ms, p95_ms, p99_ms, max_ms, ops_per_sec,
                    (details->>'successes')::bigint, coalesce(details->>'first_error', ''), seconds
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
            let (ops, seconds): (f64, f64) = (r.get(7), r.get(10));
            // The rate is over the run's own time, from the first worker's start to the last one's
            // end: the 2 s asked for, less the workers' start-up, plus at most the operation still
            // in flight at the deadline (an execute_trade that deadlocks there waits out the
            // server's 1 s deadlock_timeout before its retry).
            assert!(
                (ops - n as f64 / seconds).abs() / ops < 1e-6,
                "{ops} ops/s for {n} calls in {seconds} s"
            );
            assert!(
                seconds > 1.8 && seconds < 2.0 + max / 1000.0 + 0.1,
                "the run took {seconds} s; its slowest operation {max} ms"
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
    assert_eq!(successes, rows.last().unwrap().get::<_, i64>(8));
    // Besides the operations, counted by hand: each worker's connection, preparation and save (3
    // each), the run's closing (1), the sampler's connection, set-up and a sample per second (4 or
    // 5), and this session's own statements, flushed at the end (9: the CALL commits four times).
    // 20 to 25 in all; a margin of 30 still catches one operation in 200 committing twice or not
    // at all.
    eprintln!(
        "{commits} commits for {successes} successful operations: {} more",
        commits - successes
    );
    let autovacuum: i64 = count(
        &mut client,
        "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)::int8 FROM pg_stat_all_tables",
    );
    assert!(
        commits >= successes && commits <= successes + 30,
        "{commits} commits for {successes} successful operations (autovacuum workers seen in the \
         database during the run: {autovacuum_visits}, in {attempt} attempts; autovacuum and \
         autoanalyze runs in this database so far: {autovacuum})"
    );
}

/// Watches, from a thread of its own, for autovacuum workers connected to `database` (every 2 ms:
/// a worker's visit takes longer than that, as it starts, reads the catalogs and commits).
struct AutovacuumWatcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl AutovacuumWatcher {
    fn start(database: &str) -> AutovacuumWatcher {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // (from another database: the watcher's reads are no commits of this one)
        let mut client = connect("postgres");
        let watching = Arc::clone(&stop);
        let database = database.to_owned();
        let thread = std::thread::spawn(move || {
            let mut seen = std::collections::HashSet::new();
            while !watching.load(std::sync::atomic::Ordering::Relaxed) {
                for row in client
                    .query(
                        "SELECT pid FROM pg_stat_activity
                         WHERE backend_type = 'autovacuum worker' AND datname = $1",
                        &[&database],
                    )
                    .unwrap()
                {
                    seen.insert(row.get::<_, i32>(0));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen.len()
        });
        AutovacuumWatcher { stop, thread }
    }

    /// How many autovacuum workers were seen.
    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
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
        .query_one("CALL stress.wait($1)", &[&run_id])
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
        .query_one("CALL stress.wait($1)", &[&run_id])
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
             GRANT EXECUTE ON FUNCTION stress.run_load TO it_reader; GRANT EXECUTE ON PROCEDURE stress.run_load_proc TO it_reader;
             GRANT USAGE ON SCHEMA stress_data TO it_reader;
             GRANT SELECT ON ALL TABLES IN SCHEMA stress_data TO it_reader",
        )
        .unwrap();
    let mut reader = config(DB).user("it_reader").connect(NoTls).unwrap();
    let run_id: i64 = value(
        &mut reader,
        "CALL stress.run_load_proc('1 second', workers => 2)",
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
        "CALL stress.run_load_proc('0 seconds')",
        "CALL stress.run_load_proc('-1 minute')",
        "CALL stress.run_load_proc('1 second', workers => 0)",
        "CALL stress.run_load_proc('1 second', rate => -5)",
        "CALL stress.run_load_proc('1 second', mix => '{\"upsert\": 1}')",
        "CALL stress.run_load_proc('1 second', mix => '{\"insert\": -1}')",
        "CALL stress.run_load_proc('1 second', mix => '[1]')",
        "CALL stress.run_load_proc('1 second', isolation => 'snapshot')",
        "CALL stress.run_load_proc('1 second', max_retries => -1)",
        "CALL stress.wait(987654321)",
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
        .batch_execute("CALL stress.run_load_proc('1 second')")
        .unwrap_err();
    let err = err.as_db_error().expect("a server error").clone();
    assert_eq!(err.code(), &SqlState::INVALID_PARAMETER_VALUE, "{err}");
    assert!(err.message().contains("does not exist"), "{err}");
    // Custom transactions alone need no trading dataset, as pgbench -f needs no pgbench -i.
    empty
        .batch_execute("CREATE TABLE public.counter (n int); INSERT INTO public.counter VALUES (0)")
        .unwrap();
    let run: i64 = empty
        .query_one(
            r#"CALL stress.run_load_proc('1 second', workers => 1,
                   transactions => '[{"name": "bump", "sql": "UPDATE public.counter SET n = n + 1"}]')"#,
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(run_status(&mut empty, run), ("completed".into(), None));
    let bumps: i32 = empty
        .query_one("SELECT n FROM public.counter", &[])
        .unwrap()
        .get(0);
    let successes: i64 = empty
        .query_one(
            "SELECT calls - errors FROM stress.results WHERE run_id = $1 AND name = 'bump'",
            &[&run],
        )
        .unwrap()
        .get(0);
    assert!(
        bumps > 0 && bumps as i64 == successes,
        "{bumps} updates, {successes} successful calls"
    );
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
    // A write committed just before is no reason to warn (PostgreSQL 15's per-transaction
    // statistics still count it for a moment: they said so once).
    client
        .batch_execute("UPDATE stress_data.accounts SET balance = balance WHERE id = 1")
        .unwrap();
    client
        .batch_execute(
            "CALL stress.run_load_proc('1 second', workers => 1, mix => '{\"position\": 1}')",
        )
        .unwrap();
    assert!(
        !notices
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("workers cannot see until it commits")),
        "a WARNING after a committed write: {notices:?}"
    );
    let mut tx = client.transaction().unwrap();
    tx.batch_execute("CREATE TABLE public.t (id int)").unwrap();
    let run: i64 = tx
        .query_one(
            r#"SELECT stress.run_load('1 second', workers => 1, wait => false,
                   transactions => '[{"name": "read_t", "sql": "SELECT * FROM public.t"}]')"#,
            &[],
        )
        .unwrap()
        .get(0);
    // (committed only once the run has ended: its workers never see the table)
    await_run_end(&mut connect("it_load_uncommitted"), run);
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
            r#"SELECT stress.run_load('1 second', workers => 1, mix => '{"balance_update": 1}', wait => false)"#,
            &[],
        )
        .unwrap()
        .get(0);
    // (the locks held until the run has ended: watched from another session)
    await_run_end(&mut connect("it_load_uncommitted"), run);
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
        .batch_execute("CALL stress.run_load_proc('1 second')")
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
        .batch_execute("CALL stress.benchmark_proc(ARRAY['SELECT 1'], concurrency => 2)")
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
        "{err}"
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
        .query_one("CALL stress.wait($1)", &[&run_id])
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
        "CALL stress.run_load_proc('1 second', workers => 1)",
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
        "CALL stress.run_load_proc('2 seconds', workers => 2)",
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
    // Counts are JSON integers: what a CI step casts to bigint.
    for key in [
        "total_operations",
        "successful_operations",
        "failed_operations",
        "deadlock_count",
        "retries",
        "slow_query_count",
    ] {
        assert!(report[key].is_i64(), "{key} is {} in {report}", report[key]);
    }
    let cast: i64 = value(
        &mut client,
        "SELECT (stress.report()->>'total_operations')::bigint
                + (stress.report()->>'deadlock_count')::bigint",
    );
    assert_eq!(
        cast,
        report["total_operations"].as_i64().unwrap() + report["deadlock_count"].as_i64().unwrap()
    );
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
            r#"CALL stress.run_load_proc('2 seconds', workers => 2, transactions => '[
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
            r#"CALL stress.run_load_proc('1 second', transactions => '[{"name": "x", "sql": "SELEC 1"}]')"#,
            SqlState::SYNTAX_ERROR,
        ),
        (
            r#"CALL stress.run_load_proc('1 second', transactions => '[{"name": "x", "sql": "SELECT * FROM nowhere"}]')"#,
            SqlState::UNDEFINED_TABLE,
        ),
        (
            r#"CALL stress.run_load_proc('1 second', transactions => '[{"name": "place_order", "sql": "SELECT 1"}]')"#,
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            r#"CALL stress.run_load_proc('1 second', transactions => '[{"name": "x", "sql": "SELECT $1", "params": [{"distribution": "poisson"}]}]')"#,
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            r#"CALL stress.run_load_proc('1 second', transactions => '[{"name": "x", "sql": "SELECT 1", "weight": 0}]')"#,
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
        .batch_execute("CALL stress.run_load_proc('60 seconds', workers => 2)")
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    client.batch_execute("RESET statement_timeout").unwrap();
    // The run goes on without its caller only until its workers see the cancel.
    let run_id = count(
        &mut client,
        "SELECT max(id) FROM stress.runs WHERE kind = 'run_load'",
    );
    let status: String = client
        .query_one("CALL stress.wait($1)", &[&run_id])
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
            r#"CALL stress.run_load_proc('1 second', transactions => '[{"name": "bump", "sql": "UPDATE counters SET n = n + 1 WHERE id = 1"}]')"#,
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

/// The server beside each second of a run: hot accounts make the run's workers wait for each
/// other's row locks, and the timeline says so (lock waits, on which relation, the wait events),
/// with the WAL and commits the run made; `stress.timeline = off` records none.
#[test]
fn the_timeline_shows_lock_waits_wal_and_commits_second_by_second() {
    let mut client = load_database("it_timeline");
    let run_id: i64 = value(
        &mut client,
        "CALL stress.deadlock_test(workers => 4, duration => '4 seconds', accounts => 2,
                                                 pause => '50 milliseconds')",
    );
    let row = client
        .query_one(
            "SELECT count(*), (SELECT count(*) FROM stress.samples s WHERE s.run_id = $1),
                    sum(wal_bytes)::int8, sum(xact_commit)::int8, max(lock_waits),
                    count(*) FILTER (WHERE lock_relation = 'stress_data.accounts'),
                    count(*) FILTER (WHERE lock_waits > 0 AND longest_lock_wait_ms > 0),
                    count(*) FILTER (WHERE wait_events ? 'Lock:transactionid' OR wait_events ? 'Lock:tuple'),
                    max((SELECT sum(v::int) FROM jsonb_each_text(wait_events) e (k, v)))::int8,
                    min(elapsed_s) > 0 AND bool_and(blks_hit >= 0 AND autovacuum_workers >= 0)
             FROM stress.timeline WHERE run_id = $1",
            &[&run_id],
        )
        .unwrap();
    let (rows, samples): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        rows >= 3 && rows == samples,
        "{rows} timeline rows, {samples} samples"
    );
    let (wal, commits): (i64, i64) = (row.get(2), row.get(3));
    assert!(wal > 0 && commits > 0, "WAL {wal}, commits {commits}");
    let most_waiting: i32 = row.get(4);
    assert!(
        (1..=4).contains(&most_waiting),
        "{most_waiting} workers waiting"
    );
    let (on_accounts, timed, lock_events): (i64, i64, i64) = (row.get(5), row.get(6), row.get(7));
    assert!(
        on_accounts > 0 && timed > 0 && lock_events > 0,
        "{on_accounts} {timed} {lock_events}"
    );
    let most_workers: i64 = row.get(8);
    assert!(
        (1..=4).contains(&most_workers),
        "{most_workers} workers seen"
    );
    assert!(row.get::<_, bool>(9));

    client.batch_execute("SET stress.timeline = off").unwrap();
    let quiet: i64 = value(
        &mut client,
        "CALL stress.run_load_proc('2 seconds', workers => 1)",
    );
    let (timeline, samples): (i64, i64) = (
        value(
            &mut client,
            &format!("SELECT count(*) FROM stress.timeline WHERE run_id = {quiet}"),
        ),
        value(
            &mut client,
            &format!("SELECT count(*) FROM stress.samples WHERE run_id = {quiet}"),
        ),
    );
    assert_eq!(timeline, 0);
    assert!(samples > 0);
}

/// What the workers saved is checked before the last one merges it, as a standby's batch is: a
/// row that could not be a worker's (here a trigger, which only a superuser could put on the
/// owner's table, makes its count negative) fails the run with the reason, instead of being
/// recorded as a figure.
#[test]
fn worker_results_that_could_not_be_a_workers_fail_the_run_with_the_reason() {
    let mut client = fresh_database("it_bad_worker_results");
    client
        .batch_execute(
            "CREATE FUNCTION public.corrupt() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN NEW.calls := -5; RETURN NEW; END $$;
             CREATE TRIGGER corrupt BEFORE INSERT ON stress.load_worker_results
                 FOR EACH ROW EXECUTE FUNCTION public.corrupt()",
        )
        .unwrap();
    let run: i64 = client
        .query_one(
            r#"SELECT stress.run_load('1 second', workers => 1, wait => false,
                   transactions => '[{"name": "one", "sql": "SELECT 1"}]')"#,
            &[],
        )
        .unwrap()
        .get(0);
    await_run_end(&mut client, run);
    let (status, error) = run_status(&mut client, run);
    assert_eq!(status, "failed");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("could not be recorded") && error.contains("a count out of range"),
        "{error}"
    );
    // (no figure of it was recorded)
    assert_eq!(
        count(
            &mut client,
            &format!("SELECT count(*) FROM stress.results WHERE run_id = {run}")
        ),
        0
    );
    client
        .batch_execute("DROP TRIGGER corrupt ON stress.load_worker_results")
        .unwrap();
}
