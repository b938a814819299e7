//! Integrity: content checksums of tables; checks of a schema's data and captured states (`state`).

pub mod checksum;

use crate::error::StressError;
use checksum::{ColumnEncoder, Digest, RowEncoder};
use pgrx::PgRelation;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// An order-independent digest of every row of a table, partitioned table or materialized view, as
/// `rows:hex`. Equal after pg_dump/pg_restore, CLUSTER or VACUUM FULL; different when any value
/// changes. Reads as the caller: needs SELECT on the relation.
pub fn checksum(rel: PgRelation) -> String {
    table_digest(&rel).to_string()
}

/// Digest of `rel` under the active snapshot, after the checks a SELECT would make.
pub fn table_digest(rel: &PgRelation) -> Digest {
    let display = relation_display_name(rel);
    // SAFETY: rel is open (a PgRelation); its pg_class form is read, not kept.
    let relkind = unsafe { (*rel.rd_rel).relkind } as u8;
    let readable = matches!(
        relkind,
        pg_sys::RELKIND_RELATION | pg_sys::RELKIND_MATVIEW | pg_sys::RELKIND_PARTITIONED_TABLE
    );
    if !readable {
        StressError::WrongObjectType(display).raise();
    }
    // SAFETY: rel is open and locked by the caller (checksum opens it with ACCESS SHARE).
    unsafe { check_can_read(rel, &display) };
    // SAFETY: as above.
    if relkind == pg_sys::RELKIND_MATVIEW && !unsafe { (*rel.rd_rel).relispopulated } {
        StressError::NotPopulated(display).raise();
    }
    if relkind == pg_sys::RELKIND_PARTITIONED_TABLE {
        // A SELECT on the parent checks privileges on the parent only; do the same.
        let leaves = Spi::connect(|client| {
            client
                .select(
                    "SELECT relid::oid FROM pg_partition_tree($1) WHERE isleaf AND relid <> $1",
                    None,
                    &[rel.oid().into()],
                )
                .map(|rows| {
                    rows.map(|r| r.get::<pg_sys::Oid>(1).ok().flatten())
                        .collect::<Vec<_>>()
                })
        })
        .expect("listing partitions");
        let mut digest = Digest::default();
        for leaf in leaves.into_iter().flatten() {
            // A foreign table or one of another access method has no heap to read: refused, and
            // before the lock.
            crate::postgres::privilege::check_scan_source(
                leaf,
                &format!("partition {leaf} of {display}"),
            );
            let part =
                // SAFETY: leaf is a partition of rel, listed just above; opened with ACCESS SHARE,
                // as a SELECT on the parent would lock it, and closed when part drops.
                unsafe { PgRelation::with_lock(leaf, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
            // SAFETY: part is open and locked; rel is its open parent.
            digest.merge(unsafe { scan_digest(&part, rel) });
        }
        digest
    } else {
        crate::postgres::privilege::check_scan_source(rel.oid(), &display);
        // SAFETY: rel is open and locked, its privileges checked just above.
        unsafe { scan_digest(rel, rel) }
    }
}

/// Digest of `scanned`'s rows, hashed with `logical`'s live columns (the same relation, or the
/// partitioned parent, whose column order a partition's rows are hashed in). Large tables are read
/// by parallel workers as a parallel sequential scan of the same table would be; the digest is a
/// sum, so it is the same whatever the degree.
unsafe fn scan_digest(scanned: &PgRelation, logical: &PgRelation) -> Digest {
    // SAFETY: the caller's contract: both relations open and locked; the encoder reads their
    // descriptors.
    let mut rows = unsafe { row_encoder(scanned, logical) };
    let workers = if rows.parallel_safe() {
        crate::postgres::parallel_scan::planned_workers(scanned)
    } else {
        0
    };
    let mut digest = Digest::default();
    if workers == 0 {
        // SAFETY: scanned is open and locked (the caller's contract), and the rows for_each_row
        // gives are deformed tuples of its descriptor, which the encoder was built for.
        unsafe {
            crate::postgres::scan::for_each_row(scanned.as_ptr(), |values, nulls| {
                rows.add_row(values, nulls, &mut digest)
            })
        };
        return digest;
    }
    // SAFETY: as above; run launches parallel workers over the same relation, in this transaction,
    // with our snapshot.
    let (partials, launched) = unsafe {
        crate::postgres::parallel_scan::run::<ParallelChecksum>(scanned, logical, workers)
    };
    for partial in partials {
        digest.merge(partial);
    }
    pgrx::debug1!(
        "stress.checksum: {}.{} read by the leader and {launched} parallel workers ({workers} planned)",
        scanned.namespace(),
        scanned.name()
    );
    digest
}

/// One participant's share of a parallel checksum.
struct ParallelChecksum;

impl crate::postgres::parallel_scan::ParallelScan for ParallelChecksum {
    type Partial = Digest;
    const ENTRY_POINT: &'static std::ffi::CStr = c"pg_stress_checksum_worker";

    unsafe fn scan(
        scanned: &PgRelation,
        logical: &PgRelation,
        scan: pg_sys::TableScanDesc,
    ) -> Digest {
        let mut digest = Digest::default();
        // SAFETY: parallel_scan's contract: scan is this participant's share of a scan of scanned,
        // open and locked by the leader.
        unsafe {
            let mut rows = row_encoder(scanned, logical);
            crate::postgres::scan::for_each_row_of(scan, |values, nulls| {
                rows.add_row(values, nulls, &mut digest)
            });
        }
        digest
    }
}

/// A parallel checksum worker's entry point (PostgreSQL looks it up by name in this library).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_stress_checksum_worker(
    seg: *mut pg_sys::dsm_segment,
    toc: *mut pg_sys::shm_toc,
) {
    // SAFETY: PostgreSQL calls this entry point as a parallel worker of the context
    // parallel_scan::run made, with its segment and table of contents.
    unsafe { crate::postgres::parallel_scan::worker_main::<ParallelChecksum>(seg, toc) }
}

/// The digest through the general encoding alone, for tests of the fast path.
#[cfg(any(test, feature = "pg_test"))]
fn general_digest(rel: &PgRelation) -> Digest {
    let mut digest = Digest::default();
    // SAFETY: rel is open and locked (the test holds it); rows are deformed tuples of its
    // descriptor.
    unsafe {
        let mut rows = row_encoder(rel, rel);
        crate::postgres::scan::for_each_row(rel.as_ptr(), |values, nulls| {
            rows.add_row_general(values, nulls, &mut digest)
        });
    }
    digest
}

/// The encoder of `scanned`'s rows in `logical`'s column order.
unsafe fn row_encoder(scanned: &PgRelation, logical: &PgRelation) -> RowEncoder {
    // SAFETY: the caller's contract: both relations open and locked, their descriptors valid for
    // the encoder's life.
    unsafe {
        let logical_desc = logical.tuple_desc();
        let scanned_desc = scanned.tuple_desc();
        let encoders: Vec<ColumnEncoder> = logical_desc
            .iter()
            .filter(|a| !a.is_dropped())
            .enumerate()
            .map(|(position, a)| {
                let attno = scanned_desc
                    .iter()
                    .position(|s| !s.is_dropped() && s.name() == a.name())
                    .expect("partition has the parent's columns");
                let mut typlen = 0i16;
                let mut typbyval = false;
                pg_sys::get_typlenbyval(a.type_oid().value(), &mut typlen, &mut typbyval);
                ColumnEncoder::new(
                    position as u16,
                    attno,
                    a.type_oid().value(),
                    typlen,
                    typbyval,
                )
            })
            .collect();
        RowEncoder::new(encoders)
    }
}

/// SELECT on the table (or on all its columns), and no row-level security we would bypass.
pub(crate) unsafe fn check_can_read(rel: &PgRelation, display: &str) {
    // SAFETY: an open relation's ACL and row-level-security checks for the current user.
    unsafe {
        let user = pg_sys::GetUserId();
        let select = pg_sys::ACL_SELECT as pg_sys::AclMode;
        if pg_sys::pg_class_aclcheck(rel.oid(), user, select) != pg_sys::AclResult::ACLCHECK_OK {
            let all_columns = pg_sys::pg_attribute_aclcheck_all(
                rel.oid(),
                user,
                select,
                pg_sys::AclMaskHow::ACLMASK_ALL,
            );
            if all_columns != pg_sys::AclResult::ACLCHECK_OK {
                let objtype = pg_sys::get_relkind_objtype((*rel.rd_rel).relkind);
                pg_sys::aclcheck_error(all_columns, objtype, (*rel.rd_rel).relname.data.as_ptr());
            }
        }
        if pg_sys::check_enable_rls(rel.oid(), pg_sys::InvalidOid, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            StressError::NotSupported {
                message: format!("row-level security is enabled on {display} for this role"),
                hint: "A checksum covers every row; run it as the table owner or a role with BYPASSRLS.".into(),
            }
            .raise();
        }
    }
}

/// `schema.name` as the user would write it.
fn relation_display_name(rel: &PgRelation) -> String {
    format!("{}.{}", rel.namespace(), rel.name())
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use crate::tests::sqlstate_of;
    use pgrx::PgRelation;
    use pgrx::prelude::*;

    fn checksum(rel: &str) -> String {
        Spi::get_one::<String>(&format!("SELECT stress.checksum('{rel}')"))
            .unwrap()
            .unwrap()
    }

    /// A table with one column of many kinds of type, including NULLs and toasted values.
    fn make_sample(name: &str) {
        Spi::run(&format!(
            "CREATE TABLE {name} (
                 id int PRIMARY KEY, i2 int2, f8 float8, b bool, u uuid, iv interval, j jsonb,
                 arr int[], n name, d date, ts timestamptz, v varchar(20), c char(3), t text, num numeric);
             INSERT INTO {name}
             SELECT g, g::int2, g / 3.0, g % 2 = 0, md5(g::text)::uuid, make_interval(days => g),
                    jsonb_build_object('k', g, 'a', ARRAY[g, g]), ARRAY[g, NULL, -g], 'n' || g,
                    date '2025-01-01' + g, timestamptz '2025-01-01 00:00+00' + g * interval '1 min',
                    'v' || g, 'c', CASE WHEN g % 7 = 0 THEN NULL ELSE repeat(md5(g::text), g % 300) END,
                    g * 1.10
             FROM generate_series(1, 500) g"
        ))
        .unwrap();
    }

    #[pg_test]
    fn equal_content_equal_checksum_whatever_the_order() {
        make_sample("ck_a");
        Spi::run("CREATE TABLE ck_b AS SELECT * FROM ck_a ORDER BY id DESC").unwrap();
        let a = checksum("ck_a");
        assert!(a.starts_with("500:"), "{a}");
        assert_eq!(checksum("ck_b"), a);
        // The session's time zone and date style change text output, not the checksum.
        Spi::run("SET LOCAL TimeZone = 'Asia/Kolkata'; SET LOCAL DateStyle = 'German'").unwrap();
        assert_eq!(checksum("ck_a"), a);
        // Rewriting the table physically changes nothing either.
        Spi::run("CLUSTER ck_a USING ck_a_pkey").unwrap();
        assert_eq!(checksum("ck_a"), a);
    }

    #[pg_test]
    fn any_single_change_changes_the_checksum() {
        make_sample("ck_c");
        let before = checksum("ck_c");
        for (i, change) in [
            "UPDATE {t} SET num = num + 0.000001 WHERE id = 250",
            "UPDATE {t} SET t = t || 'x' WHERE id = 3",
            "UPDATE {t} SET t = '' WHERE id = 7",
            "UPDATE {t} SET j = j || '{\"k\": 0}' WHERE id = 9",
            "UPDATE {t} SET ts = ts + interval '1 microsecond' WHERE id = 11",
            "UPDATE {t} SET num = 2.2 WHERE id = 2", // same value, other scale: as text, too
            "DELETE FROM {t} WHERE id = 500",
        ]
        .into_iter()
        .enumerate()
        {
            // Each change on its own copy (a copy has the original's checksum, see above).
            let copy = format!("ck_c_{i}");
            Spi::run(&format!("CREATE TABLE {copy} AS SELECT * FROM ck_c")).unwrap();
            assert_eq!(checksum(&copy), before);
            Spi::run(&change.replace("{t}", &copy)).unwrap();
            assert_ne!(checksum(&copy), before, "{change}");
        }
        // Swapping two values between columns of the same type is a change too.
        Spi::run("CREATE TABLE ck_swap1 (a text, b text); INSERT INTO ck_swap1 VALUES ('x', 'y')")
            .unwrap();
        Spi::run("CREATE TABLE ck_swap2 (a text, b text); INSERT INTO ck_swap2 VALUES ('y', 'x')")
            .unwrap();
        assert_ne!(checksum("ck_swap1"), checksum("ck_swap2"));
        // NULL and the empty string differ.
        Spi::run("CREATE TABLE ck_null (a text); INSERT INTO ck_null VALUES (NULL)").unwrap();
        Spi::run("CREATE TABLE ck_empty (a text); INSERT INTO ck_empty VALUES ('')").unwrap();
        assert_ne!(checksum("ck_null"), checksum("ck_empty"));
    }

    #[pg_test]
    fn the_fast_encoding_writes_the_general_one_byte_for_byte() {
        make_sample("ck_sample");
        // The sample's columns but those encoded through send functions (jsonb, arrays), whose
        // rows always take the general encoding: here every row can take the fast path.
        Spi::run(
            "CREATE TABLE ck_fast AS SELECT id, i2, f8, b, u, iv, n, d, ts, v, c, t, num FROM ck_sample;
             -- values from 0 to 40 bytes, on both sides of the 16-byte copy
             INSERT INTO ck_fast (id, t, v, num)
             SELECT 1000 + g, repeat('x', g), left(repeat('y', g), 20), g * 1.5 FROM generate_series(0, 40) g;
             -- compressed and out-of-line values: detoasted, the general encoding
             INSERT INTO ck_fast (id, t) SELECT 2000 + g, repeat(md5(g::text), 80) FROM generate_series(1, 5) g;
             ALTER TABLE ck_fast ALTER COLUMN t SET STORAGE EXTERNAL;
             INSERT INTO ck_fast (id, t) SELECT 3000 + g, repeat('z', 3000 + g) FROM generate_series(1, 5) g;
             -- in place but wider than the fast buffer
             ALTER TABLE ck_fast ALTER COLUMN t SET STORAGE PLAIN;
             INSERT INTO ck_fast (id, t) SELECT 4000 + g, repeat('p', 2500 + g) FROM generate_series(1, 5) g",
        )
        .unwrap();
        let rel = PgRelation::open_with_name_and_share_lock("ck_fast").unwrap();
        // SAFETY: rel is open, locked by the test.
        assert!(unsafe { super::row_encoder(&rel, &rel) }.fast_path_covers_every_column());
        let general = super::general_digest(&rel);
        assert_eq!(general.rows, 556);
        assert_eq!(super::table_digest(&rel), general);
    }

    /// The digest is a stored format: captures taken by one version are compared with checksums
    /// of the next. These were computed by 0.5.0's encoding; `docs/integrity.md`'s digest of
    /// `generate_orders(1000000, seed => 42)`, written by an earlier version, still matches too.
    #[pg_test]
    fn the_encoding_does_not_change_between_versions() {
        make_sample("ck_pinned");
        assert_eq!(
            checksum("ck_pinned"),
            "500:6b7336627e7db29ecec00c46bc4afb1e"
        );
        Spi::run(
            "CREATE TABLE ck_pinned_fast AS
             SELECT id, i2, f8, b, u, iv, n, d, ts, v, c, t, num FROM ck_pinned",
        )
        .unwrap();
        assert_eq!(
            checksum("ck_pinned_fast"),
            "500:d52175c8a8ddbb1114f543758092e24d"
        );
    }

    #[pg_test]
    fn parallel_workers_give_the_same_digest_and_see_this_transactions_rows() {
        // The table and its rows are this test transaction's own, uncommitted: workers see them
        // only by sharing the transaction, as a parallel query's workers do.
        make_sample("ck_par");
        Spi::run(
            "INSERT INTO ck_par SELECT id + 1000 * k, i2, f8, b, u, iv, j, arr, n, d, ts, v, c, t, num
             FROM ck_par, generate_series(1, 7) k;
             UPDATE ck_par SET t = 'changed' WHERE id % 11 = 0",
        )
        .unwrap();
        Spi::run("SET LOCAL min_parallel_table_scan_size = 0").unwrap();
        let mut digests = Vec::new();
        for workers in [0, 1, 2, 4] {
            Spi::run(&format!(
                "SET LOCAL max_parallel_workers_per_gather = {workers}"
            ))
            .unwrap();
            digests.push(checksum("ck_par"));
        }
        assert!(digests[0].starts_with("4000:"), "{}", digests[0]);
        assert!(digests.iter().all(|d| d == &digests[0]), "{digests:?}");
        // The degree follows the table's storage parameter, as a parallel scan's would.
        Spi::run("ALTER TABLE ck_par SET (parallel_workers = 3)").unwrap();
        let rel = PgRelation::open_with_name_and_share_lock("ck_par").unwrap();
        assert_eq!(crate::postgres::parallel_scan::planned_workers(&rel), 3);
        assert_eq!(checksum("ck_par"), digests[0]);
        // A type whose send function is not PARALLEL SAFE is never encoded by workers.
        Spi::run(
            "CREATE TYPE ck_unsafe;
             CREATE FUNCTION ck_unsafe_in(cstring) RETURNS ck_unsafe LANGUAGE internal IMMUTABLE STRICT AS 'textin';
             CREATE FUNCTION ck_unsafe_out(ck_unsafe) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout';
             CREATE FUNCTION ck_unsafe_send(ck_unsafe) RETURNS bytea LANGUAGE internal IMMUTABLE STRICT PARALLEL UNSAFE AS 'textsend';
             CREATE TYPE ck_unsafe (INPUT = ck_unsafe_in, OUTPUT = ck_unsafe_out, SEND = ck_unsafe_send,
                                    INTERNALLENGTH = VARIABLE, STORAGE = extended);
             CREATE TABLE ck_par_unsafe AS SELECT id, t::text::ck_unsafe AS u FROM ck_par",
        )
        .unwrap();
        let unsafe_rel = PgRelation::open_with_name_and_share_lock("ck_par_unsafe").unwrap();
        // SAFETY: as above.
        assert!(!unsafe { super::row_encoder(&unsafe_rel, &unsafe_rel) }.parallel_safe());
        // SAFETY: as above.
        assert!(unsafe { super::row_encoder(&rel, &rel) }.parallel_safe());
        assert!(checksum("ck_par_unsafe").starts_with("4000:"));
        // A temporary table's buffers are this backend's: never read by workers.
        Spi::run("CREATE TEMP TABLE ck_par_temp AS SELECT * FROM ck_par").unwrap();
        let temp = PgRelation::open_with_name_and_share_lock("ck_par_temp").unwrap();
        assert_eq!(crate::postgres::parallel_scan::planned_workers(&temp), 0);
        assert_eq!(checksum("ck_par_temp"), digests[0]);
    }

    #[pg_test]
    fn partitioned_tables_matviews_and_dropped_columns() {
        make_sample("ck_plain");
        let plain = checksum("ck_plain");
        Spi::run(
            "CREATE TABLE ck_parted (LIKE ck_plain) PARTITION BY RANGE (id);
             CREATE TABLE ck_p1 PARTITION OF ck_parted FOR VALUES FROM (MINVALUE) TO (200);
             CREATE TABLE ck_p2 (extra int, LIKE ck_plain);
             ALTER TABLE ck_p2 DROP COLUMN extra;
             ALTER TABLE ck_parted ATTACH PARTITION ck_p2 FOR VALUES FROM (200) TO (MAXVALUE);
             INSERT INTO ck_parted SELECT * FROM ck_plain;
             CREATE MATERIALIZED VIEW ck_mv AS SELECT * FROM ck_plain",
        )
        .unwrap();
        assert_eq!(checksum("ck_parted"), plain);
        assert_eq!(checksum("ck_mv"), plain);
        Spi::run("CREATE TABLE ck_nothing (a int)").unwrap();
        assert_eq!(checksum("ck_nothing"), format!("0:{:032x}", 0));
    }

    #[pg_test]
    fn only_tables_and_only_with_select_privilege() {
        Spi::run(
            "CREATE TABLE ck_t (a int); CREATE VIEW ck_v AS SELECT 1 AS a; CREATE INDEX ck_i ON ck_t (a);
             CREATE SEQUENCE ck_s; CREATE TYPE ck_comp AS (a int);
             CREATE MATERIALIZED VIEW ck_unpopulated AS SELECT 1 AS a WITH NO DATA",
        )
        .unwrap();
        let wrong = Some(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE);
        for rel in ["ck_v", "ck_i", "ck_s", "ck_comp", "pg_toast.pg_toast_2618"] {
            assert_eq!(
                sqlstate_of(&format!("SELECT stress.checksum('{rel}')")),
                wrong,
                "{rel}"
            );
        }
        assert_eq!(
            sqlstate_of("SELECT stress.checksum('ck_unpopulated')"),
            Some(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
        );
        assert_eq!(
            sqlstate_of("SELECT stress.checksum('no_such_table')"),
            Some(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE)
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT stress.checksum(NULL)").unwrap(),
            None
        );
        Spi::run("CREATE ROLE stress_test_nobody; GRANT SELECT (a) ON ck_t TO stress_test_nobody")
            .unwrap();
        Spi::run("CREATE TABLE ck_secret (a int, b int); GRANT SELECT (a) ON ck_secret TO stress_test_nobody").unwrap();
        Spi::run("SET LOCAL ROLE stress_test_nobody").unwrap();
        // SELECT on every column is enough; SELECT on some of them is not.
        let all_columns = sqlstate_of("SELECT stress.checksum('ck_t')");
        let some_columns = sqlstate_of("SELECT stress.checksum('ck_secret')");
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(all_columns, None);
        assert_eq!(
            some_columns,
            Some(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE)
        );
        Spi::run("ALTER TABLE ck_t ENABLE ROW LEVEL SECURITY; GRANT SELECT ON ck_t TO stress_test_nobody").unwrap();
        Spi::run("SET LOCAL ROLE stress_test_nobody").unwrap();
        let with_rls = sqlstate_of("SELECT stress.checksum('ck_t')");
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(
            with_rls,
            Some(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED)
        );
    }
}
