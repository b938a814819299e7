//! The contract between the run engine and a kind of run (a load run, a concurrent benchmark):
//! [`RunKind`], what a worker knows of its run ([`WorkerRun`]) and of a finished one
//! ([`FinishedRun`]), and what it adds to the run's live figures ([`LiveFigures`]).

use super::slots::{self, LiveSlot, RUNS, RunSlot};
use crate::metrics::blocks;
use crate::metrics::buckets::{self, BUCKETS, Buckets};
use crate::metrics::task::TaskStats;
use crate::postgres::backend::now;
use crate::postgres::transaction::in_transaction;
use pgrx::pg_sys;
use std::sync::atomic::Ordering;

/// A kind of run (a load run, a concurrent benchmark): what its workers do between connecting and
/// closing the run. Each kind has its own worker entry point, which calls [`main`] with itself.
pub trait RunKind {
    /// The run's kind in stress.runs (run_load, benchmark).
    const KIND: &'static str;
    /// The kind's configuration, stored in the run's slot as JSON by whoever started it.
    type Config: serde::de::DeserializeOwned;
    /// What one worker prepares before its loop and keeps through it.
    type Worker;
    /// What the run measures, in order: results are kept per name.
    fn tasks(config: &Self::Config) -> Vec<String>;
    /// Prepare the loop (in a transaction, as the caller's role, with its search_path).
    fn prepare(run: &WorkerRun<Self::Config>) -> Result<Self::Worker, String>;
    /// The loop, until the deadline, the end of its work, a cancel or SIGTERM. Returns why it
    /// stopped early if that was a problem (a cancel is not one).
    fn run(
        run: &WorkerRun<Self::Config>,
        worker: &mut Self::Worker,
        stats: &mut [TaskStats],
    ) -> Option<String>;
    /// The statements the run executes that name tables of the caller's choosing (custom
    /// transactions, benchmarked queries), with their parameter types: the run's environment
    /// records those tables' sizes.
    fn statements(_config: &Self::Config) -> Vec<(String, Vec<pg_sys::Oid>)> {
        Vec::new()
    }
    /// Save what the worker kept beside its results (in their transaction, as the caller's role).
    fn save(_run: &WorkerRun<Self::Config>, _worker: &Self::Worker) {}
    /// Record the run's results, every worker's merged per task (by the last worker out).
    fn record(run: &FinishedRun<Self::Config>, merged: &[TaskStats]);
}

/// Why a worker stopped waiting before its work was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// the run was cancelled: not a problem of this worker
    Cancelled,
    Terminated,
}

/// One worker's view of its run.
pub struct WorkerRun<C> {
    pub run_id: i64,
    pub database: pg_sys::Oid,
    /// the run's slot
    pub index: usize,
    /// this worker's number, from 0
    pub worker: u32,
    pub workers: u32,
    pub started_at: pg_sys::TimestampTz,
    pub deadline: pg_sys::TimestampTz,
    pub config: C,
}

impl<C> WorkerRun<C> {
    pub fn live(&self) -> &'static LiveSlot {
        slots::live(self.index)
    }

    pub fn cancelled(&self) -> bool {
        self.live().cancelled()
    }

    /// This worker enters (or leaves) its loop: `stress.progress` counts the workers inside.
    pub fn looping(&self, inside: bool) {
        let n = &self.live().workers_looping;
        if inside {
            n.fetch_add(1, Ordering::Relaxed);
        } else {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Take one unit of task `task`'s shared work, of which there are `limit`: Some(false) when
    /// none is left, None when the run is cancelled.
    pub fn claim(&self, task: usize, limit: u64) -> Option<bool> {
        if self.cancelled() {
            return None;
        }
        Some(self.live().claimed[task].fetch_add(1, Ordering::Relaxed) < limit)
    }

    /// Whether one more slow execution of `task` may be logged (at most `limit` over all workers).
    pub fn may_log(&self, task: usize, limit: u32) -> bool {
        self.live().logged[task].fetch_add(1, Ordering::Relaxed) < limit
    }

    /// Whether a signal told this worker to stop: SIGTERM (pg_terminate_backend, a shutdown)
    /// stops it; SIGINT (pg_cancel_backend of a worker, or stress.cancel) cancels the whole run,
    /// as stress.cancel does. Checks interrupts first.
    pub fn told_to_stop(&self) -> Option<Stopped> {
        pg_sys::check_for_interrupts!();
        if crate::postgres::signals::terminated() {
            return Some(Stopped::Terminated);
        }
        if crate::postgres::signals::interrupted() {
            if !self.cancelled() {
                self.live().request_cancel();
            }
            return Some(Stopped::Cancelled);
        }
        None
    }

    /// What this worker adds to the run's live figures, published about every 100 ms.
    pub fn figures(&self) -> LiveFigures {
        LiveFigures {
            index: self.index,
            ops: 0,
            errors: 0,
            deadlocks: 0,
            buckets: [0; BUCKETS],
            published: now(),
        }
    }

    /// Wait until all the run's workers reach barrier `g`. The last to arrive marks the time and the
    /// server's block counts (after every worker flushed its statistics), then wakes the others.
    pub fn barrier(&self, g: u32) -> Result<(), Stopped> {
        let live = self.live();
        // This worker's block counts reach the server before anyone marks them.
        crate::postgres::backend::report_stats(true);
        if live.cancelled() {
            return Err(Stopped::Cancelled);
        }
        if live.arrived.fetch_add(1, Ordering::SeqCst) + 1 == self.workers {
            let counts = in_transaction(|| blocks::flushed(None)).unwrap_or_default();
            {
                let mut table = RUNS.exclusive();
                let slot = &mut table.slots[self.index];
                if slot.holds(self.run_id, self.database) {
                    slot.marks[g as usize] = (now(), counts);
                }
            }
            live.arrived.store(0, Ordering::SeqCst);
            live.generation.store(g + 1, Ordering::SeqCst);
            live.wake_all();
            return Ok(());
        }
        let outcome = loop {
            if live.generation.load(Ordering::SeqCst) > g {
                break Ok(());
            }
            if live.cancelled() {
                break Err(Stopped::Cancelled);
            }
            if let Some(why) = self.told_to_stop() {
                break Err(why);
            }
            live.sleep(100);
        };
        slots::stop_sleeping();
        outcome
    }
}

/// A run as its last worker closes it.
pub struct FinishedRun<C> {
    pub run_id: i64,
    pub workers: u32,
    pub config: C,
    /// the slot as the last worker left it (its barrier marks)
    pub slot: RunSlot,
    /// from the first worker's loop start to the last one's end
    pub seconds: f64,
    /// the workers' time connected, µs
    pub connected_us: f64,
    /// open model: the arrivals due before the deadline (LiveSlot::arrivals)
    pub arrivals: u64,
    /// recorded on the primary for a hot standby (runs::standby): this server's statistics are
    /// not the ones the run's workers moved
    pub from_standby: bool,
}

/// What a worker adds to its run's live figures (counts and latencies since it last published).
pub struct LiveFigures {
    index: usize,
    pub ops: u64,
    pub errors: u64,
    pub deadlocks: u64,
    buckets: Buckets,
    pub published: pg_sys::TimestampTz,
}

impl LiveFigures {
    pub fn record(&mut self, latency_us: u64) {
        self.ops += 1;
        self.buckets[buckets::index(latency_us)] += 1;
    }

    /// Whether it is time to publish (every 100 ms).
    pub fn due(&self, at: pg_sys::TimestampTz) -> bool {
        at - self.published >= 100_000
    }

    /// Add what this worker did to the run's live figures (the run's sampler reads them each
    /// second). Returns false when the run is cancelled.
    pub fn publish(&mut self, at: pg_sys::TimestampTz) -> bool {
        let live = slots::live(self.index);
        live.ops.fetch_add(self.ops, Ordering::Relaxed);
        live.errors.fetch_add(self.errors, Ordering::Relaxed);
        live.deadlocks.fetch_add(self.deadlocks, Ordering::Relaxed);
        for (i, &n) in self.buckets.iter().enumerate().filter(|(_, n)| **n > 0) {
            live.interval[i].fetch_add(n, Ordering::Relaxed);
            live.cumulative[i].fetch_add(n, Ordering::Relaxed);
        }
        self.ops = 0;
        self.errors = 0;
        self.deadlocks = 0;
        self.buckets = [0; BUCKETS];
        self.published = at;
        crate::postgres::backend::report_stats(false);
        !live.cancelled()
    }
}
