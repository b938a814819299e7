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

// The SQL-only capabilities (src/api): their tests.
mod bloat;
mod health;
mod integrity_state;
mod maintenance;
mod retention;
