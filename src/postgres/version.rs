//! What differs between the PostgreSQL majors pg_stress builds for (15, 16, 17, 18): each
//! difference once, behind `cfg(feature = "pgNN")`, so that capability code calls one function on
//! every version.

use pgrx::pg_sys;

/// Whether the server describes its wait events in the `pg_wait_events` view (17 and later).
pub const WAIT_EVENTS_VIEW: bool = cfg!(not(any(feature = "pg15", feature = "pg16")));

/// Whether `user` owns relation `relid` (`pg_class_ownercheck` until 15; `object_ownercheck` since).
pub fn owns_relation(relid: pg_sys::Oid, user: pg_sys::Oid) -> bool {
    #[cfg(feature = "pg15")]
    // SAFETY: a catalog lookup of a relation id for a role; a missing relation is an ERROR
    // PostgreSQL raises, not undefined behaviour.
    unsafe {
        pg_sys::pg_class_ownercheck(relid, user)
    }
    #[cfg(not(feature = "pg15"))]
    // SAFETY: as above (the same check, by catalog and object id).
    unsafe {
        pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, user)
    }
}

/// Whether `rel` was created, or given a new relfilenode, in this transaction (the field was
/// renamed for relfilelocators in 16).
///
/// # Safety
/// `rel` is an open relation.
pub unsafe fn new_in_this_transaction(rel: pg_sys::Relation) -> bool {
    // SAFETY: the caller's contract: rel is open, its fields readable.
    unsafe {
        #[cfg(feature = "pg15")]
        let first = (*rel).rd_firstRelfilenodeSubid;
        #[cfg(not(feature = "pg15"))]
        let first = (*rel).rd_firstRelfilelocatorSubid;
        (*rel).rd_createSubid != 0 || first != 0
    }
}

/// The index entries of a heap tuple just inserted from `slot` (16 added `onlySummarizing`: false,
/// every index).
///
/// # Safety
/// As for `ExecInsertIndexTuples`: `result_rel` has its indexes open, `slot` holds the tuple.
pub unsafe fn insert_index_tuples(
    result_rel: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
) {
    // SAFETY: the caller's contract.
    unsafe {
        #[cfg(feature = "pg15")]
        pg_sys::ExecInsertIndexTuples(
            result_rel,
            slot,
            estate,
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        #[cfg(not(feature = "pg15"))]
        pg_sys::ExecInsertIndexTuples(
            result_rel,
            slot,
            estate,
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            false,
        );
    }
}

/// The first of a tuple descriptor's attributes, which follow it in one array (18 put a compact
/// array before them: `TupleDescAttr`).
///
/// # Safety
/// `desc` is a valid tuple descriptor.
pub unsafe fn tuple_desc_attrs(desc: pg_sys::TupleDesc) -> *mut pg_sys::FormData_pg_attribute {
    // SAFETY: the caller's contract.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        let first = (*desc).attrs.as_mut_ptr();
        #[cfg(feature = "pg18")]
        let first = pg_sys::TupleDescAttr(desc, 0);
        first
    }
}

/// After a template descriptor's attributes were written through [`tuple_desc_attrs`]: 18 keeps a
/// compact copy of each, which must be filled in from them (nothing to do before 18).
///
/// # Safety
/// `desc` is a valid tuple descriptor whose attributes are all written.
pub unsafe fn attributes_written(desc: pg_sys::TupleDesc) {
    #[cfg(feature = "pg18")]
    // SAFETY: the caller's contract: every attribute 0..natts is written.
    unsafe {
        for i in 0..(*desc).natts {
            pg_sys::populate_compact_attribute(desc, i);
        }
    }
    #[cfg(not(feature = "pg18"))]
    let _ = desc;
}

/// Set this process's handler of `signal` (`pqsignal`, named `pqsignal_be` in a backend in 18).
///
/// # Safety
/// As for `pqsignal`: `handler` is async-signal-safe.
pub unsafe fn set_signal_handler(
    signal: std::ffi::c_int,
    handler: unsafe extern "C-unwind" fn(std::ffi::c_int),
) {
    // SAFETY: the caller's contract.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        pg_sys::pqsignal(signal, Some(handler));
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(signal, Some(handler));
    }
}

/// A wait event set for `events` events that outlives any transaction: freed only by
/// `FreeWaitEventSet` (before 17 it takes a memory context, here TopMemoryContext; from 17 a
/// resource owner, here none).
///
/// # Safety
/// In a backend; the caller frees the set once, with FreeWaitEventSet.
pub unsafe fn long_lived_wait_event_set(events: std::ffi::c_int) -> *mut pg_sys::WaitEventSet {
    // SAFETY: the caller's contract; TopMemoryContext lives as long as the process.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        let set = pg_sys::CreateWaitEventSet(pg_sys::TopMemoryContext, events);
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        let set = pg_sys::CreateWaitEventSet(std::ptr::null_mut(), events);
        set
    }
}
