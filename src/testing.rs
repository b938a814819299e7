//! Helpers shared by the #[pg_test]s.

use pgrx::prelude::*;

pub use crate::subxact::sqlstate_of;

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
