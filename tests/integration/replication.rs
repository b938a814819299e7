//! A primary and a real streaming standby (pg_basebackup, its own port and socket): the standby's lag
//! is sampled each second of a write run on the primary while the standby serves reads; after
//! `stress.wait_for_replicas`, the dataset's checksums are equal on both; a standby whose replay is
//! paused sets off `health_alerts`' replication-lag alert and times `wait_for_replicas` out.

use super::common::{dataset_checksums, env, load_database, pgcluster, pgcluster_with, value};
use postgres::NoTls;
use postgres::error::SqlState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const STANDBY: &str = "it-standby";

/// One standby of the test cluster at a time: each test counts the primary's standbys and their lag.
static ONE_STANDBY_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_standby_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_STANDBY_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits (up to 60 s) until the primary streams to `standby`: its walsender has caught up.
fn streaming(primary: &mut postgres::Client, standby: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state: Option<String> = primary
            .query_opt(
                "SELECT state FROM pg_stat_replication WHERE application_name = $1",
                &[&standby],
            )
            .unwrap()
            .and_then(|r| r.get(0));
        if state.as_deref() == Some("streaming") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{standby} is not streaming after 60 s: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The name of the cluster the tests run against (scripts/test.sh's), from its socket directory.
fn primary_cluster() -> String {
    let host = env("PGHOST");
    let socket = std::path::Path::new(&host);
    socket
        .parent()
        .and_then(|d| d.file_name())
        .expect("PGHOST is a scripts/pgcluster.sh socket directory")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_standby_lags_under_write_load_catches_up_and_has_the_same_data() {
    let _alone = one_standby_at_a_time();
    let db = "it_replication";
    let mut primary = load_database(db);
    pgcluster("destroy", STANDBY);
    let mut config = pgcluster_with("standby", STANDBY, &[&primary_cluster()]).unwrap();
    config.dbname(db);
    let mut standby = config.connect(NoTls).unwrap();
    assert!(value::<bool>(&mut standby, "SELECT pg_is_in_recovery()"));
    // (a standby just copied first replays what was written since its copy: its walsender is in
    // `catchup` until then, and CI's first sample saw that state; the run below is to see lag
    // while streaming)
    streaming(&mut primary, STANDBY);

    // Write load on the primary while the standby serves reads.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, reads, config) = (Arc::clone(&stop), Arc::clone(&reads), config.clone());
        std::thread::spawn(move || {
            let mut c = config.connect(NoTls).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let _: i64 = c
                    .query_one(
                        "SELECT count(*) FROM stress_data.orders WHERE account_id = $1",
                        &[&((reads.load(Ordering::Relaxed) % 100 + 1) as i64)],
                    )
                    .unwrap()
                    .get(0);
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let run: i64 = value(
        &mut primary,
        "CALL stress.run_load_proc('3 seconds', workers => 2)",
    );
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(
        reads.load(Ordering::Relaxed) > 10,
        "the standby served no reads"
    );

    // Its lag, each second of the run.
    let rows = primary
        .query(
            "SELECT standby, state, replay_lag_bytes, flush_lag_bytes FROM stress.replication_lag
             WHERE run_id = $1 ORDER BY ts",
            &[&run],
        )
        .unwrap();
    assert!(rows.len() >= 2, "{} lag rows", rows.len());
    for r in &rows {
        assert_eq!(r.get::<_, String>(0), STANDBY);
        assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some("streaming"));
        let (replay, flush): (Option<i64>, Option<i64>) = (r.get(2), r.get(3));
        assert!(replay.unwrap() >= 0 && flush.unwrap() >= 0);
    }
    let reported: i64 = value(
        &mut primary,
        &format!("SELECT (stress.report({run})->'replication'->'{STANDBY}'->>'samples')::int8"),
    );
    assert_eq!(reported, rows.len() as i64);
    let page: String = value(&mut primary, &format!("SELECT stress.report_html({run})"));
    assert!(page.contains(&format!("data-series=\"{STANDBY}: replay\"")));

    // Caught up: the same data on both.
    let caught = primary
        .query(
            "SELECT standby, replay_lsn >= target_lsn FROM stress.wait_for_replicas('30 seconds')",
            &[],
        )
        .unwrap();
    assert_eq!(caught.len(), 1);
    assert_eq!(caught[0].get::<_, String>(0), STANDBY);
    assert!(caught[0].get::<_, bool>(1));
    assert_eq!(
        dataset_checksums(&mut primary),
        dataset_checksums(&mut standby)
    );
    // The primary's run, read on the standby: the same report, its page, and explain (reads that
    // must not ask for a transaction id, which a standby cannot give).
    let on = |c: &mut postgres::Client| -> String {
        value(c, &format!("SELECT stress.report({run})::text"))
    };
    assert_eq!(on(&mut standby), on(&mut primary));
    let page: String = value(&mut standby, &format!("SELECT stress.report_html({run})"));
    assert!(page.contains("<svg id=\"throughput\""));
    for sql in [
        "SELECT stress.explain('SELECT * FROM stress_data.orders WHERE id = 1')::text",
        "SELECT stress.explain('SELECT count(*) FROM stress_data.accounts', \"analyze\" => true)::text",
    ] {
        let plan: String = value(&mut standby, sql);
        assert!(plan.contains("Plan"), "{sql}: {plan}");
    }

    // Replay paused: the lag grows past 1 MB, the alert fires, waiting times out.
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .unwrap();
    primary
        .batch_execute(
            "CREATE TABLE public.filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) g",
        )
        .unwrap();
    let alert = primary
        .query_one(
            "SELECT firing, measured::float8 FROM stress.health_alerts(max_replication_lag_mb => 1, show_all => true)
             WHERE alert = 'replication_lag'",
            &[],
        )
        .unwrap();
    assert!(alert.get::<_, bool>(0), "lag {} MB", alert.get::<_, f64>(1));
    let e = primary
        .batch_execute("SELECT * FROM stress.wait_for_replicas('1 second')")
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert!(e.as_db_error().unwrap().message().contains(STANDBY));
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .unwrap();
    let caught: i64 = value(
        &mut primary,
        "SELECT count(*) FROM stress.wait_for_replicas('30 seconds')",
    );
    assert_eq!(caught, 1);
    let filler: i64 = value(&mut standby, "SELECT count(*) FROM public.filler");
    assert_eq!(filler, 20000);

    // Bad input, the standby itself, and a role that may not see the standbys' positions.
    for (sql, code) in [
        (
            "SELECT * FROM stress.wait_for_replicas('-1 second')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT * FROM stress.wait_for_replicas(NULL)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
    ] {
        let e = primary.batch_execute(sql).unwrap_err();
        assert_eq!(e.code(), Some(&code), "{sql}");
    }
    let e = standby
        .batch_execute("SELECT * FROM stress.wait_for_replicas()")
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
    primary
        .batch_execute(
            "DROP ROLE IF EXISTS it_replication_user; CREATE ROLE it_replication_user LOGIN",
        )
        .unwrap();
    let mut user = super::common::config(db)
        .user("it_replication_user")
        .connect(NoTls)
        .unwrap();
    let e = user
        .batch_execute("SELECT * FROM stress.wait_for_replicas()")
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    drop((standby, user));
    pgcluster("destroy", STANDBY);
}

const READ_STANDBY: &str = "it-standby-reads";

/// Read load on a standby while the primary takes write load: the standby's workers run there,
/// the run is recorded on the primary (through dblink, as the calling role) and readable on both;
/// a capacity search runs there too; writes are refused up front, and so is a run that could not
/// be recorded.
#[test]
fn read_load_on_a_standby_is_recorded_on_the_primary() {
    if !crate::common::has_module(
        "dblink",
        "read_load_on_a_standby_is_recorded_on_the_primary",
    ) {
        return;
    }
    let _alone = one_standby_at_a_time();
    let db = "it_standby_reads";
    let mut primary = load_database(db);
    primary.batch_execute("CREATE EXTENSION dblink").unwrap();
    pgcluster("destroy", READ_STANDBY);
    // (no feedback to the primary, as by default, and a wait before replay cancels a standby query
    // whose snapshot is in its way shorter than the default 30 s, so that a caller that waited for
    // its record's replay holding its snapshot — 0.5.0's — is cancelled within the test: after 10
    // s. Shorter than that, replay falling behind on a loaded machine cancels even a snapshot of
    // a few milliseconds, such as the one the record's dblink call takes.)
    let mut config = pgcluster_with(
        "standby",
        READ_STANDBY,
        &[
            &primary_cluster(),
            "hot_standby_feedback = off",
            "max_standby_streaming_delay = '10s'",
        ],
    )
    .unwrap();
    config.dbname(db);
    let mut standby = config.connect(NoTls).unwrap();
    let record_on = format!(
        "host={} port={} dbname={db} user={}",
        env("PGHOST"),
        env("PGPORT"),
        value::<String>(&mut primary, "SELECT current_user::text")
    );
    // Without somewhere to record, a standby's run does not start; nor does a write mix.
    for (sql, code) in [
        (
            "CALL stress.run_load_proc('1 second', mix => '{\"select\": 1}')",
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ),
        (
            "CALL stress.run_load_proc('1 second')",
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ),
    ] {
        let e = standby.batch_execute(sql).unwrap_err();
        assert_eq!(e.code(), Some(&code), "{sql}: {e}");
    }
    standby
        .batch_execute(&format!(
            "SET stress.record_conninfo = '{record_on}'; SET stress.progress_interval = 0"
        ))
        .unwrap();
    for (sql, code) in [
        // the seed's default mix writes
        (
            "CALL stress.run_load_proc('1 second')".to_string(),
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ),
        (
            "CALL stress.run_load_proc('1 second', mix => '{\"position\": 1, \"cancel_order\": 1}')".into(),
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ),
        (
            r#"CALL stress.run_load_proc('1 second', transactions => '[{"name": "lock", "sql": "SELECT * FROM stress_data.accounts WHERE id = 1 FOR UPDATE"}]')"#.into(),
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ),
        (
            r#"CALL stress.run_load_proc('1 second', transactions => '[{"name": "w", "sql": ["SELECT 1", "WITH d AS (DELETE FROM stress_data.orders WHERE id = 1 RETURNING 1) SELECT * FROM d"]}]')"#.into(),
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ),
        (
            "CALL stress.find_capacity(50, step => '1 second', max_steps => 1)".into(),
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ),
        (
            "SELECT stress.run_load('1 second', mix => '{\"select\": 1}', wait => false)".into(),
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            "CALL stress.benchmark_proc(ARRAY['SELECT 1'], iterations => 10, concurrency => 2)".into(),
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
    ] {
        let e = standby.batch_execute(&sql).unwrap_err();
        assert_eq!(e.code(), Some(&code), "{sql}: {e}");
    }
    assert_eq!(
        value::<i64>(
            &mut primary,
            "SELECT count(*) FROM stress.runs WHERE parameters ? 'standby'"
        ),
        0,
        "a refused run left a record"
    );

    // Reads on the standby while the primary writes.
    let writer = {
        let mut c = super::common::connect(db);
        std::thread::spawn(move || -> i64 {
            c.batch_execute("SET stress.progress_interval = 0").unwrap();
            value(
                &mut c,
                "CALL stress.run_load_proc('4 seconds', workers => 2)",
            )
        })
    };
    // (a name that tries to close the quoting of the SQL the batch travels in to the primary)
    let custom = r#"[{"name": "a''); DROP TABLE stress_data.accounts; --", "sql": "SELECT balance FROM stress_data.accounts WHERE id = $1",
                      "params": [{"distribution": "uniform", "min": 1, "max": 50}]}]"#;
    let read: i64 = value(
        &mut standby,
        &format!(
            "CALL stress.run_load_proc('3 seconds', workers => 2, mix => '{{\"select\": 1}}', transactions => '{custom}')"
        ),
    );
    let wrote = writer.join().unwrap();
    assert!(read > 0 && read != wrote);
    // Recorded on the primary as this role's run, its reads measured.
    let rows = primary
        .query(
            "SELECT t.name, t.calls, t.errors, t.ops_per_sec, t.p99_ms, r.status, r.run_as::text,
                    (r.parameters->'standby'->>'local_run_id')::int8
             FROM stress.runs r JOIN stress.results t ON t.run_id = r.id
             WHERE r.id = $1 ORDER BY t.name",
            &[&read],
        )
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        names,
        [
            "a'); DROP TABLE stress_data.accounts; --",
            "open_orders",
            "position",
            "recent_trades",
            "total"
        ]
    );
    for r in &rows {
        let (calls, errors, ops, p99): (i64, i64, f64, Option<f64>) =
            (r.get(1), r.get(2), r.get(3), r.get(4));
        assert!(
            calls > 0 && errors == 0 && ops > 0.0 && p99.unwrap() > 0.0,
            "{r:?}"
        );
        assert_eq!(r.get::<_, String>(5), "completed");
        assert_eq!(
            r.get::<_, String>(6),
            value::<String>(&mut primary, "SELECT current_user::text")
        );
        assert!(r.get::<_, i64>(7) < 0, "a standby's local run id");
    }
    let (standby_ops, primary_ops): (f64, f64) = (
        value(
            &mut primary,
            &format!(
                "SELECT ops_per_sec FROM stress.results WHERE run_id = {read} AND name = 'total'"
            ),
        ),
        value(
            &mut primary,
            &format!(
                "SELECT ops_per_sec FROM stress.results WHERE run_id = {wrote} AND name = 'total'"
            ),
        ),
    );
    println!("standby reads {standby_ops:.0} ops/s while the primary wrote {primary_ops:.0} ops/s");
    // Block figures come from the server the workers ran on: the primary's run has them; the
    // standby's, recorded on the primary, does not borrow the primary's.
    let blocks = |run: i64| -> bool {
        let mut c = super::common::connect(db);
        value(
            &mut c,
            &format!(
                "SELECT details ? 'heap_blocks_hit' FROM stress.results WHERE run_id = {run} AND name = 'total'"
            ),
        )
    };
    assert!(blocks(wrote) && !blocks(read));
    // The call returned once the standby had replayed its record: the same report on both.
    let on = |c: &mut postgres::Client| -> String {
        value(c, &format!("SELECT stress.report({read})::text"))
    };
    assert_eq!(on(&mut standby), on(&mut primary));
    let page: String = value(&mut standby, &format!("SELECT stress.report_html({read})"));
    assert!(page.contains("open_orders"));

    // A capacity search on the standby: each step recorded on the primary, read back here.
    // (the steps as this standby replayed them from the primary; a standby writes no verdicts)
    let steps = super::common::series_steps(
        &mut standby,
        "CALL stress.find_capacity(100, workers => 2, step => '1 second',
             mix => '{\"select\": 1}', start_rate => 500, max_steps => 2)",
        "run_id, ok",
    );
    assert_eq!(steps.len(), 2);
    for s in &steps {
        let run: i64 = s.get(0);
        let achieved: f64 = value(
            &mut primary,
            &format!(
                "SELECT (details->>'achieved_share')::float8 FROM stress.results WHERE run_id = {run} AND name = 'total'"
            ),
        );
        assert!(achieved > 0.5, "step {run}: {achieved}");
    }
    // A one-session benchmark measures there and returns its rows, unrecorded.
    let bench = standby
        .query_one(
            "SELECT run_id, calls, errors FROM stress.benchmark(ARRAY['SELECT count(*) FROM stress_data.accounts'], iterations => 50)",
            &[],
        )
        .unwrap();
    assert_eq!(bench.get::<_, Option<i64>>(0), None);
    assert_eq!((bench.get::<_, i64>(1), bench.get::<_, i64>(2)), (50, 0));

    // A connection string is a value to dblink, never SQL: one that tries to break out of quotes
    // is a connection string libpq refuses (class 08), and nothing runs.
    standby
        .execute(
            "SELECT pg_catalog.set_config('stress.record_conninfo', $1, false)",
            &[&"dbname='x' user=y'); DROP TABLE stress_data.accounts; --"],
        )
        .unwrap();
    let e = standby
        .batch_execute("CALL stress.run_load_proc('1 second', mix => '{\"select\": 1}')")
        .unwrap_err();
    assert_eq!(
        &e.code().unwrap().code()[..2],
        "08",
        "{:?}",
        e.as_db_error()
    );
    assert!(value::<i64>(&mut primary, "SELECT count(*) FROM stress_data.accounts") > 0);

    // Recording goes as this session's role, never another: a connection string for another
    // role is refused before any worker starts; one that leads to the standby itself too.
    primary
        .batch_execute("DROP ROLE IF EXISTS it_standby_other; CREATE ROLE it_standby_other LOGIN")
        .unwrap();
    let sb_host = config.get_hosts()[0].clone();
    let sb_host = match sb_host {
        postgres::config::Host::Unix(p) => p.to_string_lossy().into_owned(),
        postgres::config::Host::Tcp(h) => h,
    };
    let sb_port = config.get_ports()[0];
    for (conninfo, code) in [
        (
            format!(
                "host={} port={} dbname={db} user=it_standby_other",
                env("PGHOST"),
                env("PGPORT")
            ),
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
        (
            format!("host={sb_host} port={sb_port} dbname={db}"),
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ),
    ] {
        standby
            .batch_execute(&format!("SET stress.record_conninfo = '{conninfo}'"))
            .unwrap();
        let e = standby
            .batch_execute("CALL stress.run_load_proc('1 second', mix => '{\"select\": 1}')")
            .unwrap_err();
        assert_eq!(e.code(), Some(&code), "{conninfo}: {e}");
    }
    // An unprivileged role cannot ride the server's own trust through dblink: dblink asks it for
    // a password (2F003) before any worker starts.
    primary
        .batch_execute(
            "GRANT EXECUTE ON FUNCTION stress.run_load TO it_standby_other; GRANT EXECUTE ON PROCEDURE stress.run_load_proc TO it_standby_other;
             GRANT USAGE ON SCHEMA stress_data TO it_standby_other;
             GRANT SELECT ON ALL TABLES IN SCHEMA stress_data TO it_standby_other",
        )
        .unwrap();
    // (after the grants' commit: a batch is one transaction, whose end the wait would not cover)
    primary
        .batch_execute("SELECT * FROM stress.wait_for_replicas('30 seconds')")
        .unwrap();
    let mut other = config
        .clone()
        .user("it_standby_other")
        .connect(NoTls)
        .unwrap();
    other
        .batch_execute(&format!(
            "SET stress.record_conninfo = 'host={} port={} dbname={db} user=it_standby_other'",
            env("PGHOST"),
            env("PGPORT")
        ))
        .unwrap();
    let e = other
        .batch_execute("CALL stress.run_load_proc('1 second', mix => '{\"select\": 1}')")
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::from_code("2F003")),
        "{:?}",
        e.as_db_error()
    );
    let before: i64 = value(&mut primary, "SELECT count(*) FROM stress.runs");
    drop((standby, other));
    assert_eq!(
        value::<i64>(&mut primary, "SELECT count(*) FROM stress.runs"),
        before
    );
    pgcluster("destroy", READ_STANDBY);
}
