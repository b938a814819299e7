//! A run's view of its target's PgBouncer: the admin console named by `stress.target_monitor`,
//! read by the run's sampler each second with `SHOW POOLS` (clients active and waiting, server
//! connections active, idle and used, the longest wait), into `stress.pool_samples`.
//!
//! The console is reached as the target is (libpq from this backend, the caller's password rule),
//! with a deadline of half a second per read: a console that does not answer costs the sampler
//! that, never the run. A server that answers `SHOW POOLS` with an error is no PgBouncer: the
//! monitor says so in the log once and stops asking.

use crate::postgres::backend::now;
use crate::postgres::libpq::{Answer, Connection};
use crate::records::PoolRow;
use pgrx::bgworkers::BackgroundWorker;

/// How long one read of the console may take (µs).
const READ_DEADLINE_US: i64 = 500_000;

/// The console of one run's target PgBouncer.
pub struct PoolMonitor {
    run_id: i64,
    conninfo: String,
    password_required: bool,
    conn: Option<Connection>,
    /// the console is not a PgBouncer's (or refused us for good): no more reads
    given_up: bool,
    /// a failure was logged since the last good read (one line per outage, not one per second)
    failing: bool,
}

impl PoolMonitor {
    /// The monitor of a run whose configuration (its JSON, as the run's slot keeps it) names one:
    /// `target.monitor`.
    pub fn of_config(run_id: i64, config: &serde_json::Value) -> Option<PoolMonitor> {
        let target = config.get("target")?;
        Some(PoolMonitor {
            run_id,
            conninfo: target.get("monitor")?.as_str()?.to_owned(),
            password_required: target
                .get("password_required")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true),
            conn: None,
            given_up: false,
            failing: false,
        })
    }

    /// The pools now (the admin database's own left out); None when the console could not be
    /// read this second. Outside any transaction: the wait is on the socket and the latch.
    pub fn read(&mut self) -> Option<Vec<PoolRow>> {
        if self.given_up {
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
        match conn.simple_query("SHOW POOLS", deadline) {
            Ok(answer) => {
                self.failing = false;
                Some(pools(&answer))
            }
            // (the connection failed or timed out: try again next second)
            Err(e) if e.sqlstate.starts_with("08") || e.sqlstate == "57014" => {
                self.conn = None;
                self.failed(&e.to_string());
                None
            }
            Err(e) => {
                pgrx::log!(
                    "pg_stress run {}: stress.target_monitor is not a PgBouncer admin console ({e}); no pool statistics for this run",
                    self.run_id
                );
                self.given_up = true;
                self.conn = None;
                None
            }
        }
    }

    fn failed(&mut self, why: &str) {
        if !self.failing {
            pgrx::log!(
                "pg_stress run {}: could not read the pools of stress.target_monitor: {why}",
                self.run_id
            );
            self.failing = true;
        }
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
