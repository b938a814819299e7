//! How a run's background worker hears SIGTERM and SIGINT, so that `pg_terminate_backend`,
//! `pg_cancel_backend`, `stress.cancel` and a fast shutdown stop it within a moment even in the
//! middle of a long statement.
//!
//! PostgreSQL's own handlers do not fit a worker that must record what it measured: a background
//! worker's SIGTERM handler exits at once (bgworker_die: nothing saved), and pgrx's only sets a flag
//! that a statement never looks at. These set a flag the worker's loop reads, wake its latch, and —
//! while the worker runs an operation ([`in_operation`]) — cancel that statement the way
//! StatementCancelHandler does, so that it ends at its next interrupt check with an ERROR the loop
//! catches. Outside an operation nothing is cancelled: the worker's own bookkeeping (saving its
//! results, closing the run) is never struck by a stray cancel.

use pgrx::pg_sys;
use std::sync::atomic::{AtomicBool, Ordering};

static TERMINATED: AtomicBool = AtomicBool::new(false);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static IN_OPERATION: AtomicBool = AtomicBool::new(false);

/// Cancel the statement in progress at its next interrupt check, as StatementCancelHandler does.
///
/// # Safety
/// From this process only (a signal handler, or the process itself): volatile stores to
/// PostgreSQL's `sig_atomic_t` interrupt flags.
unsafe fn cancel_statement() {
    // SAFETY: see above.
    unsafe {
        (&raw mut pg_sys::QueryCancelPending).write_volatile(1);
        (&raw mut pg_sys::InterruptPending).write_volatile(1);
    }
}

/// What both handlers do: note `stop` (a stop flag, or None for a timeout's own SIGINT, which
/// only fails the statement), cancel the statement in flight — a stop's only inside an operation —
/// and wake the worker, leaving errno as it was found.
///
/// # Safety
/// Only from a signal handler of this process: atomics, `sig_atomic_t` flags and SetLatch, all
/// async-signal-safe.
unsafe fn on_signal(stop: Option<&AtomicBool>) {
    // SAFETY: __errno_location is this thread's errno, always valid; SetLatch is async-signal-safe
    // and MyLatch is this process's latch once it runs; cancel_statement from this process.
    unsafe {
        let saved = *libc::__errno_location();
        match stop {
            Some(flag) => {
                flag.store(true, Ordering::SeqCst);
                if IN_OPERATION.load(Ordering::SeqCst) {
                    cancel_statement();
                }
            }
            None => cancel_statement(),
        }
        pg_sys::SetLatch(pg_sys::MyLatch);
        *libc::__errno_location() = saved;
    }
}

unsafe extern "C-unwind" fn on_sigterm(_signal: std::ffi::c_int) {
    // SAFETY: in this process's signal handler.
    unsafe { on_signal(Some(&TERMINATED)) };
}

unsafe extern "C-unwind" fn on_sigint(_signal: std::ffi::c_int) {
    // The operation's own statement (or lock) timeout cancels its statement by sending SIGINT to
    // this process: that fails the operation, as StatementCancelHandler would, and does not stop
    // the worker.
    let stop = (!super::transaction::timeout_fired()).then_some(&INTERRUPTED);
    // SAFETY: in this process's signal handler.
    unsafe { on_signal(stop) };
}

/// Install the handlers (first thing in a worker's main, before unblocking signals).
pub fn install() {
    // SAFETY: installs a handler for this process; both handlers are async-signal-safe.
    unsafe {
        super::version::set_signal_handler(pg_sys::SIGTERM as i32, on_sigterm);
        super::version::set_signal_handler(pg_sys::SIGINT as i32, on_sigint);
    }
}

/// SIGTERM arrived (pg_terminate_backend, a fast shutdown). Stays true.
pub fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst)
}

/// SIGINT arrived (pg_cancel_backend, or stress.cancel of the worker's run). Stays true.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Either signal arrived: the worker stops.
pub fn stop_requested() -> bool {
    terminated() || interrupted()
}

/// Run one operation so that a SIGTERM or SIGINT cancels it. A cancel that came as the operation
/// ended, after its last interrupt check, is dropped here rather than striking what follows.
pub fn in_operation<T>(f: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_OPERATION.store(false, Ordering::SeqCst);
            if stop_requested() {
                // SAFETY: this process's own flag; the handler sets it only while IN_OPERATION,
                // which is now false.
                unsafe { (&raw mut pg_sys::QueryCancelPending).write_volatile(0) };
            }
        }
    }
    IN_OPERATION.store(true, Ordering::SeqCst);
    // (a signal that came just before: cancel what is about to run too)
    if stop_requested() {
        // SAFETY: from the process itself.
        unsafe { cancel_statement() };
    }
    let _leave = Leave;
    f()
}

/// Ask the worker process `pid` (one of a run's) to stop, as `pg_cancel_backend` would: SIGINT.
/// Only a live PostgreSQL process is signalled.
pub fn interrupt(pid: i32) {
    if pid <= 0 {
        return;
    }
    // SAFETY: BackendPidGetProc reads the proc array under its lock; kill only sends a signal.
    unsafe {
        if !pg_sys::BackendPidGetProc(pid).is_null() {
            libc::kill(pid, libc::SIGINT);
        }
    }
}
