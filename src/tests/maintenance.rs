//! #[pg_test]s of the SQL-only capability in `sql/maintenance.sql`.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of};
    use pgrx::prelude::*;

    #[pg_test]
    fn maintenance_jobs_are_scheduled_by_name_and_removed() {
        // Without pg_cron in this database (the test database has none until this test creates
        // it): what to do instead.
        assert!(!one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')"
        ));
        assert_eq!(
            sqlstate_of("SELECT * FROM stress.schedule_maintenance()"),
            Some(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
        );
        assert_eq!(
            sqlstate_of("SELECT stress.unschedule_maintenance()"),
            Some(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
        );
        if !crate::tests::extension_available("pg_cron", "scheduling maintenance with pg_cron") {
            return;
        }
        Spi::run("CREATE EXTENSION pg_cron").unwrap();
        Spi::run(
            "CREATE TABLE t_maint_busy (id int); INSERT INTO t_maint_busy SELECT generate_series(1, 10);
             CREATE MATERIALIZED VIEW mv_maint AS SELECT 1 AS id; CREATE UNIQUE INDEX ON mv_maint (id);
             CREATE MATERIALIZED VIEW mv_maint_no_key AS SELECT 1 AS id",
        )
        .unwrap();
        let jobs = || {
            one::<i64>(
                "SELECT count(*) FROM cron.job WHERE jobname LIKE 'stress: %' AND username = current_user",
            )
        };
        let scheduled = one::<String>(
            "SELECT string_agg(job_name || ' @ ' || schedule, '; ' ORDER BY job_name)
             FROM stress.schedule_maintenance(refresh_views => ARRAY['mv_maint'::regclass])",
        );
        assert_eq!(
            scheduled,
            "stress: analyze @ 0 2 * * *; stress: apply retention @ 0 2 * * *; \
             stress: refresh materialized views @ 0 2 * * *; \
             stress: vacuum analyze busiest tables @ 0 2 * * *; stress: weekly health check @ 0 3 * * 0"
        );
        assert_eq!(jobs(), 5);
        assert!(
            one::<String>(
                "SELECT command FROM cron.job WHERE jobname = 'stress: refresh materialized views'"
            )
            .starts_with("REFRESH MATERIALIZED VIEW CONCURRENTLY ")
        );
        // Again, with other schedules and no views: the same jobs, updated; the refresh job gone.
        Spi::run("SELECT * FROM stress.schedule_maintenance('30 1 * * *', '0 4 * * 6')").unwrap();
        assert_eq!(jobs(), 4);
        assert_eq!(
            one::<String>("SELECT schedule FROM cron.job WHERE jobname = 'stress: analyze'"),
            "30 1 * * *"
        );
        for (sql, code) in [
            (
                "SELECT * FROM stress.schedule_maintenance(refresh_views => ARRAY['mv_maint_no_key'::regclass])",
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            ),
            (
                "SELECT * FROM stress.schedule_maintenance(refresh_views => ARRAY['t_maint_busy'::regclass])",
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            ),
            (
                "SELECT * FROM stress.schedule_maintenance(busiest_tables => -1)",
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT * FROM stress.schedule_maintenance(database => 'no_such_database')",
                PgSqlErrorCode::ERRCODE_INVALID_CATALOG_NAME,
            ),
        ] {
            assert_eq!(sqlstate_of(sql), Some(code), "{sql}");
        }
        assert_eq!(one::<i32>("SELECT stress.unschedule_maintenance()"), 4);
        assert_eq!(jobs(), 0);
    }

    #[pg_test]
    fn the_health_check_records_its_findings_as_a_run() {
        Spi::run(
            "CREATE TABLE t_check (id int PRIMARY KEY, k int); CREATE INDEX t_check_k ON t_check (k);
             INSERT INTO t_check SELECT g, g FROM generate_series(1, 100) g",
        )
        .unwrap();
        let run = one::<i64>("SELECT stress.record_health_check()");
        assert_eq!(
            one::<String>(&format!(
                "SELECT kind || ' ' || status FROM stress.runs WHERE id = {run}"
            )),
            "health_check completed"
        );
        // The never-scanned index is among the findings.
        assert!(one::<bool>(&format!(
            "SELECT EXISTS (SELECT 1 FROM stress.results WHERE run_id = {run} AND name LIKE 'unused index: %.t_check_k')"
        )));
    }
}
