//! The run engine: runs of background workers (load runs, concurrent benchmarks), whatever they do.
//!
//! - [`kind`]: the contract — [`kind::RunKind`], which a kind of run (`load`, `benchmark`)
//!   implements, with a worker entry point that calls [`worker::main`]; the engine knows none of
//!   them.
//! - [`slots`]: the runs in shared memory — what each is (under a lock), what it is doing (atomics).
//! - [`control`]: in the caller's session — start a run's workers, wait for it, cancel it, list it.
//! - [`worker`]: in each worker — connect as the caller, let the kind prepare and loop, hand what it
//!   measured to the run's [`destination`]; the last one out has the destination close the run.
//! - [`destination`]: where the results go — this server's tables, or (a hot standby's run) the
//!   caller's shared memory; [`closing`]: merging them and closing the run, either way.
//! - [`standby`]: the caller's side of a standby's run, and its recording on the primary.
//! - [`sampler`]: a worker of its own per run, writing each second's sample and timeline row.
//! - [`target`]: a run's other server (`stress.target`), from the caller's settings.
//! - [`recovery`]: after a restart or a worker's death, close the runs nobody will close.
//!
//! What a run writes goes through [`crate::records`], the one writer of the `stress.*` tables.

pub mod closing;
pub mod control;
pub mod destination;
pub mod kind;
pub mod monitor;
pub mod recovery;
pub mod sampler;
pub mod slots;
pub mod standby;
pub mod target;
pub mod worker;

/// From `_PG_init`: when preloaded, shared memory for runs and the worker that closes the runs a
/// restart interrupted.
pub fn init() {
    if crate::postgres::backend::preloading() {
        slots::init();
        recovery::register();
    }
}
