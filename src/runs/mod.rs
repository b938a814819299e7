//! The run engine: runs of background workers (load runs, concurrent benchmarks), whatever they do.
//!
//! - [`slots`]: the runs in shared memory — what each is (under a lock), what it is doing (atomics).
//! - [`control`]: in the caller's session — start a run's workers, wait for it, cancel it, list it.
//! - [`worker`]: in each worker — connect as the caller, let the run's [`worker::RunKind`] prepare and
//!   loop, save its measurements; the last one out merges them and closes the run.
//! - [`sampler`]: a worker of its own per run, writing each second's sample and timeline row.
//! - [`recovery`]: after a restart or a worker's death, close the runs nobody will close.
//! - [`records`]: the one writer of `stress.runs`, `stress.results`, `stress.samples` and the other
//!   record tables, as their owner; [`record_functions`]: the same for the SQL-language parts.
//!
//! A kind of run (`load`, `benchmark`) implements [`worker::RunKind`] and has a worker entry point
//! that calls [`worker::main`]; the engine knows none of them.

pub mod control;
pub mod record_functions;
pub mod records;
pub mod recovery;
pub mod sampler;
pub mod slots;
pub mod standby;
pub mod worker;

/// From `_PG_init`: when preloaded, shared memory for runs and the worker that closes the runs a
/// restart interrupted.
pub fn init() {
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        slots::init();
        recovery::register();
    }
}
