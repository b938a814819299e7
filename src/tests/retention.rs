//! #[pg_test]s of the SQL-only capability in `sql/retention.sql`.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of};
    use pgrx::prelude::*;

    /// A table of 1000 rows, one every 2.4 hours back from now: 100 days.
    fn dated_table(name: &str) {
        Spi::run(&format!(
            "CREATE TABLE {name} (id int PRIMARY KEY, at timestamptz NOT NULL, note text);
             INSERT INTO {name} SELECT g, now() - g * interval '144 minutes', 'row ' || g
             FROM generate_series(1, 1000) g"
        ))
        .unwrap();
    }

    #[pg_test]
    fn archive_deletes_or_moves_exactly_the_old_rows_in_batches() {
        Spi::run("SET LOCAL stress.progress_interval = 0").unwrap();
        dated_table("t_logs");
        let old = one::<i64>("SELECT count(*) FROM t_logs WHERE at < now() - interval '30 days'");
        assert_eq!(old, 700);
        let removed =
            one::<i64>("SELECT stress.archive('t_logs', 'at', '30 days', batch_size => 77)");
        assert_eq!(removed, old);
        assert_eq!(one::<i64>("SELECT count(*) FROM t_logs"), 300);
        assert!(one::<bool>(
            "SELECT bool_and(at >= now() - interval '30 days') FROM t_logs"
        ));
        // 700 rows, 77 a batch: 9 full batches and a short one.
        assert_eq!(
            one::<i64>(
                "SELECT (r.details->>'batches')::int8 FROM stress.results r JOIN stress.runs s ON s.id = r.run_id
                 WHERE s.kind = 'archive' AND r.name = 'public.t_logs'"
            ),
            10
        );
        // Moved: into an archive table of the same shape, nothing lost.
        Spi::run("CREATE TABLE t_logs_archive (LIKE t_logs)").unwrap();
        let moved = one::<i64>(
            "SELECT stress.archive('t_logs', 'at', '10 days', archive_to => 't_logs_archive')",
        );
        assert_eq!(moved, 200);
        assert_eq!(
            one::<i64>(
                "SELECT (SELECT count(*) FROM t_logs) + (SELECT count(*) FROM t_logs_archive)"
            ),
            300
        );
        // Partitioned tables too.
        Spi::run(
            "CREATE TABLE t_parts (id int, at date NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE t_parts_old PARTITION OF t_parts FOR VALUES FROM ('2000-01-01') TO ('2020-01-01');
             CREATE TABLE t_parts_new PARTITION OF t_parts FOR VALUES FROM ('2020-01-01') TO ('2100-01-01');
             INSERT INTO t_parts SELECT g, date '2019-12-01' + g FROM generate_series(1, 100) g",
        )
        .unwrap();
        let cutoff_rows =
            one::<i64>("SELECT count(*) FROM t_parts WHERE at < now() - interval '1 year'");
        assert_eq!(
            one::<i64>("SELECT stress.archive('t_parts', 'at', '1 year', batch_size => 7)"),
            cutoff_rows
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM t_parts"), 0);
    }

    #[pg_test]
    fn bad_archive_arguments_are_refused_clearly() {
        dated_table("t_bad");
        Spi::run(
            "CREATE TABLE t_bad_other (x int); CREATE VIEW v_bad AS SELECT * FROM t_bad;
             CREATE TABLE t_bad_like (LIKE t_bad)",
        )
        .unwrap();
        for (sql, code) in [
            (
                "SELECT stress.archive('t_bad', 'nope', '1 day')",
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            ),
            (
                "SELECT stress.archive('t_bad', 'note', '1 day')",
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            ),
            (
                "SELECT stress.archive('t_bad', 'at', '-1 day')",
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT stress.archive('t_bad', 'at', '1 day', 0)",
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT stress.archive('t_bad', 'at', NULL)",
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT stress.archive('v_bad', 'at', '1 day')",
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            ),
            (
                "SELECT stress.archive('t_bad', 'at', '1 day', archive_to => 't_bad')",
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (
                "SELECT stress.archive('t_bad', 'at', '1 day', archive_to => 't_bad_other')",
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            ),
            (
                "SELECT stress.archive('t_nowhere', 'at', '1 day')",
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            ),
            (
                "SELECT stress.set_retention('t_bad', 'note', '90 days')",
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            ),
        ] {
            assert_eq!(sqlstate_of(sql), Some(code), "{sql}");
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM t_bad"), 1000);
        // A role that may read but not delete: PostgreSQL's own permission error, nothing removed.
        Spi::run(
            "CREATE ROLE r_archive_reader; GRANT SELECT ON t_bad TO r_archive_reader;
             SET LOCAL ROLE r_archive_reader",
        )
        .unwrap();
        assert_eq!(
            sqlstate_of("SELECT stress.archive('t_bad', 'at', '1 day')"),
            Some(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE)
        );
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM t_bad"), 1000);
    }

    #[pg_test]
    fn the_guides_retention_policies_apply_with_the_callers_privileges() {
        Spi::run("SET LOCAL stress.progress_interval = 0").unwrap();
        for t in [
            "system_logs",
            "performance_logs",
            "error_logs",
            "user_action_logs",
            "locked_logs",
        ] {
            dated_table(&format!("t_{t}"));
        }
        // A role sets its policies; each policy deletes with its creator's rights, whoever applies it.
        Spi::run(
            "CREATE TABLE t_error_logs_archive (LIKE t_error_logs);
             CREATE ROLE r_retention;
             GRANT SELECT, DELETE ON t_system_logs, t_performance_logs, t_error_logs, t_user_action_logs,
                                     t_locked_logs TO r_retention;
             GRANT SELECT, INSERT ON t_error_logs_archive TO r_retention;
             SET LOCAL ROLE r_retention;
             SELECT stress.set_retention('t_system_logs', 'at', '90 days');
             SELECT stress.set_retention('t_performance_logs', 'at', '30 days');
             SELECT stress.set_retention('t_error_logs', 'at', '180 days', archive_to => 't_error_logs_archive');
             SELECT stress.set_retention('t_user_action_logs', 'at', '1 year');
             SELECT stress.set_retention('t_locked_logs', 'at', '1 day');
             SELECT stress.set_retention('t_performance_logs', 'at', '50 days');
             RESET ROLE;
             REVOKE DELETE ON t_locked_logs FROM r_retention",
        )
        .unwrap();
        // Without DELETE, a policy cannot be set; the one set before is applied and fails.
        Spi::run("SET LOCAL ROLE r_retention").unwrap();
        assert_eq!(
            sqlstate_of("SELECT stress.set_retention('t_locked_logs', 'at', '2 days')"),
            Some(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE)
        );
        Spi::run("RESET ROLE").unwrap();
        // Applied by a superuser (the daily pg_cron job, say): still with r_retention's rights.
        let applied = one::<String>(
            "SELECT string_agg(format('%s %s %s', relation, rows_removed, status), ', ' ORDER BY relation)
             FROM stress.apply_retention()",
        );
        assert_eq!(one::<String>("SELECT current_user::text"), "postgres");
        // 100 days of rows: 90 days keeps 900 of them, 50 days 500, the rest none to remove; the
        // locked table is the role's to read, not to delete.
        assert_eq!(
            applied,
            "public.t_error_logs 0 ok, public.t_locked_logs 0 failed: archive: permission denied to delete from public.t_locked_logs, \
             public.t_performance_logs 500 ok, public.t_system_logs 100 ok, public.t_user_action_logs 0 ok"
        );
        assert_eq!(
            one::<String>(
                "SELECT string_agg(DISTINCT run_as::text, ',') FROM stress.runs WHERE kind = 'archive'"
            ),
            "r_retention"
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM t_locked_logs"), 1000);
        assert_eq!(
            one::<i64>(
                "SELECT last_rows FROM stress.retention_policies WHERE relation = 'public.t_performance_logs'"
            ),
            500
        );
    }
}
