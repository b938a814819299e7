//! Data generators: the trading model (what a row is), the table declarations, the bulk writer (how
//! rows reach the heap), and one SQL function per table.

pub mod bulk;
pub mod model;
mod orders;
pub mod tables;

use crate::error::{OrRaise, StressError};
use crate::progress::Progress;
use crate::sql_util::qualified;
use bulk::{BulkWriter, IndexMode};
use pgrx::pg_sys;
use pgrx::prelude::*;
use tables::TableSpec;

/// Most rows one call may generate: beyond this a single transaction gets unwieldy (hours of work,
/// hundreds of GB of WAL that a cancel would throw away); generate more in several calls.
pub const MAX_ROWS_PER_CALL: i64 = 1_000_000_000;

/// What one table write did.
pub struct WriteOutcome {
    pub rows: u64,
    pub first_id: i64,
    pub seconds: f64,
    pub index_mode: IndexMode,
    pub index_build_seconds: f64,
    /// Long enough (one progress interval) to deserve a summary NOTICE.
    pub was_long: bool,
}

/// A seed the caller gave, or a fresh one (recorded in `stress.runs` so the data can be made again).
pub fn seed_or_random(seed: Option<i64>) -> i64 {
    seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        (nanos ^ (unsafe { pg_sys::MyProcPid } as u64).rotate_left(32)) as i64 & i64::MAX
    })
}

/// Validate a row count argument.
pub fn row_count(function: &'static str, n: Option<i64>) -> Result<u64, StressError> {
    match n {
        None => Err(StressError::invalid(
            function,
            "n must not be NULL",
            "Pass the number of rows to generate, e.g. 1000000.",
        )),
        Some(n) if n < 0 => Err(StressError::invalid(
            function,
            format!("n must not be negative, got {n}"),
            "Pass the number of rows to generate, e.g. 1000000.",
        )),
        Some(n) if n > MAX_ROWS_PER_CALL => Err(StressError::invalid(
            function,
            format!("n = {n} is more than {MAX_ROWS_PER_CALL} rows in one call"),
            "Generate larger sets in several calls; each appends after the highest id.",
        )),
        Some(n) => Ok(n as u64),
    }
}

/// Append `n` rows to the table `spec` (already created, oid `relid`) in `schema`. `fill(id, values,
/// nulls)` sets one row's datums. Ids continue after the table's highest id.
///
/// The table is locked SHARE ROW EXCLUSIVE for the rest of the transaction: readers go on, other
/// writers wait, so ids cannot collide and an index rebuild sees every row.
pub fn write_rows(
    spec: &TableSpec,
    schema: &str,
    relid: pg_sys::Oid,
    n: u64,
    label: &'static str,
    mut fill: impl FnMut(i64, &mut [pg_sys::Datum], &mut [bool]),
) -> WriteOutcome {
    let display = format!("{schema}.{}", spec.name);
    let table = qualified(schema, spec.name);
    let mut progress = Progress::new(label, n);
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE);
        check_can_write(rel, relid, &display);
        spec.check_shape(rel, &display).or_raise();

        let first_id =
            Spi::get_one::<i64>(&format!("SELECT coalesce(max(id), 0) + 1 FROM {table}"))
                .expect("reading the highest id")
                .unwrap_or(1);
        if first_id.checked_add(n as i64).is_none() {
            StressError::invalid(
                label,
                "ids would overflow bigint",
                "Truncate the table first.",
            )
            .raise();
        }
        // A table with no blocks and indexes we may rebuild: write the heap alone, then build each
        // index once, sorted. Otherwise maintain indexes row by row.
        let has_indexes = (*(*rel).rd_rel).relhasindex;
        let index_mode = if has_indexes
            && bulk::has_no_blocks(rel)
            && pg_sys::pg_class_ownercheck(relid, pg_sys::GetUserId())
        {
            IndexMode::Rebuild
        } else {
            IndexMode::Maintain
        };

        let batch = crate::gucs::BATCH_SIZE.get() as usize;
        let mut writer = BulkWriter::new(rel, index_mode, batch);
        for id in first_id..first_id + n as i64 {
            writer.push(|values, nulls| fill(id, values, nulls));
            if ((id - first_id) as usize).is_multiple_of(batch) {
                progress.tick(writer.rows_written());
            }
        }
        let rows = writer.finish();
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);

        let index_started = std::time::Instant::now();
        if index_mode == IndexMode::Rebuild && rows > 0 {
            Spi::run(&format!("REINDEX TABLE {table}")).expect("rebuilding indexes");
        }
        WriteOutcome {
            rows,
            first_id,
            seconds: progress.elapsed().as_secs_f64(),
            index_mode,
            index_build_seconds: index_started.elapsed().as_secs_f64(),
            was_long: progress.was_long(),
        }
    }
}

/// The bulk path opens the relation directly, so it must check what the executor would: INSERT
/// privilege, row-level security (which it cannot apply), and triggers (which it does not fire).
unsafe fn check_can_write(rel: pg_sys::Relation, relid: pg_sys::Oid, display: &str) {
    unsafe {
        let user = pg_sys::GetUserId();
        let acl = pg_sys::pg_class_aclcheck(relid, user, pg_sys::ACL_INSERT as pg_sys::AclMode);
        if acl != pg_sys::AclResult::ACLCHECK_OK {
            pg_sys::aclcheck_error(
                acl,
                pg_sys::ObjectType::OBJECT_TABLE,
                (*(*rel).rd_rel).relname.data.as_ptr(),
            );
        }
        if pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            StressError::NotSupported {
                message: format!("row-level security is enabled on {display} for this role"),
                hint: "pg_stress writes through the bulk path, which cannot apply policies: disable RLS on the table or generate as a role that bypasses it.".into(),
            }
            .raise();
        }
        if !(*rel).trigdesc.is_null() {
            StressError::NotSupported {
                message: format!("{display} has triggers, which the bulk path does not fire"),
                hint: "Drop or disable the triggers (ALTER TABLE … DISABLE TRIGGER USER) while generating.".into(),
            }
            .raise();
        }
    }
}
