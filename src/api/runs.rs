//! Run control from any session: `stress.cancel`, `stress.wait`, and the live runs behind the
//! `stress.progress` view.

use crate::error::StressError;
use crate::postgres::procedure::value;
use crate::procedure;
use crate::runs::control;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Asks every worker of a running run to stop (within about one operation); true if the run was
/// running. The run ends with status cancelled, its measurements so far kept.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn cancel(run_id: i64) -> bool {
    control::require_preload("cancel");
    match control::run_owner(run_id) {
        None => false,
        Some(role) => {
            // SAFETY: a permission check of the current user against a role id; a dropped role is
            // simply no match.
            if !unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), role) } {
                StressError::PermissionDenied {
                    message: format!("permission denied to cancel load run {run_id}"),
                    hint: "Only the role that started a run (or a member of it, or a superuser) may cancel it.".into(),
                }
                .raise();
            }
            control::cancel_run(run_id)
        }
    }
}

// CALL stress.wait(run_id): blocks until the run ends, holding no snapshot, and gives its status.
// (Cancelling the wait leaves the run going.)
procedure!(
    pg_stress_wait,
    pg_finfo_pg_stress_wait,
    "wait",
    "Run it on its own (not inside BEGIN ... COMMIT): a wait inside a transaction would hold its snapshot. Poll SELECT status FROM stress.runs WHERE id = ... instead.",
    |call| {
        control::require_preload("wait");
        let run_id: i64 = call.required("wait", 0, "run_id");
        let known = crate::postgres::spi_read::latest::<bool>(
            "SELECT EXISTS (SELECT 1 FROM stress.runs WHERE id OPERATOR(pg_catalog.=) $1)",
            &[run_id.into()],
        )
        .expect("looking for the run")
        .unwrap_or(false)
            || control::is_running(run_id);
        if !known {
            StressError::invalid(
                "wait",
                format!("there is no run {run_id}"),
                "See stress.runs for run ids.",
            )
            .raise();
        }
        call.commit();
        let status = control::wait_for_without_cancel(run_id);
        call.commit();
        call.row(vec![value(status)])
    }
);

/// The symbol 0.5.0's SQL names for `stress.wait`, now a procedure.
#[pg_extern(sql = false)]
fn wait() -> String {
    super::update_first("wait")
}

/// The runs going on in this server, from shared memory (see the `stress.progress` view).
// (pgrx reads the column names from this very signature: it cannot be a type alias.)
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn live_runs() -> TableIterator<
    'static,
    (
        name!(run_id, i64),
        name!(database, Option<String>),
        name!(started_at, TimestampWithTimeZone),
        name!(elapsed_s, f64),
        name!(workers, i32),
        name!(active_workers, i32),
        name!(ops, i64),
        name!(ops_per_sec, f64),
        name!(errors, i64),
        name!(p99_ms, Option<f64>),
        name!(cancel_requested, bool),
    ),
> {
    let now = crate::postgres::backend::now();
    let rows: Vec<_> = control::live_runs()
        .into_iter()
        .map(|r| {
            // SAFETY: get_database_name returns a palloc'd copy or null (a dropped database),
            // checked before it is read.
            let database = unsafe {
                let name = pg_sys::get_database_name(r.database);
                (!name.is_null()).then(|| {
                    std::ffi::CStr::from_ptr(name)
                        .to_string_lossy()
                        .into_owned()
                })
            };
            (
                r.run_id,
                database,
                TimestampWithTimeZone::try_from(r.started_at).expect("valid start"),
                (now - r.started_at) as f64 / 1e6,
                r.workers as i32,
                r.active_workers as i32,
                r.ops as i64,
                r.ops_per_sec,
                r.errors as i64,
                r.p99_ms,
                r.cancel_requested,
            )
        })
        .collect();
    TableIterator::new(rows)
}

extension_sql!(
    r#"
CREATE VIEW stress.progress AS SELECT * FROM stress.live_runs();
COMMENT ON VIEW stress.progress IS 'Load runs going on now: elapsed, operations, ops/s over the last second, errors, p99 so far.';
GRANT SELECT ON stress.progress TO PUBLIC;
"#,
    name = "progress_view",
    requires = [live_runs]
);

extension_sql!(
    r#"
CREATE PROCEDURE stress.wait(run_id bigint, INOUT status text DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_stress_wait';
COMMENT ON PROCEDURE stress.wait IS 'Waits, holding no snapshot, until the run ends; its status (completed, cancelled, failed, interrupted).';
"#,
    name = "wait_procedure",
    requires = ["schema"]
);
