//! How the SQL-language parts of pg_stress record: archive and the health check (`record_call`),
//! state captures (`record_state_capture`), retention policies (`record_retention_policy`,
//! `record_retention_applied`). Any role may call these, and each writes only records that belong
//! to the calling role; a retention policy only for a table the caller may empty itself.

use super::{as_owner, caller};
use crate::error::{OrRaise, StressError};
use crate::postgres::json_arg::JsonArg;
use pgrx::prelude::*;

/// The kinds of run SQL-language functions record (the others are recorded by the Rust code that
/// did the work, and may not be made up).
const SQL_RECORDED_KINDS: &[&str] = &["archive", "health_check"];

fn permission_denied(message: String, hint: &str) -> ! {
    StressError::PermissionDenied {
        message,
        hint: hint.into(),
    }
    .raise()
}

/// Record a completed call of the caller's: a `stress.runs` row of `kind` (archive, health_check)
/// and one `stress.results` row per element of `results` (objects with name, rows, seconds,
/// rows_per_sec, details). Returns the run id.
pub fn record_call(
    kind: &str,
    parameters: JsonArg,
    started_at: TimestampWithTimeZone,
    results: Option<JsonArg>,
) -> i64 {
    if !SQL_RECORDED_KINDS.contains(&kind) {
        StressError::invalid(
            "record_call",
            format!("kind must be one of {SQL_RECORDED_KINDS:?}, got \"{kind}\""),
            "Runs of other kinds are recorded by the functions that do them.",
        )
        .raise();
    }
    let run_as = caller();
    let results = results.map(|r| r.0).unwrap_or_else(|| "[]".into());
    as_owner(|| {
        Spi::get_one_with_args::<i64>(
            "WITH run AS (
                 INSERT INTO stress.runs (kind, parameters, status, started_at, finished_at, run_as)
                 VALUES ($1, $2::pg_catalog.jsonb, 'completed', $3, pg_catalog.clock_timestamp(),
                         pg_catalog.pg_get_userbyid($5))
                 RETURNING id),
             measured AS (
                 INSERT INTO stress.results (run_id, name, rows, seconds, rows_per_sec, details)
                 SELECT run.id, r.name, r.rows, r.seconds, r.rows_per_sec,
                        coalesce(r.details, '{}'::pg_catalog.jsonb)
                 FROM run, pg_catalog.jsonb_to_recordset($4::pg_catalog.jsonb)
                      AS r(name pg_catalog.text, rows pg_catalog.int8, seconds pg_catalog.float8,
                           rows_per_sec pg_catalog.float8, details pg_catalog.jsonb)
                 WHERE r.name IS NOT NULL)
             SELECT id FROM run",
            &[
                kind.into(),
                parameters.0.as_str().into(),
                started_at.into(),
                results.as_str().into(),
                run_as.into(),
            ],
        )
        .expect("recording the call")
        .expect("a run id")
    })
}

/// Record a state capture of the caller's: `tables` is an array of objects with table_name, rows,
/// checksum. Returns the capture id.
pub fn record_state_capture(
    schema_name: &str,
    label: Option<&str>,
    started_at: TimestampWithTimeZone,
    tables: JsonArg,
) -> i64 {
    let run_as = caller();
    as_owner(|| {
        Spi::get_one_with_args::<i64>(
            "WITH capture AS (
                 INSERT INTO stress.state_captures (schema_name, label, captured_at, seconds, captured_by)
                 VALUES ($1, $2, $3, pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) $3),
                         pg_catalog.pg_get_userbyid($5))
                 RETURNING id),
             rows AS (
                 INSERT INTO stress.state_tables (capture_id, table_name, rows, checksum)
                 SELECT capture.id, t.table_name, t.rows, t.checksum
                 FROM capture, pg_catalog.jsonb_to_recordset($4::pg_catalog.jsonb)
                      AS t(table_name pg_catalog.name, rows pg_catalog.int8, checksum pg_catalog.text))
             SELECT id FROM capture",
            &[
                schema_name.into(),
                label.into(),
                started_at.into(),
                tables.0.as_str().into(),
                run_as.into(),
            ],
        )
        .expect("recording the capture")
        .expect("a capture id")
    })
}

/// Register (or change) the caller's retention policy of `rel` (checked by stress.set_retention).
/// The caller must own `rel` or may SELECT and DELETE its rows, and may INSERT into `archive_to`:
/// the policy never does more than its creator could do by hand. A policy of another role is
/// changed only by a role with that role's privileges.
pub fn record_retention_policy(
    rel: pg_sys::Oid,
    ts_column: &str,
    keep: Interval,
    archive_to: Option<pg_sys::Oid>,
    batch_size: i32,
) {
    const F: &str = "set_retention";
    let may = |sql: &str, oid: pg_sys::Oid| -> bool {
        Spi::get_one_with_args::<bool>(sql, &[oid.into()])
            .expect("checking privileges")
            .unwrap_or(false)
    };
    if !may(
        "SELECT (SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
                        OR (pg_catalog.has_table_privilege(c.oid, 'SELECT')
                            AND pg_catalog.has_table_privilege(c.oid, 'DELETE'))
                 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1)",
        rel,
    ) {
        permission_denied(
            format!("{F}: permission denied to delete rows of table with OID {rel}"),
            "A retention policy deletes rows as the role that set it: own the table, or have SELECT and DELETE on it.",
        );
    }
    if let Some(target) = archive_to
        && !may(
            "SELECT pg_catalog.has_table_privilege($1, 'INSERT')",
            target,
        )
    {
        permission_denied(
            format!("{F}: permission denied to insert into the archive table with OID {target}"),
            "Grant INSERT on archive_to to the role setting the policy.",
        );
    }
    let run_as = caller();
    let existing = as_owner(|| {
        Spi::get_one_with_args::<String>(
            "SELECT (SELECT p.created_by::pg_catalog.text FROM stress.retention_policies p
                     WHERE p.relation OPERATOR(pg_catalog.=) ($1::pg_catalog.regclass)::pg_catalog.text)",
            &[rel.into()],
        )
        .expect("reading the policy")
    });
    if let Some(creator) = existing {
        let allowed = Spi::get_one_with_args::<bool>(
            "SELECT (SELECT pg_catalog.pg_has_role(r.oid, 'USAGE') FROM pg_catalog.pg_roles r
                     WHERE r.rolname OPERATOR(pg_catalog.=) $1)",
            &[creator.as_str().into()],
        )
        .expect("checking the policy's creator")
        .unwrap_or(true); // a role since dropped: its policy may be taken over
        if !allowed {
            permission_denied(
                format!("{F}: the retention policy of this table belongs to role \"{creator}\""),
                "Only that role (or a member of it) may change it.",
            );
        }
    }
    as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO stress.retention_policies (relation, ts_column, keep, archive_to, batch_size, created_by)
             VALUES (($1::pg_catalog.regclass)::pg_catalog.text, $2, $3,
                     ($4::pg_catalog.regclass)::pg_catalog.text, $5, pg_catalog.pg_get_userbyid($6))
             ON CONFLICT (relation) DO UPDATE
                 SET ts_column = EXCLUDED.ts_column, keep = EXCLUDED.keep, archive_to = EXCLUDED.archive_to,
                     batch_size = EXCLUDED.batch_size, enabled = true, created_by = EXCLUDED.created_by,
                     created_at = pg_catalog.now()",
            &[
                rel.into(),
                ts_column.into(),
                keep.into(),
                archive_to.into(),
                batch_size.into(),
                run_as.into(),
            ],
        )
        .map_err(|e| StressError::invalid(F, e.to_string(), ""))
        .or_raise();
    })
}

/// Note that the caller's policy of `relation` was applied now and removed `rows` rows.
pub fn record_retention_applied(relation: &str, rows: i64) {
    let run_as = caller();
    as_owner(|| {
        Spi::run_with_args(
            "UPDATE stress.retention_policies
             SET last_applied_at = pg_catalog.clock_timestamp(), last_rows = $2
             WHERE relation OPERATOR(pg_catalog.=) $1
               AND created_by OPERATOR(pg_catalog.=) pg_catalog.pg_get_userbyid($3)",
            &[relation.into(), rows.into(), run_as.into()],
        )
        .expect("noting the policy's application");
    })
}
