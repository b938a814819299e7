//! Checksums of tables.

use pgrx::PgRelation;
use pgrx::prelude::*;

/// An order-independent digest of every row of a table, partitioned table or materialized view, as
/// `rows:hex`. Equal after pg_dump/pg_restore, CLUSTER or VACUUM FULL; different when any value
/// changes. Reads as the caller: needs SELECT on the relation.
#[pg_extern(stable, strict, parallel_safe)]
fn checksum(rel: PgRelation) -> String {
    crate::integrity::checksum(rel)
}
