//! Top-level transactions and timeouts for background workers (a `#[pg_extern]` isolates statements
//! in subtransactions instead: see `subxact`).

use pgrx::PgTryBuilder;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};

/// Run `f` as one transaction: commit if it returns, roll back and return the error if it raises.
pub fn in_transaction<T>(f: impl FnOnce() -> T) -> Result<T, Box<ErrorReportWithLevel>> {
    in_transaction_ending(false, f)
}

/// Run `f` as one transaction, rolled back even when it returns if `roll_back`.
pub fn in_transaction_ending<T>(
    roll_back: bool,
    f: impl FnOnce() -> T,
) -> Result<T, Box<ErrorReportWithLevel>> {
    // SAFETY: a background worker's top-level transaction, started and ended here.
    unsafe {
        // (the client protocol loop marks each statement's start; a background worker runs none,
        // so without this pg_stat_activity's xact_start and query_start stay at the worker's
        // start for the whole run, to an outside observer one transaction that never ends)
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        let value = f();
        // SAFETY: the snapshot pushed and the transaction started above are still the current
        // ones (f returned: whatever it began, it ended).
        unsafe {
            pg_sys::PopActiveSnapshot();
            if roll_back {
                pg_sys::AbortCurrentTransaction();
            } else {
                pg_sys::CommitTransactionCommand();
            }
        }
        Ok(value)
    }))
    .catch_others(|error| match error {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
            Err(Box::new(report))
        }
        panic @ CaughtError::RustPanic { .. } => panic.rethrow(),
    })
    .execute();
    if outcome.is_err() {
        // SAFETY: the ERROR left the transaction started above in progress (aborted); abort ends
        // it and pops its snapshots, as PostgreSQL's own error recovery would.
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    outcome
}

// utils/timeout.h, which pgrx does not bind. (TimeoutId is an enum: LOCK_TIMEOUT is its 3rd,
// STATEMENT_TIMEOUT its 4th.)
const LOCK_TIMEOUT: std::ffi::c_int = 2;
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;

/// Whether a statement or lock timeout has fired (without resetting it): their handlers cancel the
/// statement by sending this process SIGINT, which a run's worker must not take for a stop
/// (postgres::signals). Async-signal-safe: it reads two flags.
pub fn timeout_fired() -> bool {
    // SAFETY: get_timeout_indicator only reads the timeout's flag when not resetting it.
    unsafe {
        get_timeout_indicator(STATEMENT_TIMEOUT, false)
            || get_timeout_indicator(LOCK_TIMEOUT, false)
    }
}
unsafe extern "C-unwind" {
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
    fn get_timeout_indicator(id: std::ffi::c_int, reset_indicator: bool) -> bool;
}

/// Run `f` (one operation's transaction) with a statement timeout of `ms` (none when 0). The
/// `statement_timeout` setting is armed by the client protocol loop, which a background worker does
/// not run: without this an operation waiting on a lock held by the caller's open transaction, say,
/// would wait past the end of its run for ever. A timeout that fires is the operation's 57014 ERROR.
pub fn with_statement_timeout<T>(ms: i64, f: impl FnOnce() -> T) -> T {
    struct Armed;
    impl Drop for Armed {
        fn drop(&mut self) {
            // SAFETY: the timeout was enabled below; disabling one and reading its flag are what
            // the timeout API is for, and clearing QueryCancelPending only drops our own cancel.
            unsafe {
                // (keeping the indicator for the check below, which resets it)
                disable_timeout(STATEMENT_TIMEOUT, true);
                // (fired after the operation ended, before it was disarmed: cancels nothing)
                if get_timeout_indicator(STATEMENT_TIMEOUT, true) {
                    pg_sys::QueryCancelPending = 0;
                }
            }
        }
    }
    if ms <= 0 {
        return f();
    }
    // SAFETY: STATEMENT_TIMEOUT is registered in every backend (InitPostgres); the guard below
    // disables it on every path out.
    unsafe {
        enable_timeout_after(
            STATEMENT_TIMEOUT,
            ms.min(i32::MAX as i64) as std::ffi::c_int,
        )
    };
    let _armed = Armed;
    f()
}

/// Sleep on the latch (woken early by a signal), then honour interrupts.
pub fn sleep_ms(ms: i64) {
    // SAFETY: MyLatch is this process's own latch, set up at start; WL_EXIT_ON_PM_DEATH needs no
    // postmaster handle of ours.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms.max(0) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}
