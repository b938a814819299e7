//! #[pg_test]s of the SQL-only capability in `sql/bloat.sql`.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::tests::{one, sqlstate_of};
    use pgrx::prelude::*;

    #[pg_test]
    fn the_bloat_report_has_a_row_per_table_and_index_and_says_how_it_measured() {
        Spi::run(
            "CREATE SCHEMA s_bloat; CREATE TABLE s_bloat.t (id int PRIMARY KEY, v text);
             INSERT INTO s_bloat.t SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
             CREATE INDEX ON s_bloat.t USING hash (v)",
        )
        .unwrap();
        let before_analyze = one::<String>(
            "SELECT string_agg(kind || ' ' || relation || ': ' || method, '; ' ORDER BY kind DESC, relation)
             FROM stress.bloat_report('s_bloat', exact => false)",
        );
        assert_eq!(
            before_analyze,
            "table t: estimate (not analyzed: run ANALYZE); index t_pkey: estimate (not analyzed: run ANALYZE); \
             index t_v_idx: not measured (hash index)"
        );
        Spi::run("ANALYZE s_bloat.t").unwrap();
        // Freshly loaded: nothing to do.
        assert_eq!(
            one::<String>(
                "SELECT string_agg(DISTINCT action, ',') FROM stress.bloat_report('s_bloat', exact => false)"
            ),
            "none"
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM stress.bloat_report('no_such_schema')"),
            Some(PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME)
        );
    }
}
