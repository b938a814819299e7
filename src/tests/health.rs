//! #[pg_test]s of the SQL-only capability in `sql/health.sql`.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of};
    use pgrx::prelude::*;

    #[pg_test]
    fn the_health_views_describe_this_server() {
        let health = one::<String>(
            "SELECT format('%s %s %s %s', database = current_database(), size_bytes > 0, connections >= 1,
                           max_connections = current_setting('max_connections')::int)
             FROM stress.database_health",
        );
        assert_eq!(health, "t t t t");
        Spi::run(
            "CREATE TABLE t_health (id int PRIMARY KEY, k int);
             INSERT INTO t_health SELECT g, g % 10 FROM generate_series(1, 5000) g;
             CREATE INDEX t_health_k ON t_health (k)",
        )
        .unwrap();
        assert!(
            one::<i64>("SELECT total_bytes FROM stress.table_stats WHERE table_name = 't_health'")
                > 5000 * 8
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM stress.index_usage WHERE table_name = 't_health'"),
            2
        );
        // Every view answers (most are empty or all-NULL on a quiet test server).
        for view in [
            "connection_stats",
            "lock_stats",
            "cache_hit_ratio",
            "index_hit_ratio",
            "replication_status",
        ] {
            Spi::run(&format!("SELECT * FROM stress.{view}")).unwrap();
        }
        assert!(one::<i64>("SELECT sum(connections)::int8 FROM stress.connection_stats") >= 1);
    }

    #[pg_test]
    fn unused_indexes_skip_constraints_and_say_what_to_drop() {
        Spi::run(
            "CREATE TABLE t_unused (id int PRIMARY KEY, code text UNIQUE, k int);
             CREATE INDEX t_unused_k ON t_unused (k)",
        )
        .unwrap();
        let listed = one::<String>(
            "SELECT string_agg(index_name || ': ' || suggestion, ', ') FROM stress.unused_indexes()
             WHERE table_name = 't_unused'",
        );
        let schema =
            one::<String>("SELECT schemaname::text FROM pg_indexes WHERE indexname = 't_unused_k'");
        assert_eq!(
            listed,
            format!("t_unused_k: DROP INDEX CONCURRENTLY {schema}.t_unused_k;")
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM stress.unused_indexes(-1)"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE)
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM stress.long_running_queries('-1 second')"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE)
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM stress.slow_statements(-1)"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE)
        );
        // (This test server does not preload pg_stat_statements.)
        assert_eq!(
            sqlstate_of("SELECT * FROM stress.slow_statements()"),
            Some(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
        );
    }

    #[pg_test]
    fn health_alerts_fire_on_their_thresholds() {
        let checks = one::<String>(
            "SELECT string_agg(alert, ',' ORDER BY alert) FROM stress.health_alerts(show_all => true)",
        );
        assert_eq!(
            checks,
            "avg_query_time,connection_pool_exhausted,connection_usage,database_size,error_rate,index_hit_ratio,replication_lag"
        );
        // At least this session is connected: a 0% limit fires, with the measured usage.
        let fired = one::<String>(
            "SELECT format('%s %s', firing, measured > 0) FROM stress.health_alerts(max_connection_usage_pct => 0)
             WHERE alert = 'connection_usage'",
        );
        assert_eq!(fired, "t t");
        assert!(one::<bool>(
            "SELECT firing FROM stress.health_alerts(max_database_gb => 0) WHERE alert = 'database_size'"
        ));
        // With the guide's defaults a test database is far from 100 GB.
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM stress.health_alerts() WHERE alert IN ('database_size', 'replication_lag')"
            ),
            0
        );
        for bad in [
            "max_error_rate_pct => -1",
            "max_database_gb => NULL",
            "show_all => NULL",
        ] {
            assert_eq!(
                sqlstate_of(&format!("SELECT * FROM stress.health_alerts({bad})")),
                Some(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE),
                "{bad}"
            );
        }
    }

    #[pg_test]
    fn a_role_without_privileges_reads_what_pg_monitor_would_let_it() {
        Spi::run("CREATE ROLE r_health_plain; SET LOCAL ROLE r_health_plain").unwrap();
        for sql in [
            "SELECT * FROM stress.database_health",
            "SELECT * FROM stress.table_stats",
            "SELECT * FROM stress.index_usage",
            "SELECT * FROM stress.unused_indexes(100)",
            "SELECT * FROM stress.long_running_queries('0 seconds')",
            "SELECT * FROM stress.connection_stats",
            "SELECT * FROM stress.lock_stats",
            "SELECT * FROM stress.cache_hit_ratio",
            "SELECT * FROM stress.index_hit_ratio",
            "SELECT * FROM stress.replication_status",
            "SELECT * FROM stress.health_alerts(show_all => true)",
            "SELECT * FROM stress.bloat_report()",
        ] {
            assert_eq!(sqlstate_of(sql), None, "{sql}");
        }
    }
}
