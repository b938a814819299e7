//! Each second of a run through a PgBouncer: its pools as `SHOW POOLS` showed them, into
//! `stress.pool_samples` (0.9.0 and later).

use super::{as_owner, timestamp};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// One pool (database and user) of the PgBouncer a run's target is, at one second.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRow {
    pub database: String,
    pub user: String,
    pub pool_mode: Option<String>,
    /// clients linked to a server connection
    pub cl_active: i32,
    /// clients waiting for a server connection
    pub cl_waiting: i32,
    /// server connections linked to a client
    pub sv_active: i32,
    /// server connections unused and ready
    pub sv_idle: i32,
    /// server connections idle long enough to need a check before reuse
    pub sv_used: i32,
    /// how long the oldest waiting client has waited
    pub maxwait_ms: f64,
}

/// Write `rows` for run `run_id` at `at` (in a transaction).
pub fn pool_samples(run_id: i64, at: pg_sys::TimestampTz, elapsed_s: f64, rows: &[PoolRow]) {
    if rows.is_empty() {
        return;
    }
    let column = |f: &dyn Fn(&PoolRow) -> i32| rows.iter().map(f).collect::<Vec<i32>>();
    let text = |f: &dyn Fn(&PoolRow) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO stress.pool_samples (run_id, ts, elapsed_s, database, username, pool_mode,
                                              cl_active, cl_waiting, sv_active, sv_idle, sv_used, maxwait_ms)
             SELECT $1, $2, $3, p.*
             FROM ROWS FROM (pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[]),
                             pg_catalog.unnest($6::pg_catalog.text[]), pg_catalog.unnest($7::pg_catalog.int4[]),
                             pg_catalog.unnest($8::pg_catalog.int4[]), pg_catalog.unnest($9::pg_catalog.int4[]),
                             pg_catalog.unnest($10::pg_catalog.int4[]), pg_catalog.unnest($11::pg_catalog.int4[]),
                             pg_catalog.unnest($12::pg_catalog.float8[])) p",
            &[
                run_id.into(),
                timestamp(at).into(),
                elapsed_s.into(),
                text(&|r| Some(r.database.clone())).into(),
                text(&|r| Some(r.user.clone())).into(),
                text(&|r| r.pool_mode.clone()).into(),
                column(&|r| r.cl_active).into(),
                column(&|r| r.cl_waiting).into(),
                column(&|r| r.sv_active).into(),
                column(&|r| r.sv_idle).into(),
                column(&|r| r.sv_used).into(),
                rows.iter().map(|r| r.maxwait_ms).collect::<Vec<f64>>().into(),
            ],
        )
        .expect("saving the pools' sample")
    })
}
