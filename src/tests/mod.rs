//! Helpers shared by the #[pg_test]s.

use pgrx::prelude::*;

/// Point generators at a schema of the test's own (#[pg_test]s run concurrently) and silence
/// progress NOTICEs, for the rest of the test's transaction.
pub fn use_schema(schema: &str) {
    Spi::run(&format!(
        "SET LOCAL stress.data_schema = '{schema}'; SET LOCAL stress.progress_interval = 0"
    ))
    .unwrap();
}

/// The single, non-NULL value `sql` returns.
pub fn one<T: FromDatum + IntoDatum>(sql: &str) -> T {
    Spi::get_one::<T>(sql).unwrap().unwrap()
}

/// The SQLSTATE that `sql` fails with, or None when it succeeds (its effects are then kept).
pub fn sqlstate_of(sql: &str) -> Option<pgrx::PgSqlErrorCode> {
    crate::postgres::subxact::run_isolated(|| pgrx::Spi::run(sql).expect("SPI"))
        .err()
        .map(|e| e.sql_error_code())
}

/// Whether `extension` can be created on this server. When it cannot, the caller skips what needs
/// it and says so: pg_cron, say, is built for Debian's PostgreSQL 15 only.
pub fn extension_available(extension: &str, what: &str) -> bool {
    let available = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = $1)",
        &[extension.into()],
    )
    .unwrap()
    .unwrap_or(false);
    if !available {
        let version = one::<String>("SELECT current_setting('server_version')");
        eprintln!(
            "SKIPPED {what}: the {extension} module is not installed for PostgreSQL {version}"
        );
    }
    available
}

/// amcheck's heapallindexed check of `table`'s btree indexes: each of its `indexes` must find
/// every heap tuple. Where the version has no amcheck (PostgreSQL 16 from PyPI has no contrib) the
/// check is skipped, saying so for `test`, and the rest of the test runs without it.
pub fn assert_every_row_indexed(table: &str, indexes: i64, test: &str) {
    if !extension_available("amcheck", &format!("{test}: its heapallindexed check")) {
        return;
    }
    Spi::run("CREATE EXTENSION IF NOT EXISTS amcheck").unwrap();
    let checked = Spi::get_one_with_args::<i64>(
        "SELECT count(bt_index_check(indexrelid, true)) FROM pg_index
         WHERE indrelid = $1::text::regclass",
        &[table.into()],
    )
    .unwrap();
    assert_eq!(checked, Some(indexes), "btree indexes of {table} checked");
}

// The SQL-only capabilities (src/api): their tests.
mod bloat;
mod health;
mod integrity_state;
mod maintenance;
mod retention;
