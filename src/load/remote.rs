//! A load run's operations on another server: the target (`stress.target`). Each worker holds
//! its own libpq connection (`postgres::libpq`) and runs the same built-in operations and custom
//! transactions as over SPI, over the extended protocol — prepared once per connection, as
//! `pgbench -M prepared`, or unnamed at every execution, as `-M extended` (what a PgBouncer in
//! transaction pooling before 1.21 can carry). A transaction of several statements, or at another
//! isolation than read committed, is sent between BEGIN and COMMIT; a single statement is its own
//! transaction, as pgbench sends a one-statement script.
//!
//! The worker holds no transaction or snapshot of its own server while it waits on the target: the
//! only waits are on the socket and the latch, and a cancel or terminate ends them.

use super::custom::Custom;
use super::ops::{self, Arg, DataInUse, Fill, OPS, Op, Session};
use crate::postgres::libpq::{Answer, Connection, RemoteError};
use crate::postgres::multiplex::Slot;
use crate::runs::target::{Protocol, Target};
use pgrx::pg_sys;
use rand::Rng;

/// A worker's side of a target: its connection (made when first needed, and again after one was
/// given up or with `reconnect`) and the statements of each task.
pub struct Remote {
    target: Target,
    application_name: String,
    /// the isolation level's BEGIN, when not read committed
    begin: &'static str,
    conn: Option<Connection>,
    /// per task (the built-in operations, then the custom transactions): its statements, the
    /// types of their parameters
    statements: Vec<Vec<(String, Vec<pg_sys::Oid>)>>,
    /// the names they are prepared under, per task (made once, not at each execution)
    names: Vec<Vec<String>>,
    customs: Vec<Custom>,
    /// when it is one of its worker's several clients: where its waits go
    slot: Option<Slot>,
}

/// How long connecting may take when a run has less time left than this (µs).
const CONNECT_TIMEOUT_US: i64 = 10_000_000;

impl Remote {
    /// The statements for `target`: the built-in operations on `schema` when `builtins`, and the
    /// custom transactions. `isolation` as in pg_sys (XACT_*).
    pub fn new(
        target: Target,
        schema: &str,
        customs: Vec<Custom>,
        builtins: bool,
        isolation: i32,
        application_name: String,
    ) -> Remote {
        let mut statements: Vec<Vec<(String, Vec<pg_sys::Oid>)>> = OPS
            .iter()
            .map(|&op| {
                if !builtins {
                    return Vec::new();
                }
                ops::sql(op, schema)
                    .into_iter()
                    .map(|(sql, types)| (sql, types.iter().map(|t| t.value()).collect()))
                    .collect()
            })
            .collect();
        for custom in &customs {
            let types: Vec<pg_sys::Oid> =
                custom.params.iter().map(|p| p.pg_type().value()).collect();
            statements.push(
                custom
                    .statements
                    .iter()
                    .map(|sql| (sql.clone(), types.clone()))
                    .collect(),
            );
        }
        let begin = match isolation as u32 {
            pg_sys::XACT_SERIALIZABLE => "BEGIN ISOLATION LEVEL SERIALIZABLE",
            pg_sys::XACT_REPEATABLE_READ => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            _ => "BEGIN",
        };
        let names = statements
            .iter()
            .enumerate()
            .map(|(task, steps)| {
                (0..steps.len())
                    .map(|step| statement_name(task, step))
                    .collect()
            })
            .collect();
        Remote {
            target,
            application_name,
            begin,
            conn: None,
            statements,
            names,
            customs,
            slot: None,
        }
    }

    /// From now on one of its worker's several clients: its waits (and its connections' to come)
    /// go through `slot`.
    pub fn share(&mut self, slot: Slot) {
        if let Some(conn) = self.conn.as_mut() {
            conn.share(slot.clone());
        }
        self.slot = Some(slot);
    }

    /// Connect now (a worker's first connection, as it prepares: a target it cannot reach fails
    /// the run at its start, not every operation).
    pub fn connect(&mut self, deadline: pg_sys::TimestampTz) -> Result<(), RemoteError> {
        crate::postgres::multiplex::blocking(self.connection(deadline)).map(|_| ())
    }

    /// The open connection, made (and its statements prepared) if there is none.
    async fn connection(
        &mut self,
        deadline: pg_sys::TimestampTz,
    ) -> Result<&mut Connection, RemoteError> {
        if self.conn.as_ref().is_some_and(Connection::is_open) {
            return Ok(self.conn.as_mut().expect("checked"));
        }
        self.conn = None;
        let by = deadline.min(crate::postgres::backend::now() + CONNECT_TIMEOUT_US);
        let mut conn = Connection::open_in(
            &self.target.conninfo,
            &self.application_name,
            by,
            self.target.password_required,
            crate::postgres::signals::stop_requested,
            self.slot.clone(),
        )
        .await
        .map_err(RemoteError::from)?;
        if self.target.protocol == Protocol::Prepared {
            // (BEGIN and COMMIT too, as pgbench -M prepared does: parsed once, not each time)
            conn.prepare_async(BEGIN_STATEMENT, self.begin, &[], deadline)
                .await?;
            conn.prepare_async(COMMIT_STATEMENT, "COMMIT", &[], deadline)
                .await?;
            for (statements, names) in self.statements.iter().zip(&self.names) {
                for ((sql, types), name) in statements.iter().zip(names) {
                    conn.prepare_async(name, sql, types, deadline).await?;
                }
            }
        }
        Ok(self.conn.insert(conn))
    }

    /// Task `task` once (an operation of [`OPS`], then the custom transactions), by `deadline`.
    pub async fn once(
        &mut self,
        task: usize,
        work: &mut DataInUse,
        rng: &mut impl Rng,
        deadline: pg_sys::TimestampTz,
    ) -> Result<(), RemoteError> {
        let in_block = self.statements[task].len() > 1 || self.begin != "BEGIN";
        let (begin, protocol) = (self.begin, self.target.protocol);
        // (connected, and prepared, before the statements are taken out to be run)
        self.connection(deadline).await?;
        let conn = self.conn.as_mut().expect("connected above");
        if in_block {
            control(conn, protocol, BEGIN_STATEMENT, begin, deadline).await?;
        }
        let mut session = RemoteSession {
            conn,
            statements: &self.statements,
            names: &self.names,
            protocol,
            deadline,
        };
        let done = match OPS.get(task) {
            Some(&op) => ops::execute(&mut session, op, work, rng).await,
            None => {
                session
                    .custom(task, &self.customs[task - OPS.len()], rng)
                    .await
            }
        };
        let conn = session.conn;
        let outcome = match done {
            Ok(()) if in_block => {
                control(conn, protocol, COMMIT_STATEMENT, "COMMIT", deadline).await
            }
            Ok(()) => Ok(()),
            Err(e) => {
                if in_block && conn.is_open() {
                    // (a failed transaction is aborted; what ROLLBACK answers adds nothing)
                    let _ = conn.execute_async("ROLLBACK", &[], &[], deadline).await;
                }
                Err(e)
            }
        };
        if self.target.reconnect {
            self.conn = None;
        }
        outcome
    }
}

/// BEGIN or COMMIT on `conn`: prepared `statement`, or `text`.
async fn control(
    conn: &mut Connection,
    protocol: Protocol,
    statement: &'static str,
    text: &str,
    deadline: pg_sys::TimestampTz,
) -> Result<(), RemoteError> {
    match protocol {
        Protocol::Prepared => conn.execute_prepared_async(statement, &[], deadline).await,
        Protocol::Extended => conn.execute_async(text, &[], &[], deadline).await,
    }
    .map(|_| ())
}

/// The names the transaction's BEGIN (at the run's isolation level) and COMMIT are prepared under.
const BEGIN_STATEMENT: &str = "pg_stress_begin";
const COMMIT_STATEMENT: &str = "pg_stress_commit";

/// The name task `task`'s statement `step` is prepared under.
fn statement_name(task: usize, step: usize) -> String {
    format!("pg_stress_{task}_{step}")
}

/// One transaction's statements on a connection.
struct RemoteSession<'a> {
    conn: &'a mut Connection,
    statements: &'a [Vec<(String, Vec<pg_sys::Oid>)>],
    names: &'a [Vec<String>],
    protocol: Protocol,
    deadline: pg_sys::TimestampTz,
}

impl RemoteSession<'_> {
    async fn send(
        &mut self,
        task: usize,
        step: usize,
        args: &[String],
    ) -> Result<Answer, RemoteError> {
        let params: Vec<Option<&str>> = args.iter().map(|a| Some(a.as_str())).collect();
        match self.protocol {
            Protocol::Prepared => {
                self.conn
                    .execute_prepared_async(&self.names[task][step], &params, self.deadline)
                    .await
            }
            Protocol::Extended => {
                let (sql, types) = &self.statements[task][step];
                self.conn
                    .execute_async(sql, types, &params, self.deadline)
                    .await
            }
        }
    }

    async fn call(
        &mut self,
        op: Op,
        step: usize,
        args: &[Arg<'_, String>],
    ) -> Result<Answer, RemoteError> {
        let args: Vec<String> = args
            .iter()
            .map(|a| match a {
                Arg::Int(i) => i.to_string(),
                Arg::Float(f) => f.to_string(),
                Arg::Text(t) => (*t).to_owned(),
                Arg::Numeric(n) => (*n).clone(),
            })
            .collect();
        self.send(op.index(), step, &args).await
    }

    /// A custom transaction's statements in order, the same values for all.
    async fn custom(
        &mut self,
        task: usize,
        custom: &Custom,
        rng: &mut impl Rng,
    ) -> Result<(), RemoteError> {
        let args: Vec<String> = custom.params.iter().map(|p| p.sample_text(rng)).collect();
        for step in 0..custom.statements.len() {
            self.send(task, step, &args).await?;
        }
        Ok(())
    }
}

impl Session for RemoteSession<'_> {
    type Numeric = String;
    type Error = RemoteError;

    async fn run(
        &mut self,
        op: Op,
        step: usize,
        args: &[Arg<'_, String>],
    ) -> Result<u64, RemoteError> {
        Ok(self.call(op, step, args).await?.processed)
    }

    async fn numeric(
        &mut self,
        op: Op,
        step: usize,
        args: &[Arg<'_, String>],
    ) -> Result<String, RemoteError> {
        let answer = self.call(op, step, args).await?;
        Ok(answer
            .rows
            .first()
            .and_then(|row| row.first().cloned().flatten())
            .unwrap_or_else(|| "0".to_owned()))
    }

    async fn fill(
        &mut self,
        args: &[Arg<'_, String>],
    ) -> Result<Option<Fill<String>>, RemoteError> {
        let answer = self.call(Op::ExecuteTrade, 0, args).await?;
        let Some(row) = answer.rows.first() else {
            return Ok(None);
        };
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let int = |i: usize| text(i).parse::<i64>().unwrap_or_default();
        if text(0) != "t" {
            return Ok(None);
        }
        Ok(Some(Fill {
            payer: int(1),
            payee: int(2),
            notional: text(3),
            owner: int(4),
            symbol: text(5),
            change: text(6),
            price: text(7),
        }))
    }
}

/// What the caller learns of the target before the run starts: its version, and the highest ids
/// of the trading tables (when the run uses the built-in operations).
#[derive(Debug, Clone, Copy, Default)]
pub struct Probed {
    /// server_version_num
    pub server_version: i32,
    pub accounts: i64,
    pub orders: i64,
    pub trades: i64,
    pub audit: i64,
}

/// Reach the target from the caller's backend before any worker starts, so that a target that
/// cannot be reached, lacks the trading dataset or cannot run a custom transaction's statement
/// fails the call (with the target's own words) rather than every operation: connect, read the
/// dataset's highest ids when `builtins`, prepare each custom statement. `function` names the
/// call in errors.
pub fn probe(
    function: &'static str,
    target: &Target,
    schema: &str,
    builtins: bool,
    customs: &[Custom],
) -> Probed {
    let deadline = crate::postgres::backend::now() + CONNECT_TIMEOUT_US;
    let mut conn = Connection::open(
        &target.conninfo,
        &format!("pg_stress {function} probe"),
        deadline,
        target.password_required,
        || false,
    )
    .unwrap_or_else(|e| e.raise());
    let on_target = |what: &str, e: RemoteError, hint: &str| -> ! {
        crate::error::StressError::invalid(function, format!("{what} on the target: {e}"), hint)
            .raise()
    };
    let mut dataset = Probed {
        server_version: conn.server_version(),
        ..Probed::default()
    };
    if builtins {
        let t = |name| crate::postgres::quote::qualified(schema, name);
        let sql = format!(
            "SELECT (SELECT coalesce(max(id), 0) FROM {}), (SELECT coalesce(max(id), 0) FROM {}),
                    (SELECT coalesce(max(id), 0) FROM {}), (SELECT coalesce(max(id), 0) FROM {}),
                    (SELECT count(*) FROM {} WHERE false)",
            t("accounts"),
            t("orders"),
            t("trades"),
            t("audit_log"),
            t("positions")
        );
        let answer = conn.execute(&sql, &[], &[], deadline).unwrap_or_else(|e| {
            on_target(
                "reading the trading dataset",
                e,
                "Generate the trading dataset on the target (SELECT * FROM stress.generate_dataset(...) \
                 there, or pg_dump it there), in the schema named by stress.data_schema, or run only \
                 custom transactions (mix => '{}').",
            )
        });
        let id = |i: usize| {
            answer
                .rows
                .first()
                .and_then(|r| r.get(i).cloned().flatten())
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        dataset = Probed {
            accounts: id(0),
            server_version: dataset.server_version,
            orders: id(1),
            trades: id(2),
            audit: id(3),
        };
    }
    for custom in customs {
        let types: Vec<pg_sys::Oid> = custom.params.iter().map(|p| p.pg_type().value()).collect();
        for sql in &custom.statements {
            conn.prepare("", sql, &types, deadline).unwrap_or_else(|e| {
                on_target(
                    &format!("transactions: \"{}\"", custom.name),
                    e,
                    "Check the statement's SQL against the target's tables.",
                )
            });
        }
    }
    dataset
}
