//! The hostile-role tier: an unprivileged LOGIN role (USAGE on stress_data, a schema of its own,
//! nothing else) tries to crash the server, gain a privilege, and read, forge or destroy what is not
//! its own. After every attempt: the postmaster was not restarted, the role is no superuser, none of
//! its trap functions ran as another role, and the administrator's data and records are intact.

use super::common::{config, connect, fresh_database, value};
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

/// The grants that let `role` start workers.
fn worker_grants(role: &str) -> String {
    format!(
        "GRANT EXECUTE ON FUNCTION stress.run_load, stress.simulate_trading_day, stress.record_standby_run TO {role};
         GRANT EXECUTE ON PROCEDURE stress.run_load_proc, stress.simulate_trading_day_proc, stress.ramp,
             stress.deadlock_test, stress.find_optimal_pool_size, stress.find_capacity TO {role}"
    )
}

/// A database with the administrator's dataset and records, and a hostile role connected to it.
struct Arena {
    admin: Client,
    attacker: Client,
    role: String,
    postmaster_started: String,
    audit_rows: i64,
    admin_runs: i64,
    cases: usize,
}

impl Arena {
    fn new(db: &str, role: &str, may_start_workers: bool) -> Arena {
        let mut admin = fresh_database(db);
        admin
            .batch_execute(&format!(
                "SET stress.progress_interval = 0;
                 SELECT stress.generate_dataset(orders => 500, seed => 1);
                 SELECT stress.capture_state();
                 DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;
                 GRANT USAGE ON SCHEMA stress_data TO {role};
                 GRANT SELECT ON ALL TABLES IN SCHEMA stress_data TO {role};
                 CREATE SCHEMA hostile AUTHORIZATION {role};
                 GRANT CREATE ON DATABASE {db} TO {role};"
            ))
            .unwrap();
        if may_start_workers {
            admin.batch_execute(&worker_grants(role)).unwrap();
        }
        let mut attacker = config(db).user(role).connect(NoTls).unwrap();
        // Trap functions and views that record who ran them, and try to make the role a superuser
        // when they run as anyone else; a search_path that puts them before pg_catalog.
        attacker
            .batch_execute(
                "CREATE TABLE hostile.owner_calls (who name, what text);
                 GRANT INSERT ON hostile.owner_calls TO PUBLIC;
                 CREATE FUNCTION hostile.trap(what text) RETURNS boolean LANGUAGE plpgsql AS $$
                 BEGIN
                     INSERT INTO hostile.owner_calls VALUES (current_user, what);
                     IF current_user <> session_user THEN
                         BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
                         EXCEPTION WHEN OTHERS THEN NULL; END;
                     END IF;
                     RETURN true;
                 END $$;
                 CREATE FUNCTION hostile.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS
                     $$ BEGIN PERFORM hostile.trap('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END $$;
                 CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE plpgsql AS
                     $$ BEGIN PERFORM hostile.trap('now'); RETURN pg_catalog.now(); END $$;
                 CREATE FUNCTION hostile.pg_get_userbyid(oid) RETURNS name LANGUAGE plpgsql AS
                     $$ BEGIN PERFORM hostile.trap('pg_get_userbyid'); RETURN pg_catalog.pg_get_userbyid($1); END $$;
                 CREATE FUNCTION hostile.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS
                     $$ BEGIN PERFORM hostile.trap('nextval'); RETURN pg_catalog.nextval($1); END $$;
                 CREATE FUNCTION hostile.current_database() RETURNS name LANGUAGE plpgsql AS
                     $$ BEGIN PERFORM hostile.trap('current_database'); RETURN pg_catalog.current_database(); END $$;
                 -- Operators before pg_catalog's: an unqualified = or < on these types would call them.
                 CREATE FUNCTION hostile.int8_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
                     $$ BEGIN PERFORM hostile.trap('= bigint'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
                 CREATE OPERATOR hostile.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.int8_eq);
                 CREATE FUNCTION hostile.name_eq(name, name) RETURNS boolean LANGUAGE plpgsql AS
                     $$ BEGIN PERFORM hostile.trap('= name'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
                 CREATE OPERATOR hostile.= (LEFTARG = name, RIGHTARG = name, FUNCTION = hostile.name_eq);
                 CREATE FUNCTION hostile.ts_lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
                     $$ BEGIN PERFORM hostile.trap('< timestamptz'); RETURN $1 OPERATOR(pg_catalog.<) $2; END $$;
                 CREATE OPERATOR hostile.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_lt);
                 CREATE VIEW hostile.pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE hostile.trap('pg_roles');
                 CREATE VIEW hostile.pg_class AS SELECT * FROM pg_catalog.pg_class WHERE hostile.trap('pg_class');
                 CREATE VIEW hostile.pg_stat_activity AS
                     SELECT * FROM pg_catalog.pg_stat_activity WHERE hostile.trap('pg_stat_activity');
                 SET search_path = hostile, pg_catalog, public;
                 SET stress.data_schema = 'hostile';
                 SET stress.progress_interval = 0;",
            )
            .unwrap();
        let postmaster_started = value(&mut admin, "SELECT pg_postmaster_start_time()::text");
        let audit_rows = value(&mut admin, "SELECT count(*) FROM stress_data.audit_log");
        let admin_runs = value(
            &mut admin,
            "SELECT count(*) FROM stress.runs WHERE run_as = current_user",
        );
        Arena {
            admin,
            attacker,
            role: role.into(),
            postmaster_started,
            audit_rows,
            admin_runs,
            cases: 0,
        }
    }

    /// Run `sql` as the hostile role: it must fail with `code`, or succeed when `code` is None.
    /// Then check that nothing was gained or lost.
    fn attempt(&mut self, sql: &str, code: Option<SqlState>) {
        let outcome = self.attacker.batch_execute(sql);
        match (&outcome, &code) {
            (Ok(()), None) => {}
            (Err(e), Some(expected)) => assert_eq!(
                e.code(),
                Some(expected),
                "{sql}: expected {expected:?}, got {e:?}"
            ),
            _ => panic!("{sql}: expected {code:?}, got {outcome:?}"),
        }
        // An aborted transaction block would hide the next attempt's outcome.
        let _ = self.attacker.batch_execute("ROLLBACK");
        self.assert_nothing_gained_or_lost(sql);
        self.cases += 1;
    }

    fn assert_nothing_gained_or_lost(&mut self, after: &str) {
        let started: String = value(&mut self.admin, "SELECT pg_postmaster_start_time()::text");
        assert_eq!(
            started, self.postmaster_started,
            "the server restarted after {after}"
        );
        let (superuser, createrole): (bool, bool) = {
            let row = self
                .admin
                .query_one(
                    "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = $1",
                    &[&self.role],
                )
                .unwrap();
            (row.get(0), row.get(1))
        };
        assert!(
            !superuser && !createrole,
            "{} was elevated by {after}",
            self.role
        );
        let foreign_calls: i64 = self
            .admin
            .query_one(
                "SELECT count(*) FROM hostile.owner_calls WHERE who <> $1",
                &[&self.role],
            )
            .unwrap()
            .get(0);
        assert_eq!(foreign_calls, 0, "a trap ran as another role after {after}");
        let audit: i64 = value(
            &mut self.admin,
            "SELECT count(*) FROM stress_data.audit_log",
        );
        assert_eq!(
            audit, self.audit_rows,
            "audit_log rows changed after {after}"
        );
        let runs: i64 = value(
            &mut self.admin,
            "SELECT count(*) FROM stress.runs WHERE run_as = current_user",
        );
        assert_eq!(
            runs, self.admin_runs,
            "the administrator's runs changed after {after}"
        );
    }
}

/// Owner-privileged bookkeeping never runs the caller's functions or views, whatever its
/// search_path: every function that records a run, with traps in front of pg_catalog.
#[test]
fn search_path_and_temp_object_hijacks_gain_nothing() {
    let mut a = Arena::new("it_hostile_hijack", "it_hostile_hijack", true);
    let ok = None;
    for sql in [
        "SELECT stress.generate_dataset(orders => 50, seed => 2)",
        "SELECT stress.generate_orders(10, seed => 1, accounts => 2)",
        "SELECT * FROM stress.benchmark(ARRAY['SELECT 1'], iterations => 5)",
        "SELECT stress.checksum('hostile.orders')",
        "SELECT stress.capture_state('hostile')",
        "SELECT * FROM stress.verify_integrity('hostile')",
        "SELECT * FROM stress.bloat_report('hostile')",
        "SELECT stress.record_health_check('hostile')",
        "CREATE TABLE hostile.logs (at timestamptz NOT NULL); INSERT INTO hostile.logs SELECT pg_catalog.now() - g * interval '1 day' FROM generate_series(1, 20) g;
         SELECT stress.archive('hostile.logs', 'at', '10 days')",
        "SELECT stress.set_retention('hostile.logs', 'at', '5 days'); SELECT * FROM stress.apply_retention()",
        "SELECT stress.explain('SELECT 1')",
        "CALL stress.run_load_proc('1 second', workers => 1)",
        // (its own run, judged and compared with the traps in place)
        "SELECT stress.assert_targets((SELECT max(id) FROM stress.runs WHERE kind = 'run_load'), min_ops_per_sec => 0);
         SELECT * FROM stress.compare_runs((SELECT max(id) FROM stress.runs WHERE kind = 'run_load'),
                                           (SELECT max(id) FROM stress.runs WHERE kind = 'run_load'))",
        "CALL stress.benchmark_proc(ARRAY['SELECT 1'], iterations => 20, concurrency => 2)",
        // A query that leaves a temp view named pg_roles in the workers' sessions.
        "CALL stress.benchmark_proc(ARRAY['CREATE OR REPLACE TEMP VIEW pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE hostile.trap(''temp'')'],
                                        iterations => 4, concurrency => 2, rollback => false)",
        "SELECT stress.generate_orders(2000, seed => 3, accounts => 2, workers => 2)",
        // Identifiers that would end the statement if pg_stress concatenated them into SQL.
        r#"CREATE TABLE hostile."t'; DROP TABLE hostile.owner_calls; --" ("at"")--" timestamptz NOT NULL);
           INSERT INTO hostile."t'; DROP TABLE hostile.owner_calls; --" SELECT pg_catalog.now() - interval '1 year';
           SELECT stress.checksum('hostile."t''; DROP TABLE hostile.owner_calls; --"');
           SELECT stress.set_retention('hostile."t''; DROP TABLE hostile.owner_calls; --"', 'at")--', '1 day');
           SELECT stress.archive('hostile."t''; DROP TABLE hostile.owner_calls; --"', 'at")--', '1 day');
           SELECT stress.capture_state('hostile')"#,
    ] {
        a.attempt(sql, ok.clone());
    }
    // The traps did run, as the role itself, where its own SQL called them (so they were reachable).
    let own_calls: i64 = value(&mut a.admin, "SELECT count(*) FROM hostile.owner_calls");
    assert!(own_calls > 0);
    // A plain SELECT that writes through a function, benchmarked on workers through read-only SPI
    // (no transaction id asked for the read): the function's writes happen, as the role (the
    // trap's escalation attempt is checked by assert_nothing_gained_or_lost), and are kept.
    a.attempt(
        "CALL stress.benchmark_proc(ARRAY['SELECT hostile.trap(''read-only spi'')'],
                                    iterations => 20, warmup => 0, concurrency => 2)",
        ok.clone(),
    );
    let written: i64 = value(
        &mut a.admin,
        "SELECT count(*) FROM hostile.owner_calls WHERE what = 'read-only spi' AND who = 'it_hostile_hijack'",
    );
    assert_eq!(written, 20, "the benchmarked SELECT's writes");
    let left: i64 = value(
        &mut a.attacker,
        r#"SELECT count(*) FROM hostile."t'; DROP TABLE hostile.owner_calls; --""#,
    );
    assert_eq!(left, 0, "the oddly named table's old row was not archived");
    assert_eq!(a.cases, 18);
}

/// Every generator and reader against relations of the wrong kind: a clear ERROR, never a crash.
#[test]
fn odd_relation_kinds_are_refused_before_any_crash() {
    if !crate::common::has_module(
        "postgres_fdw",
        "odd_relation_kinds_are_refused_before_any_crash",
    ) {
        return;
    }
    let mut a = Arena::new("it_hostile_kinds", "it_hostile_kinds", false);
    a.admin
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS postgres_fdw;
             CREATE SERVER it_loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'postgres');
             GRANT USAGE ON FOREIGN SERVER it_loopback TO it_hostile_kinds",
        )
        .unwrap();
    let wrong = Some(SqlState::WRONG_OBJECT_TYPE);
    let unsupported = Some(SqlState::FEATURE_NOT_SUPPORTED);
    let cases: Vec<(String, Option<SqlState>)> = vec![
        // The crash of issue 11: a temp partitioned table where the generator writes.
        (
            "CREATE TEMP TABLE accounts (id bigint) PARTITION BY RANGE (id); SET stress.data_schema = 'pg_temp';
             SELECT stress.generate_accounts(1)".into(),
            wrong.clone(),
        ),
        ("CREATE SCHEMA k1; CREATE VIEW k1.accounts AS SELECT 1 AS id; SET stress.data_schema = 'k1'; SELECT stress.generate_accounts(1)".into(), wrong.clone()),
        ("CREATE SCHEMA k2; CREATE MATERIALIZED VIEW k2.orders AS SELECT 1 AS id; SET stress.data_schema = 'k2'; SELECT stress.generate_orders(1)".into(), wrong.clone()),
        ("CREATE SCHEMA k3; CREATE FOREIGN TABLE k3.audit_log (id bigint) SERVER it_loopback; SET stress.data_schema = 'k3'; SELECT stress.generate_audit_log(1)".into(), wrong.clone()),
        ("CREATE SCHEMA k4; CREATE SEQUENCE k4.orders; SET stress.data_schema = 'k4'; SELECT stress.generate_orders(1)".into(), wrong.clone()),
        (
            "CREATE SCHEMA k5; CREATE TABLE k5.p (LIKE stress_data.orders) PARTITION BY RANGE (id);
             CREATE TABLE k5.orders PARTITION OF k5.p FOR VALUES FROM (0) TO (10);
             SET stress.data_schema = 'k5'; SELECT stress.generate_orders(100)".into(),
            unsupported.clone(),
        ),
        (
            "CREATE SCHEMA k6; CREATE TABLE k6.orders (LIKE stress_data.orders);
             ALTER TABLE k6.orders ALTER COLUMN price DROP NOT NULL;
             SET stress.data_schema = 'k6'; SELECT stress.generate_orders(1)".into(),
            Some(SqlState::INVALID_TABLE_DEFINITION),
        ),
        // Kinds the bulk path can write: temp, unlogged, an inheritance child.
        ("CREATE TEMP TABLE orders (LIKE stress_data.orders INCLUDING ALL); SET stress.data_schema = 'pg_temp'; SELECT stress.generate_orders(5)".into(), None),
        ("CREATE SCHEMA k7; CREATE UNLOGGED TABLE k7.orders (LIKE stress_data.orders INCLUDING ALL); SET stress.data_schema = 'k7'; SELECT stress.generate_orders(5)".into(), None),
        ("CREATE SCHEMA k8; CREATE TABLE k8.base (LIKE stress_data.orders INCLUDING ALL); CREATE TABLE k8.orders () INHERITS (k8.base); SET stress.data_schema = 'k8'; SELECT stress.generate_orders(5)".into(), None),
        // Readers.
        ("CREATE VIEW hostile.v AS SELECT 1 AS x; SELECT stress.checksum('hostile.v')".into(), wrong.clone()),
        ("CREATE FOREIGN TABLE hostile.f (x int) SERVER it_loopback; SELECT stress.checksum('hostile.f')".into(), wrong.clone()),
        ("CREATE SEQUENCE hostile.s; SELECT stress.checksum('hostile.s')".into(), wrong.clone()),
        (
            "CREATE TABLE hostile.pt (x int) PARTITION BY RANGE (x);
             CREATE FOREIGN TABLE hostile.pt_f PARTITION OF hostile.pt FOR VALUES FROM (0) TO (10) SERVER it_loopback;
             SELECT stress.checksum('hostile.pt')".into(),
            wrong.clone(),
        ),
        ("CREATE SCHEMA k9; CREATE VIEW k9.trades AS SELECT * FROM stress_data.trades; SET stress.data_schema = 'k9'; SELECT stress.generate_positions()".into(), wrong.clone()),
        ("CREATE SCHEMA k10; CREATE TABLE k10.trades (LIKE stress_data.trades) PARTITION BY RANGE (id); SET stress.data_schema = 'k10'; SELECT stress.generate_positions()".into(), wrong.clone()),
        // Parallel checksums: as many workers as the role can ask for, on its own table, on the
        // administrator's (read as the role), a temporary table (never given to workers), and a
        // table whose row-level security would be bypassed, its own or pg_stress's records (refused
        // before any worker starts).
        (
            // (max_parallel_workers, the server's cap, stays where the administrator set it: any
            // role may raise it for its own parallel queries too, and here it would take the worker
            // slots of the tests running beside this one)
            "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 1024;
             CREATE TABLE hostile.wide AS SELECT g, repeat('w', g % 100) AS t FROM generate_series(1, 20000) g;
             ALTER TABLE hostile.wide SET (parallel_workers = 1024);
             SELECT stress.checksum('hostile.wide'); SELECT stress.checksum('stress_data.orders');
             CREATE TEMP TABLE wide_temp AS SELECT * FROM hostile.wide; SELECT stress.checksum('pg_temp.wide_temp')".into(),
            None,
        ),
        (
            "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 4;
             CREATE TABLE hostile.rls AS SELECT g FROM generate_series(1, 20000) g;
             ALTER TABLE hostile.rls ENABLE ROW LEVEL SECURITY; ALTER TABLE hostile.rls FORCE ROW LEVEL SECURITY;
             SELECT stress.checksum('hostile.rls')".into(),
            unsupported.clone(),
        ),
        (
            "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 4;
             SELECT stress.checksum('stress.runs')".into(),
            unsupported.clone(),
        ),
        // Someone else's table: refused before it is locked.
        ("SET stress.data_schema = 'stress_data'; SELECT stress.generate_audit_log(5)".into(), Some(SqlState::INSUFFICIENT_PRIVILEGE)),
        ("SET stress.data_schema = 'stress_data'; SELECT stress.generate_positions()".into(), Some(SqlState::INSUFFICIENT_PRIVILEGE)),
    ];
    for (sql, code) in cases {
        a.attempt(&sql, code);
    }
    assert_eq!(a.cases, 21);
}

/// Records are private and written only by pg_stress; retention policies only through
/// set_retention, for tables the role may empty itself.
#[test]
fn records_cannot_be_read_forged_or_destroyed_across_roles() {
    let mut a = Arena::new("it_hostile_records", "it_hostile_records", false);
    // (a run of the administrator's with deadlocks and lock waits in its records)
    let admin_run: i64 = value(
        &mut a.admin,
        "CALL stress.deadlock_test(duration => '2 seconds')",
    );
    let theirs: i64 = value(
        &mut a.admin,
        &format!(
            "SELECT (SELECT count(*) FROM stress.conflicts WHERE run_id = {admin_run})
                  + (SELECT count(*) FROM stress.lock_waits WHERE run_id = {admin_run})"
        ),
    );
    assert!(
        theirs > 0,
        "the deadlock test left no conflict or lock wait"
    );
    a.admin_runs += 1;
    // (and a series and a concurrent benchmark of the administrator's: their steps and rows are
    // behind the same row-level security, read as the caller)
    let admin_series: i64 = value(
        &mut a.admin,
        "CALL stress.ramp('{1}', '1 second', mix => '{\"position\": 1}')",
    );
    let admin_bench: i64 = value(
        &mut a.admin,
        "CALL stress.benchmark_proc(ARRAY['SELECT 1'], iterations => 100, concurrency => 2)",
    );
    a.admin_runs += 2;
    let steps: i64 = value(
        &mut a.admin,
        &format!(
            "SELECT (SELECT count(*) FROM stress.series_steps WHERE series_id = {admin_series})
                  + (SELECT count(*) FROM stress.benchmark_results({admin_bench}))"
        ),
    );
    assert_eq!(steps, 2);
    let capture: i64 = value(&mut a.admin, "SELECT max(id) FROM stress.state_captures");
    let denied = Some(SqlState::INSUFFICIENT_PRIVILEGE);
    let invalid = Some(SqlState::INVALID_PARAMETER_VALUE);
    let seen: i64 = value(
        &mut a.attacker,
        "SELECT (SELECT count(*) FROM stress.runs) + (SELECT count(*) FROM stress.results)
              + (SELECT count(*) FROM stress.samples) + (SELECT count(*) FROM stress.timeline)
              + (SELECT count(*) FROM stress.conflicts) + (SELECT count(*) FROM stress.lock_waits)
              + (SELECT count(*) FROM stress.replication_lag)
              + (SELECT count(*) FROM stress.analyze_deadlocks())
              + (SELECT count(*) FROM stress.state_captures) + (SELECT count(*) FROM stress.retention_policies)
              + (SELECT count(*) FROM stress.series_steps)",
    );
    assert_eq!(seen, 0, "another role's records are visible");
    let bench_rows: i64 = value(
        &mut a.attacker,
        &format!("SELECT count(*) FROM stress.benchmark_results({admin_bench})"),
    );
    assert_eq!(bench_rows, 0, "another role's benchmark rows are visible");
    let cases: Vec<(String, Option<SqlState>)> = vec![
        ("INSERT INTO stress.runs (id, kind, run_as) VALUES (1000000, 'run_load', 'postgres')".into(), denied.clone()),
        ("UPDATE stress.runs SET status = 'failed'".into(), denied.clone()),
        ("DELETE FROM stress.results".into(), denied.clone()),
        ("INSERT INTO stress.retention_policies (relation, ts_column, keep, created_by) VALUES ('stress_data.audit_log', 'ts', '0', 'postgres')".into(), denied.clone()),
        ("SELECT pg_catalog.nextval('stress.runs_id_seq')".into(), denied.clone()),
        ("SELECT * FROM stress.load_worker_results".into(), denied.clone()),
        ("TRUNCATE stress.samples".into(), denied.clone()),
        ("INSERT INTO stress.timeline (run_id, ts, elapsed_s, wait_events, lock_waits, wal_bytes, blks_hit, blks_read,
                                       xact_commit, xact_rollback, checkpoints, autovacuum_workers)
          SELECT id, pg_catalog.now(), 0, '{}', 0, 0, 0, 0, 0, 0, 0, 0 FROM stress.runs".into(), denied.clone()),
        ("DELETE FROM stress.timeline".into(), denied.clone()),
        (format!("SELECT stress.report({admin_run})"), invalid.clone()),
        (format!("CALL stress.wait({admin_run})"), invalid.clone()),
        // Another role's runs do not exist for these either (row-level security, as the caller).
        (format!("SELECT * FROM stress.compare_runs({admin_run}, {admin_run})"), invalid.clone()),
        (format!("SELECT * FROM stress.compare_runs(ARRAY[{admin_run}], {admin_run})"), invalid.clone()),
        (format!("SELECT * FROM stress.environment_diff({admin_run}, {admin_run})"), invalid.clone()),
        (format!("SELECT * FROM stress.environment_diff(ARRAY[{admin_run}], {admin_run})"), invalid.clone()),
        (format!("SELECT stress.baseline_runs({admin_run})"), invalid.clone()),
        (format!("SELECT stress.report_html({admin_run}, {admin_run})"), invalid.clone()),
        ("UPDATE stress.runs SET environment = '{}'".into(), denied.clone()),
        ("UPDATE stress.results SET histogram = NULL".into(), denied.clone()),
        (format!("SELECT stress.assert_targets({admin_run})"), invalid.clone()),
        (format!("SELECT stress.report_html({admin_run})"), invalid.clone()),
        (format!("SELECT * FROM stress.analyze_deadlocks({admin_run})"), invalid.clone()),
        (format!("SELECT * FROM stress.lock_contention({admin_run})"), invalid.clone()),
        ("DELETE FROM stress.conflicts".into(), denied.clone()),
        ("INSERT INTO stress.replication_lag (run_id, ts, elapsed_s, standby)
          SELECT id, pg_catalog.now(), 0, 'forged' FROM stress.runs".into(), denied.clone()),
        ("SELECT * FROM stress.wait_for_replicas('1 second')".into(), denied.clone()),
        ("INSERT INTO stress.lock_waits (run_id, pid, wait_started, last_seen, waited_ms, locktype, mode)
          SELECT id, 1, pg_catalog.now(), pg_catalog.now(), 1, 'relation', 'AccessExclusiveLock' FROM stress.runs".into(), denied.clone()),
        (format!("SELECT * FROM stress.compare_state({capture}, {capture})"), invalid.clone()),
        ("SELECT stress.record_call('run_load', '{}', pg_catalog.now())".into(), invalid.clone()),
        ("SELECT stress.set_retention('stress_data.audit_log', 'ts', '0')".into(), denied.clone()),
        ("SELECT stress.record_retention_policy('stress_data.audit_log'::regclass, 'ts', '0', NULL, 10)".into(), denied.clone()),
        // The records a role makes are its own, with ids from the extension.
        ("SELECT stress.record_call('archive', '{}', pg_catalog.now(), '[{\"name\": \"x\", \"rows\": 1}]')".into(), None),
    ];
    for (sql, code) in cases {
        a.attempt(&sql, code);
    }
    let own: (String, i64) = a
        .attacker
        .query_one(
            "SELECT run_as::text, id FROM stress.runs ORDER BY id DESC LIMIT 1",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(own.0, "it_hostile_records");
    assert!(own.1 > admin_run);
    // The administrator's daily retention job deletes nothing the role asked for.
    let applied: i64 = value(
        &mut a.admin,
        "SELECT count(*) FROM stress.apply_retention()",
    );
    assert_eq!(applied, 0);
    a.assert_nothing_gained_or_lost("apply_retention");
    // The administrator sees the role's record; pg_read_all_stats members too.
    let visible: i64 = value(
        &mut a.admin,
        "SELECT count(*) FROM stress.runs WHERE run_as = 'it_hostile_records'",
    );
    assert_eq!(visible, 1);
    // Markup in a role's records stays text in the page another role opens: a query, a name and
    // a parameter that try to close the page's elements and run a script.
    let markup =
        r#"</pre></td></table><script>alert(document.cookie)</script><img src=x onerror=alert(1)>"#;
    a.attempt(
        &format!(
            "SELECT stress.record_call('archive', jsonb_build_object('note', $m${markup}$m$), pg_catalog.now(),
                                       jsonb_build_array(jsonb_build_object('name', $m${markup}$m$, 'rows', 1)))"
        ),
        None,
    );
    let theirs: i64 = value(
        &mut a.admin,
        "SELECT max(id) FROM stress.runs WHERE run_as = 'it_hostile_records'",
    );
    let page: String = value(
        &mut a.admin,
        &format!("SELECT stress.report_html({theirs})"),
    );
    assert!(
        !page.contains("<script") && !page.contains("<img"),
        "markup from a record reached the page"
    );
    assert_eq!(
        page.matches("&lt;script&gt;alert(document.cookie)").count(),
        2
    );
    assert_eq!(a.cases, 33);
}

/// Starting background workers needs a grant; bad numbers are 22023, never a panic or XX000.
#[test]
fn workers_need_a_grant_and_bad_numbers_are_refused() {
    let mut a = Arena::new("it_hostile_workers", "it_hostile_workers", false);
    let denied = Some(SqlState::INSUFFICIENT_PRIVILEGE);
    for sql in [
        "CALL stress.run_load_proc('1 second')",
        "CALL stress.ramp('{1,2}', '1 second')",
        "CALL stress.find_optimal_pool_size(1, 2, 100, '1 second')",
        "CALL stress.find_capacity(100, step => '1 second')",
        "CALL stress.deadlock_test()",
        "CALL stress.simulate_trading_day_proc('1 second')",
        "CALL stress.benchmark_proc(ARRAY['SELECT 1'], iterations => 10, concurrency => 2)",
        "SELECT stress.generate_orders(1000, workers => 2)",
        // (recording a standby's run, which any role could otherwise use to make up runs)
        "SELECT stress.record_standby_run('{}')",
    ] {
        a.attempt(sql, denied.clone());
    }
    a.admin
        .batch_execute(&worker_grants("it_hostile_workers"))
        .unwrap();
    a.attacker
        .batch_execute("SET stress.data_schema = 'stress_data'")
        .unwrap();
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let invalid = Some(SqlState::INVALID_PARAMETER_VALUE);
    for sql in [
        "CALL stress.run_load_proc('1 second', rate => 'NaN')".to_string(),
        "CALL stress.run_load_proc('1 second', rate => 'Infinity')".into(),
        "CALL stress.run_load_proc('1 second', mix => '{\"place_order\": 1e308, \"execute_trade\": 1e308}')".into(),
        format!("CALL stress.run_load_proc('1 second', mix => '{{\"place_order\": {deep}}}')"),
        format!("CALL stress.run_load_proc('1 second', transactions => '{deep}')"),
        "CALL stress.simulate_trading_day_proc('1 second', orders_per_second => 1e308, trades_per_second => 1e308)".into(),
        "CALL stress.ramp('{1}', '1 second', max_error_rate => 'NaN')".into(),
        "CALL stress.ramp('{1}', '1 second', max_p99_ms => '-Infinity')".into(),
        "CALL stress.ramp('{1}', '1 second', max_throughput_drop => 'NaN')".into(),
        "CALL stress.find_optimal_pool_size(4, 2, 100)".into(),
        "CALL stress.find_optimal_pool_size(1, 2, 'NaN')".into(),
        "CALL stress.find_capacity('Infinity')".into(),
        "CALL stress.find_capacity(100, max_error_rate => 2)".into(),
        "CALL stress.find_capacity(100, start_rate => 'NaN')".into(),
        "CALL stress.find_capacity(100, max_steps => 1000000)".into(),
        "CALL stress.find_capacity(100, step => '1 millisecond')".into(),
        "CALL stress.find_capacity(100, workers => 100000)".into(),
        "SET stress.data_schema = 'hostile'; SELECT stress.generate_market_data(start_at => '-infinity', end_at => 'infinity')".into(),
        "SET stress.data_schema = 'hostile'; SELECT stress.generate_orders(1, start_at => 'infinity')".into(),
        "SET stress.data_schema = 'hostile'; SELECT stress.generate_accounts(1, start_at => '-infinity')".into(),
        "SET stress.data_schema = 'hostile'; SELECT stress.generate_trades(1, fill_rate => 'NaN')".into(),
        "SET stress.data_schema = 'hostile'; SELECT stress.generate_dataset(orders => 10, trades_per_order => 'Infinity')".into(),
        format!("SET stress.data_schema = 'hostile'; SELECT stress.generate_dataset(spec => '{{\"orders\": {deep}}}')"),
        format!("SET stress.data_schema = 'hostile'; SELECT stress.generate_orders(1, distribution => '{deep}')"),
    ] {
        a.attempt(&sql, invalid.clone());
    }
    // A data schema that tries to close the quoting of the statements built around it: the name
    // is a name (nothing runs), and the run is refused before any worker starts. (The SET on its
    // own: a CALL in a multi-statement string is in an implicit transaction block, 25001.)
    a.attacker
        .batch_execute("SET stress.data_schema = 'x\"; DROP TABLE stress_data.audit_log; --'")
        .unwrap();
    a.attempt(
        "CALL stress.find_capacity(100, step => '1 second', max_steps => 1)",
        invalid.clone(),
    );
    a.attacker
        .batch_execute("RESET stress.data_schema")
        .unwrap();
    // A standby's run, as a role could forge it: each figure is checked before anything is
    // written, and what is written is the role's own.
    let config = r#"{\"rate\": 0, \"weights\": [0,0,0,0,1,0,0,0], \"max_retries\": 0, \"seed\": 1,
        \"accounts\": 10, \"first_order_id\": 1, \"first_trade_id\": 1, \"first_audit_id\": 1,
        \"hot_accounts\": 0, \"transfer_pause\": 0, \"day_peaks\": null, \"transactions\": null,
        \"slow_ms\": 100, \"schema\": \"stress_data\",
        \"blocks_start\": {\"heap_hit\": 0, \"heap_read\": 0, \"index_hit\": 0, \"index_read\": 0}}"#
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let batch = |task: &str, started_at: &str, marks: &str| {
        format!(
            r#"SELECT stress.record_standby_run('{{"kind": "run_load", "parameters": {{"workers": 1}},
                 "config": "{config}", "workers": 1, "started_at": {started_at},
                 "workers_results": [{{"loop_started": 1000, "loop_ended": 2000, "tasks": [{task}]}}],
                 "closing": {{"cancelled": false, "workers_lost": 0, "peak_connections": 1,
                              "arrivals": 0, "marks": {marks}}}}}')"#
        )
    };
    let task = |calls: i64, latency: &str| {
        format!(
            r#"{{"name": "open_orders", "calls": {calls}, "successes": 0, "failures": 0,
                 "retries": 0, "deadlocks": 0, "serialization_failures": 0, "busy_us": 0,
                 "first_error": null, "stop_reason": null, "latency": "{latency}", "lag": "{latency}"}}"#
        )
    };
    for sql in [
        "SELECT stress.record_standby_run('not a batch')".to_string(),
        "SELECT stress.record_standby_run('{\"kind\": \"run_load\"}')".into(),
        format!("SELECT stress.record_standby_run('{deep}')"),
        batch(&task(1, "zz"), "1000", "[]").replace("\"run_load\"", "\"generate_dataset\""),
        batch(&task(1, "zz"), "1000", "[]"),
        batch(&task(1, "HIST0000"), "1000", "[]"),
        batch(&task(-5, ""), "1000", "[]"),
        batch(&task(1, ""), "1000", "[]").replace("\"successes\": 0", "\"successes\": 7"),
        batch(&task(0, ""), "-9223372036854775808", "[]"),
        batch(
            &task(0, ""),
            "1000",
            "[[9223372036854775807, {\"heap_hit\": 0, \"heap_read\": 0, \"index_hit\": 0, \"index_read\": 0}]]",
        ),
        batch(&task(0, ""), "1000", "[]").replace("\"workers\": 1,", "\"workers\": 100000,"),
        batch(&task(0, ""), "1000", "[]").replace("\\\"seed\\\": 1", "\\\"seed\\\": -1"),
    ] {
        a.attempt(&sql, invalid.clone());
    }
    // (an empty histogram, as a worker that measured nothing leaves)
    let empty = {
        use hdrhistogram::serialization::{Serializer, V2Serializer};
        let h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&h, &mut bytes).unwrap();
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    a.attempt(&batch(&task(0, &empty), "1000", "[]"), None);
    let forged: (String, String) = {
        let row = a
            .admin
            .query_one(
                "SELECT run_as::text, parameters->'standby'->>'recorded_from' FROM stress.runs
                 WHERE parameters ? 'standby' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        forged,
        ("it_hostile_workers".to_string(), "local socket".to_string())
    );
    assert_eq!(a.cases, 47);
}

/// verify_integrity evaluates no expression of another role's table (a NOT VALID CHECK calling the
/// role's function would run with the checker's rights); an archive move that loses rows deletes
/// nothing.
#[test]
fn integrity_checks_and_archives_run_nobody_elses_code() {
    let mut a = Arena::new("it_hostile_integrity", "it_hostile_integrity", false);
    a.attempt(
        "CREATE TABLE hostile.t (x int); INSERT INTO hostile.t VALUES (1);
         ALTER TABLE hostile.t ADD CONSTRAINT c CHECK (hostile.trap('check') AND x > 0) NOT VALID;
         DELETE FROM hostile.owner_calls",
        None,
    );
    let status: String = value(
        &mut a.admin,
        "SELECT string_agg(DISTINCT status, ',') FROM stress.verify_integrity('hostile')
         WHERE check_name = 'not_valid_constraint'",
    );
    assert_eq!(status, "not checked");
    let weekly: i64 = value(&mut a.admin, "SELECT stress.record_health_check('hostile')");
    assert!(weekly > 0);
    a.admin_runs += 1; // (that check's own record)
    a.assert_nothing_gained_or_lost("verify_integrity as the administrator");
    // An archive table whose trigger drops the rows: 27000, and the rows stay where they were.
    a.attempt(
        "CREATE TABLE hostile.src (at timestamptz NOT NULL); CREATE TABLE hostile.dst (LIKE hostile.src);
         INSERT INTO hostile.src SELECT pg_catalog.now() - interval '1 year' FROM generate_series(1, 10);
         CREATE FUNCTION hostile.drop_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
         CREATE TRIGGER sink BEFORE INSERT ON hostile.dst FOR EACH ROW EXECUTE FUNCTION hostile.drop_row()",
        None,
    );
    a.attempt(
        "SELECT stress.archive('hostile.src', 'at', '1 day', archive_to => 'hostile.dst')",
        Some(SqlState::TRIGGERED_DATA_CHANGE_VIOLATION),
    );
    a.attempt(
        "CALL stress.archive_batched('hostile.src', 'at', '1 day', archive_to => 'hostile.dst')",
        Some(SqlState::TRIGGERED_DATA_CHANGE_VIOLATION),
    );
    let kept: i64 = value(&mut a.attacker, "SELECT count(*) FROM hostile.src");
    assert_eq!(kept, 10);
}

/// A run whose workers all die (here: their role may not log in) is closed as failed within
/// seconds even when nobody waits for it, and its slot is given back.
#[test]
fn a_run_whose_workers_die_unwaited_is_closed_and_its_slot_freed() {
    let mut client = fresh_database("it_hostile_slots");
    client
        .batch_execute(
            "SELECT stress.generate_dataset(orders => 200, seed => 1);
             DROP ROLE IF EXISTS it_slot_nologin; CREATE ROLE it_slot_nologin NOLOGIN;
             GRANT EXECUTE ON FUNCTION stress.run_load TO it_slot_nologin; GRANT EXECUTE ON PROCEDURE stress.run_load_proc TO it_slot_nologin;
             GRANT USAGE ON SCHEMA stress_data TO it_slot_nologin;
             GRANT SELECT ON ALL TABLES IN SCHEMA stress_data TO it_slot_nologin",
        )
        .unwrap();
    let mut runs = Vec::new();
    // More runs than there are slots (8): each must be given back for the next to start.
    for _ in 0..10 {
        client
            .batch_execute("SET SESSION AUTHORIZATION it_slot_nologin")
            .unwrap();
        let run: i64 = value(
            &mut client,
            "SELECT stress.run_load('30 seconds', wait => false)",
        );
        client.batch_execute("RESET SESSION AUTHORIZATION").unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status: String = client
                .query_one("SELECT status FROM stress.runs WHERE id = $1", &[&run])
                .map(|r| r.get(0))
                .unwrap_or_else(|_| "missing".into());
            if status == "failed" {
                break;
            }
            assert!(Instant::now() < deadline, "run {run} is still {status}");
            std::thread::sleep(Duration::from_millis(200));
        }
        runs.push(run);
    }
    let live: i64 = value(
        &mut client,
        "SELECT count(*) FROM stress.progress WHERE database = current_database()",
    );
    assert_eq!(live, 0);
    let mut admin = connect("it_hostile_slots");
    let errors: Vec<String> = admin
        .query("SELECT error FROM stress.runs WHERE id = ANY($1)", &[&runs])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(errors.iter().all(|e| e.contains("exited")), "{errors:?}");
}

/// Another role's live run is invisible in stress.progress and cannot be waited for or cancelled;
/// a table the role may not write is refused before pg_stress would wait for its lock.
#[test]
fn live_runs_and_locks_of_others_are_out_of_reach() {
    let mut a = Arena::new("it_hostile_live", "it_hostile_live", true);
    let run: i64 = value(
        &mut a.admin,
        "SELECT stress.run_load('20 seconds', workers => 1, wait => false,
                                mix => '{\"open_orders\": 1}')",
    );
    // (its row is written by its first worker, as it starts)
    let deadline = Instant::now() + Duration::from_secs(10);
    while value::<i64>(
        &mut a.admin,
        &format!("SELECT count(*) FROM stress.runs WHERE id = {run}"),
    ) == 0
    {
        assert!(Instant::now() < deadline, "run {run} was never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.admin_runs += 1;
    let admin_sees: i64 = value(
        &mut a.admin,
        "SELECT count(*) FROM stress.progress WHERE database = current_database()",
    );
    assert_eq!(admin_sees, 1);
    let seen: i64 = value(&mut a.attacker, "SELECT count(*) FROM stress.progress");
    assert_eq!(seen, 0, "another role's live run is visible");
    let invalid = Some(SqlState::INVALID_PARAMETER_VALUE);
    a.attempt(&format!("CALL stress.wait({run})"), invalid.clone());
    a.attempt(
        &format!("SELECT stress.cancel({run})"),
        Some(SqlState::INSUFFICIENT_PRIVILEGE),
    );
    // A worker's SIGINT cancels its whole run (0.7.0): PostgreSQL lets only its role (or
    // pg_signal_backend) send it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let worker: i32 = loop {
        let pid: Option<i32> = value(
            &mut a.admin,
            "SELECT min(pid) FROM pg_stat_activity
             WHERE backend_type = 'pg_stress load' AND datname = current_database()",
        );
        if let Some(pid) = pid {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "no load worker");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    a.attempt(
        &format!("SELECT pg_cancel_backend({worker})"),
        Some(SqlState::INSUFFICIENT_PRIVILEGE),
    );
    let status: String = value(
        &mut a.admin,
        &format!("SELECT status FROM stress.runs WHERE id = {run}"),
    );
    assert_eq!(status, "running");
    // The lock probe: with the administrator holding audit_log, a role that may not write it
    // gets 42501 at once, not a wait for the lock (which lock_timeout would turn into 55P03).
    let mut holder = super::common::connect("it_hostile_live");
    holder
        .batch_execute("BEGIN; LOCK stress_data.audit_log IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    for sql in [
        "SET lock_timeout = '2s'; SET stress.data_schema = 'stress_data'; SELECT stress.generate_audit_log(5)",
        "SET lock_timeout = '2s'; SELECT stress.archive('stress_data.audit_log', 'ts', '1 day')",
        "SET lock_timeout = '2s'; SELECT stress.set_retention('stress_data.audit_log', 'ts', '1 day')",
    ] {
        // (checked after the holder lets go: counting audit_log's rows would wait for it too)
        let e = a.attacker.batch_execute(sql).unwrap_err();
        assert_eq!(
            e.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e:?}"
        );
        a.cases += 1;
    }
    holder.batch_execute("ROLLBACK").unwrap();
    a.assert_nothing_gained_or_lost("the lock probes");
    // (two calls: a CALL in a multi-statement string would be in an implicit transaction block)
    a.admin
        .batch_execute(&format!("SELECT stress.cancel({run})"))
        .unwrap();
    a.admin
        .batch_execute(&format!("CALL stress.wait({run})"))
        .unwrap();
    assert_eq!(a.cases, 6);
}
