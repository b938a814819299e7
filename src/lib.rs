//! pg_stress: stress-test PostgreSQL from inside it.
//!
//! One module per capability; each `#[pg_extern]` is a thin layer that validates its arguments and
//! calls plain Rust underneath. Everything the extension owns lives in schema `stress` (the control
//! file's schema); generated workload data lives in `stress.data_schema` (default `stress_data`).

use pgrx::prelude::*;

// pgrx turns a Rust panic into a PostgreSQL ERROR by catching it as it unwinds; with panic = abort a
// panic would take the whole server down.
#[cfg(not(panic = "unwind"))]
compile_error!("pg_stress must be built with panic = \"unwind\" (Cargo.toml's profiles)");

mod api;
mod args;
mod benchmark;
mod combine;
mod compare;
mod error;
mod generate;
mod gucs;
mod integrity;
mod load;
mod metrics;
mod postgres;
mod records;
mod report_html;
mod runs;
#[cfg(any(test, feature = "pg_test"))]
mod tests;

pgrx::pg_module_magic!();

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    runs::init();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // (pg_cron is built for Debian's PostgreSQL 15 only: on other versions its tests skip,
        // saying so)
        if cfg!(feature = "pg15") {
            vec![
                "shared_preload_libraries = 'pg_stress, pg_cron'",
                "cron.database_name = 'pgrx_tests'",
                "max_worker_processes = 32",
            ]
        } else {
            vec![
                "shared_preload_libraries = 'pg_stress'",
                "max_worker_processes = 32",
            ]
        }
    }
}
