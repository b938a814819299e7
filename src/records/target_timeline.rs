//! Each second of a run on a target that is a PostgreSQL server: what the run's connections there
//! wait on, and the target's WAL, commits and blocks in that second, into `stress.target_timeline`
//! (0.9.0 and later).

use super::{as_owner, timestamp};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// One second of the target, as the run's monitoring connection saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRow {
    /// the run's connections on the target now, per "type:event" ("CPU": active, not waiting), as
    /// a JSON object
    pub wait_events: String,
    /// of those, waiting for a lock now
    pub lock_waits: i32,
    /// client connections to the target's database now (anyone's, the monitor's left out)
    pub connections: i32,
    /// the target's WAL, and its database's counters, in this second
    pub wal_bytes: i64,
    pub xact_commit: i64,
    pub xact_rollback: i64,
    pub blks_hit: i64,
    pub blks_read: i64,
    pub deadlocks: i64,
}

/// Write `row` for run `run_id` at `at` (in a transaction).
pub fn target_timeline(run_id: i64, at: pg_sys::TimestampTz, elapsed_s: f64, row: &TargetRow) {
    as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO stress.target_timeline (run_id, ts, elapsed_s, wait_events, lock_waits,
                                                 connections, wal_bytes, xact_commit, xact_rollback,
                                                 blks_hit, blks_read, deadlocks)
             VALUES ($1, $2, $3, $4::pg_catalog.jsonb, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                run_id.into(),
                timestamp(at).into(),
                elapsed_s.into(),
                row.wait_events.as_str().into(),
                row.lock_waits.into(),
                row.connections.into(),
                row.wal_bytes.into(),
                row.xact_commit.into(),
                row.xact_rollback.into(),
                row.blks_hit.into(),
                row.blks_read.into(),
                row.deadlocks.into(),
            ],
        )
        .expect("saving the target's timeline row")
    })
}
