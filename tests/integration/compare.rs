//! Runs compared and judged: `stress.compare_runs` finds a regression that is there and none in a run
//! against itself; `stress.assert_targets` passes, or fails a `psql -v ON_ERROR_STOP=1` step naming
//! every missed target and regression; bad input is 22023.

use super::common::{bindir, env, load_database, value};
use postgres::Client;
use postgres::error::SqlState;
use std::process::Command;

/// The SQLSTATE and message `sql` fails with.
fn failure(client: &mut Client, sql: &str) -> (SqlState, String) {
    let e = client.batch_execute(sql).unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
    (db.code().clone(), db.message().to_owned())
}

#[test]
fn compare_runs_and_assert_targets_judge_real_runs() {
    let db = "it_compare";
    let mut client = load_database(db);
    // A closed-model run, and one held to 100 operations per second: a real throughput regression.
    // (5 seconds: the noise of a throughput is read from its per-second samples, 3 at least)
    let fast: i64 = value(
        &mut client,
        "CALL stress.run_load_proc('5 seconds', workers => 2)",
    );
    let slow: i64 = value(
        &mut client,
        "CALL stress.run_load_proc('5 seconds', workers => 2, rate => 100)",
    );
    // (open model: latency from the intended start, or the actual one when a worker woke early;
    // an index lookup and a commit take more than 10 µs)
    let fastest_median: f64 = value(
        &mut client,
        &format!("SELECT min(p50_ms) FROM stress.results WHERE run_id = {slow}"),
    );
    assert!(fastest_median > 0.01, "p50 {fastest_median} ms");
    let regressed: Vec<(String, String)> = client
        .query(
            "SELECT name, metric FROM stress.compare_runs($1::bigint, $2::bigint) WHERE regressed",
            &[&fast, &slow],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        regressed.contains(&("total".into(), "ops_per_sec".into())),
        "{regressed:?}"
    );
    // Against itself nothing regressed, every change is 0, and the total comes last.
    let rows = client
        .query(
            "SELECT name, metric, change, regressed FROM stress.compare_runs($1::bigint, $1::bigint)",
            &[&fast],
        )
        .unwrap();
    assert!(rows.len() >= 5 * 8, "{} rows", rows.len());
    for r in &rows {
        let (name, metric, change, regressed): (String, String, Option<f64>, Option<bool>) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        assert_ne!(regressed, Some(true), "{name} {metric}");
        assert!(
            change.is_none_or(|c| c == 0.0),
            "{name} {metric} {change:?}"
        );
    }
    let last: String = rows.last().unwrap().get(0);
    assert_eq!(last, "total");

    // Targets met: the judged targets come back.
    let judged: serde_json::Value = client
        .query_one(
            "SELECT stress.assert_targets($1, min_ops_per_sec => 1, max_error_rate => 0.5)::text",
            &[&fast],
        )
        .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
        .unwrap();
    assert_eq!(judged["min_ops_per_sec"]["pass"], true, "{judged}");
    assert_eq!(judged["max_error_rate"]["pass"], true, "{judged}");
    // Missed: one ERROR naming each of them, and the regression against the fast run.
    let (code, message) = failure(
        &mut client,
        &format!(
            "SELECT stress.assert_targets({slow}, min_ops_per_sec => 1000000, p99_ms => 0.000001, baseline => {fast})"
        ),
    );
    assert_eq!(code, SqlState::ASSERT_FAILURE, "{message}");
    for needle in [
        "min_ops_per_sec",
        "p99_ms",
        &format!("total ops_per_sec regressed against run {fast}"),
    ] {
        assert!(message.contains(needle), "{needle} not in: {message}");
    }
    // The seed's Key Metrics when no target is given (a 100 ops/s run misses throughput > 1000).
    let (code, message) = failure(
        &mut client,
        &format!("SELECT stress.assert_targets({slow})"),
    );
    assert_eq!(code, SqlState::ASSERT_FAILURE, "{message}");
    assert!(message.contains("throughput"), "{message}");

    // The CI step: psql exits non-zero on a missed target (1 for a failed -c command; a script run
    // with -f and ON_ERROR_STOP=1 exits 3), 0 when the targets are met.
    let psql = |sql: &str| {
        Command::new(format!("{}/psql", bindir()))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &env("PGHOST"),
                "-p",
                &env("PGPORT"),
            ])
            .args(["-U", &env("PGUSER"), "-d", db, "-c", sql])
            .output()
            .unwrap()
    };
    let missed = psql(&format!(
        "SELECT stress.assert_targets({slow}, min_ops_per_sec => 1000000)"
    ));
    assert_eq!(missed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missed.stderr).contains("missed 1 target"));
    let met = psql(&format!(
        "SELECT stress.assert_targets({fast}, min_ops_per_sec => 1)"
    ));
    assert_eq!(
        met.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&met.stderr)
    );

    // Benchmarks compare per query; they have no total to judge.
    let benchmarks: Vec<i64> = (0..2)
        .map(|_| {
            value(
                &mut client,
                "SELECT max(run_id) FROM stress.benchmark(ARRAY['SELECT 1', 'SELECT 2'], iterations => 50)",
            )
        })
        .collect();
    let compared: i64 = value(
        &mut client,
        &format!(
            "SELECT count(DISTINCT name) FROM stress.compare_runs({}, {})",
            benchmarks[0], benchmarks[1]
        ),
    );
    assert_eq!(compared, 2);
    // Bad input: a clear 22023 each.
    for sql in [
        format!(
            "SELECT stress.assert_targets({}, p99_ms => 1)",
            benchmarks[0]
        ),
        format!("SELECT * FROM stress.compare_runs({fast}, 987654321)"),
        format!("SELECT * FROM stress.compare_runs({fast}, NULL)"),
        format!("SELECT * FROM stress.compare_runs({fast}, {slow}, 'NaN')"),
        format!("SELECT * FROM stress.compare_runs({fast}, {slow}, -0.1)"),
        format!("SELECT stress.assert_targets({fast}, p99_ms => 'Infinity')"),
        format!("SELECT stress.assert_targets({fast}, max_error_rate => -1)"),
        "SELECT stress.assert_targets(987654321)".into(),
        format!("SELECT * FROM stress.compare_runs({fast}, {slow}, confidence => 1)"),
        format!("SELECT * FROM stress.compare_runs({fast}, {slow}, confidence => 'NaN')"),
        format!("SELECT * FROM stress.compare_runs('{{}}'::bigint[], {slow})"),
        format!("SELECT * FROM stress.compare_runs(ARRAY[{fast}, NULL], {slow})"),
        format!("SELECT * FROM stress.compare_runs(ARRAY[{fast}, 987654321], {slow})"),
        format!(
            "SELECT * FROM stress.compare_runs(array_fill({fast}::bigint, ARRAY[1001]), {slow})"
        ),
        format!("SELECT * FROM stress.environment_diff({fast}, 987654321)"),
        format!("SELECT stress.baseline_runs({fast}, 0)"),
        "SELECT stress.baseline_runs(987654321)".into(),
        format!("SELECT stress.report_html({fast}, 987654321)"),
        format!(
            "SELECT stress.assert_targets({slow}, baselines => ARRAY[{fast}], confidence => 2)"
        ),
    ] {
        let (code, message) = failure(&mut client, &sql);
        assert_eq!(code, SqlState::INVALID_PARAMETER_VALUE, "{sql}: {message}");
    }
}

/// The verdict weighs the noise: a transaction really made slower is a regression beyond tolerance
/// and noise, a run against itself is not, a figure with too few calls behind it says how many it
/// needs; baselines of several runs pool them; each run records what it ran on, and a changed
/// setting is shown before any figure (a NOTICE, report_html), while a secret setting is never
/// recorded.
#[test]
fn the_verdict_weighs_the_noise_and_the_environment_is_recorded() {
    let db = "it_verdict";
    let mut client = super::common::fresh_database(db);
    client
        .batch_execute(
            "SET stress.progress_interval = 0;
             CREATE SCHEMA v;
             CREATE TABLE v.accounts (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO v.accounts SELECT g, 0 FROM generate_series(1, 1000) g;
             ANALYZE v.accounts",
        )
        .unwrap();
    let txn = |extra: &str| {
        format!(
            r#"[{{"name": "account", "params": [{{"distribution": "uniform", "min": 1, "max": 1000}}],
                "sql": ["UPDATE v.accounts SET n = n + 1 WHERE id = $1"{extra}]}}]"#
        )
    };
    let run = |client: &mut Client, transactions: &str, more: &str| -> i64 {
        value(
            client,
            &format!(
                "CALL stress.run_load_proc('5 seconds', workers => 2, transactions => '{transactions}'{more})"
            ),
        )
    };
    let (base, slowed) = (txn(""), txn(r#", "SELECT pg_sleep(0.005)""#));
    let a0 = run(&mut client, &base, "");
    let a1 = run(&mut client, &base, "");
    let a2 = run(&mut client, &base, "");
    // A secret in the workers' sessions' settings, and a setting that moves performance.
    client
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET work_mem = '64MB'; ALTER DATABASE {db} SET app.password = 'hunter2-secret'"
        ))
        .unwrap();
    let b = run(&mut client, &slowed, "");
    // (at 5 ms a call, 2 workers: a few thousand calls, under the 10,000 a p99.9 needs)
    let verdicts = |client: &mut Client, baseline: &str, candidate: i64| {
        client
            .query(
                &format!(
                    "SELECT name, metric, verdict, change, change_low, change_high, gate, note
                     FROM stress.compare_runs({baseline}, {candidate})"
                ),
                &[],
            )
            .unwrap()
    };
    let find = |rows: &[postgres::Row],
                name: &str,
                metric: &str|
     -> (String, Option<f64>, Option<f64>, Option<f64>, bool, String) {
        let r = rows
            .iter()
            .find(|r| r.get::<_, String>(0) == name && r.get::<_, String>(1) == metric)
            .unwrap_or_else(|| panic!("no {name} {metric}"));
        (r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7))
    };
    let rows = verdicts(&mut client, &a2.to_string(), b);
    let (verdict, change, low, high, gate, _) = find(&rows, "total", "ops_per_sec");
    assert_eq!(verdict, "regressed", "{change:?} [{low:?}, {high:?}]");
    assert!(
        gate && high.unwrap() < 0.0 && change.unwrap() < -0.5,
        "{change:?} {high:?}"
    );
    let (verdict, ..) = find(&rows, "total", "p50_ms");
    assert_eq!(verdict, "regressed");
    let (verdict, _, _, _, gate, note) = find(&rows, "total", "p999_ms");
    assert_eq!(verdict, "not enough data");
    assert!(!gate);
    assert!(note.contains("needs 10000 calls"), "{note}");
    // Against itself: every figure unchanged or without enough data, every interval around 0.
    for r in verdicts(&mut client, &a1.to_string(), a1) {
        let verdict: String = r.get(2);
        assert!(
            ["unchanged", "not enough data"].contains(&verdict.as_str()),
            "{verdict}"
        );
        if let (Some(low), Some(high)) = (r.get::<_, Option<f64>>(4), r.get::<_, Option<f64>>(5)) {
            assert!(low <= 0.0 && high >= 0.0, "{low} {high}");
        }
    }
    // A baseline of the runs like the candidate: the same kind and parameters, before it.
    let pool: Vec<i64> =
        value::<Vec<i64>>(&mut client, &format!("SELECT stress.baseline_runs({a2})"));
    assert_eq!(pool, vec![a1, a0]);
    let none: Vec<i64> = value(&mut client, &format!("SELECT stress.baseline_runs({b})"));
    assert!(none.is_empty(), "{none:?}");
    // (three runs: the spread of two is known with one degree of freedom, t = 12.7)
    let rows = verdicts(&mut client, &format!("ARRAY[{a0}, {a1}, {a2}]"), b);
    assert_eq!(find(&rows, "total", "ops_per_sec").0, "regressed");
    // The CI gate: the slowed run fails, the first run passes against itself.
    let (code, message) = failure(
        &mut client,
        &format!("SELECT stress.assert_targets({b}, baseline => {a2})"),
    );
    assert_eq!(code, SqlState::ASSERT_FAILURE, "{message}");
    assert!(
        message.contains(&format!("total ops_per_sec regressed against run {a2}")),
        "{message}"
    );
    let judged: String = value(
        &mut client,
        &format!(
            "SELECT stress.assert_targets({a2}, min_ops_per_sec => 0, baselines => ARRAY[{a2}])::text"
        ),
    );
    // (the gate's six figures, each held to 1 - 0.05 / 6)
    assert!(judged.contains("\"figures_judged\": 6"), "{judged}");
    let judged: String = value(
        &mut client,
        &format!("SELECT stress.assert_targets({a1}, baseline => {a1})::text"),
    );
    assert!(judged.contains("regressions_against"), "{judged}");

    // What each ran on; what changed between them comes first.
    let environment: String = value(
        &mut client,
        &format!("SELECT environment::text FROM stress.runs WHERE id = {b}"),
    );
    for needle in [
        "server_version",
        "shared_buffers",
        "synchronous_commit",
        "\"cpus\"",
        "database_bytes",
        // (the table its custom transaction names)
        "\"v.accounts\"",
        "pg_stress",
    ] {
        assert!(
            environment.contains(needle),
            "{needle} not in {environment}"
        );
    }
    assert!(
        !environment.contains("hunter2"),
        "a secret setting was recorded: {environment}"
    );
    let differences: Vec<(String, Option<String>, Option<String>)> = client
        .query(
            &format!("SELECT item, baseline, candidate FROM stress.environment_diff({a2}, {b})"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        differences.contains(&(
            "settings.work_mem".into(),
            Some("4MB".into()),
            Some("64MB".into())
        )),
        "{differences:?}"
    );
    assert!(
        differences.iter().all(|d| !d.0.contains("password")),
        "{differences:?}"
    );
    // (the UPDATEs grow v.accounts: its size may differ; nothing else does)
    let same: i64 = value(
        &mut client,
        &format!(
            "SELECT count(*) FROM stress.environment_diff({a1}, {a2})
             WHERE item NOT LIKE 'tables.%' AND item <> 'database_bytes'"
        ),
    );
    assert_eq!(same, 0, "two runs on the same server and settings differ");
    // (the NOTICE, as psql shows it before the rows)
    let out = Command::new(format!("{}/psql", bindir()))
        .args([
            "-X",
            "-h",
            &env("PGHOST"),
            "-p",
            &env("PGPORT"),
            "-U",
            &env("PGUSER"),
            "-d",
            db,
        ])
        .args([
            "-c",
            &format!("SELECT count(*) FROM stress.compare_runs({a2}, {b})"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("different environments: settings.work_mem: 4MB -> 64MB"),
        "{stderr}"
    );
    let page: String = value(
        &mut client,
        &format!("SELECT stress.report_html({b}, {a2})"),
    );
    let differs = page
        .find("environment-differences")
        .expect("the differences on the page");
    let results = page.find("id=\"results\"").expect("the results table");
    assert!(differs < results, "the differences come before the figures");
    assert!(page.contains("regressed") && page.contains("work_mem"));
    // A call that runs in the caller's session (a one-session benchmark) records its environment
    // in the same row, and its histogram.
    let bench: i64 = value(
        &mut client,
        "SELECT max(run_id) FROM stress.benchmark(ARRAY['SELECT n FROM v.accounts WHERE id = 1'], iterations => 50)",
    );
    let (recorded, histogram): (bool, bool) = {
        let row = client
            .query_one(
                "SELECT r.environment ? 'settings', x.histogram IS NOT NULL
                 FROM stress.runs r JOIN stress.results x ON x.run_id = r.id WHERE r.id = $1",
                &[&bench],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        recorded && histogram,
        "benchmark {bench}: {recorded} {histogram}"
    );
    // Every read of a comparison takes no transaction id (read-only SPI, as the caller).
    let mut block = client.transaction().unwrap();
    for sql in [
        format!("SELECT count(*) FROM stress.compare_runs(ARRAY[{a0}, {a1}], {b})"),
        format!("SELECT count(*) FROM stress.environment_diff({a2}, {b})"),
        format!("SELECT length(stress.report_html({b}, {a2}))"),
        format!("SELECT cardinality(stress.baseline_runs({a2}))"),
        format!(
            "SELECT stress.assert_targets({a2}, min_ops_per_sec => 0, baseline => {a2}) IS NOT NULL"
        ),
    ] {
        block.batch_execute(&sql).unwrap();
        let xid: Option<String> = block
            .query_one("SELECT pg_current_xact_id_if_assigned()::text", &[])
            .unwrap()
            .get(0);
        assert_eq!(xid, None, "{sql} took a transaction id");
    }
    block.rollback().unwrap();
    client
        .batch_execute(&format!("ALTER DATABASE {db} RESET ALL"))
        .unwrap();
}
