//! Releases are upgradable: a database on 0.1.0 with runs, captures and policies in it, after
//! `ALTER EXTENSION pg_stress UPDATE`, has the same extension a fresh install has (member objects,
//! definitions, grants, policies, defaults: describe_extension.sql) and still every record.

use super::common::{await_run_end, config, empty_database, fresh_database, value};
use postgres::error::SqlState;
use postgres::{Client, NoTls};

const DESCRIBE: &str = include_str!("describe_extension.sql");

fn describe(client: &mut Client) -> Vec<String> {
    client
        .query(DESCRIBE, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Start a run through an older release's SQL with this library, which no longer waits in a
/// SELECT: `wait => false`, then poll from the test (as a pg_cron job would) until it ends.
fn run_detached(client: &mut Client, args: &str) -> i64 {
    let run: i64 = value(
        client,
        &format!("SELECT stress.run_load({args}, wait => false)"),
    );
    await_run_end(client, run);
    run
}

fn record_counts(client: &mut Client) -> Vec<i64> {
    [
        "stress.runs",
        "stress.results",
        "stress.samples",
        "stress.slow_queries",
        "stress.state_captures",
        "stress.state_tables",
        "stress.retention_policies",
    ]
    .iter()
    .map(|t| value(client, &format!("SELECT count(*) FROM {t}")))
    .collect()
}

/// The updated extension in `updated` is a fresh install's, fact by fact (a fresh install is made in
/// database `fresh`).
fn assert_same_as_a_fresh_install(updated: &mut Client, fresh: &str) {
    let version: String = value(
        updated,
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_stress'",
    );
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let mut fresh = fresh_database(fresh);
    let (upgraded, installed) = (describe(updated), describe(&mut fresh));
    let only_upgraded: Vec<_> = upgraded.iter().filter(|f| !installed.contains(f)).collect();
    let only_installed: Vec<_> = installed.iter().filter(|f| !upgraded.contains(f)).collect();
    assert!(
        only_upgraded.is_empty() && only_installed.is_empty(),
        "after the update but not in a fresh install:\n{only_upgraded:#?}\n\
         in a fresh install but not after the update:\n{only_installed:#?}"
    );
    assert!(upgraded.len() > 300, "{} facts", upgraded.len());
}

/// A release's install script is in PostgreSQL's extension directory (scripts/test.sh copies it).
fn assert_available(client: &mut Client, version: &str) {
    let available: i64 = value(
        client,
        &format!(
            "SELECT count(*) FROM pg_available_extension_versions
             WHERE name = 'pg_stress' AND version = '{version}'"
        ),
    );
    assert_eq!(
        available, 1,
        "pg_stress--{version}.sql is not installed: scripts/test.sh copies it from sql/"
    );
}

#[test]
fn alter_extension_update_from_0_1_0_ends_where_a_fresh_install_does() {
    let mut old = empty_database("it_upgrade_old");
    assert_available(&mut old, "0.1.0");
    // 0.1.0, used the way it was: an administrator's dataset, runs of every kind, a capture and
    // a retention policy; and a role's own run (PUBLIC could start workers then).
    // (one statement per call: workers see only what is committed)
    for sql in [
        "CREATE EXTENSION pg_stress VERSION '0.1.0'",
        "SET stress.progress_interval = 0",
        "SELECT stress.generate_dataset(orders => 2000, seed => 1)",
    ] {
        old.batch_execute(sql).unwrap();
    }
    run_detached(&mut old, "'2 seconds', workers => 2");
    old.batch_execute(
        "SELECT * FROM stress.benchmark(ARRAY['SELECT 1', 'SELECT pg_sleep(0.002)'], iterations => 20);
         SELECT stress.capture_state();
         CREATE TABLE public.logs (at timestamptz NOT NULL);
         SELECT stress.set_retention('public.logs', 'at', '30 days');
         DROP ROLE IF EXISTS it_upgrade_user; CREATE ROLE it_upgrade_user LOGIN;
         GRANT USAGE ON SCHEMA stress_data TO it_upgrade_user;
         GRANT SELECT ON ALL TABLES IN SCHEMA stress_data TO it_upgrade_user",
    )
    .unwrap();
    let mut user = config("it_upgrade_old")
        .user("it_upgrade_user")
        .connect(NoTls)
        .unwrap();
    let user_run = run_detached(
        &mut user,
        "'1 second', workers => 1, mix => '{\"open_orders\": 1, \"recent_trades\": 1}'",
    );
    let version: String = value(
        &mut old,
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_stress'",
    );
    assert_eq!(version, "0.1.0");
    let before = record_counts(&mut old);
    // (runs, results, samples, captures, their tables, policies: slow queries may be none)
    assert!(
        before.iter().enumerate().all(|(i, &n)| n > 0 || i == 3),
        "{before:?}"
    );

    old.batch_execute("ALTER EXTENSION pg_stress UPDATE")
        .unwrap();

    assert_same_as_a_fresh_install(&mut old, "it_upgrade_fresh");

    // Every record kept, and now private: the role sees its own run only, and writes nothing.
    assert_eq!(record_counts(&mut old), before);
    let seen: Vec<i64> = user
        .query("SELECT id FROM stress.runs", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, vec![user_run]);
    for (sql, code) in [
        (
            "INSERT INTO stress.runs (kind, run_as) VALUES ('run_load', 'postgres')",
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
        (
            "SELECT pg_catalog.nextval('stress.runs_id_seq')",
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
        (
            "SELECT stress.run_load('1 second')",
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
    ] {
        let e = user.batch_execute(sql).unwrap_err();
        assert_eq!(e.code(), Some(&code), "{sql}: {e:?}");
    }
    // The upgraded functions work on the old records: the capture made on 0.1.0 compares with a
    // new one, and the report of a 0.1.0 run reads.
    let capture: i64 = value(&mut old, "SELECT stress.capture_state()");
    let identical: i64 = old
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'identical') - count(*)
             FROM stress.compare_state((SELECT min(id) FROM stress.state_captures), $1)",
            &[&capture],
        )
        .unwrap()
        .get(0);
    assert_eq!(identical, 0);
    let operations: i64 = value(
        &mut old,
        "SELECT count(*) FROM jsonb_object_keys(
             stress.report((SELECT min(id) FROM stress.runs WHERE kind = 'run_load'))->'operations')",
    );
    assert!(operations > 0);
}

/// From 0.2.0: its runs compare and are judged by the functions 0.3.0 added, and the seconds of a
/// load run without operations may now have no percentiles.
#[test]
fn alter_extension_update_from_0_2_0_ends_where_a_fresh_install_does() {
    let mut old = empty_database("it_upgrade_020");
    assert_available(&mut old, "0.2.0");
    for sql in [
        "CREATE EXTENSION pg_stress VERSION '0.2.0'",
        "SET stress.progress_interval = 0",
        "SELECT stress.generate_dataset(orders => 2000, seed => 1)",
    ] {
        old.batch_execute(sql).unwrap();
    }
    let first = run_detached(&mut old, "'1 second', workers => 2");
    let second = run_detached(&mut old, "'1 second', workers => 2");
    old.batch_execute("SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 20)")
        .unwrap();
    let before = record_counts(&mut old);
    old.batch_execute("ALTER EXTENSION pg_stress UPDATE")
        .unwrap();
    assert_same_as_a_fresh_install(&mut old, "it_upgrade_020_fresh");
    assert_eq!(record_counts(&mut old), before);
    let compared: i64 = value(
        &mut old,
        &format!(
            "SELECT count(*) FROM stress.compare_runs({first}, {second}) WHERE name = 'total'"
        ),
    );
    assert_eq!(compared, 5);
    let judged: i64 = value(
        &mut old,
        &format!(
            "SELECT count(*) FROM jsonb_object_keys(stress.assert_targets({second}, min_ops_per_sec => 0))"
        ),
    );
    assert_eq!(judged, 1);
    let nullable: i64 = value(
        &mut old,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'stress.samples'::regclass
         AND attname IN ('p50_ms', 'p99_ms') AND NOT attnotnull",
    );
    assert_eq!(nullable, 2);
    // Samples written before the update have no deadlock count (NULL: not 0), and the runs of
    // before have their page.
    let unknown: i64 = value(
        &mut old,
        &format!(
            "SELECT count(*) FROM stress.samples WHERE run_id = {first} AND deadlocks IS NULL"
        ),
    );
    assert!(unknown > 0, "{unknown} samples");
    let page: String = value(&mut old, &format!("SELECT stress.report_html({first})"));
    assert!(page.contains("<svg id=\"throughput\""));
}

/// 0.3.0 → 0.4.0: a ramp run under 0.3.0 (its old signature) is kept, the new ramp and the
/// capacity searches are there, and the workers' functions are still not PUBLIC's.
#[test]
fn alter_extension_update_from_0_3_0_ends_where_a_fresh_install_does() {
    let mut old = empty_database("it_upgrade_030");
    assert_available(&mut old, "0.3.0");
    for sql in [
        "CREATE EXTENSION pg_stress VERSION '0.3.0'",
        "SET stress.progress_interval = 0",
        "SELECT stress.generate_dataset(orders => 2000, seed => 1)",
    ] {
        old.batch_execute(sql).unwrap();
    }
    // 0.3.0's ramp, a function that waits, is refused by this library until the update (a clear
    // error, not "could not find function"); a run started there is still drawn (without the
    // contention the 0.3.0 database has no tables for).
    let e = old
        .batch_execute("SELECT count(*) FROM stress.ramp('{1,2}', '1 second')")
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED), "{e}");
    let hint = e
        .as_db_error()
        .and_then(|d| d.hint())
        .unwrap_or_default()
        .to_owned();
    assert!(hint.contains("ALTER EXTENSION pg_stress UPDATE"), "{hint}");
    let stepped = run_detached(&mut old, "'1 second', workers => 2");
    let page: String = value(&mut old, &format!("SELECT stress.report_html({stepped})"));
    assert!(page.contains("<svg id=\"throughput\"") && !page.contains("<h2>Contention</h2>"));
    let before = record_counts(&mut old);
    old.batch_execute("ALTER EXTENSION pg_stress UPDATE")
        .unwrap();
    assert_same_as_a_fresh_install(&mut old, "it_upgrade_030_fresh");
    assert_eq!(record_counts(&mut old), before);
    let first: i64 = old
        .query_one("CALL stress.ramp('{1,2}', '1 second')", &[])
        .unwrap()
        .get("series_id");
    let page: String = value(&mut old, &format!("SELECT stress.report_html({first})"));
    assert!(page.contains("<svg id=\"series-throughput\""));
    let public: bool = value(
        &mut old,
        "SELECT has_function_privilege('public', 'stress.find_capacity(float8, float8, int, interval, jsonb, jsonb, float8, int, int8, int, float8, float8, float8)', 'EXECUTE')",
    );
    assert!(!public, "PUBLIC may start workers through find_capacity");
}

/// 0.4.0 → 0.5.0: a load run under 0.4.0 is kept, stress.record_standby_run is there and, like the
/// functions that start workers, not PUBLIC's.
#[test]
fn alter_extension_update_from_0_4_0_ends_where_a_fresh_install_does() {
    let mut old = empty_database("it_upgrade_040");
    assert_available(&mut old, "0.4.0");
    for sql in [
        "CREATE EXTENSION pg_stress VERSION '0.4.0'",
        "SET stress.progress_interval = 0",
        "SELECT stress.generate_dataset(orders => 2000, seed => 1)",
    ] {
        old.batch_execute(sql).unwrap();
    }
    run_detached(&mut old, "'1 second', workers => 2");
    let before = record_counts(&mut old);
    old.batch_execute("ALTER EXTENSION pg_stress UPDATE")
        .unwrap();
    assert_same_as_a_fresh_install(&mut old, "it_upgrade_040_fresh");
    assert_eq!(record_counts(&mut old), before);
    let public: bool = value(
        &mut old,
        "SELECT has_function_privilege('public', 'stress.record_standby_run(text)', 'EXECUTE')",
    );
    assert!(!public, "PUBLIC may record runs through record_standby_run");
}

/// 0.5.0 → 0.6.0: the calls that waited are procedures (CALL); the runs of before are kept, a
/// waiting SELECT is refused with the CALL in its hint, and the procedures that start workers are
/// not PUBLIC's.
#[test]
fn alter_extension_update_from_0_5_0_ends_where_a_fresh_install_does() {
    let mut old = empty_database("it_upgrade_050");
    assert_available(&mut old, "0.5.0");
    for sql in [
        "CREATE EXTENSION pg_stress VERSION '0.5.0'",
        "SET stress.progress_interval = 0",
        "SELECT stress.generate_dataset(orders => 2000, seed => 1)",
    ] {
        old.batch_execute(sql).unwrap();
    }
    let before_run = run_detached(&mut old, "'1 second', workers => 2");
    // This library refuses 0.5.0's waiting forms before the update, saying to update first.
    let e = old
        .batch_execute(&format!("SELECT stress.wait({before_run})"))
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED), "{e}");
    let hint = e
        .as_db_error()
        .and_then(|d| d.hint())
        .unwrap_or_default()
        .to_owned();
    assert!(hint.contains("ALTER EXTENSION pg_stress UPDATE"), "{hint}");
    let before = record_counts(&mut old);
    old.batch_execute("ALTER EXTENSION pg_stress UPDATE")
        .unwrap();
    assert_same_as_a_fresh_install(&mut old, "it_upgrade_050_fresh");
    assert_eq!(record_counts(&mut old), before);
    let e = old
        .batch_execute("SELECT stress.run_load('1 second')")
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED), "{e}");
    let hint = e
        .as_db_error()
        .and_then(|d| d.hint())
        .unwrap_or_default()
        .to_owned();
    assert!(hint.contains("CALL stress.run_load_proc"), "{hint}");
    let status: String = old
        .query_one("CALL stress.wait($1)", &[&before_run])
        .unwrap()
        .get("status");
    assert_eq!(status, "completed");
    let run: i64 = old
        .query_one("CALL stress.run_load_proc('1 second', workers => 2)", &[])
        .unwrap()
        .get("run_id");
    assert!(run > before_run);
    for procedure in [
        "stress.run_load_proc",
        "stress.simulate_trading_day_proc",
        "stress.ramp",
        "stress.deadlock_test",
        "stress.find_optimal_pool_size",
        "stress.find_capacity",
    ] {
        let public: bool = value(
            &mut old,
            &format!(
                "SELECT bool_or(has_function_privilege('public', p.oid, 'EXECUTE')) FROM pg_proc p
                 WHERE p.oid = '{procedure}'::regproc"
            ),
        );
        assert!(!public, "PUBLIC may start workers through {procedure}");
    }
}

/// 0.6.0 → 0.7.0: generate_orders' and generate_audit_log's accounts default to the accounts that
/// exist; a run of before is kept, and orders appended to 0.6.0's dataset reference its accounts.
#[test]
fn alter_extension_update_from_0_6_0_ends_where_a_fresh_install_does() {
    let mut old = empty_database("it_upgrade_060");
    assert_available(&mut old, "0.6.0");
    for sql in [
        "CREATE EXTENSION pg_stress VERSION '0.6.0'",
        "SET stress.progress_interval = 0",
        "SELECT stress.generate_dataset(orders => 2000, seed => 1)",
    ] {
        old.batch_execute(sql).unwrap();
    }
    let before_run = run_detached(&mut old, "'1 second', workers => 2");
    let status: String = old
        .query_one("CALL stress.wait($1)", &[&before_run])
        .unwrap()
        .get("status");
    assert_eq!(status, "completed");
    let before = record_counts(&mut old);
    old.batch_execute("ALTER EXTENSION pg_stress UPDATE")
        .unwrap();
    assert_same_as_a_fresh_install(&mut old, "it_upgrade_060_fresh");
    assert_eq!(record_counts(&mut old), before);
    // (0.6.0's default of 10000 accounts broke the foreign key to the dataset's 100)
    let appended: i64 = value(&mut old, "SELECT stress.generate_orders(1000, seed => 2)");
    assert_eq!(appended, 1000);
    let accounts: i64 = value(&mut old, "SELECT max(account_id) FROM stress_data.orders");
    assert!(accounts <= value::<i64>(&mut old, "SELECT max(id) FROM stress_data.accounts"));
}

/// 0.7.0 → 0.8.0: runs record their environment and histograms; compare_runs is pg_stress's own,
/// with a verdict per figure. A run of before is kept and compares with a new one, saying what it
/// lacks (no environment, no histogram) rather than guessing.
#[test]
fn alter_extension_update_from_0_7_0_ends_where_a_fresh_install_does() {
    let mut old = empty_database("it_upgrade_070");
    assert_available(&mut old, "0.7.0");
    for sql in [
        "CREATE EXTENSION pg_stress VERSION '0.7.0'",
        "SET stress.progress_interval = 0",
        "SELECT stress.generate_dataset(orders => 2000, seed => 1)",
    ] {
        old.batch_execute(sql).unwrap();
    }
    // (this library, 0.7.0's tables: no environment, no histogram column to write)
    let before_run = run_detached(&mut old, "'4 seconds', workers => 2");
    let status: String = old
        .query_one("CALL stress.wait($1)", &[&before_run])
        .unwrap()
        .get("status");
    assert_eq!(status, "completed");
    let before = record_counts(&mut old);
    old.batch_execute("ALTER EXTENSION pg_stress UPDATE")
        .unwrap();
    assert_same_as_a_fresh_install(&mut old, "it_upgrade_070_fresh");
    assert_eq!(record_counts(&mut old), before);
    let after_run = run_detached(&mut old, "'4 seconds', workers => 2");
    let recorded: bool = value(
        &mut old,
        &format!("SELECT environment ? 'settings' FROM stress.runs WHERE id = {after_run}"),
    );
    assert!(recorded);
    let note: String = value(
        &mut old,
        &format!(
            "SELECT note FROM stress.compare_runs({before_run}, {after_run})
             WHERE name = 'total' AND metric = 'p99_ms'"
        ),
    );
    assert!(note.contains("before pg_stress 0.8.0"), "{note}");
}

/// 0.8.0 → 0.9.0: the timeline keeps the server's WAL flushes and, on PostgreSQL 16 and later,
/// pg_stat_io's relation I/O. This library writes 0.8.0's timeline (without those columns) until
/// the update; the rows of before keep NULLs there, and a run after it fills them in.
#[test]
fn alter_extension_update_from_0_8_0_ends_where_a_fresh_install_does() {
    let mut old = empty_database("it_upgrade_080");
    assert_available(&mut old, "0.8.0");
    for sql in [
        "CREATE EXTENSION pg_stress VERSION '0.8.0'",
        "SET stress.progress_interval = 0",
        "SELECT stress.generate_dataset(orders => 2000, seed => 1)",
    ] {
        old.batch_execute(sql).unwrap();
    }
    let before_run = run_detached(&mut old, "'3 seconds', workers => 2");
    let status: String = old
        .query_one("CALL stress.wait($1)", &[&before_run])
        .unwrap()
        .get("status");
    assert_eq!(status, "completed");
    let rows: i64 = value(
        &mut old,
        &format!("SELECT count(*) FROM stress.timeline WHERE run_id = {before_run}"),
    );
    assert!(
        rows >= 2,
        "0.8.0's timeline, written by this library: {rows} rows"
    );
    let before = record_counts(&mut old);
    old.batch_execute("ALTER EXTENSION pg_stress UPDATE")
        .unwrap();
    assert_same_as_a_fresh_install(&mut old, "it_upgrade_080_fresh");
    assert_eq!(record_counts(&mut old), before);
    let kept: i64 = value(
        &mut old,
        &format!(
            "SELECT count(*) FROM stress.timeline WHERE run_id = {before_run} AND wal_syncs IS NULL"
        ),
    );
    assert_eq!(kept, rows);
    let after_run = run_detached(&mut old, "'3 seconds', workers => 2");
    old.query_one("CALL stress.wait($1)", &[&after_run])
        .unwrap();
    // (every second has its WAL flushes; pg_stat_io's figures from PostgreSQL 16 on)
    let (seconds, flushed, with_io): (i64, i64, i64) = {
        let row = old
            .query_one(
                "SELECT count(*), count(wal_syncs), count(io_reads) FROM stress.timeline WHERE run_id = $1",
                &[&after_run],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let server_version: i32 = value::<String>(&mut old, "SHOW server_version_num")
        .parse()
        .unwrap();
    assert!(seconds >= 2 && flushed == seconds, "{seconds} {flushed}");
    assert_eq!(with_io, if server_version >= 160000 { seconds } else { 0 });
}
