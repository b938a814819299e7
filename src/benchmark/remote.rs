//! A concurrent benchmark's queries on the run's target (`stress.target`): each worker runs them
//! over its own libpq connection, prepared there once (as `pgbench -M prepared`) when the call asks
//! for prepared queries and `stress.target_protocol` allows it, else unnamed over the extended
//! protocol. Each execution is its own transaction there, or BEGIN … ROLLBACK with `rollback` (at
//! the caller's default isolation, as the workers' transactions here take it); the
//! caller's statement_timeout is set on the connection, so the target cancels a long execution as
//! this server would. With `stress.target_connect_per_transaction` each execution opens (and
//! prepares on) a connection of its own, as pgbench -C.
//!
//! No transaction or snapshot here while a worker waits on the target: the waits are on the socket
//! and the latch, and a cancel or terminate ends them.

use crate::postgres::backend::now;
use crate::postgres::libpq::{Connection, RemoteError};
use crate::postgres::multiplex::Slot;
use crate::runs::target::{Protocol, Target};
use pgrx::pg_sys;

/// How long connecting may take (µs).
const CONNECT_TIMEOUT_US: i64 = 10_000_000;
/// How long an execution may take past the caller's statement_timeout before this side gives the
/// connection up (the target should have cancelled it by then), or at all without one (µs).
const ANSWER_GRACE_US: i64 = 10_000_000;
const NO_TIMEOUT_US: i64 = 365 * 24 * 3_600_000_000;

/// The names a query and the transaction's ends are prepared under.
fn statement_name(query: usize) -> String {
    format!("pg_stress_query_{query}")
}
const BEGIN_STATEMENT: &str = "pg_stress_begin";
const ROLLBACK_STATEMENT: &str = "pg_stress_rollback";

/// A worker's queries on the target.
pub struct RemoteQueries {
    target: Target,
    application_name: String,
    queries: Vec<String>,
    /// the names they are prepared under (made once, not at each execution)
    names: Vec<String>,
    /// BEGIN at the run's isolation level (with `rollback`)
    begin: &'static str,
    prepared: bool,
    rollback: bool,
    statement_timeout_ms: i32,
    conn: Option<Connection>,
    /// when it is one of its worker's several clients: where its waits go
    slot: Option<Slot>,
}

impl RemoteQueries {
    /// A worker's connection (one of its clients'), named `application_name` (the target monitor
    /// finds the run's connections by it): connected now when `now` (an unreachable target fails
    /// the run as it starts), its queries prepared; else when first used.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        now: bool,
        target: Target,
        application_name: String,
        queries: Vec<String>,
        prepared: bool,
        rollback: bool,
        statement_timeout_ms: i32,
    ) -> Result<RemoteQueries, RemoteError> {
        let prepared = prepared && target.protocol == Protocol::Prepared;
        // SAFETY: this backend's own setting, set from the run's isolation (the caller's default)
        // as the worker joined.
        let begin = match unsafe { pg_sys::DefaultXactIsoLevel } as u32 {
            pg_sys::XACT_SERIALIZABLE => "BEGIN ISOLATION LEVEL SERIALIZABLE",
            pg_sys::XACT_REPEATABLE_READ => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            _ => "BEGIN",
        };
        let mut remote = RemoteQueries {
            names: (0..queries.len()).map(statement_name).collect(),
            begin,
            target,
            application_name,
            queries,
            prepared,
            rollback,
            statement_timeout_ms,
            conn: None,
            slot: None,
        };
        if now {
            crate::postgres::multiplex::blocking(remote.connection())?;
        }
        Ok(remote)
    }

    /// From now on one of its worker's several clients: its waits (and its connections' to come)
    /// go through `slot`.
    pub fn share(&mut self, slot: Slot) {
        if let Some(conn) = self.conn.as_mut() {
            conn.share(slot.clone());
        }
        self.slot = Some(slot);
    }

    /// The open connection, made, set up and prepared if there is none.
    async fn connection(&mut self) -> Result<(), RemoteError> {
        if self.conn.as_ref().is_some_and(Connection::is_open) {
            return Ok(());
        }
        self.conn = None;
        let deadline = now() + CONNECT_TIMEOUT_US;
        let mut conn = Connection::open_in(
            &self.target.conninfo,
            &self.application_name,
            deadline,
            self.target.password_required,
            crate::postgres::signals::stop_requested,
            self.slot.clone(),
        )
        .await
        .map_err(RemoteError::from)?;
        conn.execute_async(
            "SELECT pg_catalog.set_config('statement_timeout', $1, false)",
            &[],
            &[Some(&format!("{}ms", self.statement_timeout_ms.max(0)))],
            deadline,
        )
        .await?;
        if self.prepared {
            if self.rollback {
                conn.prepare_async(BEGIN_STATEMENT, self.begin, &[], deadline)
                    .await?;
                conn.prepare_async(ROLLBACK_STATEMENT, "ROLLBACK", &[], deadline)
                    .await?;
            }
            for (name, query) in self.names.iter().zip(&self.queries) {
                conn.prepare_async(name, query, &[], deadline).await?;
            }
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Query `j` once; its error, if it failed.
    pub async fn execute(&mut self, j: usize) -> Result<(), RemoteError> {
        let timeout_us = match self.statement_timeout_ms {
            0 => NO_TIMEOUT_US,
            ms => ms as i64 * 1000 + ANSWER_GRACE_US,
        };
        let (prepared, rollback, begin) = (self.prepared, self.rollback, self.begin);
        self.connection().await?;
        let conn = self.conn.as_mut().expect("connected above");
        let (name, query) = (&self.names[j], &self.queries[j]);
        let deadline = now() + timeout_us;
        let outcome = if rollback {
            match run(conn, prepared, BEGIN_STATEMENT, begin, deadline).await {
                Ok(()) => {
                    let done = run(conn, prepared, name, query, deadline).await;
                    // (rolled back whether it failed or not: nothing of it stays)
                    let ended = run(conn, prepared, ROLLBACK_STATEMENT, "ROLLBACK", deadline).await;
                    done.and(ended)
                }
                Err(e) => Err(e),
            }
        } else {
            run(conn, prepared, name, query, deadline).await
        };
        if self.target.reconnect {
            self.conn = None;
        }
        outcome
    }
}

/// Statement `name` as prepared, or `text` unnamed, on `conn` by `deadline`.
async fn run(
    conn: &mut Connection,
    prepared: bool,
    name: &str,
    text: &str,
    deadline: pg_sys::TimestampTz,
) -> Result<(), RemoteError> {
    if prepared {
        conn.execute_prepared_async(name, &[], deadline).await
    } else {
        conn.execute_async(text, &[], &[], deadline).await
    }
    .map(|_| ())
}

/// From the caller's backend before any worker starts: why each query cannot run on the target
/// (it cannot be prepared there: a missing table, no privilege…), if so. A target that cannot be
/// reached fails the call.
pub fn preparation_errors(target: &Target, queries: &[String]) -> Vec<Option<String>> {
    let deadline = now() + CONNECT_TIMEOUT_US;
    let mut conn = Connection::open(
        &target.conninfo,
        "pg_stress benchmark probe",
        deadline,
        target.password_required,
        || false,
    )
    .unwrap_or_else(|e| e.raise());
    queries
        .iter()
        .map(|query| {
            super::one_statement(query).err().or_else(|| {
                conn.prepare("", query, &[], deadline)
                    .err()
                    .map(|e| format!("on the target: {e}"))
            })
        })
        .collect()
}
