//! PostgreSQL glue: the few places where pg_stress talks to PostgreSQL below SQL. Each file wraps
//! one mechanism, so that capability modules read as plain Rust over it.

pub mod backend;
pub mod bgworker;
pub mod catalog;
pub mod datum;
pub mod json_arg;
pub mod libpq;
pub mod multiplex;
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
