//! Each second of a run: its `stress.samples` row (from the live figures) and, with
//! `stress.timeline`, its `stress.timeline` row (the server's counters, what the workers wait on, lock
//! waits, replication lag), read and written in one statement each.

use super::{as_owner, has_column, timestamp};
use crate::postgres::catalog::has_stress_table;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// One second (or so) of a run, as its sampler saw it.
pub struct SampleRow {
    pub run_id: i64,
    pub at: pg_sys::TimestampTz,
    pub elapsed_s: f64,
    pub ops: i64,
    pub errors: i64,
    /// None: stress.samples has no deadlocks column (older than 0.3.0)
    pub deadlocks: Option<i64>,
    pub ops_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub active_workers: i32,
}

/// One per-second row of `stress.samples`. Returns the database's connections now (counted in the
/// same statement), for the run's peak.
pub fn sample(s: &SampleRow) -> i64 {
    // (without `deadlocks` into a stress.samples older than 0.3.0's)
    macro_rules! insert_sample {
        ($columns:literal, $values:literal) => {
            concat!(
                "INSERT INTO stress.samples (run_id, ts, elapsed_s, ops, errors, ops_per_sec, p50_ms,
                                             p99_ms, active_workers, connections",
                $columns,
                ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, pg_catalog.count(*)",
                $values,
                " FROM pg_catalog.pg_stat_activity a
                  WHERE a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
                  RETURNING connections"
            )
        };
    }
    const WITH_DEADLOCKS: &str = insert_sample!(", deadlocks", ", $10");
    const WITHOUT: &str = insert_sample!("", "");
    let mut args = vec![
        s.run_id.into(),
        timestamp(s.at).into(),
        s.elapsed_s.into(),
        s.ops.into(),
        s.errors.into(),
        s.ops_per_sec.into(),
        s.p50_ms.into(),
        s.p99_ms.into(),
        s.active_workers.into(),
    ];
    let sql = match s.deadlocks {
        Some(deadlocks) => {
            args.push(deadlocks.into());
            WITH_DEADLOCKS
        }
        None => WITHOUT,
    };
    as_owner(|| {
        Spi::get_one_with_args::<i64>(sql, &args)
            .expect("saving a sample")
            .unwrap_or(0)
    })
}

/// The server's cumulative counters a timeline row is the difference of.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerCounters {
    pub wal_bytes: i64,
    pub blks_hit: i64,
    pub blks_read: i64,
    pub xact_commit: i64,
    pub xact_rollback: i64,
    pub checkpoints: i64,
    /// WAL flushes to disk (pg_stat_wal's wal_sync until 17; pg_stat_io's WAL fsyncs since 18)
    pub wal_syncs: i64,
    /// shared-buffer I/O of relations by every process, from pg_stat_io (16 and later; 0 before,
    /// and the timeline's columns NULL)
    pub io: IoCounters,
}

/// pg_stat_io's counters of relation I/O through shared buffers, summed over every process kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct IoCounters {
    pub reads: i64,
    pub writes: i64,
    pub extends: i64,
    pub evictions: i64,
    pub fsyncs: i64,
    /// writes by client backends and background workers themselves (a dirty buffer evicted to
    /// make room), not by the checkpointer or the background writer
    pub backend_writes: i64,
}

// The server's counters now: the WAL position as bytes, this database's counters, the checkpoints and
// WAL flushes so far, and pg_stat_io's relation I/O. (A macro, so that both queries below are fixed
// strings, built with concat!.)
macro_rules! server_counters_sql {
    () => {
        concat!(
            "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), '0/0')::pg_catalog.int8 AS wal,
                d.blks_hit, d.blks_read, d.xact_commit, d.xact_rollback, ",
            checkpoints_sql!(),
            " AS checkpoints, ",
            wal_syncs_sql!(),
            " AS wal_syncs, io.reads, io.writes, io.extends, io.evictions, io.fsyncs, io.backend_writes
         FROM pg_catalog.pg_stat_database d, (",
            io_sql!(),
            ") io WHERE d.datid OPERATOR(pg_catalog.=) $1"
        )
    };
}

// The checkpoints finished so far: pg_stat_bgwriter's until 16, pg_stat_checkpointer's since 17.
#[cfg(any(feature = "pg15", feature = "pg16"))]
macro_rules! checkpoints_sql {
    () => {
        "(SELECT b.checkpoints_timed OPERATOR(pg_catalog.+) b.checkpoints_req
          FROM pg_catalog.pg_stat_bgwriter b)"
    };
}
#[cfg(not(any(feature = "pg15", feature = "pg16")))]
macro_rules! checkpoints_sql {
    () => {
        "(SELECT c.num_timed OPERATOR(pg_catalog.+) c.num_requested
          FROM pg_catalog.pg_stat_checkpointer c)"
    };
}

// The WAL flushes so far: pg_stat_wal's wal_sync until 17; 18 moved WAL I/O into pg_stat_io.
#[cfg(not(feature = "pg18"))]
macro_rules! wal_syncs_sql {
    () => {
        "(SELECT w.wal_sync FROM pg_catalog.pg_stat_wal w)"
    };
}
#[cfg(feature = "pg18")]
macro_rules! wal_syncs_sql {
    () => {
        "(SELECT pg_catalog.sum(i.fsyncs)::pg_catalog.int8 FROM pg_catalog.pg_stat_io i
          WHERE i.object OPERATOR(pg_catalog.=) 'wal')"
    };
}

// Relation I/O through shared buffers (pg_stat_io, 16 and later; NULLs on 15).
#[cfg(feature = "pg15")]
macro_rules! io_sql {
    () => {
        "SELECT NULL::pg_catalog.int8 AS reads, NULL::pg_catalog.int8 AS writes,
                NULL::pg_catalog.int8 AS extends, NULL::pg_catalog.int8 AS evictions,
                NULL::pg_catalog.int8 AS fsyncs, NULL::pg_catalog.int8 AS backend_writes"
    };
}
#[cfg(not(feature = "pg15"))]
macro_rules! io_sql {
    () => {
        "SELECT pg_catalog.sum(i.reads)::pg_catalog.int8 AS reads,
                pg_catalog.sum(i.writes)::pg_catalog.int8 AS writes,
                pg_catalog.sum(i.extends)::pg_catalog.int8 AS extends,
                pg_catalog.sum(i.evictions)::pg_catalog.int8 AS evictions,
                pg_catalog.sum(i.fsyncs)::pg_catalog.int8 AS fsyncs,
                (pg_catalog.sum(i.writes) FILTER (WHERE i.backend_type OPERATOR(pg_catalog.=)
                     ANY ('{client backend,background worker}')))::pg_catalog.int8 AS backend_writes
         FROM pg_catalog.pg_stat_io i WHERE i.object OPERATOR(pg_catalog.=) 'relation'"
    };
}

/// The counters in columns 1…13 of the current row, in [`ServerCounters`]' order (a NULL, as
/// pg_stat_io's before 16, is 0).
fn counters_of(row: &pgrx::spi::SpiTupleTable) -> pgrx::spi::SpiResult<ServerCounters> {
    let n = |i| row.get::<i64>(i).map(Option::unwrap_or_default);
    Ok(ServerCounters {
        wal_bytes: n(1)?,
        blks_hit: n(2)?,
        blks_read: n(3)?,
        xact_commit: n(4)?,
        xact_rollback: n(5)?,
        checkpoints: n(6)?,
        wal_syncs: n(7)?,
        io: IoCounters {
            reads: n(8)?,
            writes: n(9)?,
            extends: n(10)?,
            evictions: n(11)?,
            fsyncs: n(12)?,
            backend_writes: n(13)?,
        },
    })
}

/// The counters now (a run's first timeline row is the difference from these).
pub fn server_counters() -> ServerCounters {
    as_owner(|| {
        Spi::connect(|client| {
            let row = client
                .select(
                    server_counters_sql!(),
                    Some(1),
                    &[crate::postgres::backend::database().into()],
                )?
                .first();
            counters_of(&row)
        })
        .expect("reading the server's counters")
    })
}

/// A run's timeline row (`$io_columns`, `$io_values`: 0.9.0's WAL flushes and pg_stat_io columns,
/// or "" for an older schema), and (`$lock_waits`: the 0.4.0 statements, or "" for an older schema)
/// its lock waits into `stress.lock_waits`, from one read of the lock table, and each standby's
/// lag into `stress.replication_lag`. A waiting lock's
/// relation: its own (a relation or tuple lock); for a row wait (on the other transaction), that
/// of the tuple lock the waiter holds; or, following an update chain with no tuple lock held, the
/// tables both the waiter and the transaction it waits for are writing or locking rows of.
macro_rules! timeline_sql {
    ([$($lock_waits:tt)*], $io_columns:literal, $io_values:literal) => {
        concat!(
            "WITH workers AS (
                 SELECT a.wait_event_type, a.wait_event FROM pg_catalog.pg_stat_activity a
                 WHERE a.pid OPERATOR(pg_catalog.=) ANY ($4)),
             -- (one read of the lock table, for a consistent picture: the workers' locks, and the
             -- granted ones of the sessions that may hold what they wait for)
             locks AS MATERIALIZED (
                 SELECT l.pid, l.locktype, l.mode, l.relation, l.transactionid, l.granted, l.waitstart
                 FROM pg_catalog.pg_locks l
                 WHERE l.pid OPERATOR(pg_catalog.=) ANY ($4)
                    OR (l.granted AND l.locktype OPERATOR(pg_catalog.=) ANY ('{relation,transactionid}'))),
             waiting AS (
                 SELECT l.*,
                        coalesce(
                            l.relation::pg_catalog.regclass::pg_catalog.text,
                            (SELECT t.relation::pg_catalog.regclass::pg_catalog.text FROM locks t
                             WHERE t.pid OPERATOR(pg_catalog.=) l.pid AND t.granted
                               AND t.locktype OPERATOR(pg_catalog.=) 'tuple' LIMIT 1),
                            (SELECT pg_catalog.string_agg(DISTINCT m.relation::pg_catalog.regclass::pg_catalog.text, ', ')
                             FROM locks m, locks h, locks o
                             WHERE l.locktype OPERATOR(pg_catalog.=) 'transactionid'
                               AND m.pid OPERATOR(pg_catalog.=) l.pid AND m.granted
                               AND m.locktype OPERATOR(pg_catalog.=) 'relation'
                               AND m.mode OPERATOR(pg_catalog.=) ANY ('{RowExclusiveLock,RowShareLock}')
                               AND h.locktype OPERATOR(pg_catalog.=) 'transactionid' AND h.granted
                               AND h.transactionid OPERATOR(pg_catalog.=) l.transactionid
                               AND o.pid OPERATOR(pg_catalog.=) h.pid AND o.granted
                               AND o.locktype OPERATOR(pg_catalog.=) 'relation'
                               AND o.relation OPERATOR(pg_catalog.=) m.relation
                               AND o.mode OPERATOR(pg_catalog.=) ANY ('{RowExclusiveLock,RowShareLock}')
                               AND (SELECT c.relkind FROM pg_catalog.pg_class c
                                    WHERE c.oid OPERATOR(pg_catalog.=) m.relation)
                                   OPERATOR(pg_catalog.=) ANY ('{r,p}'))) AS rel
                 FROM locks l
                 WHERE l.pid OPERATOR(pg_catalog.=) ANY ($4) AND NOT l.granted),
             longest AS (SELECT * FROM waiting w ORDER BY w.waitstart NULLS LAST LIMIT 1),
             counters AS (",
            server_counters_sql!(),
            ")",
            $($lock_waits)*,
            ",
             written AS (
             INSERT INTO stress.timeline
                 (run_id, ts, elapsed_s, wait_events, lock_waits, longest_lock_wait_ms, lock_relation,
                  wal_bytes, blks_hit, blks_read, xact_commit, xact_rollback, checkpoints,
                  autovacuum_workers",
            $io_columns,
            ")
             SELECT $2, $3, $5,
                    (SELECT coalesce(pg_catalog.jsonb_object_agg(e.event, e.n), '{}')
                     FROM (SELECT coalesce(w.wait_event_type OPERATOR(pg_catalog.||) ':'
                                           OPERATOR(pg_catalog.||) w.wait_event, 'CPU') AS event,
                                  pg_catalog.count(*) AS n
                           FROM workers w GROUP BY 1) e),
                    (SELECT pg_catalog.count(DISTINCT w.pid) FROM waiting w),
                    (SELECT pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()
                                                OPERATOR(pg_catalog.-) l.waitstart)
                            OPERATOR(pg_catalog.*) 1000 FROM longest l),
                    (SELECT l.rel FROM longest l),
                    c.wal OPERATOR(pg_catalog.-) $6, c.blks_hit OPERATOR(pg_catalog.-) $7,
                    c.blks_read OPERATOR(pg_catalog.-) $8, c.xact_commit OPERATOR(pg_catalog.-) $9,
                    c.xact_rollback OPERATOR(pg_catalog.-) $10, c.checkpoints OPERATOR(pg_catalog.-) $11,
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a
                     WHERE a.backend_type OPERATOR(pg_catalog.=) 'autovacuum worker')",
            $io_values,
            "
             FROM counters c)
             -- (the counters now, the next row's starting point)
             SELECT * FROM counters"
        )
    };
}

// 0.4.0's lock waits and standby lag, beside a timeline row (see [`timeline`])
macro_rules! lock_waits_sql {
    () => {
        ",
             recorded AS (
                 INSERT INTO stress.lock_waits AS w
                     (run_id, pid, wait_started, last_seen, waited_ms, locktype, mode, relation)
                 SELECT $2, l.pid, l.waitstart, pg_catalog.clock_timestamp(),
                        pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) l.waitstart)
                            OPERATOR(pg_catalog.*) 1000,
                        l.locktype, l.mode, l.rel
                 FROM waiting l WHERE l.waitstart IS NOT NULL
                 ON CONFLICT (run_id, pid, wait_started) DO UPDATE
                     SET last_seen = excluded.last_seen, waited_ms = excluded.waited_ms),
             lagged AS (
                 INSERT INTO stress.replication_lag
                     (run_id, ts, elapsed_s, standby, state, write_lag_bytes, flush_lag_bytes,
                      replay_lag_bytes, write_lag_ms, flush_lag_ms, replay_lag_ms)
                 SELECT $2, $3, $5, coalesce(r.application_name, r.pid::pg_catalog.text), r.state,
                        -- (the primary's position read after the standby's, row by row: read
                        -- once before, a standby that moved on meanwhile showed a negative lag)
                        pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.write_lsn)::pg_catalog.int8,
                        pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.flush_lsn)::pg_catalog.int8,
                        pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.replay_lsn)::pg_catalog.int8,
                        pg_catalog.date_part('epoch', r.write_lag) OPERATOR(pg_catalog.*) 1000,
                        pg_catalog.date_part('epoch', r.flush_lag) OPERATOR(pg_catalog.*) 1000,
                        pg_catalog.date_part('epoch', r.replay_lag) OPERATOR(pg_catalog.*) 1000
                 FROM pg_catalog.pg_stat_replication r
                 WHERE NOT pg_catalog.pg_is_in_recovery())"
    };
}

/// What this database's timeline tables take: the extension's objects may be older than this
/// library (installed, the database not yet updated with ALTER EXTENSION pg_stress UPDATE), and a
/// statement naming a newer column would fail. Read once, when a run's sampler starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineColumns {
    /// 0.3.0: stress.timeline only
    Base,
    /// 0.4.0: and stress.lock_waits and stress.replication_lag
    LockWaits,
    /// 0.9.0: and the timeline's WAL flushes and pg_stat_io columns
    Io,
}

impl TimelineColumns {
    /// This database's, from the catalog caches (in a transaction).
    pub fn of_database() -> Self {
        if has_column(c"timeline", c"wal_syncs") {
            TimelineColumns::Io
        } else if has_stress_table(c"lock_waits") && has_stress_table(c"replication_lag") {
            TimelineColumns::LockWaits
        } else {
            TimelineColumns::Base
        }
    }
}

/// One `stress.timeline` row: what the workers `pids` wait on now, their lock waits, and the
/// server's counters since `before`. Where the database's `columns` are 0.4.0's or later
/// (stress.lock_waits and stress.replication_lag exist), in the same statement:
/// - each wait into stress.lock_waits: one row per wait (process and start), its `waited_ms`
///   growing while it is seen again;
/// - each standby's lag into stress.replication_lag: how far its written, flushed and replayed WAL
///   is behind this server's, in bytes and (as the standby reports it) in time. The lag columns of
///   pg_stat_replication are NULL for a caller without pg_read_all_stats.
///
/// Returns the counters now.
pub fn timeline(
    run_id: i64,
    at: pg_sys::TimestampTz,
    elapsed_s: f64,
    pids: &[i32],
    before: &ServerCounters,
    columns: TimelineColumns,
) -> ServerCounters {
    // 0.9.0's WAL flushes and pg_stat_io, each the difference from its `before`
    const WITH_IO: &str = timeline_sql!(
        [lock_waits_sql!()],
        ", wal_syncs, io_reads, io_writes, io_extends, io_evictions, io_fsyncs, io_backend_writes",
        ",
                    c.wal_syncs OPERATOR(pg_catalog.-) $12, c.reads OPERATOR(pg_catalog.-) $13,
                    c.writes OPERATOR(pg_catalog.-) $14, c.extends OPERATOR(pg_catalog.-) $15,
                    c.evictions OPERATOR(pg_catalog.-) $16, c.fsyncs OPERATOR(pg_catalog.-) $17,
                    c.backend_writes OPERATOR(pg_catalog.-) $18"
    );
    const WITH_LOCK_WAITS: &str = timeline_sql!([lock_waits_sql!()], "", "");
    const WITHOUT: &str = timeline_sql!([""], "", "");
    let sql = match columns {
        TimelineColumns::Io => WITH_IO,
        TimelineColumns::LockWaits => WITH_LOCK_WAITS,
        TimelineColumns::Base => WITHOUT,
    };
    as_owner(|| {
        Spi::connect_mut(|client| {
            let row = client
                .update(
                    sql,
                    None,
                    &[
                        crate::postgres::backend::database().into(),
                        run_id.into(),
                        timestamp(at).into(),
                        pids.to_vec().into(),
                        elapsed_s.into(),
                        before.wal_bytes.into(),
                        before.blks_hit.into(),
                        before.blks_read.into(),
                        before.xact_commit.into(),
                        before.xact_rollback.into(),
                        before.checkpoints.into(),
                        before.wal_syncs.into(),
                        before.io.reads.into(),
                        before.io.writes.into(),
                        before.io.extends.into(),
                        before.io.evictions.into(),
                        before.io.fsyncs.into(),
                        before.io.backend_writes.into(),
                    ],
                )?
                .first();
            counters_of(&row)
        })
        .expect("saving a timeline row")
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// The counters a timeline row is the difference of read on this version (the checkpoints
    /// moved to pg_stat_checkpointer in 17, WAL flushes to pg_stat_io in 18; pg_stat_io is there
    /// from 16), and a checkpoint is counted: its own, the dirty buffers it writes, its WAL flush.
    #[pg_test]
    fn the_servers_counters_read_on_this_version() {
        Spi::run("CREATE TABLE dirty AS SELECT g FROM generate_series(1, 10000) g").unwrap();
        let before = super::server_counters();
        assert!(before.xact_commit > 0 && before.wal_bytes > 0);
        Spi::run("CHECKPOINT").unwrap();
        let counted = |b: &super::ServerCounters, a: &super::ServerCounters| {
            a.checkpoints > b.checkpoints
                && a.wal_syncs > b.wal_syncs
                && (cfg!(feature = "pg15") || a.io.writes > b.io.writes)
        };
        // (the checkpointer reports its counts once the checkpoint is done, maybe just after
        // CHECKPOINT returns; each look takes a new statistics snapshot)
        let mut after = super::server_counters();
        for _ in 0..50 {
            if counted(&before, &after) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            Spi::run("SELECT pg_stat_clear_snapshot()").unwrap();
            after = super::server_counters();
        }
        assert!(counted(&before, &after), "{before:?} -> {after:?}");
        if cfg!(feature = "pg15") {
            // (no pg_stat_io before 16: the timeline's columns are NULL)
            assert_eq!(
                after.io.reads + after.io.writes + after.io.backend_writes,
                0
            );
        }
    }
}
