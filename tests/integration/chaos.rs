//! The chaos tier: every run ends when told — `stress.cancel`, `pg_cancel_backend` or
//! `pg_terminate_backend` of a worker or of the waiting caller, a fast shutdown — and is recorded
//! honestly after any crash: a SIGKILL of a worker, of the sampler or of the caller (what the OOM
//! killer does; the postmaster then reinitializes), an immediate shutdown during or right after a
//! generation, DDL and DROP EXTENSION under a run. Each case is judged by the server being up (or
//! cleanly restarted), the run's record closed with an honest status, no slot or process left
//! behind, the next run starting, and the data intact by PostgreSQL's amcheck (`verify_heapam`,
//! `bt_index_check(…, heapallindexed => true)`).
//!
//! The cases crash and restart their server: they share a cluster of their own, one case at a
//! time.

use crate::common::pgcluster_with;
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const CLUSTER: &str = "it-chaos";
const DB: &str = "chaos";
/// The cluster's connection settings once started (its port changes at each start).
static SERVER: Mutex<Option<Config>> = Mutex::new(None);

/// This test's hold on the chaos cluster.
struct Chaos {
    server: MutexGuard<'static, Option<Config>>,
}

impl Chaos {
    /// `SET stress.target` to this cluster itself, over its socket (a superuser's connection: the
    /// server's own authentication is allowed).
    fn itself_as_target(&self) -> String {
        let config = self.config();
        let postgres::config::Host::Unix(socket) = &config.get_hosts()[0] else {
            panic!("a Unix socket")
        };
        format!(
            "SET stress.target = 'host={} port={} dbname={DB}'",
            socket.display(),
            config.get_ports()[0]
        )
    }

    /// Take the cluster (one case at a time), starting it and its database the first time; none
    /// where PostgreSQL has no amcheck to prove the data intact (`test` is skipped, saying so).
    fn take(test: &str) -> Option<Chaos> {
        if !crate::common::has_module("amcheck", test) {
            return None;
        }
        let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        if server.is_none() {
            crate::common::pgcluster("destroy", CLUSTER);
            *server = Some(start());
            let mut admin = server.as_ref().unwrap().connect(NoTls).unwrap();
            // (its owner's search_path, which whatever closes runs after a crash must not use)
            for sql in [
                format!("DROP DATABASE IF EXISTS {DB}"),
                format!("CREATE DATABASE {DB}"),
                format!("ALTER DATABASE {DB} SET search_path = chaos_hostile, public"),
            ] {
                admin.batch_execute(&sql).unwrap();
            }
            let mut chaos = Chaos { server };
            chaos
                .connect()
                .batch_execute(
                    "CREATE SCHEMA chaos_hostile; CREATE EXTENSION pg_stress;
                     CREATE EXTENSION amcheck SCHEMA public;
                     SET stress.progress_interval = 0;
                     SELECT count(*) FROM stress.generate_dataset(orders => 20000, seed => 1)",
                )
                .unwrap();
            return Some(chaos);
        }
        let mut chaos = Chaos { server };
        // (a case that failed may have left its run going: stop it, so the next case starts clean)
        let mut client = chaos.connect();
        client
            .batch_execute(
                "SELECT stress.cancel(run_id) FROM stress.progress WHERE database = current_database()",
            )
            .ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client
            .query_one("SELECT count(*) FROM stress.progress", &[])
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
            > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(chaos)
    }

    fn config(&self) -> Config {
        let mut config = self.server.as_ref().unwrap().clone();
        config.dbname(DB);
        config
    }

    /// A session in the chaos database, waiting (up to 30 s) for a restarting server.
    fn connect(&mut self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.config().connect(NoTls) {
                Ok(mut client) => {
                    client
                        .batch_execute("SET stress.progress_interval = 0")
                        .unwrap();
                    return client;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "the server did not come back: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// `pgcluster.sh stop` (fast) or `crash` (immediate), then start again: how long the stop took.
    fn restart(&mut self, how: &str) -> Duration {
        let asked = Instant::now();
        crate::common::pgcluster(how, CLUSTER);
        let took = asked.elapsed();
        *self.server = Some(start());
        took
    }
}

fn start() -> Config {
    pgcluster_with(
        "start",
        CLUSTER,
        &[
            "shared_preload_libraries = 'pg_stress'",
            "log_line_prefix = '%m [%p] %e '",
        ],
    )
    .unwrap()
}

/// Start a load run that returns at once: `args` of stress.run_load.
fn detached(client: &mut Client, args: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT stress.run_load({args}, wait => false)"),
            &[],
        )
        .unwrap()
        .get(0)
}

/// The run going on in this database (started by a CALL in another session), within 20 s.
fn run_in_progress(client: &mut Client) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(row) = client
            .query_opt(
                "SELECT run_id FROM stress.progress WHERE database = current_database()",
                &[],
            )
            .unwrap()
        {
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "no run started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A trading dataset of `orders` orders in schema `schema`, which this session then works on.
fn dataset_in(client: &mut Client, schema: &str, orders: i64, seed: i64) {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET stress.data_schema = '{schema}';
             SELECT count(*) FROM stress.generate_dataset(orders => {orders}, seed => {seed})"
        ))
        .unwrap();
}

/// A run whose every operation is a 30-second statement: a stop must cut one short.
const SLEEPY: &str = "'60 seconds', workers => 2, mix => '{}',
    transactions => '[{\"name\": \"sleepy\", \"sql\": \"SELECT pg_sleep(30)\"}]'";

/// The process ids of run `run`'s workers, once all `workers` of them are in their loop (and, with
/// `ops`, once it has counted operations).
fn workers_of(client: &mut Client, run: i64, workers: i64, ops: bool) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let going: i64 = client
            .query_one(
                "SELECT count(*) FROM stress.progress
                 WHERE run_id = $1 AND database = current_database()
                   AND active_workers = $2 AND (ops > 0 OR NOT $3)",
                &[&run, &(workers as i32), &ops],
            )
            .unwrap()
            .get(0);
        let pids: Vec<i32> = client
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE backend_type = 'pg_stress load' AND application_name LIKE $1",
                &[&format!("pg_stress % run {run} worker %")],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if going == 1 && pids.len() as i64 == workers {
            return pids;
        }
        assert!(Instant::now() < deadline, "run {run} never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait (up to 30 s, across a restart) until run `run` is no longer `running`: its status, error,
/// and how long after `since` its record was closed.
fn closed(chaos: &mut Chaos, run: i64, since: Instant) -> (String, Option<String>, Duration) {
    let deadline = since + Duration::from_secs(30);
    loop {
        let row = chaos.config().connect(NoTls).ok().and_then(|mut c| {
            c.query_opt(
                "SELECT status, error FROM stress.runs WHERE id = $1 AND status <> 'running'",
                &[&run],
            )
            .ok()
            .flatten()
        });
        if let Some(row) = row {
            return (row.get(0), row.get(1), since.elapsed());
        }
        assert!(Instant::now() < deadline, "run {run} was never closed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Nothing left behind: no run in progress in this database, no pg_stress process but the
/// recovery worker, every table of `schema` and its btree indexes intact, and a new run starts
/// and completes.
fn assert_clean(chaos: &mut Chaos, schema: &str) {
    let mut client = chaos.connect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (slots, processes): (i64, i64) = {
            let row = client
                .query_one(
                    "SELECT (SELECT count(*) FROM stress.progress WHERE database = current_database()),
                            (SELECT count(*) FROM pg_stat_activity
                             WHERE backend_type LIKE 'pg_stress%' AND backend_type <> 'pg_stress recovery')",
                    &[],
                )
                .unwrap();
            (row.get(0), row.get(1))
        };
        if slots == 0 && processes == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {slots} runs in progress, {processes} pg_stress processes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_intact(&mut client, schema);
    let status: String = client
        .query_one("CALL stress.run_load_proc('1 second', workers => 1)", &[])
        .unwrap()
        .get("status");
    assert_eq!(status, "completed", "the next run");
}

/// amcheck on every table of `schema` and on each of their btree indexes (heapallindexed).
fn assert_intact(client: &mut Client, schema: &str) {
    let tables: Vec<String> = client
        .query(
            "SELECT c.oid::regclass::text FROM pg_class c
             WHERE c.relnamespace = $1::text::regnamespace AND c.relkind = 'r'",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in &tables {
        let corrupt: i64 = client
            .query_one(
                "SELECT count(*) FROM verify_heapam($1::text::regclass)",
                &[table],
            )
            .unwrap()
            .get(0);
        assert_eq!(corrupt, 0, "verify_heapam({table})");
    }
    let indexes: i64 = client
        .query_one(
            "SELECT count(bt_index_check(i.indexrelid, true)) FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
             WHERE c.relnamespace = $1::text::regnamespace AND am.amname = 'btree'",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert!(
        tables.is_empty() || indexes > 0,
        "no index of {schema} was checked"
    );
}

fn kill9(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

#[test]
fn rates_past_their_bounds_are_refused_and_the_fastest_allowed_ends_on_time() {
    let Some(mut chaos) =
        Chaos::take("rates_past_their_bounds_are_refused_and_the_fastest_allowed_ends_on_time")
    else {
        return;
    };
    let mut client = chaos.connect();
    for call in [
        "CALL stress.find_capacity(50, start_rate => 1e300, step => '1 second')",
        "SELECT stress.run_load('2 seconds', workers => 1, rate => 1e8, wait => false)",
        "SELECT stress.run_load('2 seconds', workers => 1, rate => 2e6, wait => false)",
        "SELECT stress.run_load('2 seconds', rate => 'Infinity', wait => false)",
        "SELECT stress.run_load('2 seconds', mix => '{\"select\": 1e300}', wait => false)",
        "SELECT stress.run_load('2 seconds', mix => '{}', wait => false,
             transactions => '[{\"name\": \"a\", \"sql\": \"SELECT 1\", \"weight\": 1e7}]')",
        "CALL stress.simulate_trading_day_proc('2 seconds', orders_per_second => 1e7, workers => 1)",
    ] {
        let e = client.batch_execute(call).unwrap_err();
        assert_eq!(
            e.code(),
            Some(&SqlState::INVALID_PARAMETER_VALUE),
            "{call}: {e}"
        );
        let hint = e.as_db_error().and_then(|d| d.hint()).unwrap_or_default();
        assert!(!hint.is_empty(), "{call}: no hint");
    }
    // The fastest schedule allowed (an arrival each microsecond) ends at its deadline, and the
    // arrivals it offered are counted, not scheduled one by one after it.
    let asked = Instant::now();
    let row = client
        .query_one(
            "CALL stress.run_load_proc('2 seconds', workers => 1, rate => 1e6, mix => '{\"select\": 1}')",
            &[],
        )
        .unwrap();
    let took = asked.elapsed();
    assert_eq!(row.get::<_, String>("status"), "completed");
    assert!(
        took < Duration::from_secs(4),
        "a 2-second run took {took:?}"
    );
    let run: i64 = row.get("run_id");
    let arrivals: f64 = client
        .query_one(
            "SELECT (details->>'arrivals')::float8 FROM stress.results WHERE run_id = $1 AND name = 'total'",
            &[&run],
        )
        .unwrap()
        .get(0);
    assert!(
        (arrivals - 2e6).abs() < 2e6 * 0.05,
        "offered {arrivals} arrivals in 2 s at 1e6/s"
    );
    // … and stops within a second when cancelled.
    let run = detached(&mut client, "'60 seconds', workers => 2, rate => 2e6");
    workers_of(&mut client, run, 2, true);
    let asked = Instant::now();
    let cancelled: bool = client
        .query_one("SELECT stress.cancel($1)", &[&run])
        .unwrap()
        .get(0);
    assert!(cancelled);
    let (status, _, took) = closed(&mut chaos, run, asked);
    assert_eq!(status, "cancelled");
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    eprintln!("chaos: a run at 2e6 ops/s cancelled, closed after {took:?}");
    assert_clean(&mut chaos, "stress_data");
}

/// stress.cancel, and pg_cancel_backend or pg_terminate_backend of a worker or of the waiting
/// caller, each stop a run whose workers are in the middle of a 30-second statement, within a
/// second, recorded with an honest status — over SPI, and on a target (this server again, over
/// its socket), where the statement each worker's connection runs is cancelled too.
#[test]
fn every_way_of_telling_a_run_to_stop_ends_it_within_a_second() {
    let Some(mut chaos) = Chaos::take("every_way_of_telling_a_run_to_stop_ends_it_within_a_second")
    else {
        return;
    };
    let on_target = chaos.itself_as_target();
    for (how, expected) in [
        ("stress.cancel", "cancelled"),
        ("pg_cancel_backend of a worker", "cancelled"),
        ("pg_terminate_backend of a worker", "failed"),
        ("pg_cancel_backend of the caller", "cancelled"),
        ("pg_terminate_backend of the caller", "cancelled"),
        ("stress.cancel, on a target", "cancelled"),
        ("pg_terminate_backend of a worker, on a target", "failed"),
        ("pg_cancel_backend of the caller, on a target", "cancelled"),
    ] {
        let mut client = chaos.connect();
        let target = how.ends_with(", on a target");
        let how = how.trim_end_matches(", on a target");
        let setting = if target {
            on_target.as_str()
        } else {
            "RESET stress.target"
        };
        client.batch_execute(setting).unwrap();
        let by_caller = how.ends_with("the caller");
        let (run, caller) = if by_caller {
            let mut caller = chaos.connect();
            caller.batch_execute(setting).unwrap();
            let pid: i32 = caller
                .query_one("SELECT pg_backend_pid()", &[])
                .unwrap()
                .get(0);
            let waiting = std::thread::spawn(move || {
                caller
                    .query_one(&format!("CALL stress.run_load_proc({SLEEPY})"), &[])
                    .map(|_| ())
            });
            let run = run_in_progress(&mut client);
            (run, Some((pid, waiting)))
        } else {
            (detached(&mut client, SLEEPY), None)
        };
        let workers = workers_of(&mut client, run, 2, false);
        // (into their statement)
        std::thread::sleep(Duration::from_millis(300));
        let asked = Instant::now();
        let sql = match how {
            "stress.cancel" => format!("SELECT stress.cancel({run})"),
            "pg_cancel_backend of a worker" => format!("SELECT pg_cancel_backend({})", workers[0]),
            "pg_terminate_backend of a worker" => {
                format!("SELECT pg_terminate_backend({})", workers[0])
            }
            _ => {
                let pid = caller.as_ref().unwrap().0;
                let f = how.split(' ').next().unwrap();
                format!("SELECT {f}({pid})")
            }
        };
        client.batch_execute(&sql).unwrap();
        let (status, error, took) = closed(&mut chaos, run, asked);
        eprintln!("chaos: {how}: run {run} {status} after {took:?}");
        assert_eq!(status, expected, "{how}: {error:?}");
        assert!(
            took < Duration::from_secs(1),
            "{how}: the run took {took:?} to stop"
        );
        if expected == "failed" {
            assert!(error.unwrap_or_default().contains("SIGTERM"));
        }
        if let Some((_, waiting)) = caller {
            assert!(waiting.join().unwrap().is_err(), "{how}: the CALL returned");
        }
        if target {
            // the workers' connections to the target are gone: their pg_sleep was cancelled
            let mut client = chaos.connect();
            on_the_target(&mut client, "load", run, 0, Duration::from_secs(2), how);
        }
        assert_clean(&mut chaos, "stress_data");
    }
}

/// Wait (at most `within`) until run `run`'s workers (a `kind` run) have `n` connections on the
/// target `client` is connected to, all of them in a statement when `n` > 0.
fn on_the_target(client: &mut Client, kind: &str, run: i64, n: i64, within: Duration, how: &str) {
    let deadline = Instant::now() + within;
    loop {
        let (there, active): (i64, i64) = {
            let row = client
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity
                     WHERE backend_type = 'client backend' AND application_name LIKE $1",
                    &[&format!("pg_stress {kind} run {run} worker%")],
                )
                .unwrap();
            (row.get(0), row.get(1))
        };
        if there == n && (n == 0 || active == n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{how}, on a target: {there} of the workers' connections are there ({active} active), not {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A benchmark of a target (this server again, over its socket) whose two workers are in a
/// 30-second query there: stress.cancel, or pg_cancel_backend of the caller waiting in CALL, ends
/// it within a second, cancelled, and the workers' connections there are gone (their query was
/// cancelled there).
#[test]
fn a_benchmark_on_a_target_stops_within_a_second() {
    let Some(mut chaos) = Chaos::take("a_benchmark_on_a_target_stops_within_a_second") else {
        return;
    };
    let on_target = chaos.itself_as_target();
    for how in ["stress.cancel", "pg_cancel_backend of the caller"] {
        let mut client = chaos.connect();
        let mut caller = chaos.connect();
        caller.batch_execute(&on_target).unwrap();
        let pid: i32 = caller
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        let waiting = std::thread::spawn(move || {
            caller
                .query_one(
                    "CALL stress.benchmark_proc(ARRAY['SELECT pg_sleep(30)'], iterations => 4,
                                                warmup => 0, concurrency => 2)",
                    &[],
                )
                .map(|row| row.get::<_, Option<String>>("error"))
        });
        let run = run_in_progress(&mut client);
        on_the_target(
            &mut client,
            "benchmark",
            run,
            2,
            Duration::from_secs(20),
            how,
        );
        let asked = Instant::now();
        let sql = match how {
            "stress.cancel" => format!("SELECT stress.cancel({run})"),
            _ => format!("SELECT pg_cancel_backend({pid})"),
        };
        client.batch_execute(&sql).unwrap();
        let (status, error, took) = closed(&mut chaos, run, asked);
        eprintln!("chaos: benchmark on a target, {how}: run {run} {status} after {took:?}");
        assert_eq!(status, "cancelled", "{how}: {error:?}");
        assert!(
            took < Duration::from_secs(1),
            "{how}: the run took {took:?} to stop"
        );
        // (a cancelled caller's CALL fails; after stress.cancel it returns, saying so)
        match waiting.join().unwrap() {
            Ok(said) if how == "stress.cancel" => assert!(
                said.as_deref().is_some_and(|e| e.contains("cancelled")),
                "{how}: {said:?}"
            ),
            outcome => assert!(outcome.is_err(), "{how}: the CALL returned {outcome:?}"),
        }
        let mut client = chaos.connect();
        on_the_target(
            &mut client,
            "benchmark",
            run,
            0,
            Duration::from_secs(2),
            how,
        );
        assert_clean(&mut chaos, "stress_data");
    }
}

/// A worker with several connections to its target (stress.target_connections_per_worker) waits
/// on all of them at once: with each of its 3 connections in a 30-second statement there,
/// stress.cancel ends the run within a second, cancelled, and pg_terminate_backend of one worker
/// ends its run within a second, failed — every connection of the run gone from the target within
/// 2 s (their statements cancelled there).
#[test]
fn a_worker_with_several_connections_to_a_target_stops_them_all_within_a_second() {
    let Some(mut chaos) =
        Chaos::take("a_worker_with_several_connections_to_a_target_stops_them_all_within_a_second")
    else {
        return;
    };
    let on_target = format!(
        "{}; SET stress.target_connections_per_worker = 3",
        chaos.itself_as_target()
    );
    for (how, expected) in [
        ("stress.cancel", "cancelled"),
        ("pg_terminate_backend of a worker", "failed"),
    ] {
        let mut client = chaos.connect();
        client.batch_execute(&on_target).unwrap();
        let run = detached(&mut client, SLEEPY);
        // (2 workers, 6 connections there, each in its pg_sleep)
        on_the_target(&mut client, "load", run, 6, Duration::from_secs(20), how);
        let workers = workers_of(&mut client, run, 2, false);
        let asked = Instant::now();
        let sql = match how {
            "stress.cancel" => format!("SELECT stress.cancel({run})"),
            _ => format!("SELECT pg_terminate_backend({})", workers[0]),
        };
        client.batch_execute(&sql).unwrap();
        let (status, error, took) = closed(&mut chaos, run, asked);
        eprintln!("chaos: 3 connections per worker, {how}: run {run} {status} after {took:?}");
        assert_eq!(status, expected, "{how}: {error:?}");
        assert!(
            took < Duration::from_secs(1),
            "{how}: the run took {took:?} to stop"
        );
        let mut client = chaos.connect();
        on_the_target(&mut client, "load", run, 0, Duration::from_secs(2), how);
        assert_clean(&mut chaos, "stress_data");
    }
}

/// A SIGKILL of a load worker, of the run's sampler, or of the caller waiting in CALL: the
/// postmaster kills every backend and reinitializes (as after the OOM killer), and the run is
/// marked interrupted within seconds by the recovery worker, which starts again after that.
#[test]
fn a_sigkill_anywhere_leaves_the_run_interrupted_and_the_next_one_starting() {
    let Some(mut chaos) =
        Chaos::take("a_sigkill_anywhere_leaves_the_run_interrupted_and_the_next_one_starting")
    else {
        return;
    };
    for target in ["a load worker", "the sampler", "the waiting caller"] {
        let mut client = chaos.connect();
        let mut caller_thread = None;
        let run = if target == "the waiting caller" {
            let mut caller = chaos.connect();
            let pid: i32 = caller
                .query_one("SELECT pg_backend_pid()", &[])
                .unwrap()
                .get(0);
            caller_thread = Some((
                pid,
                std::thread::spawn(move || {
                    let _ = caller
                        .batch_execute("CALL stress.run_load_proc('60 seconds', workers => 3)");
                }),
            ));
            run_in_progress(&mut client)
        } else {
            detached(&mut client, "'60 seconds', workers => 3")
        };
        let workers = workers_of(&mut client, run, 3, true);
        // (a second in: the run has a sample, whose time its interrupted record ends at)
        std::thread::sleep(Duration::from_millis(1200));
        let pid = match target {
            "a load worker" => workers[1],
            "the sampler" => client
                .query_one(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_stress sampler'",
                    &[],
                )
                .unwrap()
                .get(0),
            _ => caller_thread.as_ref().unwrap().0,
        };
        drop(client);
        let killed = Instant::now();
        kill9(pid);
        let (status, error, took) = closed(&mut chaos, run, killed);
        eprintln!("chaos: SIGKILL of {target}: run {run} {status} after {took:?}");
        assert_eq!(status, "interrupted", "{target}: {error:?}");
        assert!(
            took < Duration::from_secs(10),
            "{target}: closed after {took:?}"
        );
        let mut client = chaos.connect();
        let (ops, ended): (i64, bool) = {
            let row = client
                .query_one(
                    "SELECT (SELECT count(*) FROM stress.samples WHERE run_id = $1),
                            finished_at > started_at FROM stress.runs WHERE id = $1",
                    &[&run],
                )
                .unwrap();
            (row.get(0), row.get(1))
        };
        assert!(ops > 0 && ended, "{target}: its samples and end are kept");
        // An interrupted run compares (it has no results: not enough data, never a verdict) and
        // fails the CI gate; its environment was recorded before the kill.
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM stress.compare_runs($1::bigint, $1::bigint) WHERE verdict <> 'not enough data'),
                        (SELECT environment ? 'settings' FROM stress.runs WHERE id = $1)",
                &[&run],
            )
            .unwrap();
        let (judged, recorded): (i64, Option<bool>) = (row.get(0), row.get(1));
        assert_eq!(
            judged, 0,
            "{target}: an interrupted run has figures to judge"
        );
        assert_eq!(recorded, Some(true), "{target}: no environment recorded");
        let gate = client
            .batch_execute(&format!(
                "SELECT stress.assert_targets({run}, baseline => {run})"
            ))
            .unwrap_err();
        assert!(
            gate.as_db_error()
                .is_some_and(|e| e.message().contains("the run is interrupted")),
            "{target}: {gate}"
        );
        if let Some((_, thread)) = caller_thread {
            thread.join().unwrap();
        }
        assert_clean(&mut chaos, "stress_data");
    }
}

/// A fast shutdown (pg_ctl stop -m fast) during two runs — one busy, one inside a 30-second
/// statement — stops both at once; each is recorded before the server goes, with what it measured.
#[test]
fn a_fast_shutdown_stops_runs_at_once_and_records_them() {
    let Some(mut chaos) = Chaos::take("a_fast_shutdown_stops_runs_at_once_and_records_them") else {
        return;
    };
    let mut client = chaos.connect();
    let busy = detached(&mut client, "'60 seconds', workers => 2");
    let sleepy = detached(&mut client, SLEEPY);
    workers_of(&mut client, busy, 2, true);
    workers_of(&mut client, sleepy, 2, false);
    std::thread::sleep(Duration::from_millis(500));
    drop(client);
    let took = chaos.restart("stop");
    eprintln!("chaos: a fast shutdown during two runs took {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "the fast shutdown took {took:?}"
    );
    let mut client = chaos.connect();
    for run in [busy, sleepy] {
        let (status, error) = crate::common::run_status(&mut client, run);
        assert_eq!(status, "failed", "run {run}");
        assert!(error.unwrap_or_default().contains("server shutdown"));
    }
    let calls: i64 = client
        .query_one(
            "SELECT calls FROM stress.results WHERE run_id = $1 AND name = 'total'",
            &[&busy],
        )
        .unwrap()
        .get(0);
    assert!(calls > 0, "the busy run's figures were kept");
    assert_clean(&mut chaos, "stress_data");
}

/// An immediate shutdown (a crash) during generate_dataset(workers => 2) leaves nothing of it;
/// right after it returned, every row it reported is there, checksums unchanged.
#[test]
fn a_crash_during_or_after_a_generation_leaves_all_or_nothing() {
    let Some(mut chaos) = Chaos::take("a_crash_during_or_after_a_generation_leaves_all_or_nothing")
    else {
        return;
    };
    let generate = "SET stress.data_schema = 'chaos_gen';
                    SELECT count(*) FROM stress.generate_dataset(orders => 300000, seed => 9, workers => 2)";
    let mut client = chaos.connect();
    client
        .batch_execute("CREATE SCHEMA IF NOT EXISTS chaos_gen")
        .unwrap();
    let mut generator = chaos.connect();
    let running = std::thread::spawn(move || generator.batch_execute(generate).is_ok());
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_stress generator'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the generators never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    drop(client);
    chaos.restart("crash");
    assert!(!running.join().unwrap(), "the generation survived a crash");
    let mut client = chaos.connect();
    for t in crate::common::DATASET_TABLES {
        let rows: i64 = client
            .query_one(
                &format!(
                    "SELECT CASE WHEN to_regclass('chaos_gen.{t}') IS NULL THEN 0
                            ELSE (xpath('/row/n/text()', query_to_xml('SELECT count(*) AS n FROM chaos_gen.{t}', false, true, '')))[1]::text::int8 END"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            rows, 0,
            "chaos_gen.{t}: rows of a generation that never committed"
        );
    }
    assert_intact(&mut client, "chaos_gen");
    // Right after it commits: all of it.
    client.batch_execute(generate).unwrap();
    let counts = |client: &mut Client| -> Vec<(String, i64)> {
        crate::common::DATASET_TABLES
            .iter()
            .map(|t| {
                let n: i64 = client
                    .query_one(&format!("SELECT count(*) FROM chaos_gen.{t}"), &[])
                    .unwrap()
                    .get(0);
                (t.to_string(), n)
            })
            .collect()
    };
    let sums = |client: &mut Client| -> Vec<String> {
        crate::common::DATASET_TABLES
            .iter()
            .map(|t| {
                client
                    .query_one(&format!("SELECT stress.checksum('chaos_gen.{t}')"), &[])
                    .unwrap()
                    .get(0)
            })
            .collect()
    };
    let (before, digests) = (counts(&mut client), sums(&mut client));
    assert!(before.iter().all(|(_, n)| *n > 0), "{before:?}");
    drop(client);
    chaos.restart("crash");
    let mut client = chaos.connect();
    assert_eq!(counts(&mut client), before);
    assert_eq!(sums(&mut client), digests);
    assert_intact(&mut client, "chaos_gen");
    client
        .batch_execute("DROP SCHEMA chaos_gen CASCADE")
        .unwrap();
    assert_clean(&mut chaos, "stress_data");
}

/// ALTER TABLE and DROP TABLE of tables a run writes, while it runs: the run goes on to its end,
/// counts the operations that failed with the error they met, and is recorded as completed.
#[test]
fn altering_and_dropping_a_table_a_run_writes_is_recorded_as_errors() {
    let Some(mut chaos) =
        Chaos::take("altering_and_dropping_a_table_a_run_writes_is_recorded_as_errors")
    else {
        return;
    };
    let mut client = chaos.connect();
    dataset_in(&mut client, "chaos_ddl", 5000, 3);
    let run = detached(&mut client, "'4 seconds', workers => 2");
    workers_of(&mut client, run, 2, true);
    client
        .batch_execute(
            "SET lock_timeout = '5s';
             ALTER TABLE chaos_ddl.orders ADD COLUMN note text;
             DROP TABLE chaos_ddl.trades CASCADE",
        )
        .unwrap();
    let (status, error, _) = closed(&mut chaos, run, Instant::now());
    assert_eq!(status, "completed", "{error:?}");
    let mut client = chaos.connect();
    let (errors, first): (i64, String) = {
        let row = client
            .query_one(
                "SELECT sum(errors)::int8, string_agg(details->>'first_error', ' | ')
                 FROM stress.results WHERE run_id = $1 AND name <> 'total'",
                &[&run],
            )
            .unwrap();
        (
            row.get(0),
            row.get::<_, Option<String>>(1).unwrap_or_default(),
        )
    };
    assert!(errors > 0, "no operation failed on a dropped table");
    assert!(first.contains("does not exist"), "{first}");
    assert_intact(&mut client, "chaos_ddl");
    client
        .batch_execute("DROP SCHEMA chaos_ddl CASCADE")
        .unwrap();
    assert_clean(&mut chaos, "stress_data");
}

/// DROP EXTENSION during a run: nothing can record the run any more, so it stops within a couple
/// of seconds (its sampler notices), leaving no process and no slot; CREATE EXTENSION again and
/// the next run starts.
#[test]
fn drop_extension_during_a_run_stops_it() {
    let Some(mut chaos) = Chaos::take("drop_extension_during_a_run_stops_it") else {
        return;
    };
    let mut client = chaos.connect();
    let run = detached(&mut client, "'60 seconds', workers => 2");
    workers_of(&mut client, run, 2, true);
    client
        .batch_execute("DROP EXTENSION pg_stress CASCADE")
        .unwrap();
    let dropped = Instant::now();
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE backend_type IN ('pg_stress load', 'pg_stress sampler')",
                &[],
            )
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            dropped.elapsed() < Duration::from_secs(5),
            "{left} processes of the run go on after DROP EXTENSION"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "chaos: DROP EXTENSION: the run stopped after {:?}",
        dropped.elapsed()
    );
    client.batch_execute("CREATE EXTENSION pg_stress").unwrap();
    assert_clean(&mut chaos, "stress_data");
}

/// The caller's statement_timeout ends a parallel checksum (its parallel workers with it); the
/// same checksum then completes. (A statement_timeout during a waiting CALL of a run:
/// caller::cancelling_or_terminating_the_waiting_call_ends_its_run.)
#[test]
fn statement_timeout_ends_a_parallel_checksum() {
    let Some(mut chaos) = Chaos::take("statement_timeout_ends_a_parallel_checksum") else {
        return;
    };
    let mut client = chaos.connect();
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS chaos_big; SET stress.data_schema = 'chaos_big';
             SELECT stress.generate_orders(1000000, seed => 4) WHERE to_regclass('chaos_big.orders') IS NULL",
        )
        .unwrap();
    client
        .batch_execute("VACUUM ANALYZE chaos_big.orders")
        .unwrap();
    let e = client
        .batch_execute("SET statement_timeout = '15ms'; SELECT stress.checksum('chaos_big.orders')")
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    client.batch_execute("RESET statement_timeout").unwrap();
    let parallel: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(parallel, 0);
    let digest: String = client
        .query_one("SELECT stress.checksum('chaos_big.orders')", &[])
        .unwrap()
        .get(0);
    assert!(digest.starts_with("1000000:"), "{digest}");
    assert_intact(&mut client, "chaos_big");
    assert_clean(&mut chaos, "stress_data");
}

/// Two generate_orders appending to one table at the same time: both succeed, one after the
/// other (the table's lock), with distinct ids that reference existing accounts.
#[test]
fn two_generators_append_to_one_table_at_once() {
    let Some(mut chaos) = Chaos::take("two_generators_append_to_one_table_at_once") else {
        return;
    };
    let mut client = chaos.connect();
    dataset_in(&mut client, "chaos_append", 3000, 5);
    let base: i64 = client
        .query_one("SELECT count(*) FROM chaos_append.orders", &[])
        .unwrap()
        .get(0);
    let appenders: Vec<_> = (0..2)
        .map(|i| {
            let mut c = chaos.connect();
            std::thread::spawn(move || -> i64 {
                c.query_one(
                    &format!(
                        "SELECT stress.generate_orders(50000, seed => {i}) FROM
                         (SELECT set_config('stress.data_schema', 'chaos_append', false)) s"
                    ),
                    &[],
                )
                .unwrap()
                .get(0)
            })
        })
        .collect();
    for a in appenders {
        assert_eq!(a.join().unwrap(), 50000);
    }
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT id), max(id),
                    count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM chaos_append.accounts a WHERE a.id = o.account_id))
             FROM chaos_append.orders o",
            &[],
        )
        .unwrap();
    let (n, distinct, max, orphans): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        (n, distinct, max, orphans),
        (base + 100000, base + 100000, base + 100000, 0)
    );
    assert_intact(&mut client, "chaos_append");
    client
        .batch_execute("DROP SCHEMA chaos_append CASCADE")
        .unwrap();
    assert_clean(&mut chaos, "stress_data");
}
