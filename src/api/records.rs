//! How the SQL-language parts of pg_stress record (see crate::records).

use crate::postgres::json_arg::JsonArg;
use pgrx::prelude::*;

/// Record a completed call of the caller's: a `stress.runs` row of `kind` (archive, health_check)
/// and one `stress.results` row per element of `results` (objects with name, rows, seconds,
/// rows_per_sec, details). Returns the run id.
#[pg_extern(volatile, parallel_unsafe)]
fn record_call(
    kind: &str,
    parameters: JsonArg,
    started_at: TimestampWithTimeZone,
    results: default!(Option<JsonArg>, "'[]'"),
) -> i64 {
    crate::records::functions::record_call(kind, parameters, started_at, results)
}

/// Record a state capture of the caller's: `tables` is an array of objects with table_name, rows,
/// checksum. Returns the capture id.
#[pg_extern(volatile, parallel_unsafe)]
fn record_state_capture(
    schema_name: &str,
    label: Option<&str>,
    started_at: TimestampWithTimeZone,
    tables: JsonArg,
) -> i64 {
    crate::records::functions::record_state_capture(schema_name, label, started_at, tables)
}

/// Register (or change) the caller's retention policy of `rel` (checked by stress.set_retention).
/// The caller must own `rel` or may SELECT and DELETE its rows, and may INSERT into `archive_to`:
/// the policy never does more than its creator could do by hand. A policy of another role is
/// changed only by a role with that role's privileges.
#[pg_extern(volatile, parallel_unsafe)]
fn record_retention_policy(
    rel: pg_sys::Oid,
    ts_column: &str,
    keep: Interval,
    archive_to: Option<pg_sys::Oid>,
    batch_size: i32,
) {
    crate::records::functions::record_retention_policy(rel, ts_column, keep, archive_to, batch_size)
}

/// Note that the caller's policy of `relation` was applied now and removed `rows` rows.
#[pg_extern(volatile, parallel_unsafe)]
fn record_retention_applied(relation: &str, rows: i64) {
    crate::records::functions::record_retention_applied(relation, rows)
}
