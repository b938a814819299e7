//! Every `stress.*` setting, in one place. Registered in `_PG_init`, so they exist whether or not the
//! library is preloaded (the prefix is reserved, so typos like `stress.batchsize` are rejected).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Schema that generated workload data goes to; created on demand, not owned by the extension.
pub static DATA_SCHEMA: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"stress_data"));
/// Where a run on a hot standby records itself: a dblink connection string (or foreign server
/// name) of the primary. Used as the calling role, through dblink's own checks.
pub static RECORD_CONNINFO: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Rows handed to the table access method per multi-insert, and the unit of memory reuse.
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Milliseconds between progress NOTICEs of long calls (set as '5s', '500ms', …); 0 turns them off.
pub static PROGRESS_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(5000);
/// Executions slower than this are counted as slow queries.
pub static SLOW_QUERY_THRESHOLD_MS: GucSetting<i32> = GucSetting::<i32>::new(100);
/// How many slow executions per query and run are logged, with the plan, into stress.slow_queries.
pub static SLOW_QUERY_LOG_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(5);
/// Retries of a transaction that hit a deadlock (40P01) or serialization failure (40001).
pub static DEADLOCK_RETRY_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);
/// Upper bound on background workers one run may start.
pub static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(8);
/// Whether runs sample the server into stress.timeline each second.
pub static TIMELINE: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Where load runs send their operations: another server's libpq connection string (empty: this
/// server, over SPI). Shown to superusers only, as primary_conninfo: it may carry a password.
pub static TARGET: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// A monitoring connection to the target's side, read by a run's sampler each second: a
/// PgBouncer's admin console (dbname=pgbouncer) for its pools. Superusers only see it.
pub static TARGET_MONITOR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// How statements reach the target (pgbench's -M).
pub static TARGET_PROTOCOL: GucSetting<TargetProtocol> =
    GucSetting::<TargetProtocol>::new(TargetProtocol::Prepared);
/// A new connection to the target for each transaction (pgbench's -C).
pub static TARGET_CONNECT_PER_TRANSACTION: GucSetting<bool> = GucSetting::<bool>::new(false);
/// Connections to the target each worker holds and keeps busy at once (pgbench's -c per -j).
pub static TARGET_CONNECTIONS_PER_WORKER: GucSetting<i32> = GucSetting::<i32>::new(1);
/// Most connections per worker: each is a file descriptor of the worker's (fd.c reserves them).
pub const MAX_CONNECTIONS_PER_WORKER: i32 = 64;

/// `stress.target_protocol`'s values.
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum TargetProtocol {
    Prepared,
    Extended,
}

pub fn init() {
    GucRegistry::define_string_guc(
        c"stress.target",
        c"The server load runs send their operations to, as a libpq connection string (empty: this server).",
        c"Each worker connects to it with libpq as the calling role; non-superusers must give a password. Shown to superusers only: it may carry a password.",
        &TARGET,
        GucContext::Userset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"stress.target_monitor",
        c"A monitoring connection for load runs on stress.target, read each second: the target PgBouncer's admin console (SHOW POOLS), or the target itself (its statistics).",
        c"A libpq connection string (dbname=pgbouncer and a user in stats_users, or a role in pg_monitor on the target); the same password rule as stress.target. Shown to superusers only.",
        &TARGET_MONITOR,
        GucContext::Userset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_enum_guc(
        c"stress.target_protocol",
        c"How load runs send statements to stress.target: prepared (once per connection) or extended (unnamed, each time).",
        c"As pgbench -M prepared / -M extended. Use extended through a PgBouncer in transaction pooling older than 1.21.",
        &TARGET_PROTOCOL,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"stress.target_connect_per_transaction",
        c"Whether load runs open a new connection to stress.target for each transaction.",
        c"As pgbench -C: the connection's set-up is then part of each transaction's latency.",
        &TARGET_CONNECT_PER_TRANSACTION,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"stress.target_connections_per_worker",
        c"Connections to stress.target each worker of a load run or benchmark keeps busy at once.",
        c"As pgbench -c clients over -j threads: workers × this many clients, each its own connection and transactions, one worker process waiting on all of them.",
        &TARGET_CONNECTIONS_PER_WORKER,
        1,
        MAX_CONNECTIONS_PER_WORKER,
        GucContext::Userset,
        GucFlags::default(),
    );

    GucRegistry::define_string_guc(
        c"stress.data_schema",
        c"Schema that pg_stress generates workload data into.",
        c"Created on demand and not owned by the extension, so pg_dump carries it like user data.",
        &DATA_SCHEMA,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"stress.record_conninfo",
        c"Where a load run on a hot standby records its results: the primary, as a dblink connection string or foreign server name.",
        c"A standby cannot write; its run is sent through dblink (CREATE EXTENSION dblink on the primary), as the calling role, to stress.record_standby_run there.",
        &RECORD_CONNINFO,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"stress.batch_size",
        c"Rows written per multi-insert batch by the generators.",
        c"Memory used while generating is proportional to this, not to the number of rows.",
        &BATCH_SIZE,
        1,
        100_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"stress.progress_interval",
        c"Time between progress NOTICEs of long pg_stress calls (0 = none).",
        c"",
        &PROGRESS_INTERVAL,
        0,
        3_600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"stress.slow_query_threshold_ms",
        c"Executions slower than this are counted as slow queries.",
        c"",
        &SLOW_QUERY_THRESHOLD_MS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"stress.slow_query_log_limit",
        c"Slow executions logged per query and run into stress.slow_queries (0 = none).",
        c"Each is counted either way; the first this many are logged with the query's plan.",
        &SLOW_QUERY_LOG_LIMIT,
        0,
        10_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"stress.deadlock_retry_attempts",
        c"Retries of a transaction that failed with a deadlock or serialization failure.",
        c"",
        &DEADLOCK_RETRY_ATTEMPTS,
        0,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"stress.max_workers",
        c"Most background workers one pg_stress run may start.",
        c"Also bounded by free max_worker_processes slots.",
        &MAX_WORKERS,
        1,
        1024,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"stress.timeline",
        c"Whether runs record the server's second by second into stress.timeline.",
        c"Wait events of the run's workers, lock waits, WAL, blocks, commits, checkpoints, autovacuum; taken by the run's sampler with each sample.",
        &TIMELINE,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: called from _PG_init after our GUCs are defined, with a static NUL-terminated prefix.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"stress".as_ptr()) };
}

/// The configured data schema, never empty.
/// `stress.target`, when set (not empty).
pub fn target() -> Option<String> {
    non_empty(&TARGET)
}

/// `stress.target_monitor`, when set (not empty).
pub fn target_monitor() -> Option<String> {
    non_empty(&TARGET_MONITOR)
}

fn non_empty(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.trim().is_empty())
}

pub fn data_schema() -> String {
    DATA_SCHEMA
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "stress_data".to_owned())
}
