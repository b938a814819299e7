//! Whether a statement only reads: what a hot standby can run, and what a load worker may execute
//! through read-only SPI (which asks for no transaction id, so a read-only operation costs the
//! server no xid and no commit record).

use pgrx::PgList;
use pgrx::pg_sys;

/// True when every query `sql` parses and rewrites to is a plain SELECT: no data-modifying WITH,
/// no FOR UPDATE/SHARE, no SELECT INTO, no utility statement. `types` are the `$n` parameters'
/// types. (A SELECT may still call a function that writes; on a standby that fails as it runs,
/// with 25006, and counts as the operation's error.) Needs a transaction; `sql` must parse (the
/// caller has prepared it already).
pub fn statement_reads_only(sql: &str, types: &[pg_sys::Oid]) -> bool {
    let Ok(text) = std::ffi::CString::new(sql) else {
        return false;
    };
    // SAFETY: in a transaction; text is NUL-terminated and types holds types.len() type ids, both
    // alive across the calls; parse analysis returns palloc'd lists read here and nothing else (an
    // ERROR in it is the statement's own, raised as PostgreSQL would).
    unsafe {
        let raw_statements = pg_sys::pg_parse_query(text.as_ptr());
        let raw_statements = PgList::<pg_sys::RawStmt>::from_pg(raw_statements);
        raw_statements.iter_ptr().all(|raw| {
            let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(
                raw,
                text.as_ptr(),
                types.as_ptr(),
                types.len() as i32,
                std::ptr::null_mut(),
            );
            let queries = PgList::<pg_sys::Query>::from_pg(queries);
            !queries.is_empty()
                && queries.iter_ptr().all(|q| {
                    (*q).commandType == pg_sys::CmdType::CMD_SELECT
                        && (*q).utilityStmt.is_null()
                        && !(*q).hasModifyingCTE
                        && (*q).rowMarks.is_null()
                })
        })
    }
}

/// The relations `sql` (with parameters of `types`) reads or writes, views expanded, as the
/// planner's cache would depend on them (in a transaction; an invalid statement is an ERROR, as
/// preparing it would be).
pub fn relations_named(sql: &str, types: &[pg_sys::Oid]) -> Vec<pg_sys::Oid> {
    let Ok(text) = std::ffi::CString::new(sql) else {
        return Vec::new();
    };
    let mut relations = Vec::new();
    // SAFETY: parse analysis and rewriting of a NUL-terminated statement with `types.len()`
    // parameter types, in the caller's transaction and memory context, as SPI_prepare does;
    // extract_query_dependencies only reads the rewritten queries and appends to a fresh list.
    unsafe {
        let raw_statements =
            PgList::<pg_sys::RawStmt>::from_pg(pg_sys::pg_parse_query(text.as_ptr()));
        for raw in raw_statements.iter_ptr() {
            let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(
                raw,
                text.as_ptr(),
                types.as_ptr(),
                types.len() as i32,
                std::ptr::null_mut(),
            );
            let (mut oids, mut inval, mut row_security) =
                (std::ptr::null_mut(), std::ptr::null_mut(), false);
            pg_sys::extract_query_dependencies(
                queries.cast(),
                &mut oids,
                &mut inval,
                &mut row_security,
            );
            let oids = PgList::<pg_sys::Oid>::from_pg(oids);
            for i in 0..oids.len() {
                if let Some(oid) = oids.get_oid(i)
                    && !relations.contains(&oid)
                {
                    relations.push(oid);
                }
            }
        }
    }
    relations
}

/// Execute `query` (SQL or a plan) through read-only SPI when it `reads_only` (it then asks for no
/// transaction id, and writes no commit record), else read-write: the one place that picks.
pub fn execute<'conn, Q: pgrx::spi::Query<'conn>>(
    client: &mut pgrx::spi::SpiClient<'conn>,
    query: Q,
    reads_only: bool,
    args: &[pgrx::datum::DatumWithOid],
) -> pgrx::spi::SpiResult<()> {
    if reads_only {
        client.select(query, None, args).map(|_| ())
    } else {
        client.update(query, None, args).map(|_| ())
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn only_plain_selects_read_only() {
        Spi::run("CREATE TABLE ro_t (id int, v text)").unwrap();
        let int4 = [pg_sys::INT4OID];
        for (sql, reads_only) in [
            ("SELECT * FROM ro_t WHERE id = $1", true),
            ("SELECT count(*) FROM ro_t; SELECT 1", true),
            ("VALUES (1)", true),
            ("SELECT * FROM ro_t WHERE id = $1 FOR UPDATE", false),
            ("SELECT * FROM ro_t FOR SHARE", false),
            (
                "WITH d AS (DELETE FROM ro_t RETURNING *) SELECT * FROM d",
                false,
            ),
            ("SELECT * INTO ro_copy FROM ro_t", false),
            ("UPDATE ro_t SET v = 'x' WHERE id = $1", false),
            ("INSERT INTO ro_t VALUES ($1)", false),
            ("SELECT 1; DELETE FROM ro_t", false),
            ("LOCK ro_t", false),
        ] {
            assert_eq!(super::statement_reads_only(sql, &int4), reads_only, "{sql}");
        }
    }

    #[pg_test]
    fn the_relations_a_statement_names_views_expanded() {
        Spi::run(
            "CREATE TABLE rel_a (id int); CREATE TABLE rel_b (id int);
             CREATE VIEW rel_v AS SELECT * FROM rel_b",
        )
        .unwrap();
        let oid = |name: &str| {
            Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{name}'::regclass::oid"))
                .unwrap()
                .unwrap()
        };
        let found = super::relations_named(
            "UPDATE rel_a SET id = $1 WHERE id IN (SELECT id FROM rel_v)",
            &[pg_sys::INT4OID],
        );
        assert!(found.contains(&oid("rel_a")), "{found:?}");
        assert!(found.contains(&oid("rel_b")), "the view's table: {found:?}");
        assert!(super::relations_named("SELECT 1", &[]).is_empty());
    }
}
