//! Data generators: the trading model (what a row is), the table declarations, the bulk writer (how
//! rows reach the heap), and one SQL function per table.

pub mod accounts;
pub mod audit_log;
pub mod bulk;
pub mod dataset;
#[cfg(any(test, feature = "pg_test"))]
mod dataset_tests;
pub mod distribution;
pub mod market_data;
pub mod model;
pub mod orders;
pub mod parallel;
pub mod positions;
pub mod tables;
pub mod trades;

use crate::error::{OrRaise, StressError};
use crate::postgres::progress_notices::ProgressNotices;
use crate::postgres::quote::qualified;
use crate::records::{self, Measurement};
use bulk::{BulkWriter, IndexMode};
use pgrx::pg_sys;
use pgrx::prelude::*;
use tables::TableSpec;

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

/// The transaction-independent wall clock, as the start of a call.
pub fn now() -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(crate::postgres::backend::now()).expect("valid clock")
}

/// Record a generator call that wrote one table (see [`crate::metrics`]) and, when it was long,
/// say how it went in a NOTICE. Returns the run id.
pub fn record(
    kind: &str,
    parameters: serde_json::Value,
    started_at: TimestampWithTimeZone,
    schema: &str,
    table: &str,
    outcome: &WriteOutcome,
) -> i64 {
    let measurement = Measurement {
        name: format!("{schema}.{table}"),
        rows: Some(outcome.rows as i64),
        seconds: outcome.seconds,
        details: serde_json::json!({
            "first_id": outcome.first_id,
            "index_mode": format!("{:?}", outcome.index_mode).to_lowercase(),
            "index_build_seconds": outcome.index_build_seconds,
        }),
    };
    let run_id = records::completed_call(kind, parameters, started_at, &[measurement]);
    if outcome.was_long {
        notice!(
            "{kind}: {} rows in {:.1} s ({:.0} rows/s), run {run_id}",
            outcome.rows,
            outcome.seconds,
            outcome.rows as f64 / outcome.seconds.max(1e-9)
        );
    }
    run_id
}

/// ERROR 25006 in a read-only transaction or during recovery, naming `function`, as PostgreSQL's
/// own writing commands do.
/// How many accounts the rows may refer to when the caller did not say: the ids of `schema`'s
/// accounts table when there is one (its ids run from 1, as generate_accounts writes them), else
/// `default`. Appending orders to a dataset then refers to accounts that exist.
pub fn accounts_or_existing(schema: &str, accounts: Option<i64>, default: i64) -> i64 {
    if let Some(n) = accounts {
        return n;
    }
    Some(highest(schema, tables::ACCOUNTS.name, "id"))
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// The highest `column` of `schema.table` (a bigint), 0 when the table is missing or empty.
pub fn highest(schema: &str, table: &str, column: &str) -> i64 {
    let table = crate::postgres::quote::qualified(schema, table);
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT to_regclass($1) IS NOT NULL",
        &[table.as_str().into()],
    )
    .expect("looking for a table")
    .unwrap_or(false);
    if !exists {
        return 0;
    }
    Spi::get_one::<i64>(&format!(
        "SELECT max({}) FROM {table}",
        crate::postgres::quote::quote_ident(column)
    ))
    .expect("reading the highest id")
    .unwrap_or(0)
}

pub fn prevent_writes_where_read_only(function: &'static str) {
    let name = std::ffi::CString::new(format!("stress.{function}")).expect("no NUL in a name");
    // SAFETY: name is NUL-terminated and lives across both calls, which only read transaction state
    // and raise an ERROR when writes are not allowed.
    unsafe {
        pg_sys::PreventCommandIfReadOnly(name.as_ptr());
        pg_sys::PreventCommandDuringRecovery(name.as_ptr());
    }
}

/// One bulk write into a generated table, from open to commit-ready.
///
/// Opening locks the table SHARE ROW EXCLUSIVE for the rest of the transaction (readers go on, other
/// writers wait, so ids cannot collide and an index rebuild sees every row), checks what the executor
/// would check, and locks the tables its foreign keys reference in SHARE mode so the referenced rows
/// cannot go away before commit. Finishing rebuilds indexes when the table started empty and checks
/// every foreign key the generator does not guarantee by construction.
pub struct TableWrite {
    rel: pg_sys::Relation,
    relid: pg_sys::Oid,
    table: String,
    writer: BulkWriter,
    index_mode: IndexMode,
    progress: ProgressNotices,
    first_id: i64,
    /// Keyed by `id` (all but positions and market_data): new rows are `id >= first_id`.
    has_id: bool,
}

impl TableWrite {
    pub fn open(
        spec: &TableSpec,
        schema: &str,
        relid: pg_sys::Oid,
        expected_rows: u64,
        label: &'static str,
    ) -> Self {
        let display = format!("{schema}.{}", spec.name);
        let table = qualified(schema, spec.name);
        // Kind and privileges first, from the catalog: no lock on a relation we may not write.
        crate::postgres::privilege::check_bulk_target(relid, &display);
        let parents = referenced_tables(relid);
        for &parent in &parents {
            crate::postgres::privilege::require_share_lock(
                parent,
                &format!("referenced by {display}"),
            );
        }
        // SAFETY: in a transaction; the relation opened here under lock stays open in the Target
        // returned, which closes it in finish (or the transaction's abort does).
        unsafe {
            let rel = pg_sys::table_open(relid, pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE);
            // (again, now that it is locked: it cannot change any more)
            crate::postgres::privilege::check_bulk_target(relid, &display);
            check_can_write(rel, relid, &display);
            spec.check_shape(rel, &display).or_raise();
            for parent in parents {
                pg_sys::LockRelationOid(parent, pg_sys::ShareLock as pg_sys::LOCKMODE);
            }
            let has_id = spec.columns[0].name == "id";
            let first_id = if has_id {
                Spi::get_one::<i64>(&format!("SELECT coalesce(max(id), 0) + 1 FROM {table}"))
                    .expect("reading the highest id")
                    .unwrap_or(1)
            } else {
                1
            };
            if first_id.checked_add(expected_rows as i64).is_none() {
                StressError::invalid(
                    label,
                    "ids would overflow bigint",
                    "Truncate the table first.",
                )
                .raise();
            }
            // A table with no blocks and indexes we may rebuild: write the heap alone, then build
            // each index once, sorted. Otherwise maintain indexes row by row.
            let index_mode = if (*(*rel).rd_rel).relhasindex
                && bulk::has_no_blocks(rel)
                && crate::postgres::version::owns_relation(relid, pg_sys::GetUserId())
            {
                IndexMode::Rebuild
            } else {
                IndexMode::Maintain
            };
            TableWrite {
                rel,
                relid,
                table,
                writer: BulkWriter::new(rel, index_mode, crate::gucs::BATCH_SIZE.get() as usize),
                index_mode,
                progress: ProgressNotices::new(label, expected_rows),
                first_id,
                has_id,
            }
        }
    }

    /// The id the first written row gets (tables keyed by `id`): after the highest existing one.
    pub fn first_id(&self) -> i64 {
        self.first_id
    }

    /// Append one row; see [`BulkWriter::push`].
    #[inline]
    pub fn push(&mut self, fill: impl FnOnce(&mut [pg_sys::Datum], &mut [bool])) {
        if self.writer.push(fill) {
            self.progress.tick(self.writer.rows_written());
        }
    }

    /// Append one row formed by a generator worker; see [`BulkWriter::push_formed`].
    #[inline]
    pub fn push_tuple(&mut self, tuple: &[u8]) {
        if self.writer.push_formed(tuple) {
            self.progress.tick(self.writer.rows_written());
        }
    }

    /// The table's tuple descriptor (what workers form tuples with).
    pub fn tuple_desc(&self) -> pg_sys::TupleDesc {
        // SAFETY: rel is open for the Target's life (closed only by finish, which consumes it).
        unsafe { (*self.rel).rd_att }
    }

    /// schema.table, quoted as needed.
    pub fn display_name(&self) -> &str {
        &self.table
    }

    /// Write what is buffered, rebuild indexes if the table started empty, and validate foreign keys
    /// on `id >= first_id` except those on `trusted_columns`, whose values the generator took from
    /// rows it read under lock.
    pub fn finish(self, trusted_columns: &[&str]) -> WriteOutcome {
        let rows = self.writer.finish();
        // SAFETY: rel was opened by Target::open and is closed once, here; the lock is kept to the
        // transaction's end (NoLock).
        unsafe { pg_sys::table_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE) };
        let index_started = std::time::Instant::now();
        if self.index_mode == IndexMode::Rebuild && rows > 0 {
            Spi::run(&format!("REINDEX TABLE {}", self.table)).expect("rebuilding indexes");
        }
        let index_build_seconds = index_started.elapsed().as_secs_f64();
        if rows > 0 {
            let new_from = self.has_id.then_some(self.first_id);
            validate_foreign_keys(self.relid, &self.table, new_from, trusted_columns);
        }
        WriteOutcome {
            rows,
            first_id: self.first_id,
            seconds: self.progress.elapsed().as_secs_f64(),
            index_mode: self.index_mode,
            index_build_seconds,
            was_long: self.progress.was_long(),
        }
    }
}

impl parallel::RowSink for TableWrite {
    #[inline]
    fn push(&mut self, fill: impl FnOnce(&mut [pg_sys::Datum], &mut [bool])) {
        TableWrite::push(self, fill)
    }
}

/// Append `n` rows of `job` (an id-keyed generator) to `spec`'s table in `schema` (created when
/// missing) with ids after the table's highest, in this
/// backend from `rows` (`workers` = 1) or formed by that many background workers from `job` (which
/// makes the same `rows` in each): the data is the same.
pub fn write_id_rows<P: parallel::RowProducer + parallel::IdRows>(
    spec: &TableSpec,
    schema: &str,
    n: u64,
    label: &'static str,
    job: &P::Job,
    rows: &P,
    workers: usize,
) -> WriteOutcome {
    let relid = spec.ensure(schema, label);
    let mut write = TableWrite::open(spec, schema, relid, n, label);
    let first_id = write.first_id();
    if workers > 1 && n > 0 {
        let mut pool = parallel::Workers::launch::<P>(job, &write, workers, label);
        let chunk = parallel::id_chunk_rows(n, workers);
        let mut offset = 0;
        while offset < n {
            let count = chunk.min(n - offset);
            pool.submit(
                &parallel::ids_chunk(first_id + offset as i64, count),
                &mut write,
            );
            offset += count;
        }
        pool.finish(&mut write);
    } else {
        for id in first_id..first_id + n as i64 {
            write.push(|values, nulls| rows.fill(id, values, nulls));
        }
    }
    write.finish(&[])
}

/// Whether `table`'s `column` has a validated foreign key (so its values exist in the referenced table).
pub fn fk_holds_on(table: &str, column: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint c JOIN pg_attribute a
                          ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                        WHERE c.conrelid = $1::regclass AND c.contype = 'f' AND c.convalidated
                          AND cardinality(c.conkey) = 1 AND a.attname = $2)",
        &[table.into(), column.into()],
    )
    .expect("looking up a foreign key")
    .unwrap_or(false)
}

/// Tables that `relid`'s foreign keys reference.
fn referenced_tables(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT DISTINCT confrelid FROM pg_constraint WHERE conrelid = $1 AND contype = 'f'",
                None,
                &[relid.into()],
            )
            .map(|rows| rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten()).collect())
    })
    .expect("reading foreign keys")
}

/// Check the foreign keys of the rows just written (`id >= first_id`, or all rows of a table without
/// `id`, `first_id` None), as the RI triggers the bulk path does not fire would have: 23503 on the first violation.
fn validate_foreign_keys(
    relid: pg_sys::Oid,
    table: &str,
    first_id: Option<i64>,
    trusted_columns: &[&str],
) {
    // One row per foreign key: its name, the referenced table, and the join condition, all quoted by
    // PostgreSQL (format %I / regclass output).
    let checks: Vec<(String, String, String, String)> = Spi::connect(|client| {
        client
            .select(
                "SELECT c.conname::text, c.confrelid::regclass::text,
                        string_agg(format('p.%I = c.%I', pa.attname, ca.attname), ' AND ' ORDER BY k.i),
                        string_agg(ca.attname::text, ',' ORDER BY k.i)
                 FROM pg_constraint c,
                      unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(child, parent, i)
                      JOIN pg_attribute ca ON ca.attrelid = $1 AND ca.attnum = k.child
                      JOIN pg_attribute pa ON pa.attnum = k.parent
                 WHERE c.conrelid = $1 AND c.contype = 'f' AND pa.attrelid = c.confrelid
                 GROUP BY c.oid, c.conname, c.confrelid",
                None,
                &[relid.into()],
            )
            .map(|rows| {
                rows.map(|r| {
                    (
                        r.get::<String>(1).ok().flatten().unwrap_or_default(),
                        r.get::<String>(2).ok().flatten().unwrap_or_default(),
                        r.get::<String>(3).ok().flatten().unwrap_or_default(),
                        r.get::<String>(4).ok().flatten().unwrap_or_default(),
                    )
                })
                .collect()
            })
    })
    .expect("reading foreign keys");
    for (name, parent, condition, columns) in checks {
        if columns.split(',').all(|c| trusted_columns.contains(&c)) {
            continue;
        }
        let new_rows = first_id.map_or_else(String::new, |id| format!("c.id >= {id} AND "));
        let orphans = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM {table} c WHERE {new_rows} NOT EXISTS (SELECT 1 FROM {parent} p WHERE {condition})"
        ))
        .expect("checking a foreign key")
        .unwrap_or(0);
        if orphans > 0 {
            StressError::ForeignKeyViolation {
                message: format!(
                    "{orphans} generated rows of {table} violate foreign key constraint \"{name}\" ({columns} → {parent})"
                ),
                hint: "Generate the referenced table first, or pass ranges that exist there (e.g. accounts => the number of accounts).".into(),
            }
            .raise();
        }
    }
}

/// The bulk path opens the relation directly, so it must check what the executor would: INSERT
/// privilege, row-level security (which it cannot apply), and triggers (which it does not fire).
unsafe fn check_can_write(rel: pg_sys::Relation, relid: pg_sys::Oid, display: &str) {
    // SAFETY: rel is open (the caller's contract: Target::open holds it); privilege checks and
    // trigger reads of an open relation's descriptor.
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
        if let Some(trigger) = insert_trigger_we_would_skip(rel) {
            StressError::NotSupported {
                message: format!("{display} has INSERT trigger \"{trigger}\", which the bulk path does not fire"),
                hint: "Drop or disable the trigger (ALTER TABLE … DISABLE TRIGGER USER) while generating.".into(),
            }
            .raise();
        }
    }
}

/// The name of an enabled INSERT trigger other than a foreign key's check (those the write checks
/// itself, in bulk, after loading).
unsafe fn insert_trigger_we_would_skip(rel: pg_sys::Relation) -> Option<String> {
    // SAFETY: rel is open; its trigger descriptor, when not null, holds numtriggers triggers.
    unsafe {
        let trigdesc = (*rel).trigdesc;
        if trigdesc.is_null() {
            return None;
        }
        let triggers =
            std::slice::from_raw_parts((*trigdesc).triggers, (*trigdesc).numtriggers as usize);
        triggers
            .iter()
            .find(|t| {
                (t.tgtype as u32 & pg_sys::TRIGGER_TYPE_INSERT) != 0
                    && t.tgenabled as u8 != pg_sys::TRIGGER_DISABLED
                    && pg_sys::RI_FKey_trigger_type(t.tgfoid) != pg_sys::RI_TRIGGER_FK as i32
            })
            .map(|t| {
                std::ffi::CStr::from_ptr(t.tgname)
                    .to_string_lossy()
                    .into_owned()
            })
    }
}
