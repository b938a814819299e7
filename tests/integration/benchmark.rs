//! Benchmarks with workers, compare_indexes under cancellation, and slow statements read from
//! pg_stat_statements.

use super::common::{connect, count, fresh_database, value};
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
