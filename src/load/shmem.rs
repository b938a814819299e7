//! The load runs in progress, in the server's shared memory (allocated at startup, so load runs need
//! `shared_preload_libraries = 'pg_stress'`). A slot holds a run's configuration, which its workers
//! read when they start, and its live state: the cancel flag, counters, how many workers still run.

use super::ops::{OPS, Weights};
use crate::metrics::buckets::{BUCKETS, Buckets};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::sync::atomic::{AtomicBool, Ordering};

/// Load runs that may go on at once in one server.
pub const MAX_RUNS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Free = 0,
    Running = 1,
    /// every worker is gone and none closed the run (they died): a closer worker records it as
    /// failed and frees the slot (see load::recovery)
    Abandoned = 2,
}

#[derive(Debug, Clone, Copy)]
pub struct RunSlot {
    pub run_id: i64,
    pub phase: Phase,
    pub cancel: bool,
    pub database: pg_sys::Oid,
    pub session_user: pg_sys::Oid,
    pub current_user: pg_sys::Oid,
    pub security_context: i32,
    pub workers: u32,
    /// workers that have not finished yet (each decrements it once, the last one closes the run)
    pub workers_running: u32,
    /// workers that connected and started their loop
    pub workers_started: u32,
    /// workers that exited without finishing (an ERROR, a panic, a FATAL): the run fails
    pub workers_lost: u32,
    pub started_at: pg_sys::TimestampTz,
    pub deadline: pg_sys::TimestampTz,
    /// operations per second over all workers; 0 = closed model
    pub rate: f64,
    pub isolation: i32,
    pub max_retries: u32,
    pub weights: Weights,
    pub seed: u64,
    pub accounts: i64,
    pub first_order_id: i64,
    pub first_trade_id: i64,
    pub first_audit_id: i64,
    /// transfers only between accounts 1..=hot_accounts (0: all), pausing between debit and credit
    pub hot_accounts: i64,
    pub transfer_pause: f64,
    /// what started the run: a plain run_load, or a scenario (see load::Scenario)
    pub scenario: u8,
    /// simulate_trading_day: the open model's rate follows a day compressed into the run — hour h
    /// (bit h of day_peaks set) ×4, night hours 0–5 ×¼, others ×1; `rate` is the ×4 rate
    pub day_profile: bool,
    pub day_peaks: u32,
    /// custom transactions (see load::custom), as JSON
    pub custom: [u8; super::custom::MAX_BYTES],
    pub custom_len: u32,
    /// operations slower than this count as slow (the caller's stress.slow_query_threshold_ms)
    pub slow_ms: i32,
    /// block counts of the run's tables when it started (pg_statio)
    pub blocks_start: crate::metrics::blocks::Blocks,
    /// the data schema, NUL-terminated
    pub schema: [u8; 64],
    /// the caller's search_path (custom transactions resolve names as the caller would)
    pub search_path: [u8; 1024],
    /// live totals, updated by the workers about every 100 ms
    pub ops: u64,
    pub errors: u64,
    /// workers inside their operation loop now
    pub workers_looping: u32,
    /// latencies since the last per-second sample, and since the start (µs, see metrics::buckets)
    pub interval: Buckets,
    pub cumulative: Buckets,
    /// at the last sample: when, the totals then, and the rate over the second before it
    pub sampled_at: pg_sys::TimestampTz,
    pub sampled_ops: u64,
    pub sampled_errors: u64,
    pub last_rate: f64,
    pub peak_connections: i64,
    /// stress.benchmark with concurrency: see [`BenchmarkState`]
    pub bench: BenchmarkState,
}

/// Most queries of one concurrent benchmark (its queries travel as custom transactions).
pub const MAX_BENCH_QUERIES: usize = super::custom::MAX_TRANSACTIONS;

/// A concurrent `stress.benchmark`: the workers run the queries one after another, all of them on
/// the same query at a time. Before and after each query's measured executions they meet at a
/// barrier; the last to arrive marks the time and the block counts, so that each query's rate and
/// hit rates cover exactly its measured executions.
#[derive(Debug, Clone, Copy)]
pub struct BenchmarkState {
    /// measured executions of each query, over all workers
    pub iterations: u64,
    /// unmeasured executions of each query by each worker, before the measured ones
    pub warmup: u32,
    pub prepared: bool,
    pub rollback: bool,
    /// the caller's statement_timeout (ms, 0 = none), which the workers take on
    pub statement_timeout_ms: i32,
    /// measured executions handed out so far, per query
    pub claimed: [u64; MAX_BENCH_QUERIES],
    /// slow executions logged so far, per query (at most stress.slow_query_log_limit)
    pub slow_logged: [u32; MAX_BENCH_QUERIES],
    pub slow_log_limit: u32,
    /// barriers passed, and workers waiting at the current one
    pub generation: u32,
    pub arrived: u32,
    /// at barrier g: when the last worker arrived, and the server's block counts then
    pub marks: [(pg_sys::TimestampTz, crate::metrics::blocks::Blocks); 2 * MAX_BENCH_QUERIES],
}

impl Default for BenchmarkState {
    fn default() -> Self {
        BenchmarkState {
            iterations: 0,
            warmup: 0,
            prepared: true,
            rollback: false,
            statement_timeout_ms: 0,
            claimed: [0; MAX_BENCH_QUERIES],
            slow_logged: [0; MAX_BENCH_QUERIES],
            slow_log_limit: 0,
            generation: 0,
            arrived: 0,
            marks: [(0, Default::default()); 2 * MAX_BENCH_QUERIES],
        }
    }
}

impl Default for RunSlot {
    fn default() -> Self {
        RunSlot {
            run_id: 0,
            phase: Phase::Free,
            cancel: false,
            database: pg_sys::InvalidOid,
            session_user: pg_sys::InvalidOid,
            current_user: pg_sys::InvalidOid,
            security_context: 0,
            workers: 0,
            workers_running: 0,
            workers_started: 0,
            workers_lost: 0,
            started_at: 0,
            deadline: 0,
            rate: 0.0,
            isolation: pg_sys::XACT_READ_COMMITTED as i32,
            max_retries: 0,
            weights: [0.0; OPS.len()],
            seed: 0,
            accounts: 0,
            first_order_id: 0,
            first_trade_id: 0,
            first_audit_id: 0,
            hot_accounts: 0,
            transfer_pause: 0.0,
            scenario: 0,
            day_profile: false,
            day_peaks: 0,
            custom: [0; super::custom::MAX_BYTES],
            custom_len: 0,
            slow_ms: 100,
            blocks_start: Default::default(),
            schema: [0; 64],
            search_path: [0; 1024],
            ops: 0,
            errors: 0,
            workers_looping: 0,
            interval: [0; BUCKETS],
            cumulative: [0; BUCKETS],
            sampled_at: 0,
            sampled_ops: 0,
            sampled_errors: 0,
            last_rate: 0.0,
            peak_connections: 0,
            bench: BenchmarkState::default(),
        }
    }
}

impl RunSlot {
    pub fn schema(&self) -> String {
        let end = self.schema.iter().position(|&b| b == 0).unwrap_or(64);
        String::from_utf8_lossy(&self.schema[..end]).into_owned()
    }

    /// The run's custom transactions (validated by the caller).
    pub fn customs(&self) -> Vec<super::custom::Custom> {
        let bytes = &self.custom[..self.custom_len as usize];
        if bytes.is_empty() {
            return Vec::new();
        }
        serde_json::from_slice(bytes)
            .ok()
            .and_then(|v| super::custom::parse(&v, &[]).ok())
            .unwrap_or_default()
    }

    pub fn search_path(&self) -> String {
        let end = self
            .search_path
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(1024);
        String::from_utf8_lossy(&self.search_path[..end]).into_owned()
    }

    pub fn set_search_path(&mut self, path: &str) {
        self.search_path = [0; 1024];
        let n = path.len().min(1023);
        self.search_path[..n].copy_from_slice(&path.as_bytes()[..n]);
    }

    pub fn set_schema(&mut self, schema: &str) {
        self.schema = [0; 64];
        let n = schema.len().min(63);
        self.schema[..n].copy_from_slice(&schema.as_bytes()[..n]);
    }
}

#[derive(Clone, Copy)]
pub struct RunTable {
    pub slots: [RunSlot; MAX_RUNS],
}

impl Default for RunTable {
    fn default() -> Self {
        RunTable {
            slots: [RunSlot::default(); MAX_RUNS],
        }
    }
}

// Plain old data: no pointers, fine to share between processes.
unsafe impl PGRXSharedMemory for RunTable {}

pub static RUNS: PgLwLock<RunTable> = unsafe { PgLwLock::new(c"pg_stress load runs") };

/// Whether this server loaded pg_stress at startup (so RUNS exists).
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// From `_PG_init`: claim the shared memory when loaded by `shared_preload_libraries`.
pub fn init() {
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pgrx::pg_shmem_init!(RUNS);
        PRELOADED.store(true, Ordering::Relaxed);
    }
}

pub fn available() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// The slot of this database's run `run_id`, if the run is in progress. (Run ids come from each
/// database's own `stress.runs` sequence: the same id may be running in another database.)
pub fn find(table: &RunTable, run_id: i64) -> Option<usize> {
    find_in(table, run_id).filter(|&i| visible(&table.slots[i]))
}

/// Whether the current user may see (and wait for) the run in `slot`: it started it, or has the
/// privileges of the role that did, or is a member of pg_read_all_stats (as for stress.runs).
pub fn visible(slot: &RunSlot) -> bool {
    unsafe {
        let user = pg_sys::GetUserId();
        pg_sys::has_privs_of_role(user, slot.current_user)
            || pg_sys::has_privs_of_role(user, pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS))
    }
}

/// [`find`] whoever may see it.
pub fn find_in(table: &RunTable, run_id: i64) -> Option<usize> {
    let database = unsafe { pg_sys::MyDatabaseId };
    table
        .slots
        .iter()
        .position(|s| s.phase != Phase::Free && s.run_id == run_id && s.database == database)
}
