//! Who may do what, checked before anything is locked or started.
//!
//! - Starting background workers needs the EXECUTE privilege on `stress.run_load`, which PUBLIC does
//!   not have (a DBA grants it: SECURITY.md). Every path that starts workers asks here first.
//! - A relation a caller names (or `stress.data_schema` points to) is checked for its kind and the
//!   caller's privilege before it is locked: a role must not stall the writers of a table it may
//!   not write by making pg_stress lock it.

use crate::error::StressError;
use pgrx::pg_sys;

/// ERROR 42501 unless the current user may start background workers (EXECUTE on stress.run_load).
pub fn require_worker_grant(function: &str) {
    let allowed = super::spi_read::one::<bool>(
        "SELECT pg_catalog.bool_or(pg_catalog.has_function_privilege(p.oid, 'EXECUTE'))
         FROM pg_catalog.pg_proc p
         WHERE p.proname OPERATOR(pg_catalog.=) 'run_load'
           AND p.pronamespace OPERATOR(pg_catalog.=) 'stress'::pg_catalog.regnamespace",
        &[],
    )
    .expect("checking the right to start workers")
    .unwrap_or(false);
    if !allowed {
        StressError::PermissionDenied {
            message: format!("{function}: permission denied to start background workers"),
            hint: "Starting pg_stress workers needs EXECUTE on stress.run_load; a superuser can \
                   grant it: GRANT EXECUTE ON FUNCTION stress.run_load, stress.simulate_trading_day TO role_name; \
                   GRANT EXECUTE ON PROCEDURE stress.run_load_proc, stress.simulate_trading_day_proc, stress.ramp, \
                   stress.deadlock_test, stress.find_optimal_pool_size, stress.find_capacity TO role_name;"
                .into(),
        }
        .raise();
    }
}

/// The relation `relid` as pg_stress's bulk path may write it: a plain, permanent or unlogged heap
/// table that is not a partition, which the current user may INSERT into. Checked from the catalog
/// before any lock is taken; 42809 for another kind of relation, 0A000 for a partition or another
/// access method, 42501 without the privilege.
pub fn check_bulk_target(relid: pg_sys::Oid, display: &str) {
    let (relkind, relam, is_partition) = relation_form(relid, display);
    if relkind != pg_sys::RELKIND_RELATION {
        StressError::WrongKind {
            message: format!("{display} is a {}, not a table", kind_name(relkind)),
            hint: "pg_stress writes generated rows into plain tables only: drop or rename it, or point stress.data_schema at another schema.".into(),
        }
        .raise();
    }
    if relam != pg_sys::HEAP_TABLE_AM_OID {
        StressError::NotSupported {
            message: format!("{display} does not use the heap access method"),
            hint: "pg_stress writes with the heap's bulk insert; generate into a heap table (the default).".into(),
        }
        .raise();
    }
    if is_partition {
        StressError::NotSupported {
            message: format!("{display} is a partition"),
            hint: "The bulk path cannot route rows or check a partition's bounds: generate into a plain table, then attach it or INSERT … SELECT into the partitioned table.".into(),
        }
        .raise();
    }
    require(relid, pg_sys::ACL_INSERT, display);
}

/// ERROR 42501 unless the current user has `privilege` (ACL_*) on relation `relid` (or owns it).
pub fn require(relid: pg_sys::Oid, privilege: u32, display: &str) {
    // SAFETY: an ACL check of a relation id for the current user; a relation that has gone is an
    // ERROR PostgreSQL raises, not undefined behaviour.
    let acl = unsafe {
        pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), privilege as pg_sys::AclMode)
    };
    if acl != pg_sys::AclResult::ACLCHECK_OK {
        StressError::PermissionDenied {
            message: format!("permission denied for table {display}"),
            hint: "pg_stress acts with your own privileges on the tables it reads and writes."
                .into(),
        }
        .raise();
    }
}

/// ERROR 42501 unless the current user could `LOCK TABLE relid IN SHARE MODE` itself (UPDATE,
/// DELETE or TRUNCATE, as PostgreSQL asks for locks stronger than ROW EXCLUSIVE).
pub fn require_share_lock(relid: pg_sys::Oid, display: &str) {
    let mask = (pg_sys::ACL_UPDATE | pg_sys::ACL_DELETE | pg_sys::ACL_TRUNCATE) as pg_sys::AclMode;
    // SAFETY: as above, for a mask of privileges.
    let has = unsafe {
        pg_sys::pg_class_aclmask(
            relid,
            pg_sys::GetUserId(),
            mask,
            pg_sys::AclMaskHow::ACLMASK_ANY,
        )
    };
    if has == 0 {
        StressError::PermissionDenied {
            message: format!("permission denied to lock table {display} in SHARE mode"),
            hint: "pg_stress keeps the rows it reads from changing while it writes rows that refer to them; that needs UPDATE, DELETE or TRUNCATE on the table, as LOCK TABLE … IN SHARE MODE does.".into(),
        }
        .raise();
    }
}

/// A relation pg_stress scans itself (checksum, positions' read of trades): a table or materialized
/// view with the heap access method; 42809 / 0A000 otherwise. (Kind only: the callers check SELECT,
/// column privileges and row-level security with `integrity::check_can_read`.)
pub fn check_scan_source(relid: pg_sys::Oid, display: &str) {
    let (relkind, relam, _) = relation_form(relid, display);
    if relkind != pg_sys::RELKIND_RELATION && relkind != pg_sys::RELKIND_MATVIEW {
        StressError::WrongKind {
            message: format!("{display} is a {}, not a table", kind_name(relkind)),
            hint: "pg_stress reads the heap of tables and materialized views only.".into(),
        }
        .raise();
    }
    if relam != pg_sys::HEAP_TABLE_AM_OID {
        StressError::NotSupported {
            message: format!("{display} does not use the heap access method"),
            hint: "pg_stress reads heap tables only.".into(),
        }
        .raise();
    }
}

/// relkind, access method and relispartition of `relid`, from the syscache (no lock).
fn relation_form(relid: pg_sys::Oid, display: &str) -> (u8, pg_sys::Oid, bool) {
    // SAFETY: a syscache lookup by oid, checked for null, read and released before returning
    // (StressError raises only after the release or when nothing was found).
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(relid),
        );
        if tuple.is_null() {
            StressError::invalid(
                "generate",
                format!("{display} does not exist any more"),
                "Run the call again.",
            )
            .raise();
        }
        let form = pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_class;
        let out = ((*form).relkind as u8, (*form).relam, (*form).relispartition);
        pg_sys::ReleaseSysCache(tuple);
        out
    }
}

fn kind_name(relkind: u8) -> &'static str {
    match relkind {
        pg_sys::RELKIND_VIEW => "view",
        pg_sys::RELKIND_MATVIEW => "materialized view",
        pg_sys::RELKIND_PARTITIONED_TABLE => "partitioned table",
        pg_sys::RELKIND_FOREIGN_TABLE => "foreign table",
        pg_sys::RELKIND_SEQUENCE => "sequence",
        pg_sys::RELKIND_INDEX | pg_sys::RELKIND_PARTITIONED_INDEX => "index",
        pg_sys::RELKIND_COMPOSITE_TYPE => "composite type",
        _ => "relation of another kind",
    }
}
