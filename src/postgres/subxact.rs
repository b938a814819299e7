//! Running a piece of work in an internal subtransaction, as a PL/pgSQL EXCEPTION block does: if it
//! raises an ERROR, only its own effects roll back and the caller gets the error as a value. Like
//! PL/pgSQL's `WHEN OTHERS`, a cancel (`pg_cancel_backend`, `statement_timeout`: 57014) is not caught:
//! it goes on up and ends the statement, so no loop of isolated executions can swallow it.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use pgrx::{PgSqlErrorCode, PgTryBuilder};

/// What happens to a subtransaction's effects when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Keep,
    /// roll back even on success (a benchmark of DML that leaves the data unchanged)
    RollBack,
}

/// Run `f` in an internal subtransaction. On ERROR, roll the subtransaction back and return the
/// error; on success, release (keep) its effects. A Rust panic is re-raised, not swallowed.
pub fn run_isolated<T>(
    f: impl FnOnce() -> T + std::panic::UnwindSafe,
) -> Result<T, Box<ErrorReportWithLevel>> {
    run_isolated_ending(Ending::Keep, f)
}

/// [`run_isolated`], with what happens to the effects of a success chosen by `ending`.
pub fn run_isolated_ending<T>(
    ending: Ending,
    f: impl FnOnce() -> T + std::panic::UnwindSafe,
) -> Result<T, Box<ErrorReportWithLevel>> {
    // SAFETY: we are in a transaction (any SQL-callable function is); the subtransaction begun here
    // is ended below on every path, success, ERROR or panic (PgTryBuilder catches them all).
    let (outer_context, outer_owner) = unsafe {
        let outer_context = pg_sys::CurrentMemoryContext;
        let outer_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        // Like PL/pgSQL: keep allocating in the caller's context, not the subtransaction's.
        pg_sys::MemoryContextSwitchTo(outer_context);
        (outer_context, outer_owner)
    };

    let outcome = PgTryBuilder::new(move || Ok(f()))
        .catch_others(|error| Err(Box::new(error)))
        .execute();

    // SAFETY: the subtransaction begun above is the current one (whatever f began inside it, it
    // ended or the ERROR we caught aborts with it); the context and owner restored are the caller's,
    // which outlive it.
    unsafe {
        match (&outcome, ending) {
            (Ok(_), Ending::Keep) => pg_sys::ReleaseCurrentSubTransaction(),
            _ => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(outer_context);
        pg_sys::CurrentResourceOwner = outer_owner;
    }
    // Only now, with the subtransaction gone, may an error go on up: raised inside it, it would
    // leave the session in an aborted subtransaction that only a ROLLBACK ends.
    match outcome.map_err(|boxed| *boxed) {
        Ok(value) => Ok(value),
        Err(CaughtError::PostgresError(report) | CaughtError::ErrorReport(report))
            if report.sql_error_code() != PgSqlErrorCode::ERRCODE_QUERY_CANCELED =>
        {
            Err(Box::new(report))
        }
        Err(other) => other.rethrow(),
    }
}

/// The error message of an isolated piece of SPI work that failed, either way it can fail: an SPI
/// error it returned, or an ERROR it raised. None when it succeeded.
pub fn failure_message<T>(
    outcome: &Result<pgrx::spi::SpiResult<T>, Box<ErrorReportWithLevel>>,
) -> Option<String> {
    match outcome {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(report) => Some(report.message().to_owned()),
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn an_error_rolls_back_only_its_own_work() {
        Spi::run("CREATE TEMP TABLE subxact_probe (x int)").unwrap();
        let kept = run_isolated(|| Spi::run("INSERT INTO subxact_probe VALUES (1)").unwrap());
        assert!(kept.is_ok());
        let failed = run_isolated(|| {
            Spi::run("INSERT INTO subxact_probe VALUES (2)").unwrap();
            Spi::run("SELECT 1/0").unwrap();
        });
        let report = failed.unwrap_err();
        assert_eq!(
            report.sql_error_code(),
            PgSqlErrorCode::ERRCODE_DIVISION_BY_ZERO
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT sum(x) FROM subxact_probe").unwrap(),
            Some(1)
        );
    }

    #[pg_test(error = "canceling statement due to user request")]
    fn a_cancel_is_not_caught() {
        // What pg_cancel_backend() does to this backend (its signal handler sets these flags).
        // SAFETY: plain writes of the two interrupt flags, as the signal handler makes them.
        unsafe {
            pg_sys::QueryCancelPending = 1;
            pg_sys::InterruptPending = 1;
        }
        let caught = run_isolated(|| Spi::run("SELECT pg_sleep(0.01)").unwrap());
        panic!(
            "the cancel was caught: {:?}",
            caught.err().map(|e| e.message().to_owned())
        );
    }
}
