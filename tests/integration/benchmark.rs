//! Benchmarks with workers, compare_indexes under cancellation, and slow statements read from
//! pg_stat_statements.

use super::common::{benchmark_rows, connect, count, fresh_database, value};
use postgres::Client;
use postgres::error::SqlState;
use std::time::{Duration, Instant};

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
    let rows = benchmark_rows(
        &mut client,
        "ARRAY['INSERT INTO log (item) VALUES (1)', 'UPDATE items SET n = n + 1 WHERE id = 7'],
         iterations => 300, warmup => 2, concurrency => 3, rollback => true",
        "query, calls, errors",
    );
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!((row.get::<_, i64>(1), row.get::<_, i64>(2)), (300, 0));
    }
    assert_eq!(count(&mut client, "SELECT count(*) FROM log"), 0);
    assert_eq!(count(&mut client, "SELECT sum(n) FROM items"), 0);
    // Without rollback, unprepared: every execution (3 workers x 2 warmup + 300) is kept.
    client
        .batch_execute(
            "CALL stress.benchmark_proc(ARRAY['INSERT INTO log (item) VALUES (2)'],
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
            "CALL stress.benchmark_proc(ARRAY['SELECT pg_sleep(0.02)'], iterations => 1000000,
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
    let rows = [client
        .query_one(
            "CALL stress.benchmark_proc(ARRAY['SELECT 1'], iterations => 1000, concurrency => 2)",
            &[],
        )
        .unwrap()];
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let error: Option<String> = rows[0].get("error");
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

#[test]
fn slow_statements_and_the_query_time_alert_read_pg_stat_statements() {
    if !crate::common::has_module(
        "pg_stat_statements",
        "slow_statements_and_the_query_time_alert_read_pg_stat_statements",
    ) {
        return;
    }
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

/// On background workers (`CALL stress.benchmark_proc`): a query that cannot be planned is one
/// failed attempt with its error; one that fails at every execution is counted and timed.
#[test]
fn a_failing_query_gets_its_error_on_workers_too() {
    let mut client = fresh_database("it_bench_failing");
    let rows = benchmark_rows(
        &mut client,
        "ARRAY['SELECT 1', 'SELECT * FROM t_bench_nowhere', 'SELEC 1', 'SELECT 1/(random() > 2)::int'],
         iterations => 10, concurrency => 2",
        "query, calls, errors, coalesce(error, ''), p50_ms, qps",
    );
    let by_query = |q: &str| rows.iter().find(|r| r.get::<_, String>(0) == q).unwrap();
    let ok = by_query("SELECT 1");
    assert_eq!((ok.get::<_, i64>(1), ok.get::<_, i64>(2)), (10, 0));
    assert!(
        ok.get::<_, Option<f64>>(4).is_some_and(|p| p > 0.0)
            && ok.get::<_, Option<f64>>(5).is_some()
    );
    for (q, says) in [
        ("SELECT * FROM t_bench_nowhere", "does not exist"),
        ("SELEC 1", "syntax error"),
    ] {
        let r = by_query(q);
        assert_eq!((r.get::<_, i64>(1), r.get::<_, i64>(2)), (1, 1), "{q}");
        assert_eq!(
            (r.get::<_, Option<f64>>(4), r.get::<_, Option<f64>>(5)),
            (None, None),
            "{q}"
        );
        assert!(
            r.get::<_, String>(3).contains(says),
            "{q}: {}",
            r.get::<_, String>(3)
        );
    }
    let failing = by_query("SELECT 1/(random() > 2)::int");
    assert_eq!(
        (failing.get::<_, i64>(1), failing.get::<_, i64>(2)),
        (10, 10)
    );
    assert!(failing.get::<_, Option<f64>>(4).is_some());
    assert!(failing.get::<_, String>(3).contains("division by zero"));
}

/// Four workers' executions overlap, and the percentiles merged from their histograms stay true;
/// slow executions are logged by the workers up to the limit, with their plans.
#[test]
fn concurrent_executions_overlap_and_percentiles_stay_true() {
    let mut client = fresh_database("it_bench_overlap");
    client
        .batch_execute(
            "SET stress.slow_query_threshold_ms = 5; SET stress.slow_query_log_limit = 3",
        )
        .unwrap();
    let row = client
        .query_one(
            "CALL stress.benchmark_proc(ARRAY['SELECT pg_sleep(0.01)'], iterations => 80, warmup => 1, concurrency => 4)",
            &[],
        )
        .unwrap();
    let run: i64 = row.get("run_id");
    assert_eq!(row.get::<_, i64>("calls"), 80);
    let r = client
        .query_one(
            "SELECT p50_ms, qps FROM stress.benchmark_results($1)",
            &[&run],
        )
        .unwrap();
    let (p50, qps): (f64, f64) = (r.get(0), r.get(1));
    assert!(
        (10.0..15.0).contains(&p50),
        "p50 {p50} ms for a 10 ms sleep"
    );
    // One connection manages under 100 sleeps of 10 ms a second; four overlap.
    assert!(qps > 200.0, "{qps} queries/s with 4 workers");
    let recorded: String = value(
        &mut client,
        &format!(
            "SELECT format('%s %s %s', status, parameters->>'concurrency', parameters->>'iterations')
             FROM stress.runs WHERE id = {run}"
        ),
    );
    assert_eq!(recorded, "completed 4 80");
    let logged: String = value(
        &mut client,
        &format!(
            "SELECT format('%s %s %s', count(*), bool_and(worker BETWEEN 1 AND 4), bool_and(plan IS NOT NULL))
             FROM stress.slow_queries WHERE run_id = {run}"
        ),
    );
    assert_eq!(logged, "3 t t");
}
