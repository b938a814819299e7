//! PostgreSQL glue: the few places where pg_stress talks to PostgreSQL below SQL. Each file wraps
//! one mechanism, so that capability modules read as plain Rust over it.

pub mod backend;
pub mod bgworker;
pub mod datum;
pub mod json_arg;
// (the glue of issue 29's load targets: until run_load takes a target, only its #[pg_test]s use it)
#[cfg_attr(not(any(test, feature = "pg_test")), allow(dead_code))]
pub mod libpq;
pub mod parallel_scan;
pub mod privilege;
pub mod procedure;
pub mod progress_notices;
pub mod quote;
pub mod read_only;
pub mod scan;
pub mod signals;
pub mod spi_read;
pub mod subxact;
pub mod transaction;
pub mod version;
