//! A run's target (`stress.target`): another server its workers reach with libpq instead of running
//! their operations here over SPI. What the caller's settings say of it, checked in the caller's
//! backend; it travels in the run's configuration to the workers (each kind of run sends its own
//! statements there: `load::remote`, `benchmark::remote`) and to the sampler (`monitor`).

use serde::{Deserialize, Serialize};

/// How statements reach the target (pgbench's `-M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// each statement prepared once per connection, then only executed
    Prepared,
    /// each statement parsed, bound and executed unnamed every time
    Extended,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Prepared => "prepared",
            Protocol::Extended => "extended",
        }
    }
}

/// Where a run's workers send their operations, in the run's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// the connection string, password included: it stays in the run's shared memory slot, which
    /// only this server's processes read; stress.runs keeps [`crate::postgres::libpq::shown_conninfo`]
    pub conninfo: String,
    pub protocol: Protocol,
    /// a new connection for each transaction (pgbench -C): its set-up is in the latency
    pub reconnect: bool,
    /// connections each worker keeps busy at once (`postgres::multiplex`): pgbench's clients per
    /// thread
    #[serde(default = "one")]
    pub connections_per_worker: u32,
    /// whether the caller must authenticate by password (not a superuser: dblink's rule)
    pub password_required: bool,
    /// the sampler's connection to the target's PgBouncer console, or to the target itself
    /// (`stress.target_monitor`)
    pub monitor: Option<String>,
}

impl Target {
    /// The application_name of a `kind` run's connection (worker `worker` of `workers`, its
    /// connection `client`): the target monitor, and the DBA, find the run's connections there by
    /// it.
    pub fn connection_name(
        &self,
        kind: &str,
        run_id: i64,
        worker: u32,
        workers: u32,
        client: u32,
    ) -> String {
        let name = format!(
            "pg_stress {kind} run {run_id} worker {}/{workers}",
            worker + 1
        );
        match self.connections_per_worker {
            0 | 1 => name,
            n => format!("{name} client {}/{n}", client + 1),
        }
    }

    /// What `stress.runs.parameters` keeps of it: the connection strings without their
    /// passwords (the table is readable by the run's role), the protocol, -C.
    pub fn shown(&self) -> serde_json::Value {
        serde_json::json!({
            "conninfo": crate::postgres::libpq::shown_conninfo(&self.conninfo),
            "protocol": self.protocol.name(),
            "connect_per_transaction": self.reconnect,
            "connections_per_worker": self.connections_per_worker,
            "monitor": self.monitor.as_deref().map(crate::postgres::libpq::shown_conninfo),
        })
    }
}

fn one() -> u32 {
    1
}

/// The run's target from the caller's settings (`stress.target` and its companions), checked in
/// the caller's backend: a connection string libpq reads (22023), and a password when the caller
/// is not a superuser (2F003). None: no target, the run is on this server.
pub fn from_settings() -> Option<Target> {
    let per_worker = crate::gucs::TARGET_CONNECTIONS_PER_WORKER.get();
    let Some(conninfo) = crate::gucs::target() else {
        if per_worker > 1 {
            // (not an error: a session may keep the setting between runs here and there)
            pgrx::notice!(
                "stress.target_connections_per_worker = {per_worker} is for runs on stress.target: \
                 each worker of this run is one session of this server"
            );
        }
        return None;
    };
    let password_required = crate::postgres::libpq::password_required();
    let monitor = crate::gucs::target_monitor();
    for c in std::iter::once(&conninfo).chain(monitor.as_ref()) {
        let options = crate::postgres::libpq::conninfo_options(c);
        crate::postgres::libpq::check_password_given(&options, password_required)
            .unwrap_or_else(|e| e.raise());
    }
    Some(Target {
        monitor,
        conninfo,
        protocol: match crate::gucs::TARGET_PROTOCOL.get() {
            crate::gucs::TargetProtocol::Prepared => Protocol::Prepared,
            crate::gucs::TargetProtocol::Extended => Protocol::Extended,
        },
        reconnect: crate::gucs::TARGET_CONNECT_PER_TRANSACTION.get(),
        connections_per_worker: per_worker.max(1) as u32,
        password_required,
    })
}
