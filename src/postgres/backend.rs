//! What this backend is, read safely: its process id, database, user, the clock, whether the server
//! is a standby. Each is one read of a global PostgreSQL sets up before any extension code runs (or
//! a call that only reads such globals), so that capability code needs no `unsafe` for them.

use pgrx::pg_sys;

/// This process's id (`MyProcPid`).
pub fn pid() -> i32 {
    // SAFETY: MyProcPid is set when the process starts, before any library is loaded, and only
    // read afterwards; this backend is single-threaded.
    unsafe { pg_sys::MyProcPid }
}

/// The database this backend is connected to (`MyDatabaseId`; InvalidOid before a worker
/// connects).
pub fn database() -> pg_sys::Oid {
    // SAFETY: a plain read of a global that only the connection start-up writes.
    unsafe { pg_sys::MyDatabaseId }
}

/// The current user id (after SET ROLE and SECURITY DEFINER): whom a record made now belongs to.
pub fn user() -> pg_sys::Oid {
    // SAFETY: GetUserId only reads the backend's current user id (it asserts it is set, which it
    // is in any session or connected worker that runs our code).
    unsafe { pg_sys::GetUserId() }
}

/// The clock now, as a timestamptz (not the transaction's start).
pub fn now() -> pg_sys::TimestampTz {
    // SAFETY: GetCurrentTimestamp reads the system clock; no state, no error.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Whether the server is a standby in recovery.
pub fn in_recovery() -> bool {
    // SAFETY: RecoveryInProgress reads shared memory's recovery state (under its spinlock when it
    // has not yet seen recovery end); callable in any backend at any time.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// Whether this transaction has a transaction id (has written, or locked rows).
pub fn has_transaction_id() -> bool {
    // SAFETY: GetTopTransactionIdIfAny only reads the transaction state; it never assigns one.
    let xid = unsafe { pg_sys::GetTopTransactionIdIfAny() };
    xid != pg_sys::InvalidTransactionId
}

/// The transaction's id, or InvalidTransactionId when it has none (never assigns one).
#[cfg(any(test, feature = "pg_test"))]
pub fn transaction_id() -> pg_sys::TransactionId {
    // SAFETY: as in has_transaction_id.
    unsafe { pg_sys::GetTopTransactionIdIfAny() }
}

/// Whether `_PG_init` runs because of `shared_preload_libraries` (shared memory can be asked for).
pub fn preloading() -> bool {
    // SAFETY: a plain read of a flag the postmaster sets around loading the preloaded libraries.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// Flush this backend's pending statistics to the cumulative statistics system (`force`: even if
/// the last flush was recent). A background worker runs no client loop that would do it.
pub fn report_stats(force: bool) {
    // SAFETY: pgstat_report_stat must be called outside a transaction, which every caller is (the
    // worker loop between its transactions).
    unsafe { pg_sys::pgstat_report_stat(force) };
}

/// Show `what` as this worker's query in pg_stat_activity, state active (a background worker runs
/// no client loop that would).
pub fn report_activity(what: &'static std::ffi::CStr) {
    // SAFETY: pgstat_report_activity copies the string into this backend's status entry; a
    // static C string outlives the call.
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, what.as_ptr()) };
}

/// This session's `statement_timeout`, in ms (0: none).
pub fn statement_timeout_ms() -> i32 {
    // SAFETY: a plain read of the GUC's variable in this single-threaded backend.
    unsafe { pg_sys::StatementTimeout }
}

/// This session's `default_transaction_isolation` (XACT_*).
pub fn default_isolation() -> i32 {
    // SAFETY: a plain read of the GUC's variable.
    unsafe { pg_sys::DefaultXactIsoLevel }
}

/// Set this session's `default_transaction_isolation` (a worker taking its caller's), between
/// transactions.
pub fn set_default_isolation(level: i32) {
    // SAFETY: a plain write of the GUC's variable, as SET does, to one of the XACT_* levels the
    // caller's own session had.
    unsafe { pg_sys::DefaultXactIsoLevel = level };
}
