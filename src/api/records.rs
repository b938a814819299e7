//! How the SQL-language parts of pg_stress record (see crate::records).

use crate::postgres::json_arg::JsonArg;
use pgrx::prelude::*;

/// `stress.record_call`: [`crate::records::functions::record_call`].
#[pg_extern(volatile, parallel_unsafe)]
fn record_call(
    kind: &str,
    parameters: JsonArg,
    started_at: TimestampWithTimeZone,
    results: default!(Option<JsonArg>, "'[]'"),
) -> i64 {
    crate::records::functions::record_call(kind, parameters, started_at, results)
}

/// `stress.record_state_capture`: [`crate::records::functions::record_state_capture`].
#[pg_extern(volatile, parallel_unsafe)]
fn record_state_capture(
    schema_name: &str,
    label: Option<&str>,
    started_at: TimestampWithTimeZone,
    tables: JsonArg,
) -> i64 {
    crate::records::functions::record_state_capture(schema_name, label, started_at, tables)
}

/// `stress.record_retention_policy`: [`crate::records::functions::record_retention_policy`].
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

/// `stress.record_retention_applied`: [`crate::records::functions::record_retention_applied`].
#[pg_extern(volatile, parallel_unsafe)]
fn record_retention_applied(relation: &str, rows: i64) {
    crate::records::functions::record_retention_applied(relation, rows)
}
