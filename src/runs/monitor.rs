//! A run's view of its target from `stress.target_monitor`, read by the run's sampler each second:
//! - a PgBouncer's admin console: `SHOW POOLS` (clients active and waiting, server connections
//!   active, idle and used, the longest wait), into `stress.pool_samples`;
//! - a PostgreSQL server (the target itself, as a member of pg_monitor there): what the run's
//!   connections there wait on, and the target's WAL, commits and blocks in the second, into
//!   `stress.target_timeline`.
//!
//! Which one it is, the first read tells: a PostgreSQL server answers `SHOW POOLS` with 42704
//! (no such setting). The monitor is reached as the target is (libpq from this backend, the
//! caller's password rule), with a deadline of half a second per read: a monitor that does not
//! answer costs the sampler that, never the run. One that answers with anything else is neither:
//! the monitor says so in the log once and stops asking.

use crate::postgres::backend::now;
use crate::postgres::libpq::{Answer, Connection, RemoteError};
use crate::records::{PoolRow, TargetRow};
use pgrx::bgworkers::BackgroundWorker;

/// How long one read of the monitor may take (µs).
const READ_DEADLINE_US: i64 = 500_000;

/// What one read of the monitor gave.
pub enum Reading {
    /// a PgBouncer's pools now (its own `pgbouncer` database left out)
    Pools(Vec<PoolRow>),
    /// a PostgreSQL target's second (since the last read)
    Server(TargetRow),
}

/// What the monitor turned out to be.
enum Kind {
    /// not yet read
    Unknown,
    Bouncer,
    /// a PostgreSQL server, and its counters at the last read (None: not yet read)
    Server(Option<Counters>),
    /// neither, or it refused us for good: no more reads
    GivenUp,
}

/// A PostgreSQL target's cumulative counters, that a second's row is the difference of.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Counters {
    wal: i64,
    commits: i64,
    rollbacks: i64,
    hits: i64,
    reads: i64,
    deadlocks: i64,
}

/// The monitor of one run's target.
pub struct TargetMonitor {
    run_id: i64,
    conninfo: String,
    password_required: bool,
    conn: Option<Connection>,
    kind: Kind,
    /// a failure was logged since the last good read (one line per outage, not one per second)
    failing: bool,
}

/// The target's side of a second, read on the target: the WAL position (its replay position on a
/// standby) and the database's counters, its client connections (the monitor's own left out), and
/// what the run's connections — named `$1` (a LIKE pattern) — wait on. Names are qualified; the
/// only parameter is the pattern.
const SERVER_SQL: &str = "
SELECT pg_catalog.pg_wal_lsn_diff(coalesce(CASE WHEN pg_catalog.pg_is_in_recovery()
                                                THEN pg_catalog.pg_last_wal_replay_lsn()
                                                ELSE pg_catalog.pg_current_wal_insert_lsn() END,
                                           '0/0'), '0/0')::pg_catalog.int8 AS wal,
       d.xact_commit, d.xact_rollback, d.blks_hit, d.blks_read, d.deadlocks,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a
        WHERE a.datid OPERATOR(pg_catalog.=) d.datid
          AND a.backend_type OPERATOR(pg_catalog.=) 'client backend'
          AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()) AS connections,
       (SELECT coalesce(pg_catalog.jsonb_object_agg(e.event, e.n), '{}')::pg_catalog.text
        FROM (SELECT coalesce(a.wait_event_type OPERATOR(pg_catalog.||) ':'
                              OPERATOR(pg_catalog.||) a.wait_event, 'CPU') AS event,
                     pg_catalog.count(*) AS n
              FROM pg_catalog.pg_stat_activity a
              WHERE a.application_name OPERATOR(pg_catalog.~~) $1 GROUP BY 1) e) AS wait_events,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a
        WHERE a.application_name OPERATOR(pg_catalog.~~) $1
          AND a.wait_event_type OPERATOR(pg_catalog.=) 'Lock') AS lock_waits
FROM pg_catalog.pg_stat_database d
WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()";

impl TargetMonitor {
    /// The monitor of a run whose configuration (its JSON, as the run's slot keeps it) names one:
    /// `target.monitor`.
    pub fn of_config(run_id: i64, config: &serde_json::Value) -> Option<TargetMonitor> {
        let target = config.get("target")?;
        Some(TargetMonitor {
            run_id,
            conninfo: target.get("monitor")?.as_str()?.to_owned(),
            password_required: target
                .get("password_required")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true),
            conn: None,
            kind: Kind::Unknown,
            failing: false,
        })
    }

    /// Read the monitor now; None when it could not be read this second (or a PostgreSQL
    /// target's first read, which only sets where the next second's counts start). Outside any
    /// transaction: the wait is on the socket and the latch.
    pub fn read(&mut self) -> Option<Reading> {
        if matches!(self.kind, Kind::GivenUp) {
            return None;
        }
        let deadline = now() + READ_DEADLINE_US;
        if self.conn.as_ref().is_none_or(|c| !c.is_open()) {
            match Connection::open(
                &self.conninfo,
                &format!("pg_stress sampler run {}", self.run_id),
                deadline,
                self.password_required,
                BackgroundWorker::sigterm_received,
            ) {
                Ok(conn) => self.conn = Some(conn),
                Err(e) => {
                    self.failed(&e.to_string());
                    return None;
                }
            }
        }
        let conn = self.conn.as_mut()?;
        let answer = match self.kind {
            Kind::Server(_) => conn.execute(
                SERVER_SQL,
                &[],
                &[Some(&format!("pg_stress % run {} worker %", self.run_id))],
                deadline,
            ),
            _ => conn.simple_query("SHOW POOLS", deadline),
        };
        match answer {
            Ok(answer) => {
                self.failing = false;
                match &mut self.kind {
                    Kind::Server(before) => {
                        let now = server_now(&answer)?;
                        let last = before.replace(now.counters);
                        last.map(|last| Reading::Server(since(&last, now)))
                    }
                    kind => {
                        *kind = Kind::Bouncer;
                        Some(Reading::Pools(pools(&answer)))
                    }
                }
            }
            // (the connection failed or timed out: try again next second)
            Err(e) if e.sqlstate.starts_with("08") || e.sqlstate == "57014" => {
                self.conn = None;
                self.failed(&e.to_string());
                None
            }
            // (a PostgreSQL server: SHOW knows no "pools"; read it as one from the next second)
            Err(e) if matches!(self.kind, Kind::Unknown) && e.sqlstate == "42704" => {
                self.kind = Kind::Server(None);
                self.read()
            }
            Err(e) => {
                self.give_up(&e);
                None
            }
        }
    }

    fn give_up(&mut self, e: &RemoteError) {
        let what = match self.kind {
            Kind::Server(_) => "the target's statistics could not be read",
            _ => "it is neither a PgBouncer admin console nor a PostgreSQL server",
        };
        pgrx::log!(
            "pg_stress run {}: stress.target_monitor: {what} ({e}); no monitoring for this run",
            self.run_id
        );
        self.kind = Kind::GivenUp;
        self.conn = None;
    }

    fn failed(&mut self, why: &str) {
        if !self.failing {
            pgrx::log!(
                "pg_stress run {}: could not read stress.target_monitor: {why}",
                self.run_id
            );
            self.failing = true;
        }
    }
}

/// A PostgreSQL target as one read saw it: its counters, and what is not counted.
struct ServerNow {
    counters: Counters,
    wait_events: String,
    lock_waits: i32,
    connections: i32,
}

/// The target as `answer` (of [`SERVER_SQL`]) gives it; None without its counters.
fn server_now(answer: &Answer) -> Option<ServerNow> {
    let int = |name: &str| answer.get(0, name).and_then(|v| v.parse::<i64>().ok());
    Some(ServerNow {
        counters: Counters {
            wal: int("wal")?,
            commits: int("xact_commit")?,
            rollbacks: int("xact_rollback")?,
            hits: int("blks_hit")?,
            reads: int("blks_read")?,
            deadlocks: int("deadlocks")?,
        },
        wait_events: answer.get(0, "wait_events").unwrap_or("{}").to_owned(),
        lock_waits: int("lock_waits").unwrap_or(0) as i32,
        connections: int("connections").unwrap_or(0) as i32,
    })
}

/// The second from `last` to `now`: its counts (0, not negative, across a reset of the target's
/// statistics), and `now`'s waits and connections.
fn since(last: &Counters, now: ServerNow) -> TargetRow {
    let d = |a: i64, b: i64| (b - a).max(0);
    let c = &now.counters;
    TargetRow {
        wal_bytes: d(last.wal, c.wal),
        xact_commit: d(last.commits, c.commits),
        xact_rollback: d(last.rollbacks, c.rollbacks),
        blks_hit: d(last.hits, c.hits),
        blks_read: d(last.reads, c.reads),
        deadlocks: d(last.deadlocks, c.deadlocks),
        wait_events: now.wait_events,
        lock_waits: now.lock_waits,
        connections: now.connections,
    }
}

/// `SHOW POOLS`' rows as pool rows (PgBouncer's own `pgbouncer` database left out).
fn pools(answer: &Answer) -> Vec<PoolRow> {
    let int = |row: usize, name: &str| {
        answer
            .get(row, name)
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0)
    };
    (0..answer.rows.len())
        .filter(|&row| answer.get(row, "database") != Some("pgbouncer"))
        .map(|row| PoolRow {
            database: answer.get(row, "database").unwrap_or_default().to_owned(),
            user: answer.get(row, "user").unwrap_or_default().to_owned(),
            pool_mode: answer.get(row, "pool_mode").map(str::to_owned),
            cl_active: int(row, "cl_active"),
            cl_waiting: int(row, "cl_waiting"),
            sv_active: int(row, "sv_active"),
            sv_idle: int(row, "sv_idle"),
            sv_used: int(row, "sv_used"),
            maxwait_ms: int(row, "maxwait") as f64 * 1000.0
                + int(row, "maxwait_us") as f64 / 1000.0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(columns: &[&str], row: &[&str]) -> Answer {
        Answer {
            rows: vec![row.iter().map(|v| Some(v.to_string())).collect()],
            processed: 1,
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// A second's counts are the difference of two reads, never negative (a statistics reset).
    #[test]
    fn a_targets_second_is_the_difference_of_two_reads() {
        let columns = [
            "wal",
            "xact_commit",
            "xact_rollback",
            "blks_hit",
            "blks_read",
            "deadlocks",
            "connections",
            "wait_events",
            "lock_waits",
        ];
        let first = answer(
            &columns,
            &["1000", "50", "2", "900", "10", "0", "3", "{}", "0"],
        );
        let second = answer(
            &columns,
            &[
                "5096",
                "170",
                "1",
                "1900",
                "12",
                "1",
                "5",
                r#"{"Lock:transactionid": 2}"#,
                "2",
            ],
        );
        let first = server_now(&first).unwrap();
        let row = since(&first.counters, server_now(&second).unwrap());
        assert_eq!(
            (row.wal_bytes, row.xact_commit, row.xact_rollback),
            (4096, 120, 0)
        );
        assert_eq!((row.blks_hit, row.blks_read, row.deadlocks), (1000, 2, 1));
        assert_eq!((row.connections, row.lock_waits), (5, 2));
        assert_eq!(row.wait_events, r#"{"Lock:transactionid": 2}"#);
        // (a row without its counters is no reading)
        assert!(server_now(&answer(&["wal"], &["1"])).is_none());
    }
}
