//! The runs in progress, in the server's shared memory (allocated at startup, so runs need
//! `shared_preload_libraries = 'pg_stress'`). Two structures, one per kind of access:
//! - [`RUNS`], under one LWLock: what each run *is* — its identity, who runs it, its kind's
//!   configuration (which the workers read once, as they start) and how many workers it has left.
//!   It changes when a run starts, a worker starts or ends, and a run closes.
//! - [`LIVE`], atomics without a lock: what each run is *doing* — the cancel flag, live counters and
//!   latency buckets, the benchmark's shared counters and its barrier, and a condition variable on
//!   which barrier waiters and `stress.wait` sleep. A worker writes here only while it is counted in
//!   its slot's `workers_running`, so a slot is never reused under it.

use crate::metrics::blocks::Blocks;
use crate::metrics::buckets::{BUCKETS, Buckets};
use crate::postgres::bgworker::Caller;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Runs that may go on at once in one server.
pub const MAX_RUNS: usize = 8;
/// Most tasks (operations, transactions, queries) one run measures.
pub const MAX_TASKS: usize = 24;
/// Most workers one run has (stress.max_workers can say less).
pub const MAX_WORKERS: usize = 1024;
/// Room for a run's configuration, and for its recorded parameters (JSON).
pub const CONFIG_BYTES: usize = 20 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Free = 0,
    Running = 1,
    /// every worker is gone and none closed the run (they died): a closer worker records it as
    /// failed and frees the slot (see runs::recovery)
    Abandoned = 2,
}

/// A NUL-padded string of at most `N - 1` bytes, for shared memory.
#[derive(Debug, Clone, Copy)]
pub struct FixedText<const N: usize>([u8; N]);

impl<const N: usize> Default for FixedText<N> {
    fn default() -> Self {
        FixedText([0; N])
    }
}

impl<const N: usize> FixedText<N> {
    /// None when `text` does not fit.
    pub fn new(text: &str) -> Option<Self> {
        (text.len() < N && !text.contains('\0')).then(|| {
            let mut bytes = [0; N];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            FixedText(bytes)
        })
    }

    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        std::str::from_utf8(&self.0[..end]).unwrap_or_default()
    }
}

/// What a run's background process is told in `bgw_extra` (its slot is `bgw_main_arg`): which run
/// (run ids are per database) and which of the run's workers it is (0 for the sampler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerArgs {
    pub run_id: i64,
    pub worker: u32,
    pub database: pg_sys::Oid,
}

impl WorkerArgs {
    pub fn to_extra(self) -> String {
        format!(
            "{} {} {}",
            self.run_id,
            self.worker,
            u32::from(self.database)
        )
    }

    /// What `to_extra` wrote (zeros for what is missing: a slot then holds no such run).
    pub fn from_extra(extra: &str) -> Self {
        let mut fields = extra.split_whitespace();
        let mut next = || {
            fields
                .next()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let (run_id, worker, database) = (next(), next(), next());
        WorkerArgs {
            run_id,
            worker: worker as u32,
            database: pg_sys::Oid::from(database as u32),
        }
    }
}

/// What a run is: fixed when it starts, but for the worker counts.
#[derive(Debug, Clone, Copy)]
pub struct RunSlot {
    pub run_id: i64,
    pub phase: Phase,
    /// who started it: its workers act as that session
    pub caller: Caller,
    /// the run's kind in `stress.runs` (run_load, benchmark)
    pub kind: FixedText<32>,
    /// the word in its workers' names ("load", "benchmark")
    pub label: FixedText<32>,
    pub workers: u32,
    /// workers that have not finished yet (each decrements it once, the last one closes the run)
    pub workers_running: u32,
    /// workers that connected and started their loop
    pub workers_started: u32,
    /// workers that exited without finishing (an ERROR, a panic, a FATAL): the run fails
    pub workers_lost: u32,
    pub started_at: pg_sys::TimestampTz,
    /// i64::MAX for a run that ends when its work is done
    pub deadline: pg_sys::TimestampTz,
    /// whether the run's sampler writes a stress.timeline row with each sample
    pub timeline: bool,
    /// the caller's default isolation level and search_path, which the workers take on
    pub isolation: i32,
    pub search_path: FixedText<1024>,
    /// the kind's configuration (its workers read it), and the parameters recorded in stress.runs
    pub config: FixedText<CONFIG_BYTES>,
    pub parameters: FixedText<CONFIG_BYTES>,
    /// a run on a hot standby: the caller's dynamic shared memory segment its workers leave their
    /// results in (runs::standby); 0 on a primary, where they go to stress.load_worker_results
    pub standby_segment: u32,
    /// at barrier g (see [`LiveSlot::generation`]): when the last worker arrived, and the server's
    /// block counts then
    pub marks: [(pg_sys::TimestampTz, Blocks); 2 * MAX_TASKS],
}

impl Default for RunSlot {
    fn default() -> Self {
        RunSlot {
            run_id: 0,
            phase: Phase::Free,
            caller: Caller::default(),
            kind: FixedText::default(),
            label: FixedText::default(),
            workers: 0,
            workers_running: 0,
            workers_started: 0,
            workers_lost: 0,
            started_at: 0,
            deadline: 0,
            timeline: false,
            isolation: pg_sys::XACT_READ_COMMITTED as i32,
            search_path: FixedText::default(),
            config: FixedText::default(),
            parameters: FixedText::default(),
            standby_segment: 0,
            marks: [(0, Blocks::default()); 2 * MAX_TASKS],
        }
    }
}

impl RunSlot {
    /// Whether this slot holds run `run_id` of `database` (slots are reused, and run ids are only
    /// unique within a database).
    pub fn holds(&self, run_id: i64, database: pg_sys::Oid) -> bool {
        self.phase == Phase::Running && self.run_id == run_id && self.caller.database == database
    }

    pub fn parameters(&self) -> serde_json::Value {
        serde_json::from_str(self.parameters.as_str()).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Clone, Copy)]
pub struct RunTable {
    pub slots: [RunSlot; MAX_RUNS],
    /// runs started on this server while it is a hot standby: their ids here are -1, -2, … (no
    /// sequence can be advanced here; the primary gives the recorded run its own id)
    pub standby_runs: i64,
}

impl Default for RunTable {
    fn default() -> Self {
        RunTable {
            slots: [RunSlot::default(); MAX_RUNS],
            standby_runs: 0,
        }
    }
}

// SAFETY: plain old data: no pointers, fine to share between processes (read and written under
// the RUNS lock).
unsafe impl PGRXSharedMemory for RunTable {}

/// What a run is doing, updated without a lock.
pub struct LiveSlot {
    pub cancel: AtomicBool,
    /// operations done and failed so far (published by the workers about every 100 ms)
    pub ops: AtomicU64,
    pub errors: AtomicU64,
    /// deadlocks met so far, retried or not (for the samples' deadlock marks)
    pub deadlocks: AtomicU64,
    /// open model: the arrivals due before the deadline, added by each worker as it ends
    pub arrivals: AtomicU64,
    /// workers inside their loop now
    pub workers_looping: AtomicU32,
    /// latencies since the last per-second sample, and since the start (µs, see metrics::buckets)
    pub interval: [AtomicU64; BUCKETS],
    pub cumulative: [AtomicU64; BUCKETS],
    /// the rate over the second before the last sample (f64 bits; by the run's sampler)
    pub last_rate: AtomicU64,
    pub peak_connections: AtomicI64,
    /// per task: work handed out so far (a benchmark's measured executions), and slow executions
    /// logged so far
    pub claimed: [AtomicU64; MAX_TASKS],
    pub logged: [AtomicU32; MAX_TASKS],
    /// the process id of each worker while it runs (0: not running), for stress.timeline
    pub pids: [AtomicI32; MAX_WORKERS],
    /// the task each worker is running (or ran last), plus one (0: none yet): who a deadlock was with
    pub tasks: [AtomicU32; MAX_WORKERS],
    /// barriers passed, and workers waiting at the current one
    pub generation: AtomicU32,
    pub arrived: AtomicU32,
    /// broadcast when a barrier opens, the run is cancelled, or it ends
    changed: SharedConditionVariable,
}

/// PostgreSQL's condition variable, in our shared memory: a spinlock and a list of process numbers.
struct SharedConditionVariable(std::cell::UnsafeCell<pg_sys::ConditionVariable>);

impl LiveSlot {
    fn new() -> Self {
        let mut cv = pg_sys::ConditionVariable::default();
        // SAFETY: cv is a local ConditionVariable, initialised before it is moved into shared
        // memory (once, when the table is created at start-up, before any process can sleep on it).
        unsafe { pg_sys::ConditionVariableInit(&mut cv) };
        LiveSlot {
            cancel: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            deadlocks: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            workers_looping: AtomicU32::new(0),
            interval: std::array::from_fn(|_| AtomicU64::new(0)),
            cumulative: std::array::from_fn(|_| AtomicU64::new(0)),
            last_rate: AtomicU64::new(0),
            peak_connections: AtomicI64::new(0),
            claimed: std::array::from_fn(|_| AtomicU64::new(0)),
            logged: std::array::from_fn(|_| AtomicU32::new(0)),
            pids: std::array::from_fn(|_| AtomicI32::new(0)),
            tasks: std::array::from_fn(|_| AtomicU32::new(0)),
            generation: AtomicU32::new(0),
            arrived: AtomicU32::new(0),
            changed: SharedConditionVariable(std::cell::UnsafeCell::new(cv)),
        }
    }

    /// Zero everything for a new run (by its starter, holding RUNS exclusively).
    pub fn reset(&self) {
        for a in [
            &self.ops,
            &self.errors,
            &self.deadlocks,
            &self.arrivals,
            &self.last_rate,
        ]
        .into_iter()
        .chain(&self.interval)
        .chain(&self.cumulative)
        {
            a.store(0, Ordering::Relaxed);
        }
        for a in &self.claimed {
            a.store(0, Ordering::Relaxed);
        }
        for a in &self.pids {
            a.store(0, Ordering::Relaxed);
        }
        for a in self.logged.iter().chain(&self.tasks).chain([
            &self.workers_looping,
            &self.generation,
            &self.arrived,
        ]) {
            a.store(0, Ordering::Relaxed);
        }
        self.peak_connections.store(0, Ordering::Relaxed);
        self.cancel.store(false, Ordering::SeqCst);
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Ask the run to stop, wake whoever sleeps on it, and cancel the statement each worker is
    /// running (SIGINT, which a run's worker takes as "stop": postgres::signals).
    pub fn request_cancel(&self) {
        let first = !self.cancel.swap(true, Ordering::SeqCst);
        self.wake_all();
        if first {
            // SAFETY: MyProcPid is this process's id, set before any of our code runs.
            let me = crate::postgres::backend::pid();
            for pid in &self.pids {
                let pid = pid.load(Ordering::Relaxed);
                if pid != me {
                    crate::postgres::signals::interrupt(pid);
                }
            }
        }
    }

    pub fn wake_all(&self) {
        // SAFETY: changed lives in shared memory for the server's life; broadcasting takes its own
        // spinlock.
        unsafe { pg_sys::ConditionVariableBroadcast(self.changed.0.get()) };
    }

    /// Sleep until [`wake_all`](Self::wake_all) or `ms` have passed (then check interrupts). Call
    /// [`stop_sleeping`] after the last sleep of a wait.
    pub fn sleep(&self, ms: i64) {
        // SAFETY: as above; this process is the one that sleeps, and stop_sleeping removes it from
        // the wait list after its last sleep.
        unsafe {
            pg_sys::ConditionVariableTimedSleep(
                self.changed.0.get(),
                ms.max(1) as std::ffi::c_long,
                pg_sys::PG_WAIT_EXTENSION,
            )
        };
    }

    /// A copy of a bucket array.
    pub fn snapshot(buckets: &[AtomicU64; BUCKETS]) -> Buckets {
        std::array::from_fn(|i| buckets[i].load(Ordering::Relaxed))
    }

    pub fn rate(&self) -> f64 {
        f64::from_bits(self.last_rate.load(Ordering::Relaxed))
    }
}

/// Leave the condition variable's wait list (after the last [`LiveSlot::sleep`] of a wait).
pub fn stop_sleeping() {
    // SAFETY: cancels this process's own pending sleep, if any; a no-op otherwise.
    unsafe { pg_sys::ConditionVariableCancelSleep() };
}

pub struct LiveTable {
    pub slots: [LiveSlot; MAX_RUNS],
}

impl Default for LiveTable {
    fn default() -> Self {
        LiveTable {
            slots: std::array::from_fn(|_| LiveSlot::new()),
        }
    }
}

// SAFETY: atomics and PostgreSQL's own condition variable (process numbers, no pointers): fine to
// share between processes.
unsafe impl PGRXSharedMemory for LiveTable {}
// SAFETY: every field is an atomic or a condition variable, which PostgreSQL guards with its own
// spinlock.
unsafe impl Sync for LiveTable {}

// SAFETY: pgrx's contract: the lock is registered in _PG_init (slots::init) when preloaded, before
// any use; nothing uses it unless preloaded (control::start checks).
pub static RUNS: PgLwLock<RunTable> = unsafe { PgLwLock::new(c"pg_stress runs") };
pub static LIVE: pgrx::atomics::PgAtomic<LiveTable> =
    // SAFETY: as above, for the live table.
    unsafe { pgrx::atomics::PgAtomic::new(c"pg_stress live runs") };

/// What run slot `index` is doing.
pub fn live(index: usize) -> &'static LiveSlot {
    &LIVE.get().slots[index]
}

/// Whether this server loaded pg_stress at startup (so RUNS and LIVE exist).
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// From `_PG_init`: claim the shared memory when loaded by `shared_preload_libraries`.
pub fn init() {
    if crate::postgres::backend::preloading() {
        pgrx::pg_shmem_init!(RUNS);
        pgrx::pg_shmem_init!(LIVE);
        PRELOADED.store(true, Ordering::Relaxed);
    }
}

pub fn available() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// The slot of this database's run `run_id`, if the run is in progress and the current user may
/// see it. (Run ids come from each database's own `stress.runs` sequence: the same id may be
/// running in another database.)
pub fn find(table: &RunTable, run_id: i64) -> Option<usize> {
    find_in(table, run_id).filter(|&i| visible(&table.slots[i]))
}

/// Whether the current user may see (and wait for) the run in `slot`: it started it, or has the
/// privileges of the role that did, or is a member of pg_read_all_stats (as for stress.runs).
pub fn visible(slot: &RunSlot) -> bool {
    // SAFETY: permission checks of the current user against role ids; a dropped role is simply no
    // match.
    unsafe {
        let user = pg_sys::GetUserId();
        pg_sys::has_privs_of_role(user, slot.caller.current_user)
            || pg_sys::has_privs_of_role(user, pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS))
    }
}

/// [`find`] whoever may see it.
pub fn find_in(table: &RunTable, run_id: i64) -> Option<usize> {
    let database = crate::postgres::backend::database();
    table
        .slots
        .iter()
        .position(|s| s.phase != Phase::Free && s.run_id == run_id && s.caller.database == database)
}
