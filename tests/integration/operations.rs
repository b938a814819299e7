//! Operations: health views under real lock waits, the bloat report on deliberate damage, pg_cron
//! running the scheduled maintenance, batched archiving.

use super::common::{config, connect, count, fresh_database, value};
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

#[test]
fn health_views_show_lock_waits_long_queries_and_table_activity() {
    let mut client = fresh_database("it_health");
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int);
             INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;
             DELETE FROM t WHERE id <= 100;
             SELECT pg_stat_force_next_flush()",
        )
        .unwrap();
    // A holder of a lock, idle in its transaction, and a session waiting for it.
    let mut holder = connect("it_health");
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let holder_pid: i32 = value(&mut holder, "SELECT pg_backend_pid()");
    let waiter = std::thread::spawn(|| {
        let mut waiter = connect("it_health");
        let pid: i32 = value(&mut waiter, "SELECT pg_backend_pid()");
        waiter.batch_execute("SELECT count(*) FROM t").unwrap();
        pid
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let (waiting_pid, blockers, relation, mode) = loop {
        let row = client
            .query_opt(
                "SELECT waiting_pid, blocking_pids, relation::text, mode FROM stress.lock_stats
                 WHERE relation::text = 't'",
                &[],
            )
            .unwrap();
        if let Some(row) = row {
            break (
                row.get::<_, i32>(0),
                row.get::<_, Vec<i32>>(1),
                row.get::<_, String>(2),
                row.get::<_, String>(3),
            );
        }
        assert!(Instant::now() < deadline, "no lock wait seen");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(blockers, vec![holder_pid]);
    assert_eq!((relation.as_str(), mode.as_str()), ("t", "AccessShareLock"));
    assert!(
        count(
            &mut client,
            "SELECT sum(waiting_on_locks)::int8 FROM stress.connection_stats"
        ) >= 1
    );
    std::thread::sleep(Duration::from_millis(1200));
    let long: Vec<(i32, String)> = client
        .query(
            "SELECT pid, state FROM stress.long_running_queries('1 second') ORDER BY pid",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        long.contains(&(waiting_pid, "active".to_owned())),
        "{long:?}"
    );
    assert!(
        long.contains(&(holder_pid, "idle in transaction".to_owned())),
        "{long:?}"
    );
    assert!(
        count(
            &mut client,
            "SELECT count(*) FROM stress.long_running_queries('1 hour')"
        ) == 0
    );
    holder.batch_execute("ROLLBACK").unwrap();
    assert_eq!(waiter.join().unwrap(), waiting_pid);

    // What the table went through, once the statistics are flushed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = client
            .query_one(
                "SELECT inserts, deletes, live_rows, dead_rows FROM stress.table_stats WHERE table_name = 't'",
                &[],
            )
            .unwrap();
        let figures: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        if figures == (1000, 100, 900, 100) {
            break;
        }
        assert!(Instant::now() < deadline, "table_stats says {figures:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A role without pg_monitor sees other roles' sessions as hidden; with it, it sees them.
    client
        .batch_execute(
            "DROP ROLE IF EXISTS it_health_plain; CREATE ROLE it_health_plain LOGIN;
             DROP ROLE IF EXISTS it_health_monitor; CREATE ROLE it_health_monitor LOGIN IN ROLE pg_monitor",
        )
        .unwrap();
    for (role, hidden_expected) in [("it_health_plain", true), ("it_health_monitor", false)] {
        let mut as_role = config("it_health").user(role).connect(NoTls).unwrap();
        let hidden: i64 = value(&mut as_role, "SELECT hidden FROM stress.database_health");
        assert_eq!(hidden > 0, hidden_expected, "{role}: {hidden} hidden");
    }
}

/// (action, method, dead_rows, wasted_pct) of `relation` in `stress.bloat_report('damage', exact)`.
fn bloat_of(
    client: &mut Client,
    relation: &str,
    exact: bool,
) -> (String, String, Option<i64>, f64) {
    let row = client
        .query_one(
            "SELECT action, method, dead_rows, coalesce(wasted_pct, 0)::float8
             FROM stress.bloat_report('damage', exact => $2) WHERE relation = $1",
            &[&relation, &exact],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[test]
fn the_bloat_report_finds_deliberate_damage_estimated_and_exactly() {
    if !crate::common::has_module(
        "pgstattuple",
        "the_bloat_report_finds_deliberate_damage_estimated_and_exactly",
    ) {
        return;
    }
    let mut client = fresh_database("it_bloat");
    client
        .batch_execute(
            "CREATE SCHEMA damage;
             CREATE TABLE damage.t (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = false);
             INSERT INTO damage.t SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 50000) g;
             CREATE INDEX t_payload ON damage.t (payload);
             DELETE FROM damage.t WHERE id % 5 < 3;
             ANALYZE damage.t;
             SELECT pg_stat_force_next_flush()",
        )
        .unwrap();
    // Estimated from the statistics: 60% of the rows dead, and 60% of the pages beyond what the
    // live rows need.
    let deadline = Instant::now() + Duration::from_secs(10);
    let estimated = loop {
        let b = bloat_of(&mut client, "t", false);
        if b.2 == Some(30000) || Instant::now() > deadline {
            break b;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(estimated.1, "estimate");
    assert_eq!(estimated.2, Some(30000));
    assert!((50.0..75.0).contains(&estimated.3), "{estimated:?}");
    assert!(
        estimated.0.starts_with("VACUUM FULL damage.t"),
        "{estimated:?}"
    );
    // pgstattuple installed: exact figures, and the report says so.
    client
        .batch_execute("CREATE EXTENSION pgstattuple")
        .unwrap();
    let exact = bloat_of(&mut client, "t", true);
    assert_eq!((exact.1.as_str(), exact.2), ("pgstattuple", Some(30000)));
    assert!(exact.3 > 50.0, "{exact:?}");
    // A role that may not run pgstattuple gets the estimate.
    client
        .batch_execute("DROP ROLE IF EXISTS it_bloat_plain; CREATE ROLE it_bloat_plain LOGIN")
        .unwrap();
    let mut plain = config("it_bloat")
        .user("it_bloat_plain")
        .connect(NoTls)
        .unwrap();
    let method = |plain: &mut Client| -> String {
        value(
            plain,
            "SELECT method FROM stress.bloat_report('damage') WHERE relation = 't'",
        )
    };
    // (pg_stats shows it only the columns it may read.)
    assert_eq!(
        method(&mut plain),
        "estimate (no statistics visible: needs SELECT on the table)"
    );
    client
        .batch_execute("GRANT USAGE ON SCHEMA damage TO it_bloat_plain; GRANT SELECT ON damage.t TO it_bloat_plain")
        .unwrap();
    assert_eq!(method(&mut plain), "estimate");
    // VACUUM takes the dead rows out of the index too, leaving its leaves 40% full: REINDEX.
    client.batch_execute("VACUUM damage.t").unwrap();
    let index = bloat_of(&mut client, "t_payload", true);
    assert_eq!(index.1, "pgstattuple");
    assert!(index.3 > 30.0, "{index:?}");
    assert_eq!(index.0, "REINDEX INDEX CONCURRENTLY damage.t_payload");
    // Worst first.
    let first: String = value(
        &mut client,
        "SELECT relation FROM stress.bloat_report('damage') LIMIT 1",
    );
    assert_eq!(first, "t");
    // Repaired: nothing left to do.
    client.batch_execute("VACUUM FULL damage.t").unwrap();
    client.batch_execute("ANALYZE damage.t").unwrap();
    for relation in ["t", "t_pkey", "t_payload"] {
        let repaired = bloat_of(&mut client, relation, true);
        assert_eq!(repaired.0, "none", "{relation}: {repaired:?}");
        assert!(repaired.3 < 20.0, "{relation}: {repaired:?}");
    }
}

#[test]
fn pg_cron_really_runs_the_scheduled_maintenance() {
    if !crate::common::has_module("pg_cron", "pg_cron_really_runs_the_scheduled_maintenance") {
        return;
    }
    // pg_cron lives in the cluster's cron.database_name: postgres.
    let mut client = connect("postgres");
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE EXTENSION IF NOT EXISTS pg_cron; CREATE EXTENSION IF NOT EXISTS pg_stress;
             SELECT stress.unschedule_maintenance();
             DROP SCHEMA IF EXISTS it_cron CASCADE; CREATE SCHEMA it_cron;
             CREATE TABLE it_cron.logs (id int PRIMARY KEY, at timestamptz NOT NULL);
             -- one row a day, half a day off the boundaries: the job runs a minute or so later
             INSERT INTO it_cron.logs SELECT g, now() - (g - 0.5) * interval '1 day' FROM generate_series(1, 100) g;
             DELETE FROM stress.retention_policies;
             SELECT stress.set_retention('it_cron.logs', 'at', '30 days')",
        )
        .unwrap();
    let health_checks_before = count(
        &mut client,
        "SELECT count(*) FROM stress.runs WHERE kind = 'health_check'",
    );
    // Every minute (pg_cron 1.4 has no second-level schedules): the first run comes within a minute.
    let jobs = client
        .query(
            "SELECT job_name FROM stress.schedule_maintenance(daily => '* * * * *', weekly => '* * * * *',
                                                              busiest_tables => 1)",
            &[],
        )
        .unwrap()
        .len();
    assert_eq!(jobs, 4);
    // A load run from pg_cron, in the procedure that commits while it waits (a custom transaction:
    // this database has no trading dataset).
    client
        .batch_execute(
            r#"SELECT cron.schedule('stress: it load', '* * * * *',
                   $$CALL stress.run_load_proc('2 seconds', transactions => '[{"name": "cron", "sql": "SELECT 1"}]')$$)"#,
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let done: Vec<String> = client
            .query(
                "SELECT DISTINCT j.jobname FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                 WHERE j.jobname LIKE 'stress: %' AND d.status = 'succeeded' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if done.len() == 5 {
            break;
        }
        let failed: Vec<String> = client
            .query(
                "SELECT j.jobname || ': ' || d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                 WHERE j.jobname LIKE 'stress: %' AND d.status = 'failed'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(failed.is_empty(), "{failed:?}");
        assert!(Instant::now() < deadline, "after 150 s only {done:?} ran");
        std::thread::sleep(Duration::from_secs(2));
    }
    // Their effects: retention applied, the health check recorded, the busiest table vacuumed.
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_cron.logs"), 30);
    assert_eq!(
        count(
            &mut client,
            "SELECT last_rows FROM stress.retention_policies WHERE relation = 'it_cron.logs'"
        ),
        70
    );
    assert!(
        count(
            &mut client,
            "SELECT count(*) FROM stress.runs WHERE kind = 'health_check'"
        ) > health_checks_before
    );
    assert_eq!(
        client
            .query_one(
                "SELECT command FROM cron.job WHERE jobname = 'stress: vacuum analyze busiest tables'",
                &[]
            )
            .unwrap()
            .get::<_, String>(0),
        "VACUUM (ANALYZE) it_cron.logs"
    );
    // pg_cron's CALL ran the run to its end and recorded it.
    assert!(
        count(
            &mut client,
            "SELECT count(*) FROM stress.runs r JOIN stress.results t ON t.run_id = r.id AND t.name = 'cron'
             WHERE r.kind = 'run_load' AND r.status = 'completed' AND t.calls > 0"
        ) > 0
    );
    client
        .batch_execute("SELECT cron.unschedule('stress: it load')")
        .unwrap();
    let unscheduled: i32 = value(&mut client, "SELECT stress.unschedule_maintenance()");
    assert_eq!(unscheduled, 4);
    client
        .batch_execute("DROP SCHEMA it_cron CASCADE; DELETE FROM stress.retention_policies")
        .unwrap();
}

#[test]
fn archive_batched_commits_every_batch() {
    let mut client = fresh_database("it_archive_batched");
    client
        .batch_execute(
            "CREATE TABLE logs (id int PRIMARY KEY, at timestamptz NOT NULL);
             INSERT INTO logs SELECT g, now() - (g - 0.5) * interval '1 hour' FROM generate_series(1, 1000) g",
        )
        .unwrap();
    // (This session's commits reach pg_stat_database when it flushes its statistics: force it.)
    let commits = |client: &mut Client| -> i64 {
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
        count(
            client,
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
    };
    let before = commits(&mut client);
    // 1000 hourly rows; older than 100 hours: 900 of them, 100 a batch and each committed.
    let removed: i64 = value(
        &mut client,
        "CALL stress.archive_batched('logs', 'at', '100 hours', batch_size => 100)",
    );
    assert_eq!(removed, 900);
    assert_eq!(count(&mut client, "SELECT count(*) FROM logs"), 100);
    let after = commits(&mut client);
    assert!(
        after - before >= 10,
        "{} commits for 10 batches",
        after - before
    );
    // Inside a transaction block it cannot commit: PostgreSQL says so, and nothing is removed.
    let err = client
        .batch_execute(
            "BEGIN; CALL stress.archive_batched('logs', 'at', '1 hour', batch_size => 10); COMMIT",
        )
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_TRANSACTION_TERMINATION),
        "{err}"
    );
    client.batch_execute("ROLLBACK").unwrap();
    assert_eq!(count(&mut client, "SELECT count(*) FROM logs"), 100);
}
