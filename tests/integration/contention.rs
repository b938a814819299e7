//! Capacity and contention against real contention: the deadlock test's opposite-order transfers
//! as one pattern, a hot row's lock waits, a serializable run's write skew, and the capacity and
//! pool-size searches as run series.

use super::common::{load_database, series_steps, value};
use postgres::Client;
use postgres::error::SqlState;

fn rows(client: &mut Client, sql: &str) -> Vec<postgres::Row> {
    client.query(sql, &[]).unwrap()
}

#[test]
fn the_deadlock_tests_transfers_are_one_pattern_naming_accounts() {
    let mut client = load_database("it_deadlock_patterns");
    let row = client
        .query_one(
            "CALL stress.deadlock_test(workers => 2, duration => '3 seconds')",
            &[],
        )
        .unwrap();
    let (run_id, deadlocks): (i64, i64) = (row.get("run_id"), row.get("deadlocks"));
    assert!(deadlocks > 0, "no deadlock in the deadlock test");
    let patterns = client
        .query(
            "SELECT pattern, kind, operations, relation, lock, processes, occurrences, example
             FROM stress.analyze_deadlocks($1)",
            &[&run_id],
        )
        .unwrap();
    assert_eq!(patterns.len(), 1, "{patterns:?}");
    let p = &patterns[0];
    assert_eq!(
        p.get::<_, String>(0),
        "transfer × transfer on stress_data.accounts: ShareLock on transaction, rows locked in opposite order"
    );
    assert_eq!(p.get::<_, String>(1), "deadlock");
    assert_eq!(p.get::<_, Vec<String>>(2), vec!["transfer".to_owned()]);
    assert_eq!(p.get::<_, String>(3), "stress_data.accounts");
    assert_eq!(p.get::<_, String>(5), "2");
    // every deadlock the run counted is there (2 workers keep all of theirs)
    assert_eq!(p.get::<_, i64>(6), deadlocks);
    assert!(
        p.get::<_, String>(7)
            .contains("waits for ShareLock on transaction")
    );
    // The other process of each was the run's other worker, running a transfer.
    let foreign: i64 = value(
        &mut client,
        &format!(
            "SELECT count(*) FROM stress.conflicts WHERE run_id = {run_id}
             AND NOT (others = ARRAY['transfer'] AND operation = 'transfer' AND sqlstate = '40P01')"
        ),
    );
    assert_eq!(foreign, 0);
    // Each was met while the run went on.
    let outside: i64 = value(
        &mut client,
        &format!(
            "SELECT count(*) FROM stress.conflicts c JOIN stress.runs r ON r.id = c.run_id
             WHERE c.run_id = {run_id} AND c.at NOT BETWEEN r.started_at AND r.finished_at"
        ),
    );
    assert_eq!(outside, 0);
    // The losers waited on accounts' rows: lock contention there.
    let contention = rows(
        &mut client,
        &format!(
            "SELECT relation, locktype, contended, finding FROM stress.lock_contention({run_id})
             WHERE locktype = 'transactionid'"
        ),
    );
    assert_eq!(contention.len(), 1);
    assert_eq!(contention[0].get::<_, String>(0), "stress_data.accounts");
    assert!(contention[0].get::<_, bool>(2));
    assert!(
        contention[0]
            .get::<_, String>(3)
            .starts_with("lock contention on stress_data.accounts:")
    );
}

#[test]
fn a_hot_row_shows_as_lock_contention_and_write_skew_as_serialization_failures() {
    let mut client = load_database("it_hot_rows");
    client
        .batch_execute(
            "CREATE TABLE public.hot (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO public.hot VALUES (1, 0), (2, 0);
             CREATE TABLE public.doctors (id int PRIMARY KEY, on_call boolean NOT NULL);
             INSERT INTO public.doctors VALUES (1, true), (2, true)",
        )
        .unwrap();
    // Three workers update one row and hold it 50 ms: each waits for the others.
    let hot: i64 = value(
        &mut client,
        r#"CALL stress.run_load_proc('3 seconds', workers => 3, transactions => '[
             {"name": "bump", "sql": ["UPDATE public.hot SET n = n + 1 WHERE id = 1", "SELECT pg_sleep(0.05)"]}]')"#,
    );
    let c = rows(
        &mut client,
        &format!(
            "SELECT relation, mode, waits, longest_ms, contended FROM stress.lock_contention({hot})
             WHERE locktype = 'transactionid'"
        ),
    );
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].get::<_, String>(0), "public.hot");
    assert_eq!(c[0].get::<_, String>(1), "ShareLock");
    assert!(
        c[0].get::<_, i64>(2) >= 2,
        "{} waits",
        c[0].get::<_, i64>(2)
    );
    // (a worker waits for up to two others' 50 ms: more than 100 ms, now and then)
    let longest: f64 = c[0].get(3);
    assert!(longest > 0.0 && longest < 3000.0, "{longest} ms");
    assert_eq!(c[0].get::<_, bool>(4), longest > 100.0);

    // Write skew under serializable: each reads both doctors and takes one off call.
    let skew: i64 = value(
        &mut client,
        r#"CALL stress.run_load_proc('1 second', workers => 2, isolation => 'serializable', max_retries => 0,
             transactions => '[{"name": "go_off_call",
               "sql": ["SELECT count(*) FROM public.doctors WHERE on_call",
                       "UPDATE public.doctors SET on_call = NOT on_call WHERE id = $1",
                       "SELECT pg_sleep(0.02)"],
               "params": [{"distribution": "uniform", "min": 1, "max": 2}]}]')"#,
    );
    let failures: i64 = value(
        &mut client,
        &format!(
            "SELECT (details->>'serialization_failures')::int8 FROM stress.results
             WHERE run_id = {skew} AND name = 'total'"
        ),
    );
    assert!(failures > 0, "no serialization failure");
    let p = rows(
        &mut client,
        &format!(
            "SELECT kind, operations, occurrences, advice FROM stress.analyze_deadlocks({skew})
             WHERE kind = 'serialization failure'"
        ),
    );
    assert!(!p.is_empty());
    // (every one kept: no worker met more than the 200 a worker keeps one by one)
    let most: i64 = value(
        &mut client,
        &format!(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM stress.conflicts WHERE run_id = {skew} GROUP BY worker) w"
        ),
    );
    assert!(most < 200, "{most} conflicts in one worker");
    assert_eq!(p.iter().map(|r| r.get::<_, i64>(2)).sum::<i64>(), failures);
    assert!(
        p.iter()
            .all(|r| r.get::<_, Vec<String>>(1) == vec!["go_off_call".to_owned()])
    );
    // Every visible run's patterns, and a run that is not there.
    let all: i64 = value(
        &mut client,
        "SELECT count(*) FROM stress.analyze_deadlocks()",
    );
    assert!(all >= 1);
    for sql in [
        "SELECT * FROM stress.analyze_deadlocks(-1)",
        "SELECT * FROM stress.lock_contention(NULL)",
    ] {
        let e = client.batch_execute(sql).unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::INVALID_PARAMETER_VALUE), "{sql}");
    }
}

#[test]
fn capacity_and_pool_size_searches_are_run_series() {
    let mut client = load_database("it_capacity");
    let steps = series_steps(
        &mut client,
        "CALL stress.find_capacity(1000, step => '1 second', start_rate => 50, max_steps => 4, workers => 2)",
        "step, run_id, offered_rate, ops_per_sec AS achieved_rate, ok, reason, chosen AS capacity",
    );
    assert!(!steps.is_empty() && steps.len() <= 4);
    // Doubling after a sustained first step (no step has failed yet).
    if steps.len() >= 2 && steps[0].get::<_, bool>(4) {
        assert_eq!(steps[1].get::<_, f64>(2), 2.0 * steps[0].get::<_, f64>(2));
    }
    for s in &steps {
        assert_eq!(s.get::<_, bool>(4), s.get::<_, Option<String>>(5).is_none());
    }
    // The answer is the highest sustained offered rate, marked once.
    let marked: Vec<f64> = steps
        .iter()
        .filter(|s| s.get::<_, bool>(6))
        .map(|s| s.get(2))
        .collect();
    let best = steps
        .iter()
        .filter(|s| s.get::<_, bool>(4))
        .map(|s| s.get::<_, f64>(2))
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    assert_eq!(marked.first().copied(), best);
    assert!(marked.len() <= 1);
    // The steps are one series: each names the first; the open model recorded what was offered.
    let first: i64 = steps[0].get(1);
    let last: i64 = steps.last().unwrap().get(1);
    let members: i64 = value(
        &mut client,
        &format!(
            "SELECT count(*) FROM stress.runs
             WHERE (parameters->'series'->>'first_run_id')::int8 = {first}
               AND parameters->'series'->>'kind' = 'find_capacity'"
        ),
    );
    assert_eq!(members as usize, steps.len());
    let share: f64 = value(
        &mut client,
        &format!(
            "SELECT (details->>'achieved_share')::float8 FROM stress.results
             WHERE run_id = {first} AND name = 'total'"
        ),
    );
    assert!(share > 0.5 && share <= 1.0, "{share}");
    // A 1-second step at 50 ops/s lasts its second (it used to end at the last arrival).
    let seconds: f64 = value(
        &mut client,
        &format!("SELECT seconds FROM stress.results WHERE run_id = {first} AND name = 'total'"),
    );
    assert!(seconds > 0.8, "{seconds} s");
    let page: String = value(&mut client, &format!("SELECT stress.report_html({last})"));
    assert!(page.contains("Throughput against offered rate"));

    let pool = series_steps(
        &mut client,
        "CALL stress.find_optimal_pool_size(1, 4, 1000, step => '1 second')",
        "workers, ops_per_sec, ok AS meets_target, chosen AS best",
    );
    let sizes: Vec<i32> = pool.iter().map(|r| r.get(0)).collect();
    assert_eq!(sizes, vec![1, 2, 4]);
    let best: Vec<&postgres::Row> = pool.iter().filter(|r| r.get::<_, bool>(3)).collect();
    assert_eq!(best.len(), 1);
    let top = pool
        .iter()
        .filter(|r| r.get::<_, bool>(2))
        .map(|r| r.get::<_, f64>(1))
        .fold(0.0, f64::max);
    assert_eq!(best[0].get::<_, f64>(1), top);

    // A ramp step degrades on p99 too, and says why.
    let ramp = series_steps(
        &mut client,
        "CALL stress.ramp('{1,2}', '1 second', max_p99_ms => 0.001)",
        "NOT ok AS degraded, reason",
    );
    assert_eq!(ramp.len(), 1, "the ramp stops at its first degraded step");
    assert!(ramp[0].get::<_, bool>(0));
    assert!(
        ramp[0].get::<_, String>(1).ends_with("ms > 0.001 ms"),
        "{}",
        ramp[0].get::<_, String>(1)
    );
}
