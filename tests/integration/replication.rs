//! A primary and a real streaming standby (pg_basebackup, its own port and socket): the standby's lag
//! is sampled each second of a write run on the primary while the standby serves reads; after
//! `stress.wait_for_replicas`, the dataset's checksums are equal on both; a standby whose replay is
//! paused sets off `health_alerts`' replication-lag alert and times `wait_for_replicas` out.

use super::common::{dataset_checksums, env, load_database, pgcluster, pgcluster_with, value};
use postgres::NoTls;
use postgres::error::SqlState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const STANDBY: &str = "it-standby";

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
    let db = "it_replication";
    let mut primary = load_database(db);
    pgcluster("destroy", STANDBY);
    let mut config = pgcluster_with("standby", STANDBY, &[&primary_cluster()]).unwrap();
    config.dbname(db);
    let mut standby = config.connect(NoTls).unwrap();
    assert!(value::<bool>(&mut standby, "SELECT pg_is_in_recovery()"));

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
        "SELECT stress.run_load('3 seconds', workers => 2)",
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
