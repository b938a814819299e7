//! The SQL surface: every `#[pg_extern]`, one file per capability, each turning its arguments into a
//! call of one function of that capability; and, here, every SQL file, in this order: the schema
//! first (every function records into it), then the capabilities written in SQL because they are
//! queries over PostgreSQL's own catalogs and statistics (their #[pg_test]s are in `src/tests/`).

use pgrx::prelude::*;

/// For the symbols that an older release's SQL names for what are procedures in 0.6.0: a database
/// whose library is newer than its SQL gets a clear error rather than "could not find function".
fn update_first(function: &str) -> ! {
    crate::error::StressError::NotSupported {
        message: format!(
            "stress.{function} is a procedure in pg_stress 0.6.0, and this database still has the SQL of an older release"
        ),
        hint: format!(
            "Run ALTER EXTENSION pg_stress UPDATE, then CALL stress.{function}(...) (it commits while it waits)."
        ),
    }
    .raise()
}

mod benchmark;
mod combine;
mod compare;
mod generate;
mod integrity;
mod load;
mod records;
mod report_html;
mod runs;

// The metric tables and their dump configuration come first: functions record into them.
extension_sql_file!("../../sql/schema.sql", name = "schema", bootstrap);

// Health of the database — the operations guide's daily and weekly checks — as views and functions
// over PostgreSQL's statistics views.
extension_sql_file!(
    "../../sql/health.sql",
    name = "health",
    requires = ["schema"]
);

// `stress.bloat_report(schema, exact)`: dead rows and wasted space per table and index, worst first,
// with the action to take — exact with pgstattuple when the caller may use it, else estimated.
extension_sql_file!("../../sql/bloat.sql", name = "bloat", requires = ["schema"]);

// `stress.verify_integrity(schema)`, `stress.capture_state(schema, label)` and
// `stress.compare_state(a, b)`: catalog-driven checks and captures (which use `stress.checksum`).
extension_sql_file!(
    "../../sql/integrity.sql",
    name = "integrity",
    requires = ["schema"]
);

// Routine maintenance with pg_cron: `stress.schedule_maintenance(…)`,
// `stress.unschedule_maintenance()` and the weekly `stress.record_health_check()`. pg_cron is called
// dynamically, so pg_stress installs without it.
extension_sql_file!(
    "../../sql/maintenance.sql",
    name = "maintenance",
    requires = ["schema"]
);

// Run against run (`stress.compare_runs`) and a run against its targets (`stress.assert_targets`, an
// ERROR that fails a CI step), over stress.results as the caller.
extension_sql_file!(
    "../../sql/compare.sql",
    name = "compare",
    requires = ["schema"]
);

// Contention (`stress.analyze_deadlocks`, `stress.lock_contention`) over the tables the runs'
// samplers and workers fill: `stress.lock_waits` and `stress.conflicts`.
extension_sql_file!(
    "../../sql/contention.sql",
    name = "contention",
    requires = ["schema", "compare"]
);

// A primary and its standbys: `stress.replication_lag` (each run's sampler fills it) and
// `stress.wait_for_replicas`.
extension_sql_file!(
    "../../sql/replication.sql",
    name = "replication",
    requires = ["schema"]
);

// Archiving and retention — "delete logs older than 90 days" — as `stress.archive(…)`,
// `stress.archive_batched(…)`, the `stress.retention_policies` table and `stress.set_retention(…)`.
extension_sql_file!(
    "../../sql/retention.sql",
    name = "retention",
    requires = ["schema"]
);
