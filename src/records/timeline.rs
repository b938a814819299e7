//! Each second of a run: its `stress.samples` row (from the live figures) and, with
//! `stress.timeline`, its `stress.timeline` row (the server's counters, what the workers wait on, lock
//! waits, replication lag), read and written in one statement each.

use super::{as_owner, timestamp};
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
}

// The server's counters now: the WAL position as bytes, this database's counters, the checkpoints so
// far. (A macro, so that both queries below are fixed strings, built with concat!.)
macro_rules! server_counters_sql {
    () => {
        concat!(
            "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), '0/0')::pg_catalog.int8 AS wal,
                d.blks_hit, d.blks_read, d.xact_commit, d.xact_rollback, ",
            checkpoints_sql!(),
            " AS checkpoints
         FROM pg_catalog.pg_stat_database d WHERE d.datid OPERATOR(pg_catalog.=) $1"
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

/// The six counters in columns 1…6 of the current row, in [`ServerCounters`]' order.
fn counters_of(row: &pgrx::spi::SpiTupleTable) -> pgrx::spi::SpiResult<ServerCounters> {
    let n = |i| row.get::<i64>(i).map(Option::unwrap_or_default);
    Ok(ServerCounters {
        wal_bytes: n(1)?,
        blks_hit: n(2)?,
        blks_read: n(3)?,
        xact_commit: n(4)?,
        xact_rollback: n(5)?,
        checkpoints: n(6)?,
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

/// A run's timeline row, and (`$lock_waits`: the 0.4.0 statements, or "" for an older schema)
/// its lock waits into `stress.lock_waits`, from one read of the lock table, and each standby's
/// lag into `stress.replication_lag`. A waiting lock's
/// relation: its own (a relation or tuple lock); for a row wait (on the other transaction), that
/// of the tuple lock the waiter holds; or, following an update chain with no tuple lock held, the
/// tables both the waiter and the transaction it waits for are writing or locking rows of.
macro_rules! timeline_sql {
    ($lock_waits:literal) => {
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
            $lock_waits,
            "
             INSERT INTO stress.timeline
                 (run_id, ts, elapsed_s, wait_events, lock_waits, longest_lock_wait_ms, lock_relation,
                  wal_bytes, blks_hit, blks_read, xact_commit, xact_rollback, checkpoints,
                  autovacuum_workers)
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
                     WHERE a.backend_type OPERATOR(pg_catalog.=) 'autovacuum worker')
             FROM counters c
             RETURNING wal_bytes OPERATOR(pg_catalog.+) $6, blks_hit OPERATOR(pg_catalog.+) $7,
                       blks_read OPERATOR(pg_catalog.+) $8, xact_commit OPERATOR(pg_catalog.+) $9,
                       xact_rollback OPERATOR(pg_catalog.+) $10, checkpoints OPERATOR(pg_catalog.+) $11"
        )
    };
}

/// One `stress.timeline` row: what the workers `pids` wait on now, their lock waits, and the
/// server's counters since `before`. With `lock_waits` (0.4.0's stress.lock_waits and
/// stress.replication_lag exist), in the same statement:
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
    lock_waits: bool,
) -> ServerCounters {
    const WITH_LOCK_WAITS: &str = timeline_sql!(
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
                        pg_catalog.pg_wal_lsn_diff(w.lsn, r.write_lsn)::pg_catalog.int8,
                        pg_catalog.pg_wal_lsn_diff(w.lsn, r.flush_lsn)::pg_catalog.int8,
                        pg_catalog.pg_wal_lsn_diff(w.lsn, r.replay_lsn)::pg_catalog.int8,
                        pg_catalog.date_part('epoch', r.write_lag) OPERATOR(pg_catalog.*) 1000,
                        pg_catalog.date_part('epoch', r.flush_lag) OPERATOR(pg_catalog.*) 1000,
                        pg_catalog.date_part('epoch', r.replay_lag) OPERATOR(pg_catalog.*) 1000
                 FROM pg_catalog.pg_stat_replication r,
                      (SELECT pg_catalog.pg_current_wal_lsn() AS lsn) w
                 WHERE NOT pg_catalog.pg_is_in_recovery())"
    );
    const WITHOUT: &str = timeline_sql!("");
    as_owner(|| {
        Spi::connect_mut(|client| {
            let row = client
                .update(
                    if lock_waits { WITH_LOCK_WAITS } else { WITHOUT },
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
    /// moved to pg_stat_checkpointer in 17), and a checkpoint is counted.
    #[pg_test]
    fn the_servers_counters_read_on_this_version() {
        let before = super::server_counters();
        assert!(before.xact_commit > 0 && before.wal_bytes > 0);
        Spi::run("CHECKPOINT").unwrap();
        // (the checkpointer reports its count once the checkpoint is done, maybe just after
        // CHECKPOINT returns; each look takes a new statistics snapshot)
        let mut after = super::server_counters();
        for _ in 0..50 {
            if after.checkpoints > before.checkpoints {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            Spi::run("SELECT pg_stat_clear_snapshot()").unwrap();
            after = super::server_counters();
        }
        assert!(
            after.checkpoints > before.checkpoints,
            "{} -> {}",
            before.checkpoints,
            after.checkpoints
        );
    }
}
