//! The one writer of the `stress.*` tables.
//!
//! The tables belong to the extension's owner (a superuser: pg_stress is not a trusted extension);
//! PUBLIC may only read them, and row-level security shows each role its own records (SECURITY.md).
//! Every write goes through [`as_owner`], which does what PostgreSQL does for a SECURITY DEFINER
//! function with `SET search_path = pg_catalog, pg_temp`, and a little more:
//! - the search_path is pinned for the duration, in a GUC nest level of its own, so no schema or
//!   temp object of the caller's can capture a name (every name below is qualified anyway);
//! - the user id is the owner's with `SECURITY_RESTRICTED_OPERATION`, as VACUUM and REFRESH
//!   MATERIALIZED VIEW run a table owner's code: no SET ROLE, no temp objects, no cursors survive it;
//! - only fixed SQL runs, with every value a bound parameter; who a record belongs to (`run_as`) is
//!   the caller's user id, read here, never an argument.
//!
//! The SQL-language parts of pg_stress (archive, health check, state captures, retention) record
//! through the `stress.record_*` functions ([`functions`]), which apply the same rules.
//!
//! - this file: the owner switch ([`as_owner`]) and what every writer needs (the tables, their
//!   columns in an older schema, run ids);
//! - [`runs`]: `stress.runs` rows — a call's, a run's registration, environment and closing;
//! - [`results`]: `stress.results`, `stress.slow_queries`, `stress.conflicts`;
//! - [`timeline`]: each second's `stress.samples` and `stress.timeline` rows (with lock waits and
//!   replication lag);
//! - [`pool`]: each second's `stress.pool_samples` rows (a PgBouncer's pools);
//! - [`target_timeline`]: each second's `stress.target_timeline` row (a PostgreSQL target's side);
//! - [`worker_results`]: what each worker of a run keeps until the last one merges them.

pub mod functions;
pub mod pool;
pub mod results;
pub mod runs;
pub mod target_timeline;
pub mod timeline;
pub mod worker_results;

pub use pool::*;
pub use results::*;
pub use runs::*;
pub use target_timeline::*;
pub use timeline::*;
pub use worker_results::*;

use crate::postgres::catalog::stress_table;
use pgrx::PgTryBuilder;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// `stress.runs` (see [`stress_table`]).
fn runs_table() -> pg_sys::Oid {
    stress_table(c"runs")
}

/// Whether the extension's tables are there (a DROP EXTENSION during a run removes them).
pub fn installed() -> bool {
    runs_table() != pg_sys::InvalidOid
}

/// The role that owns the `stress` tables, read from the catalog (no SQL, no search_path).
pub fn owner() -> pg_sys::Oid {
    let runs = runs_table();
    if runs == pg_sys::InvalidOid {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "pg_stress: stress.runs does not exist (was the extension dropped?)",
            "pg_stress",
        )
        .set_hint("CREATE EXTENSION pg_stress, or ALTER EXTENSION pg_stress UPDATE.")
        .report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return");
    }
    // SAFETY: a syscache lookup of a relation that exists, released below.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(runs),
        );
        if tuple.is_null() {
            pgrx::error!("pg_stress: cache lookup failed for stress.runs");
        }
        let form = pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_class;
        let owner = (*form).relowner;
        pg_sys::ReleaseSysCache(tuple);
        owner
    }
}

/// The role a record made now belongs to: the current user (after SET ROLE and SECURITY DEFINER).
pub fn caller() -> pg_sys::Oid {
    crate::postgres::backend::user()
}

/// Run `f` as the owner of the `stress` tables, with `search_path = pg_catalog, pg_temp` and in a
/// security-restricted operation; everything is restored when `f` returns or raises.
pub fn as_owner<T>(f: impl FnOnce() -> T) -> T {
    let owner = owner();
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: user and context are ours to fill; the GUC nest level opened here is closed by
    // restore (AtEOXact_GUC) on every path out, success or ERROR, as is the user id switched to the
    // owner's.
    let nest_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pg_sys::SetUserIdAndSecContext(
            owner,
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        level
    };
    // SAFETY: restores exactly what was saved above, once (committed or not).
    let restore = move |committed: bool| unsafe {
        pg_sys::AtEOXact_GUC(committed, nest_level);
        pg_sys::SetUserIdAndSecContext(user, context);
    };
    PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        let value = f();
        restore(true);
        value
    }))
    .catch_others(|error| {
        restore(false);
        error.rethrow()
    })
    .execute()
}

/// Whether `stress.<table>` has `column`: a database whose SQL is older than this library (before
/// ALTER EXTENSION pg_stress UPDATE) lacks the newer ones, and a statement naming them would fail.
/// From the catalog caches: no SQL, no SPI round trip per row written.
pub(crate) fn has_column(table: &std::ffi::CStr, column: &std::ffi::CStr) -> bool {
    let relation = stress_table(table);
    if relation == pg_sys::InvalidOid {
        return false;
    }
    // SAFETY: a syscache lookup by relation and name, in a transaction; a missing column is
    // InvalidAttrNumber, not an error.
    let attnum = unsafe { pg_sys::get_attnum(relation, column.as_ptr()) };
    attnum != pg_sys::InvalidAttrNumber as i16
}

/// A new run id from `stress.runs_id_seq` (which only the owner may use).
pub fn new_run_id() -> i64 {
    // (read-only SPI: nextval asks for a transaction id only when it writes the sequence's WAL,
    // once in 32 values; pgrx's Spi::get_one would take one every time)
    as_owner(|| {
        crate::postgres::spi_read::one::<i64>(
            "SELECT pg_catalog.nextval('stress.runs_id_seq'::pg_catalog.regclass)",
            &[],
        )
        .expect("allocating a run id")
        .expect("nextval gives a value")
    })
}

/// A timestamptz as a SQL argument.
pub(crate) fn timestamp(t: pg_sys::TimestampTz) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(t).expect("a valid time")
}
