//! Dynamic background workers: starting one, and making it act as the session that started it.
//! Runs (`runs`) and parallel generation (`generate::parallel`) both start theirs here, after
//! `privilege::require_worker_grant`.

use crate::error::StressError;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;

/// Who a worker acts as: the calling session's database, login role, and the role it had set
/// (SET ROLE, a SECURITY DEFINER function) with its security context. Plain data, for shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Caller {
    pub database: pg_sys::Oid,
    pub session_user: pg_sys::Oid,
    pub current_user: pg_sys::Oid,
    pub security_context: i32,
}

impl Default for Caller {
    fn default() -> Self {
        Caller {
            database: pg_sys::InvalidOid,
            session_user: pg_sys::InvalidOid,
            current_user: pg_sys::InvalidOid,
            security_context: 0,
        }
    }
}

impl Caller {
    /// This session.
    pub fn current() -> Self {
        let (mut current_user, mut security_context) = (pg_sys::InvalidOid, 0);
        // SAFETY: GetUserIdAndSecContext and GetSessionUserId read this session's identity;
        // MyDatabaseId is set once the session connected.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut current_user, &mut security_context);
            Caller {
                database: pg_sys::MyDatabaseId,
                session_user: pg_sys::GetSessionUserId(),
                current_user,
                security_context,
            }
        }
    }

    /// In a background worker, before anything else: connect to the caller's database as its login
    /// role, then take the role it had set. A role that may no longer log in ends the worker (FATAL).
    pub fn connect_as(&self) {
        // SAFETY: called once, first thing in a background worker that asked for a database
        // connection (BGWORKER_BACKEND_DATABASE_CONNECTION); the roles are the caller's, checked
        // when it started us, and a role that may no longer log in is a FATAL here, not undefined
        // behaviour.
        unsafe {
            pg_sys::BackgroundWorkerInitializeConnectionByOid(self.database, self.session_user, 0);
            pg_sys::SetUserIdAndSecContext(self.current_user, self.security_context);
        }
    }
}

/// A dynamic background worker to start in this library.
pub struct WorkerSpec<'a> {
    /// its name in pg_stat_activity's backend list (cut to what PostgreSQL keeps)
    pub name: &'a str,
    /// its backend_type
    pub kind: &'a str,
    /// the `extern "C"` function it starts in
    pub function: &'a str,
    pub argument: pg_sys::Datum,
    pub extra: &'a str,
    /// whether this backend is told when it starts and stops (to wait for it)
    pub notify: bool,
}

/// Room for a worker's name (BGW_MAXLEN less the terminating NUL, which pgrx does not add when
/// the name fills the field).
const BGW_NAME_BYTES: usize = 95;

/// Start the worker; None when no background worker slot is free (max_worker_processes).
pub fn start(spec: &WorkerSpec) -> Option<*mut pg_sys::BackgroundWorkerHandle> {
    let mut builder = BackgroundWorkerBuilder::new(truncated(spec.name, BGW_NAME_BYTES))
        .set_type(spec.kind)
        .set_library("pg_stress")
        .set_function(spec.function)
        .set_argument(Some(spec.argument))
        .set_extra(spec.extra)
        .enable_spi_access()
        // (pgrx's default with SPI is "once recovery has finished", which on a hot standby is never:
        // a run there — read-only — starts its workers once the standby is consistent)
        .set_start_time(BgWorkerStartTime::ConsistentState);
    if spec.notify {
        builder = builder.set_notify_pid(crate::postgres::backend::pid());
    }
    let mut worker: pg_sys::BackgroundWorker = (&builder).into();
    let mut handle = std::ptr::null_mut();
    // SAFETY: worker is a fully initialised BackgroundWorker (pgrx's builder) and handle a place
    // for the pointer RegisterDynamicBackgroundWorker sets; both live across the call.
    unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle) }.then_some(handle)
}

/// The ERROR (53000) when only `started` of the `wanted` workers of `function` could start.
pub fn out_of_slots(function: &str, wanted: usize, started: usize) -> ! {
    // SAFETY: a plain read of a GUC variable PostgreSQL keeps for the server's life.
    let max = unsafe { pg_sys::max_worker_processes };
    StressError::OutOfWorkerSlots {
        message: format!(
            "{function}: could not start {wanted} background workers: only {started} background worker slots were free (max_worker_processes = {max})"
        ),
        hint: format!(
            "Pass workers => {} or fewer, or raise max_worker_processes (needs a server restart); other extensions and parallel queries use slots too.",
            started.max(1)
        ),
    }
    .raise()
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncated(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod unit_tests {
    use super::truncated;

    #[test]
    fn worker_names_fit_and_stay_valid_utf8() {
        assert_eq!(truncated("abc", 95), "abc");
        let long = "é".repeat(60);
        let cut = truncated(&long, 95);
        assert!(cut.len() <= 95 && cut.chars().all(|c| c == 'é'));
    }
}
