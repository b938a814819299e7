//! Load on another server (`stress.target`): the workers connect with libpq to a cluster of its
//! own that asks for passwords over TCP, run the built-in operations and custom transactions
//! there, prepared or not, with a connection per transaction or not, and record everything here.
//! Through Debian's PgBouncer in transaction and session pooling, with fewer server connections than
//! workers: the run's sampler reads its pools each second and sees the clients wait. And the trust
//! rules: the workers' grant, dblink's password rule, no file of the server named by a
//! non-superuser, and no password in stress.runs or either server's log.

use super::common::{env, fresh_database, pgcluster_with, value};
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::path::PathBuf;

const CLUSTER: &str = "it-target";
const PASSWORD: &str = "pw-it-target-7c1 'quoted'";
const USER: &str = "it_target_user";

/// The target: a cluster of its own listening on 127.0.0.1, where TCP connections authenticate
/// with scram-sha-256 (its Unix socket trusts, for the test's own administration), with the
/// trading dataset in database `it_target` owned by [`USER`]. Its TCP port, and an administrator
/// connection to that database.
fn target_cluster(cluster: &str) -> (u16, Client, PathBuf) {
    pgcluster_with("destroy", cluster, &[]);
    let config = pgcluster_with(
        "start",
        cluster,
        &[
            "listen_addresses = '127.0.0.1'",
            "password_encryption = 'scram-sha-256'",
        ],
    )
    .unwrap();
    let port = config.get_ports()[0];
    let mut admin = config.connect(NoTls).unwrap();
    // (pg_hba.conf written by the server itself, then reloaded: local trust, TCP by password)
    let hba_file = value::<String>(&mut admin, "SHOW hba_file");
    admin
        .batch_execute(&format!(
            "COPY (VALUES ('local all all trust'), ('host all all 127.0.0.1/32 scram-sha-256'))
                 TO '{}';
             SELECT pg_reload_conf();
             CREATE ROLE {USER} LOGIN PASSWORD '{}'",
            hba_file,
            PASSWORD.replace('\'', "''")
        ))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE it_target OWNER {USER}"))
        .unwrap();
    let mut target = config.clone().dbname("it_target").connect(NoTls).unwrap();
    target
        .batch_execute(&format!(
            "SET stress.progress_interval = 0;
             CREATE EXTENSION pg_stress;
             SELECT count(*) FROM stress.generate_dataset(orders => 5000, seed => 1);
             GRANT USAGE ON SCHEMA stress_data TO {USER};
             GRANT ALL ON ALL TABLES IN SCHEMA stress_data TO {USER}"
        ))
        .unwrap();
    target.batch_execute("VACUUM ANALYZE").unwrap();
    let host = match config.get_hosts()[0].clone() {
        postgres::config::Host::Unix(path) => path,
        other => panic!("{other:?}"),
    };
    (port, target, host.parent().unwrap().join("postgres.log"))
}

/// A connection string to the target over TCP, with the password (quoted as libpq reads it).
fn conninfo(port: u16, password: Option<&str>) -> String {
    let mut s = format!("host=127.0.0.1 port={port} dbname=it_target user={USER} sslmode=disable");
    if let Some(p) = password {
        s.push_str(&format!(
            " password='{}'",
            p.replace('\\', "\\\\").replace('\'', "\\'")
        ));
    }
    s
}

/// `SET stress.target` in `client`'s session (SET, not set_config: the setting is shown to
/// superusers only, and set_config shows what it set).
fn set_target(client: &mut Client, conninfo: &str) {
    client
        .batch_execute(&format!(
            "SET stress.target = '{}'",
            conninfo.replace('\'', "''")
        ))
        .unwrap();
}

fn stat(target: &mut Client, column: &str) -> i64 {
    target
        .batch_execute("SELECT pg_stat_force_next_flush(); SELECT pg_stat_clear_snapshot()")
        .unwrap();
    value(
        target,
        &format!("SELECT {column}::bigint FROM pg_stat_database WHERE datname = 'it_target'"),
    )
}

/// A run procedure's row: its id, status, operations and errors.
fn ran(row: &postgres::Row) -> (i64, String, i64, i64) {
    (
        row.get("run_id"),
        row.get("status"),
        row.get("operations"),
        row.get("errors"),
    )
}

/// The log of the server the tests drive from (scripts/test.sh's cluster).
fn driver_log() -> PathBuf {
    PathBuf::from(env("PGHOST"))
        .parent()
        .unwrap()
        .join("postgres.log")
}

/// `secret` is in none of `logs`.
fn assert_not_logged(secret: &str, logs: &[&PathBuf]) {
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(!text.contains(secret), "a password in {}", log.display());
    }
}

#[test]
fn a_run_on_a_target_runs_there_and_is_recorded_here() {
    let (port, mut target, target_log) = target_cluster(CLUSTER);
    // The driver's database has no trading dataset: every operation must run on the target.
    let mut driver = fresh_database("it_target_driver");
    set_target(&mut driver, &conninfo(port, Some(PASSWORD)));
    let orders_before: i64 = value(&mut target, "SELECT count(*) FROM stress_data.orders");
    let commits_before = stat(&mut target, "xact_commit");
    let row = driver
        .query_one("CALL stress.run_load_proc('2 seconds', workers => 2)", &[])
        .unwrap();
    let (run, status, operations, errors) = ran(&row);
    assert_eq!(status, "completed");
    assert!(
        operations > 100 && errors == 0,
        "{operations} operations, {errors} errors"
    );
    // what the run counted, the target saw: each successful place_order is a new order there
    let placed: i64 = value(
        &mut driver,
        &format!(
            "SELECT (details->>'successes')::bigint FROM stress.results
             WHERE run_id = {run} AND name = 'place_order'"
        ),
    );
    let orders_after: i64 = value(&mut target, "SELECT count(*) FROM stress_data.orders");
    assert!(placed > 0);
    assert_eq!(orders_after - orders_before, placed);
    // and each operation is at least one commit there (reads commit too, without an xid)
    let commits = stat(&mut target, "xact_commit") - commits_before;
    assert!(
        commits >= operations && commits < operations + 200,
        "{commits} commits on the target for {operations} operations"
    );
    let (conn, parameters): (String, String) = {
        let r = driver
            .query_one(
                "SELECT parameters->'target'->>'conninfo', parameters::text FROM stress.runs WHERE id = $1",
                &[&run],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(conn.contains(&format!("port='{port}'")), "{conn}");
    assert!(!parameters.contains("pw-it-target"), "{parameters}");
    assert!(
        parameters.contains("\"protocol\": \"prepared\""),
        "{parameters}"
    );

    // Custom transactions, unnamed statements, a new connection for each: the target counts one
    // session per transaction.
    driver
        .batch_execute(
            "SET stress.target_protocol = extended; SET stress.target_connect_per_transaction = on",
        )
        .unwrap();
    let sessions_before = stat(&mut target, "sessions");
    let row = driver
        .query_one(
            "CALL stress.run_load_proc('1 second', workers => 2, transactions => '[
                {\"name\": \"lookup\", \"sql\": \"SELECT balance FROM stress_data.accounts WHERE id = $1\",
                 \"params\": [{\"distribution\": \"uniform\", \"min\": 1, \"max\": 100}]},
                {\"name\": \"touch\", \"sql\": [\"UPDATE stress_data.accounts SET balance = balance WHERE id = $1\",
                                              \"SELECT $1 + 1\"],
                 \"params\": [{\"distribution\": \"uniform\", \"min\": 1, \"max\": 100}]}]')",
            &[],
        )
        .unwrap();
    let (operations, errors): (i64, i64) = (row.get("operations"), row.get("errors"));
    assert!(
        operations > 10 && errors == 0,
        "{operations} operations, {errors} errors"
    );
    let sessions = stat(&mut target, "sessions") - sessions_before;
    // (each worker's first connection too, and the caller's probe)
    assert!(
        sessions >= operations && sessions <= operations + 10,
        "{sessions} sessions on the target for {operations} transactions"
    );

    // A concurrent benchmark of the target: its queries run there (this database has no
    // stress_data), one a typo there, and the target counts the executions as its commits.
    driver
        .batch_execute("RESET stress.target_protocol; RESET stress.target_connect_per_transaction")
        .unwrap();
    let commits_before = stat(&mut target, "xact_commit");
    let row = driver
        .query_one(
            "CALL stress.benchmark_proc(ARRAY['SELECT count(*) FROM stress_data.accounts WHERE id <= 10',
                                              'SELECT * FROM stress_data.no_such_table'],
                                        iterations => 300, warmup => 5, concurrency => 2)",
            &[],
        )
        .unwrap();
    let run: i64 = row.get("run_id");
    let rows = driver
        .query(
            "SELECT query, calls, errors, p50_ms, p99_ms, qps, error FROM stress.benchmark_results($1)",
            &[&run],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    let (calls, errors, p50, p99, qps): (i64, i64, f64, f64, f64) = (
        rows[0].get(1),
        rows[0].get(2),
        rows[0].get(3),
        rows[0].get(4),
        rows[0].get(5),
    );
    assert_eq!(
        (calls, errors),
        (300, 0),
        "{:?}",
        rows[0].get::<_, Option<String>>(6)
    );
    assert!(0.0 < p50 && p50 <= p99 && qps > 0.0, "{p50} {p99} {qps}");
    let typo: String = rows[1].get(6);
    assert!(
        typo.contains("on the target") && typo.contains("no_such_table"),
        "{typo}"
    );
    // (300 measured and 2 × 5 warm-up executions, each its own transaction; the workers' and the
    // probe's set-up a few more)
    let commits = stat(&mut target, "xact_commit") - commits_before;
    assert!(
        (310..330).contains(&commits),
        "{commits} commits on the target for 310 executions"
    );
    let parameters: String = value(
        &mut driver,
        &format!("SELECT parameters->'target'->>'conninfo' FROM stress.runs WHERE id = {run}"),
    );
    assert!(
        parameters.contains(&format!("port='{port}'")),
        "{parameters}"
    );
    // With rollback, unprepared: each execution is BEGIN … ROLLBACK there; nothing stays.
    let balance = "SELECT balance::text FROM stress_data.accounts WHERE id = 1";
    let (balance_before, rollbacks_before): (String, i64) = (
        value(&mut target, balance),
        stat(&mut target, "xact_rollback"),
    );
    let row = driver
        .query_one(
            "CALL stress.benchmark_proc(ARRAY['UPDATE stress_data.accounts SET balance = balance + 1 WHERE id = 1'],
                                        iterations => 100, warmup => 0, concurrency => 1,
                                        prepared => false, rollback => true)",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>("calls"), row.get::<_, i64>("errors")),
        (100, 0)
    );
    assert_eq!(value::<String>(&mut target, balance), balance_before);
    let rollbacks = stat(&mut target, "xact_rollback") - rollbacks_before;
    assert!(
        (100..110).contains(&rollbacks),
        "{rollbacks} rollbacks on the target for 100 executions"
    );
    // A SELECT cannot wait for the workers without holding its snapshot: the procedure, it says.
    let e = driver
        .batch_execute("SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 10)")
        .unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(db.code(), &SqlState::FEATURE_NOT_SUPPORTED, "{db}");
    assert!(
        db.hint()
            .is_some_and(|h| h.contains("CALL stress.benchmark_proc")),
        "{db:?}"
    );

    // Several connections per worker, as pgbench -c 8 -j 2: the 2 workers each keep 4
    // connections busy there, each client with its own ids (no two place the same order) and its
    // own transactions.
    let driver = several_connections_per_worker(driver, &mut target);

    // No password reached either server's log.
    drop(driver);
    assert_not_logged("pw-it-target", &[&driver_log(), &target_log]);
    drop(target);
    pgcluster_with("destroy", CLUSTER, &[]);
}

/// `stress.target_connections_per_worker = 4` with 2 workers: 8 connections on the target, named
/// by worker and client, all in use at once; every placed order there; the parameters say so. A
/// benchmark with 3 per worker runs exactly its iterations, each client warming up.
fn several_connections_per_worker(mut driver: Client, target: &mut Client) -> Client {
    driver
        .batch_execute("SET stress.target_connections_per_worker = 4")
        .unwrap();
    let orders_before: i64 = value(target, "SELECT count(*) FROM stress_data.orders");
    let sessions_before = stat(target, "sessions");
    let running = std::thread::spawn(move || {
        let row = driver
            .query_one(
                "CALL stress.run_load_proc('3 seconds', workers => 2,
                                           mix => '{\"place_order\": 3, \"balance_update\": 1, \"transfer\": 1}')",
                &[],
            )
            .unwrap();
        (driver, ran(&row))
    });
    // (the most connections of the run seen there at once, and their names)
    let mut seen: Vec<String> = Vec::new();
    while !running.is_finished() {
        let names: Vec<String> = target
            .query(
                "SELECT application_name FROM pg_stat_activity
                 WHERE application_name LIKE 'pg_stress load run % worker %' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if names.len() > seen.len() {
            seen = names;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (mut driver, (run, status, operations, errors)) = running.join().unwrap();
    assert_eq!(status, "completed");
    assert!(
        operations > 100 && errors == 0,
        "{operations} operations, {errors} errors"
    );
    assert_eq!(seen.len(), 8, "{seen:?}");
    for worker in 1..=2 {
        for client in 1..=4 {
            let name = format!("pg_stress load run {run} worker {worker}/2 client {client}/4");
            assert!(seen.contains(&name), "{name} not in {seen:?}");
        }
    }
    // (the caller's probe too; the connections' backends flush their count as they exit)
    let flushed = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut sessions = stat(target, "sessions") - sessions_before;
    while sessions < 9 && std::time::Instant::now() < flushed {
        std::thread::sleep(std::time::Duration::from_millis(100));
        sessions = stat(target, "sessions") - sessions_before;
    }
    assert_eq!(sessions, 9, "{sessions} sessions on the target");
    let placed: i64 = value(
        &mut driver,
        &format!(
            "SELECT (details->>'successes')::bigint FROM stress.results
             WHERE run_id = {run} AND name = 'place_order'"
        ),
    );
    let orders_after: i64 = value(target, "SELECT count(*) FROM stress_data.orders");
    assert!(placed > 0);
    assert_eq!(orders_after - orders_before, placed);
    let per_worker: i32 = value(
        &mut driver,
        &format!(
            "SELECT (parameters->'target'->>'connections_per_worker')::int FROM stress.runs WHERE id = {run}"
        ),
    );
    assert_eq!(per_worker, 4);
    // (busy over connected, each connection's: a closed run keeps them nearly all busy)
    let efficiency: f64 = value(
        &mut driver,
        &format!(
            "SELECT (details->>'connection_efficiency')::float8 FROM stress.results
             WHERE run_id = {run} AND name = 'total'"
        ),
    );
    assert!(
        (0.5..=1.0).contains(&efficiency),
        "connection efficiency {efficiency}"
    );

    // The open model over several connections: 300 arrivals a second shared by the one worker's 4
    // connections, each its own Poisson stream, all of them served (each lookup takes far less
    // than its connection's share of a second).
    let row = driver
        .query_one(
            "CALL stress.run_load_proc('2 seconds', workers => 1, rate => 300,
                                       transactions => '[{\"name\": \"lookup\",
                 \"sql\": \"SELECT balance FROM stress_data.accounts WHERE id = $1\",
                 \"params\": [{\"distribution\": \"uniform\", \"min\": 1, \"max\": 100}]}]')",
            &[],
        )
        .unwrap();
    let (run, status, operations, errors) = ran(&row);
    assert_eq!((status.as_str(), errors), ("completed", 0));
    assert!(
        (450..=750).contains(&operations),
        "{operations} operations at 300/s for 2 s"
    );
    let (arrivals, share): (i64, f64) = {
        let r = driver
            .query_one(
                "SELECT (details->>'arrivals')::bigint, (details->>'achieved_share')::float8
                 FROM stress.results WHERE run_id = $1 AND name = 'total'",
                &[&run],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(
        arrivals > 0 && share > 0.95,
        "{arrivals} arrivals, {share} served"
    );

    driver
        .batch_execute("SET stress.target_connections_per_worker = 3")
        .unwrap();
    let commits_before = stat(target, "xact_commit");
    let row = driver
        .query_one(
            "CALL stress.benchmark_proc(ARRAY['SELECT count(*) FROM stress_data.accounts WHERE id <= 10'],
                                        iterations => 300, warmup => 5, concurrency => 2)",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>("calls"), row.get::<_, i64>("errors")),
        (300, 0)
    );
    // (300 measured, and 5 warm-up executions on each of the 6 connections; each connection's
    // set-up commits about 3 more — its start, its statement_timeout, its prepare — and the probe's
    // and this test's own reads a few: 353 seen)
    let commits = stat(target, "xact_commit") - commits_before;
    assert!(
        (330..370).contains(&commits),
        "{commits} commits on the target for 330 executions"
    );
    driver
        .batch_execute("RESET stress.target_connections_per_worker")
        .unwrap();
    // Without a target the setting has nothing to do, and the run says so.
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&notices);
    let mut here = super::common::config("it_target_driver")
        .notice_callback(move |n| sink.lock().unwrap().push(n.message().to_owned()))
        .connect(NoTls)
        .unwrap();
    here.batch_execute("SET stress.target_connections_per_worker = 4")
        .unwrap();
    here.batch_execute(
        "CALL stress.run_load_proc('1 second', workers => 1,
                                   transactions => '[{\"name\": \"one\", \"sql\": \"SELECT 1\"}]')",
    )
    .unwrap();
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|m| m
                .contains("stress.target_connections_per_worker = 4 is for runs on stress.target")),
        "{notices:?}"
    );
    driver
}

/// The target's side of the timeline: with stress.target_monitor naming the target itself (a role
/// in pg_monitor there), each second of the run records what the run's connections wait on there,
/// and the target's commits and WAL — checked against the target's own pg_stat_database.
#[test]
fn a_monitored_target_records_its_side_of_the_timeline() {
    const MONITOR_PASSWORD: &str = "pw-it-monitor-51e";
    let (port, mut target, target_log) = target_cluster("it-target-monitor");
    target
        .batch_execute(&format!(
            "CREATE ROLE it_target_monitor LOGIN PASSWORD '{MONITOR_PASSWORD}' IN ROLE pg_monitor"
        ))
        .unwrap();
    let mut driver = fresh_database("it_target_monitored");
    set_target(&mut driver, &conninfo(port, Some(PASSWORD)));
    driver
        .batch_execute(&format!(
            "SET stress.target_monitor = 'host=127.0.0.1 port={port} dbname=it_target
                 user=it_target_monitor password={MONITOR_PASSWORD} sslmode=disable'"
        ))
        .unwrap();
    let commits_before = stat(&mut target, "xact_commit");
    // (three workers taking turns on one row: at any moment two of them wait for its lock)
    let row = driver
        .query_one(
            "CALL stress.run_load_proc('3 seconds', workers => 3, transactions => '[
                {\"name\": \"hot_row\", \"sql\": [\"UPDATE stress_data.accounts SET balance = balance WHERE id = 1\",
                                                \"SELECT pg_sleep(0.05)\"]}]')",
            &[],
        )
        .unwrap();
    let (run, status, operations, errors) = ran(&row);
    assert_eq!(status, "completed");
    assert!(
        operations > 10 && errors == 0,
        "{operations} operations, {errors} errors"
    );
    let observed = stat(&mut target, "xact_commit") - commits_before;
    let rows = driver
        .query(
            "SELECT xact_commit, wal_bytes, lock_waits, connections, wait_events::text
             FROM stress.target_timeline WHERE run_id = $1 ORDER BY ts",
            &[&run],
        )
        .unwrap();
    assert!(
        rows.len() >= 2,
        "{} rows of the target's timeline",
        rows.len()
    );
    let commits: i64 = rows.iter().map(|r| r.get::<_, i64>(0)).sum();
    let wal: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
    // the seconds recorded are the run's (its first read starts them, its last partial second
    // is not one): fewer commits than the target counted in all, most of the run's
    assert!(
        commits <= observed && commits * 2 >= operations,
        "{commits} commits in the target's timeline, {observed} on the target, {operations} operations"
    );
    assert!(wal > 0, "no WAL in the target's timeline");
    let waited = rows
        .iter()
        .any(|r| r.get::<_, i32>(2) >= 1 && r.get::<_, String>(4).contains("Lock:transactionid"));
    let seen: Vec<String> = rows.iter().map(|r| r.get::<_, String>(4)).collect();
    assert!(waited, "no lock wait seen on the target: {seen:?}");
    assert!(rows.iter().all(|r| r.get::<_, i32>(3) >= 3), "{seen:?}");
    let reported: serde_json::Value = serde_json::from_str(&value::<String>(
        &mut driver,
        &format!("SELECT (stress.report({run})->'target_server')::text"),
    ))
    .unwrap();
    eprintln!("run {run}: target_server = {reported}");
    assert_eq!(reported["samples"].as_i64(), Some(rows.len() as i64));
    assert!(reported["max_lock_waits"].as_i64() >= Some(1), "{reported}");
    assert!(
        reported["wait_events"]["Lock:transactionid"].as_i64() >= Some(1),
        "{reported}"
    );
    // (the monitor's password is the caller's secret too)
    let parameters: String = value(
        &mut driver,
        &format!("SELECT parameters::text FROM stress.runs WHERE id = {run}"),
    );
    assert!(!parameters.contains(MONITOR_PASSWORD), "{parameters}");
    assert_not_logged(MONITOR_PASSWORD, &[&driver_log(), &target_log]);

    // A monitor that never answers costs the run its own reads only: the run ends on time, each
    // second still sampled here, no target row.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    driver
        .batch_execute(&format!(
            "SET stress.target_monitor = 'host=127.0.0.1 port={} password=x sslmode=disable'",
            silent.local_addr().unwrap().port()
        ))
        .unwrap();
    let asked = std::time::Instant::now();
    let row = driver
        .query_one(
            "CALL stress.run_load_proc('2 seconds', workers => 2, transactions => '[
                {\"name\": \"one\", \"sql\": \"SELECT 1\"}]')",
            &[],
        )
        .unwrap();
    let (run, status, operations, _) = ran(&row);
    assert_eq!(status, "completed");
    assert!(operations > 10, "{operations} operations");
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(8),
        "a silent monitor held the run {:?}",
        asked.elapsed()
    );
    let counted: (i64, i64) = {
        let r = driver
            .query_one(
                "SELECT (SELECT count(*) FROM stress.samples WHERE run_id = $1),
                        (SELECT count(*) FROM stress.target_timeline WHERE run_id = $1)",
                &[&run],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(counted.0 >= 1 && counted.1 == 0, "{counted:?}");
    drop(silent);
    drop(target);
    pgcluster_with("destroy", "it-target-monitor", &[]);
}

/// `sslmode`: a target that takes TLS connections only (hostssl) gets them from every worker
/// with `sslmode=require`, and refuses the same run without TLS, naming why.
#[test]
fn a_target_that_asks_for_tls_gets_it() {
    const TLS_CLUSTER: &str = "it-target-tls";
    let (port, mut target, _) = target_cluster(TLS_CLUSTER);
    if value::<String>(&mut target, "SHOW ssl_library").is_empty() {
        // (to the terminal itself: the test harness keeps what a passing test prints with eprintln)
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED a_target_that_asks_for_tls_gets_it: this PostgreSQL is built without OpenSSL"
        );
        pgcluster_with("destroy", TLS_CLUSTER, &[]);
        return;
    }
    // A self-signed certificate in the data directory, the key readable by the server's user
    // only (as the server requires; as root, the clusters' user is postgres).
    let data = PathBuf::from(value::<String>(&mut target, "SHOW data_directory"));
    let (crt, key) = (data.join("server.crt"), data.join("server.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    if uid() == 0 {
        let owned = std::process::Command::new("chown")
            .arg("postgres:postgres")
            .args([&crt, &key])
            .status()
            .unwrap();
        assert!(owned.success());
    }
    let hba: String = value(&mut target, "SHOW hba_file");
    target.batch_execute("ALTER SYSTEM SET ssl = on").unwrap();
    target
        .batch_execute(&format!(
            "COPY (VALUES ('local all all trust'), ('hostssl all all 127.0.0.1/32 scram-sha-256'))
                 TO '{hba}';
             SELECT pg_reload_conf()"
        ))
        .unwrap();
    // (the postmaster reloads, then tells the backends: this session sees it once it has)
    let mut tls_on = false;
    for _ in 0..50 {
        if value::<String>(&mut target, "SHOW ssl") == "on" {
            tls_on = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(tls_on, "the target did not turn TLS on");
    let mut driver = fresh_database("it_target_tls_driver");
    let call = "CALL stress.run_load_proc('1 second', workers => 2, transactions => '[
        {\"name\": \"lookup\", \"sql\": \"SELECT balance FROM stress_data.accounts WHERE id = $1\",
         \"params\": [{\"distribution\": \"uniform\", \"min\": 1, \"max\": 100}]}]')";
    // without TLS: refused before any worker starts, in libpq's words
    set_target(&mut driver, &conninfo(port, Some(PASSWORD)));
    let e = driver.batch_execute(call).unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(
        db.code(),
        &SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
    );
    assert!(db.message().contains("no encryption"), "{}", db.message());
    // with it: every worker's connection is a TLS one (the target takes no other)
    set_target(
        &mut driver,
        &conninfo(port, Some(PASSWORD)).replace("sslmode=disable", "sslmode=require"),
    );
    let row = driver.query_one(call, &[]).unwrap();
    let (run, status, operations, errors) = ran(&row);
    assert_eq!(status, "completed");
    assert!(
        operations > 10 && errors == 0,
        "{operations} operations, {errors} errors"
    );
    let conn: String = value(
        &mut driver,
        &format!("SELECT parameters->'target'->>'conninfo' FROM stress.runs WHERE id = {run}"),
    );
    assert!(conn.contains("sslmode='require'"), "{conn}");
    drop(target);
    pgcluster_with("destroy", TLS_CLUSTER, &[]);
}

/// The trust rules, as a role with the workers' grant but no superuser.
#[test]
fn reaching_a_target_needs_the_grant_a_password_and_no_server_files() {
    const ROLE: &str = "it_target_caller";
    // (no cluster of its own is needed to be refused: the checks come before any connection)
    let mut admin = fresh_database("it_target_rules");
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {ROLE}; CREATE ROLE {ROLE} LOGIN;
             GRANT USAGE ON SCHEMA stress TO {ROLE}"
        ))
        .unwrap();
    let mut caller = super::common::config("it_target_rules")
        .user(ROLE)
        .connect(NoTls)
        .unwrap();
    let call = "CALL stress.run_load_proc('1 second', transactions => '[{\"name\": \"one\", \"sql\": \"SELECT 1\"}]')";
    // (a concurrent benchmark of the target is refused for the same reasons, with the same codes)
    let benchmark = "CALL stress.benchmark_proc(ARRAY['SELECT 1'], iterations => 10)";
    let refused_for = |caller: &mut Client, sql: &str, conninfo: &str| -> (SqlState, String) {
        set_target(caller, conninfo);
        let e = caller.batch_execute(sql).unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        (db.code().clone(), db.message().to_owned())
    };
    let refused = |caller: &mut Client, conninfo: &str| -> (SqlState, String) {
        let (code, message) = refused_for(caller, call, conninfo);
        let (benchmark_code, benchmark_message) = refused_for(caller, benchmark, conninfo);
        assert_eq!(
            benchmark_code, code,
            "benchmark_proc: {benchmark_message}; run_load_proc: {message}"
        );
        (code, message)
    };
    let here = format!(
        "host={} port={} dbname=it_target_rules user={ROLE}",
        env("PGHOST"),
        env("PGPORT")
    );
    // without the workers' grant
    assert_eq!(
        refused(&mut caller, &format!("{here} password=x")).0,
        SqlState::INSUFFICIENT_PRIVILEGE
    );
    admin
        .batch_execute(&format!(
            "GRANT EXECUTE ON FUNCTION stress.run_load TO {ROLE};
             GRANT EXECUTE ON PROCEDURE stress.run_load_proc TO {ROLE}"
        ))
        .unwrap();
    // no password: this server's own trust is not the caller's
    assert_eq!(refused(&mut caller, &here).0, SqlState::from_code("2F003"));
    // a password the target never asks for (its socket trusts): refused once connected
    let (code, message) = refused(&mut caller, &format!("{here} password=never-asked-9f2"));
    assert_eq!(code, SqlState::from_code("2F003"), "{message}");
    // files of the database server
    for keyword in ["passfile", "sslkey", "service"] {
        let (code, message) = refused(
            &mut caller,
            &format!("{here} password=x {keyword}=/etc/passwd"),
        );
        assert_eq!(
            code,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{keyword}: {message}"
        );
    }
    // the monitoring connection (a PgBouncer console) follows the same rules, before any connection
    for (monitor, expected) in [
        ("dbname=pgbouncer", SqlState::from_code("2F003")),
        (
            "dbname=pgbouncer password=x sslcert=/etc/passwd",
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
    ] {
        caller
            .batch_execute(&format!("SET stress.target_monitor = '{here} {monitor}'"))
            .unwrap();
        let (code, message) = refused(&mut caller, &format!("{here} password=x"));
        assert_eq!(code, expected, "{monitor}: {message}");
    }
    caller.batch_execute("RESET stress.target_monitor").unwrap();
    // connections per worker: 1 to 64 (each one of the worker's file descriptors), a number
    for bad in ["0", "-1", "65", "'all'", "'1e9'"] {
        let e = caller
            .batch_execute(&format!("SET stress.target_connections_per_worker = {bad}"))
            .unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{bad}: {e}"));
        assert_eq!(db.code(), &SqlState::INVALID_PARAMETER_VALUE, "{bad}: {db}");
    }
    // unreadable strings, unreachable and garbage servers
    assert_eq!(
        refused(&mut caller, "host='unterminated").0,
        SqlState::INVALID_PARAMETER_VALUE
    );
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = free.local_addr().unwrap().port();
    drop(free);
    assert_eq!(
        refused(
            &mut caller,
            &format!("host=127.0.0.1 port={closed} password=x")
        )
        .0,
        SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
    );
    // a target that never answers: the caller's statement_timeout ends the wait (57014), at once
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    caller
        .batch_execute("SET statement_timeout = '500ms'")
        .unwrap();
    let asked = std::time::Instant::now();
    let (code, message) = refused(
        &mut caller,
        &format!("host=127.0.0.1 port={port} password=x sslmode=disable"),
    );
    assert_eq!(code, SqlState::QUERY_CANCELED, "{message}");
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(3),
        "a silent target held the call {:?}",
        asked.elapsed()
    );
    caller.batch_execute("RESET statement_timeout").unwrap();
    drop(silent);
    // a server that answers with something else than PostgreSQL's protocol
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = garbage.local_addr().unwrap().port();
    let answering = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut client, _)) = garbage.accept() {
            let mut buffer = [0u8; 512];
            let _ = client.read(&mut buffer);
            let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n<html>nope</html>");
        }
    });
    let (code, message) = refused(
        &mut caller,
        &format!("host=127.0.0.1 port={port} password=x sslmode=disable"),
    );
    assert_eq!(
        code,
        SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        "{message}"
    );
    answering.join().unwrap();
    // nothing was recorded as a run, and the password reached no record
    let runs: i64 = value(&mut admin, "SELECT count(*) FROM stress.runs");
    assert_eq!(runs, 0);
    // a superuser may use the server's own authentication (the test cluster trusts its socket)
    let mut superuser = super::common::connect("it_target_rules");
    set_target(
        &mut superuser,
        &format!(
            "host={} port={} dbname=it_target_rules user={}",
            env("PGHOST"),
            env("PGPORT"),
            env("PGUSER")
        ),
    );
    let row = superuser.query_one(call, &[]).unwrap();
    assert_eq!(row.get::<_, String>("status"), "completed");
    assert!(row.get::<_, i64>("operations") > 10);
    drop(caller);
    admin
        .batch_execute(&format!("DROP OWNED BY {ROLE}"))
        .unwrap();
}

/// A PgBouncer of its own (Debian's, installed by make setup) in front of the target on
/// `target_port`: `pool_mode`, `pool_size` server connections, on a free port of 127.0.0.1, its
/// clients authenticated by scram-sha-256 from an auth file with [`USER`]'s password (who may also
/// read the admin console: stats_users). Stopped when dropped.
struct Bouncer {
    child: std::process::Child,
    port: u16,
    pidfile: PathBuf,
}

impl Drop for Bouncer {
    /// Stop PgBouncer itself (as root, the child is runuser, whose death would leave it running).
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", pid.trim()])
                .status();
        }
        // (runuser reaps PgBouncer and exits: killed first, it would leave a zombie)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgbouncer(pool_mode: &str, target_port: u16, pool_size: u32) -> Bouncer {
    let root = std::process::Command::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pgcluster.sh"),
    )
    .arg("root")
    .output()
    .unwrap();
    let dir = PathBuf::from(String::from_utf8(root.stdout).unwrap().trim())
        .join(format!("pgbouncer-{pool_mode}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    std::fs::write(
        dir.join("userlist.txt"),
        format!("\"{USER}\" \"{}\"\n", PASSWORD.replace('"', "\"\"")),
    )
    .unwrap();
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]
it_target = host=127.0.0.1 port={target_port} dbname=it_target
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {dir}/userlist.txt
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 100
stats_users = {USER}
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
",
            dir = dir.display()
        ),
    )
    .unwrap();
    let ini = dir.join("pgbouncer.ini");
    // (PgBouncer will not run as root: as root, it runs as the postgres user, as the clusters do)
    let root_user = uid() == 0;
    let child = if root_user {
        std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", "/usr/sbin/pgbouncer"])
            .arg(&ini)
            .spawn()
    } else {
        std::process::Command::new("/usr/sbin/pgbouncer")
            .arg(&ini)
            .spawn()
    }
    .expect("starting pgbouncer (make setup installs it)");
    let bouncer = Bouncer {
        child,
        port,
        pidfile: dir.join("pgbouncer.pid"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "pgbouncer did not start: {}",
            std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    bouncer
}

/// This process's user id (`id -u`).
fn uid() -> u32 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Four workers through a pool of two server connections, in transaction pooling (unnamed
/// statements, as PgBouncer 1.18 carries them) and in session pooling (a connection per
/// transaction, pgbench -C): clients wait, the sampler sees them wait each second, and the
/// report and health_alerts say the pool ran out.
#[test]
fn a_run_through_pgbouncer_sees_its_pool_run_out() {
    const POOL_CLUSTER: &str = "it-target-pool";
    let (port, target, _) = target_cluster(POOL_CLUSTER);
    drop(target);
    let mut driver = fresh_database("it_target_pool");
    for (mode, settings) in [
        ("transaction", "SET stress.target_protocol = extended"),
        (
            "session",
            "SET stress.target_protocol = prepared; SET stress.target_connect_per_transaction = on",
        ),
        // (8 clients from the 4 workers: a worker whose other connection waits for the pool
        // still runs on the one it has — they take turns, none is stuck)
        (
            "session",
            "SET stress.target_connect_per_transaction = on;
             SET stress.target_connections_per_worker = 2",
        ),
    ] {
        let bouncer = pgbouncer(mode, port, 2);
        let through = format!(
            "host=127.0.0.1 port={} user={USER} sslmode=disable password='{}'",
            bouncer.port,
            PASSWORD.replace('\\', "\\\\").replace('\'', "\\'")
        );
        set_target(&mut driver, &format!("{through} dbname=it_target"));
        driver
            .batch_execute(&format!(
                "SET stress.target_monitor = '{}'; {settings}",
                format!("{through} dbname=pgbouncer").replace('\'', "''")
            ))
            .unwrap();
        // (each transaction holds its server connection 100 ms: long beside a client's set-up,
        // SCRAM included, so that a busy machine still has clients waiting in each second)
        let row = driver
            .query_one(
                "CALL stress.run_load_proc('3 seconds', workers => 4, transactions => '[
                    {\"name\": \"hold\", \"sql\": \"SELECT pg_sleep(0.1)\"}]')",
                &[],
            )
            .unwrap();
        let (run, status, operations, errors) = ran(&row);
        assert_eq!(status, "completed", "{mode}");
        assert!(
            operations > 20 && errors == 0,
            "{mode}: {operations} operations, {errors} errors"
        );
        // the pool, each second: at most 2 server connections, clients waiting for them
        let pools = driver
            .query_one(
                "SELECT count(DISTINCT ts), max(cl_waiting), max(sv_active), max(maxwait_ms),
                        string_agg(DISTINCT pool_mode, ',')
                 FROM stress.pool_samples WHERE run_id = $1 AND database = 'it_target'",
                &[&run],
            )
            .unwrap();
        let (seconds, waiting, servers, maxwait, modes): (i64, i32, i32, f64, String) = (
            pools.get(0),
            pools.get(1),
            pools.get(2),
            pools.get(3),
            pools.get(4),
        );
        assert!(seconds >= 2, "{mode}: {seconds} seconds of pool samples");
        assert!(waiting > 0, "{mode}: no client seen waiting");
        assert!(
            servers <= 2 && servers > 0,
            "{mode}: {servers} server connections"
        );
        assert!(maxwait >= 0.0);
        assert_eq!(modes, mode);
        // the report's pool statistics, and the seed's alert
        let report: serde_json::Value = driver
            .query_one("SELECT stress.report($1)::text", &[&run])
            .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
            .unwrap();
        let pool = &report["connection_pool"];
        // (shown with --nocapture: a report of a run whose pool ran out)
        eprintln!("{mode} pooling, run {run}: connection_pool = {pool}");
        assert_eq!(pool["exhausted"], serde_json::json!(true), "{mode}: {pool}");
        let efficiency = pool["efficiency"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&efficiency), "{mode}: {pool}");
        assert!(pool["max_waiting"].as_i64().unwrap() > 0, "{mode}: {pool}");
        let alert = driver
            .query_one(
                "SELECT firing, detail FROM stress.health_alerts()
                 WHERE alert = 'connection_pool_exhausted'",
                &[],
            )
            .unwrap();
        assert!(alert.get::<_, bool>(0), "{mode}");
        assert!(
            alert
                .get::<_, String>(1)
                .contains("connection pool exhausted, increase pool size"),
            "{mode}"
        );
        // report_html draws clients waiting against server connections
        let page: String = value(&mut driver, &format!("SELECT stress.report_html({run})"));
        assert!(
            page.contains(r#"<svg id="connection-pool""#)
                && page.contains(r#"data-series="clients waiting""#),
            "{mode}: no pool chart"
        );
        // no password in what the run recorded
        let parameters: String = value(
            &mut driver,
            &format!("SELECT parameters::text FROM stress.runs WHERE id = {run}"),
        );
        assert!(!parameters.contains("pw-it-target"), "{parameters}");
        assert!(parameters.contains("dbname='pgbouncer'"), "{parameters}");
        drop(bouncer);
        driver
            .batch_execute(
                "RESET stress.target_connect_per_transaction;
                 RESET stress.target_connections_per_worker",
            )
            .unwrap();
    }
    pgcluster_with("destroy", POOL_CLUSTER, &[]);
}

/// Several drivers, one target: two servers with pg_stress (the test cluster and a throwaway one)
/// load one target at once; each exports its run, one combines them. The combined run's calls are
/// both drivers' calls, its successes the rows the target received, its histogram both
/// histograms (its p99 between theirs), its samples both drivers' seconds added up; it reports,
/// compares and draws as any run. Forged, repeated and hidden runs are refused.
#[test]
fn two_drivers_load_one_target_and_combine_into_one_run() {
    const TARGET: &str = "it-target-two";
    const DRIVER_B: &str = "it-driver-b";
    let (port, mut target, _) = target_cluster(TARGET);
    target
        .batch_execute(&format!(
            "CREATE TABLE public.hits (at timestamptz DEFAULT clock_timestamp());
             GRANT INSERT, SELECT ON public.hits TO {USER}"
        ))
        .unwrap();
    let target_conninfo = conninfo(port, Some(PASSWORD));
    let mut a = fresh_database("it_target_two");
    pgcluster_with("destroy", DRIVER_B, &[]);
    let mut b = pgcluster_with("start", DRIVER_B, &[])
        .unwrap()
        .connect(NoTls)
        .unwrap();
    b.batch_execute("CREATE EXTENSION pg_stress").unwrap();
    const CALL: &str = "CALL stress.run_load_proc('3 seconds', workers => 2, transactions => '[
        {\"name\": \"hit\", \"sql\": \"INSERT INTO public.hits DEFAULT VALUES\"}]')";
    set_target(&mut a, &target_conninfo);
    set_target(&mut b, &target_conninfo);
    // both at once
    let on_b = std::thread::spawn(move || {
        let run: i64 = b.query_one(CALL, &[]).unwrap().get("run_id");
        let export: String = b
            .query_one("SELECT stress.export_run($1)::text", &[&run])
            .unwrap()
            .get(0);
        let p99: f64 = b
            .query_one(
                "SELECT p99_ms FROM stress.results WHERE run_id = $1 AND name = 'hit'",
                &[&run],
            )
            .unwrap()
            .get(0);
        (run, export, p99)
    });
    let run_a: i64 = a.query_one(CALL, &[]).unwrap().get("run_id");
    let (run_b, export_b, b_p99) = on_b.join().unwrap();
    let combined: i64 = a
        .query_one(
            "SELECT stress.combine_runs(ARRAY[stress.export_run($1), $2::text::jsonb])",
            &[&run_a, &export_b],
        )
        .unwrap()
        .get(0);
    let b_export: serde_json::Value = serde_json::from_str(&export_b).unwrap();
    let b_calls = b_export["results"][0]["calls"].as_i64().unwrap();
    let b_errors = b_export["results"][0]["errors"].as_i64().unwrap();
    let b_ops: i64 = b_export["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ops"].as_i64().unwrap())
        .sum();
    let figures = |client: &mut Client, run: i64| -> (i64, i64, f64) {
        let r = client
            .query_one(
                "SELECT calls, errors, p99_ms FROM stress.results WHERE run_id = $1 AND name = 'hit'",
                &[&run],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    let (a_calls, a_errors, a_p99) = figures(&mut a, run_a);
    let (calls, errors, p99) = figures(&mut a, combined);
    assert!(
        a_calls > 50 && b_calls > 50,
        "{a_calls} and {b_calls} calls"
    );
    assert_eq!((calls, errors), (a_calls + b_calls, a_errors + b_errors));
    // every success is a row on the target
    let rows: i64 = value(&mut target, "SELECT count(*) FROM public.hits");
    assert_eq!(rows, calls - errors);
    // the runs overlapped: the target saw both at once
    let overlap: f64 = value(
        &mut a,
        &format!(
            "SELECT extract(epoch FROM least((c->>'finished_at')::timestamptz, (d->>'finished_at')::timestamptz)
                                   - greatest((c->>'started_at')::timestamptz, (d->>'started_at')::timestamptz))::float8
             FROM stress.runs r, jsonb_array_element(r.parameters->'combined', 0) c,
                  jsonb_array_element(r.parameters->'combined', 1) d WHERE r.id = {combined}"
        ),
    );
    assert!(overlap > 1.0, "the drivers overlapped {overlap} s");
    // one histogram of both: its p99 is between the drivers'
    assert!(
        p99 >= a_p99.min(b_p99) - 1e-9 && p99 <= a_p99.max(b_p99) + 1e-9,
        "combined p99 {p99} ms, drivers' {a_p99} and {b_p99}"
    );
    let histogram_count: i64 = value(
        &mut a,
        &format!("SELECT (stress.report({combined})->>'total_operations')::bigint"),
    );
    assert_eq!(histogram_count, calls);
    // seconds: both drivers' operations, second by second
    let a_ops: i64 = value(
        &mut a,
        &format!("SELECT sum(ops)::bigint FROM stress.samples WHERE run_id = {run_a}"),
    );
    let combined_ops: i64 = value(
        &mut a,
        &format!("SELECT sum(ops)::bigint FROM stress.samples WHERE run_id = {combined}"),
    );
    assert_eq!(combined_ops, a_ops + b_ops);
    let (workers, status, run_as): (i64, String, String) = a
        .query_one(
            "SELECT (parameters->>'workers')::bigint, status, run_as FROM stress.runs WHERE id = $1",
            &[&combined],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!((workers, status.as_str()), (4, "completed"));
    assert_eq!(run_as, value::<String>(&mut a, "SELECT current_user::text"));
    assert!(p99 > 0.0);
    // it compares and draws as any run
    let verdicts: i64 = value(
        &mut a,
        &format!("SELECT count(*) FROM stress.compare_runs({run_a}, {combined})"),
    );
    assert!(verdicts > 0);
    let page: String = value(&mut a, &format!("SELECT stress.report_html({combined})"));
    assert!(page.contains(r#"<svg id="throughput""#));
    // refused: the same run twice, a forged histogram, a NULL, a run the caller may not see
    let runs_before: i64 = value(&mut a, "SELECT count(*) FROM stress.runs");
    let refused = |client: &mut Client, sql: &str| -> (SqlState, String) {
        let e = client.batch_execute(sql).unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
        assert!(db.hint().is_some(), "{sql}: no hint");
        (db.code().clone(), db.message().to_owned())
    };
    for sql in [
        format!(
            "SELECT stress.combine_runs(ARRAY[stress.export_run({run_a}), stress.export_run({run_a})])"
        ),
        format!(
            "SELECT stress.combine_runs(ARRAY[jsonb_set(stress.export_run({run_a}), '{{results,0,histogram}}', '\"bm90IGEgaGlzdG9ncmFt\"')])"
        ),
        format!(
            "SELECT stress.combine_runs(ARRAY[jsonb_set(stress.export_run({run_a}), '{{run,finished_at}}', '\"infinity\"')])"
        ),
        format!("SELECT stress.combine_runs(ARRAY[stress.export_run({run_a}), NULL])"),
        "SELECT stress.combine_runs(ARRAY['{\"format\": 1}'::jsonb])".to_owned(),
        "SELECT stress.combine_runs('{}'::jsonb[])".to_owned(),
    ] {
        let (code, message) = refused(&mut a, &sql);
        assert_eq!(code, SqlState::INVALID_PARAMETER_VALUE, "{sql}: {message}");
    }
    a.batch_execute(
        "DROP ROLE IF EXISTS it_target_other; CREATE ROLE it_target_other;
         SET ROLE it_target_other",
    )
    .unwrap();
    let (code, _) = refused(&mut a, &format!("SELECT stress.export_run({run_a})"));
    assert_eq!(code, SqlState::INVALID_PARAMETER_VALUE);
    a.batch_execute("RESET ROLE; DROP ROLE it_target_other")
        .unwrap();
    assert_eq!(
        runs_before,
        value::<i64>(&mut a, "SELECT count(*) FROM stress.runs"),
        "a refused combination recorded nothing"
    );
    assert!(b_export["run"]["id"].as_i64() == Some(run_b));
    drop(target);
    pgcluster_with("destroy", DRIVER_B, &[]);
    pgcluster_with("destroy", TARGET, &[]);
}
