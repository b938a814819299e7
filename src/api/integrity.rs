//! Checksums of tables.

use pgrx::PgRelation;
use pgrx::prelude::*;

/// `stress.checksum`: [`crate::integrity::checksum`].
#[pg_extern(stable, strict, parallel_safe)]
fn checksum(rel: PgRelation) -> String {
    crate::integrity::checksum(rel)
}
