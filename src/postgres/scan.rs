//! Reading a table's heap directly, for the passes that are faster without the executor (checksum,
//! positions). Callers check privileges and row-level security first.

use pgrx::PgMemoryContexts;
use pgrx::pg_sys;

/// Call `each(values, nulls)` for every row of `rel` visible to the current statement, including
/// rows this transaction wrote earlier in the same statement (a generator's output, say). Memory
/// that `each` allocates is reclaimed every few thousand rows; cancellation is honoured there too.
///
/// # Safety
/// `rel` must be an open relation with storage, locked at least ACCESS SHARE.
pub unsafe fn for_each_row(rel: pg_sys::Relation, each: impl FnMut(&[pg_sys::Datum], &[bool])) {
    // SAFETY: the caller's contract: rel is open and locked; the snapshot pushed here is popped
    // below, and the scan begun is ended, before returning (an ERROR aborts both with the
    // transaction).
    unsafe {
        // A parallel worker may not advance the command counter; it only ever reads.
        let own_snapshot = !pg_sys::IsInParallelMode();
        if own_snapshot {
            push_statement_snapshot();
        }
        let scan =
            pg_sys::table_beginscan(rel, pg_sys::GetActiveSnapshot(), 0, std::ptr::null_mut());
        for_each_row_of(scan, each);
        pg_sys::table_endscan(scan);
        if own_snapshot {
            pg_sys::PopActiveSnapshot();
        }
    }
}

/// Make the rows this transaction wrote so far visible and push a snapshot that sees them, as the
/// active snapshot (pop it with `PopActiveSnapshot`).
///
/// # Safety
/// Not in parallel mode; inside a transaction.
pub unsafe fn push_statement_snapshot() {
    // SAFETY: the caller's contract: in a transaction, not in parallel mode, where the command
    // counter may advance and a snapshot be pushed.
    unsafe {
        pg_sys::CommandCounterIncrement();
        let active = pg_sys::GetActiveSnapshot();
        pg_sys::PushCopiedSnapshot(if active.is_null() {
            pg_sys::GetTransactionSnapshot()
        } else {
            active
        });
        pg_sys::UpdateActiveSnapshotCommandId();
    }
}

/// [`for_each_row`] over a scan already begun (one participant's share of a parallel scan, say).
///
/// # Safety
/// `scan` must be an open scan of a relation with storage.
pub unsafe fn for_each_row_of(
    scan: pg_sys::TableScanDesc,
    mut each: impl FnMut(&[pg_sys::Datum], &[bool]),
) {
    // SAFETY: the caller's contract: scan is open; the slot made for its relation is dropped below,
    // and values and nulls are read only up to the tuple descriptor's natts after slot_getallattrs
    // filled them.
    unsafe {
        let rel = (*scan).rs_rd;
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        let natts = (*(*rel).rd_att).natts as usize;
        let row_memory = PgMemoryContexts::new("pg_stress row");
        let mut rows = 0u64;
        while pg_sys::table_scan_getnextslot(
            scan,
            pg_sys::ScanDirection::ForwardScanDirection,
            slot,
        ) {
            pg_sys::slot_getallattrs(slot);
            let values = std::slice::from_raw_parts((*slot).tts_values, natts);
            let nulls = std::slice::from_raw_parts((*slot).tts_isnull, natts);
            let outer = pg_sys::MemoryContextSwitchTo(row_memory.value());
            each(values, nulls);
            pg_sys::MemoryContextSwitchTo(outer);
            rows += 1;
            if rows.is_multiple_of(4096) {
                pg_sys::MemoryContextReset(row_memory.value());
                pg_sys::check_for_interrupts!();
            }
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
}
