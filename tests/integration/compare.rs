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
    let fast: i64 = value(
        &mut client,
        "CALL stress.run_load_proc('2 seconds', workers => 2)",
    );
    let slow: i64 = value(
        &mut client,
        "CALL stress.run_load_proc('2 seconds', workers => 2, rate => 100)",
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
            "SELECT name, metric FROM stress.compare_runs($1, $2) WHERE regressed",
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
            "SELECT name, metric, change, regressed FROM stress.compare_runs($1, $1)",
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
    ] {
        let (code, message) = failure(&mut client, &sql);
        assert_eq!(code, SqlState::INVALID_PARAMETER_VALUE, "{sql}: {message}");
    }
}
