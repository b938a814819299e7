//! One table read by several processes with PostgreSQL's own parallel machinery: the parallel
//! context behind parallel sequential scans and parallel index builds, and its block-range
//! parallel heap scan. A capability implements [`ParallelScan`] (what one participant computes
//! from its share of the rows) and exports a worker entry point that calls [`worker_main`]; this
//! module names no capability.
//!
//! Why PostgreSQL's workers and not pg_stress's own (as generation uses): a reader must see the
//! caller's snapshot, its uncommitted rows and its role, and must share its table lock. A parallel
//! context gives each worker exactly that: the leader's transaction state, snapshot, user and
//! security context, GUCs and lock group. A worker's ERROR is raised again in the leader, and the
//! leader's ERROR or cancel ends the workers (transaction abort destroys the context), so a call
//! fails as a whole and leaves nothing behind.
//!
//! The degree follows the planner's rule for a parallel sequential scan of the same table (its
//! `parallel_workers` storage parameter, else one more worker each time the table triples past
//! `min_parallel_table_scan_size`, at most `max_parallel_workers_per_gather`), and the leader
//! always takes part, so the work gets done when no worker can be launched.

use pgrx::PgRelation;
use pgrx::pg_sys;
use std::ffi::CStr;

/// What one participant (the leader or a worker) computes from its share of a table's rows.
pub trait ParallelScan {
    /// One participant's result: plain data, copied through shared memory.
    type Partial: Copy + Default;
    /// The exported `extern "C-unwind" fn(*mut dsm_segment, *mut shm_toc)` that calls
    /// [`worker_main::<Self>`].
    const ENTRY_POINT: &'static CStr;
    /// Read the rows `scan` hands out. `scanned` is the relation read, `logical` the one whose
    /// shape the result is in (the same relation, or a partition's parent).
    ///
    /// # Safety
    /// `scan` is an open scan of `scanned`.
    unsafe fn scan(
        scanned: &PgRelation,
        logical: &PgRelation,
        scan: pg_sys::TableScanDesc,
    ) -> Self::Partial;
}

const KEY_HEADER: u64 = 0x5053_0001;
const KEY_SCAN: u64 = 0x5053_0002;
const KEY_RESULTS: u64 = 0x5053_0003;

#[repr(C)]
struct Header {
    scanned: pg_sys::Oid,
    logical: pg_sys::Oid,
}

/// A worker's result and whether it was written.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Slot<P: Copy + Default> {
    partial: P,
    written: bool,
}

/// How many workers the planner would give a parallel sequential scan of `rel`, under the current
/// settings; 0 where parallel workers cannot help or cannot be used.
pub fn planned_workers(rel: &PgRelation) -> usize {
    // SAFETY: reads of GUC variables and of rel's pg_class form, which is open (the caller holds a
    // PgRelation); IsInParallelMode only reads transaction state.
    unsafe {
        let cap = pg_sys::max_parallel_workers_per_gather;
        // Already in a parallel operation (called from a parallel query's worker, say), in
        // single-user mode, or a temporary table, whose buffers are this backend's own.
        if cap <= 0
            || pg_sys::IsInParallelMode()
            || !pg_sys::IsUnderPostmaster
            || (*rel.rd_rel).relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP
        {
            return 0;
        }
        let options = rel.rd_options as *const pg_sys::StdRdOptions;
        let storage_parameter = if options.is_null() {
            -1
        } else {
            (*options).parallel_workers
        };
        let workers = if storage_parameter >= 0 {
            storage_parameter as usize
        } else {
            let pages = pg_sys::RelationGetNumberOfBlocksInFork(
                rel.as_ptr(),
                pg_sys::ForkNumber::MAIN_FORKNUM,
            ) as u64;
            workers_for_pages(pages, pg_sys::min_parallel_table_scan_size.max(0) as u64)
        };
        workers.min(cap as usize)
    }
}

/// The planner's rule (`compute_parallel_worker` in allpaths.c) for a table of `pages` blocks.
pub fn workers_for_pages(pages: u64, min_pages: u64) -> usize {
    if pages < min_pages {
        return 0;
    }
    let mut threshold = min_pages.max(1);
    let mut workers = 1;
    while pages >= threshold * 3 {
        workers += 1;
        threshold *= 3;
    }
    workers
}

/// Every participant's result (the leader's first) for a scan of `scanned` by the leader and up
/// to `workers` parallel workers, under a snapshot that sees what this transaction wrote so far;
/// and how many workers were launched.
///
/// # Safety
/// `scanned` has storage and is locked ACCESS SHARE; not in parallel mode.
pub unsafe fn run<S: ParallelScan>(
    scanned: &PgRelation,
    logical: &PgRelation,
    workers: usize,
) -> (Vec<S::Partial>, usize) {
    // SAFETY: in a transaction, not in parallel mode (planned_workers gave a degree above 0 only
    // then); the parallel context is created, launched, waited for and destroyed on this path,
    // parallel mode exited and the snapshot popped before returning (an ERROR tears the context
    // down with the transaction, as for a parallel query).
    unsafe {
        super::scan::push_statement_snapshot();
        let snapshot = pg_sys::GetActiveSnapshot();
        pg_sys::EnterParallelMode();
        let pcxt = pg_sys::CreateParallelContext(
            c"$libdir/pg_stress".as_ptr(),
            S::ENTRY_POINT.as_ptr(),
            workers as i32,
        );
        let scan_bytes = pg_sys::table_parallelscan_estimate(scanned.as_ptr(), snapshot);
        let results_bytes = size_of::<Slot<S::Partial>>() * workers.max(1);
        for bytes in [size_of::<Header>(), scan_bytes, results_bytes] {
            // shm_toc_estimate_chunk and shm_toc_estimate_keys are macros
            (*pcxt).estimator.space_for_chunks += buffer_align(bytes);
            (*pcxt).estimator.number_of_keys += 1;
        }
        pg_sys::InitializeParallelDSM(pcxt);
        // (without a segment, InitializeParallelDSM falls back to private memory and no workers)
        let toc = (*pcxt).toc;
        let header = pg_sys::shm_toc_allocate(toc, size_of::<Header>()).cast::<Header>();
        header.write(Header {
            scanned: scanned.oid(),
            logical: logical.oid(),
        });
        let pscan =
            pg_sys::shm_toc_allocate(toc, scan_bytes).cast::<pg_sys::ParallelTableScanDescData>();
        pg_sys::table_parallelscan_initialize(scanned.as_ptr(), pscan, snapshot);
        let slots = pg_sys::shm_toc_allocate(toc, results_bytes).cast::<Slot<S::Partial>>();
        for i in 0..workers.max(1) {
            slots.add(i).write(Slot::default());
        }
        pg_sys::shm_toc_insert(toc, KEY_HEADER, header.cast());
        pg_sys::shm_toc_insert(toc, KEY_SCAN, pscan.cast());
        pg_sys::shm_toc_insert(toc, KEY_RESULTS, slots.cast());

        pg_sys::LaunchParallelWorkers(pcxt);
        let launched = (*pcxt).nworkers_launched.max(0) as usize;
        let scan = pg_sys::table_beginscan_parallel(scanned.as_ptr(), pscan);
        let mut partials = vec![S::scan(scanned, logical, scan)];
        pg_sys::table_endscan(scan);
        // Raises a worker's ERROR here, if one failed.
        pg_sys::WaitForParallelWorkersToFinish(pcxt);
        for i in 0..launched {
            let slot = slots.add(i).read();
            // A worker that failed raised its ERROR above; one that finished wrote its slot.
            if !slot.written {
                pgrx::error!("parallel worker {i} finished without a result");
            }
            partials.push(slot.partial);
        }
        pg_sys::DestroyParallelContext(pcxt);
        pg_sys::ExitParallelMode();
        pg_sys::PopActiveSnapshot();
        (partials, launched)
    }
}

/// A worker's body: read its share of the scan and leave the result for the leader.
///
/// # Safety
/// Called from the entry point of `S`, with the arguments PostgreSQL passed it.
pub unsafe fn worker_main<S: ParallelScan>(
    _seg: *mut pg_sys::dsm_segment,
    toc: *mut pg_sys::shm_toc,
) {
    // SAFETY: the caller's contract: called by PostgreSQL as a parallel worker's entry point, with
    // the segment and table of contents our leader filled in (the keys below, written before
    // launch); the leader holds the relation's lock for the worker's life.
    unsafe {
        let header = pg_sys::shm_toc_lookup(toc, KEY_HEADER, false)
            .cast::<Header>()
            .read();
        let pscan = pg_sys::shm_toc_lookup(toc, KEY_SCAN, false)
            .cast::<pg_sys::ParallelTableScanDescData>();
        let slots = pg_sys::shm_toc_lookup(toc, KEY_RESULTS, false).cast::<Slot<S::Partial>>();
        // The leader holds these locks; a worker is in its lock group, so this cannot wait.
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let scanned = PgRelation::with_lock(header.scanned, lock);
        let logical = PgRelation::with_lock(header.logical, lock);
        let scan = pg_sys::table_beginscan_parallel(scanned.as_ptr(), pscan);
        let partial = S::scan(&scanned, &logical, scan);
        pg_sys::table_endscan(scan);
        slots
            .add(pg_sys::ParallelWorkerNumber as usize)
            .write(Slot {
                partial,
                written: true,
            });
    }
}

/// BUFFERALIGN: shared memory chunks are aligned to 32 bytes.
fn buffer_align(bytes: usize) -> usize {
    bytes.next_multiple_of(32)
}

#[cfg(test)]
mod tests {
    use super::workers_for_pages;

    #[test]
    fn the_planners_rule_for_a_sequential_scan() {
        // min_parallel_table_scan_size = 8MB = 1024 pages
        assert_eq!(workers_for_pages(1023, 1024), 0);
        assert_eq!(workers_for_pages(1024, 1024), 1);
        assert_eq!(workers_for_pages(3071, 1024), 1);
        assert_eq!(workers_for_pages(3072, 1024), 2);
        assert_eq!(workers_for_pages(11_902, 1024), 3); // 1M orders
        assert_eq!(workers_for_pages(119_000, 1024), 5); // 10M orders
        assert_eq!(workers_for_pages(0, 0), 1);
    }
}
